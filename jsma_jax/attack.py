"""The attack's entry points: :func:`jsma` and :func:`lower`.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings*
(EuroS&P 2016). This is the top layer: it validates the arguments (all before
anything is traced), resolves the options into a static
:class:`~jsma_jax.options.Plan`, and hands one compiled program to the driver
the plan names (:mod:`jsma_jax.drivers`), which loops the one attack step of
:mod:`jsma_jax.step`. The whole batch is one compiled program with no host
synchronisation inside the loop.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jsma_jax import _processes, _validate, batching
from jsma_jax import jacobian as jac_lib
from jsma_jax import lockstep as _lockstep  # noqa: F401  (registers the "lockstep" driver)
from jsma_jax import refill as _refill  # noqa: F401  (registers the "refill" driver)
from jsma_jax import rewrite as rewrite_lib
from jsma_jax import user_model as model_lib
from jsma_jax.drivers import Problem, get_driver
from jsma_jax.options import DEFAULT_GAMMA, AttackOptions, EngineOptions, Plan, make_plan, resolve
from jsma_jax.types import AttackState, JSMAResult, StopReason

Array = jax.Array


LONG_BUDGET = 10_000  # iterations per example past which a budget set by gamma alone is announced


class Prepared(NamedTuple):
  """A validated call: what the compiled attack takes."""

  logits_fn: Callable[..., Array]  # static: the model as a jaxpr (model.JaxprModel), weights apart
  params: Any  # the model's weights (data)
  x: Array  # [B', *shape], padded to the bucket
  labels: Array  # [B'] int32
  theta: Any
  clip_min: Any  # [B' | 1, M | 1] (see _validate.check_feature_space)
  clip_max: Any  # [B' | 1, M | 1]
  plan: Plan  # static
  batch: int  # B, the examples asked for
  mask: Any = None  # [B' | 1, M | 1] bool


def prepare(logits_fn, x, targets, params, options: AttackOptions | None, engine: EngineOptions | None,
            overrides: dict) -> Prepared:
  """Validate every argument and the model (before the attack is traced) and resolve the plan.

  The model is traced to a jaxpr with its weights as data (:mod:`jsma_jax.user_model`), so a
  call always sees the model's current weights, and new weights never recompile.
  """
  options, engine = resolve(options, engine, overrides)
  x, targets = _validate.check_inputs(x, targets)
  model, key = _model(logits_fn, params, x, engine)
  _validate.check_model(logits_fn, params, x)  # the output's batch axis, at the batch's own size
  _validate.check_values(x, targets, model.num_classes)
  lo, hi, mask = _validate.check_feature_space(x, options.clip_min, options.clip_max, options.mask,
                                               need=2 if options.pairwise else 1)
  if _validate.is_concrete(x) and not model_lib.is_traced(model.weights):
    across = _processes.spans_processes(x)  # a global array: check the rows this process holds
    rows, local = _processes.local_rows(x) if across else (None, x)
    outputs = _outputs(model, local)
    model_lib.check_outputs(outputs, probabilities=options.probabilities, rows=rows, across=across)
    coupled = None
    try:  # on this process's rows, and probed or not per process: agreed by every process below
      if key is None or key not in _PROBED:  # a pure function's reused trace is probed once
        model_lib.check_batch_coupling(logits_fn, params, local, outputs)
        if key is not None and x.shape[0] >= 2:
          _PROBED.add(key)
    except ValueError as e:
      coupled = e
    _processes.raise_everywhere(coupled, across)
    if options.rule.targeted and _validate.is_concrete(targets):
      mine = _processes.local_rows(targets)[1] if across else targets
      _validate.warn_targets_already_predicted(mine, outputs.argmax(axis=1))
  batch = x.shape[0]
  size = batching.bucket_size(batch) if engine.pad_batches else batch
  num_features = math.prod(x.shape[1:])
  rule = options.rule
  num_rows = jax.eval_shape(lambda: rule.cotangents(jnp.zeros(model.num_classes, x.dtype), jnp.int32(0))).shape[0]
  plan = make_plan(options, engine, batch=size, num_features=num_features, num_rows=num_rows,
                   num_classes=model.num_classes)
  if options.max_iter is None and options.max_changes is None and plan.max_iter > LONG_BUDGET:
    warnings.warn(
        f"gamma={options.gamma if options.gamma is not None else DEFAULT_GAMMA} allows {plan.max_iter:,} "
        f"iterations per example on these {num_features:,} features: each iteration differentiates the model, so "
        f"an attack that does not succeed early may run for hours with nothing said; pass max_iter= (iterations), "
        f"max_changes= (changed features) or a smaller gamma= for the budget you mean",
        UserWarning, stacklevel=3)
  x, targets = batching.pad_batch((x, jnp.asarray(targets).astype(jnp.int32)), size)
  lo, hi, mask = (batching.pad_batch(v, size) if v.shape[0] > 1 else v for v in (lo, hi, mask))
  return Prepared(model.fn, model.weights, x, targets, options.theta, lo, hi, plan, batch, mask)


_PURE = collections.OrderedDict()  # (logits_fn, params structure, x spec, engine) -> JaxprModel, for pure functions
_PURE_SIZE = 64
_PROBED = set()  # keys of _PURE whose model was checked for batch coupling on >= 2 examples


def _model(logits_fn, params, x, engine: EngineOptions) -> tuple[model_lib.PreparedModel, Any]:
  """The user's model as a static jaxpr and its weights (:func:`jsma_jax.user_model.prepare_model`), and its cache key.

  The key is None unless the model is a pure function whose trace is kept (see below).

  A function given with ``params=`` whose trace holds no array but the leaves of
  ``params`` (traced as abstract inputs, as ``jax.jit`` traces its arguments) is pure:
  its jaxpr is kept (at most ``_PURE_SIZE`` of them) and reused with the new ``params``,
  so it is traced once, like a function passed to ``jax.jit``, and every call uses the
  current value of every leaf (Python numbers included). Everything else (modules,
  closures over arrays) is traced on every call, so its current weights are always the
  ones attacked.
  """
  evaluate = rewrite_lib.eval_jaxpr_loop_friendly if engine.rewrites(engine.target()) else None
  leaves, treedef = jax.tree.flatten(params)
  key = None
  if params is not None:
    avals = tuple((np.shape(v), str(getattr(v, "dtype", None) or np.asarray(v).dtype), type(v).__name__)
                  for v in leaves)
    try:
      key = (logits_fn, treedef, avals, x.shape[1:], str(x.dtype), engine.precision, evaluate)
      hash(key)
    except TypeError:
      key = None
  if key is not None and key in _PURE:
    fn, order, num_classes = _PURE[key]
    _PURE.move_to_end(key)
    weights = [model_lib.as_weight(leaves[i], var) for i, var in zip(order, fn.jaxpr.constvars)]
    return model_lib.PreparedModel(fn, weights, num_classes, order), key
  model = model_lib.prepare_model(logits_fn, params, x.shape, x.dtype, evaluate=evaluate,
                                  precision=engine.precision)
  if key is not None and model.leaf_order is not None:  # every weight is a leaf of params: nothing hidden
    _PURE[key] = (model.fn, model.leaf_order, model.num_classes)
    while len(_PURE) > _PURE_SIZE:
      _PROBED.discard(_PURE.popitem(last=False)[0])
    return model, key
  return model, None


@functools.partial(jax.jit, static_argnames=("fn",))
def _forward(fn, weights, x):
  return fn(weights, x)


def _outputs(model: model_lib.PreparedModel, x, chunk: int = 1024) -> np.ndarray:
  """The model's outputs at concrete ``x``, ``chunk`` examples per call (one compiled shape).

  For the checks before the attack, the model runs as traced: the loop-friendly rewrite
  (:mod:`jsma_jax.rewrite`) is for derivatives inside the attack's loop, and outside a
  loop it only costs compile time (the shipped LeNet's forward pass on 270 examples
  compiled about 20x longer rewritten than as traced, ``benchmarks/RESULTS.md``).
  """
  fn = model.fn.with_evaluate(model_lib.eval_closed_jaxpr)
  parts = []
  with jax.ensure_compile_time_eval():  # concrete even when called inside the user's jit
    for _, n, xs in batching.chunks(x, max(1, min(chunk, x.shape[0]))):
      parts.append(np.asarray(_forward(fn, model.weights, xs))[:n])
  return np.concatenate(parts) if parts else np.zeros((0, model.num_classes))


@functools.partial(jax.jit, static_argnames=("logits_fn", "plan"))
def _compiled(logits_fn, params, x, labels, theta, clip_min, clip_max, batch, mask, *, plan: Plan) -> JSMAResult:
  # The precision applies to the model's matmuls and convolutions, and to their derivatives, as they are traced.
  precision = contextlib.nullcontext() if plan.precision is None else jax.default_matmul_precision(plan.precision)
  with precision:
    return attack_batch(logits_fn, params, x, labels, theta, clip_min, clip_max, batch, plan, mask)


def attack_batch(logits_fn, params, x, labels, theta, clip_min, clip_max, batch, plan: Plan, mask=None) -> JSMAResult:
  """The traced attack of a batch whose first ``batch`` examples are real (the rest is padding)."""
  problem = make_problem(logits_fn, params, x, labels, theta, clip_min, clip_max, batch, plan, mask)
  final = get_driver(plan.schedule)(problem)
  return finalize(plan, x, final)


def make_problem(logits_fn, params, x, labels, theta, clip_min, clip_max, batch, plan: Plan, mask=None) -> Problem:
  """The :class:`~jsma_jax.drivers.Problem` a driver runs, from the arguments of a prepared call (traceable).

  ``clip_min``, ``clip_max`` and ``mask`` are ``[B | 1, M | 1]`` (or scalars), as
  :func:`jsma_jax._validate.check_feature_space` returns them; ``mask=None``: all features.
  """
  # The attack's result is a constant of the model's parameters and inputs: gradients through it are zero.
  params, x = jax.lax.stop_gradient((params, x))
  out = jac_lib.output_fn(logits_fn, params, has_params=True, probabilities=plan.probabilities)
  shape = x.shape[1:]
  f = lambda v: out(v.reshape((1,) + shape))[0]
  as_rows = lambda v: v.reshape(1, 1) if v.ndim == 0 else v
  theta = jnp.asarray(theta, x.dtype)
  clip_min, clip_max = (as_rows(jnp.asarray(v, x.dtype)) for v in (clip_min, clip_max))
  mask = jnp.ones((1, 1), bool) if mask is None else as_rows(jnp.asarray(mask, bool))
  x_flat = x.reshape(x.shape[0], -1)
  # Bounds that pin an example (lo == hi == x) are valid: it gets its own status, SUCCESS when already there,
  # else DOMAIN_EXHAUSTED (nothing can move); bounds that pin every example are refused when concrete (_validate).
  valid = (
      (jnp.arange(x.shape[0]) < batch)  # not padding
      # theta and the bounds traced by the caller's jit: checked here, per example (see _validate)
      & jnp.isfinite(theta) & (theta != 0)
      & jnp.all(jnp.isfinite(clip_min) & jnp.isfinite(clip_max) & (clip_min <= clip_max), axis=1)
      & (labels >= 0) & (labels < plan.num_classes)
      & jnp.all(jnp.isfinite(x_flat) & (x_flat >= clip_min) & (x_flat <= clip_max), axis=1)
  )
  return Problem(f, plan, x_flat, labels, valid, theta, clip_min, clip_max, mask)


def finalize(plan: Plan, x: Array, final: AttackState) -> JSMAResult:
  """Turn final loop states ``[B', ...]`` into a :class:`JSMAResult` shaped like ``x``."""
  x_flat = x.reshape(x.shape[0], -1)
  n_changed = jnp.sum(final.x != x_flat, axis=1, dtype=jnp.int32)
  trace = None
  if plan.record_trace:
    k = jnp.arange(plan.max_iter + 1)
    trace = jnp.where(k[None, :] <= final.iteration[:, None], final.trace, n_changed[:, None])
  return JSMAResult(
      x_adv=final.x.reshape(x.shape),
      success=final.reason == StopReason.SUCCESS,
      iterations=final.iteration,
      n_changed=n_changed,
      stop_reason=final.reason,
      predicted=final.predicted,
      trace=trace,
      rule=plan.rule.name,
      criterion=plan.rule.criterion,
  )


def jsma(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    options: AttackOptions | None = None,
    engine: EngineOptions | None = None,
    **overrides: Any,
) -> JSMAResult:
  """Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016), batched.

  For every example, while the rule's criterion (``argmax F(x*) == t`` for the
  paper's rule) does not hold, the budget is not spent and the search domain
  is not exhausted: compute the forward derivative, pick the admissible pair
  ``(p, q)`` maximising ``-alpha * beta`` (Algorithm 3; the single feature
  maximising Eq. 8/9 when ``pairwise=False``), move it by ``theta``, clip to
  ``[clip_min, clip_max]``, and drop saturated features from the search
  domain. The budget is ``floor(M * gamma / 2)`` iterations for pairs and
  ``floor(M * gamma)`` for single features.

  Args:
    logits_fn: the model, ``[B, *shape] -> [B, N]`` logits; called as
      ``logits_fn(params, x)`` when ``params`` is given (new weights then never
      recompile), else ``logits_fn(x)``. Must be hashable; pass the same
      function object to reuse the compiled attack.
    x: ``[B, *shape]`` float inputs within ``[clip_min, clip_max]`` (per feature
      and example when the bounds are arrays).
    targets: ``[B]`` int labels: target classes (see :mod:`jsma_jax.targets`),
      or the source classes for an untargeted rule.
    params: optional pytree of model parameters, traced as data.
    options: :class:`~jsma_jax.options.AttackOptions`, the attack's
      hyperparameters (``theta``, ``gamma``, ``clip_min``, ``clip_max``,
      ``pairwise``, ``probabilities``, ``initial_domain``, ``max_iter``,
      ``rule``, ``record_trace``, ``mask``, ``max_changes``); the paper's by
      default. The bounds may be per feature or per example, and ``mask``
      restricts the features that may change (docs/feature-spaces.md).
    engine: :class:`~jsma_jax.options.EngineOptions`, how it runs
      (``schedule``, ``slots``, ``candidates``, ``region``, ``jacobian``,
      ``precision``, ``pad_batches``).
    **overrides: any field of either, e.g. ``theta=-1.0`` or
      ``schedule="lockstep"``; see those classes for what each means.

  Returns:
    :class:`~jsma_jax.types.JSMAResult` with per-example ``x_adv``,
    ``success``, ``iterations``, ``n_changed``, ``stop_reason``,
    ``predicted`` (and ``trace`` ``[B, max_iter + 1]`` when asked), and the
    rule's name and success criterion. Inside a ``jax.jit`` of the caller's,
    where values cannot be checked, examples with a label out of range or
    ``x`` outside the clip range or not finite are returned unchanged with
    ``StopReason.INVALID_INPUT``.

  Example:
    A 2-class linear model on 4 features; the second example is already
    classified as its target, so it takes 0 steps:

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> x = jnp.array([[0., 0., 0., 0.], [0., 1., 0., 0.]])
    >>> result = jsma(f, x, jnp.array([1, 1]), max_iter=2)
    >>> result.success.tolist(), result.iterations.tolist(), result.n_changed.tolist()
    ([True, True], [1, 0], [2, 0])
    >>> result.x_adv[0].tolist()  # the pair (1, 3) moved by theta = 1
    [0.0, 1.0, 0.0, 1.0]
    >>> [StopReason(r).name for r in result.stop_reason.tolist()]
    ['SUCCESS', 'SUCCESS']
  """
  p = prepare(logits_fn, x, targets, params, options, engine, overrides)
  result = _compiled(p.logits_fn, p.params, p.x, p.labels, p.theta, p.clip_min, p.clip_max, p.batch, p.mask,
                     plan=p.plan)
  return result if p.x.shape[0] == p.batch else jax.tree.map(lambda v: v[: p.batch], result)


def lower(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    options: AttackOptions | None = None,
    engine: EngineOptions | None = None,
    platforms: tuple[str, ...] | None = None,
    **overrides: Any,
) -> jax.stages.Lowered:
  """The attack :func:`jsma` would run, lowered and not run: for ``.compile().memory_analysis()`` or HLO.

  Args:
    logits_fn, x, targets, params, options, engine, **overrides: as for
      :func:`jsma` (validated the same way).
    platforms: lower for these platforms (``"cpu"``, ``"cuda"``, ``"rocm"``,
      ``"tpu"``), which this machine need not have; the attack takes the
      defaults of the first (``EngineOptions.platform``: its slot count, the
      rewrite only on ``"cpu"``) unless ``platform`` is given. Default: this
      machine's backend.

  Returns:
    the ``jax.stages.Lowered`` program; ``.as_text()`` is its StableHLO,
    ``.compile()`` compiles it (``.memory_analysis()``, ``.cost_analysis()``;
    only for this machine's platform).

  Example:
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> lowered = lower(f, jnp.zeros((2, 4)), jnp.array([1, 1]), max_iter=2)
    >>> "stablehlo.while" in lowered.as_text()  # the attack's loop
    True
    >>> for_gpu = lower(f, jnp.zeros((2, 4)), jnp.array([1, 1]), max_iter=2, platforms=("cuda",))
    >>> "stablehlo.while" in for_gpu.as_text()  # with a GPU's defaults, from this machine
    True
  """
  platforms = _validate.check_platforms(platforms)
  if platforms is not None and "platform" not in overrides and (engine is None or engine.platform is None):
    overrides = {**overrides, "platform": platforms[0]}
  p = prepare(logits_fn, x, targets, params, options, engine, overrides)
  traced = _compiled.trace(p.logits_fn, p.params, p.x, p.labels, p.theta, p.clip_min, p.clip_max, p.batch, p.mask,
                           plan=p.plan)
  return traced.lower(lowering_platforms=platforms)


def cache_size() -> int:
  """How many compiled attacks are cached (to check that a call did not recompile).

  Returns:
    the number of entries in the compiled attack's cache, an int.

  Example:
    New weights of the same shapes (passed as ``params``) reuse the compiled attack:

    >>> apply_fn = lambda w, x: x.reshape(x.shape[0], -1) @ w
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])
    >>> x, targets = jnp.zeros((2, 4)), jnp.array([1, 1])
    >>> _ = jsma(apply_fn, x, targets, params=w, max_iter=2)
    >>> before = cache_size()
    >>> _ = jsma(apply_fn, x, targets, params=2 * w, max_iter=2)
    >>> cache_size() == before
    True
  """
  return _compiled._cache_size()
