"""The refill scheduler: a fixed number of slots, refilled as attacks finish.

A vmapped ``while_loop`` runs every example of a batch until the slowest one is
done, so its cost follows the *largest* iteration count (the whole budget, 56
on MNIST, whenever one attack fails). Here the loop runs over ``S`` slots: after
every step, each slot whose example stopped writes its result to the output
buffers and takes the next pending example, inside the same compiled loop. The
cost follows the *average* iteration count. Each example's trajectory is the
same as in the vmapped loop; only the packing changes.

The tail, when no example is pending and slots fall idle, would still cost a
full step for every slot; so the loop runs in phases of shrinking width (``S``,
``S / 8``, ``S / 64``): once the pending examples are used up and few enough
attacks are in flight, those are compacted into the next, narrower set of
slots.

Each body runs the one attack step, :func:`jsma_jax.step.step`, on the slots
(registered as the ``"refill"`` driver).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax import step as step_lib
from jsma_jax.drivers import Problem, register_driver
from jsma_jax.types import AttackState, StopReason

Array = jax.Array


class Outputs(NamedTuple):
  """Results written as examples finish, indexed by example."""

  x: Array  # [B, M]
  iteration: Array  # [B] int32
  reason: Array  # [B] int32
  predicted: Array  # [B] int32
  trace: Array  # [B, T] int32


class Slots(NamedTuple):
  """The examples in flight."""

  state: AttackState  # fields [S, ...]
  example: Array  # [S] int32 index of the example held; B when the slot is idle
  next_example: Array  # [] int32 first example not yet loaded
  out: Outputs


@register_driver("refill")
def refill(problem: Problem) -> AttackState:
  """Attack every example of ``problem.x`` ``[B, M]`` in ``plan.slots`` slots; final states ``[B, ...]``."""
  x, targets = problem.x, problem.labels
  size = x.shape[0]
  slots = min(problem.plan.slots, size)

  def load(example: Array) -> AttackState:
    take = lambda v: jnp.take(v, example, axis=0, mode="clip")
    return step_lib.initial_states(problem, take(x), take(problem.valid), example)

  first = jnp.arange(slots, dtype=jnp.int32)
  trace_len = problem.plan.max_iter + 1 if problem.plan.record_trace else 0
  out = Outputs(
      x=jnp.zeros_like(x),
      iteration=jnp.zeros((size,), jnp.int32),
      reason=jnp.zeros((size,), jnp.int32),
      predicted=jnp.zeros((size,), jnp.int32),
      trace=jnp.zeros((size, trace_len), jnp.int32),
  )
  carry = Slots(load(first), first, jnp.asarray(slots, jnp.int32), out)

  def body(c: Slots) -> Slots:
    active = c.example < size
    x0 = jnp.take(x, c.example, axis=0, mode="clip")
    target = jnp.take(targets, c.example, mode="clip")
    state, _ = step_lib.step(problem, c.state, x0, target, c.example)

    done = active & (state.reason != StopReason.RUNNING)
    where = jnp.where(done, c.example, size)  # size: dropped by the scatters
    out = Outputs(
        x=c.out.x.at[where].set(state.x, mode="drop"),
        iteration=c.out.iteration.at[where].set(state.iteration, mode="drop"),
        reason=c.out.reason.at[where].set(state.reason, mode="drop"),
        predicted=c.out.predicted.at[where].set(state.predicted, mode="drop"),
        trace=c.out.trace.at[where].set(state.trace, mode="drop"),
    )
    # Refill: the i-th finished slot (in slot order) takes example next + i, if any is left.
    rank = jnp.cumsum(done, dtype=jnp.int32) - 1
    incoming = jnp.where(done, jnp.minimum(c.next_example + rank, size), c.example)
    fresh = load(incoming)
    state = jax.tree.map(lambda new, old: jnp.where(_expand(done, new), new, old), fresh, state)
    next_example = jnp.minimum(c.next_example + jnp.sum(done, dtype=jnp.int32), size)
    return Slots(state, incoming, next_example, out)

  widths = phase_widths(slots)
  for i, width in enumerate(widths):
    narrower = widths[i + 1] if i + 1 < len(widths) else 0

    def cond(c: Slots, narrower=narrower) -> Array:
      in_flight = jnp.sum(c.example < size)
      return (in_flight > 0) & ~((c.next_example >= size) & (in_flight <= narrower))

    carry = lax.while_loop(cond, body, carry)
    if narrower:  # compact the attacks still in flight into fewer slots
      (keep,) = jnp.nonzero(carry.example < size, size=narrower, fill_value=width)
      state = jax.tree.map(lambda v, keep=keep: jnp.take(v, keep, axis=0, mode="clip"), carry.state)
      example = jnp.where(keep < width, jnp.take(carry.example, keep, mode="clip"), size)
      carry = Slots(state, example, carry.next_example, carry.out)

  o = carry.out
  unused = jnp.zeros(x.shape, bool)  # domain and last are not kept per example; the result does not need them
  return AttackState(x=o.x, domain=unused, last=unused.astype(jnp.int8), iteration=o.iteration, reason=o.reason,
                     predicted=o.predicted, trace=o.trace)


def phase_widths(slots: int, shrink: int = 8, smallest: int = 16, phases: int = 3) -> list[int]:
  """Slot counts of the successive phases, e.g. ``[256, 32]`` or ``[8192, 1024, 128]``."""
  widths = [slots]
  while len(widths) < phases and widths[-1] // shrink >= smallest:
    widths.append(widths[-1] // shrink)
  return widths


def _expand(mask: Array, like: Array) -> Array:
  return mask.reshape(mask.shape + (1,) * (like.ndim - 1))
