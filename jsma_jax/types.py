"""The types every layer shares: stop reasons, a step's choice, loop state, results.

This is the bottom layer of the library: it imports nothing from ``jsma_jax``.
Shapes below are for one example with ``M`` flat features; the drivers hold
them batched over slots (a leading ``[S]`` axis) and the result over examples
(``[B]``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import NamedTuple

import jax

Array = jax.Array


class StopReason(enum.IntEnum):
  """Why an example stopped (``JSMAResult.stop_reason``).

  Example:
    >>> StopReason(2).name, int(StopReason.SUCCESS)
    ('BUDGET_SPENT', 1)
    >>> StopReason.REACHED_TARGET is StopReason.SUCCESS  # the targeted rules' name for it
    True
  """

  RUNNING = 0  # never in a returned result
  SUCCESS = 1  # the rule's success criterion holds (JSMAResult.criterion says which)
  BUDGET_SPENT = 2  # max_iter iterations done
  NO_ADMISSIBLE = 3  # no admissible pair (feature) left in the search domain
  DOMAIN_EXHAUSTED = 4  # fewer than 2 (1 for single features) features left to change
  NON_FINITE = 5  # the model's outputs or their derivatives hold NaN or inf
  INVALID_INPUT = 6  # seen only under a trace: label out of range, x outside its bounds or not finite, lo > hi
  REACHED_TARGET = 1  # alias of SUCCESS for the targeted rules (argmax == target)


class Choice(NamedTuple):
  """What a saliency search returns: the best feature(s) of one map.

  Example:
    >>> a, b = jnp.array([-1., 1., 0., .5]), jnp.array([1., -1., .5, 0.])
    >>> choice = jsma_jax.best_pair(a, b, jnp.ones(4, bool))
    >>> type(choice).__name__, int(choice.p), int(choice.q)
    ('Choice', 1, 3)
  """

  score: Array  # [] float; -inf when nothing is admissible
  p: Array  # [] int32; first feature (flat index)
  q: Array  # [] int32; second feature (== p for single-feature steps)


class Decision(NamedTuple):
  """What an attack step changes, and which way: the best choice over the rule's maps.

  Example:
    >>> d = Decision(jnp.float32(1.5), jnp.int32(1), jnp.int32(3), jnp.bool_(True))
    >>> int(d.p), int(d.q), bool(d.increase)  # raise features 1 and 3
    (1, 3, True)
  """

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

  Example:
    The paper's single map from the rule's two rows, in the increasing direction:

    >>> rows = jnp.array([[-1., 1., 0., .5], [1., -1., .5, 0.]])  # dZ_t/dx, sum_{j != t} dZ_j/dx
    >>> maps = Maps(rows[0][None], rows[1][None], jnp.array([True]))
    >>> maps.a.shape, maps.increase.tolist(), maps.domain is None
    ((1, 4), [True], True)
  """

  a: Array  # [K, M] the term pushed up (dZ_t/dx for the paper's map)
  b: Array  # [K, M] the term pushed down (sum_{j != t} dZ_j/dx)
  increase: Array  # [K] bool direction of each map
  domain: Array | None = None  # [K, M] bool features each map may choose; None: the state's domain


class StepView(NamedTuple):
  """What a rule may read of the current state of one example.

  Example:
    >>> view = StepView(jnp.zeros(4), jnp.ones(4, bool), jnp.zeros(4, jnp.int8), jnp.float32(1.0),
    ...                 jnp.zeros(4), jnp.ones(4))
    >>> (view.clip_max - view.x).tolist()  # room left in the increasing direction (TJSMA's weights)
    [1.0, 1.0, 1.0, 1.0]
  """

  x: Array  # [M] current input (flat)
  domain: Array  # [M] bool search domain (Gamma)
  last: Array  # [M] int8 sign of each feature's last change (0: never changed)
  theta: Array  # [] the step size as given (its sign is the paper's direction)
  clip_min: Array  # [M] the example's lower bound of each feature
  clip_max: Array  # [M] its upper bound of each feature


class AttackState(NamedTuple):
  """Loop state of one example; dtypes never change across iterations.

  Drivers hold it batched, every field with a leading ``[S]`` axis (see
  :func:`jsma_jax.step` for one built and stepped).

  Example:
    >>> AttackState._fields
    ('x', 'domain', 'last', 'iteration', 'reason', 'predicted', 'trace')
  """

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

  Example:
    >>> result = JSMAResult(x_adv=jnp.zeros((2, 4)), success=jnp.array([True, False]),
    ...                     iterations=jnp.array([1, 2]), n_changed=jnp.array([2, 4]),
    ...                     stop_reason=jnp.array([1, 2]), predicted=jnp.array([1, 0]))
    >>> first = jax.tree.map(lambda v: v[:1], result)  # the arrays; rule and criterion stay
    >>> first.success.tolist(), first.rule
    ([True], 'jsma')
    >>> x_adv, success, iterations, n_changed, stop_reason, predicted, trace = result
    >>> [StopReason(r).name for r in stop_reason.tolist()], trace is None
    (['SUCCESS', 'BUDGET_SPENT'], True)
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

  def replace(self, **changes) -> JSMAResult:
    """A copy with the fields named in ``changes`` replaced."""
    return dataclasses.replace(self, **changes)

  def __repr__(self) -> str:
    """A readable summary: the examples, the stop reasons by name, the changes and the arrays.

    Example:
      >>> JSMAResult(x_adv=jnp.zeros((3, 4)), success=jnp.array([True, True, False]),
      ...            iterations=jnp.array([1, 2, 5]), n_changed=jnp.array([2, 4, 9]),
      ...            stop_reason=jnp.array([1, 1, 2]), predicted=jnp.array([1, 0, 0]))
      JSMAResult(rule='jsma', 3 examples: SUCCESS 2 (argmax == target), BUDGET_SPENT 1; mean iterations 2.67, mean n_changed 5; x_adv float32[3, 4])
    """  # noqa: E501 (a doctest's output is one line)
    arrays = ", ".join(f"{name} {_described(getattr(self, name))}" for name in _RESULT_ARRAYS
                       if getattr(self, name) is not None)
    try:
      import numpy as np

      reasons = np.asarray(self.stop_reason).reshape(-1)
      counts = ", ".join(f"{StopReason(int(r)).name} {int((reasons == r).sum())}"
                         + (f" ({self.criterion})" if int(r) == StopReason.SUCCESS else "")
                         for r in np.unique(reasons))
      iterations = float(np.asarray(self.iterations, np.float64).mean()) if reasons.size else 0.0
      changed = float(np.asarray(self.n_changed, np.float64).mean()) if reasons.size else 0.0
      x_adv = _described(self.x_adv)
    except Exception:  # under a trace, or fields that are not arrays of stop reasons: the fields alone
      return f"JSMAResult(rule={self.rule!r}, criterion={self.criterion!r}; {arrays})"
    return (f"JSMAResult(rule={self.rule!r}, {reasons.size} examples: {counts or 'none'}; "
            f"mean iterations {iterations:.3g}, mean n_changed {changed:.3g}; x_adv {x_adv})")


def _described(value) -> str:
  """``dtype[shape]`` of an array (a tracer too), else its type's name."""
  shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
  if shape is None or dtype is None:
    return type(value).__name__
  return f"{dtype}[{', '.join(map(str, shape))}]"


jax.tree_util.register_dataclass(JSMAResult, data_fields=list(_RESULT_ARRAYS), meta_fields=["rule", "criterion"])
# jax.export: a function returning a JSMAResult serialises (its metadata as JSON strings)
jax.export.register_pytree_node_serialization(
    JSMAResult, serialized_name="jsma_jax.JSMAResult",
    serialize_auxdata=lambda meta: json.dumps(list(meta)).encode(),
    deserialize_auxdata=lambda data: tuple(json.loads(data)))
