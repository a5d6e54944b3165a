"""Chunk files of :func:`jsma_jax.attack_dataset`: one file per finished chunk, keyed by what made it.

A chunk's key is a digest of everything its result depends on: its inputs and
targets, its place in the dataset, the model's program and weights, every
option, and the versions of JAX and jsma-jax with the backend. A file is
written aside and renamed into place (whole or absent); it is loaded only when
its key is the one asked for, so a stale or foreign file is never trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jsma_jax import _validate, _version
from jsma_jax import options as options_lib
from jsma_jax import user_model as model_lib
from jsma_jax.types import JSMAResult

FIELDS = ("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted", "trace")


def name(index: int) -> str:
  return f"chunk-{index:06d}.npz"


class RunKey(NamedTuple):
  """What every chunk of a run is made under, as digests; and the model's class count, learnt on the way."""

  key: str  # the chunk files' key: the model's program and weights, every option, the versions and backend
  agreement: str  # the same without object addresses (which differ between processes): compared across processes
  num_classes: int


def run_key(logits_fn, params, x: np.ndarray, attack_options: options_lib.AttackOptions,
            engine: options_lib.EngineOptions) -> RunKey:
  """A digest of what every chunk of this run is made under: the model, its weights, the options, versions."""
  checked, _ = _validate.check_inputs(x[:1], np.zeros(1, np.int32))
  model = model_lib.prepare_model(logits_fn, params, checked.shape, checked.dtype, precision=engine.precision)
  digest = hashlib.sha256()
  digest.update(str(model.fn.jaxpr).encode())
  for weight in model.weights + _nested_consts(model.fn.jaxpr):
    value = np.asarray(weight)
    digest.update(f"{value.shape}{value.dtype.str}".encode())
    digest.update(np.ascontiguousarray(value).view(np.uint8).reshape(-1).data)
  fields = {f"{type(o).__name__}.{f.name}": getattr(o, f.name) for o in (attack_options, engine)
            for f in dataclasses.fields(o)}
  text = _stable(fields)
  agreement = digest.copy()
  digest.update(text.encode())
  agreement.update(re.sub(r" at 0x[0-9a-fA-F]+", " at 0x", text).encode())
  versions = f"{jax.__version__}/{_version.__version__}/{jax.default_backend()}/{checked.dtype.str}".encode()
  digest.update(versions)
  agreement.update(versions)
  return RunKey(digest.hexdigest(), agreement.hexdigest(), model.num_classes)


def _nested_consts(jaxpr) -> list:
  """Arrays held inside the sub-jaxprs of ``jaxpr`` (e.g. of a ``custom_jvp``): weights the text does not show."""
  found, stack = [], [jaxpr]
  while stack:
    for eqn in stack.pop().eqns:
      values = list(eqn.params.values())
      while values:
        value = values.pop()
        if isinstance(value, (tuple, list)):
          values.extend(value)
        elif hasattr(value, "jaxpr") and hasattr(value, "consts"):  # a ClosedJaxpr
          found += [c for c in value.consts if hasattr(c, "shape")]
          stack.append(value.jaxpr)
        elif hasattr(value, "eqns"):  # a Jaxpr
          stack.append(value)
  return found


def _stable(value: Any, depth: int = 0) -> str:
  """A text of ``value`` that is the same in every run and changes with it.

  Functions by module, name, bytecode, defaults and closed-over values (not by
  address); arrays by their bytes. What has no such text (a ``repr`` with an
  address) makes the key differ from run to run: chunks are then attacked
  again, never reused wrongly.
  """
  if depth > 8:
    return "..."
  again = lambda v: _stable(v, depth + 1)
  if isinstance(value, dict):
    return "{" + ",".join(f"{k}:{again(v)}" for k, v in sorted(value.items())) + "}"
  if isinstance(value, (tuple, list)):
    return f"{type(value).__name__}(" + ",".join(again(v) for v in value) + ")"
  if hasattr(value, "shape") and hasattr(value, "dtype"):  # an array (e.g. per-feature bounds): by its bytes
    value = np.asarray(value)
    data = hashlib.sha256(np.ascontiguousarray(value).view(np.uint8).reshape(-1).data).hexdigest()
    return f"array({value.shape},{value.dtype.str},{data})"
  if isinstance(value, functools.partial):
    return f"partial({again(value.func)},{again(value.args)},{again(value.keywords)})"
  if isinstance(value, types.CodeType):
    return f"code({hashlib.sha256(value.co_code).hexdigest()},{again(value.co_consts)})"
  if isinstance(value, types.FunctionType):
    cells = tuple(c.cell_contents for c in value.__closure__ or ())
    return (f"{value.__module__}.{value.__qualname__}({again(value.__code__)},{again(value.__defaults__)},"
            f"{again(cells)})")
  if callable(value) and hasattr(value, "__qualname__"):
    return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
  return repr(value)


def chunk_key(run_key: str, start: int, size: int, xs: np.ndarray, ts: np.ndarray) -> str:
  digest = hashlib.sha256(f"{run_key}/{start}/{size}".encode())
  for value in (xs, ts):
    digest.update(f"{value.shape}{value.dtype.str}".encode())
    digest.update(np.ascontiguousarray(value).view(np.uint8).reshape(-1).data)
  return digest.hexdigest()


def check_writable(folder: Path) -> None:
  """Create ``folder`` and write a file there, before any attack: a ``ValueError`` naming ``checkpoint_dir``."""
  try:
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ValueError(f"checkpoint_dir {str(folder)!r} cannot be written ({e.strerror or e}); each finished chunk is "
                     "saved there: pass a folder you can write to, or fix its permissions") from None


def save(path: Path, key: str, result: JSMAResult) -> None:
  """Write aside, then rename into place: the file is whole or absent, never half written."""
  arrays = {name: getattr(result, name) for name in FIELDS if getattr(result, name) is not None}
  aside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  with open(aside, "wb") as f:
    np.savez(f, key=np.array(key), rule=np.array(result.rule), criterion=np.array(result.criterion), **arrays)
    f.flush()
    os.fsync(f.fileno())
  os.replace(aside, path)


def load(path: Path, key: str) -> tuple[JSMAResult | None, bool]:
  """``(result, found)``: the chunk saved at ``path`` if its key is ``key``; ``found`` if a file was there."""
  if not path.exists():
    return None, False
  try:
    with np.load(path, allow_pickle=False) as f:
      if str(f["key"]) != key:
        return None, True
      arrays = {name: f[name] if name in f.files else None for name in FIELDS}
      return JSMAResult(**arrays, rule=str(f["rule"]), criterion=str(f["criterion"])), True
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # not a chunk file of ours: redo it
    return None, True
