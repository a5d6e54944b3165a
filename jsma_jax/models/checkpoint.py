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
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from jsma_jax.models.lenet import LeNet, ModelConfig, config_of, lenet_numpy_weights

FORMAT_VERSION = 1
WEIGHTS = "weights.msgpack"
METADATA = "metadata.json"
NUMPY_WEIGHTS = "weights.npz"


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
  """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere), for records."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _jsonable(obj):
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return dataclasses.asdict(obj)
  if isinstance(obj, (np.generic, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON-serialisable")


def _atomic_write(path: str, data: bytes) -> None:
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def save_checkpoint(path: str | os.PathLike, model: nnx.Module,
                    metadata: dict[str, Any] | None = None, *, numpy_weights: bool = True) -> str:
  """Writes ``model`` and ``metadata`` to the directory ``path`` (created if needed).

  Args:
    path: checkpoint directory; existing checkpoint files in it are replaced.
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
  os.makedirs(path, exist_ok=True)
  state = nnx.to_pure_dict(nnx.state(model))
  blob = serialization.msgpack_serialize(jax.device_get(state))
  meta = dict(metadata or {})
  meta.update(model=dataclasses.asdict(config), software=software_versions(),
              format_version=FORMAT_VERSION,
              created=datetime.datetime.now(datetime.timezone.utc).isoformat(),
              weights_sha256=hashlib.sha256(blob).hexdigest())
  text = json.dumps(meta, indent=2, default=_jsonable, sort_keys=True)
  _atomic_write(os.path.join(path, WEIGHTS), blob)
  if isinstance(model, LeNet) and numpy_weights:
    fd, tmp = tempfile.mkstemp(dir=path, prefix=".tmp-", suffix=".npz")
    os.close(fd)
    np.savez(tmp, **lenet_numpy_weights(model))
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(path, NUMPY_WEIGHTS))
  _atomic_write(os.path.join(path, METADATA), text.encode())
  return path


def load_metadata(path: str | os.PathLike) -> dict[str, Any]:
  """Reads ``metadata.json`` of a checkpoint directory.

  Args:
    path: a checkpoint directory (``FileNotFoundError`` if it has no metadata).

  Returns:
    the metadata dict: the extras given to :func:`save_checkpoint` and its own keys.

  Example:
    >>> import os, tempfile
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "lenet"), LeNet(rngs=nnx.Rngs(0)),
    ...                        {"dataset": "mnist", "test_accuracy": 0.99})
    >>> meta = load_metadata(path)
    >>> meta["dataset"], meta["test_accuracy"], meta["model"]
    ('mnist', 0.99, {'activation': 'tanh', 'arch': 'lenet', 'num_classes': 10})
  """
  file = os.path.join(os.fspath(path), METADATA)
  if not os.path.isfile(file):
    raise FileNotFoundError(f"no checkpoint at path {os.fspath(path)!r} ({METADATA} "
                            "missing)")
  with open(file) as f:
    return json.load(f)


def load_checkpoint(path: str | os.PathLike) -> tuple[nnx.Module, dict[str, Any]]:
  """Loads a checkpoint written by ``save_checkpoint``; the weights are bit-exact.

  Args:
    path: the checkpoint directory.

  Returns:
    ``(model, metadata)``: the rebuilt ``LeNet``/``SmallCNN`` and the metadata dict.

  Raises:
    FileNotFoundError: no checkpoint there. ValueError: corrupted weights (hash) or
      weights that do not fit the recorded architecture.

  Example:
    >>> import os, tempfile
    >>> model = LeNet(activation="relu", rngs=nnx.Rngs(0))
    >>> path = save_checkpoint(os.path.join(tempfile.mkdtemp(), "lenet"), model)
    >>> loaded, meta = load_checkpoint(path)
    >>> config_of(loaded), bool(jnp.all(loaded.fc2.kernel[...] == model.fc2.kernel[...]))
    (ModelConfig(arch='lenet', activation='relu', num_classes=10), True)
  """
  meta = load_metadata(path)
  with open(os.path.join(os.fspath(path), WEIGHTS), "rb") as f:
    blob = f.read()
  if meta.get("weights_sha256") not in (None, hashlib.sha256(blob).hexdigest()):
    raise ValueError(f"path {os.fspath(path)!r}: {WEIGHTS} does not match the SHA-256 "
                     "recorded in its metadata")
  config = ModelConfig(**meta["model"])
  abstract = nnx.eval_shape(lambda: config.build(rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  restored = serialization.msgpack_restore(blob)
  expected = jax.tree.map(lambda v: (v.shape, v.dtype), nnx.to_pure_dict(state))
  got = jax.tree.map(lambda v: (v.shape, v.dtype), restored)
  if expected != got:
    raise ValueError(f"path {os.fspath(path)!r}: stored weights {got} do not fit "
                     f"{config}")
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, restored))
  return nnx.merge(graphdef, state), meta


PAPER_LENET = "lenet_paper"  # the shipped checkpoint's folder under jsma_jax/models/_data


def load_paper_lenet() -> tuple[nnx.Module, dict[str, Any]]:
  """The LeNet shipped inside the package: the paper's architecture, trained on full MNIST.

  Trained by the ``theano_tutorial`` recipe (tanh, plain SGD at 0.1, batches of 500,
  Glorot-uniform weights, zero biases and output layer, on the first 50,000 training
  images; fewer epochs than the tutorial's 200: ``metadata["recipe"]["epochs"]``), so
  that the reproduction runs offline without training first. Its metadata records the
  recipe, the training history and its accuracy on the official test set and on the
  1,000 embedded test digits (``metadata["embedded_test_accuracy"]``).

  Returns:
    ``(model, metadata)`` as :func:`load_checkpoint`.

  Example:
    >>> model, meta = load_paper_lenet()
    >>> type(model).__name__, meta["recipe"]["name"], meta["test_accuracy"] > 0.98
    ('LeNet', 'theano_tutorial', True)
  """
  from importlib import resources

  with resources.as_file(resources.files("jsma_jax.models") / "_data" / PAPER_LENET) as path:
    return load_checkpoint(path)
