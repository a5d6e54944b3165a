"""Small random models for the tests: JAX apply functions and NumPy twins.

Apply functions are module-level (stable identity), so repeated attacks reuse
the compiled program; parameters are data.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def mlp_params(seed: int, feature_shape, num_classes: int, hidden: int = 16, scale: float = 3.0):
  rng = np.random.default_rng(seed)
  m = math.prod(feature_shape)
  return {
      "w1": rng.normal(size=(m, hidden)) * scale / math.sqrt(m),
      "b1": rng.normal(size=(hidden,)) * 0.1,
      "w2": rng.normal(size=(hidden, num_classes)) * scale / math.sqrt(hidden),
      "b2": rng.normal(size=(num_classes,)) * 0.1,
  }


def _mlp(params, x, act):
  h = act(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


def apply_mlp_tanh(params, x):
  return _mlp(params, x, jnp.tanh)


def apply_mlp_relu(params, x):
  return _mlp(params, x, jax.nn.relu)


APPLY_MLP = {"tanh": apply_mlp_tanh, "relu": apply_mlp_relu}


def numpy_mlp(params, activation: str):
  """``x_flat -> (logits, analytic Jacobian [N, M])`` in float64."""
  p = {k: np.asarray(v, np.float64) for k, v in params.items()}

  def model(xf):
    pre = xf @ p["w1"] + p["b1"]
    if activation == "tanh":
      h, d = np.tanh(pre), 1 - np.tanh(pre) ** 2
    else:
      h, d = np.maximum(pre, 0), (pre > 0).astype(np.float64)
    z = h @ p["w2"] + p["b2"]
    jac = (p["w2"].T * d[None, :]) @ p["w1"].T
    return z, jac

  return model


def cnn_params(seed: int, channels_in: int, num_classes: int, spatial: int = 6, filters: int = 4):
  rng = np.random.default_rng(seed)
  out = (spatial - 2) ** 2 * filters
  return {
      "k": rng.normal(size=(3, 3, channels_in, filters)) * 1.5 / math.sqrt(9 * channels_in),
      "c": rng.normal(size=(filters,)) * 0.1,
      "w": rng.normal(size=(out, num_classes)) * 3.0 / math.sqrt(out),
      "d": rng.normal(size=(num_classes,)) * 0.1,
  }


def apply_cnn(params, x):
  """A small ReLU CNN on NHWC inputs: conv 3x3 VALID, ReLU, dense."""
  y = jax.lax.conv_general_dilated(
      x, params["k"].astype(x.dtype), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  y = jax.nn.relu(y + params["c"])
  return y.reshape(y.shape[0], -1) @ params["w"] + params["d"]


def jax_model_for_reference(apply_fn, params, feature_shape):
  """``x_flat -> (logits, Jacobian [N, M])`` via jax.jacrev in float64 (for the CNN)."""
  f = lambda p, v: apply_fn(p, v.reshape((1,) + tuple(feature_shape)))[0]
  jac = jax.jit(jax.jacrev(f, argnums=1))
  fwd = jax.jit(f)

  def model(xf):
    with jax.enable_x64(True):
      p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
      v = jnp.asarray(xf, jnp.float64)
      return np.asarray(fwd(p64, v)), np.asarray(jac(p64, v))

  return model


def random_inputs(seed: int, batch: int, feature_shape, *, saturated: float = 0.15,
                  low: float = 0.0, high: float = 1.0):
  """Inputs in [low, high] with some features exactly at a bound."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(low, high, size=(batch,) + tuple(feature_shape))
  u = rng.uniform(size=x.shape)
  x = np.where(u < saturated / 2, low, np.where(u > 1 - saturated / 2, high, x))
  return x
