"""Saliency rules: how an attack turns the forward derivative into scores.

A :class:`SaliencyRule` is a triple of pure functions. The attack loop
(:mod:`jsma_jax.attack`) knows nothing else about the rule, so variants of the
JSMA family plug in here without touching the loop:

* ``cotangents(outputs, target) -> W [R, N]``: the ``R`` combinations of
  Jacobian rows the rule needs (the loop computes ``W @ J`` as cheaply as the
  Jacobian mode allows: ``R`` VJPs in ``"reduced"`` mode);
* ``features(rows, outputs, x, target) -> (a [M], b [M])``: the target term and
  the other-classes term fed to the saliency maps (Eq. 8/9, Algorithm 3);
* ``reached(outputs, target) -> bool``: the attack's success criterion.

Rules must be hashable (they are static arguments of the compiled attack):
build them from module-level functions, as below.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class SaliencyRule(NamedTuple):
  """A pluggable saliency rule (see the module docstring)."""

  name: str
  cotangents: Callable[[Array, Array], Array]
  features: Callable[[Array, Array, Array, Array], tuple[Array, Array]]
  reached: Callable[[Array, Array], Array]


def _target_and_others(outputs: Array, target: Array) -> Array:
  onehot = jax.nn.one_hot(target, outputs.shape[-1], dtype=outputs.dtype)
  return jnp.stack([onehot, 1 - onehot])


def _weighted_others(outputs: Array, target: Array) -> Array:
  onehot = jax.nn.one_hot(target, outputs.shape[-1], dtype=outputs.dtype)
  probs = jax.nn.softmax(outputs)
  return jnp.stack([onehot, probs * (1 - onehot)])


def _two_rows(rows: Array, outputs: Array, x: Array, target: Array) -> tuple[Array, Array]:
  del outputs, x, target
  return rows[0], rows[1]


def _argmax_is_target(outputs: Array, target: Array) -> Array:
  return jnp.argmax(outputs) == target


def jsma_rule() -> SaliencyRule:
  """The paper's targeted rule: ``a = dF_t/dx``, ``b = sum_{j != t} dF_j/dx``.

  Papernot et al. (EuroS&P 2016), Eq. 8 and Algorithm 3. Success when
  ``argmax F(x) == t``.
  """
  return SaliencyRule("jsma", _target_and_others, _two_rows, _argmax_is_target)


def wjsma_rule() -> SaliencyRule:
  """Weighted JSMA (Combey et al. 2020): ``b = sum_{j != t} p_j(x) dZ_j/dx``.

  ``p`` is the softmax of the outputs the attack differentiates (use it with
  logits, the default).
  """
  return SaliencyRule("wjsma", _weighted_others, _two_rows, _argmax_is_target)
