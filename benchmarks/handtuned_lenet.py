"""The model-specific fast path: LeNet written by hand for XLA:CPU's loop (benchmark baseline).

Once, the shipped ``jsma_jax.models.LeNet`` was written this way (until commit
1a01fc8): each convolution as shifted slices of the input and one matmul (im2col), each
2x2 max-pool as the window times a one-hot mask of its first maximum (a masked broadcast
for a gradient instead of ``select_and_scatter``). Neither primitive XLA:CPU lowers
slowly inside a ``while_loop`` appears in its trace, so the library's rewrite has nothing
to do on it. It is kept here only as the yardstick of the user-model target: a model the user
writes plainly, attacked through the rewrite, should run at least 0.9x as fast as this.

Same function as the NNX LeNet of the same weights (NHWC, HWIO, VALID, (h, w, c)
flatten) up to float32 rounding, and the same derivative convention at max-pool ties
(first maximum in row-major order). Weights: the ``params`` of
``jsma_jax.models.as_logits_fn(LeNet)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def im2col_conv_valid(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """A stride-1 VALID NHWC/HWIO convolution as ``kh * kw`` shifted slices and one matmul."""
  kh, kw, cin, cout = kernel.shape
  oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  cols = jnp.concatenate([x[:, i:i + oh, j:j + ow, :] for i in range(kh) for j in range(kw)], axis=3)
  return cols @ kernel.reshape(kh * kw * cin, cout) + bias


def onehot_max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2/2 VALID max-pool on NHWC; the gradient goes to each window's first maximum."""
  b, h, w, c = x.shape
  win = x[:, :h // 2 * 2, :w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c)
  win = win.transpose(0, 1, 3, 5, 2, 4).reshape(b, h // 2, w // 2, c, 4)  # row-major window order
  first = jax.nn.one_hot(jnp.argmax(win, axis=-1), 4, dtype=x.dtype)  # argmax: the first maximum
  return jnp.sum(win * jax.lax.stop_gradient(first), axis=-1)


def _lenet(params, x, act):
  for name in ("conv1", "conv2"):
    x = onehot_max_pool_2x2(act(im2col_conv_valid(x, params[name]["kernel"], params[name]["bias"])))
  x = act(x.reshape(x.shape[0], -1) @ params["fc1"]["kernel"] + params["fc1"]["bias"])
  return x @ params["fc2"]["kernel"] + params["fc2"]["bias"]


def handtuned_lenet_tanh(params, x):
  """The hand-tuned tanh LeNet: ``apply_fn(params, x) -> logits``."""
  return _lenet(params, x, jnp.tanh)


def handtuned_lenet_relu(params, x):
  """The hand-tuned ReLU LeNet: ``apply_fn(params, x) -> logits``."""
  return _lenet(params, x, jax.nn.relu)


HANDTUNED_LENET = {"tanh": handtuned_lenet_tanh, "relu": handtuned_lenet_relu}
