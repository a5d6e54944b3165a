"""The model zoo: how the training recipe moves JSMA's success on MNIST.

Usage::

  jsma-jax zoo --data-dir path/to/mnist --out runs/zoo          # train, attack, report
  jsma-jax zoo --data-dir path/to/mnist --out runs/zoo --stage train

(``python -m experiments.commands.zoo`` from a checkout is the same command.) Every recipe of
:data:`ZOO` trains one LeNet on full MNIST (``out/models/<recipe>``); each is attacked
with the paper's settings (pairs, logits Jacobian, all features in the initial domain,
gamma = 14.5%) with theta = +1 and theta = -1, on the same test sources x 9 targets.
The report (``report.md``, ``zoo.png``, ``results.json``) sets success and distortion
beside test accuracy, mean logit margin and mean softmax confidence, and measures which
factor moves success: paired comparisons of recipes that differ in one factor, and
Spearman rank correlations over the zoo. Each model and each attack chunk is an atomic
stage (:mod:`..common.stages`): a repeated command resumes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from typing import NamedTuple

# Flax and optax (jsma_jax.models): imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.


PROG = "jsma-jax zoo"
LONG_EPOCHS = 30  # the shipped model's; the tutorial's 200 epochs cost 110 min on a 2-core CPU
LONGER_EPOCHS = 100  # as many as a second session's 2-core CPU allowed: 24 min there
SHORT_EPOCHS = 5


def zoo_recipes() -> list:
  """The zoo: the Theano tutorial's recipe at 30 epochs (the shipped LeNet), 100 and 5,
  and one factor changed at a time from the 5-epoch one (activation, initialisation,
  optimiser, schedule). The
  project's earlier recipe (``adam_cosine``, 10 epochs) was attacked on a superset of
  these sources in ``experiments/results/adam_cosine_study``."""
  from jsma_jax.models import preset

  base = preset("theano_tutorial")
  short = base.replace(name="theano_5ep", epochs=SHORT_EPOCHS)
  return [
      base.replace(epochs=LONG_EPOCHS),
      base.replace(name="theano_100ep", epochs=LONGER_EPOCHS),
      short,
      short.replace(name="theano_5ep_relu", activation="relu"),
      short.replace(name="theano_5ep_flax_init", init="default", zero_output=False),
      short.replace(name="theano_5ep_pytorch_init", init="pytorch", zero_output=False),
      short.replace(name="theano_5ep_momentum", optimizer="momentum", learning_rate=0.01),
      short.replace(name="theano_5ep_adam", optimizer="adam", learning_rate=1e-3),
      short.replace(name="theano_5ep_cosine", schedule="cosine"),
  ]


# Pairs of recipes that differ in exactly one factor: (factor, recipe, changed recipe).
PAIRS = (
    ("training length (5 -> 30 epochs)", "theano_5ep", "theano_tutorial"),
    ("training length (30 -> 100 epochs)", "theano_tutorial", "theano_100ep"),
    ("activation (tanh -> relu)", "theano_5ep", "theano_5ep_relu"),
    ("init (Glorot+zero output -> Flax)", "theano_5ep", "theano_5ep_flax_init"),
    ("init (Glorot+zero output -> PyTorch)", "theano_5ep", "theano_5ep_pytorch_init"),
    ("optimiser (SGD 0.1 -> momentum 0.9, 0.01)", "theano_5ep", "theano_5ep_momentum"),
    ("optimiser (SGD 0.1 -> Adam 1e-3)", "theano_5ep", "theano_5ep_adam"),
    ("schedule (constant -> cosine)", "theano_5ep", "theano_5ep_cosine"),
)


@dataclasses.dataclass(frozen=True)
class ZooConfig:
  """One zoo run.

  Attributes:
    data_dir: the MNIST IDX files (required: the recipes train on full MNIST).
    out: output folder.
    n_sources: test sources (each towards its 9 other classes), the same for every recipe.
    thetas: the attacks' directions.
    gamma: the budget.
    chunk_sources: sources per stage file.
    batch_size: attacks per compiled call.
    seed: source sampling.
    stage: ``"all"``, ``"train"`` (models only) or ``"report"`` (no new work).
  """

  data_dir: str | None = None
  out: str = "runs/zoo"
  n_sources: int = 500
  thetas: tuple[float, ...] = (1.0, -1.0)
  gamma: float = 0.145
  chunk_sources: int = 250
  batch_size: int = 1125  # two calls per chunk of 250 sources x 9 targets
  seed: int = 0
  stage: str = "all"


class Trained(NamedTuple):
  """A zoo model: its recipe, where it is, and what training measured."""

  recipe: object  # jsma_jax.models.Recipe
  path: str
  info: dict


def _trained(recipe, out: str, log: Callable[[str], None]) -> Trained | None:
  """The finished model of ``recipe`` in ``out/models/<name>``, or None."""
  from jsma_jax.models import Recipe, load_metadata

  path = os.path.join(out, "models", recipe.name)
  if not os.path.isfile(os.path.join(path, "metadata.json")):
    return None
  meta = load_metadata(path)
  if Recipe.from_dict(meta["recipe"]) != recipe:
    log(f"[model {recipe.name}] recipe changed: retraining")
    return None
  return Trained(recipe, path, _info(meta))


def _metadata(recipe, hist: dict, n_test: int, **extra) -> dict:
  return {"recipe": recipe.to_dict(), "history": hist, "dataset": {
      "name": "mnist", "source": "idx", "n_train": hist["n_train"],
      "n_validation": hist["n_validation"], "n_test": n_test},
      "test_accuracy": hist["test_accuracy"][-1],
      "validation_accuracy": (hist["validation_accuracy"] or [None])[-1],
      "train_seconds": hist["train_seconds"], "command": PROG, **extra}


def train_stage(recipe, data, out: str, log: Callable[[str], None], snapshots=()) -> Trained:
  """Trains ``recipe`` on all MNIST training images unless ``out/models/<name>`` holds it.

  Training resumes from ``out/training/<name>`` (the state after each finished epoch)
  when an earlier run was stopped; the folder is removed once the checkpoint is saved.

  Args:
    recipe, data, out, log: what to train, on ``((x, y), test)``, where, and progress.
    snapshots: recipes that equal ``recipe`` but for their name and fewer epochs, with a
      constant step size: each is saved as its own model (``out/models/<its name>``) from
      the weights after its epochs, which are bit for bit those of training it alone
      (:func:`jsma_jax.models.train`, ``on_epoch``), so one run trains both lengths.
      Their metadata say ``snapshot_of``. Read them back with :func:`trained`.
  """
  from jsma_jax.models import save_checkpoint, train

  for snap in snapshots:
    same = snap.replace(name=recipe.name, epochs=recipe.epochs)
    if same != recipe or snap.epochs >= recipe.epochs or recipe.schedule != "constant":
      raise ValueError(f"snapshot {snap.name!r} must be recipe {recipe.name!r} with fewer epochs and a "
                       f"constant schedule (its weights are then those of a shorter run); got {snap.describe()}")
  done = _trained(recipe, out, log)
  missing = [s for s in snapshots if _trained(s, out, log) is None]
  if done is not None and not missing:
    log(f"[model {recipe.name}] done before (test accuracy {done.info['test_accuracy']:.4f})")
    return done
  (x, y), test = data
  # the state after each epoch, so that a long recipe spans several sittings
  progress = os.path.join(out, "training", recipe.name)
  if done is not None:
    shutil.rmtree(progress, ignore_errors=True)  # a snapshot was lost: train again from the start
  by_epoch = {s.epochs: s for s in missing}

  def on_epoch(epochs_done, params, hist):
    snap = by_epoch.get(epochs_done)
    if snap is None:
      return
    from flax import nnx

    model = snap.model.build(rngs=nnx.Rngs(0))
    _, state = nnx.split(model)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    part = {k: (v[:epochs_done] if isinstance(v, list) else v) for k, v in hist.items()}
    part.update(recipe=snap.to_dict(), train_seconds=float(sum(part["epoch_seconds"])),
                steps=epochs_done * (hist["n_train"] // snap.batch_size))
    save_checkpoint(os.path.join(out, "models", snap.name), model,
                    _metadata(snap, part, len(test[1]), snapshot_of=recipe.name))
    log(f"[model {snap.name}] saved: the weights of {recipe.name} after {epochs_done} epochs")

  model, hist = train(recipe, (x, y), test, print_fn=log, checkpoint_dir=progress, on_epoch=on_epoch)
  path = save_checkpoint(os.path.join(out, "models", recipe.name), model, _metadata(recipe, hist, len(test[1])))
  shutil.rmtree(progress, ignore_errors=True)  # complete: the checkpoint replaces the state
  return Trained(recipe, path, _info(_load_meta(path)))


def trained(recipe, out: str) -> Trained:
  """The finished model of ``recipe`` (trained or saved as a snapshot) in ``out``."""
  t = _trained(recipe, out, lambda s: None)
  if t is None:
    raise FileNotFoundError(f"no finished model of recipe {recipe.name!r} in {os.path.join(out, 'models')}")
  return t


def _load_meta(path: str) -> dict:
  from jsma_jax.models import load_metadata

  return load_metadata(path)


def _info(meta: dict) -> dict:
  return {"test_accuracy": meta["test_accuracy"], "validation_accuracy": meta.get("validation_accuracy"),
          "train_seconds": meta["train_seconds"], "epochs_run": len(meta["history"]["train_loss"]),
          "final_train_loss": meta["history"]["train_loss"][-1]}
