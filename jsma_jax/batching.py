"""Batches of a fixed set of sizes.

The compiled attack is specialised on the batch size. :func:`bucket_size`
rounds a batch up to one of a few sizes (four per octave: at most 25% more),
so ragged batches reuse compiled programs; :func:`pad_batch` is the one
padding helper of the library.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def bucket_size(batch: int, *, smallest: int = 8) -> int:
  """The smallest size ``>= batch`` of the form ``2^k * {4, 5, 6, 7} / 4`` (and ``>= smallest``).

  Four sizes per octave, so padding adds at most 25%; :func:`jsma_jax.jsma`
  pads every batch to one (``pad_batches=True``) so that ragged batches reuse
  a compiled attack.

  Args:
    batch: the number of examples, ``B >= 1``.
    smallest: the smallest size returned.

  Returns:
    the bucket size, an int ``>= max(batch, smallest)``.

  Example:
    >>> [bucket_size(b) for b in (1, 9, 100, 270, 1000)]
    [8, 10, 112, 320, 1024]
  """
  if batch <= smallest:
    return smallest
  octave = 2 ** (math.floor(math.log2(batch)) - 2)
  return octave * -(-batch // octave)


def chunks(arrays: Any, size: int):
  """Yield ``(start, n, padded)``: ``arrays`` (a pytree, leading axis ``B``) ``size`` rows at a time.

  Every chunk is padded to ``size`` rows (:func:`pad_batch`), so a compiled
  function of one shape serves them all; ``n`` is the count of real rows.
  """
  total = jax.tree.leaves(arrays)[0].shape[0]
  for start in range(0, total, size):
    n = min(size, total - start)
    yield start, n, pad_batch(jax.tree.map(lambda v, start=start: v[start:start + size], arrays), size)


def pad_batch(arrays: Any, size: int) -> Any:
  """Pad every array of the pytree ``arrays`` along axis 0 to ``size`` rows, with copies of row 0.

  Works on NumPy and JAX arrays (and tracers); returns them unchanged when
  they already have ``size`` rows.

  Args:
    arrays: a pytree of arrays ``[B, ...]`` sharing ``B``.
    size: the rows wanted, ``>= B`` (else ``ValueError``).

  Returns:
    the same pytree, every array ``[size, ...]``, of the same array type.

  Example:
    >>> x, t = pad_batch((np.arange(6.).reshape(3, 2), np.array([7, 8, 9])), 4)
    >>> x.shape, t.tolist()
    ((4, 2), [7, 8, 9, 7])
  """
  def pad(v):
    n = v.shape[0]
    if n == size:
      return v
    if n > size:
      raise ValueError(f"cannot pad a batch of {n} rows to {size}")
    xp = np if isinstance(v, np.ndarray) else jnp
    return xp.concatenate([v, xp.repeat(v[:1], size - n, axis=0)])

  return jax.tree.map(pad, arrays)
