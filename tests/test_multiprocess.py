"""Two real processes on JAX's distributed runtime (loopback, a free port, CPU collectives).

Each launch starts ``tests/multiprocess_worker.py`` twice (process 0 and 1 of one
``jax.distributed`` runtime); the workers save what they got, and the tests here compare it
with the single-process attack, bit for bit. A launch is bounded by a timeout, and when one
process dies the other is stopped, so a broken runtime fails the test instead of hanging CI.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import socket
import subprocess
import sys
import time
from pathlib import Path

import multiprocess_worker as worker_data  # the workers' model and data (its runtime part runs only as a script)
import numpy as np
import pytest

import jsma_jax

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
WORKER = HERE / "multiprocess_worker.py"
TIMEOUT_S = 300  # a launch: two interpreters, the runtime's start, a few compilations (on a loaded 2-core CPU)
FIELDS = ("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(task: str, out: Path, *, stop_after: int | None = None, stop_other: bool = True) -> list[int]:
  """Run both processes of ``task``; their return codes. Process 1 exits with 3 after chunk ``stop_after``."""
  port = str(_free_port())
  extra = [] if stop_after is None else [str(stop_after)]
  return _run_pair(task, out, [[str(WORKER), task, str(i), port, str(out)] + extra * i for i in range(2)],
                   stop_other=stop_other)


def _run_pair(task: str, out: Path, commands: list[list[str]], *, stop_other: bool = True) -> list[int]:
  """Run two Python processes (``commands``: their arguments), bounded by a timeout; their return codes.

  When one fails the other is stopped (it may wait for the dead one for ever), unless not
  ``stop_other``: then each must exit by itself within the timeout. The logs go to
  ``out / f"{task}-{i}.log"``.
  """
  out.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
  env.pop("XLA_FLAGS", None)  # one CPU device per process
  procs = []
  for i, command in enumerate(commands):
    with open(out / f"{task}-{i}.log", "w") as log:
      procs.append(subprocess.Popen([sys.executable, *command], env=env, stdout=log, stderr=subprocess.STDOUT))
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while True:
      codes = [p.poll() for p in procs]
      if all(c is not None for c in codes):
        return codes
      if stop_other and any(c not in (None, 0) for c in codes):  # one died: stop the other, which may wait
        for p in procs:
          if p.poll() is None:
            p.kill()
        return [p.wait() for p in procs]
      if time.monotonic() > deadline:
        for p in procs:
          p.kill()
        [p.wait() for p in procs]
        pytest.fail(f"{task}: no result within {TIMEOUT_S} s; logs:\n{_logs(out, task)}")
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


def _logs(out: Path, task: str) -> str:
  return "\n".join(f"--- process {i}\n" + (out / f"{task}-{i}.log").read_text()[-3000:] for i in range(2))


def _single(x, t, **options):
  return jsma_jax.jsma(worker_data.MODEL, x, t, params=worker_data.PARAMS, **worker_data.OPTIONS, **options)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharded")
  codes = _launch("sharded", out)
  assert codes == [0, 0], f"return codes {codes}; logs:\n{_logs(out, 'sharded')}"
  return [dict(np.load(out / f"sharded-{i}.npz")) for i in range(2)]


@pytest.mark.parametrize("batch", [12, 18, 20, 19], ids=["even-12", "ragged-18", "even-20", "unsplit-19"])
def test_sharded_equals_single_process(sharded, batch):
  one = _single(*worker_data.data(batch))
  held = []
  for saved in sharded:
    for name, expected in zip(FIELDS, one):
      rows = saved[f"{batch}/{name}_rows"]
      np.testing.assert_array_equal(saved[f"{batch}/{name}"], np.asarray(expected)[rows], err_msg=name)
    held.append(saved[f"{batch}/x_adv_rows"])
    # sharded along the batch when it splits over the two processes; replicated when it cannot
    assert str(saved[f"{batch}/x_adv_spec"]) == ("P()" if batch % 2 else "P('batch',)")
  if batch % 2 == 0:  # each process holds its own half
    np.testing.assert_array_equal(np.sort(np.concatenate(held)), np.arange(batch))
  if batch == 20:  # and process_allgather brings the whole of it to each
    for saved in sharded:
      np.testing.assert_array_equal(saved["20/gathered"], np.asarray(one.x_adv))
  assert 0 < int(one.success.sum()) < batch


@pytest.mark.parametrize("check, message", [
    ("x", "x must lie within [clip_min, clip_max]; example 12, feature (0, 0) is 3.0, outside [0.0, 1.0]"),
    ("t", "targets must lie in [0, 5) for a model with 5 classes, got values in [0, 5]"),
    ("nan", "logits_fn returned NaN or inf for 1 of 16 examples (indices [13])"),
])
def test_a_bad_value_on_one_process_raises_on_both(sharded, check, message):
  for saved in sharded:  # the bad rows are process 1's; process 0 raises the same error instead of waiting
    text = str(saved[f"error/{check}"])  # the same message, or process 1's named (checks that read rows)
    assert text.startswith((f"ValueError: {message}",
                            f"ValueError: process 1 of 2 failed: ValueError: {message}")), text


def test_a_failed_chunk_on_one_process_fails_the_dataset_on_both(sharded):
  own, other = (str(saved["error/dataset"]) for saved in (sharded[1], sharded[0]))
  message = "ValueError: logits_fn returned NaN or inf for 1 of 4 examples"
  assert own.startswith(message)  # process 1 raises its own error (the model's NaN in its chunk) ...
  assert other == "ValueError: process 1 of 2 failed: " + own  # ... and process 0 the same, named


def test_datasets_that_differ_between_processes_are_refused(sharded):
  for saved in sharded:
    assert str(saved["error/differ"]).startswith("ValueError: x, targets, chunk_size, collect and checkpoint_dir "
                                                 "must be the same on every process"), saved["error/differ"]
    assert str(saved["error/differ"]).endswith("processes [1] differ from process 0")


# ------------------------------------------------------------------ processes that disagree


@pytest.mark.parametrize("case", ["weights", "option"])
def test_processes_with_other_weights_or_options_are_refused_on_both(sharded, case):
  """Process 1 loaded another checkpoint (or passed another theta): no chunk mixes models, both raise."""
  for saved in sharded:
    text = str(saved[f"silent/{case}"])
    assert text == ("ValueError: the model, its weights (params) and every attack option must be the same on every "
                    "process (each attacks its share of the whole dataset, and the results are put together); "
                    "processes [1] differ from process 0"), text


@pytest.mark.parametrize("case, message", [
    ("outside", "ValueError: x must lie within [clip_min, clip_max]; example 7, feature (0, 0) is 3.0, "
                "outside [0.0, 1.0]"),
    ("chunk_size", "ValueError: chunk_size must be a positive int, got 0"),
])
def test_a_bad_argument_on_one_process_raises_on_both_without_waiting(sharded, case, message):
  """Checks that can differ between processes are agreed: process 1 raises its error, process 0 names it.

  Both processes wrote their error and went on to the end (the launch is bounded by TIMEOUT_S and
  both exited 0), so neither waited for the other in the digest exchange or at shutdown.
  """
  own, other = (str(saved[f"silent/{case}"]) for saved in (sharded[1], sharded[0]))
  assert own.startswith(message), own
  assert other == "ValueError: process 1 of 2 failed: " + own
  for saved in sharded:
    assert saved["silent/chunks"].size == 0  # refused before any chunk was attacked


def test_a_bad_value_in_one_process_copy_makes_both_processes_exit_with_the_error(tmp_path):
  """Uncaught, as in a user's script: neither process waits for the other (digest exchange, shutdown barrier).

  Neither process is stopped by the test when the other exits; both must end by themselves within
  TIMEOUT_S (else the test fails), both with the error.
  """
  codes = _launch("bad_input", tmp_path, stop_other=False)
  logs = [(tmp_path / f"bad_input-{i}.log").read_text() for i in range(2)]
  assert codes == [1, 1], f"return codes {codes}; logs:\n{_logs(tmp_path, 'bad_input')}"
  error = "ValueError: x must lie within [clip_min, clip_max]; example 7, feature (0, 0) is 3.0"
  assert error in logs[1] and "ValueError: process 1 of 2 failed: " + error in logs[0], _logs(tmp_path, "bad_input")


def test_global_per_example_bounds_and_mask_travel_with_the_batch(sharded):
  x, t = worker_data.data(18, seed=3)
  lo, hi, mask = worker_data.silent_space(x)
  one = _single(x, t, clip_min=lo, clip_max=hi, mask=mask)
  for saved in sharded:
    for name, expected in zip(FIELDS, one):
      rows = saved[f"space/{name}_rows"]
      np.testing.assert_array_equal(saved[f"space/{name}"], np.asarray(expected)[rows], err_msg=name)
    assert str(saved["space/x_adv_spec"]) == "P('batch',)"
  np.testing.assert_array_equal(np.sort(np.concatenate([s["space/x_adv_rows"] for s in sharded])), np.arange(18))
  changed = np.asarray(one.x_adv) != x
  assert changed.any() and not (changed & ~mask).any()  # the mask held, and some attacks moved
  assert np.all(np.asarray(one.x_adv) >= lo) and np.all(np.asarray(one.x_adv) <= hi)


def test_interrupted_dataset_resumes_to_the_uninterrupted_result(tmp_path):
  x, t = worker_data.data(45, seed=11)
  chunks = 8  # 45 examples in chunks of 6
  codes = _launch("dataset", tmp_path, stop_after=3)  # process 1 dies once its chunk 3 is saved
  assert codes[1] == 3, f"return codes {codes}; logs:\n{_logs(tmp_path, 'dataset')}"
  first = _chunk_log(tmp_path, clear=True)
  assert {1, 3} <= set(first) and 5 not in first and not (tmp_path / "dataset.npz").exists()
  codes = _launch("dataset", tmp_path)  # the same run again: it resumes
  assert codes == [0, 0], f"return codes {codes}; logs:\n{_logs(tmp_path, 'dataset')}"
  second = _chunk_log(tmp_path)
  # every chunk done once in the second run: loaded if the first run finished it, else attacked
  assert sorted(second) == list(range(chunks)) and all(len(v) == 1 for v in second.values()), second
  for index, loaded in first.items():
    assert loaded == [False] and second[index] == [True], (index, loaded, second[index])
  attacked = [i for i, v in second.items() if v == [False]]
  assert not set(attacked) & set(first) and len(attacked) < chunks, (first, second)
  resumed = np.load(tmp_path / "dataset.npz")
  whole = _single(x, t)
  uninterrupted = jsma_jax.attack_dataset(worker_data.MODEL, x, t, params=worker_data.PARAMS, chunk_size=6,
                                          progress=False, **worker_data.OPTIONS)
  for name, a, b in zip(FIELDS, whole, uninterrupted):
    np.testing.assert_array_equal(resumed[name], np.asarray(a), err_msg=name)
    np.testing.assert_array_equal(resumed[name], b, err_msg=name)
  # collect="all": each process got the whole result, in order
  for i in range(2):
    everywhere = np.load(tmp_path / f"dataset-all-{i}.npz")
    np.testing.assert_array_equal(everywhere["x_adv"], np.asarray(whole.x_adv)[:20])
    np.testing.assert_array_equal(everywhere["success"], np.asarray(whole.success)[:20])


def test_the_docs_two_process_example_runs(tmp_path, monkeypatch, capsys):
  page = (HERE.parent / "docs" / "distributed.md").read_text()
  example = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "two_processes.py" in b)
  script = tmp_path / "two_processes.py"
  script.write_text(example)
  port = str(_free_port())
  codes = _run_pair("docs", tmp_path, [[str(script), f"127.0.0.1:{port}", "2", str(i)] for i in range(2)])
  assert codes == [0, 0], f"return codes {codes}; logs:\n{_logs(tmp_path, 'docs')}"
  logs = [(tmp_path / f"docs-{i}.log").read_text() for i in range(2)]
  assert "process 0: rows slice(0, 4, None) succeeded" in logs[0]
  assert "process 1: rows slice(4, 8, None) succeeded" in logs[1]
  monkeypatch.setattr(sys, "argv", [str(script)])  # the same example as one process, here
  runpy.run_path(str(script), run_name="__main__")
  alone = capsys.readouterr().out
  counts = [re.search(r"(\d+) of 8 attacks succeeded", log).group(1) for log in logs + [alone]]
  assert counts[0] == counts[1] == counts[2], counts


def _chunk_log(out: Path, clear: bool = False) -> dict[int, list[bool]]:
  """chunk -> [loaded, ...] over every time a process reported it done (then the logs are cleared)."""
  seen: dict[int, list[bool]] = {}
  for i in range(2):
    path = out / f"chunks-{i}.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
      entry = json.loads(line)
      seen.setdefault(entry["chunk"], []).append(entry["loaded"])
    if clear:
      path.unlink(missing_ok=True)
  return seen
