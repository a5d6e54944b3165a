"""Attack a whole dataset in chunks of one size, with a progress bar.

Long work (thousands of attacks, minutes on a CPU) shows its progress; every
chunk has the same shape, so the attack compiles once.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from jsma_jax import _validate, batching
from jsma_jax.attack import jsma
from jsma_jax.types import JSMAResult

Array = jax.Array


def attack_dataset(
    logits_fn: Callable[..., Array],
    x: Any,
    targets: Any,
    *,
    params: Any = None,
    chunk_size: int = 2048,
    progress: bool = True,
    description: str = "jsma",
    **options: Any,
):
  """:func:`jsma_jax.jsma` over a whole dataset in chunks of ``chunk_size``, with a progress bar.

  Every chunk has the same size (the last one is padded and the padding
  dropped), so the attack compiles once; results are gathered on the host as
  NumPy arrays and equal one :func:`~jsma_jax.jsma` call on the whole set.

  Args:
    logits_fn, params: the model, as for :func:`jsma_jax.jsma`.
    x: ``[B, *shape]`` inputs (NumPy or JAX).
    targets: ``[B]`` int labels.
    chunk_size: examples per compiled call (at most ``B``).
    progress: show a ``tqdm`` bar (attacks done, successes so far).
    description: the bar's label.
    **options: every option of :func:`jsma_jax.jsma` (``options=``,
      ``engine=`` or single fields); per-example bounds or masks
      (``[B, *shape]``) are chunked with ``x``.

  Returns:
    :class:`~jsma_jax.JSMAResult` of NumPy arrays, ``[B, ...]``.

  Example:
    Five attacks in chunks of two (three calls of one compiled size):

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> result = attack_dataset(f, np.zeros((5, 4)), np.ones(5, int), chunk_size=2, progress=False,
    ...                         max_iter=2)
    >>> type(result.x_adv).__name__, result.x_adv.shape, result.success.tolist()
    ('ndarray', (5, 4), [True, True, True, True, True])
  """
  _validate.check_count("chunk_size", chunk_size, minimum=1, optional=False)
  x, targets = np.asarray(x), np.asarray(targets)
  _validate.check_same_batch("x", x, "targets", targets)
  total = x.shape[0]
  size = min(chunk_size, total)
  bar = _progress(total, description) if progress else None
  per_example = _per_example_options(options, x)
  parts, wins = [], 0
  try:
    for start, n, (xs, ts, rows) in batching.chunks((x, targets, per_example), size):
      result = jax.device_get(jsma(logits_fn, xs, ts, params=params, **{**options, **rows, "pad_batches": False}))
      result = jax.tree.map(lambda v: v[:n], result)
      parts.append(result)
      wins += int(result.success.sum())
      if bar is not None:
        bar.update(n)
        bar.set_postfix(success=f"{wins / (start + n):.1%}")
  finally:
    if bar is not None:
      bar.close()
  first = parts[0]
  arrays = [np.concatenate(v) if v[0] is not None else None for v in zip(*parts)]
  return JSMAResult(*arrays, rule=first.rule, criterion=first.criterion)


def _per_example_options(options: dict, x: np.ndarray) -> dict:
  """The options given per example (``[B, *shape]`` bounds or mask), to be chunked with ``x``.

  They may come as keywords or as fields of ``options=AttackOptions(...)``.
  """
  fields = dict(options)
  if fields.get("options") is not None:
    fields = {**{k: getattr(fields["options"], k) for k in ("clip_min", "clip_max", "mask")}, **fields}
  return {k: np.asarray(v) for k, v in fields.items()
          if k in ("clip_min", "clip_max", "mask") and v is not None and np.ndim(v) == x.ndim
          and np.shape(v)[0] == x.shape[0] and x.shape[0] > 1}


def _progress(total: int, description: str):
  try:
    from tqdm.auto import tqdm
  except ImportError:  # tqdm is a dependency of the package; without it, no bar
    return None
  return tqdm(total=total, desc=description, unit="attack")
