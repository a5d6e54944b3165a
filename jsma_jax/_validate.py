"""Argument checks for the public API, run in Python before anything is traced.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) naming the argument and what was expected. Value checks that
need concrete numbers are skipped for tracers (a call inside a user's
``jax.jit``); shape and dtype checks always run.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer)


def check_scalar(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise TypeError(f"{name} must be a Python or NumPy real number, got {type(value).__name__}")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{name} must be finite, got {value}")
  return value


def check_hyperparameters(theta, gamma, clip_min, clip_max) -> tuple[float, float, float, float]:
  theta = check_scalar("theta", theta)
  gamma = check_scalar("gamma", gamma)
  clip_min = check_scalar("clip_min", clip_min)
  clip_max = check_scalar("clip_max", clip_max)
  if theta == 0:
    raise ValueError("theta must be non-zero (positive increases features, negative decreases)")
  if not 0 < gamma <= 1:
    raise ValueError(f"gamma must lie in (0, 1] (a fraction of the features), got {gamma}")
  if not clip_min < clip_max:
    raise ValueError(f"clip_min must be below clip_max, got clip_min={clip_min}, clip_max={clip_max}")
  return theta, gamma, clip_min, clip_max


def max_iterations(num_features: int, gamma: float, *, pairwise: bool = True) -> int:
  """The iteration budget: ``floor(M * gamma / 2)`` for pairs, ``floor(M * gamma)`` else.

  ``gamma`` is read as the decimal it is written as (``0.145`` is 29/200), so
  that ``M * gamma`` lands on the exact integer when it should. On MNIST
  (``M = 784``) with ``gamma = 0.145`` this gives 56 pair iterations.
  """
  exact = Fraction(repr(float(gamma))) * num_features
  return math.floor(exact / 2) if pairwise else math.floor(exact)


def check_inputs(x: Any, targets: Any) -> tuple[jax.Array, jax.Array]:
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
  if x.ndim < 2:
    raise ValueError(f"x must be a batch [B, *feature_shape] with at least one feature axis, got shape {x.shape}")
  if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
    raise ValueError(f"x must hold at least one example with at least one feature, got shape {x.shape}")
  if not hasattr(targets, "shape") or not hasattr(targets, "dtype"):
    targets = np.asarray(targets)
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
  if targets.shape != (x.shape[0],):
    raise ValueError(f"targets must have shape [B] = ({x.shape[0]},) to match x, got {targets.shape}")
  return x, targets


def check_values(x, targets, num_classes: int, clip_min: float, clip_max: float) -> None:
  if is_concrete(x):
    xv = np.asarray(x)
    if not np.all(np.isfinite(xv)):
      raise ValueError("x must be finite (it holds NaN or inf)")
    lo, hi = float(xv.min()), float(xv.max())
    if lo < clip_min or hi > clip_max:
      raise ValueError(
          f"x must lie within [clip_min, clip_max] = [{clip_min}, {clip_max}], got values in [{lo}, {hi}]"
      )
  if is_concrete(targets):
    tv = np.asarray(targets)
    if tv.min() < 0 or tv.max() >= num_classes:
      raise ValueError(
          f"targets must lie in [0, {num_classes}) for a model with {num_classes} classes, "
          f"got values in [{tv.min()}, {tv.max()}]"
      )


def check_model(logits_fn: Callable, params: Any, x) -> int:
  """Abstract-evaluates the model (no compilation) and returns the number of classes."""
  if not callable(logits_fn):
    raise TypeError(f"logits_fn must be callable, got {type(logits_fn).__name__}")
  try:
    hash(logits_fn)
  except TypeError as e:
    raise TypeError("logits_fn must be hashable (it is a static argument of the compiled attack)") from e
  spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
  if params is None:
    out = jax.eval_shape(logits_fn, spec)
  else:
    out = jax.eval_shape(logits_fn, params, spec)
  call = "logits_fn(x)" if params is None else "logits_fn(params, x)"
  if not hasattr(out, "shape"):
    raise ValueError(f"{call} must return one array of logits [B, num_classes], got {type(out).__name__}")
  if out.ndim != 2 or out.shape[0] != x.shape[0] or out.shape[1] < 2:
    raise ValueError(
        f"{call} must return logits of shape [B, num_classes] = [{x.shape[0]}, N >= 2] "
        f"for x of shape {x.shape}, got {out.shape}"
    )
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(f"{call} must return floating-point logits, got dtype {out.dtype}")
  return int(out.shape[1])


def check_choice(name: str, value: Any, allowed: tuple) -> None:
  if value not in allowed:
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
