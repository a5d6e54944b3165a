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
go to a second exact tier, the *region search*, and only if that overflows to
the full dense search, a chunk at a time; the result always equals the dense
search bit for bit.

The region search: the candidate's score ``S`` is a lower bound on the best
score, and every feature ``q`` has a rigorous upper bound ``B_q`` on the score
of any pair it belongs to (:func:`feature_bounds`). Both members of the best
pair, and of every pair tied with it, have ``B >= S``; so the best pair is the
best pair of the *region* ``{q : B_q >= S}``, searched densely in flat-index
order (ties resolve as in the dense search). The bound there is sharper than
the certificate's: the features are binned by ``u`` and the box bound is taken
per bin. When the region has at most ``region`` features this costs
``O(G M + region^2)`` instead of ``O(M^2)``. On smooth Jacobians (a CNN with
global average pooling, where the top-64 certificate failed on 284 of 294
steps) the region held at most 134 of the 150,528 features at 224x224x3
(``benchmarks/pair_tiers.py``).

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

from jsma_jax.saliency import Choice, best_pair, oriented

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
  sa, sb = oriented(a, b, increase)
  s = jnp.where(domain, sa - sb, -jnp.inf)
  if k >= m:
    return Candidate(best_pair(a, b, domain, increase=increase), jnp.ones((), bool))
  mask, s_next = top_k_mask(s, k)
  (cand,) = jnp.nonzero(mask, size=k)  # ascending: candidate order is flat-index order, so ties resolve as in best_pair
  sub = best_pair(sa[cand], sb[cand], domain[cand], increase=True)
  choice = Choice(sub.score, cand[sub.p].astype(jnp.int32), cand[sub.q].astype(jnp.int32))
  outside = jnp.where(mask, -jnp.inf, feature_bounds(sa, -sb, domain, groups=1))
  bound = jnp.max(outside)
  fits = s_next == -jnp.inf  # at most k features in the domain: every pair was a candidate
  nothing = (bound == -jnp.inf) & (choice.score == -jnp.inf)  # no admissible pair anywhere
  choice = Choice(choice.score, jnp.where(nothing, 0, choice.p), jnp.where(nothing, 0, choice.q))  # as best_pair
  return Candidate(choice, fits | nothing | (choice.score > bound))


def feature_bounds(u: Array, v: Array, domain: Array, *, groups: int) -> Array:
  """Rigorous upper bound, per feature ``q``, on the score of every admissible pair holding it (one example).

  ``u = a`` and ``v = -b`` oriented (admissible: ``u_p + u_q > 0`` and
  ``v_p + v_q > 0``, score ``(u_p + u_q)(v_p + v_q)``). Two bounds hold for
  every partner ``p`` in the domain: AM-GM, ``((s_(1) + s_q) / 2)^2`` with
  ``s = u + v``, and the box bound ``(U_g + u_q)(V_g + v_q)`` with ``U_g``,
  ``V_g`` the maxima of ``u`` and ``v`` over the bin ``g`` holding ``p`` (the
  domain's features binned by ``u`` into ``groups`` equal-width bins; one bin
  is the plain box bound). A bin whose ``U_g + u_q`` or ``V_g + v_q`` is not
  positive holds no partner of ``q``. ``-inf`` where ``q`` is in no admissible
  pair or outside the domain.

  Every sum is within ``4 eps L`` of its real value (``L`` the largest
  ``|u| + |v|`` in the domain) and every product within a relative ``4 eps``;
  the margins ``8 eps L`` and the factor ``1 + 16 eps`` cover both with room,
  so the bound also holds for the scores as the dense search rounds them.
  """
  eps = jnp.finfo(u.dtype).eps
  scale = jnp.max(jnp.where(domain, jnp.abs(u) + jnp.abs(v), 0))
  margin = 8 * eps * scale
  s = jnp.where(domain, u + v, -jnp.inf)
  reach = jnp.max(s) + s + margin
  amgm = jnp.where(reach > 0, jnp.square(reach / 2), -jnp.inf)
  du, dv = jnp.where(domain, u, -jnp.inf), jnp.where(domain, v, -jnp.inf)
  if groups <= 1:
    big_u, big_v = jnp.max(du)[None], jnp.max(dv)[None]
  else:
    lo = jnp.min(jnp.where(domain, u, jnp.inf))
    hi = jnp.max(du)
    width = jnp.where(hi > lo, hi - lo, 1)
    position = jnp.where(domain, (u - jnp.where(domain, lo, 0)) / width * groups, 0)
    bins = jnp.clip(jnp.floor(position), 0, groups - 1).astype(jnp.int32)
    big_u = jax.ops.segment_max(du, bins, num_segments=groups)  # empty bins: -inf
    big_v = jax.ops.segment_max(dv, bins, num_segments=groups)
  box = jnp.full(u.shape, -jnp.inf, u.dtype)
  for g in range(big_u.shape[0]):  # a few fused elementwise passes; no [M, G] array
    ru, rv = big_u[g] + u + margin, big_v[g] + v + margin
    box = jnp.maximum(box, jnp.where((ru > 0) & (rv > 0), ru * rv, -jnp.inf))
  bound = jnp.minimum(amgm, box) * (1 + 16 * eps)
  return jnp.where(domain & (box > -jnp.inf) & (amgm > -jnp.inf), bound, -jnp.inf)


def region_pair(
    a: Array, b: Array, domain: Array, floor: Array, *, increase: bool, size: int, groups: int
) -> tuple[Choice, Array]:
  """The exact best pair, searched among the features whose bound reaches ``floor`` (one example).

  ``floor`` must be the score of some pair in the domain (or ``-inf``). Returns
  the choice and whether the region fitted in ``size`` features; when it did
  not, the choice is meaningless and the caller must search densely.
  """
  sa, sb = oriented(a, b, increase)
  bound = feature_bounds(sa, -sb, domain, groups=groups)
  region = (bound > -jnp.inf) & (bound >= floor)
  count = jnp.sum(region)
  (members,) = jnp.nonzero(region, size=size, fill_value=0)  # ascending: ties resolve as in best_pair
  valid = jnp.arange(size) < count
  sub = best_pair(sa[members], sb[members], valid, increase=True)
  nothing = sub.score == -jnp.inf  # no admissible pair at all: (0, 0), as best_pair
  pick = lambda i: jnp.where(nothing, 0, members[i]).astype(jnp.int32)
  choice = Choice(sub.score, pick(sub.p), pick(sub.q))
  return choice, count <= size


def _resolve(choice: Choice, pending: Array, chunk: int, solve, *, narrow: bool) -> tuple[Choice, Array]:
  """Run ``solve`` on the pending rows, ``chunk`` at a time; returns the updated choice and the rows it
  could not settle.

  ``solve(rows)`` gets ``[c]`` row indices (``size`` for padding) and returns
  ``(Choice [c], settled [c] bool)``. With ``narrow``, an eighth of the chunk
  is used when only a few rows are pending, so one leftover row does not cost a
  whole chunk (a second compiled body: worth it for the dense search only).
  """
  size = pending.shape[0]

  def step(width):
    def run(carry):
      choice, pending, unsettled = carry
      (rows,) = jnp.nonzero(pending, size=width, fill_value=size)  # size: out of range, dropped below
      new, settled = solve(rows)
      keep = jnp.where(settled, rows, size)
      choice = jax.tree.map(lambda old, n: old.at[keep].set(n, mode="drop"), choice, new)
      unsettled = unsettled.at[jnp.where(settled, size, rows)].set(True, mode="drop")
      return choice, pending.at[rows].set(False, mode="drop"), unsettled

    return run

  small = max(1, chunk // 8) if narrow else chunk
  big = step(chunk)
  if small == chunk:
    body = big
  else:
    little = step(small)
    body = lambda carry: lax.cond(jnp.sum(carry[1]) > small, big, little, carry)

  init = (choice, pending, jnp.zeros_like(pending))
  choice, _, unsettled = lax.while_loop(lambda c: jnp.any(c[1]), body, init)
  return choice, unsettled


def best_pairs(
    a: Array, b: Array, domain: Array, *, increase: bool, k: int, chunk: int, active: Array | None = None,
    region: int = 0, groups: int = 16,
) -> Choice:
  """The exact best pair of every example of a batch ``[S, M]``; pruned where it can be proved.

  Three tiers, each exact where it answers: the top-``k`` candidates with
  their certificate (every row), the region search for the rows not certified
  (when ``0 < region < M``), the dense search for the rows whose region
  overflowed. When ``k >= M`` every pair is a candidate: the dense search is
  the whole program (decided from the shapes as it is traced, so a small
  model's attack compiles no tier that could never run).

  Args:
    a, b: ``[S, M]`` oriented-or-not saliency inputs (see :mod:`jsma_jax.saliency`).
    domain: ``[S, M]`` bool search domains.
    increase: direction of the attack.
    k: number of candidate features per example.
    chunk: how many rows get a region or dense search at once.
    active: optional ``[S]`` bool; inactive rows may get any choice.
    region: most features of a region search (``0``: none).
    groups: bins of the region search's box bound.

  Returns:
    :class:`Choice` of ``[S]`` arrays, equal to ``vmap(best_pair)`` exactly.
  """
  size, m = a.shape
  if k >= m:  # every feature is a candidate: the dense search is the answer, and no later tier can run
    return jax.vmap(lambda a, b, d: best_pair(a, b, d, increase=increase))(a, b, domain)
  cand = jax.vmap(lambda a, b, d: candidate_pair(a, b, d, increase=increase, k=k))(a, b, domain)
  chunk = min(chunk, size)
  pending = ~cand.certified if active is None else active & ~cand.certified
  take = lambda v, rows: jnp.take(v, rows, axis=0, mode="clip")

  def regional(rows):
    one = lambda a, b, d, f: region_pair(a, b, d, f, increase=increase, size=region, groups=groups)
    return jax.vmap(one)(take(a, rows), take(b, rows), take(domain, rows), take(cand.choice.score, rows))

  def dense(rows):
    full = jax.vmap(lambda a, b, d: best_pair(a, b, d, increase=increase))(take(a, rows), take(b, rows),
                                                                           take(domain, rows))
    return full, jnp.ones(rows.shape, bool)

  # Each tier's loop stops at once when no row is pending, so a batch certified throughout pays one check per tier.
  choice, rest = cand.choice, pending
  if 0 < region < m:
    choice, rest = _resolve(choice, rest, chunk, regional, narrow=False)
  return _resolve(choice, rest, chunk, dense, narrow=True)[0]
