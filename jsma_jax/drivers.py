"""Drivers: how the one attack step is looped over a batch, registered by name.

A driver takes a :class:`Problem` (the batch and everything static about its
attack) and returns the final :class:`~jsma_jax.types.AttackState` of every
example, stacked ``[B, ...]`` (``domain`` and ``last`` may be left as zeros:
the result does not use them). Every driver runs
:func:`jsma_jax.step.step`, so every driver gives the same results; they differ
only in how examples are packed into the loop. The library registers
``"lockstep"`` (:mod:`jsma_jax.lockstep`) and ``"refill"``
(:mod:`jsma_jax.scheduler`); ``EngineOptions(schedule=name)`` picks one.

A new driver::

    @jsma_jax.register_driver("mine")
    def mine(problem: jsma_jax.Problem) -> jsma_jax.AttackState: ...

This module is the registry only; it imports nothing but the types.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from jsma_jax.types import AttackState

Array = jax.Array


class Problem(NamedTuple):
  """One batch of attacks, as a driver sees it (arrays are traced)."""

  f: Callable[[Array], Array]  # one flat example [M] -> outputs [N]
  plan: Any  # jsma_jax.options.Plan (static)
  x: Array  # [B, M] flat inputs
  labels: Array  # [B] int32 targets (targeted rules) or source classes
  valid: Array  # [B] bool: False marks an invalid (or padding) example, never attacked
  theta: Array  # [] step size
  clip_min: Array  # []
  clip_max: Array  # []


Driver = Callable[[Problem], AttackState]
DRIVERS: dict[str, Driver] = {}


def register_driver(name: str) -> Callable[[Driver], Driver]:
  """Decorator: register ``driver`` under ``name`` for ``EngineOptions(schedule=name)``."""
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty str, got {name!r}")

  def register(driver: Driver) -> Driver:
    if not callable(driver):
      raise TypeError(f"driver must be callable, got {type(driver).__name__}")
    DRIVERS[name] = driver
    return driver

  return register


def get_driver(name: str) -> Driver:
  """The driver registered as ``name``."""
  if name not in DRIVERS:
    raise ValueError(f"schedule must be one of {tuple(DRIVERS)}, got {name!r}")
  return DRIVERS[name]
