"""The attack's options, each with one home: what the attack does, and how it runs.

:class:`AttackOptions` holds the hyperparameters of the attack (they change the
result); :class:`EngineOptions` holds how the attack is executed (they change
speed and memory, never the result, except ``precision`` and ``jacobian``
through floating-point rounding). Both are frozen and validate themselves on
construction, so a bad value fails before anything is traced. Their defaults
are the defaults of :func:`jsma_jax.jsma` and :func:`jsma_jax.jsma_sharded`.

:class:`Plan` is what one compiled attack is specialised on: the options with
every default resolved for the shapes at hand. ``theta`` and the clip bounds
are not in it: they are data, so changing them never recompiles.
"""

from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from typing import Any, NamedTuple

import jax

from jsma_jax import _validate, drivers
from jsma_jax import rewrite as rewrite_lib
from jsma_jax.jacobian import JVP_CHUNK, resolve_mode
from jsma_jax.rules import SaliencyRule, jsma_rule

PRECISIONS = ("highest", "float32", "high", "tensorfloat32", "default", "bfloat16", "fastest")
JACOBIAN_MODES = ("auto", "jacfwd", "jacrev", "reduced")
INITIAL_DOMAINS = ("movable", "all")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu", "gpu")  # "gpu": what jax.default_backend() calls cuda and rocm
DEFAULT_GAMMA = 0.145  # the paper's maximum distortion


@dataclasses.dataclass(frozen=True)
class AttackOptions:
  """Hyperparameters of the attack (Papernot et al. 2016, Algorithms 1-3).

  Attributes:
    theta: change per step; ``> 0`` increases features, ``< 0`` decreases
      (its magnitude only, for rules that choose the direction per step).
    gamma: maximum distortion as a fraction of the ``M`` features; the budget
      is :func:`max_iterations` (``None``: 0.145, the paper's, unless
      ``max_changes`` or ``max_iter`` sets the budget).
    clip_min, clip_max: bounds of the input domain: scalars, arrays
      broadcastable to one example's shape (per feature: a standardised
      image's per-channel box, a table's per-column range), or one per example
      ``[B, *shape]``. They are data: new values never recompile.
    mask: which features may change (bool, ``True``: modifiable), broadcastable
      to one example's shape or one per example ``[B, *shape]``; ``None``: all.
      A feature outside it is never changed by any rule, in either direction
      (it is left out of the search domain ``Gamma`` from the start, whatever
      ``initial_domain``).
    pairwise: Algorithm 3 (pairs, the paper's MNIST attack) or Algorithm 1.
    probabilities: differentiate the softmax (JSMA-F), not the logits (JSMA-Z).
    initial_domain: ``"movable"`` (features that can still move in a direction
      the rule uses) or ``"all"`` (the paper's literal Algorithm 2).
    max_iter: override the budget derived from ``gamma``, in iterations.
    max_changes: the budget as an L0 count of changed features (e.g. 20 at
      ``M = 545,333``): ``max_changes // 2`` pair iterations,
      ``max_changes`` single-feature ones; with ``gamma`` too, both must give
      the same budget. Not with ``max_iter``.
    rule: a :class:`~jsma_jax.rules.SaliencyRule`; the paper's by default.
    record_trace: also return the L0 distortion after every iteration.

  Example:
    >>> options = AttackOptions(theta=-1.0, pairwise=False)  # decreasing, single features
    >>> options.budget(784), options.rule.name  # floor(784 * 0.145)
    (113, 'jsma')
    >>> AttackOptions(max_changes=20).budget(545_333)  # 10 pair iterations, at most 20 features changed
    10
    >>> AttackOptions(gamma=2.0)
    Traceback (most recent call last):
    ValueError: gamma must lie in (0, 1] (a fraction of the features), got 2.0
  """

  theta: Any = 1.0
  gamma: float | None = None
  clip_min: Any = 0.0
  clip_max: Any = 1.0
  pairwise: bool = True
  probabilities: bool = False
  initial_domain: str = "movable"
  max_iter: int | None = None
  rule: SaliencyRule | None = None
  record_trace: bool = False
  mask: Any = None
  max_changes: int | None = None

  def __post_init__(self):
    theta, gamma, lo, hi = _validate.check_hyperparameters(self.theta, self.gamma, self.clip_min, self.clip_max)
    for name, value in (("theta", theta), ("gamma", gamma), ("clip_min", lo), ("clip_max", hi)):
      object.__setattr__(self, name, value)
    object.__setattr__(self, "mask", _validate.check_mask(self.mask))
    for name in ("pairwise", "probabilities", "record_trace"):
      _validate.check_bool(name, getattr(self, name))
    _validate.check_choice("initial_domain", self.initial_domain, INITIAL_DOMAINS)
    _validate.check_count("max_iter", self.max_iter, minimum=1, maximum=_validate.INT32_MAX)
    _validate.check_count("max_changes", self.max_changes, minimum=1, what=" (changed features)",
                          maximum=_validate.INT32_MAX)
    if self.max_changes is not None:
      if self.max_iter is not None:
        raise ValueError(
            f"give the budget once: max_iter={self.max_iter} (iterations) or max_changes={self.max_changes} "
            "(changed features), not both"
        )
      if changes_to_iterations(self.max_changes, pairwise=self.pairwise) < 1:
        raise ValueError(f"max_changes={self.max_changes} allows no pair iteration (a pair changes 2 features); "
                         "pass max_changes >= 2, or pairwise=False")
    if self.rule is None:
      object.__setattr__(self, "rule", jsma_rule())
    elif not isinstance(self.rule, SaliencyRule):
      raise TypeError(f"rule must be a jsma_jax.SaliencyRule, got {type(self.rule).__name__}")

  def budget(self, num_features: int) -> int:
    """Iterations allowed on ``M`` features: the one home of the budget's resolution.

    ``max_changes`` (changed features), else ``max_iter``, else ``gamma``
    (0.145 when not given). ``gamma`` given with ``max_changes`` must give the
    same number of iterations on these ``M`` features (``ValueError`` if not);
    ``max_iter`` overrides ``gamma``.
    """
    if self.max_changes is not None:
      budget = changes_to_iterations(self.max_changes, pairwise=self.pairwise)
      if self.gamma is not None and max_iterations(num_features, self.gamma, pairwise=self.pairwise) != budget:
        from_gamma = max_iterations(num_features, self.gamma, pairwise=self.pairwise)
        raise ValueError(
            f"gamma={self.gamma} and max_changes={self.max_changes} disagree on {num_features} features "
            f"({from_gamma} against {budget} {'pair ' if self.pairwise else ''}iterations); give only one of them"
        )
      return budget
    if self.max_iter is not None:
      return int(self.max_iter)
    gamma = DEFAULT_GAMMA if self.gamma is None else self.gamma
    budget = max_iterations(num_features, gamma, pairwise=self.pairwise)
    if budget < 1:
      raise ValueError(
          f"gamma={gamma} allows no iteration on {num_features} features "
          f"(floor(M * gamma{' / 2' if self.pairwise else ''}) = 0); raise gamma, or give max_changes"
      )
    return budget


@dataclasses.dataclass(frozen=True)
class EngineOptions:
  """How the attack runs; results do not depend on these (but see ``precision``).

  Attributes:
    schedule: a registered driver (:mod:`jsma_jax.drivers`): ``"refill"``
      (default: ``slots`` examples in flight, each slot refilled as soon as its
      attack stops, so the cost follows the average iteration count) or
      ``"lockstep"`` (one batched ``while_loop`` over the whole batch, until
      its slowest example stops).
    slots: examples in flight for ``"refill"`` (default on CPU 8 per core, at
      least 16 and at most 256; 8192 on accelerators; at most the batch). Memory grows
      linearly with it (see :func:`default_slots`).
    candidates: top-K features of the exact pruned pair search (default
      ``min(M, 64)``; ``0`` for the dense search).
    region: most features of the pruned search's second tier, the region
      search (default ``min(1024, M // 4)``; ``0``: straight to the dense one).
    jacobian: ``"auto"``, ``"jacfwd"``, ``"jacrev"`` or ``"reduced"``
      (:mod:`jsma_jax.jacobian`).
    precision: matmul and convolution precision for float32 models while the
      attack is traced (``jax.default_matmul_precision``): ``"highest"``
      (default: true float32, the reference's arithmetic), ``"tensorfloat32"``,
      ``"bfloat16"``, ``"default"`` and the other names JAX accepts; ``None``
      keeps the caller's setting. Lower precision changes the forward
      derivative, and so may change choices.
    pad_batches: pad the batch to one of a few bucket sizes (at most 25% more,
      the padding marked invalid and dropped), so that ragged batches reuse the
      compiled attack.
    rewrite: evaluate the model with loop-friendly convolutions and max-pools
      (:mod:`jsma_jax.rewrite`: same function and derivative convention):
      ``"auto"`` (default: on where it was measured to pay, the CPU), ``True``
      or ``False``.
    jvp_chunk: tangents per forward pass of ``jacobian="jacfwd"`` (its memory
      grows with this, not with ``M``).
    platform: the platform whose defaults (``slots``, ``rewrite``) the
      attack takes: ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"`` (or
      ``"gpu"``); ``None`` (default): this machine's
      (``jax.default_backend()``). Set it to lower or export the attack for
      another platform (:func:`jsma_jax.lower` sets it from ``platforms``).
    progress_every: report the iteration reached every this many iterations
      from inside the loop (:mod:`jsma_jax.progress`); ``None`` (default): no
      report, no host callback in the program.

  Example:
    >>> engine = EngineOptions(schedule="lockstep", pad_batches=False)
    >>> engine.schedule, engine.jacobian, engine.rewrites("gpu")
    ('lockstep', 'auto', False)
    >>> EngineOptions(jacobian="fast")
    Traceback (most recent call last):
    ValueError: jacobian must be one of ('auto', 'jacfwd', 'jacrev', 'reduced'), got 'fast'
  """

  schedule: str = "refill"
  slots: int | None = None
  candidates: int | None = None
  region: int | None = None
  jacobian: str = "auto"
  precision: str | None = "highest"
  pad_batches: bool = True
  rewrite: str | bool = "auto"
  jvp_chunk: int = JVP_CHUNK
  platform: str | None = None
  progress_every: int | None = None

  def __post_init__(self):
    _validate.check_choice("schedule", self.schedule, tuple(drivers.DRIVERS))
    _validate.check_count("slots", self.slots, minimum=1)
    _validate.check_count("candidates", self.candidates, minimum=0)
    _validate.check_count("region", self.region, minimum=0)
    _validate.check_choice("jacobian", self.jacobian, JACOBIAN_MODES)
    if self.precision is not None:
      _validate.check_choice("precision", self.precision, PRECISIONS)
    _validate.check_bool("pad_batches", self.pad_batches)
    if not (self.rewrite == "auto" or isinstance(self.rewrite, bool)):
      raise ValueError(f"rewrite must be 'auto', True or False, got {self.rewrite!r}")
    _validate.check_count("jvp_chunk", self.jvp_chunk, minimum=1, optional=False)
    if self.platform is not None:
      _validate.check_choice("platform", self.platform, PLATFORMS)
    _validate.check_count("progress_every", self.progress_every, minimum=1, what=" (iterations between reports)",
                          maximum=_validate.INT32_MAX)

  def target(self) -> str:
    """The platform the attack is specialised for: ``platform``, else this machine's default backend."""
    return self.platform if self.platform is not None else jax.default_backend()

  def rewrites(self, backend: str) -> bool:
    """Whether the model is rewritten (:mod:`jsma_jax.rewrite`) on ``backend``."""
    return rewrite_lib.enabled_by_default(backend) if self.rewrite == "auto" else bool(self.rewrite)


ATTACK_FIELDS = tuple(f.name for f in dataclasses.fields(AttackOptions))
ENGINE_FIELDS = tuple(f.name for f in dataclasses.fields(EngineOptions))


def resolve(options: AttackOptions | None, engine: EngineOptions | None,
            overrides: dict) -> tuple[AttackOptions, EngineOptions]:
  """Both configs, with keyword ``overrides`` (any field of either) applied and validated."""
  options = AttackOptions() if options is None else options
  engine = EngineOptions() if engine is None else engine
  if not isinstance(options, AttackOptions):
    raise TypeError(f"options must be a jsma_jax.AttackOptions, got {type(options).__name__}")
  if not isinstance(engine, EngineOptions):
    raise TypeError(f"engine must be a jsma_jax.EngineOptions, got {type(engine).__name__}")
  unknown = sorted(set(overrides) - set(ATTACK_FIELDS) - set(ENGINE_FIELDS))
  if unknown:
    raise TypeError(
        f"unexpected keyword argument(s) {unknown}; the attack's options are {list(ATTACK_FIELDS)} "
        f"and the engine's {list(ENGINE_FIELDS)}"
    )
  attack_changes = {k: v for k, v in overrides.items() if k in ATTACK_FIELDS}
  engine_changes = {k: v for k, v in overrides.items() if k in ENGINE_FIELDS}
  if attack_changes:
    options = dataclasses.replace(options, **attack_changes)
  if engine_changes:
    engine = dataclasses.replace(engine, **engine_changes)
  return options, engine


class Plan(NamedTuple):
  """Static (hashed) settings of one compiled attack: the options resolved for the shapes."""

  rule: SaliencyRule
  pairwise: bool
  max_iter: int
  initial_domain: str
  probabilities: bool
  record_trace: bool
  mode: str  # resolved Jacobian mode
  schedule: str
  slots: int
  candidates: int  # top-K of the pruned pair search (M: dense)
  region: int  # most features of the region search (0: none)
  precision: str | None
  num_classes: int  # N, the model's outputs
  jvp_chunk: int  # tangents per pass of jacfwd
  progress_every: int = 0  # iterations between progress reports (0: none)


def make_plan(options: AttackOptions, engine: EngineOptions, *, batch: int, num_features: int, num_rows: int,
              num_classes: int) -> Plan:
  """Resolve every default for a batch of ``batch`` examples of ``M`` features and ``N`` classes."""
  slots = engine.slots if engine.slots is not None else default_slots(engine.target())
  candidates = engine.candidates if engine.candidates is not None else min(num_features, 64)
  return Plan(
      rule=options.rule,
      pairwise=options.pairwise,
      max_iter=options.budget(num_features),
      initial_domain=options.initial_domain,
      probabilities=options.probabilities,
      record_trace=options.record_trace,
      mode=resolve_mode(engine.jacobian, num_features, num_classes, num_rows),
      schedule=engine.schedule,
      slots=min(batch, slots),
      candidates=candidates or num_features,
      region=engine.region if engine.region is not None else min(1024, num_features // 4),
      precision=engine.precision,
      num_classes=num_classes,
      jvp_chunk=engine.jvp_chunk,
      progress_every=engine.progress_every or 0,
  )


def cpu_cores() -> int:
  """The CPU cores this process may use (its affinity where the OS tells it)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_slots(platform: str | None = None) -> int:
  """Examples in flight per device for the refill schedule on ``platform`` (default: this machine's backend).

  On the CPU, 8 per core of each CPU device, at least 16 and at most 256: the
  cores the process may use, shared by its CPU devices (one device by default;
  one per core after ``jax.config.update("jax_num_cpu_devices", n)``).
  Fewer slots waste less at the end of a call, where slots empty while the
  longest attacks finish (on the paper's row, 900 attacks per call: 97% of the
  slot-steps do work with 16 slots, 80% with 64), and run faster per step on a
  small CPU. Measured with ``benchmarks/slots.py --study-row`` (LeNet, 900
  attacks, 2-core Zen 1): 16 slots 44.8 attacks/s, 8 32.7, 32 40.9, 64 36.6;
  from 128 slots on, the scheduler's narrower tail phase is a second compiled
  copy of the attack step. Pass ``slots`` to choose. On accelerators 8192 (also
  when this CPU lowers the attack for one: ``EngineOptions(platform="cuda")``).

  Example:
    >>> default_slots("cuda"), default_slots("tpu")
    (8192, 8192)
  """
  if (platform or jax.default_backend()) != "cpu":
    return 8192
  per_device = max(1, cpu_cores() // max(1, len(jax.local_devices(backend="cpu"))))
  return max(16, min(256, 8 * per_device))


def changes_to_iterations(changes: Any, *, pairwise: bool = True) -> Any:
  """An L0 budget in changed features as iterations: ``changes // 2`` for pairs, ``changes`` else.

  A pair iteration changes at most two features, so the attack never changes
  more than ``changes``; an odd budget counts as the even one below it.

  Example:
    >>> changes_to_iterations(20), changes_to_iterations(11), changes_to_iterations(11, pairwise=False)
    (10, 5, 11)
  """
  return changes // 2 if pairwise else changes


def max_iterations(num_features: int, gamma: float, *, pairwise: bool = True) -> int:
  """The iteration budget: ``floor(M * gamma / 2)`` for pairs, ``floor(M * gamma)`` else.

  ``gamma`` is read as the decimal it is written as (``0.145`` is 29/200), so
  that ``M * gamma`` lands on the exact integer when it should. On MNIST
  (``M = 784``) with ``gamma = 0.145`` this gives 56 pair iterations.

  Args:
    num_features: ``M``, features per example.
    gamma: maximum distortion, a fraction of ``M`` in ``(0, 1]``.
    pairwise: pair iterations (two features each) or single-feature ones.

  Returns:
    the number of iterations, an int.

  Example:
    >>> max_iterations(784, 0.145), max_iterations(784, 0.145, pairwise=False)
    (56, 113)
  """
  exact = Fraction(repr(float(gamma))) * num_features
  return math.floor(exact / 2) if pairwise else math.floor(exact)
