"""The one attack step: derivatives -> one batched choice -> update, written once.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings*
(EuroS&P 2016), the body of Algorithm 2 (pairs) and Algorithm 1 (single
features). Every driver (:mod:`jsma_jax.drivers`) runs :func:`step` on a set of
``S`` examples in flight; the arrays here carry that leading ``[S]`` axis
except where a function says "one example".

One step, for every example still running:

1. the model's outputs and the Jacobian rows the rule asks for
   (:func:`jsma_jax.jacobian.rows_one`);
2. the rule's ``K`` candidate maps, each with its direction;
3. the best admissible pair (feature) over all maps: each map oriented to its
   direction, the ``S x K`` rows searched by the exact pruned search of
   :mod:`jsma_jax.pair_search`, then the best map per example (ties to the
   lowest map, then the lowest flat index);
4. the stop checks, else the change: ``|theta|`` in the chosen direction,
   clipped, saturated features leaving the search domain.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax import _validate, pair_search, progress, saliency
from jsma_jax import jacobian as jac_lib
from jsma_jax.drivers import Problem
from jsma_jax.options import Plan
from jsma_jax.types import AttackState, Decision, Maps, StepView, StopReason

Array = jax.Array


class StepInfo(NamedTuple):
  """What a step saw, for instrumentation (drivers ignore it; XLA drops what is unused).

  Example:
    >>> StepInfo._fields  # the second output of :func:`step`
    ('running', 'outputs', 'maps', 'domain', 'choice')
  """

  running: Array  # [S] bool, the examples the step searched
  outputs: Array  # [S, N]
  maps: Maps  # [S, K, M] oriented to each map's direction (admissible: a > 0, b < 0)
  domain: Array  # [S, K, M] bool, each map's domain
  choice: Decision  # [S]


class FeatureSpace(NamedTuple):
  """Where the features of the examples held may go: their bounds and mask, ``[S | 1, M | 1]`` each."""

  clip_min: Array
  clip_max: Array
  mask: Array  # bool, True where a feature may change


def feature_space(problem: Problem, size: int, example: Array | None = None) -> FeatureSpace:
  """The bounds and mask of the ``size`` examples held (``example``: their ``[S]`` batch indices).

  ``example=None`` means the examples held are the batch, in order. Shared
  bounds (``[1, ...]``) are returned as they are, to broadcast.
  """

  def rows(name, v):
    v = jnp.asarray(v)
    v = v.reshape(1, 1) if v.ndim == 0 else v.reshape(1, -1) if v.ndim == 1 else v
    if v.shape[0] == 1:
      return v
    if example is not None:
      return jnp.take(v, example, axis=0, mode="clip")
    if v.shape[0] != size:
      raise ValueError(f"problem.{name} holds {v.shape[0]} examples' values for {size} examples held: "
                       "pass example= (their batch indices)")
    return v

  mask = jnp.ones((1, 1), bool) if problem.mask is None else problem.mask
  return FeatureSpace(rows("clip_min", problem.clip_min), rows("clip_max", problem.clip_max), rows("mask", mask))


def initial_states(problem: Problem, x0: Array, valid: Array, example: Array | None = None) -> AttackState:
  """The states of examples ``x0`` ``[S, M]`` before their first iteration.

  The initial domain is ``initial_domain``'s (``"movable"``: the features that
  can move in a direction the rule uses, per feature's bounds; ``"all"``), in
  both cases within the mask. ``example``: the batch indices of ``x0``'s
  examples (``None``: ``x0`` is the batch).
  """
  plan = problem.plan
  lo, hi, mask = feature_space(problem, x0.shape[0], example)
  if plan.initial_domain == "all":
    domain = jnp.ones(x0.shape, bool)
  elif plan.rule.directions == "both":
    domain = (x0 < hi) | (x0 > lo)
  else:
    domain = jnp.where(problem.theta > 0, x0 < hi, x0 > lo)
  domain = domain & mask
  size = x0.shape[0]
  trace_len = plan.max_iter + 1 if plan.record_trace else 0
  return AttackState(
      x=x0,
      domain=domain,
      last=jnp.zeros(x0.shape, jnp.int8),
      iteration=jnp.zeros((size,), jnp.int32),
      reason=jnp.where(valid, StopReason.RUNNING, StopReason.INVALID_INPUT).astype(jnp.int32),
      predicted=jnp.full((size,), -1, jnp.int32),
      trace=jnp.zeros((size, trace_len), jnp.int32),
  )


def derivatives(problem: Problem, x: Array, label: Array) -> tuple[Array, Array]:
  """Outputs ``[N]`` and the rule's Jacobian rows ``[R, M]`` of one example at ``x`` ``[M]``."""
  rule = problem.plan.rule
  return jac_lib.rows_one(problem.f, x, lambda out: rule.cotangents(out, label), problem.plan.mode,
                          jvp_chunk=problem.plan.jvp_chunk)


def rule_maps(problem: Problem, state: AttackState, rows: Array, outputs: Array, label: Array, lo: Array,
              hi: Array) -> tuple[Maps, Array]:
  """The rule's maps for one example, oriented to their directions, and their domains ``[K, M]``.

  ``lo``, ``hi``: the example's bounds, ``[M]`` or ``[1]``. A map's domain is
  always within the state's (so the mask holds whatever the rule returns).
  """
  plan = problem.plan
  m = state.x.shape[0]
  view = StepView(state.x, state.domain, state.last, problem.theta, jnp.broadcast_to(lo, (m,)),
                  jnp.broadcast_to(hi, (m,)))
  maps = plan.rule.maps(rows, outputs, label, view)
  _validate.check_rule_maps(plan.rule.name, maps, m)
  up = maps.increase[:, None]
  domain = jnp.broadcast_to(state.domain, maps.a.shape) if maps.domain is None else maps.domain & state.domain
  oriented = Maps(jnp.where(up, maps.a, -maps.a), jnp.where(up, maps.b, -maps.b), maps.increase)
  return oriented, domain


def rounded(values: Array, token: Array) -> Array:
  """``values``, each rounded to its dtype before any consumer reads it (bit-identical whatever is fused).

  XLA fuses cheap producers into their consumers: a rule's products (TJSMA's
  ``room_i * dZ/dx_i``) were recomputed inside the pair search's reduction,
  where ``alpha = a_p + a_q`` reads them, and LLVM contracted the product and
  the sum into one fused multiply-add (``vfmadd``, one rounding instead of
  two) wherever its vectorisation of that program allowed. Exact ties
  between pairs then depended on the program (the number of slots) and on
  the CPU (FMA or not), unlike the eager step. ``lax.optimization_barrier``
  does not stop it (XLA:CPU removes barriers before fusing), so the values
  pass through an integer ``and`` with an all-ones word the compiler cannot
  know (from ``token``, int32 counts ``>= 0``): a product must then be rounded
  and stored as a value of its dtype before the sums read it.
  """
  bits = {2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint64}[jnp.dtype(values.dtype).itemsize]
  shift = (jnp.max(token) >> 31).astype(bits)  # 0: counts are never negative, which XLA cannot prove
  ones = jnp.asarray(jnp.iinfo(bits).max, bits) >> shift
  return lax.bitcast_convert_type(lax.bitcast_convert_type(values, bits) & ones, values.dtype)


def power_of_two_normalised(a: Array, b: Array) -> tuple[Array, Array]:
  """``a`` and ``b`` ``[S, K, M]`` scaled per example by one power of two, their largest finite magnitude in [0.5, 1).

  A score is a product of two derivatives, so a model whose logits are scaled by ``c``
  scores ``c ** 2`` times as much: at ``c = 1e20`` the products overflow float32 to ``inf``
  and at ``c = 1e-22`` they underflow to 0, and the search would then decide by index. JSMA's
  choices do not depend on ``c`` (the signs and the order of the scores do not), and a
  multiplication by a power of two is exact in floating point (short of the subnormals), so
  the order of every sum and product of the maps is the same as without it, bit for bit.
  """
  mag = jnp.maximum(jnp.abs(a), jnp.abs(b))
  biggest = jnp.max(jnp.where(jnp.isfinite(mag), mag, 0), axis=(1, 2), keepdims=True)  # [S, 1, 1]
  _, exponent = jnp.frexp(biggest)
  info = jnp.finfo(a.dtype)
  exponent = jnp.clip(exponent, -(info.maxexp - 1), -info.minexp)  # the factor stays a normal number
  factor = jnp.ldexp(jnp.ones_like(biggest), -exponent)
  return a * factor, b * factor


def choose(plan: Plan, maps: Maps, domain: Array, active: Array) -> Decision:
  """The exact best choice of every example ``[S]`` over its ``K`` oriented maps ``[S, K, M]``.

  Rows of inactive examples may get any choice.
  """
  size, k, m = maps.a.shape
  a, b = power_of_two_normalised(maps.a, maps.b)
  a, b, d = (v.reshape(size * k, m) for v in (a, b, domain))
  if plan.pairwise:
    chunk = max(1, min(plan.slots // 8, size // 8))
    flat = pair_search.best_pairs(
        a, b, d, increase=True, k=plan.candidates, chunk=chunk, active=jnp.repeat(active, k), region=plan.region
    )
  else:
    flat = jax.vmap(lambda a, b, d: saliency.best_feature(a, b, d, increase=True))(a, b, d)
  score, p, q = (v.reshape(size, k) for v in flat[:3])
  if k == 1:
    pick = lambda v: v[:, 0]
  else:
    best = jnp.argmax(score, axis=1).astype(jnp.int32)  # the first best map
    pick = lambda v: jnp.take_along_axis(v, best[:, None], axis=1)[:, 0]
  return Decision(pick(score), pick(p), pick(q), pick(maps.increase))


def advance(
    problem: Problem, state: AttackState, outputs: Array, finite: Array, choice: Decision, x0: Array, label: Array,
    lo: Array, hi: Array,
) -> AttackState:
  """Decide whether one example stops, else apply the chosen change.

  Stop checks, in order: non-finite model outputs, the rule's success
  criterion, non-finite derivatives, budget spent, domain exhausted, nothing admissible.
  Otherwise move the chosen feature(s) by ``|theta|`` in the choice's
  direction, clip to the example's bounds ``lo``, ``hi`` (``[M]`` or ``[1]``),
  and remove the ones that saturated in that direction from the domain. A
  stopped example is left unchanged.
  """
  plan = problem.plan
  need = 2 if plan.pairwise else 1
  reason = jnp.select(
      [
          ~jnp.all(jnp.isfinite(outputs)),
          # finite outputs that meet the criterion: a success, whatever the derivatives
          plan.rule.success(outputs, label),
          ~finite,
          state.iteration >= plan.max_iter,
          jnp.sum(state.domain) < need,
          choice.score == -jnp.inf,
      ],
      [StopReason.NON_FINITE, StopReason.SUCCESS, StopReason.NON_FINITE, StopReason.BUDGET_SPENT,
       StopReason.DOMAIN_EXHAUSTED, StopReason.NO_ADMISSIBLE],
      StopReason.RUNNING,
  ).astype(jnp.int32)
  running = state.reason == StopReason.RUNNING
  reason = jnp.where(running, reason, state.reason)
  go = reason == StopReason.RUNNING

  index = jnp.arange(state.x.shape[0])
  changed = go & ((index == choice.p) | (index == choice.q))
  up = choice.increase
  size = jnp.abs(problem.theta)
  x = jnp.where(changed, jnp.clip(state.x + jnp.where(up, size, -size), lo, hi), state.x)
  saturated = jnp.where(up, x >= hi, x <= lo)
  iteration = state.iteration + go.astype(jnp.int32)
  trace = state.trace
  if plan.record_trace:
    trace = jnp.where(go, trace.at[iteration].set(jnp.sum(x != x0, dtype=jnp.int32)), trace)
  predicted = jnp.where(running, jnp.argmax(outputs).astype(jnp.int32), state.predicted)
  return AttackState(
      x=x,
      domain=state.domain & ~(changed & saturated),
      last=jnp.where(changed, jnp.where(up, 1, -1).astype(jnp.int8), state.last),
      iteration=iteration,
      reason=reason,
      predicted=predicted,
      trace=trace,
  )


def _report_progress(every: int, state: AttackState) -> None:
  """Every ``every``-th iteration, the furthest iteration in flight to the host (:mod:`jsma_jax.progress`)."""
  running = state.reason == StopReason.RUNNING
  furthest = jnp.max(jnp.where(running, state.iteration, 0))
  due = jnp.any(running) & (furthest % every == 0)
  jax.lax.cond(due, lambda: jax.debug.callback(progress.report, furthest, jnp.sum(running)), lambda: None)


def step(problem: Problem, state: AttackState, x0: Array, label: Array,
         example: Array | None = None) -> tuple[AttackState, StepInfo]:
  """One iteration for the ``S`` examples of ``state``; a no-op for the stopped ones.

  Args:
    problem: the batch's :class:`~jsma_jax.drivers.Problem` (model, plan, theta, bounds, mask).
    state: :class:`~jsma_jax.types.AttackState` with fields ``[S, ...]``.
    x0: ``[S, M]`` the original inputs of the examples held.
    label: ``[S]`` their labels (targets, or sources for untargeted rules).
    example: ``[S]`` int, the batch index of each example held, for per-example
      bounds (``None``: the examples held are the batch, in order).

  Returns:
    ``(new state, StepInfo)``.

  Example:
    One example, stepped by hand as a driver does (drivers run it inside a
    ``while_loop``):

    >>> from jsma_jax.options import make_plan
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> plan = make_plan(AttackOptions(max_iter=2), EngineOptions(), batch=1, num_features=4, num_rows=2,
    ...                  num_classes=2)
    >>> problem = Problem(lambda v: v @ w, plan, jnp.zeros((1, 4)), jnp.array([1]), jnp.array([True]),
    ...                   jnp.float32(1.0), jnp.float32(0.0), jnp.float32(1.0))
    >>> state = initial_states(problem, problem.x, problem.valid)
    >>> one_step = jax.jit(lambda s: step(problem, s, problem.x, problem.labels))
    >>> state, info = one_step(state)
    >>> state.x.tolist(), state.iteration.tolist(), (int(info.choice.p[0]), int(info.choice.q[0]))
    ([[0.0, 1.0, 0.0, 1.0]], [1], (1, 3))
    >>> state, info = one_step(state)  # argmax == target now: it stops
    >>> StopReason(int(state.reason[0])).name, state.iteration.tolist()
    ('SUCCESS', [1])
  """
  running = state.reason == StopReason.RUNNING
  size = state.x.shape[0]
  space = feature_space(problem, size, example)
  lo, hi = (jnp.broadcast_to(v, (size, v.shape[1])) for v in (space.clip_min, space.clip_max))
  outputs, rows = jax.vmap(lambda v, t: derivatives(problem, v, t))(state.x, label)
  maps, domain = jax.vmap(lambda s, r, o, t, lo, hi: rule_maps(problem, s, r, o, t, lo, hi))(
      state, rows, outputs, label, lo, hi)
  maps = maps._replace(a=rounded(maps.a, state.iteration), b=rounded(maps.b, state.iteration))
  finite = jnp.all(jnp.isfinite(outputs), axis=1) & jnp.all(jnp.isfinite(rows), axis=(1, 2))
  choice = choose(problem.plan, maps, domain, running & finite)
  new = jax.vmap(lambda s, o, ok, c, v, t, lo, hi: advance(problem, s, o, ok, c, v, t, lo, hi))(
      state, outputs, finite, choice, x0, label, lo, hi
  )
  if problem.plan.progress_every:
    _report_progress(problem.plan.progress_every, new)
  return new, StepInfo(running, outputs, maps, domain, choice)
