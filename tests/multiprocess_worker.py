"""One process of the two-process tests (``tests/test_multiprocess.py``); not a test module itself.

Run as ``python multiprocess_worker.py TASK PROCESS_ID PORT OUT_DIR [STOP_AFTER]``: it joins a
two-process ``jax.distributed`` runtime on ``127.0.0.1:PORT`` (CPU collectives), runs ``TASK``
and writes what it saw under ``OUT_DIR`` as ``.npz`` files for the test to compare.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import toy_models
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jsma_jax

SHAPE, N = (5, 6), 5
PARAMS = jax.tree.map(lambda v: np.asarray(v, np.float32), toy_models.mlp_params(5, SHAPE, N))
MODEL = toy_models.apply_mlp_relu
OPTIONS = dict(gamma=0.4, slots=4)


def nan_at_half(params, x):
  """The model, but NaN for an example whose first feature is exactly 0.5."""
  first = x.reshape(x.shape[0], -1)[:, :1]
  return jnp.where(first == 0.5, jnp.nan, MODEL(params, x))


def data(batch: int, seed: int = 6):
  x = np.asarray(toy_models.random_inputs(seed, batch, SHAPE), np.float32)
  t = np.random.default_rng(seed + 1).integers(0, N, size=batch).astype(np.int32)
  return x, t


def local(result) -> dict:
  """This process's rows of every array of a result: {field: rows}, plus their global indices."""
  saved = {}
  for name, value in zip(("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted"), result):
    rows, values = [], []
    for shard in value.addressable_shards:
      start, stop, _ = shard.index[0].indices(value.shape[0])
      rows.append(np.arange(start, stop))
      values.append(np.asarray(shard.data))
    saved[name], saved[name + "_rows"] = np.concatenate(values), np.concatenate(rows)
    saved[name + "_spec"] = np.array(str(value.sharding.spec) if hasattr(value.sharding, "spec") else "")
  return saved


def error_text(call) -> str:
  try:
    call()
  except (ValueError, TypeError, RuntimeError) as e:
    return f"{type(e).__name__}: {e}"
  return "no error"


def sharded(process_id: int, out: Path) -> None:
  """jsma_sharded on global arrays built from each process's own rows, and the checks' agreement."""
  mesh = Mesh(np.asarray(jax.devices()), ("batch",))
  spec = NamedSharding(mesh, P("batch"))
  saved = {}
  for batch in (12, 18, 20):  # 18 is ragged: padded to the bucket 20 (one compiled program with 20)
    x, t = data(batch)
    mine = slice(process_id * batch // 2, (process_id + 1) * batch // 2)
    gx = jax.make_array_from_process_local_data(spec, x[mine])
    gt = jax.make_array_from_process_local_data(spec, t[mine])
    result = jsma_jax.jsma_sharded(MODEL, gx, gt, params=PARAMS, mesh=mesh, **OPTIONS)
    saved.update({f"{batch}/{k}": v for k, v in local(result).items()})
  # the whole result on every process, as docs/distributed.md shows
  saved["20/gathered"] = multihost_utils.process_allgather(result.x_adv, tiled=True)
  # A batch that does not split over the two processes, given whole to every process: returned replicated.
  x, t = data(19)
  result = jsma_jax.jsma_sharded(MODEL, x, t, params=PARAMS, mesh=mesh, **OPTIONS)
  saved.update({f"19/{k}": v for k, v in local(result).items()})
  # Bad values held by process 1 alone: every process raises the same error (no hang).
  x, t = data(16)
  bad_x = x.copy()
  bad_x[12, 0, 0] = 3.0  # row 12 lives on process 1
  bad_t = t.copy()
  bad_t[9] = N  # so does row 9
  nan_x = x.copy()
  nan_x[13, 0, 0] = 0.5  # the model below returns NaN for this example alone, held by process 1
  mine = slice(process_id * 8, (process_id + 1) * 8)
  g = lambda v: jax.make_array_from_process_local_data(spec, v[mine])
  saved["error/x"] = np.array(error_text(lambda: jsma_jax.jsma_sharded(MODEL, g(bad_x), g(t), params=PARAMS,
                                                                       mesh=mesh, **OPTIONS)))
  saved["error/t"] = np.array(error_text(lambda: jsma_jax.jsma_sharded(MODEL, g(x), g(bad_t), params=PARAMS,
                                                                       mesh=mesh, **OPTIONS)))
  saved["error/nan"] = np.array(error_text(lambda: jsma_jax.jsma_sharded(nan_at_half, g(nan_x), g(t), params=PARAMS,
                                                                         mesh=mesh, **OPTIONS)))
  # attack_dataset: a bad chunk on process 1 (chunk 1 of 3: rows 4-7) fails the run on both processes
  # (a model that turns NaN there: bad values of x and targets are refused for the whole dataset before any chunk)
  bad_x = x[:12].copy()
  bad_x[5, 0, 0] = 0.5
  saved["error/dataset"] = np.array(error_text(lambda: jsma_jax.attack_dataset(
      nan_at_half, bad_x, t[:12], params=PARAMS, chunk_size=4, progress=False, **OPTIONS)))
  silent(process_id, saved, mesh, spec)
  # ... and so do datasets that differ between the processes
  saved["error/differ"] = np.array(error_text(lambda: jsma_jax.attack_dataset(
      MODEL, x[:12] * (1 - process_id / 2), t[:12], params=PARAMS, chunk_size=4, progress=False, **OPTIONS)))
  np.savez(out / f"sharded-{process_id}.npz", **saved)


def silent(process_id: int, saved: dict, mesh, spec) -> None:
  """Processes that disagree raise on every process (none waits), and global per-example spaces."""
  x, t = data(12)
  run = lambda **kw: error_text(lambda: jsma_jax.attack_dataset(
      MODEL, kw.pop("x", x), t, params=kw.pop("params", PARAMS), chunk_size=kw.pop("chunk_size", 4), progress=False,
      on_chunk=lambda i, loaded: chunks.append(i), **{**OPTIONS, **kw}))
  chunks = []
  # another checkpoint on process 1 (its weights reversed): the same data, other results; refused on both
  other = jax.tree.map(lambda v: np.ascontiguousarray(v[..., ::-1]), PARAMS) if process_id else PARAMS
  saved["silent/weights"] = np.array(run(params=other))
  saved["silent/option"] = np.array(run(theta=1.0 if process_id == 0 else -1.0))
  # a value outside the box in process 1's copy of x alone: every process raises (no hang in the digest exchange)
  outside = x.copy()
  outside[7, 0, 0] = 3.0 if process_id else outside[7, 0, 0]
  saved["silent/outside"] = np.array(run(x=outside))
  saved["silent/chunk_size"] = np.array(run(chunk_size=4 if process_id == 0 else 0))
  saved["silent/chunks"] = np.array(chunks, int)  # no chunk was attacked by any of the calls above
  # per-example bounds and mask as global arrays, sharded like x (a ragged batch: padded to the bucket)
  x, t = data(18, seed=3)
  lo, hi, mask = silent_space(x)
  mine = slice(process_id * 9, (process_id + 1) * 9)
  g = lambda v: jax.make_array_from_process_local_data(spec, v[mine])
  result = jsma_jax.jsma_sharded(MODEL, g(x), g(t), params=PARAMS, mesh=mesh, clip_min=g(lo), clip_max=g(hi),
                                 mask=g(mask), **OPTIONS)
  saved.update({f"space/{k}": v for k, v in local(result).items()})


def bad_input(process_id: int, out: Path) -> None:
  """Process 1's copy of x has one value outside the box; the error is not caught: both processes must exit."""
  x, t = data(12)
  if process_id == 1:
    x[7, 0, 0] = 3.0
  jsma_jax.attack_dataset(MODEL, x, t, params=PARAMS, chunk_size=4, progress=False, **OPTIONS)


def silent_space(x: np.ndarray):
  """Per-example bounds (a tolerance of 0.3 around each example, within [0, 1]) and a mask (every other feature)."""
  lo, hi = np.maximum(x - 0.3, 0).astype(np.float32), np.minimum(x + 0.3, 1).astype(np.float32)
  mask = np.zeros(x.shape, bool)
  mask.reshape(x.shape[0], -1)[:, ::2] = True
  mask[::3] = True  # every third example: all features
  return lo, hi, mask


def dataset(process_id: int, out: Path, stop_after: int = -1) -> None:
  """attack_dataset over both processes, resumable; the worker exits after chunk ``stop_after`` when asked."""
  log = out / f"chunks-{process_id}.jsonl"

  def on_chunk(index: int, loaded: bool) -> None:
    with open(log, "a") as f:
      f.write(json.dumps({"chunk": index, "loaded": loaded}) + "\n")
    if stop_after >= 0 and not loaded and index >= stop_after:
      os._exit(3)  # an interruption: this process dies after saving chunk `index`

  x, t = data(45, seed=11)
  result = jsma_jax.attack_dataset(MODEL, x, t, params=PARAMS, chunk_size=6, progress=False,
                                   checkpoint_dir=out / "checkpoints", collect="process0", on_chunk=on_chunk,
                                   **OPTIONS)
  if process_id == 0:
    np.savez(out / "dataset.npz", **{k: v for k, v in zip(("x_adv", "success", "iterations", "n_changed",
                                                             "stop_reason", "predicted"), result)})
  else:
    assert result is None, result
  everywhere = jsma_jax.attack_dataset(MODEL, x[:20], t[:20], params=PARAMS, chunk_size=8, progress=False,
                                       **OPTIONS)
  np.savez(out / f"dataset-all-{process_id}.npz", x_adv=everywhere.x_adv, success=everywhere.success)


if __name__ == "__main__":
  task, process_id, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
  jax.config.update("jax_platforms", "cpu")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id, initialization_timeout=60)
  {"sharded": sharded, "dataset": dataset, "bad_input": bad_input}[task](process_id, out, *map(int, sys.argv[5:]))
  print("done", task, process_id, flush=True)
