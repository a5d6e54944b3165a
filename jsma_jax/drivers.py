"""Drivers: how the one attack step is looped over a batch, registered by name.

A driver takes a :class:`Problem` (the batch and everything static about its
attack) and returns the final :class:`~jsma_jax.types.AttackState` of every
example, stacked ``[B, ...]`` (``domain`` and ``last`` may be left as zeros:
the result does not use them). Every driver runs
:func:`jsma_jax.step.step`, so every driver gives the same results; they differ
only in how examples are packed into the loop. The library registers
``"lockstep"`` (:mod:`jsma_jax.lockstep`) and ``"refill"``
(:mod:`jsma_jax.refill`); ``EngineOptions(schedule=name)`` picks one.

A new driver::

    @jsma_jax.register_driver("mine")
    def mine(problem: jsma_jax.Problem) -> jsma_jax.AttackState: ...

This module is the registry only; it imports nothing but the types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jsma_jax.types import AttackState

Array = jax.Array


class Problem(NamedTuple):
  """One batch of attacks, as a driver sees it (arrays are traced).

  ``f`` is the model on one flat example, ``[M] -> [N]``; ``plan`` the static
  :class:`~jsma_jax.options.Plan`; the other fields are arrays (shapes in the
  comments below). The bounds and the mask are ``[B, M]`` (one per example and
  feature), ``[1, M]`` (one per feature, shared by the batch) or ``[1, 1]``
  (one for all); a driver that holds examples in slots gives
  :func:`jsma_jax.step` their batch indices (``example=``) so that each slot
  reads its own. :func:`jsma_jax.step` takes it with a state.

  Example:
    >>> Problem._fields
    ('f', 'plan', 'x', 'labels', 'valid', 'theta', 'clip_min', 'clip_max', 'mask')
  """

  f: Callable[[Array], Array]  # one flat example [M] -> outputs [N]
  plan: Any  # jsma_jax.options.Plan (static)
  x: Array  # [B, M] flat inputs
  labels: Array  # [B] int32 targets (targeted rules) or source classes
  valid: Array  # [B] bool: False marks an invalid (or padding) example, never attacked
  theta: Array  # [] step size
  clip_min: Array  # [B | 1, M | 1] lower bounds (a scalar [] is read as [1, 1])
  clip_max: Array  # [B | 1, M | 1] upper bounds
  mask: Array | None = None  # [B | 1, M | 1] bool, features that may change; None: all


Driver = Callable[[Problem], AttackState]
DRIVERS: dict[str, Driver] = {}


def register_driver(name: str) -> Callable[[Driver], Driver]:
  """Decorator: register ``driver`` under ``name`` for ``EngineOptions(schedule=name)``.

  Args:
    name: the schedule's name, a non-empty str (an existing name is replaced).

  Returns:
    the decorator; it returns ``driver`` unchanged. A driver maps a
    :class:`Problem` to the final :class:`~jsma_jax.AttackState` of every
    example, ``[B, ...]``.

  Example:
    The ``"lockstep"`` driver, written again: one ``while_loop`` of the step
    over the whole batch.

    >>> from jsma_jax.step import initial_states
    >>> @register_driver("doc-lockstep")
    ... def doc_lockstep(problem):
    ...   state = initial_states(problem, problem.x, problem.valid)  # the slots are the batch, in order
    ...   body = lambda s: step(problem, s, problem.x, problem.labels)[0]
    ...   running = lambda s: jnp.any(s.reason == StopReason.RUNNING)
    ...   return jax.lax.while_loop(running, body, state)
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> result = jsma_jax.jsma(f, jnp.zeros((2, 4)), jnp.array([1, 1]), max_iter=2, schedule="doc-lockstep")
    >>> result.success.tolist()
    [True, True]
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty str, got {name!r}")

  def register(driver: Driver) -> Driver:
    if not callable(driver):
      raise TypeError(f"driver must be callable, got {type(driver).__name__}")
    DRIVERS[name] = driver
    return driver

  return register


def get_driver(name: str) -> Driver:
  """The driver registered as ``name`` (``ValueError`` naming ``schedule`` if none).

  Example:
    >>> callable(get_driver("lockstep")), callable(get_driver("refill"))
    (True, True)
  """
  if name not in DRIVERS:
    raise ValueError(f"schedule must be one of {tuple(DRIVERS)}, got {name!r}")
  return DRIVERS[name]
