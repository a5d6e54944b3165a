"""Resumable training: the state of a run after each epoch, in one file written atomically.

:func:`jsma_jax.models.train` with ``checkpoint_dir`` writes ``train_state.msgpack``
there after every epoch: the weights, the optimiser's state (its step count drives the
schedules), the epochs done and the history, and the run's *identity*: the recipe, the
model's type, the PRNG key (which fixes the initialisation and every epoch's data order,
``fold_in(shuffle_key, epoch)``), whether the rewrite is on, and digests of the training
data, the test data and the starting weights. A later call with the same identity
continues from the last finished epoch and ends with the weights and history of an
uninterrupted run, bit for bit; a call with another identity is refused, naming what
differs. The file is one msgpack document (Flax serialisation, raw little-endian
buffers), replaced atomically (:func:`jsma_jax.models.files.atomic_write_bytes`): an
interruption loses at most the epoch in progress.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import serialization

from jsma_jax.models.files import atomic_write_bytes

STATE_FILE = "train_state.msgpack"
FORMAT_VERSION = 1


class TrainStateError(ValueError):
  """A ``checkpoint_dir`` whose state cannot be resumed by this run; the message names
  what differs (or what is damaged) and the fix."""


class Resumed(NamedTuple):
  """What a run had done when its state was last written."""

  epochs_done: int
  params: Any  # the weights, as the nested dict of ``nnx.to_pure_dict``
  opt_state: Any  # the optimiser's state, in the structure of ``tx.init(params)``
  history: dict  # as ``train`` returns it, up to ``epochs_done``


def data_digest(data: tuple[np.ndarray, np.ndarray] | None) -> str | None:
  """SHA-256 of ``(images, labels)``: shapes, dtypes and bytes (``None`` for no data)."""
  if data is None:
    return None
  digest = hashlib.sha256()
  for a in data:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.shape}{a.dtype.str}".encode())
    digest.update(a.data)
  return digest.hexdigest()


def weights_digest(params) -> str:
  """SHA-256 of a pytree of arrays: its structure, and each leaf's shape, dtype and bytes."""
  digest = hashlib.sha256(str(jax.tree.structure(params)).encode())
  for leaf in jax.tree.leaves(jax.device_get(params)):
    leaf = np.ascontiguousarray(leaf)
    digest.update(f"{leaf.shape}{leaf.dtype.str}".encode())
    digest.update(leaf.data)
  return digest.hexdigest()


def identity(recipe: dict, model_type: str, key: jax.Array, rewrite: bool,
             train_data, test_data, initial_params) -> dict:
  """What a run's result depends on; a state is resumed only under the same identity.

  ``initial_params``: the weights training starts from (a module given to ``train`` is
  trained from its own weights, which the key does not fix).
  """
  return {"recipe": recipe, "model_type": model_type,
          "key": np.asarray(jax.random.key_data(key)).tolist(), "rewrite": bool(rewrite),
          "train_data": data_digest(train_data), "test_data": data_digest(test_data),
          "initial_weights": weights_digest(initial_params)}


def _differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
  out = []
  for k in sorted(set(stored) | set(wanted)):
    a, b = stored.get(k), wanted.get(k)
    if isinstance(a, dict) and isinstance(b, dict):
      out += _differences(a, b, f"{prefix}{k}.")
    elif a != b:
      out.append(f"{prefix}{k} {a!r} there, {b!r} here")
  return out


def save(folder: str, ident: dict, epochs_done: int, params, opt_state, history: dict) -> None:
  """Writes the state after ``epochs_done`` epochs to ``folder/train_state.msgpack``, atomically."""
  doc = {"format_version": FORMAT_VERSION, "identity": json.dumps(ident, sort_keys=True),
         "epochs_done": epochs_done, "history": json.dumps(history),
         "params": serialization.to_state_dict(jax.device_get(params)),
         "opt_state": serialization.to_state_dict(jax.device_get(opt_state))}
  atomic_write_bytes(os.path.join(folder, STATE_FILE), serialization.msgpack_serialize(doc))


def load(folder: str, ident: dict, params, opt_state) -> Resumed | None:
  """The state saved in ``folder`` for this identity; ``None`` if there is none.

  Args:
    folder: the ``checkpoint_dir``.
    ident: this run's :func:`identity`.
    params, opt_state: templates (the fresh run's), giving the structure to restore.

  Raises:
    TrainStateError: the folder holds the state of another run (the message names what
      differs and the fix), or a state file that cannot be read.
  """
  path = os.path.join(folder, STATE_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, "rb") as f:
      doc = serialization.msgpack_restore(f.read())
    stored = json.loads(doc["identity"])
    epochs_done = int(doc["epochs_done"])
    history = json.loads(doc["history"])
  except Exception as e:  # msgpack, JSON or missing keys: a damaged file either way
    raise TrainStateError(f"checkpoint_dir {folder!r}: {STATE_FILE} cannot be read ({e!r}); delete it "
                     "to train from the start") from None
  wanted = json.loads(json.dumps(ident, sort_keys=True))
  if stored != wanted:
    raise TrainStateError(
        f"checkpoint_dir {folder!r} holds a partial run of another recipe or data "
        f"({'; '.join(_differences(stored, wanted))}): pass another checkpoint_dir, or delete "
        f"{path} to start this run from scratch")
  params = serialization.from_state_dict(params, doc["params"])
  opt_state = serialization.from_state_dict(opt_state, doc["opt_state"])
  return Resumed(epochs_done, params, opt_state, history)
