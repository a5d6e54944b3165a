"""The crafting loop: Algorithm 2 (pairs) and Algorithm 1 (single features).

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings*
(EuroS&P 2016). The attack is written for one example as a
``jax.lax.while_loop`` and batched with ``jax.vmap``; the whole batch is one
compiled program with no host synchronisation inside the loop. This module is
the only place with control flow.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jsma_jax import _validate
from jsma_jax import jacobian as jac_lib
from jsma_jax import saliency
from jsma_jax.rules import SaliencyRule, jsma_rule

Array = jax.Array


class StopReason(enum.IntEnum):
  """Why an example stopped (``JSMAResult.stop_reason``)."""

  RUNNING = 0  # never in a returned result
  REACHED_TARGET = 1  # the rule's criterion holds (argmax == target)
  BUDGET_SPENT = 2  # max_iter iterations done
  NO_ADMISSIBLE = 3  # no admissible pair (feature) left in the search domain
  DOMAIN_EXHAUSTED = 4  # fewer than 2 (1 for single features) features left to change


class JSMAResult(NamedTuple):
  """What :func:`jsma` returns, one entry per example."""

  x_adv: Array  # [B, *shape] adversarial inputs, dtype of x
  success: Array  # [B] bool, stop_reason == REACHED_TARGET
  iterations: Array  # [B] int32, pair (feature) updates applied
  n_changed: Array  # [B] int32, features that differ from x (L0)
  stop_reason: Array  # [B] int32, a StopReason
  predicted: Array  # [B] int32, argmax of the model's outputs at x_adv
  trace: Array | None = None  # [B, max_iter + 1] int32, L0 after k iterations (record_trace)


class AttackState(NamedTuple):
  """Loop state of one example; dtypes never change across iterations."""

  x: Array  # [M] current input (flat), dtype of x
  domain: Array  # [M] bool, features that may still change (Gamma)
  iteration: Array  # [] int32
  reason: Array  # [] int32 StopReason, RUNNING while the loop goes on
  predicted: Array  # [] int32
  trace: Array  # [T] int32, L0 after k iterations (T = max_iter + 1, or 0)


class Config(NamedTuple):
  """Static (hashed) settings of one compiled attack."""

  rule: SaliencyRule
  mode: str  # resolved Jacobian mode
  pairwise: bool
  increase: bool
  max_iter: int
  initial_domain: str  # "movable" | "all"
  probabilities: bool
  has_params: bool
  record_trace: bool
  schedule: str = "refill"  # "refill" | "lockstep"
  slots: int = 256  # examples in flight (refill)
  candidates: int = 64  # top-K features of the pruned pair search (0: dense)
  region: int = 0  # most features of the region search, the pruned search's second tier (0: none)
  precision: str | None = "highest"  # jax.default_matmul_precision while tracing the model (None: the caller's)


def initial_state(x0: Array, config: Config, clip_min: Array, clip_max: Array) -> AttackState:
  """The state of one example before its first iteration (``x0`` flat ``[M]``)."""
  if config.initial_domain == "all":
    domain = jnp.ones(x0.shape, bool)
  elif config.increase:
    domain = x0 < clip_max
  else:
    domain = x0 > clip_min
  trace_len = config.max_iter + 1 if config.record_trace else 0
  return AttackState(
      x=x0,
      domain=domain,
      iteration=jnp.zeros((), jnp.int32),
      reason=jnp.asarray(StopReason.RUNNING, jnp.int32),
      predicted=jnp.zeros((), jnp.int32),
      trace=jnp.zeros((trace_len,), jnp.int32),
  )


def derivatives(f: Callable[[Array], Array], config: Config, x: Array, target: Array) -> tuple[Array, Array, Array]:
  """Outputs ``[N]`` and the saliency inputs ``a``, ``b`` ``[M]`` of one example at ``x``."""
  rule = config.rule
  outputs, rows = jac_lib.rows_one(f, x, lambda out: rule.cotangents(out, target), config.mode)
  a, b = rule.features(rows, outputs, x, target)
  return outputs, a, b


def choose(config: Config, a: Array, b: Array, domain: Array) -> saliency.Choice:
  """The dense exact choice for one example (Algorithm 3, or Algorithm 1's feature)."""
  if config.pairwise:
    return saliency.best_pair(a, b, domain, increase=config.increase)
  return saliency.best_feature(a, b, domain, increase=config.increase)


def advance(
    config: Config,
    state: AttackState,
    outputs: Array,
    choice: saliency.Choice,
    x0: Array,
    target: Array,
    theta: Array,
    clip_min: Array,
    clip_max: Array,
) -> AttackState:
  """Decide whether the example stops, else apply the chosen change (one example).

  Stop checks, in order: target reached, budget spent, domain exhausted,
  nothing admissible. Otherwise add ``theta`` to the chosen feature(s), clip,
  and remove the ones that saturated in the attack's direction from the domain.
  A stopped example is left unchanged.
  """
  need = 2 if config.pairwise else 1
  reason = jnp.select(
      [
          config.rule.reached(outputs, target),
          state.iteration >= config.max_iter,
          jnp.sum(state.domain) < need,
          choice.score == -jnp.inf,
      ],
      [StopReason.REACHED_TARGET, StopReason.BUDGET_SPENT, StopReason.DOMAIN_EXHAUSTED, StopReason.NO_ADMISSIBLE],
      StopReason.RUNNING,
  ).astype(jnp.int32)
  running = state.reason == StopReason.RUNNING
  reason = jnp.where(running, reason, state.reason)
  go = reason == StopReason.RUNNING

  index = jnp.arange(state.x.shape[0])
  changed = go & ((index == choice.p) | (index == choice.q))
  x = jnp.where(changed, jnp.clip(state.x + theta, clip_min, clip_max), state.x)
  saturated = (x >= clip_max) if config.increase else (x <= clip_min)
  iteration = state.iteration + go.astype(jnp.int32)
  trace = state.trace
  if config.record_trace:
    trace = jnp.where(go, trace.at[iteration].set(jnp.sum(x != x0, dtype=jnp.int32)), trace)
  predicted = jnp.where(running, jnp.argmax(outputs).astype(jnp.int32), state.predicted)
  return AttackState(
      x=x,
      domain=state.domain & ~(changed & saturated),
      iteration=iteration,
      reason=reason,
      predicted=predicted,
      trace=trace,
  )


def step(f, config: Config, state: AttackState, x0, target, theta, clip_min, clip_max) -> AttackState:
  """One iteration of Algorithm 2 (or 1) for one example; a no-op once stopped."""
  outputs, a, b = derivatives(f, config, state.x, target)
  choice = choose(config, a, b, state.domain)
  return advance(config, state, outputs, choice, x0, target, theta, clip_min, clip_max)


def attack_one(f, config: Config, x0: Array, target: Array, theta, clip_min, clip_max) -> AttackState:
  """The whole attack on one flat example ``x0 [M]``: a ``lax.while_loop``."""
  state = initial_state(x0, config, clip_min, clip_max)
  return jax.lax.while_loop(
      lambda s: s.reason == StopReason.RUNNING,
      lambda s: step(f, config, s, x0, target, theta, clip_min, clip_max),
      state,
  )


def finalize(config: Config, x: Array, final: AttackState) -> JSMAResult:
  """Turn final loop states ``[B, ...]`` into a :class:`JSMAResult` shaped like ``x``."""
  x_flat = x.reshape(x.shape[0], -1)
  n_changed = jnp.sum(final.x != x_flat, axis=1, dtype=jnp.int32)
  trace = None
  if config.record_trace:
    k = jnp.arange(config.max_iter + 1)
    trace = jnp.where(k[None, :] <= final.iteration[:, None], final.trace, n_changed[:, None])
  return JSMAResult(
      x_adv=final.x.reshape(x.shape),
      success=final.reason == StopReason.REACHED_TARGET,
      iterations=final.iteration,
      n_changed=n_changed,
      stop_reason=final.reason,
      predicted=final.predicted,
      trace=trace,
  )


@functools.partial(jax.jit, static_argnames=("logits_fn", "config"))
def _jsma_compiled(logits_fn, params, x, targets, theta, clip_min, clip_max, *, config: Config) -> JSMAResult:
  # The precision applies to the model's matmuls and convolutions, and to their derivatives, as they are traced.
  precision = contextlib.nullcontext() if config.precision is None else jax.default_matmul_precision(config.precision)
  with precision:
    return _attack_batch(logits_fn, params, x, targets, theta, clip_min, clip_max, config)


def _attack_batch(logits_fn, params, x, targets, theta, clip_min, clip_max, config: Config) -> JSMAResult:
  out = jac_lib.output_fn(logits_fn, params, has_params=config.has_params, probabilities=config.probabilities)
  shape = x.shape[1:]
  f = lambda v: out(v.reshape((1,) + shape))[0]
  theta, clip_min, clip_max = (jnp.asarray(v, x.dtype) for v in (theta, clip_min, clip_max))
  x_flat, targets = x.reshape(x.shape[0], -1), targets.astype(jnp.int32)
  if config.schedule == "refill":
    from jsma_jax import scheduler  # the scheduler builds on this module

    final = scheduler.run_slots(
        f, config, x_flat, targets, theta, clip_min, clip_max,
        slots=config.slots, candidates=config.candidates or x_flat.shape[1], chunk=max(1, config.slots // 8),
    )
  else:
    one = lambda x0, t: attack_one(f, config, x0, t, theta, clip_min, clip_max)
    final = jax.vmap(one)(x_flat, targets)
  return finalize(config, x, final)


def make_config(
    logits_fn, params, x, targets, *, theta, gamma, clip_min, clip_max, pairwise, jacobian,
    probabilities, initial_domain, max_iter, rule, record_trace, schedule="refill", slots=None, candidates=None,
    region=None, precision="highest",
) -> tuple[Config, Any, Any, tuple[float, float, float]]:
  """Validate every argument (before any tracing) and build the static config."""
  theta, gamma, clip_min, clip_max = _validate.check_hyperparameters(theta, gamma, clip_min, clip_max)
  x, targets = _validate.check_inputs(x, targets)
  _validate.check_choice("jacobian", jacobian, jac_lib.MODES)
  _validate.check_choice("initial_domain", initial_domain, ("movable", "all"))
  for name, flag in (("pairwise", pairwise), ("probabilities", probabilities), ("record_trace", record_trace)):
    if not isinstance(flag, bool):
      raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
  _validate.check_choice("schedule", schedule, ("refill", "lockstep"))
  if precision is not None:
    _validate.check_choice("precision", precision, PRECISIONS)
  for name, value in (("slots", slots), ("candidates", candidates), ("region", region)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "slots" else 0)):
      raise ValueError(f"{name} must be {'a positive' if name == 'slots' else 'a non-negative'} int or None, got {value!r}")
  rule = jsma_rule() if rule is None else rule
  if not isinstance(rule, SaliencyRule):
    raise TypeError(f"rule must be a jsma_jax.SaliencyRule, got {type(rule).__name__}")
  num_classes = _validate.check_model(logits_fn, params, x)
  _validate.check_values(x, targets, num_classes, clip_min, clip_max)
  num_features = math.prod(x.shape[1:])
  if max_iter is None:
    max_iter = _validate.max_iterations(num_features, gamma, pairwise=pairwise)
    if max_iter < 1:
      raise ValueError(
          f"gamma={gamma} allows no iteration on {num_features} features "
          f"(floor(M * gamma{' / 2' if pairwise else ''}) = 0); raise gamma"
      )
  elif isinstance(max_iter, bool) or not isinstance(max_iter, (int, jnp.integer)) or max_iter < 1:
    raise ValueError(f"max_iter must be a positive int or None, got {max_iter!r}")
  num_rows = jax.eval_shape(lambda: rule.cotangents(jnp.zeros(num_classes, x.dtype), jnp.int32(0))).shape[0]
  config = Config(
      rule=rule,
      mode=jac_lib.resolve_mode(jacobian, num_features, num_classes, num_rows),
      pairwise=pairwise,
      increase=theta > 0,
      max_iter=int(max_iter),
      initial_domain=initial_domain,
      probabilities=probabilities,
      has_params=params is not None,
      record_trace=record_trace,
      schedule=schedule,
      slots=min(x.shape[0], default_slots() if slots is None else slots),
      candidates=default_candidates(num_features) if candidates is None else candidates,
      region=default_region(num_features) if region is None else region,
      precision=precision,
  )
  return config, x, targets, (theta, clip_min, clip_max)


PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "default", "bfloat16", "fastest")


def default_slots() -> int:
  """Examples in flight for the refill schedule: enough to fill the device."""
  return 256 if jax.default_backend() == "cpu" else 8192


def default_candidates(num_features: int) -> int:
  """Top-K features of the pruned pair search (see :mod:`jsma_jax.pair_search`)."""
  return min(num_features, 64)


def default_region(num_features: int) -> int:
  """Most features of the region search, the second tier of :mod:`jsma_jax.pair_search`."""
  return min(1024, num_features // 4)  # the region search costs region^2 / 2 pairs, the dense one M^2 / 2


def jsma(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    theta: float = 1.0,
    gamma: float = 0.145,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    pairwise: bool = True,
    jacobian: str = "auto",
    probabilities: bool = False,
    initial_domain: str = "movable",
    max_iter: int | None = None,
    rule: SaliencyRule | None = None,
    record_trace: bool = False,
    schedule: str = "refill",
    slots: int | None = None,
    candidates: int | None = None,
    region: int | None = None,
    precision: str | None = "highest",
) -> JSMAResult:
  """Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016), batched.

  For every example, while ``argmax F(x*) != t``, the budget is not spent and
  the search domain is not exhausted: compute the forward derivative, pick the
  admissible pair ``(p, q)`` maximising ``-alpha * beta`` (Algorithm 3; the
  single feature maximising Eq. 8/9 when ``pairwise=False``), add ``theta`` to
  it, clip to ``[clip_min, clip_max]``, and drop saturated features from the
  search domain. The budget is ``floor(M * gamma / 2)`` iterations for pairs
  and ``floor(M * gamma)`` for single features.

  Args:
    logits_fn: the model, ``[B, *shape] -> [B, N]`` logits; called as
      ``logits_fn(params, x)`` when ``params`` is given (new weights then never
      recompile), else ``logits_fn(x)``. Must be hashable; pass the same
      function object to reuse the compiled attack.
    x: ``[B, *shape]`` float inputs within ``[clip_min, clip_max]``.
    targets: ``[B]`` int target classes (see :mod:`jsma_jax.targets`).
    params: optional pytree of model parameters, traced as data.
    theta: change per step; ``> 0`` increases features, ``< 0`` decreases.
    gamma: maximum distortion as a fraction of the ``M`` features.
    clip_min, clip_max: bounds of the input domain.
    pairwise: Algorithm 2/3 (pairs, the paper's MNIST attack) or Algorithm 1.
    jacobian: ``"auto"``, ``"jacfwd"``, ``"jacrev"`` or ``"reduced"``.
    probabilities: differentiate the softmax (JSMA-F), not the logits (JSMA-Z).
    initial_domain: ``"movable"`` (features that can still move in the
      attack's direction) or ``"all"`` (the paper's literal Algorithm 2).
    max_iter: override the budget derived from ``gamma``.
    rule: a :class:`~jsma_jax.rules.SaliencyRule`; the paper's by default.
    record_trace: also return the L0 distortion after every iteration.
    schedule: ``"refill"`` (default: ``slots`` examples in flight, each slot
      refilled with the next example as soon as its attack stops, so the cost
      follows the average iteration count) or ``"lockstep"`` (a vmapped
      ``while_loop`` over the whole batch). Both give identical results.
    slots: examples in flight for ``"refill"`` (default 256 on CPU, 8192 on
      accelerators; at most ``B``). Memory grows linearly with it.
    candidates: top-K features of the exact pruned pair search (default
      ``min(M, 64)``; ``0`` for the dense search). Results do not depend on it.
    region: most features of the pruned search's second tier, the region
      search, for the examples whose top-``candidates`` certificate fails
      (default ``min(1024, M // 4)``; ``0``: straight to the dense search).
      Results do not depend on it.
    precision: matmul and convolution precision for float32 models while the
      attack is traced (``jax.default_matmul_precision``): ``"highest"``
      (default: true float32 everywhere, the reference's arithmetic),
      ``"tensorfloat32"``, ``"bfloat16"``, ``"default"`` (the platform's
      choice: TF32 on recent NVIDIA GPUs, bfloat16 passes on TPUs) and the
      other names JAX accepts; ``None`` keeps the caller's setting. Lower
      precision changes the forward derivative, and so may change choices.

  Returns:
    :class:`JSMAResult` with per-example ``x_adv``, ``success``,
    ``iterations``, ``n_changed``, ``stop_reason``, ``predicted`` (and
    ``trace`` ``[B, max_iter + 1]`` when asked).

  Example:
    >>> result = jsma(apply_fn, images, targets, params=params)
    >>> result.success.mean(), (result.n_changed / 784).mean()
  """
  config, x, targets, (theta, clip_min, clip_max) = make_config(
      logits_fn, params, x, targets, theta=theta, gamma=gamma, clip_min=clip_min, clip_max=clip_max,
      pairwise=pairwise, jacobian=jacobian, probabilities=probabilities, initial_domain=initial_domain,
      max_iter=max_iter, rule=rule, record_trace=record_trace, schedule=schedule, slots=slots,
      candidates=candidates, region=region, precision=precision,
  )
  return _jsma_compiled(logits_fn, params, x, targets, theta, clip_min, clip_max, config=config)
