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

from jsma_jax import _processes


def is_concrete(value: Any) -> bool:
  """False for the tracers of a transformation (the user's ``jit``, ``vmap``, ...)."""
  return not isinstance(value, jax.core.Tracer)


def from_torch_tensor(name: str, value: Any) -> Any:
  """A PyTorch tensor (found by duck typing: the core never imports torch) as a NumPy array; else ``value``."""
  if not type(value).__module__.startswith("torch") or not hasattr(value, "numpy"):
    return value
  try:
    return value.detach().cpu().numpy()
  except (TypeError, RuntimeError) as error:  # e.g. bfloat16, which NumPy cannot hold
    raise TypeError(f"{name} is a torch tensor that NumPy cannot hold ({error}); pass "
                    f"{name}.detach().cpu().float().numpy() (or .long() for labels)") from None


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


def check_hyperparameters(theta, gamma, clip_min, clip_max) -> tuple[Any, float | None, Any, Any]:
  theta = check_scalar("theta", theta, traced_ok=True)
  if gamma is not None:
    gamma = check_scalar("gamma", gamma)
    if not 0 < gamma <= 1:
      raise ValueError(f"gamma must lie in (0, 1] (a fraction of the features), got {gamma}")
  clip_min = check_bound("clip_min", clip_min)
  clip_max = check_bound("clip_max", clip_max)
  if is_concrete(theta) and theta == 0:
    raise ValueError("theta must be non-zero (positive increases features, negative decreases)")
  scalars = np.ndim(clip_min) == 0 and np.ndim(clip_max) == 0
  if scalars and is_concrete(clip_min) and is_concrete(clip_max) and not clip_min < clip_max:
    raise ValueError(f"clip_min must be below clip_max, got clip_min={clip_min}, clip_max={clip_max}")
  return theta, gamma, clip_min, clip_max


def check_bound(name: str, value: Any) -> Any:
  """A clip bound: a real scalar (returned as a float), or a float array of per-feature (per-example) bounds.

  Arrays are kept as they are (NumPy or JAX); their shape is checked against
  ``x`` by :func:`check_feature_space`.
  """
  value = from_torch_tensor(name, value)
  if np.ndim(value) == 0 and not isinstance(value, (list, tuple)):
    return check_scalar(name, value, traced_ok=True)
  if not hasattr(value, "shape") or not hasattr(value, "dtype"):
    value = np.asarray(value)
  if not (jnp.issubdtype(value.dtype, jnp.floating) or jnp.issubdtype(value.dtype, jnp.integer)) \
      or jnp.issubdtype(value.dtype, jnp.bool_):
    raise TypeError(f"{name} must be a real number or an array of real numbers, got dtype {value.dtype}")
  # a global array over processes is checked row by row, on each process its own, by check_feature_space
  if is_concrete(value) and not _processes.spans_processes(value) and not np.all(np.isfinite(np.asarray(value))):
    raise ValueError(f"{name} must be finite everywhere (it holds NaN or inf)")
  return value


def check_mask(mask: Any) -> Any:
  """The attack's mask of modifiable features: ``None`` or a bool array (its shape is checked against ``x`` later)."""
  if mask is None:
    return None
  mask = from_torch_tensor("mask", mask)
  if not hasattr(mask, "shape") or not hasattr(mask, "dtype"):
    mask = np.asarray(mask)
  if mask.dtype != np.bool_:
    raise TypeError(
        f"mask must be a bool array (True: the feature may change), got dtype {mask.dtype}; "
        "pass e.g. mask=(x == 0) or mask.astype(bool)"
    )
  return mask


def _canonical(name: str, value: Any, x_shape: tuple, what: str) -> Any:
  """``value`` as ``[1, 1]`` (scalar), ``[1, M]`` (one per feature) or ``[B, M]`` (one per example and feature)."""
  batch, feature_shape = x_shape[0], tuple(x_shape[1:])
  m = math.prod(feature_shape)
  shape = tuple(np.shape(value))
  xp = np if isinstance(value, np.ndarray) or np.isscalar(value) else jnp
  if shape == ():
    return xp.reshape(xp.asarray(value), (1, 1))
  if len(shape) <= len(feature_shape) and _broadcastable(shape, feature_shape):
    return xp.reshape(xp.broadcast_to(value, feature_shape), (1, m))
  if len(shape) == len(x_shape) and shape[0] in (1, batch) and _broadcastable(shape[1:], feature_shape):
    return xp.reshape(xp.broadcast_to(value, (shape[0],) + feature_shape), (shape[0], m))
  raise ValueError(
      f"{name} must be {what}: a scalar, an array broadcastable to one example's shape {feature_shape}, "
      f"or one per example {(batch,) + feature_shape}; got shape {shape}"
  )


def _broadcastable(shape: tuple, to: tuple) -> bool:
  return len(shape) <= len(to) and all(s in (1, t) for s, t in zip(shape[::-1], to[::-1]))


def _where(feature_shape: tuple, flat_index: int) -> str:
  index = np.unravel_index(flat_index, feature_shape)
  return f"feature {tuple(int(i) for i in index) if len(feature_shape) > 1 else int(index[0])}"


def check_feature_space(x: Any, clip_min: Any, clip_max: Any, mask: Any, *, need: int) -> tuple[Any, Any, Any]:
  """Bounds and mask against ``x`` ``[B, *shape]``: shapes, ``lo <= hi``, ``x`` within, enough features in the mask.

  Returns the bounds and the mask as ``[1, 1]``, ``[1, M]`` or ``[B, M]``
  arrays (``mask=None``: ``[1, 1]`` True), the attack's data. Value checks run
  on concrete arrays only; under a trace the attack marks offending examples
  ``StopReason.INVALID_INPUT``. The first offending example and feature are
  named.

  Bounds that leave no feature of any example room to move (``clip_min ==
  clip_max`` given for all examples at once, as a scalar or per feature) are
  refused: nothing could change. Per-example bounds ``[B, *shape]`` that pin
  some examples (``lo == hi == x``, a tolerance of 0) are data: each such
  example gets its own status, ``SUCCESS`` when it already meets the rule's
  criterion, else (with the default initial domain) ``DOMAIN_EXHAUSTED``: no feature can move.

  Any of ``x``, the bounds and the mask may be global arrays over several
  processes (``jsma_sharded``), sharded along the batch alike: each process
  checks the rows it holds, and every process raises when one does.
  """
  lo = _canonical("clip_min", clip_min, x.shape, "the lower bound of every feature")
  hi = _canonical("clip_max", clip_max, x.shape, "the upper bound of every feature")
  mask = np.ones((1, 1), bool) if mask is None else _canonical("mask", mask, x.shape, "True where a feature may change")
  pinned_for_all = np.ndim(clip_min) < len(x.shape) and np.ndim(clip_max) < len(x.shape)
  across = any(_processes.spans_processes(v) for v in (x, lo, hi, mask))
  error = None
  try:
    _check_feature_values(x, lo, hi, mask, need=need, pinned_for_all=pinned_for_all)
  except ValueError as e:  # raised on every process alike, so that none waits for the others
    error = e
  _processes.raise_everywhere(error, across)
  return lo, hi, mask


def _check_feature_values(x, lo, hi, mask, *, need: int, pinned_for_all: bool) -> None:
  """The value checks of :func:`check_feature_space` on the rows this process holds (no collective)."""
  feature_shape = tuple(x.shape[1:])
  spanning = [(n, v) for n, v in (("x", x), ("clip_min", lo), ("clip_max", hi), ("mask", mask))
              if _processes.spans_processes(v)]
  index = _processes.local_rows(spanning[0][1], spanning[0][0])[0] if spanning else None  # None: every row
  dtype = x.dtype if is_concrete(x) else np.float64  # bounds compared as the attack compares them, in x's dtype

  def rows(name: str, value: Any, as_dtype: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(global example indices or None for a row shared by all, rows [b | 1, M]) of this process; None if traced."""
    if not is_concrete(value):
      return None, None
    if _processes.spans_processes(value):
      held, data = _processes.local_rows(value, name)
      if not np.array_equal(held, index):
        raise ValueError(f"{name} must be sharded along the batch like {spanning[0][0]} (the same rows on each "
                         f"process, e.g. jax.make_array_from_process_local_data with the same sharding), or be "
                         f"the same whole array on every process; this process holds rows {held.tolist()[:8]} of "
                         f"{name} but rows {index.tolist()[:8]} of {spanning[0][0]}")
      return held, np.asarray(data, as_dtype).reshape(data.shape[0], -1)
    data = np.asarray(value, as_dtype)
    data = data.reshape(data.shape[0], -1)
    if data.shape[0] == 1 and name != "x":
      return None, data
    all_rows = np.arange(data.shape[0])
    return (all_rows, data) if index is None else (index, data[index])

  (li, lv), (hi_index, hv) = rows("clip_min", lo, dtype), rows("clip_max", hi, dtype)
  if lv is not None and hv is not None:
    where = li if li is not None else hi_index
    for name, v in (("clip_min", lv), ("clip_max", hv)):
      if not np.all(np.isfinite(v)):
        example, feature = np.unravel_index(int(np.argmax(~np.isfinite(v))), v.shape)
        per = f"example {int(where[example])}, " if v.shape[0] > 1 and where is not None else ""
        raise ValueError(f"{name} must be finite everywhere (it holds NaN or inf); at {per}"
                         f"{_where(feature_shape, feature if v.shape[1] > 1 else 0)} it is {v[example, feature]}")
    bad = np.broadcast_to(lv > hv, np.broadcast_shapes(lv.shape, hv.shape))
    if np.any(bad):
      example, feature = np.unravel_index(int(np.argmax(bad)), bad.shape)
      per = f"example {int(where[example])}, " if bad.shape[0] > 1 and where is not None else ""
      raise ValueError(
          f"clip_min must not exceed clip_max anywhere; at {per}"
          f"{_where(feature_shape, feature if bad.shape[1] > 1 else 0)} "
          f"clip_min={lv[min(example, lv.shape[0] - 1), min(feature, lv.shape[1] - 1)]} > "
          f"clip_max={hv[min(example, hv.shape[0] - 1), min(feature, hv.shape[1] - 1)]}"
      )
    if pinned_for_all and not np.any(lv < hv):
      raise ValueError("clip_min must be below clip_max for some feature: these bounds (the same for every example) "
                       "leave no feature room to move, so no example could change; widen them (per-example bounds "
                       "[B, *shape] that pin some examples are allowed: each such example gets its own status)")
    xi, xv = rows("x", x, x.dtype) if is_concrete(x) else (None, None)
    if xv is not None:
      outside = (xv < lv) | (xv > hv)
      if np.any(outside) and np.all(np.isfinite(xv)):
        row, feature = np.unravel_index(int(np.argmax(outside)), outside.shape)
        low = lv[min(row, lv.shape[0] - 1), min(feature, lv.shape[1] - 1)]
        high = hv[min(row, hv.shape[0] - 1), min(feature, hv.shape[1] - 1)]
        hint = "clip x, or widen the bounds"
        if xv.min() >= 0 and 25 < xv.max() <= 255 and hv.max() <= 1:
          hint = "images in [0, 255]? divide x by 255, or pass clip_max=255.0 (and a theta on that scale)"
        raise ValueError(
            f"x must lie within [clip_min, clip_max]; example {int(xi[row])}, {_where(feature_shape, feature)} "
            f"is {xv[row, feature]}, outside [{low}, {high}] ({hint})"
        )
  mi, mv = rows("mask", mask, bool)
  if mv is not None:
    counts = mv.sum(axis=1) * (math.prod(feature_shape) if mv.shape[1] == 1 else 1)
    if counts.min() < need:
      example = int(np.argmin(counts))
      per = f" of example {int(mi[example])}" if mi is not None and mv.shape[0] > 1 else ""
      raise ValueError(
          f"mask must leave at least {need} modifiable feature(s) per example (a {'pair' if need == 2 else 'single'}"
          f"-feature step changes {need}); the mask{per} leaves {int(counts[example])}"
      )


def check_bool(name: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise TypeError(f"{name} must be a bool, got {type(value).__name__}")


def check_choice(name: str, value: Any, allowed: tuple) -> None:
  if value not in allowed:
    raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


INT32_MAX = 2**31 - 1  # the largest count the compiled attack holds (its counters are int32)


def check_count(name: str, value: Any, *, minimum: int, optional: bool = True, what: str = "",
                maximum: int | None = None) -> None:
  """An int ``>= minimum`` (or ``None`` when ``optional``), at most ``maximum``; ``what`` says what it counts.

  ``maximum=INT32_MAX`` for a count the compiled program carries as an int32
  (a larger one would fail inside JAX, naming an internal argument).
  """
  if value is None and optional:
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    kind = "a positive" if minimum >= 1 else "a non-negative"
    raise ValueError(f"{name} must be {kind} int{' or None' if optional else ''}{what}, got {value!r}")
  if maximum is not None and value > maximum:
    held = " (the compiled attack counts in int32)" if maximum == INT32_MAX else ""
    raise ValueError(f"{name}{what} must be at most {maximum:,}{held}, got {value:,}")


def check_inputs(x: Any, targets: Any) -> tuple[Any, Any]:
  """Kinds and shapes of ``x`` ``[B, *shape]`` and ``targets`` ``[B]``."""
  x, targets = from_torch_tensor("x", x), from_torch_tensor("targets", targets)
  if not hasattr(x, "shape") or not hasattr(x, "dtype"):
    x = np.asarray(x)
  if not all(isinstance(d, (int, np.integer)) for d in x.shape):
    # jax.export with jax.export.symbolic_shape: the attack is one program per batch size (its slots, its
    # padding to a bucket and its refill schedule are laid out for that size), so a symbolic size cannot be attacked.
    raise ValueError(f"x must have a concrete shape, got {tuple(str(d) for d in x.shape)} with symbolic "
                     "dimension(s) (jax.export.symbolic_shape); the attack is compiled for one batch size: "
                     "export one program per batch size you need, e.g. export.export(jax.jit(attack))"
                     "(jax.ShapeDtypeStruct((8, *feature_shape), jnp.float32), ...), and pad batches to it")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    fix = ("; for 8-bit images use x.astype(np.float32) / 255 (values in [0, 1], the paper's box), or "
           "x.astype(np.float32) with clip_max=255.0" if jnp.issubdtype(x.dtype, jnp.integer) else
           "; convert it with x.astype(np.float32)")
    raise TypeError(f"x must be a floating-point array, got dtype {x.dtype}{fix}")
  if jnp.finfo(x.dtype).bits < 32:
    # Refused rather than upcast: the attack compares products of derivatives, and at 8 to 11 bits
    # of mantissa most of them tie, so rounding would choose the features; an upcast behind the
    # user's back would also compile a second program and return another dtype than given.
    raise TypeError(f"x must be float32 or float64, got {x.dtype}: JSMA ranks features by products of "
                    f"derivatives, which {x.dtype} rounds into ties, so rounding would pick the features; "
                    "pass x.astype(jnp.float32) (the model may still compute in low precision inside)")
  if x.ndim < 2:
    raise ValueError(f"x must be a batch [B, *feature_shape] with at least one feature axis, got shape {x.shape}; "
                     f"for one example, add the batch axis: x[None]")
  if x.shape[0] == 0 or math.prod(x.shape[1:]) == 0:
    raise ValueError(f"x must hold at least one example with at least one feature, got shape {x.shape}")
  if isinstance(x, np.ndarray) and x.dtype == np.float64 and not jax.config.jax_enable_x64:
    x = x.astype(np.float32)  # what JAX would do, without its truncation warning
  if not hasattr(targets, "shape") or not hasattr(targets, "dtype"):
    targets = np.asarray(targets)
  if not jnp.issubdtype(targets.dtype, jnp.integer):
    raise TypeError(f"targets must be an integer array, got dtype {targets.dtype}")
  if targets.shape != (x.shape[0],):
    hint = ""
    if targets.size == 1 and x.shape[0] > 1:
      hint = (f"; if x {tuple(x.shape)} is ONE example without its batch axis, add it: x[None] and "
              "targets as a [1] array")
    raise ValueError(f"targets must have shape [B] = ({x.shape[0]},) to match x, got {targets.shape}{hint}")
  return x, targets


def check_values(x, targets, num_classes: int) -> None:
  """Values of concrete inputs: ``x`` finite, labels in range (the bounds: :func:`check_feature_space`).

  The first offending example of the whole batch is named. A global array over several
  processes is read shard by shard, each process its own, and every process raises the
  same error (:mod:`jsma_jax._processes`).
  """
  if is_concrete(x):
    index, rows = _processes.local_rows(x)
    rows = rows.reshape(rows.shape[0], -1)
    bad = ~np.isfinite(rows)
    found = None
    if bad.any():
      row, feature = np.unravel_index(int(np.argmax(bad)), bad.shape)
      found = [index[row], feature, rows[row, feature]]
    found = _processes.first_found(found, _processes.spans_processes(x), 3)
    if found is not None:
      raise ValueError(f"x must be finite (it holds NaN or inf); the first is example {int(found[0])}, "
                       f"{_where(tuple(x.shape[1:]), int(found[1]))}: {found[2]}")
  if is_concrete(targets):
    check_labels("targets", targets, num_classes)


def warn_targets_already_predicted(targets: Any, predicted: Any) -> None:
  """Warns when most targets are what the model predicts already: the labels-as-targets mistake."""
  same = int(np.sum(np.asarray(targets) == np.asarray(predicted)))
  total = int(np.size(targets))
  if total and 2 * same > total:
    import warnings

    warnings.warn(
        f"targets equal the model's current prediction for {same} of {total} examples: those count as successes "
        "at once, with nothing changed (0 iterations, L0 0). If these are the true labels, pass target classes "
        "instead (jsma_jax.all_other_targets(x, labels, num_classes) or jsma_jax.random_targets(key, labels, "
        "num_classes)), or attack without targets with rule=jsma_jax.untargeted_rule() and the labels",
        UserWarning, stacklevel=4)


def check_labels(name: str, labels: Any, num_classes: int) -> None:
  """Concrete class labels ``[B]`` within ``[0, num_classes)``; the first one out of range is named."""
  index, rows = _processes.local_rows(labels, name)  # each process reads its own shards
  rows = np.asarray(rows).reshape(-1)
  bad = (rows < 0) | (rows >= num_classes)
  found = None
  if bad.any():
    first = int(np.argmax(bad))
    found = [index[first], rows[first], rows.min(), rows.max()]
  across = _processes.spans_processes(labels)
  found = _processes.first_found(found, across, 4)
  if found is not None:
    # the range over every process (its rows' min and max, where each process found nothing out of range too)
    ranges = _processes.gather(np.array([rows.min(), rows.max()] if rows.size else [np.inf, -np.inf],
                                        np.float64), across)
    raise ValueError(
        f"{name} must lie in [0, {num_classes}) for a model with {num_classes} classes, "
        f"got values in [{int(ranges[:, 0].min())}, {int(ranges[:, 1].max())}]; the first out of range is "
        f"example {int(found[0])} ({name}[{int(found[0])}] = {int(found[1])})"
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
  :func:`jsma_jax.user_model.prepare_model` first, on one example; this check sees
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
    raise ValueError(f"{name_a} and {name_b} must have the same batch size, "
                     f"got {np.shape(a)[:1]} and {np.shape(b)[:1]}")


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


def check_host_data(name: str, value: Any) -> None:
  """Data every process holds whole (NumPy, or a JAX array on this process's devices)."""
  if isinstance(value, jax.Array) and not is_concrete(value):
    raise TypeError(f"{name} must be concrete data, got a traced value; call this outside jax.jit")
  if isinstance(value, jax.Array) and not value.is_fully_addressable:
    raise ValueError(f"{name} must be the whole dataset on every process (e.g. a NumPy array), got a global "
                     "array spread over processes; pass its host data (each process attacks its own share)")


def check_platforms(platforms: Any) -> tuple[str, ...] | None:
  """``None`` or a non-empty sequence of distinct platform names JAX lowers for; returned as a tuple."""
  if platforms is None:
    return None
  allowed = ("cpu", "cuda", "rocm", "tpu")
  if isinstance(platforms, str) or not all(isinstance(p, str) for p in platforms):
    raise TypeError(f"platforms must be a tuple of platform names from {allowed}, got {platforms!r}; "
                    "e.g. platforms=('cuda',)")
  platforms = tuple(platforms)
  if not platforms or len(set(platforms)) != len(platforms) or not set(platforms) <= set(allowed):
    raise ValueError(f"platforms must be distinct names from {allowed}, at least one, got {platforms!r}")
  return platforms


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
