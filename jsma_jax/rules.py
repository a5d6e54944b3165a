"""Saliency rules: how an attack turns the forward derivative into saliency maps.

A :class:`SaliencyRule` is a few pure functions and constants; the one attack
step (:mod:`jsma_jax.step`) knows nothing else about the rule, so the members
of the JSMA family plug in here without touching the loop:

* ``cotangents(outputs, label) -> W [R, N]``: the ``R`` combinations of
  Jacobian rows the rule needs (the step computes ``W @ J`` as cheaply as the
  Jacobian mode allows: ``R`` VJPs in ``"reduced"`` mode);
* ``maps(rows, outputs, label, view) -> Maps``: ``K`` candidate maps, each with
  its direction (one for the paper's rule; ``2 N`` for Maximal JSMA); the step
  takes the best admissible choice over all of them;
* ``success(outputs, label) -> bool``: the rule's criterion, described by
  ``criterion`` (the result carries that text);
* ``targeted``: whether the labels given to :func:`jsma_jax.jsma` are target
  classes (``True``) or the source classes (``False``);
* ``directions``: ``"theta"`` when features move in the direction of
  ``theta``'s sign (the paper), ``"both"`` when the rule picks the direction
  per step; the ``"movable"`` initial domain follows it.

Rules must be hashable (they are static arguments of the compiled attack):
build them from module-level functions, as below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jsma_jax.types import Maps, StepView

Array = jax.Array


class SaliencyRule(NamedTuple):
  """A pluggable saliency rule (see the module docstring).

  Example:
    The paper's rule with a stricter criterion: success once the target's
    logit leads every other by 1.

    >>> def leads_by_one(outputs, target):  # [N], [] -> [] bool
    ...   others = jnp.where(jnp.arange(outputs.shape[0]) == target, -jnp.inf, outputs)
    ...   return outputs[target] >= jnp.max(others) + 1.0
    >>> paper = jsma_rule()
    >>> rule = SaliencyRule("jsma-margin", paper.cotangents, paper.maps, leads_by_one, criterion="margin >= 1")
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> result = jsma_jax.jsma(f, jnp.zeros((1, 4)), jnp.array([1]), rule=rule, max_iter=2)
    >>> result.success.tolist(), result.rule, result.criterion
    ([True], 'jsma-margin', 'margin >= 1')
  """

  name: str
  cotangents: Callable[[Array, Array], Array]
  maps: Callable[[Array, Array, Array, StepView], Maps]
  success: Callable[[Array, Array], Array]
  criterion: str = "argmax == target"
  targeted: bool = True
  directions: str = "theta"


def target_and_others(outputs: Array, target: Array) -> Array:
  """Cotangents ``[2, N]``: the target's one-hot and its complement (rows ``dZ_t/dx``, ``sum_{j != t} dZ_j/dx``)."""
  onehot = jax.nn.one_hot(target, outputs.shape[-1], dtype=outputs.dtype)
  return jnp.stack([onehot, 1 - onehot])


def weighted_others(outputs: Array, target: Array) -> Array:
  """Cotangents ``[2, N]``: the target's one-hot and the softmax-weighted others (WJSMA)."""
  onehot = jax.nn.one_hot(target, outputs.shape[-1], dtype=outputs.dtype)
  probs = jax.nn.softmax(outputs)
  return jnp.stack([onehot, probs * (1 - onehot)])


def _one_map_along_theta(rows: Array, outputs: Array, label: Array, view: StepView) -> Maps:
  """The paper's single map: ``a = rows[0]``, ``b = rows[1]``, in the direction of ``theta``."""
  del outputs, label
  return Maps(rows[0][None], rows[1][None], (view.theta > 0)[None])


def argmax_is_target(outputs: Array, target: Array) -> Array:
  """The targeted criterion: ``argmax F(x) == t``."""
  return jnp.argmax(outputs) == target


def jsma_rule() -> SaliencyRule:
  """The paper's targeted rule: ``a = dF_t/dx``, ``b = sum_{j != t} dF_j/dx``.

  Papernot et al. (EuroS&P 2016), Eq. 8 and 9 and Algorithm 3. One map, in the
  direction of ``theta``'s sign. Success when ``argmax F(x) == t``.

  Returns:
    :class:`SaliencyRule` named ``"jsma"``; the default of :func:`jsma_jax.jsma`.

  Example:
    >>> rule = jsma_rule()
    >>> rule.name, rule.criterion, rule.targeted
    ('jsma', 'argmax == target', True)
    >>> rule.cotangents(jnp.zeros(3), 1).tolist()  # W [R=2, N=3]: the target's row, the others' sum
    [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
  """
  return SaliencyRule("jsma", target_and_others, _one_map_along_theta, argmax_is_target)


def wjsma_rule() -> SaliencyRule:
  """Weighted JSMA (Combey et al. 2020): ``b = sum_{j != t} p_j(x) dZ_j/dx``.

  ``p`` is the softmax of the outputs the attack differentiates (use it with
  logits, the default).

  Returns:
    :class:`SaliencyRule` named ``"wjsma"``; pass it as ``rule=``.

  Example:
    >>> wjsma_rule().cotangents(jnp.zeros(2), 0).tolist()  # p = (0.5, 0.5): the other row weighted by 0.5
    [[1.0, 0.0], [0.0, 0.5]]
  """
  return SaliencyRule("wjsma", weighted_others, _one_map_along_theta, argmax_is_target)
