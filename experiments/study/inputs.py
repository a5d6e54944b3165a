"""Inputs of the study: the source sets, the sources, and the models (loaded or trained).

Every model, trained here or loaded, is a ``jsma_jax.models.checkpoint`` directory; the
study keeps its own copies under ``<out>/models/<arch>_<activation>``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..common.sources import seeded_sources
from ..common.stages import Stages
from .config import SPLITS, StudyConfig

# Flax and optax (jsma_jax.models): imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.

# ------------------------------------------------------------------------------ data


class Split(NamedTuple):
  """One source set: images ``[n, *shape]`` float32 in [0, 1] and labels ``[n]`` int32."""

  x: np.ndarray
  y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Data:
  """The study's three source sets, with the shape and class count they have.

  Attributes:
    splits: ``train``, ``validation`` and ``test``.
    info: what was loaded, for ``results.json`` (source, sizes, how validation was cut).
  """

  splits: Mapping[str, Split]
  info: dict

  @property
  def shape(self) -> tuple[int, ...]:
    """One input's shape (``(28, 28, 1)`` on MNIST)."""
    return tuple(self.splits["test"].x.shape[1:])

  @property
  def num_features(self) -> int:
    """``M``: the number of input features, channels included."""
    return math.prod(self.shape)

  @property
  def num_classes(self) -> int:
    """``N``: one more than the largest label of any set."""
    return int(max(s.y.max() for s in self.splits.values())) + 1

  def __getitem__(self, split: str) -> Split:
    return self.splits[split]


def load_data(config: StudyConfig) -> Data:
  """The train / validation / test sets; validation is the last sixth of the training
  images (the last 10,000 of MNIST's 60,000, as in the paper's Theano setup; every 6th
  image of the class-sorted embedded subset)."""
  from jsma_jax.models import load_mnist

  kwargs = {} if config.source == "embedded" else {"data_dir": config.data_dir}
  x_train, y_train = load_mnist(config.source, split="train", **kwargs)
  x_test, y_test = load_mnist(config.source, split="test", **kwargs)
  n = len(y_train)
  if config.source == "embedded":  # the embedded subset is sorted by class: every 6th image
    val = np.arange(n) % 6 == 5
    how = f"every 6th of the {n} embedded training images"
  else:  # the split of Recipe(split="holdout"): the shipped LeNet never trained on it
    from jsma_jax.models import holdout_split

    val = np.zeros(n, bool)
    val[holdout_split(n)[1]] = True
    how = f"last {n // 6} of the {n} training images"
  splits = {"train": Split(x_train[~val], y_train[~val]),
            "validation": Split(x_train[val], y_train[val]),
            "test": Split(x_test, y_test)}
  flat = x_test.reshape(len(x_test), -1)
  info = {"name": "mnist", "source": config.source, "data_dir": config.data_dir,
          "shape": list(x_test.shape[1:]), "num_features": int(flat.shape[1]),
          "num_classes": int(max(y_train.max(), y_test.max())) + 1,
          "sizes": {k: len(v.y) for k, v in splits.items()}, "validation": how,
          "test_pixels_at_0": float((flat == 0).sum(1).mean()),
          "test_pixels_at_1": float((flat == 1).sum(1).mean())}
  return Data(splits, info)


def source_indices(config: StudyConfig, split: str, n_available: int) -> np.ndarray:
  """The first ``n`` of a seeded permutation of a split (same for every row, so a
  smaller row's sources are a prefix of a larger row's, and chunks are reused when
  ``n_sources`` grows)."""
  n = min(max(config.n_sources, config.n_sources_splits or 0), n_available)
  return seeded_sources(n_available, n, config.seed, SPLITS.index(split))


# ---------------------------------------------------------------------------- models


class Model(NamedTuple):
  """A model of the study, ready to attack.

  Attributes:
    activation: ``"tanh"`` or ``"relu"``.
    apply_fn: pure ``apply_fn(params, x) -> logits``.
    params: its weights.
    info: where it came from and its accuracy on each set (``results.json``).
    key: what its stages depend on (the stage key of every attack on it).
  """

  activation: str
  apply_fn: Callable
  params: Any
  info: dict
  key: dict


@functools.cache
def _tiny_mlp_class():
  """A one-hidden-layer MLP (32 units), a fast stand-in for the LeNet in tests.

  Registered under the architecture name ``"tiny_mlp"`` of ``jsma_jax.models`` so that
  it is saved and loaded by ``jsma_jax.models.checkpoint`` like the LeNet.
  """
  from flax import nnx

  from jsma_jax.models import register_architecture
  from jsma_jax.models.lenet import ACTIVATIONS

  class TinyMLP(nnx.Module):
    """``in_features``-32-N MLP on flattened inputs (784 inputs: MNIST)."""

    def __init__(self, *, activation: str = "tanh", num_classes: int = 10, in_features: int = 784,
                 rngs: nnx.Rngs):
      self.activation = activation
      self.num_classes = int(num_classes)
      self.fc1 = nnx.Linear(in_features, 32, rngs=rngs)
      self.fc2 = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x):
      return self.fc2(ACTIVATIONS[self.activation](self.fc1(x.reshape(x.shape[0], -1))))

  return register_architecture("tiny_mlp", TinyMLP)


def _build(config: StudyConfig, activation: str, data: Data):
  from flax import nnx

  from jsma_jax.models import LeNet

  rngs = nnx.Rngs(config.seed)
  if config.arch == "lenet":
    return LeNet(activation=activation, num_classes=data.num_classes, rngs=rngs)
  return _tiny_mlp_class()(activation=activation, num_classes=data.num_classes,
                           in_features=data.num_features, rngs=rngs)


def model_path(config: StudyConfig, activation: str) -> str:
  """The study's copy of a model: a checkpoint directory under ``out/models``."""
  return os.path.join(config.out, "models", f"{config.arch}_{activation}")


def _external_checkpoint(config: StudyConfig, activation: str) -> str | None:
  if config.checkpoint_dir is None or config.arch != "lenet":
    return None
  path = os.path.join(config.checkpoint_dir, f"lenet_{activation}_mnist")
  return path if os.path.isfile(os.path.join(path, "metadata.json")) else None


def uses_shipped(config: StudyConfig, activation: str) -> bool:
  """Whether this activation's model is the package's paper LeNet."""
  return config.shipped and config.arch == "lenet" and activation == "tanh"


def model_key(config: StudyConfig, activation: str) -> dict:
  """What a model (and so every stage on it) depends on."""
  if uses_shipped(config, activation):
    from jsma_jax.models import load_paper_lenet

    return {"shipped": load_paper_lenet()[1]["weights_sha256"]}
  return {"arch": config.arch, "activation": activation, "source": config.source,
          "data_dir": config.data_dir, "checkpoint": _external_checkpoint(config, activation),
          "epochs": config.epochs, "seed": config.seed}


def model_stage(config: StudyConfig, stages: Stages, data: Data, activation: str) -> Model:
  """Loads the external checkpoint or trains the model, saves the study's copy, measures it."""
  from jsma_jax.models import as_logits_fn, evaluate, load_checkpoint, save_checkpoint, train

  external = _external_checkpoint(config, activation)
  key = model_key(config, activation)

  def work():
    if uses_shipped(config, activation):
      from jsma_jax.models import load_paper_lenet

      model, meta = load_paper_lenet()
      info = {"checkpoint": "shipped (jsma_jax.models.load_paper_lenet)", "trained_here": False,
              "recipe": meta.get("recipe"), "dataset": meta.get("dataset"),
              "checkpoint_test_accuracy": meta.get("test_accuracy")}
    elif external is not None:
      model, meta = load_checkpoint(external)
      info = {"checkpoint": external, "trained_here": False,
              "recipe": meta.get("recipe"), "dataset": meta.get("dataset"),
              "checkpoint_test_accuracy": meta.get("test_accuracy")}
    else:
      model, hist = train(_build(config, activation, data), tuple(data["train"]), None,
                          epochs=config.epochs, seed=config.seed, print_fn=stages.log)
      info = {"checkpoint": None, "trained_here": True, "epochs": config.epochs,
              "n_train": len(data["train"].y), "train_seconds": hist["train_seconds"]}
    save_checkpoint(model_path(config, activation), model, {"study_model": key})
    apply_fn, params = as_logits_fn(model)
    info["accuracy"] = {s: evaluate(apply_fn, tuple(data[s]), params=params) for s in SPLITS}
    return info, None

  # the checkpoint's digests are part of the stage's record: a copy another run replaced
  # makes the stage run again instead of being attacked
  name, path = f"model_{activation}", model_path(config, activation)
  info, _ = stages.run(name, key, work, artefacts=[path])
  try:
    apply_fn, params, sha = load_model(config, activation, key)
  except ValueError as e:  # replaced between the check and the load
    stages.log(f"[{name}] {e}: redoing")
    info, _ = stages.run(name, key, work, artefacts=[path], force=True)
    apply_fn, params, sha = load_model(config, activation, key)
  # attacks are keyed by the weights they ran on, not only by how they were made
  return Model(activation, apply_fn, params, info, {**key, "weights_sha256": sha})


def load_model(config: StudyConfig, activation: str, key: dict | None = None) -> tuple[Callable, Any, str]:
  """``(apply_fn, params, weights_sha256)`` of a model a study saved under ``out/models``.

  Raises:
    ValueError: with ``key``, if the checkpoint was saved for another configuration.
  """
  from jsma_jax.models import as_logits_fn, load_checkpoint

  if config.arch == "tiny_mlp":
    _tiny_mlp_class()  # its architecture name must be known to load it
  path = model_path(config, activation)
  model, meta = load_checkpoint(path)
  if key is not None and meta.get("study_model") != json.loads(json.dumps(key)):
    raise ValueError(f"{path} was saved for the model {meta.get('study_model')}, not {key}")
  apply_fn, params = as_logits_fn(model)
  return apply_fn, jax.tree.map(jnp.asarray, params), meta["weights_sha256"]
