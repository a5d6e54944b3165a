"""Every argument check of the public API, in one place, run in Python before tracing.

Each check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) naming the argument, what was expected and, where there is
one, the fix. Value checks that need concrete numbers are skipped for tracers
(a call inside a user's ``jax.jit``); the attack then marks the offending
examples ``StopReason.INVALID_INPUT`` instead. Shape and dtype checks always run.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
  """False for the tracers of a transformation (the user's ``jit``, ``vmap``, ...)."""
  return not isinstance(value, jax.core.Tracer)


def check_scalar(name: str, value: Any, *, traced_ok: bool = False) -> Any:
  """A real number: Python, NumPy or a 0-d JAX array; returned as a float (or the tracer when allowed)."""
  if not is_concrete(value):
    if traced_ok and getattr(value, "shape", None) == () and jnp.issubdtype(value.dtype, jnp.number):
      return value
    raise TypeError(f"{name} must be a concrete real number here, got a traced value; pass it as a Python float")
  if isinstance(value, (jax.Array, np.ndarray)) and value.shape == () and not jnp.issubdtype(value.dtype, jnp.bool_):
    value = value.item()
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise TypeError(f"{name} must be a Python or NumPy real number, got {type(value).__name__}")
  value = float(value)
  if not math.isfinite(value):
    raise ValueError(f"{name} must be finite, got {value}")
  return value


def check_hyperparameters(theta, gamma, clip_min, clip_max) -> tuple[Any, float, Any, Any]:
  theta = check_scalar("theta", theta, traced_ok=True)
  gamma = check_scalar("gamma", gamma)
  clip_min = check_scalar("clip_min", clip_min, traced_ok=True)
  clip_max = check_scalar("clip_max", clip_max, traced_ok=True)
  if is_concrete(theta) and theta == 0:
    raise ValueError("theta must be non-zero (positive increases features, negative decreases)")
  if not 0 < gamma <= 1:
    raise ValueError(f"gamma must lie in (0, 1] (a fraction of the features), got {gamma}")
  if is_concrete(clip_min) and is_concrete(clip_max) and not clip_min < clip_max:
    raise ValueError(f"clip_min must be below clip_max, got clip_min={clip_min}, clip_max={clip_max}")
  return theta, gamma, clip_min, clip_max


def check_bool(name: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_choice(name: str, value: Any, allowed: tuple) -> None:
  if value not in allowed:
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def check_count(name: str, value: Any, *, minimum: int, optional: bool = True, what: str = "") -> None:
  """An int ``>= minimum`` (or ``None`` when ``optional``); ``what`` says what it counts."""
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    kind = "a positive" if minimum >= 1 else "a non-negative"
    raise ValueError(f"{name} must be {kind} int{' or None' if optional else ''}{what}, got {value!r}")


def check_inputs(x: Any, targets: Any) -> tuple[Any, Any]:
  """Kinds and shapes of ``x`` ``[B, *shape]`` and ``targets`` ``[B]``."""
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}")
  if x.ndim < 2:
    raise ValueError(f"x must be a batch [B, *feature_shape] with at least one feature axis, got shape {x.shape}")
  if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
    raise ValueError(f"x must hold at least one example with at least one feature, got shape {x.shape}")
  if isinstance(x, np.ndarray) and x.dtype == np.float64 and not jax.config.jax_enable_x64:
    x = x.astype(np.float32)  # what JAX would do, without its truncation warning
  if not hasattr(targets, "shape") or not hasattr(targets, "dtype"):
    targets = np.asarray(targets)
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
  if targets.shape != (x.shape[0],):
    raise ValueError(f"targets must have shape [B] = ({x.shape[0]},) to match x, got {targets.shape}")
  return x, targets


def check_values(x, targets, num_classes: int, clip_min, clip_max) -> None:
  """Values of concrete inputs: finite, within the clip range, labels in range."""
  if is_concrete(x) and is_concrete(clip_min) and is_concrete(clip_max):
    xv = np.asarray(x)
    if not np.all(np.isfinite(xv)):
      raise ValueError("x must be finite (it holds NaN or inf)")
    lo, hi = float(xv.min()), float(xv.max())
    if lo < clip_min or hi > clip_max:
      raise ValueError(
          f"x must lie within [clip_min, clip_max] = [{clip_min}, {clip_max}], got values in [{lo}, {hi}]"
      )
  if is_concrete(targets):
    check_labels("targets", targets, num_classes)


def check_labels(name: str, labels: Any, num_classes: int) -> None:
  """Concrete class labels ``[B]`` within ``[0, num_classes)``."""
  lv = np.asarray(labels)
  if lv.size and (lv.min() < 0 or lv.max() >= num_classes):
    raise ValueError(
        f"{name} must lie in [0, {num_classes}) for a model with {num_classes} classes, "
        f"got values in [{lv.min()}, {lv.max()}]"
    )


def check_num_classes(num_classes: Any) -> None:
  if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")


def check_label_array(name: str, labels: Any) -> None:
  if labels.ndim != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(f"{name} must be a 1-D int array [B], got shape {labels.shape} dtype {labels.dtype}")


def check_model(logits_fn: Any, params: Any, x) -> int:
  """Abstract-evaluates the model on the whole batch (no compilation); returns the number of classes.

  The call convention, the params and inference mode are checked by
  :func:`jsma_jax.model.prepare_model` first, on one example; this check sees
  the batch axis (a model must return one row of logits per example).
  """
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


def check_rule_maps(rule_name: str, maps: Any, num_features: int) -> None:
  """Shapes of what a rule's ``maps`` returned (abstract values, at trace time)."""
  a, b, increase = maps.a, maps.b, maps.increase
  k = a.shape[0] if a.ndim == 2 else None
  expected = f"a and b [K, M] = [K, {num_features}], increase [K] bool, domain None or [K, {num_features}] bool"
  ok = (
      a.ndim == 2 and a.shape[1] == num_features and b.shape == a.shape and k >= 1
      and increase.shape == (k,) and increase.dtype == jnp.bool_
      and (maps.domain is None or (maps.domain.shape == a.shape and maps.domain.dtype == jnp.bool_))
  )
  if not ok:
    got = f"a {a.shape}, b {b.shape}, increase {increase.shape} {increase.dtype}"
    if maps.domain is not None:
      got += f", domain {maps.domain.shape} {maps.domain.dtype}"
    raise ValueError(f"rule {rule_name!r}: maps(...) must return Maps with {expected}; got {got}")


def check_same_batch(name_a: str, a: Any, name_b: str, b: Any) -> None:
  """Two arrays with the same leading (batch) size."""
  if np.shape(a)[:1] != np.shape(b)[:1]:
    raise ValueError(f"{name_a} and {name_b} must have the same batch size, got {np.shape(a)[:1]} and {np.shape(b)[:1]}")


def check_budgets(budgets: Any, *, pairwise: bool) -> np.ndarray:
  """L0 budgets in changed features: positive ints, the smallest allowing one iteration."""
  budgets = np.asarray(budgets).reshape(-1)
  if budgets.size == 0 or not np.issubdtype(budgets.dtype, np.integer) or budgets.min() < 1:
    raise ValueError(f"budgets must be positive ints (changed features), got {budgets.tolist()}")
  if pairwise and budgets.min() < 2:
    raise ValueError(f"budgets must allow an iteration: at least 2 changed features for pairs, got {budgets.tolist()}")
  return budgets


def check_not_given(caller: str, options: dict, names: tuple) -> None:
  """Options a caller sets itself must not be passed to it."""
  for name in names:
    if name in options:
      raise TypeError(f"{caller} sets {name} itself (from budgets); do not pass it")


def check_mesh(mesh: Any) -> None:
  from jax.sharding import Mesh

  if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
    raise ValueError(f"mesh must be a jax.sharding.Mesh with one axis, got {mesh!r}")


def check_eval_mode(name: str, in_training: list[str]) -> None:
  """A PyTorch module (``jsma_jax.torch``) whose submodules are all in eval mode.

  ``in_training``: the names of the submodules with ``training == True`` (``""``: the root).
  """
  if in_training:
    shown = ", ".join(repr(n) if n else "the module itself" for n in in_training[:4])
    more = f" and {len(in_training) - 4} more" if len(in_training) > 4 else ""
    raise ValueError(f"{name} must be in eval mode, but {shown}{more} {'is' if len(in_training) == 1 else 'are'} "
                     f"in training mode; call {name}.eval() first (in training mode BatchNorm couples the "
                     "examples of a batch and dropout is random, so the attack's Jacobians would be wrong)")


def check_example_input(name: str, shape: tuple, floating: bool, dtype: Any) -> None:
  """An example batch ``[B >= 1, *features]`` of floating-point inputs (``jsma_jax.torch``)."""
  if not floating:
    raise TypeError(f"{name} must be a floating-point tensor (the model's input), got dtype {dtype}")
  if len(shape) < 2 or shape[0] < 1 or math.prod(shape[1:]) == 0:
    raise ValueError(f"{name} must be a batch [B >= 1, *features] (e.g. [1, 1, 28, 28] for MNIST in NCHW), "
                     f"got shape {tuple(shape)}")
