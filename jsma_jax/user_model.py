"""The user's model as a hashable jaxpr plus its weights as data, checked before compiling.

Why: a model passed as a static ``jit`` argument (an NNX module, ``lambda x:
model(x)``, a closure over arrays) is hashed by identity, so the compiled attack keeps
the weights it saw first. :func:`prepare_model` traces the model once per call, outside
``jit``, on a batch of ONE example, to a ``ClosedJaxpr``: every array the model closes
over or receives in ``params`` (NNX Variables, closure arrays, Linen variables, NumPy
arrays) becomes a const of that jaxpr. It returns

* ``fn``: a :class:`JaxprModel`, hashable, equal for equal jaxpr *text* (literals
  included, so a changed Python float is not stale) and equal const shapes / dtypes;
* ``weights``: the consts, a list of arrays, to pass as data: ``fn(weights, x)``.

New weights of the same shapes therefore never recompile, and every call sees the
current weights. Arrays the model creates itself (``jnp.zeros`` inside ``__call__``)
stay jaxpr ops. Nested ``jit`` calls are inlined so that their closed-over arrays are
hoisted too; consts left inside other sub-jaxprs are pinned by identity (correct, but
new such arrays recompile). The model is also checked here: each error names the
argument and the fix. Caveats: ``custom_jvp`` / ``custom_vjp`` rules are compared by
name, so a rule that closes over arrays must take them as arguments instead; the
matmul precision is frozen at trace time (pass ``precision=``).
"""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core

from jsma_jax import _processes

Evaluate = Callable[..., list]  # (closed_jaxpr, *args) -> list of outputs

_FIX_PARAMS = "pass the params of this model (e.g. from jsma_jax.models.as_logits_fn(model))"
_FIX_INFERENCE = ("the model must run in inference mode: use jsma_jax.models.as_logits_fn(model) or "
                  "model.eval() / nnx.view(model, use_running_average=True, deterministic=True)")
_FIX_ONE_ARG = "drop params= or pass a function (params, x) -> logits"
_FIX_TWO_ARGS = ("pass params=<the model's parameters> (e.g. from jsma_jax.models.as_logits_fn(model)), "
                 "or a function of x alone")
_INFERENCE_ERRORS = ("TraceContextError", "ModifyScopeVariableError", "InvalidRngError")
_PARAMS_ERRORS = ("ScopeParamShapeError", "ScopeParamNotFoundError", "ScopeCollectionNotFound", "KeyError")


def eval_closed_jaxpr(closed_jaxpr: core.ClosedJaxpr, *args: Any) -> list:
  """The default evaluator: ``jax.core.eval_jaxpr`` of ``closed_jaxpr`` at ``args``."""
  return jax.core.eval_jaxpr(closed_jaxpr.jaxpr, closed_jaxpr.consts, *args)


def is_traced(*trees: Any) -> bool:
  """Whether any leaf is a tracer (e.g. ``x`` inside a user's ``jax.jit``): skip value checks."""
  return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(trees))


class JaxprModel:
  """``(weights, x) -> outputs [B, N]``: a traced model; equality by structure, not weights.

  Traced at batch 1; a batch of ``B > 1`` is evaluated as ``jax.vmap`` over examples,
  each at batch 1 (the model never sees two examples at once).
  """

  __slots__ = ("_hash", "_key", "_pinned", "dtype", "evaluate", "feature_shape", "jaxpr")

  def __init__(self, jaxpr: core.Jaxpr, feature_shape: tuple, dtype, evaluate: Evaluate, pinned: list):
    self.jaxpr, self.feature_shape, self.dtype, self.evaluate = jaxpr, feature_shape, np.dtype(dtype), evaluate
    self._pinned = pinned  # consts left in sub-jaxprs: kept alive, so their ids stay unique
    avals = tuple((v.aval.shape, str(v.aval.dtype), v.aval.weak_type) for v in jaxpr.constvars)
    self._key = (str(jaxpr), avals, feature_shape, str(self.dtype), evaluate, tuple(map(id, pinned)))
    self._hash = hash(self._key)

  def __eq__(self, other: Any) -> bool:
    return type(other) is JaxprModel and (self is other or self._key == other._key)

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f"JaxprModel(x: {self.dtype}{list(self.feature_shape)}, {len(self.jaxpr.constvars)} weights)"

  def with_evaluate(self, evaluate: Evaluate) -> JaxprModel:
    """The same model and weights, evaluated by ``evaluate`` (e.g. :func:`eval_closed_jaxpr`: as traced)."""
    return JaxprModel(self.jaxpr, self.feature_shape, self.dtype, evaluate, self._pinned)

  def __call__(self, weights: Sequence[Any], x: jax.Array) -> jax.Array:
    """Outputs ``[B, N]`` for ``x`` ``[B, *feature_shape]`` with ``weights`` (``PreparedModel.weights``)."""
    if len(weights) != len(self.jaxpr.constvars):
      raise ValueError(f"weights: expected {len(self.jaxpr.constvars)} arrays, got {len(weights)}")
    if tuple(x.shape[1:]) != self.feature_shape or x.dtype != self.dtype:
      raise ValueError(f"x: the model was traced for examples {self.dtype}{list(self.feature_shape)}, "
                       f"got {x.dtype}{list(x.shape[1:])}")
    one = lambda x1: self.evaluate(core.ClosedJaxpr(self.jaxpr, list(weights)), x1)[0]
    return one(x) if x.shape[0] == 1 else jax.vmap(lambda xi: one(xi[None])[0])(x)


class PreparedModel(NamedTuple):
  """What :func:`prepare_model` returns.

  Attributes:
    fn: hashable static :class:`JaxprModel`, called as ``fn(weights, x)``.
    weights: list of arrays, the model's current weights (data, never baked in).
    num_classes: ``N``, the width of the outputs.
    leaf_order: when ``params`` was traced as abstract inputs (as ``jax.jit`` traces its
      arguments) and its leaves are all the weights: which leaf each weight is
      (``weights[i] is leaves[leaf_order[i]]``, leaves the model does not use left out);
      the same ``fn`` then serves any ``params`` of the same structure, shapes and dtypes.
      None otherwise.
  """

  fn: JaxprModel
  weights: list
  num_classes: int
  leaf_order: tuple | None = None


def _accepts(fn: Callable, count: int) -> bool | None:
  """Whether ``fn`` accepts ``count`` positional arguments (None: signature unknown)."""
  try:
    inspect.signature(fn).bind(*range(count))
    return True
  except TypeError:
    return False
  except ValueError:
    return None


def _is_linen_apply(fn: Callable) -> bool:
  linen = sys.modules.get("flax.linen")
  return linen is not None and getattr(fn, "__name__", "") == "apply" and isinstance(
      getattr(fn, "__self__", None), linen.Module)


def _check_call_convention(logits_fn: Callable, has_params: bool) -> None:
  if not callable(logits_fn):
    raise TypeError(f"logits_fn must be callable (x) -> logits or (params, x) -> logits, "
                    f"got {type(logits_fn).__name__}")
  takes_one, takes_two = _accepts(logits_fn, 1), _accepts(logits_fn, 2)
  if has_params and takes_two is False and takes_one:
    raise TypeError(f"logits_fn takes one argument (x) but params= was given; {_FIX_ONE_ARG}")
  if not has_params and (_is_linen_apply(logits_fn) or (takes_one is False and takes_two)):
    raise TypeError(f"logits_fn takes two arguments (params, x) but params= was not given; {_FIX_TWO_ARGS}")


def _layout_hint(model: Callable, spec) -> str | None:
  """If ``model`` fails on ``spec`` but traces with its channel axis moved, the fix to say."""
  if len(spec.shape) != 4:
    return None
  moves = {(0, 2, 3, 1): ("NCHW", "NHWC", "x.transpose(0, 2, 3, 1)"),
           (0, 3, 1, 2): ("NHWC", "NCHW", "x.transpose(0, 3, 1, 2)")}
  for order, (given, wanted, fix) in moves.items():
    shape = tuple(spec.shape[i] for i in order)
    if shape == tuple(spec.shape):
      continue
    try:
      jax.eval_shape(model, jax.ShapeDtypeStruct(shape, spec.dtype))
    except Exception:  # the user's code: any failure means this layout is not it either
      continue
    return (f"x looks like {given} {list(spec.shape[1:])} per example while the model takes {wanted} "
            f"{list(shape[1:])}; fix: pass {fix}")
  return None


def _explain(error: Exception, call: str, has_params: bool, spec, model: Callable | None = None) -> Exception:
  """The library's error for an exception raised while tracing the model."""
  name, text = type(error).__name__, (str(error).splitlines() or [""])[0].rstrip(".")
  hint = _layout_hint(model, spec) if model is not None else None
  if hint is not None:
    return ValueError(f"{call} failed on x of shape {spec.shape} ({name}: {text}): {hint}")
  if name in _INFERENCE_ERRORS or "Cannot mutate" in text:
    return ValueError(f"{call} failed: {text}; {_FIX_INFERENCE}")
  if name == "TypeError" and re.search(r"takes \d+ positional arguments? but \d+ were given", text) and has_params:
    return TypeError(f"logits_fn takes one argument (x) but params= was given ({text}); {_FIX_ONE_ARG}")
  if name == "TypeError" and "missing 1 required positional argument" in text and not has_params:
    return TypeError(f"logits_fn takes two arguments (params, x) but params= was not given ({text}); {_FIX_TWO_ARGS}")
  if has_params:
    return ValueError(f"params does not fit logits_fn: {name}: {text}; {_FIX_PARAMS} "
                      f"(or check that x's example shape {spec.shape[1:]} is the model's input shape)")
  if name in _PARAMS_ERRORS:
    return ValueError(f"the model's variables do not fit logits_fn: {text}; {_FIX_PARAMS}")
  return ValueError(f"{call} failed on x of shape {spec.shape} ({spec.dtype}): {name}: {text}")


def _sub_jaxprs(jaxpr: core.Jaxpr):
  """``(sub_jaxpr, consts)`` for every jaxpr nested in ``jaxpr``'s eqn params, recursively."""
  for eqn in jaxpr.eqns:
    stack = list(eqn.params.values())
    while stack:
      value = stack.pop()
      if isinstance(value, (tuple, list)):
        stack.extend(value)
      elif isinstance(value, (core.ClosedJaxpr, core.Jaxpr)):
        sub = value.jaxpr if isinstance(value, core.ClosedJaxpr) else value
        yield sub, (value.consts if isinstance(value, core.ClosedJaxpr) else [])
        yield from _sub_jaxprs(sub)


def _nested_arrays(jaxpr: core.Jaxpr) -> list:
  """Consts of sub-jaxprs, and non-scalar literals anywhere: values the text does not show."""
  found = [c for _, consts in _sub_jaxprs(jaxpr) for c in consts]
  for sub in [jaxpr] + [s for s, _ in _sub_jaxprs(jaxpr)]:
    found += [v.val for e in sub.eqns for v in e.invars if isinstance(v, core.Literal) and np.ndim(v.val) > 0]
  return found


def _inline_jit(jaxpr: core.Jaxpr, consts: Sequence[Any], *args: Any) -> list:
  """Evaluates ``jaxpr`` like ``eval_jaxpr``, inlining nested ``jit`` calls (their consts then hoist)."""
  env = dict(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  read = lambda v: v.val if isinstance(v, core.Literal) else env[v]
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    sub = eqn.params.get("jaxpr") if eqn.primitive.name in ("jit", "pjit") else None
    with eqn.ctx.manager:
      if isinstance(sub, core.ClosedJaxpr):
        outs = _inline_jit(sub.jaxpr, sub.consts, *invals)
      else:
        outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
        outs = outs if eqn.primitive.multiple_results else [outs]
    env.update((v, o) for v, o in zip(eqn.outvars, outs) if not isinstance(v, core.DropVar))
  return [read(v) for v in jaxpr.outvars]


def prepare_model(
    logits_fn: Callable[..., Any],
    params: Any,
    x_shape: Sequence[int],
    dtype: Any,
    *,
    evaluate: Evaluate | None = None,
    precision: str | None = None,
) -> PreparedModel:
  """Traces ``logits_fn`` on one example and splits it into a static jaxpr and its weights.

  Runs in Python, before any compilation; raises an error naming the argument and the fix
  for a wrong call convention, params that do not fit, a model in training mode or an
  output that is not ``[B, N >= 2]`` floating logits.

  Args:
    logits_fn: ``x -> logits`` (an NNX module, a closure, ``partial(module.apply, variables)``)
      or, with ``params``, ``(params, x) -> logits`` (e.g. a Linen ``module.apply``).
    params: the model's parameters (any pytree), or None.
    x_shape: the shape of ``x``, ``[B, *features]``; only the features are used.
    dtype: the dtype of ``x``.
    evaluate: ``(closed_jaxpr, *args) -> list of outputs``, e.g.
      ``jsma_jax.rewrite.eval_jaxpr_loop_friendly``; default :func:`eval_closed_jaxpr`.
    precision: ``jax.default_matmul_precision`` while tracing (the jaxpr freezes it).

  Returns:
    ``PreparedModel(fn, weights, num_classes)`` with ``fn(weights, x) == logits_fn(x)``.

  Example:
    >>> prepared = prepare_model(model, None, x.shape, x.dtype)
    >>> apply = jax.jit(lambda fn, weights, x: fn(weights, x), static_argnums=0)
    >>> logits = apply(prepared.fn, prepared.weights, x)  # new weights: no recompile
  """
  has_params = params is not None
  _check_call_convention(logits_fn, has_params)
  spec = jax.ShapeDtypeStruct((1, *tuple(x_shape)[1:]), dtype)
  call = "logits_fn(params, x)" if has_params else "logits_fn(x)"
  context = contextlib.nullcontext() if precision is None else jax.default_matmul_precision(precision)
  with context:
    if has_params:
      # params traced as abstract inputs, as jax.jit traces its arguments: a Python number in
      # params stays data (never a literal of the trace) and two leaves that are one array
      # object stay two weights.
      leaves, treedef = jax.tree.flatten(params)
      try:
        closed, out = jax.make_jaxpr(lambda ls, x: logits_fn(treedef.unflatten(ls), x),
                                     return_shape=True)(leaves, spec)
      except Exception as error:  # the user's code: any exception, explained
        raise _explain(error, call, has_params, spec, lambda x: logits_fn(params, x)) from error
    else:
      leaves = None
      # A fresh function each call: make_jaxpr caches traces by function identity (stale consts).
      model = lambda x: logits_fn(x)
      try:
        closed, out = jax.make_jaxpr(model, return_shape=True)(spec)
      except Exception as error:  # the user's code: any exception, explained
        raise _explain(error, call, has_params, spec, model) from error
    order = None
    if leaves is not None:
      closed, order = _params_to_consts(closed, len(leaves))
    if any(consts for _, consts in _sub_jaxprs(closed.jaxpr)):  # e.g. a jax.jit inside the model
      inputs = closed.jaxpr.constvars[:len(order)] if order is not None else []
      n_in = len(inputs)
      closed = jax.make_jaxpr(lambda ls, x: _inline_jit(closed.jaxpr, list(ls) + closed.consts[n_in:], x))(
          [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type) for v in inputs], spec)
      closed, again = _params_to_consts(closed, n_in)
      order = None if order is None else tuple(order[i] for i in again)
  _check_host_callbacks(closed.jaxpr, call)
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(f"{call} must return one array of logits [B, num_classes], "
                     f"got a pytree {jax.tree.structure(out)}")
  if len(out.shape) != 2 or out.shape[0] != 1 or out.shape[1] < 2:
    raise ValueError(f"{call} must return logits of shape [B, num_classes] with num_classes >= 2 ([B, N >= 2]); "
                     f"on one example (x of shape {spec.shape}) it returned shape {out.shape}")
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(f"{call} must return floating-point logits, got dtype {out.dtype}")
  n_used = len(order) if order is not None else 0
  weights = [as_weight(leaves[i], var) for i, var in zip(order or (), closed.jaxpr.constvars)]
  for var, const in zip(closed.jaxpr.constvars[n_used:], closed.consts[n_used:]):
    if not isinstance(const, (jax.Array, np.ndarray, np.generic)):
      raise TypeError(f"logits_fn closes over a {type(const).__name__}, not an array")
    weights.append(const if isinstance(const, jax.Array) else jnp.asarray(const, var.aval.dtype))
  nested = _nested_arrays(closed.jaxpr)
  fn = JaxprModel(closed.jaxpr, tuple(spec.shape[1:]), dtype, evaluate or eval_closed_jaxpr, nested)
  pure = order is not None and len(weights) == n_used and not nested  # nothing but params
  return PreparedModel(fn, weights, int(out.shape[1]), order if pure else None)


def as_weight(leaf: Any, var: core.Var) -> Any:
  """A leaf of ``params`` as the weight its constvar ``var`` takes (a Python number becomes an array)."""
  if isinstance(leaf, jax.Array) and leaf.dtype == var.aval.dtype:
    return leaf
  return jnp.asarray(leaf, var.aval.dtype)


def _params_to_consts(closed: core.ClosedJaxpr, n: int) -> tuple[core.ClosedJaxpr, tuple]:
  """``closed`` with those of its first ``n`` inputs (the params' leaves) that it uses made constvars.

  They come first, in the order the model first uses them (the order in which a trace that
  closes over them would hold them, so a module and its pure function trace alike); the
  consts of the result hold ``None`` for them: the caller passes the weights. Returns the
  jaxpr and, for each of those constvars, the index of its input.
  """
  jaxpr = closed.jaxpr
  leaf_vars, first = list(jaxpr.invars[:n]), {}
  index = {v: i for i, v in enumerate(leaf_vars)}
  for sub in [jaxpr]:
    for eqn in sub.eqns:
      for v in eqn.invars:
        if isinstance(v, core.Var) and v in index and v not in first:
          first[v] = len(first)
  for v in jaxpr.outvars:
    if isinstance(v, core.Var) and v in index and v not in first:
      first[v] = len(first)
  used = sorted(first, key=first.get)
  debug = jaxpr.debug_info
  if debug is not None and debug.arg_names is not None:
    debug = debug._replace(arg_names=tuple(debug.arg_names[n:]))
  moved = jaxpr.replace(constvars=used + list(jaxpr.constvars), invars=list(jaxpr.invars[n:]), debug_info=debug)
  return core.ClosedJaxpr(moved, [None] * len(used) + list(closed.consts)), tuple(index[v] for v in used)


_CALLBACKS = ("pure_callback", "io_callback")


def _check_host_callbacks(jaxpr: core.Jaxpr, call: str) -> None:
  """A model that calls host code must still be differentiable and batchable by the attack."""
  found = [e.primitive.name for sub in [jaxpr] + [s for s, _ in _sub_jaxprs(jaxpr)] for e in sub.eqns
           if e.primitive.name in _CALLBACKS]
  if not found:
    return
  spec = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in jaxpr.invars]
  weights = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype, weak_type=v.aval.weak_type) for v in jaxpr.constvars]
  one = lambda w, x: jax.core.eval_jaxpr(jaxpr, w, x)[0]
  probe = lambda w, xs: jax.vmap(lambda x: jax.jacfwd(lambda v: one(w, v))(x))(xs)
  try:
    jax.eval_shape(probe, weights, jax.ShapeDtypeStruct((2, *spec[0].shape), spec[0].dtype))
  except Exception as error:
    text = (str(error).splitlines() or [""])[0].rstrip(".")
    raise ValueError(
        f"{call} calls host code (jax.{found[0]}), which the attack cannot use: JSMA differentiates the model "
        f"with respect to x (the forward derivative) and evaluates it on many examples at once (vmap), "
        f"which this callback does not allow ({type(error).__name__}: {text}); "
        "fix: write the model in JAX operations, or give the callback a derivative (jax.custom_jvp) "
        "and a vmap_method (jax.pure_callback(..., vmap_method='sequential'))") from error


def check_batch_coupling(logits_fn: Callable, params: Any, x: Any, per_example: np.ndarray, *, probe: int = 8) -> None:
  """Raises if the model's output for one example depends on the other examples of its batch.

  The attack evaluates the model on each example alone (``vmap`` over batches of one), as
  a model in inference mode is meant to be used. A model that normalises by batch
  statistics (a BatchNorm in training mode, ``(x - x.mean(0)) / x.std(0)``) gives other
  logits on the batch: its attack would report a prediction, and successes, the model on
  the batch does not make. Compares the model on the first ``probe`` examples of ``x``
  (concrete) with ``per_example``, their outputs one at a time.
  """
  n = min(probe, x.shape[0])
  if n < 2:
    return
  with jax.ensure_compile_time_eval():
    batched = logits_fn(x[:n]) if params is None else logits_fn(params, x[:n])
  batched = np.asarray(batched, np.float64)
  alone = np.asarray(per_example[:n], np.float64)
  scale = max(1.0, float(np.max(np.abs(alone))))
  gap = float(np.max(np.abs(batched - alone)))
  if gap > 1e-3 * scale:
    call = "logits_fn(x)" if params is None else "logits_fn(params, x)"
    raise ValueError(
        f"{call} couples the examples of a batch: its logits for one example change with the other examples "
        f"(up to {gap:.3g} apart on the first {n} examples of x, batched vs one at a time), e.g. a BatchNorm in "
        "training mode or a normalisation by batch statistics. The attack evaluates every example alone, so it "
        "would report predictions the model on the batch does not make; fix: put the model in inference mode "
        "(Linen: apply(variables, x, train=False) / use_running_average=True; NNX: model.eval()), or normalise "
        "with fixed statistics")


def check_outputs(outputs: Any, *, probabilities: bool = False, name: str = "logits_fn", rows: Any = None,
                  across: bool = False) -> None:
  """Checks concrete model outputs ``[B, N]``: raises for NaN/inf, warns for (log-)probabilities.

  Args:
    outputs: ``[B, N]`` concrete outputs of a forward pass (skip this under a trace).
    probabilities: whether the attack applies a softmax (JSMA-F).
    name: the argument to name in messages.
    rows: the examples' indices in the whole batch (default ``0 .. B - 1``), when
      ``outputs`` are this process's part of a batch that spans processes.
    across: the batch spans processes: every process calls this with its own rows,
      and they agree (one small collective), so that each raises the same error.
  """
  z = np.asarray(outputs, np.float64)
  rows = np.arange(z.shape[0]) if rows is None else np.asarray(rows)
  bad = rows[~np.all(np.isfinite(z), axis=1)]
  probs = np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, rtol=0, atol=1e-4)
  logps = np.all(z <= 0) and np.allclose(np.logaddexp.reduce(z, axis=1), 0.0, rtol=0, atol=1e-4)
  shown = np.full(6, -1, np.int64)
  shown[:min(6, bad.size)] = bad[:6]
  records = _processes.gather(np.array([z.shape[0], bad.size, probs, logps, *shown], np.int64), across)
  total, count = int(records[:, 0].sum()), int(records[:, 1].sum())
  bad = np.sort(records[:, 4:][records[:, 4:] >= 0])
  if count:
    raise ValueError(f"{name} returned NaN or inf for {count} of {total} examples "
                     f"(indices {bad[:5].tolist()}{', ...' if count > 5 else ''}); "
                     "the attack needs finite logits: check the model and x")
  if records[:, 2].all():
    kind = "probabilities"
  elif records[:, 3].all():
    kind = "log-probabilities"
  else:
    return
  if probabilities and kind == "log-probabilities":
    return  # softmax(log p) == p: JSMA-F is exact
  warnings.warn(f"{name} seems to return {kind} "
                f"(every row {'sums to 1' if kind == 'probabilities' else 'has logsumexp 0'}); "
                "the attack expects logits (JSMA-Z) and applies the softmax itself with probabilities=True "
                "(JSMA-F): return the logits, i.e. drop the final softmax", UserWarning, stacklevel=2)
