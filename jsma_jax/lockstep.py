"""The lockstep driver: one batched ``while_loop`` over the whole batch.

Every example of the batch is in flight from the first step to the last; the
loop ends when the slowest example stops, so its cost follows the *largest*
iteration count. It is the straightforward schedule (a ``vmap`` of one
example's loop computes the same thing) and the reference for the others.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsma_jax import step as step_lib
from jsma_jax.drivers import Problem, register_driver
from jsma_jax.types import AttackState, StopReason


@register_driver("lockstep")
def lockstep(problem: Problem) -> AttackState:
  """Attack every example of ``problem.x`` ``[B, M]`` at once; final states ``[B, ...]``."""
  state = step_lib.initial_states(problem, problem.x, problem.valid)
  body = lambda s: step_lib.step(problem, s, problem.x, problem.labels)[0]
  return jax.lax.while_loop(lambda s: jnp.any(s.reason == StopReason.RUNNING), body, state)
