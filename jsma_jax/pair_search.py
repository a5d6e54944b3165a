"""Exact, pruned pairwise search for a batch (Algorithm 3 without the M^2 work).

For an admissible pair (``alpha > 0``, ``beta < 0``) the score is bounded by the
AM-GM inequality::

    -alpha * beta = alpha * |beta| <= ((alpha + |beta|) / 2)^2 = ((s_p + s_q) / 2)^2,

with ``s = a - b`` (oriented to the attack's direction). Let ``s_(1) >= s_(2) >=
...`` be the sorted ``s`` of the search domain. Every pair with a member outside
the top ``K`` features has ``s_p + s_q <= s_(1) + s_(K+1)``, so if the best pair
*among the top K* scores strictly above ``((s_(1) + s_(K+1)) / 2)^2`` it is the
best pair overall; ties cannot hide outside (the inequality is strict), and
among the candidates ties go to the lowest flat index as in
:func:`jsma_jax.saliency.best_pair`. The bound is widened by a rigorous margin
for floating-point rounding, so a certificate is never wrong; it only fails more
often than in exact arithmetic. Examples whose candidate pair is not certified
get the full dense search, a chunk at a time, so the result always equals the
dense search bit for bit.

The top ``K`` are selected without a sort (:func:`top_k_mask`: 32 fused
counting passes), and the bound is tightened per excluded feature ``q`` by the
box bound ``(U + u_q)(V + v_q)`` (see :func:`candidate_pair`). This costs
``O(32 M + K^2)`` per example when the certificate holds (on the paper's LeNet
it held at every step of every attack measured: ``benchmarks/RESULTS.md``)
instead of ``O(M^2)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax.saliency import Choice, _oriented, best_pair

Array = jax.Array


class Candidate(NamedTuple):
  choice: Choice  # best pair among the top-K features (flat indices)
  certified: Array  # [] bool: it is the best pair overall


def _order_keys(v: Array) -> Array:
  """Unsigned integer keys whose order is the order of the float32 values ``v`` (-inf lowest)."""
  bits = lax.bitcast_convert_type(v.astype(jnp.float32), jnp.uint32)
  negative = (bits >> 31).astype(bool)
  return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def top_k_mask(s: Array, k: int) -> tuple[Array, Array]:
  """The ``k`` largest entries of ``s`` ``[M]`` as a mask, and the ``(k+1)``-th largest value.

  Exact, without sorting (XLA:CPU lowers ``lax.top_k`` to a full comparison
  sort, which was the dearest part of an attack step there): the key of the
  ``(k+1)``-th largest value is found bit by bit (32 fused count passes over
  ``s``), then every entry above it is taken, plus the lowest-index entries
  equal to it until ``k`` are taken. Every entry left out is ``<=`` the
  returned value.

  Returns:
    ``(mask [M] bool with exactly k True, value [] of the (k+1)-th largest)``.
  """
  key = _order_keys(s)
  need = k + 1

  tau = jnp.uint32(0)  # built from the top bit down: the largest key with >= k + 1 entries at or above it
  for bit in range(31, -1, -1):
    trial = tau | jnp.uint32(1 << bit)
    tau = jnp.where(jnp.sum(key >= trial) >= need, trial, tau)
  above = key > tau
  ties = key == tau
  room = k - jnp.sum(above)
  mask = above | (ties & (jnp.cumsum(ties) <= room))
  value = jnp.max(jnp.where(ties, s, -jnp.inf))
  return mask, value


def candidate_pair(a: Array, b: Array, domain: Array, *, increase: bool, k: int) -> Candidate:
  """Best pair among the ``k`` features of largest ``s = a - b``, with its certificate (one example).

  Two upper bounds hold for every pair ``(p, q)`` with ``q`` outside the
  candidates (``u = a``, ``v = -b``, oriented; ``U``, ``V`` their maxima over
  the domain): AM-GM, ``(u_p + u_q)(v_p + v_q) <= ((s_(1) + s_q) / 2)^2``, and
  the box bound ``(U + u_q)(V + v_q)``; a ``q`` whose ``U + u_q`` or
  ``V + v_q`` is not positive is in no admissible pair. The candidate pair is
  certified when its score beats the largest per-feature bound outside.
  """
  m = a.shape[0]
  sa, sb = _oriented(a, b, increase)
  s = jnp.where(domain, sa - sb, -jnp.inf)
  if k >= m:
    return Candidate(best_pair(a, b, domain, increase=increase), jnp.ones((), bool))
  mask, s_next = top_k_mask(s, k)
  (cand,) = jnp.nonzero(mask, size=k)  # ascending: candidate order is flat-index order, so ties resolve as in best_pair
  sub = best_pair(sa[cand], sb[cand], domain[cand], increase=True)
  choice = Choice(sub.score, cand[sub.p], cand[sub.q])
  # Rounding margin: every sum below is within 4 eps L of its real value (L the largest |u| + |v| in the
  # domain), every product within a relative 4 eps; 8 eps L and a factor 1 + 16 eps cover it with room.
  eps = jnp.finfo(a.dtype).eps
  u, v = sa, -sb
  scale = jnp.max(jnp.where(domain, jnp.abs(u) + jnp.abs(v), 0))
  margin = 8 * eps * scale
  s_top = jnp.max(s)
  big_u = jnp.max(jnp.where(domain, u, -jnp.inf))
  big_v = jnp.max(jnp.where(domain, v, -jnp.inf))
  reach = s_top + s + margin
  ru, rv = big_u + u + margin, big_v + v + margin
  feasible = domain & ~mask & (reach > 0) & (ru > 0) & (rv > 0)
  per_feature = jnp.minimum(jnp.square(reach / 2), ru * rv) * (1 + 16 * eps)
  bound = jnp.max(jnp.where(feasible, per_feature, -jnp.inf))
  fits = s_next == -jnp.inf  # at most k features in the domain: every pair was a candidate
  nothing = (bound == -jnp.inf) & (choice.score == -jnp.inf)  # no admissible pair anywhere
  choice = Choice(choice.score, jnp.where(nothing, 0, choice.p), jnp.where(nothing, 0, choice.q))  # as best_pair
  return Candidate(choice, fits | nothing | (choice.score > bound))


def best_pairs(
    a: Array, b: Array, domain: Array, *, increase: bool, k: int, chunk: int, active: Array | None = None
) -> Choice:
  """The exact best pair of every example of a batch ``[S, M]``; pruned where certified.

  Args:
    a, b: ``[S, M]`` oriented-or-not saliency inputs (see :mod:`jsma_jax.saliency`).
    domain: ``[S, M]`` bool search domains.
    increase: direction of the attack.
    k: number of candidate features per example.
    chunk: how many uncertified examples get the dense search at once.
    active: optional ``[S]`` bool; inactive rows may get any choice.

  Returns:
    :class:`Choice` of ``[S]`` arrays, equal to ``vmap(best_pair)`` exactly.
  """
  size = a.shape[0]
  cand = jax.vmap(lambda a, b, d: candidate_pair(a, b, d, increase=increase, k=k))(a, b, domain)
  chunk = min(chunk, size)
  pending = ~cand.certified if active is None else active & ~cand.certified

  def dense_for_uncertified(choice: Choice) -> Choice:
    def body(carry):
      choice, pending = carry
      (rows,) = jnp.nonzero(pending, size=chunk, fill_value=size)  # size: out of range, dropped below
      take = lambda v: jnp.take(v, rows, axis=0, mode="clip")
      full = jax.vmap(lambda a, b, d: best_pair(a, b, d, increase=increase))(take(a), take(b), take(domain))
      choice = jax.tree.map(lambda old, new: old.at[rows].set(new, mode="drop"), choice, full)
      return choice, pending.at[rows].set(False, mode="drop")

    choice, _ = lax.while_loop(lambda c: jnp.any(c[1]), body, (choice, pending))
    return choice

  return lax.cond(jnp.any(pending), dense_for_uncertified, lambda c: c, cand.choice)
