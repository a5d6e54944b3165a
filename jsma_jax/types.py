"""The types every layer shares: stop reasons, a step's choice, loop state, results.

This is the bottom layer of the library: it imports nothing from ``jsma_jax``.
Shapes below are for one example with ``M`` flat features; the drivers hold
them batched over slots (a leading ``[S]`` axis) and the result over examples
(``[B]``).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

import jax

Array = jax.Array


class StopReason(enum.IntEnum):
  """Why an example stopped (``JSMAResult.stop_reason``)."""

  RUNNING = 0  # never in a returned result
  SUCCESS = 1  # the rule's success criterion holds (JSMAResult.criterion says which)
  BUDGET_SPENT = 2  # max_iter iterations done
  NO_ADMISSIBLE = 3  # no admissible pair (feature) left in the search domain
  DOMAIN_EXHAUSTED = 4  # fewer than 2 (1 for single features) features left to change
  NON_FINITE = 5  # the model's outputs or their derivatives hold NaN or inf
  INVALID_INPUT = 6  # seen only under a trace: label out of range, x outside the clip range or not finite
  REACHED_TARGET = 1  # alias of SUCCESS for the targeted rules (argmax == target)


class Choice(NamedTuple):
  """What a saliency search returns: the best feature(s) of one map."""

  score: Array  # [] float; -inf when nothing is admissible
  p: Array  # [] int32; first feature (flat index)
  q: Array  # [] int32; second feature (== p for single-feature steps)


class Decision(NamedTuple):
  """What an attack step changes, and which way: the best choice over the rule's maps."""

  score: Array  # [] float; -inf when nothing is admissible
  p: Array  # [] int32; first feature (flat index)
  q: Array  # [] int32; second feature (== p for single-feature steps)
  increase: Array  # [] bool: the change raises the features (else lowers them)


class Maps(NamedTuple):
  """A rule's candidate saliency maps for one step of one example: ``K`` maps.

  Map ``k`` is scored as the paper's map in the direction ``increase[k]``: with
  ``increase`` a pair is admissible when ``a_p + a_q > 0`` and ``b_p + b_q < 0``
  (mirrored signs otherwise) and scores ``-(a_p + a_q)(b_p + b_q)``. The step
  takes the best admissible choice over all maps (ties to the lowest map, then
  the lowest flat index) and moves its features in that map's direction.
  """

  a: Array  # [K, M] the term pushed up (dZ_t/dx for the paper's map)
  b: Array  # [K, M] the term pushed down (sum_{j != t} dZ_j/dx)
  increase: Array  # [K] bool direction of each map
  domain: Array | None = None  # [K, M] bool features each map may choose; None: the state's domain


class StepView(NamedTuple):
  """What a rule may read of the current state of one example."""

  x: Array  # [M] current input (flat)
  domain: Array  # [M] bool search domain (Gamma)
  last: Array  # [M] int8 sign of each feature's last change (0: never changed)
  theta: Array  # [] the step size as given (its sign is the paper's direction)
  clip_min: Array  # []
  clip_max: Array  # []


class AttackState(NamedTuple):
  """Loop state of one example; dtypes never change across iterations."""

  x: Array  # [M] current input (flat), dtype of x
  domain: Array  # [M] bool, features that may still change (Gamma)
  last: Array  # [M] int8, sign of each feature's last change (0: never changed)
  iteration: Array  # [] int32
  reason: Array  # [] int32 StopReason, RUNNING while the loop goes on
  predicted: Array  # [] int32
  trace: Array  # [T] int32, L0 after k iterations (T = max_iter + 1, or 0)


_RESULT_ARRAYS = ("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted", "trace")


@dataclasses.dataclass(frozen=True)
class JSMAResult:
  """What :func:`jsma_jax.jsma` returns, one entry per example.

  A pytree (``jax.tree.map`` maps the arrays; ``rule`` and ``criterion`` are
  static metadata) that also iterates over its arrays in field order.
  """

  x_adv: Array  # [B, *shape] adversarial inputs, dtype of x
  success: Array  # [B] bool, stop_reason == SUCCESS
  iterations: Array  # [B] int32, pair (feature) updates applied
  n_changed: Array  # [B] int32, features that differ from x (L0)
  stop_reason: Array  # [B] int32, a StopReason
  predicted: Array  # [B] int32, argmax of the model's outputs at x_adv
  trace: Array | None = None  # [B, max_iter + 1] int32, L0 after k iterations (record_trace)
  rule: str = "jsma"  # the saliency rule's name
  criterion: str = "argmax == target"  # what success means

  def __iter__(self):
    return iter(tuple(getattr(self, name) for name in _RESULT_ARRAYS))

  def replace(self, **changes) -> "JSMAResult":
    return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(JSMAResult, data_fields=list(_RESULT_ARRAYS), meta_fields=["rule", "criterion"])
