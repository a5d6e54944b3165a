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

This costs ``O(M log K + K^2)`` per example when the certificate holds (it
usually does on MNIST: see ``benchmarks/RESULTS.md``) instead of ``O(M^2)``.
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


def candidate_pair(a: Array, b: Array, domain: Array, *, increase: bool, k: int) -> Candidate:
  """Best pair among the ``k`` features of largest ``s = a - b``, with its certificate (one example)."""
  m = a.shape[0]
  sa, sb = _oriented(a, b, increase)
  s = jnp.where(domain, sa - sb, -jnp.inf)
  if k >= m:
    return Candidate(best_pair(a, b, domain, increase=increase), jnp.ones((), bool))
  top, index = lax.top_k(s, k + 1)
  cand = jnp.sort(index[:k])  # ascending: candidate order is flat-index order, so ties resolve as in best_pair
  sub = best_pair(sa[cand], sb[cand], domain[cand], increase=True)
  choice = Choice(sub.score, cand[sub.p], cand[sub.q])
  # Rounding margin: alpha_f + |beta_f| <= s_p + s_q + 4 eps (|a_p|+|a_q|+|b_p|+|b_q|) in real arithmetic,
  # and each product/square adds a relative eps; 8 eps * L and a factor 1 + 16 eps cover it with room.
  eps = jnp.finfo(a.dtype).eps
  scale = jnp.max(jnp.where(domain, jnp.abs(sa) + jnp.abs(sb), 0))
  reach = top[0] + top[k] + 8 * eps * scale
  bound = jnp.where(reach > 0, jnp.square(reach / 2) * (1 + 16 * eps), 0)
  fits = top[k] == -jnp.inf  # at most k features in the domain: every pair was a candidate
  return Candidate(choice, fits | (choice.score > bound))


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
