"""Inputs of the study: the MNIST sets, the sources, and the models (loaded or trained)."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import serialization

from experiments.config import NUM_FEATURES, SPLITS, StudyConfig
from experiments.stages import Stages, atomic_write_bytes

# ------------------------------------------------------------------------------ data


def load_splits(config: StudyConfig) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
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
  else:
    val = np.arange(n) >= n - n // 6
    how = f"last {n // 6} of the {n} training images"
  data = {
      "train": (x_train[~val], y_train[~val]),
      "validation": (x_train[val], y_train[val]),
      "test": (x_test, y_test),
  }
  info = {"name": "mnist", "source": config.source, "data_dir": config.data_dir,
          "sizes": {k: int(len(v[1])) for k, v in data.items()}, "validation": how,
          "test_pixels_at_0": float((x_test == 0).reshape(len(x_test), -1).sum(1).mean()),
          "test_pixels_at_1": float((x_test == 1).reshape(len(x_test), -1).sum(1).mean())}
  return data, info


def source_indices(config: StudyConfig, split: str, n_available: int) -> np.ndarray:
  """The first ``n`` of a seeded permutation of a split (same for every row, so a
  smaller row's sources are a prefix of a larger row's, and chunks are reused when
  ``n_sources`` grows)."""
  rng = np.random.default_rng([config.seed, SPLITS.index(split)])
  return rng.permutation(n_available)[:min(max(config.n_sources, config.n_sources_splits or 0), n_available)]


# ---------------------------------------------------------------------------- models


class TinyMLP(nnx.Module):
  """784-32-N MLP, a fast stand-in for the LeNet in tests."""

  def __init__(self, *, activation: str = "tanh", num_classes: int = 10, rngs: nnx.Rngs):
    self.activation = activation
    self.fc1 = nnx.Linear(NUM_FEATURES, 32, rngs=rngs)
    self.fc2 = nnx.Linear(32, num_classes, rngs=rngs)

  def __call__(self, x):
    act = jnp.tanh if self.activation == "tanh" else jax.nn.relu
    return self.fc2(act(self.fc1(x.reshape(x.shape[0], -1))))


def _build(config: StudyConfig, activation: str) -> nnx.Module:
  from jsma_jax.models import LeNet

  cls = LeNet if config.arch == "lenet" else TinyMLP
  return cls(activation=activation, rngs=nnx.Rngs(config.seed))


def _model_path(config: StudyConfig, activation: str) -> str:
  return os.path.join(config.out, "models", f"{config.arch}_{activation}.msgpack")


def _external_checkpoint(config: StudyConfig, activation: str) -> str | None:
  if config.checkpoint_dir is None or config.arch != "lenet":
    return None
  path = os.path.join(config.checkpoint_dir, f"lenet_{activation}_mnist")
  return path if os.path.isfile(os.path.join(path, "metadata.json")) else None


def model_stage(config: StudyConfig, stages: Stages, data: dict, activation: str) -> tuple[Any, Any, dict]:
  """Loads the checkpoint or trains the model; returns ``(apply_fn, params, info)``."""
  from jsma_jax.models import as_logits_fn, evaluate, load_checkpoint, train

  external = _external_checkpoint(config, activation)
  key = stages_key_model(config, activation)
  path = _model_path(config, activation)

  def work():
    if external is not None:
      model, meta = load_checkpoint(external)
      info = {"checkpoint": external, "trained_here": False,
              "train": meta.get("train"), "dataset": meta.get("dataset"),
              "checkpoint_test_accuracy": meta.get("test_accuracy")}
    else:
      model, hist = train(_build(config, activation), data["train"], None, epochs=config.epochs,
                          seed=config.seed, print_fn=stages.log)
      info = {"checkpoint": None, "trained_here": True, "epochs": config.epochs,
              "n_train": int(len(data["train"][1])), "train_seconds": hist["train_seconds"]}
    state = nnx.to_pure_dict(nnx.state(model))
    atomic_write_bytes(path, serialization.msgpack_serialize(jax.device_get(state)))
    apply_fn, params = as_logits_fn(model)
    info["accuracy"] = {s: evaluate(apply_fn, data[s], params=params) for s in SPLITS}
    return info, None

  info, _ = stages.run(f"model_{activation}", key, work)
  return (*load_model(config, activation), info)


def load_model(config: StudyConfig, activation: str) -> tuple[Any, Any]:
  """``(apply_fn, params)`` of a model a study saved under ``out/models``."""
  from jsma_jax.models import as_logits_fn

  graphdef, state = nnx.split(_build(config, activation))
  with open(_model_path(config, activation), "rb") as f:
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, serialization.msgpack_restore(f.read())))
  return as_logits_fn(nnx.merge(graphdef, state))


def stages_key_model(config: StudyConfig, activation: str) -> dict:
  return {"arch": config.arch, "activation": activation, "source": config.source,
          "data_dir": config.data_dir, "checkpoint": _external_checkpoint(config, activation), "epochs": config.epochs,
          "seed": config.seed}
