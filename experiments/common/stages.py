"""Atomic, resumable stage files for long experiment runs.

A stage is a named piece of work whose result is a JSON document (and optionally a
NumPy ``.npz`` of per-attack arrays) in ``<out>/stages/``; it may also write artefacts
elsewhere (a model checkpoint under ``<out>/models``). The JSON is written last,
atomically, and records the stage's ``key`` (the configuration it depends on), the
SHA-256 of its ``.npz`` and of every file of its artefacts. A stage whose JSON exists
with the same key, and whose ``.npz`` and artefacts still have the recorded digests, is
loaded, not redone; anything else (an interrupted stage, a file replaced by a run of
another configuration, a ``.npz`` written by one run beside the JSON of another) is
said and redone, never silently used.

:func:`writable_folder` is the one check that an output folder can be written, run by
every command before its first piece of work.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jsma_jax.models.files import atomic_write_bytes, recover_folder, sha256_file

__all__ = ["OutputFolderError", "Stages", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_npz", "fingerprint", "writable_folder"]


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


class OutputFolderError(OSError):
  """An output folder that cannot be created or written; the message says which and why."""


def writable_folder(path: str, what: str = "--out") -> str:
  """Creates ``path`` if needed and checks that a file can be written in it.

  Run before any work, so that a command with an unwritable output folder fails at once
  instead of after its attacks.

  Raises:
    OutputFolderError: naming ``what``, the path, the system's reason and the fix.
  """
  try:
    os.makedirs(path, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise OutputFolderError(f"{what} {path!r} cannot be written ({e.strerror or e}): choose "
                            "a folder you can write to, or fix its permissions") from None
  return path


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes ``obj`` as indented JSON (NaN/inf as null), atomically."""
  text = json.dumps(_clean(obj), indent=1, sort_keys=True, allow_nan=False)
  atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_npz(path: str, arrays: dict[str, np.ndarray]) -> str:
  """Writes ``arrays`` as a compressed ``.npz``, atomically; returns the file's SHA-256."""
  buf = io.BytesIO()
  np.savez_compressed(buf, **arrays)
  data = buf.getvalue()
  atomic_write_bytes(path, data)
  return hashlib.sha256(data).hexdigest()


def fingerprint(path: str) -> dict[str, str] | None:
  """``{file: SHA-256}`` of a file (key ``""``) or of every file under a folder (relative
  paths); ``None`` if nothing is there."""
  if os.path.isfile(path):
    return {"": sha256_file(path)}
  if not os.path.isdir(path):
    return None
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      out[os.path.relpath(full, path)] = sha256_file(full)
  return dict(sorted(out.items()))


class Stages:
  """The stage folder of one run: ``run(name, key, fn)`` computes a stage once.

  Attributes:
    folder: ``<out>/stages``.
    log: progress printer.
    ran, loaded: names of the stages computed / loaded in this process.
  """

  def __init__(self, out: str, log: Callable[[str], None] = print):
    self.out = out
    self.folder = writable_folder(os.path.join(out, "stages"), "the stage folder of --out")
    self.log = log
    self.ran: list[str] = []
    self.loaded: list[str] = []

  def paths(self, name: str) -> tuple[str, str]:
    return os.path.join(self.folder, name + ".json"), os.path.join(self.folder, name + ".npz")

  def _artefact_name(self, path: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(self.out))
    return os.path.abspath(path) if rel.startswith("..") else rel

  def _stale(self, doc: dict, key: Any, npz_path: str) -> tuple[str | None, dict]:
    """Why a finished stage's record cannot be used (``None``: it can), and its arrays."""
    if doc.get("key") != key:
      return "configuration changed", {}
    arrays = {}
    if doc.get("has_arrays") and "arrays_sha256" not in doc:
      return "its record predates array digests, so its .npz cannot be checked", {}
    if doc.get("has_arrays"):
      data = None
      if os.path.isfile(npz_path):
        with open(npz_path, "rb") as f:
          data = f.read()
      if data is None or hashlib.sha256(data).hexdigest() != doc.get("arrays_sha256"):
        return (f"{npz_path} is missing or is not the one its record was written with "
                "(another run or configuration wrote it)"), {}
      with np.load(io.BytesIO(data)) as z:
        arrays = {k: z[k] for k in z.files}
    for name, digests in doc.get("artefacts", {}).items():
      path = name if os.path.isabs(name) else os.path.join(self.out, name)
      recover_folder(path)  # a checkpoint swap that an interruption stopped half-way
      if fingerprint(path) != digests:
        return (f"{path} is missing or changed since this stage wrote it (another run or "
                "configuration replaced it)"), {}
    return None, arrays

  def run(self, name: str, key: dict, fn: Callable[[], tuple[dict, dict | None]], *,
          artefacts: Sequence[str] = (), force: bool = False) -> tuple[dict, dict]:
    """Loads stage ``name`` if done with this ``key``, else runs ``fn`` and saves it.

    ``fn() -> (summary, arrays)``: ``summary`` a JSON-able dict, ``arrays`` a dict of
    NumPy arrays or ``None``. The stage's wall time is recorded as ``seconds``.

    Args:
      name, key, fn: the stage, what it depends on, and its work.
      artefacts: files or folders that ``fn`` writes (atomically) besides the stage's own
        files, e.g. a checkpoint; their digests are recorded and checked on load.
      force: redo the stage even if its record is valid.

    Returns:
      ``(summary, arrays)`` (``arrays`` empty when the stage has none).
    """
    json_path, npz_path = self.paths(name)
    key = _clean(key)
    if os.path.isfile(json_path) and not force:
      try:
        with open(json_path) as f:
          doc = json.load(f)
      except ValueError:  # not JSON (edited by hand?): not a record this run can trust
        doc = {}
      why, arrays = self._stale(doc, key, npz_path)
      if why is None:
        self.loaded.append(name)
        self.log(f"[{name}] done before ({doc['seconds']:.1f} s), loaded")
        return doc["summary"], arrays
      self.log(f"[{name}] {why}: redoing")
    self.log(f"[{name}] running")
    start = time.perf_counter()
    summary, arrays = fn()
    seconds = time.perf_counter() - start
    record = {"key": key, "seconds": seconds, "has_arrays": bool(arrays)}
    if arrays:
      record["arrays_sha256"] = atomic_write_npz(npz_path, arrays)
    record["artefacts"] = {self._artefact_name(p): fingerprint(p) for p in artefacts}
    missing = [p for p in artefacts if record["artefacts"][self._artefact_name(p)] is None]
    if missing:
      raise FileNotFoundError(f"stage {name!r} declared artefacts it did not write: {missing}")
    record["summary"] = summary = _clean(summary)
    atomic_write_json(json_path, record)
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
