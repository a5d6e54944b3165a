"""Models written the way users write them, for the rewrite's tests and benchmark.

Nothing here knows about XLA:CPU's in-loop slow paths: plain ``nnx.Conv`` and
``nnx.max_pool``, a raw ``lax`` function in NCHW / OIHW, a ``flax.linen`` CNN, and a
CIFAR-sized CNN with strided SAME convolutions, BatchNorm (inference mode) and average
pooling. Each comes as a pure, hashable ``apply_fn(params, x) -> logits`` and its
weights; weights are small, random and deterministic (fixed seeds).
"""

from __future__ import annotations

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jsma_jax.models import as_logits_fn

ACTS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


class NNXLeNet(nnx.Module):
  """The paper's LeNet with plain ``nnx.Conv`` and ``nnx.max_pool`` (NHWC, VALID)."""

  def __init__(self, activation: str = "relu", *, rngs: nnx.Rngs):
    self.act = ACTS[activation]
    self.conv1 = nnx.Conv(1, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs)
    self.conv2 = nnx.Conv(20, 50, kernel_size=(5, 5), padding="VALID", rngs=rngs)
    self.fc1 = nnx.Linear(4 * 4 * 50, 500, rngs=rngs)
    self.fc2 = nnx.Linear(500, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.max_pool(self.act(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.max_pool(self.act(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
    return self.fc2(self.act(self.fc1(x.reshape(x.shape[0], -1))))


def nnx_lenet(activation: str = "relu", seed: int = 0):
  """``(apply_fn, params)`` of a freshly initialised :class:`NNXLeNet`."""
  return as_logits_fn(NNXLeNet(activation, rngs=nnx.Rngs(seed)))


def _lax_lenet(params, x, act):
  x = jnp.transpose(x, (0, 3, 1, 2))  # NHWC images in, NCHW inside, as a PyTorch port
  for name in ("conv1", "conv2"):
    x = lax.conv_general_dilated(x, params[name]["kernel"], (1, 1), "VALID",
                                 dimension_numbers=("NCHW", "OIHW", "NCHW"))
    x = act(x + params[name]["bias"][None, :, None, None])
    x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
  x = x.reshape(x.shape[0], -1)  # (c, h, w) flatten
  x = act(x @ params["fc1"]["kernel"] + params["fc1"]["bias"])
  return x @ params["fc2"]["kernel"] + params["fc2"]["bias"]


def lax_lenet_relu(params, x):
  """LeNet as a raw ``lax`` function in NCHW/OIHW with ``lax.reduce_window`` max-pools."""
  return _lax_lenet(params, x, jax.nn.relu)


def lax_lenet_tanh(params, x):
  """:func:`lax_lenet_relu` with tanh."""
  return _lax_lenet(params, x, jnp.tanh)


LAX_LENET = {"relu": lax_lenet_relu, "tanh": lax_lenet_tanh}


def lax_params_from_nnx(params) -> dict:
  """NNX LeNet weights (HWIO, NHWC flatten) as :func:`lax_lenet_relu` weights (OIHW, NCHW flatten)."""
  out = {name: {"kernel": jnp.transpose(params[name]["kernel"], (3, 2, 0, 1)),
                "bias": params[name]["bias"]} for name in ("conv1", "conv2")}
  fc1 = params["fc1"]["kernel"].reshape(4, 4, 50, 500).transpose(2, 0, 1, 3).reshape(800, 500)
  out["fc1"] = {"kernel": fc1, "bias": params["fc1"]["bias"]}
  out["fc2"] = dict(params["fc2"])
  return out


class LinenCNN(linen.Module):
  """A small MNIST CNN in ``flax.linen``: SAME conv, max-pool, VALID conv, max-pool, dense."""

  @linen.compact
  def __call__(self, x):
    x = linen.relu(linen.Conv(8, (3, 3), padding="SAME")(x))
    x = linen.max_pool(x, (2, 2), strides=(2, 2))
    x = jnp.tanh(linen.Conv(16, (3, 3), padding="VALID")(x))
    x = linen.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")  # overlapping windows
    return linen.Dense(10)(x.reshape(x.shape[0], -1))


_LINEN = LinenCNN()


def linen_apply(params, x):
  """``LinenCNN().apply``: a module-level function, so that it hashes stably."""
  return _LINEN.apply(params, x)


def linen_cnn(seed: int = 0):
  """``(linen_apply, params)`` for 28x28x1 inputs."""
  return linen_apply, _LINEN.init(jax.random.key(seed), jnp.zeros((1, 28, 28, 1)))


class CifarCNN(nnx.Module):
  """A CIFAR-sized CNN as people write it: strided SAME convs, BatchNorm, avg-pool."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(3, 16, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.bn1 = nnx.BatchNorm(16, rngs=rngs)
    self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
    self.bn2 = nnx.BatchNorm(32, rngs=rngs)
    self.conv3 = nnx.Conv(32, 32, kernel_size=(3, 3), strides=(2, 2), padding="SAME",
                          use_bias=False, rngs=rngs)
    self.fc = nnx.Linear(4 * 4 * 32, 10, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))  # 32x32
    x = nnx.relu(self.bn2(self.conv2(x)))  # 16x16
    x = nnx.relu(self.conv3(x))  # 8x8
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))  # 4x4
    return self.fc(x.reshape(x.shape[0], -1))


def cifar_cnn(seed: int = 0):
  """``(apply_fn, params)`` in inference mode, with non-trivial BatchNorm statistics."""
  model = CifarCNN(rngs=nnx.Rngs(seed))
  rng = np.random.default_rng(seed)
  for bn in (model.bn1, model.bn2):
    n = bn.mean.shape[0]
    bn.mean[...] = jnp.asarray(rng.normal(size=n) * 0.1, jnp.float32)
    bn.var[...] = jnp.asarray(rng.uniform(0.5, 2.0, size=n), jnp.float32)
    bn.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, size=n), jnp.float32)
  return as_logits_fn(model)
