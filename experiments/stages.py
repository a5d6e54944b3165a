"""Atomic, resumable stage files for long experiment runs.

A stage is a named piece of work whose result is a JSON document (and optionally a
NumPy ``.npz`` of per-attack arrays) in ``<out>/stages/``. The JSON is written last,
atomically, and carries the stage's ``key`` (the configuration it depends on): a stage
whose JSON exists with the same key is loaded, not redone; an interrupted stage leaves
no JSON and runs again from scratch on the next call.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from typing import Any, Callable

import numpy as np


def _clean(obj: Any) -> Any:
  """JSON-safe copy: NumPy scalars/arrays to Python, non-finite floats to None."""
  if isinstance(obj, dict):
    return {str(k): _clean(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_clean(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _clean(obj.tolist())
  if isinstance(obj, np.generic):
    return _clean(obj.item())
  if isinstance(obj, float) and not math.isfinite(obj):
    return None
  return obj


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON (NaN/inf as null), atomically."""
  text = json.dumps(_clean(obj), indent=1, sort_keys=True, allow_nan=False)
  atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes ``arrays`` as a compressed ``.npz``, atomically."""
  import io

  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  atomic_write_bytes(path, buf.getvalue())


class Stages:
  """The stage folder of one run: ``run(name, key, fn)`` computes a stage once.

  Attributes:
    folder: ``<out>/stages``.
    log: progress printer.
    ran, loaded: names of the stages computed / loaded in this process.
  """

  def __init__(self, out: str, log: Callable[[str], None] = print):
    self.folder = os.path.join(out, "stages")
    os.makedirs(self.folder, exist_ok=True)
    self.log = log
    self.ran: list[str] = []
    self.loaded: list[str] = []

  def paths(self, name: str) -> tuple[str, str]:
    return os.path.join(self.folder, name + ".json"), os.path.join(self.folder, name + ".npz")

  def run(self, name: str, key: dict, fn: Callable[[], tuple[dict, dict | None]]) -> tuple[dict, dict]:
    """Loads stage ``name`` if done with this ``key``, else runs ``fn`` and saves it.

    ``fn() -> (summary, arrays)``: ``summary`` a JSON-able dict, ``arrays`` a dict of
    NumPy arrays or ``None``. The stage's wall time is recorded as ``seconds``.

    Returns:
      ``(summary, arrays)`` (``arrays`` empty when the stage has none).
    """
    json_path, npz_path = self.paths(name)
    key = _clean(key)
    if os.path.isfile(json_path):
      with open(json_path) as f:
        doc = json.load(f)
      if doc.get("key") == key and (not doc.get("has_arrays") or os.path.isfile(npz_path)):
        arrays = {}
        if doc.get("has_arrays"):
          with np.load(npz_path) as z:
            arrays = {k: z[k] for k in z.files}
        self.loaded.append(name)
        self.log(f"[{name}] done before ({doc['seconds']:.1f} s), loaded")
        return doc["summary"], arrays
      self.log(f"[{name}] configuration changed: redoing")
    self.log(f"[{name}] running")
    start = time.perf_counter()
    summary, arrays = fn()
    seconds = time.perf_counter() - start
    if arrays:
      atomic_write_npz(npz_path, arrays)
    summary = _clean(summary)
    atomic_write_json(json_path, {"key": key, "seconds": seconds, "has_arrays": bool(arrays),
                                  "summary": summary})
    self.ran.append(name)
    self.log(f"[{name}] finished in {seconds:.1f} s")
    return summary, dict(arrays or {})

  def done(self, names: list[str]) -> bool:
    """Whether every stage of ``names`` has a result file (whatever its key)."""
    return all(os.path.isfile(self.paths(n)[0]) for n in names)

  def seconds(self, name: str) -> float:
    """The recorded wall time of a finished stage."""
    with open(self.paths(name)[0]) as f:
      return float(json.load(f)["seconds"])
