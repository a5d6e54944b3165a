"""What this process holds of a global array, and agreement across the processes of a run.

Under JAX's multi-controller runtime (``jax.distributed.initialize()``) every
process runs the same program on global arrays of which it holds only some
shards. A check must then read only those shards, and every process must reach
the same verdict: an error raised on one process alone would leave the others
waiting in the attack's collectives for ever. The helpers here read the rows a
process holds and exchange small fixed-size records between the processes
(:func:`gather`, one tiny collective), so that every process raises the same
error. On a single process (or for arrays every process holds whole) they
communicate nothing.

Every process must call a collective helper at the same point, in the same
order; the library only calls them from code that every process runs with the
same global shapes.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

_MESSAGE_BYTES = 2048  # an error's text, as exchanged between processes
_ERRORS = (ValueError, TypeError, RuntimeError)


def spans_processes(value: Any) -> bool:
  """Whether ``value`` is a ``jax.Array`` with shards on other processes' devices."""
  return isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer) and not value.is_fully_addressable


def local_rows(x: Any, name: str = "x") -> tuple[np.ndarray, np.ndarray]:
  """The rows of ``x`` ``[B, ...]`` this process holds: ``(global indices [b], rows [b, ...])``, in order.

  An array every process holds whole gives all its rows. A global array must
  be sharded along its first axis only (each shard holds whole rows); a row
  held by several local devices is read once.
  """
  if not spans_processes(x):
    x = np.asarray(x)
    return np.arange(x.shape[0]), x
  total = x.shape[0]
  parts: dict[int, tuple] = {}
  for shard in x.addressable_shards:
    start, stop, _ = shard.index[0].indices(total)
    whole = all(s.indices(n)[:2] == (0, n) for s, n in zip(shard.index[1:], x.shape[1:]))
    if not whole:
      raise ValueError(f"{name} must be sharded along its batch (first) axis only, got sharding {x.sharding}; "
                       "use NamedSharding(mesh, PartitionSpec(axis)) over a one-axis mesh")
    parts.setdefault(start, (stop, shard.data))
  index = [np.arange(start, stop) for start, (stop, _) in sorted(parts.items())]
  rows = [np.asarray(data) for _, (_, data) in sorted(parts.items())]
  if not rows:
    return np.zeros(0, int), np.zeros((0, *x.shape[1:]), x.dtype)
  return np.concatenate(index), np.concatenate(rows)


def gather(record: np.ndarray, across: bool) -> np.ndarray:
  """Every process's ``record`` (same shape and dtype on each), stacked: ``[P, ...]``.

  A collective when ``across`` (every process must call it); ``record[None]``
  otherwise. The bytes are exchanged, so any dtype arrives exactly.
  """
  record = np.ascontiguousarray(record)
  if not across or jax.process_count() == 1:
    return record[None]
  from jax.experimental import multihost_utils

  raw = np.asarray(multihost_utils.process_allgather(record.reshape(-1).view(np.uint8)))
  return raw.view(record.dtype).reshape((raw.shape[0], *record.shape))


def first_found(found: np.ndarray | None, across: bool, size: int) -> np.ndarray | None:
  """The finding with the lowest example index over every process (a collective when ``across``).

  ``found``: this process's first finding as ``size`` float64 numbers, the
  global example index first (``None``: nothing found here). Every process
  gets the same answer, so every process raises the same error, naming the
  first offending example of the whole batch.
  """
  record = np.full(size, np.inf) if found is None else np.asarray(found, np.float64)
  records = gather(record, across)
  best = records[int(np.argmin(records[:, 0]))]
  return None if not np.isfinite(best[0]) else best


def raise_everywhere(error: BaseException | None, across: bool) -> None:
  """Raise on every process when any one has an ``error`` (a collective when ``across``).

  The process that failed raises its own error; the others raise an error of
  the same kind (``ValueError``, ``TypeError`` or else ``RuntimeError``) that
  names the process and repeats its message, so that no process is left
  waiting for the others.
  """
  if not across or jax.process_count() == 1:
    if error is not None:
      raise error
    return
  kind = 0 if error is None else 1 + next((i for i, e in enumerate(_ERRORS) if isinstance(error, e)), 2)
  text = b"" if error is None else f"{type(error).__name__}: {error}".encode()[: _MESSAGE_BYTES - 8]
  record = np.zeros(_MESSAGE_BYTES, np.uint8)
  record[:4] = np.frombuffer(np.int32(kind).tobytes(), np.uint8)
  record[4:8] = np.frombuffer(np.int32(len(text)).tobytes(), np.uint8)
  record[8:8 + len(text)] = np.frombuffer(text, np.uint8)
  records = gather(record, True)
  kinds = records[:, :4].copy().view(np.int32)[:, 0]
  failed = np.flatnonzero(kinds)
  if error is not None:
    raise error
  if failed.size:
    first = int(failed[0])
    length = int(records[first, 4:8].copy().view(np.int32)[0])
    message = bytes(records[first, 8:8 + length]).decode(errors="replace")
    raise _ERRORS[kinds[first] - 1](f"process {first} of {len(kinds)} failed: {message}")


def value_range(x: Any) -> tuple[bool, float, float]:
  """``(all finite, min, max)`` of ``x`` over every process's shards (min and max when all are finite).

  Each process reads only its own rows (:func:`local_rows`); when ``x`` spans
  processes the three numbers are exchanged (a collective), so every process
  gets the same answer. ``min > max`` when there is no value to bound.
  """
  _, rows = local_rows(x)
  finite = bool(np.isfinite(rows).all())
  lo, hi = (rows.min(), rows.max()) if finite and rows.size else (np.inf, -np.inf)
  records = gather(np.array([finite, lo, hi], np.float64), spans_processes(x))
  finite = bool(records[:, 0].all())
  return finite, (float(records[:, 1].min()) if finite else np.inf), (float(records[:, 2].max()) if finite else -np.inf)
