"""Adversarial saliency maps: arrays in, arrays out.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings*
(EuroS&P 2016), Eq. 8 and 9 (one feature) and Algorithm 3 (pairs of features).

Every function here works on **one example** whose features are flattened to a
vector of length ``M``: ``a`` is the derivative of the target output,
``a_i = dZ_t/dx_i``, and ``b`` the derivative of the other outputs,
``b_i = sum_{j != t} dZ_j/dx_i``. ``domain`` is the boolean search domain
(``Gamma`` in the paper). Batch them with :func:`jax.vmap`.

With ``increase=True`` a feature (or pair) is *admissible* when ``a > 0`` and
``b < 0`` (``alpha > 0`` and ``beta < 0`` for a pair); with ``increase=False``
the signs are mirrored. The score of an admissible feature or pair is
``-a * b`` (``-alpha * beta``), i.e. ``a |b|`` when increasing and ``|a| b`` when
decreasing. Ties go to the lowest (flat) index, so every choice is
deterministic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax.types import Choice

Array = jax.Array


def oriented(a: Array, b: Array, increase: bool) -> tuple[Array, Array]:
  """Flip signs so that admissible always reads ``a > 0`` and ``b < 0``."""
  return (a, b) if increase else (-a, -b)


def single_feature_saliency(
    a: Array, b: Array, domain: Array | None = None, *, increase: bool = True
) -> Array:
  """Single-feature saliency map, Eq. 8 (``increase=True``) or Eq. 9.

  ``S[i] = a_i |b_i|`` if ``a_i > 0`` and ``b_i < 0`` (increasing), or
  ``|a_i| b_i`` if ``a_i < 0`` and ``b_i > 0`` (decreasing); ``0`` otherwise and
  outside ``domain``.

  Args:
    a: ``[M]`` derivative of the target output.
    b: ``[M]`` summed derivative of the other outputs.
    domain: optional ``[M]`` bool search domain (all features when ``None``).
    increase: direction of the attack (sign of ``theta``).

  Returns:
    ``[M]`` non-negative saliency, same dtype as ``a``.

  Example:
    >>> single_feature_saliency(jnp.array([1., -1.]), jnp.array([-2., -2.]))
    Array([2., 0.], dtype=float32)
  """
  sa, sb = oriented(a, b, increase)
  admissible = (sa > 0) & (sb < 0)
  if domain is not None:
    admissible &= domain
  return jnp.where(admissible, -a * b, jnp.zeros_like(a))


def pairwise_saliency(
    a: Array, b: Array, domain: Array | None = None, *, increase: bool = True
) -> Array:
  """The full pairwise saliency matrix of Algorithm 3 (for inspection).

  ``S[p, q] = -(a_p + a_q)(b_p + b_q)`` for admissible pairs ``p != q`` inside
  ``domain``, ``-inf`` elsewhere (the diagonal included). Symmetric. This builds
  an ``M x M`` array: use :func:`best_pair` inside attacks.

  Args:
    a: ``[M]`` derivative of the target output.
    b: ``[M]`` summed derivative of the other outputs.
    domain: optional ``[M]`` bool search domain (all features when ``None``).
    increase: direction of the attack (sign of ``theta``).

  Returns:
    ``[M, M]`` scores.

  Example:
    >>> a, b = jnp.array([-1., 1., 0., .5]), jnp.array([1., -1., .5, 0.])
    >>> S = pairwise_saliency(a, b)
    >>> S.shape, float(S[1, 3]), float(S[0, 1])  # (1, 3): alpha = 1.5, beta = -1; (0, 1): alpha = 0
    ((4, 4), 1.5, -inf)
  """
  m = a.shape[0]
  sa, sb = oriented(a, b, increase)
  alpha = sa[:, None] + sa[None, :]
  beta = sb[:, None] + sb[None, :]
  valid = (alpha > 0) & (beta < 0) & ~jnp.eye(m, dtype=bool)
  if domain is not None:
    valid &= domain[:, None] & domain[None, :]
  return jnp.where(valid, -alpha * beta, -jnp.inf)


def _max_and_argmax(values: Array, axis: int) -> tuple[Array, Array]:
  """Maximum and first index of the maximum along ``axis``, in one reduction.

  A single variadic reduction keeps XLA from materialising ``values`` for two
  separate consumers (``max`` and ``argmax``), so callers can feed it a large
  broadcast expression that is fused into the reduction.
  """
  index = lax.broadcasted_iota(jnp.int32, values.shape, axis)

  def pick(left, right):
    lv, li = left
    rv, ri = right
    take_left = (lv > rv) | ((lv == rv) & (li < ri))
    return jnp.where(take_left, lv, rv), jnp.where(take_left, li, ri)

  init = (jnp.array(-jnp.inf, values.dtype), jnp.array(jnp.iinfo(jnp.int32).max, jnp.int32))
  return lax.reduce((values, index), init, pick, (axis,))


def best_feature(
    a: Array, b: Array, domain: Array, *, increase: bool = True
) -> Choice:
  """The most salient admissible feature (Algorithm 1's choice): the argmax of Eq. 8 (Eq. 9).

  Args:
    a: ``[M]`` derivative of the target output.
    b: ``[M]`` summed derivative of the other outputs.
    domain: ``[M]`` bool search domain.
    increase: direction of the attack.

  Returns:
    :class:`Choice` with ``p == q``; ``score == -inf`` when no feature in
    ``domain`` is admissible.

  Example:
    >>> a, b = jnp.array([-1., 1., 0., .5]), jnp.array([1., -1., .5, 0.])
    >>> choice = best_feature(a, b, jnp.ones(4, bool))
    >>> float(choice.score), int(choice.p), int(choice.q)
    (1.0, 1, 1)
    >>> float(best_feature(a, b, jnp.array([True, False, True, True])).score)  # feature 1 left the domain
    -inf
  """
  sa, sb = oriented(a, b, increase)
  valid = domain & (sa > 0) & (sb < 0)
  score, p = _max_and_argmax(jnp.where(valid, -a * b, -jnp.inf), 0)
  return Choice(score, p, p)


PAIR_BLOCK_ELEMENTS = 1 << 22  # pair scores evaluated at once per example by best_pair (rows x M)


def best_pair(a: Array, b: Array, domain: Array, *, increase: bool = True) -> Choice:
  """The most salient admissible pair (Algorithm 3), exact, ties to the lowest index.

  Maximises ``-(a_p + a_q)(b_p + b_q)`` over ``p < q`` in ``domain`` with
  ``alpha = a_p + a_q > 0`` and ``beta = b_p + b_q < 0`` (mirrored when
  decreasing). Row maxima first, then the best row: the lowest flat index
  ``p * M + q`` wins ties. The rows are scored a block at a time (at most
  ``PAIR_BLOCK_ELEMENTS`` pairs, one block when ``M <= 2048``), so memory grows
  linearly in ``M`` whatever XLA fuses: no ``M x M`` array is ever built.

  Args:
    a: ``[M]`` derivative of the target output.
    b: ``[M]`` summed derivative of the other outputs.
    domain: ``[M]`` bool search domain.
    increase: direction of the attack.

  Returns:
    :class:`Choice` ``(score, p, q)`` with ``p < q``; ``score == -inf`` when no
    pair is admissible.

  Example:
    >>> a, b = jnp.array([-1., 1., 0., .5]), jnp.array([1., -1., .5, 0.])
    >>> choice = best_pair(a, b, jnp.ones(4, bool))
    >>> float(choice.score), int(choice.p), int(choice.q)  # -(1 + 0.5) * (-1 + 0)
    (1.5, 1, 3)
    >>> int(best_pair(a, b, jnp.ones(4, bool), increase=False).p)  # decreasing: signs mirrored
    0
  """
  m = a.shape[0]
  sa, sb = oriented(a, b, increase)
  rows_per_block = max(1, min(m, PAIR_BLOCK_ELEMENTS // m))
  blocks = -(-m // rows_per_block)
  pad = blocks * rows_per_block - m  # padded rows lie outside the domain: never admissible
  row_sa, row_sb, row_domain = jnp.pad(sa, (0, pad)), jnp.pad(sb, (0, pad)), jnp.pad(domain, (0, pad))

  def block_best(start):
    """Row maxima and their first columns for rows ``start .. start + rows_per_block - 1``."""
    rows = start + lax.broadcasted_iota(jnp.int32, (rows_per_block, m), 0)
    cols = lax.broadcasted_iota(jnp.int32, (rows_per_block, m), 1)
    take = lambda v: lax.dynamic_slice_in_dim(v, start, rows_per_block)
    alpha = take(row_sa)[:, None] + sa[None, :]
    beta = take(row_sb)[:, None] + sb[None, :]
    valid = (cols > rows) & take(row_domain)[:, None] & domain[None, :] & (alpha > 0) & (beta < 0)
    return _max_and_argmax(jnp.where(valid, -alpha * beta, -jnp.inf), 1)

  if blocks == 1:
    row_best, row_arg = block_best(jnp.int32(0))
  else:
    row_best, row_arg = lax.map(block_best, jnp.arange(blocks, dtype=jnp.int32) * rows_per_block)
    row_best, row_arg = row_best.reshape(-1)[:m], row_arg.reshape(-1)[:m]
  score, p = _max_and_argmax(row_best, 0)
  return Choice(score, p, row_arg[p])
