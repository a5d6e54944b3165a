"""Never a silently wrong result, the single-process scenarios of datasets, counts, bounds and exports,
from the user's side.

The two-process scenarios (processes with other weights or options, a bad argument on one
process, global per-example bounds and masks) are in ``tests/test_multiprocess.py``.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import jsma_jax
from jsma_jax import StopReason

W = np.asarray(np.random.default_rng(37).normal(size=(12, 4)), np.float32)  # a linear model: 12 features, 4 classes


def model(params, x):
  return x.reshape(x.shape[0], -1) @ params


def _data(n=12, seed=0):
  x = np.asarray(np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, 3, 4)), np.float32)
  return x, (np.arange(n) % 4).astype(np.int32)


def _no_chunk():
  seen = []
  return seen, lambda index, loaded: seen.append(index)


# ------------------------------------------------------------ 3. the whole dataset checked first


@pytest.mark.parametrize("bad, message", [
    ("target", r"targets must lie in \[0, 4\) for a model with 4 classes, got values in \[0, 7\]; "
               r"the first out of range is example 9 \(targets\[9\] = 7\)"),
    ("nan", r"x must be finite \(it holds NaN or inf\); the first is example 9, feature \(1, 2\): nan"),
    ("outside", r"x must lie within \[clip_min, clip_max\]; example 9, feature \(1, 2\) is 1\.5"),
])
def test_a_bad_example_late_in_the_dataset_fails_before_any_chunk_naming_its_index(bad, message):
  x, t = _data()
  if bad == "target":
    t[9] = 7
  else:
    x[9, 1, 2] = np.nan if bad == "nan" else 1.5
  seen, on_chunk = _no_chunk()
  before = jsma_jax.cache_size()
  with pytest.raises(ValueError, match=message):
    jsma_jax.attack_dataset(model, x, t, params=W, chunk_size=4, progress=False, on_chunk=on_chunk, max_iter=3)
  assert seen == [] and jsma_jax.cache_size() == before  # no chunk compiled, attacked and thrown away


# ------------------------------------------------------------ 4. an unwritable checkpoint_dir


def _refuse_writes_in(monkeypatch, folder: Path) -> None:
  """Make every file creation inside ``folder`` fail as a read-only folder does (for root too)."""
  real_open, real_os_open = builtins.open, os.open
  inside = lambda path: Path(os.fspath(path)).resolve().parent == folder.resolve()

  def guarded_open(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and any(m in mode for m in "wax+") and inside(file):
      raise PermissionError(13, "Permission denied", os.fspath(file))
    return real_open(file, mode, *args, **kwargs)

  def guarded_os_open(path, flags, *args, **kwargs):
    if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
      raise PermissionError(13, "Permission denied", os.fspath(path))
    return real_os_open(path, flags, *args, **kwargs)

  monkeypatch.setattr(builtins, "open", guarded_open)
  monkeypatch.setattr(os, "open", guarded_os_open)


def test_an_unwritable_checkpoint_dir_fails_before_any_attack_naming_it(tmp_path, monkeypatch):
  folder = tmp_path / "checkpoints"
  folder.mkdir()
  _refuse_writes_in(monkeypatch, folder)  # the fault where the first chunk file would be written
  x, t = _data()
  seen, on_chunk = _no_chunk()
  with pytest.raises(ValueError, match=r"checkpoint_dir '.*checkpoints' cannot be written \(Permission denied\)"):
    jsma_jax.attack_dataset(model, x, t, params=W, chunk_size=4, progress=False, on_chunk=on_chunk, max_iter=3,
                            checkpoint_dir=folder)
  assert seen == [] and list(folder.iterdir()) == []


def test_a_checkpoint_dir_under_a_file_fails_before_any_attack_naming_it(tmp_path):
  (tmp_path / "results").write_text("a file, not a folder")
  x, t = _data()
  seen, on_chunk = _no_chunk()
  with pytest.raises(ValueError, match=r"checkpoint_dir '.*results/chunks' cannot be written"):
    jsma_jax.attack_dataset(model, x, t, params=W, chunk_size=4, progress=False, on_chunk=on_chunk, max_iter=3,
                            checkpoint_dir=tmp_path / "results" / "chunks")
  assert seen == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_checkpoint_dir_fails_before_any_attack(tmp_path):
  folder = tmp_path / "checkpoints"
  folder.mkdir()
  folder.chmod(0o500)
  x, t = _data()
  try:
    with pytest.raises(ValueError, match=r"checkpoint_dir .* cannot be written"):
      jsma_jax.attack_dataset(model, x, t, params=W, chunk_size=4, progress=False, max_iter=3, checkpoint_dir=folder)
  finally:
    folder.chmod(0o700)


def test_a_writable_checkpoint_dir_keeps_no_probe_file(tmp_path):
  x, t = _data(4)
  jsma_jax.attack_dataset(model, x, t, params=W, chunk_size=2, progress=False, max_iter=2, checkpoint_dir=tmp_path)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz"]


# ------------------------------------------------------------ 6. counts too large for the compiled attack


@pytest.mark.parametrize("option, value", [("max_changes", 2**32), ("max_iter", 2**40), ("progress_every", 2**31)])
def test_an_oversized_count_names_its_option(option, value):
  x, t = _data(2)
  before = jsma_jax.cache_size()
  with pytest.raises(ValueError, match=rf"^{option}( \(.*\))? must be at most 2,147,483,647 .*got {value:,}"):
    jsma_jax.jsma(model, x, t, params=W, **{option: value})
  assert jsma_jax.cache_size() == before


def test_the_largest_count_runs():
  x, t = _data(2)
  r = jsma_jax.jsma(model, x, t, params=W, max_iter=2**31 - 1, gamma=None)  # stops early: success or domain
  assert np.all(np.asarray(r.iterations) < 20)


# ------------------------------------------------------------ 7. per-example bounds that pin an example


def test_pinned_examples_get_their_own_status():
  """The tolerance recipe at tolerance 0 for some examples: lo == hi == x."""
  x, _ = _data(6)
  predicted = np.asarray(model(W, x)).argmax(axis=1)
  t = (predicted + 1) % 4
  t[0] = predicted[0]  # example 0 is already classified as its target
  tolerance = np.array([0, 0, 0.3, 0.3, 0, 0.3], np.float32)[:, None, None]
  lo, hi = np.maximum(x - tolerance, 0), np.minimum(x + tolerance, 1)
  r = jsma_jax.jsma(model, x, t, params=W, clip_min=lo, clip_max=hi, max_iter=6)
  reasons = [StopReason(int(v)).name for v in np.asarray(r.stop_reason)]
  assert reasons[0] == "SUCCESS" and int(r.iterations[0]) == 0  # already at its target
  assert reasons[1] == reasons[4] == "DOMAIN_EXHAUSTED"  # nothing can move
  np.testing.assert_array_equal(np.asarray(r.x_adv)[[0, 1, 4]], x[[0, 1, 4]])
  moving = [2, 3, 5]  # the others are attacked as they are alone
  alone = jsma_jax.jsma(model, x[moving], t[moving], params=W, clip_min=lo[moving], clip_max=hi[moving], max_iter=6)
  for got, expected in zip(r, alone):
    if got is not None:  # (trace: not recorded)
      np.testing.assert_array_equal(np.asarray(got)[moving], np.asarray(expected))
  # the same examples through attack_dataset, in chunks (a chunk of one pinned example too)
  chunked = jsma_jax.attack_dataset(model, x, t, params=W, clip_min=lo, clip_max=hi, max_iter=6, chunk_size=5,
                                    progress=False)
  np.testing.assert_array_equal(chunked.stop_reason, np.asarray(r.stop_reason))


def test_bounds_pinning_every_example_are_refused_like_equal_scalars():
  x, t = _data(3)
  with pytest.raises(ValueError, match="clip_min must be below clip_max"):
    jsma_jax.jsma(model, x, t, params=W, clip_min=0.5, clip_max=0.5)
  with pytest.raises(ValueError, match=r"clip_min must be below clip_max for some feature: these bounds \(the same "
                                       r"for every example\) leave no feature room to move"):
    jsma_jax.jsma(model, np.broadcast_to(x[:1], x.shape), t, params=W, clip_min=x[0], clip_max=x[0])


# ------------------------------------------------------------ 8. jax.export with a symbolic batch


def test_a_symbolic_batch_is_refused_with_the_fix():
  attack = jax.jit(lambda x, t: tuple(jsma_jax.jsma(model, x, t, params=W, max_iter=2)))
  b, = export.symbolic_shape("b")
  with pytest.raises(ValueError, match=r"x must have a concrete shape, got \('b', '3', '4'\) with symbolic "
                                       r"dimension\(s\).*export one program per batch size"):
    export.export(attack)(jax.ShapeDtypeStruct((b, 3, 4), jnp.float32), jax.ShapeDtypeStruct((b,), jnp.int32))
  # the fix: one program per batch size, which runs
  x, t = _data(8)
  exported = export.export(attack)(jax.ShapeDtypeStruct((8, 3, 4), jnp.float32),
                                   jax.ShapeDtypeStruct((8,), jnp.int32))
  np.testing.assert_array_equal(exported.call(x, t)[0], jsma_jax.jsma(model, x, t, params=W, max_iter=2).x_adv)
