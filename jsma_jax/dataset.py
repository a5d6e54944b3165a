"""Attack a whole dataset in chunks of one size: progress, resumable, over many processes.

Long work (thousands of attacks, minutes on a CPU) shows its progress; every
chunk has the same shape, so the attack compiles once. With ``checkpoint_dir``
every finished chunk is saved at once (written aside, then renamed into place,
so a file is whole or absent) under a key of what it was made under: its
inputs, the model and its weights, the options, the versions
(:mod:`jsma_jax._chunk_files`). A repeated run loads the chunks whose key
matches and attacks only the rest.

Under JAX's multi-controller runtime (``jax.distributed.initialize()``, see
``docs/distributed.md``) every process calls :func:`attack_dataset` with the
whole dataset; process ``p`` of ``P`` attacks chunks ``p, p + P, p + 2P, ...``
on its own devices, then the processes exchange their results, one round of
``P`` chunks at a time, so that each process (or process 0 alone) returns the
whole result in order. An error on one process is raised on every process.

Before any chunk is compiled, every argument and the values of the whole
dataset are checked (an error names the first bad example's index in ``x``),
and across processes the verdicts are agreed, then the processes compare
digests of the dataset and of the run key (model, weights, every option), so
that no process waits for another and no result mixes two models.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jsma_jax import _chunk_files, _processes, _validate, batching
from jsma_jax import options as options_lib
from jsma_jax import progress as progress_lib
from jsma_jax.distributed import jsma_local
from jsma_jax.types import JSMAResult

LONG_ATTACK = 1_000  # iterations of budget from which the bar shows the iteration reached inside a chunk
PROGRESS_EVERY = 10  # iterations between those reports

Array = jax.Array
COLLECT = ("all", "process0")
_FIELDS = _chunk_files.FIELDS


def attack_dataset(
    logits_fn: Callable[..., Array],
    x: Any,
    targets: Any,
    *,
    params: Any = None,
    chunk_size: int = 2048,
    progress: bool = True,
    description: str = "jsma",
    checkpoint_dir: str | os.PathLike | None = None,
    collect: str = "all",
    on_chunk: Callable[[int, bool], None] | None = None,
    **options: Any,
) -> JSMAResult | None:
  """:func:`jsma_jax.jsma` over a whole dataset in chunks of ``chunk_size``, with a progress bar.

  Every chunk has the same size (the last one is padded and the padding
  dropped), so the attack compiles once; results are gathered on the host as
  NumPy arrays and equal one :func:`~jsma_jax.jsma` call on the whole set.
  Across processes (``jax.distributed``), each process attacks its share of
  the chunks and the results are exchanged (see the module docstring).

  Args:
    logits_fn, params: the model, as for :func:`jsma_jax.jsma`.
    x: ``[B, *shape]`` inputs (NumPy or JAX), the whole dataset, the same on
      every process.
    targets: ``[B]`` int labels.
    chunk_size: examples per compiled call (at most ``B``).
    progress: show a ``tqdm`` bar (attacks done, successes so far; with a budget
      of ``LONG_ATTACK`` iterations or more, also the iteration reached inside
      the chunk under way, reported from the compiled loop: :mod:`jsma_jax.progress`);
      each process shows its own share.
    description: the bar's label.
    checkpoint_dir: a folder for one file per finished chunk; a run repeated
      with the same folder (after an interruption on any process) loads the
      chunks made under the same inputs, model and options and attacks the
      rest. A folder every process can see lets a run resume with another
      number of processes; otherwise each process finds its own chunks.
    collect: ``"all"`` (every process returns the whole result) or
      ``"process0"`` (process 0 does; the others return ``None``).
    on_chunk: called as ``on_chunk(index, loaded)`` on the process that owns
      chunk ``index`` once it is done (and saved), ``loaded`` when it came
      from ``checkpoint_dir``.
    **options: every option of :func:`jsma_jax.jsma` (``options=``,
      ``engine=`` or single fields); per-example bounds or masks
      (``[B, *shape]``) are chunked with ``x``.

  Returns:
    :class:`~jsma_jax.JSMAResult` of NumPy arrays, ``[B, ...]`` (``None`` on
    processes other than 0 with ``collect="process0"``).

  Example:
    Five attacks in chunks of two (three calls of one compiled size):

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> result = attack_dataset(f, np.zeros((5, 4)), np.ones(5, int), chunk_size=2, progress=False,
    ...                         max_iter=2)
    >>> type(result.x_adv).__name__, result.x_adv.shape, result.success.tolist()
    ('ndarray', (5, 4), [True, True, True, True, True])
  """
  count, rank = jax.process_count(), jax.process_index()
  across = count > 1
  error = None
  try:  # every check before any chunk is compiled, and agreed by every process below
    x, targets, attack_options, engine, run = _checked(logits_fn, x, targets, params, chunk_size, collect,
                                                       checkpoint_dir, options)
  except Exception as e:  # raised on every process below, so that none waits for the others
    error = e
  _processes.raise_everywhere(error, across)
  total = x.shape[0]
  size = min(chunk_size, total)
  if across:  # the same work everywhere, or the exchanges below would not line up
    _same_everywhere(x, targets, size, collect, checkpoint_dir is not None, run.agreement)
  engine = dataclasses.replace(engine, pad_batches=False)  # every chunk has the one compiled size already
  folder = None if checkpoint_dir is None else Path(checkpoint_dir)
  per_example = _per_example_options(attack_options, x)  # [B, *shape] bounds or mask: chunked with x
  key = None if folder is None else run.key
  mine: dict[int, JSMAResult] = {}
  try:
    starts = list(range(0, total, size))
    own = [i for i in range(len(starts)) if i % count == rank]
    share = sum(min(size, total - starts[i]) for i in own)
    label = description if not across else f"{description} [{rank}/{count}]"
    bar = _progress(share, label) if progress else None
    wins = done = 0
    stale = 0
    budget = attack_options.budget(math.prod(x.shape[1:]))
    run_engine, listening = engine, contextlib.ExitStack()
    if bar is not None and budget >= LONG_ATTACK:  # the bar shows the iteration reached inside each chunk
      run_engine = dataclasses.replace(engine, progress_every=PROGRESS_EVERY)
      shown = {"success": "-"}
      def show(iteration: int, running: int) -> None:
        bar.set_postfix(success=shown["success"], iteration=f"{iteration:,}/{budget:,}", running=running)
      listening.enter_context(progress_lib.listening(show))
    try:
      for i in own:
        start = starts[i]
        n = min(size, total - start)
        xs, ts, rows = batching.pad_batch(
            (x[start:start + n], targets[start:start + n], {k: v[start:start + n] for k, v in per_example.items()}),
            size)
        chunk_options = dataclasses.replace(attack_options, **rows) if rows else attack_options
        chunk_key = None if key is None else _chunk_files.chunk_key(key, start, size, xs[:n], ts[:n])
        result, loaded = None, False
        if chunk_key is not None:
          result, found = _chunk_files.load(folder / _chunk_files.name(i), chunk_key)
          loaded, stale = result is not None, stale + (found and result is None)
        if result is None:
          # every chunk over this process's devices
          result = jax.device_get(jsma_local(logits_fn, xs, ts, params=params, options=chunk_options,
                                             engine=run_engine))
          result = jax.tree.map(lambda v, n=n: np.asarray(v[:n]), result)
          if chunk_key is not None:
            _chunk_files.save(folder / _chunk_files.name(i), chunk_key, result)
        mine[i] = result
        if on_chunk is not None:
          on_chunk(i, loaded)
        wins, done = wins + int(result.success.sum()), done + n
        if bar is not None:
          bar.update(n)
          if run_engine is not engine:
            jax.effects_barrier()  # this chunk's last reports first
            shown["success"] = f"{wins / done:.1%}"
          bar.set_postfix(success=f"{wins / done:.1%}")
    finally:
      listening.close()
      if bar is not None:
        bar.close()
    if stale:
      warnings.warn(f"{stale} chunk file(s) in {folder} were made under other inputs, model or options; "
                    "they were attacked again and replaced", UserWarning, stacklevel=2)
  except Exception as e:  # raised on every process below, so that none waits for the others
    error = e
  _processes.raise_everywhere(error, across)
  if not across:
    parts = [tuple(mine[i]) for i in sorted(mine)]
  else:
    parts = _exchange(mine, len(starts), size, collect == "all" or rank == 0)
  if parts is None:
    return None
  arrays = [np.concatenate(v)[:total] if v[0] is not None else None for v in zip(*parts)]
  return JSMAResult(*arrays, rule=attack_options.rule.name, criterion=attack_options.rule.criterion)


def _exchange(mine: dict[int, JSMAResult], chunks: int, size: int, keep: bool) -> list | None:
  """Every process's chunks, in order, one round of ``P`` chunks at a time (a collective per round).

  Returns the arrays of every chunk (padded to ``size`` rows) in order, or ``None`` when not ``keep``.
  """
  count, rank = jax.process_count(), jax.process_index()
  example = next(iter(mine.values()), None)
  layout = _layout(example, size)  # agreed by every process (a collective)
  parts = []
  for first in range(0, chunks, count):
    i = first + rank
    record = _pack(mine[i], layout, size) if i in mine else np.zeros(layout[-1][-1], np.uint8)
    records = _processes.gather(record, True)
    if keep:
      parts += [_unpack(records[j], layout) for j in range(count) if first + j < chunks]
  return parts if keep else None


def _layout(example: JSMAResult | None, size: int) -> list:
  """``(field, shape, dtype, start, stop)`` of each array in a chunk's packed bytes, agreed by every process.

  A collective: each process sends the shapes and dtypes of its results (a
  process without a chunk learns them from the others).
  """
  text = b"" if example is None else json.dumps(
      [None if getattr(example, f) is None else [getattr(example, f).shape[1:], getattr(example, f).dtype.str]
       for f in _FIELDS]).encode()
  record = np.zeros(1024, np.uint8)
  record[:len(text)] = np.frombuffer(text, np.uint8)
  texts = {bytes(r).rstrip(b"\0") for r in _processes.gather(record, True)} - {b""}
  if len(texts) != 1:
    raise RuntimeError("the processes' chunk results differ in shape or dtype; "
                       "call attack_dataset with the same model and options on every process")
  layout, offset = [], 0
  for name, spec in zip(_FIELDS, json.loads(texts.pop())):
    if spec is None:
      layout.append((name, None, None, offset, offset))
      continue
    shape, dtype = (size, *spec[0]), np.dtype(spec[1])
    stop = offset + math.prod(shape) * dtype.itemsize
    layout.append((name, shape, dtype, offset, stop))
    offset = stop
  return layout


def _pack(result: JSMAResult, layout: list, size: int) -> np.ndarray:
  """A chunk's result arrays as one byte vector (rows padded to ``size``)."""
  record = np.zeros(layout[-1][-1], np.uint8)
  for name, shape, dtype, start, stop in layout:
    if shape is not None:
      value = batching.pad_batch(np.ascontiguousarray(getattr(result, name), dtype), size)
      record[start:stop] = value.reshape(-1).view(np.uint8)
  return record


def _unpack(record: np.ndarray, layout: list) -> tuple:
  """The result arrays of one packed chunk, in field order (``None`` for an absent ``trace``)."""
  return tuple(None if shape is None else record[start:stop].copy().view(dtype).reshape(shape)
               for _, shape, dtype, start, stop in layout)


def _checked(logits_fn, x, targets, params, chunk_size, collect, checkpoint_dir, options: dict):
  """Every argument and the whole dataset's values, before any chunk is compiled (no collective).

  Returns ``(x, targets, attack_options, engine, run)``: the data as NumPy arrays,
  the resolved options and the :class:`~jsma_jax._chunk_files.RunKey` (model and
  options digested, the model traced once on one example). An error names the
  argument and, for values, the first offending example's index in ``x``.
  """
  _validate.check_count("chunk_size", chunk_size, minimum=1, optional=False)
  _validate.check_choice("collect", collect, COLLECT)
  _validate.check_host_data("x", x)
  _validate.check_host_data("targets", targets)
  x, targets = np.asarray(x), np.asarray(targets)
  _validate.check_same_batch("x", x, "targets", targets)
  attack_options, engine = options_lib.resolve(options.pop("options", None), options.pop("engine", None), options)
  for name in ("clip_min", "clip_max", "mask"):
    _validate.check_host_data(name, getattr(attack_options, name))
  checked, checked_targets = _validate.check_inputs(x, targets)  # kinds and shapes of the whole dataset
  run = _chunk_files.run_key(logits_fn, params, x, attack_options, engine)  # the model's checks on one example
  # the values of the whole dataset: an error names the example's index in x, not in its chunk
  _validate.check_values(checked, checked_targets, run.num_classes)
  _validate.check_feature_space(checked, attack_options.clip_min, attack_options.clip_max, attack_options.mask,
                                need=2 if attack_options.pairwise else 1)
  if checkpoint_dir is not None:
    _chunk_files.check_writable(Path(checkpoint_dir))
  return x, targets, attack_options, engine, run


def _same_everywhere(x: np.ndarray, targets: np.ndarray, size: int, collect: str, resumable: bool,
                     run: str) -> None:
  """Every process must pass the same dataset, model, weights and options: compared by digest (a collective).

  ``run``: the digest of the model's program and weights and of every option
  (:class:`jsma_jax._chunk_files.RunKey`'s ``agreement``).
  """
  data = hashlib.sha256()
  for value in (x, targets):
    data.update(f"{value.shape}{value.dtype.str}".encode())
    data.update(np.ascontiguousarray(value).view(np.uint8).reshape(-1).data)
  data.update(f"{size}/{collect}/{resumable}".encode())
  record = np.frombuffer(data.digest() + bytes.fromhex(run), np.uint8)
  digests = _processes.gather(record, True)
  differ = {}
  for what, part in (("x, targets, chunk_size, collect and checkpoint_dir", slice(0, 32)),
                     ("the model, its weights (params) and every attack option", slice(32, 64))):
    unlike = np.flatnonzero((digests[:, part] != digests[:1, part]).any(axis=1))
    if unlike.size:
      differ[what] = [int(p) for p in unlike]
  if differ:
    named = ", ".join(f"processes {p} differ from process 0" + (f" in {what}" if len(differ) > 1 else "")
                      for what, p in differ.items())
    raise ValueError(f"{' and '.join(differ)} must be the same on every process (each attacks its share of the "
                     f"whole dataset, and the results are put together); {named}")


def _per_example_options(options, x: np.ndarray) -> dict:
  """The fields of ``options`` (an ``AttackOptions``) given per example (``[B, *shape]`` bounds or mask)."""
  fields = {k: getattr(options, k) for k in ("clip_min", "clip_max", "mask")}
  return {k: np.asarray(v) for k, v in fields.items()
          if v is not None and np.ndim(v) == x.ndim and np.shape(v)[0] == x.shape[0] and x.shape[0] > 1}


def _progress(total: int, description: str):
  return progress_lib.bar(total, description)  # "compiling" until the first chunk is counted
