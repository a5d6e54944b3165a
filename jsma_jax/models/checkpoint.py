"""Save and load model checkpoints: weights plus a JSON record of how they were made.

Format choice: Flax's own serialisation (``flax.serialization.msgpack_serialize`` of the
nested dict of weights), not orbax. These models are small (LeNet: 431k parameters,
1.7 MB), live on one host and are saved once at the end of a run, which is the case
msgpack serves best: one synchronous file write, no background threads or
directory-commit protocol, bit-exact round trips (raw little-endian buffers), readable
with any msgpack library, and no dependency beyond Flax. Orbax's strengths (async,
sharded, multi-host arrays, step management) buy nothing here.

A checkpoint is a directory::

  weights.msgpack   the model's state as a nested dict of arrays (msgpack)
  metadata.json     model config, training config, dataset, accuracy, software versions,
                    SHA-256 of weights.msgpack
  weights.npz       (LeNet only) ``lenet_numpy_weights``, for other frameworks

Saving is atomic (:func:`jsma_jax.models.files.replace_folder`): the new checkpoint is
written whole to a sibling folder and swapped in, so an interruption at any point leaves
the old checkpoint or the new one loadable, never a mixture. Loading checks what it reads
and says what is wrong and how to fix it (:class:`CheckpointError`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from jsma_jax.models.files import atomic_write_bytes, recover_folder, replace_folder
from jsma_jax.models.lenet import LeNet, ModelConfig, config_of, lenet_numpy_weights

FORMAT_VERSION = 1
WEIGHTS = "weights.msgpack"
METADATA = "metadata.json"
NUMPY_WEIGHTS = "weights.npz"
FILES = (WEIGHTS, METADATA, NUMPY_WEIGHTS)  # a checkpoint's own files; others beside them are kept
REQUIRED = {"model": dict, "weights_sha256": str}  # metadata keys a checkpoint cannot load without


class CheckpointError(ValueError):
  """A checkpoint that cannot be loaded as it is: the message names the path, what is
  wrong and the fix."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
  """No checkpoint at the path (no ``metadata.json``)."""


def software_versions() -> dict[str, str]:
  """Versions of Python, JAX, jaxlib, Flax, optax and NumPy; JAX backend, device, CPU."""
  import flax
  import jaxlib
  import optax
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__,
          "optax": optax.__version__, "numpy": np.__version__,
          "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
          "platform": platform.platform(), "cpu": cpu_model(),
          "cpu_count": str(os.cpu_count())}


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, with its family and model numbers (a virtual
  machine's name may be only "AMD EPYC", which covers chips 5x apart in speed: family 23 is
  Zen 1 or 2, 25 Zen 3 or 4, 26 Zen 5), for records; ``platform.processor()`` elsewhere."""
  fields: dict[str, str] = {}
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        key, _, value = line.partition(":")
        if not key.strip():
          break  # the first processor's block ends here
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  name = fields.get("model name")
  if name is None:
    return platform.processor() or "unknown"
  if "cpu family" in fields and "model" in fields:
    return f"{name} (family {fields['cpu family']}, model {fields['model']})"
  return name


def _jsonable(obj):
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return dataclasses.asdict(obj)
  if isinstance(obj, (np.generic, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def save_checkpoint(path: str | os.PathLike, model: nnx.Module,
                    metadata: dict[str, Any] | None = None, *, numpy_weights: bool = True) -> str:
  """Writes ``model`` and ``metadata`` to the directory ``path`` (created if needed).

  Args:
    path: checkpoint directory. An existing checkpoint there is replaced atomically:
      the new one is written whole beside it, then swapped in (other files in the
      folder are kept).
    model: a ``LeNet`` or ``SmallCNN``.
    metadata: JSON-serialisable extras (dataclasses and NumPy values are converted),
      e.g. ``{"dataset": ..., "train": ..., "test_accuracy": ...}``. The keys
      ``model``, ``software``, ``format_version``, ``created`` and ``weights_sha256`` are
      filled in here.
    numpy_weights: also write ``weights.npz`` (LeNet only), for other frameworks.

  Returns:
    the checkpoint directory, as a string.

  Example:
    >>> import os, tempfile
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "lenet"), LeNet(rngs=nnx.Rngs(0)),
    ...                        {"dataset": "mnist"})
    >>> sorted(os.listdir(path))
    ['metadata.json', 'weights.msgpack', 'weights.npz']
  """
  if metadata is not None and not isinstance(metadata, dict):
    raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
  config = config_of(model)
  path = os.fspath(path)
  state = nnx.to_pure_dict(nnx.state(model))
  blob = serialization.msgpack_serialize(jax.device_get(state))
  meta = dict(metadata or {})
  meta.update(model=dataclasses.asdict(config), software=software_versions(),
              format_version=FORMAT_VERSION,
              created=datetime.datetime.now(datetime.UTC).isoformat(),
              weights_sha256=hashlib.sha256(blob).hexdigest())
  text = json.dumps(meta, indent=2, default=_jsonable, sort_keys=True)
  arrays = lenet_numpy_weights(model) if isinstance(model, LeNet) and numpy_weights else None

  def write(folder):
    atomic_write_bytes(os.path.join(folder, WEIGHTS), blob)
    if arrays is not None:
      np.savez(os.path.join(folder, NUMPY_WEIGHTS), **arrays)
    atomic_write_bytes(os.path.join(folder, METADATA), text.encode())

  replace_folder(path, write, own=FILES)
  return path


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
  """Reads ``metadata.json`` of a checkpoint directory.

  Args:
    path: a checkpoint directory.

  Returns:
    the metadata dict: the extras given to :func:`save_checkpoint` and its own keys.

  Raises:
    CheckpointNotFoundError: no ``metadata.json`` there (a ``FileNotFoundError`` too).
    CheckpointError: the file is not JSON, or lacks ``model`` or ``weights_sha256``
      (a ``ValueError`` too); the message names the path, the fault and the fix.

  Example:
    >>> import os, tempfile
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "lenet"), LeNet(rngs=nnx.Rngs(0)),
    ...                        {"dataset": "mnist", "test_accuracy": 0.99})
    >>> meta = load_metadata(path)
    >>> meta["dataset"], meta["test_accuracy"], meta["model"]
    ('mnist', 0.99, {'activation': 'tanh', 'arch': 'lenet', 'num_classes': 10})
  """
  recover_folder(path)  # finishes a save that an interruption stopped mid-swap
  file = os.path.join(os.fspath(path), METADATA)
  if not os.path.isfile(file):
    raise CheckpointNotFoundError(
        f"no checkpoint at path {os.fspath(path)!r} ({METADATA} missing): pass the folder "
        "that save_checkpoint (or jsma-jax train --out) wrote")
  fix = ("the checkpoint is damaged: save it again (save_checkpoint, or jsma-jax train "
         "--force) or restore the folder from a copy")
  try:
    with open(file, encoding="utf-8") as f:
      meta = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {METADATA} is not valid JSON "
                          f"({e}); {fix}") from None
  if not isinstance(meta, dict):
    raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {METADATA} holds a "
                          f"{type(meta).__name__}, not a JSON object; {fix}")
  for key, kind in REQUIRED.items():
    if not isinstance(meta.get(key), kind):
      what = "has no key" if key not in meta else f"has a {type(meta[key]).__name__} at key"
      raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {METADATA} {what} {key!r} "
                            f"(a {kind.__name__} is needed); {fix}")
  return meta


def load_checkpoint(path: str | os.PathLike) -> tuple[nnx.Module, dict[str, Any]]:
  """Loads a checkpoint written by ``save_checkpoint``; the weights are bit-exact.

  Args:
    path: the checkpoint directory.

  Returns:
    ``(model, metadata)``: the rebuilt ``LeNet``/``SmallCNN`` and the metadata dict.

  Raises:
    CheckpointNotFoundError: no checkpoint there. CheckpointError: damaged metadata,
      weights that fail the recorded SHA-256, or weights that do not fit the recorded
      architecture.

  Example:
    >>> import os, tempfile
    >>> model = LeNet(activation="relu", rngs=nnx.Rngs(0))
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "lenet"), model)
    >>> loaded, meta = load_checkpoint(path)
    >>> config_of(loaded), bool(jnp.all(loaded.fc2.kernel[...] == model.fc2.kernel[...]))
    (ModelConfig(arch='lenet', activation='relu', num_classes=10), True)
  """
  meta = load_metadata(path)
  file = os.path.join(os.fspath(path), WEIGHTS)
  if not os.path.isfile(file):
    raise CheckpointError(f"checkpoint {os.fspath(path)!r} has {METADATA} but no {WEIGHTS}: "
                          "save it again or restore the folder from a copy")
  with open(file, "rb") as f:
    blob = f.read()
  if meta["weights_sha256"] != hashlib.sha256(blob).hexdigest():
    raise CheckpointError(f"checkpoint {os.fspath(path)!r}: {WEIGHTS} does not match the "
                          f"SHA-256 recorded in its {METADATA} (the two files come from "
                          "different saves, or one is damaged): save it again or restore "
                          "the folder from a copy")
  try:
    config = ModelConfig(**meta["model"])
  except (TypeError, ValueError) as e:
    raise CheckpointError(
        f"checkpoint {os.fspath(path)!r}: {METADATA} key 'model' {meta['model']} is not a "
        f"model configuration ({e}); an architecture of your own must be registered "
        "(register_architecture) before loading, otherwise save the checkpoint again") from None
  abstract = nnx.eval_shape(lambda: config.build(rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  restored = serialization.msgpack_restore(blob)
  expected = jax.tree.map(lambda v: (v.shape, v.dtype), nnx.to_pure_dict(state))
  got = jax.tree.map(lambda v: (v.shape, v.dtype), restored)
  if expected != got:
    raise CheckpointError(f"checkpoint {os.fspath(path)!r}: stored weights {got} do not fit "
                          f"{config}: save it again or restore the folder from a copy")
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, restored))
  return nnx.merge(graphdef, state), meta


SHIPPED_LENETS = ("glorot_adam_b128_e6", "theano_tutorial_30ep")  # the first is the default
"""Names of the LeNets shipped in the package (folders ``jsma_jax/models/_data/lenets/NAME``).

``glorot_adam_b128_e6`` (the default) is the model that the factorial zoo chose, by its
pre-registered rule on validation attacks, as the one nearest the paper's rows (its
weights are those of the first run, ``experiments/results/factorial/first_run/``; the
complete rerun in ``experiments/results/factorial/`` chose the same recipe); ``theano_tutorial_30ep``
is the Theano tutorial's recipe (the paper's training as described) stopped at 30 of its 200 epochs.
"""


def shipped_lenet_path(name: str | None = None):
  """A context manager giving the folder of a shipped LeNet (a real path while open).

  Args:
    name: one of :data:`SHIPPED_LENETS`; None for the default.

  Raises:
    ValueError: an unknown name (the message lists the shipped ones).
  """
  from importlib import resources

  name = SHIPPED_LENETS[0] if name is None else name
  if name not in SHIPPED_LENETS:
    raise ValueError(f"name must be one of the shipped LeNets {SHIPPED_LENETS}, got {name!r}: "
                     "load a checkpoint of your own with load_checkpoint(path)")
  return resources.as_file(resources.files("jsma_jax.models") / "_data" / "lenets" / name)


def load_paper_lenet(name: str | None = None) -> tuple[nnx.Module, dict[str, Any]]:
  """A LeNet shipped inside the package: the paper's architecture, trained on full MNIST.

  Both shipped models train on the first 50,000 training images (the last 10,000 are the
  validation set they never saw), with tanh activations, Glorot-uniform weights and zero
  biases and output layer, at a constant step size, so that the reproduction runs offline
  without training first:

  - ``"glorot_adam_b128_e6"`` (the default): Adam at 1e-3, batches of 128, 6 epochs. The
    factorial zoo (``jsma-jax factorial``) chose it, before attacking any test image, as
    the recipe whose validation attacks come nearest the paper's rows.
  - ``"theano_tutorial_30ep"``: the Theano tutorial's recipe, which the paper cites
    (plain SGD at 0.1, batches of 500), for 30 of the tutorial's 200 epochs.

  The metadata records the recipe, the training history and the accuracy on the official
  test set and on the 1,000 embedded test digits (``metadata["embedded_test_accuracy"]``).

  Args:
    name: one of :data:`SHIPPED_LENETS`; None for the default.

  Returns:
    ``(model, metadata)`` as :func:`load_checkpoint`.

  Example:
    >>> model, meta = load_paper_lenet()
    >>> type(model).__name__, meta["recipe"]["optimizer"], meta["test_accuracy"] > 0.98
    ('LeNet', 'adam', True)
    >>> load_paper_lenet("theano_tutorial_30ep")[1]["recipe"]["name"]
    'theano_tutorial'
  """
  with shipped_lenet_path(name) as path:
    return load_checkpoint(path)
