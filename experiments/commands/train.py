"""Train the paper's LeNet on MNIST (or Fashion-MNIST) and save a checkpoint.

Usage::

  jsma-jax train                        # the shipped LeNet's recipe on the embedded digits
  jsma-jax train --epochs 10 --out runs/models/lenet_tanh_embedded
  jsma-jax train --data-dir path/to/mnist --out runs/models/theano_tutorial   # full MNIST
  jsma-jax train --data-dir path/to/mnist --activation relu --epochs 6 \\
      --out runs/models/lenet_relu_mnist
  jsma-jax train --dataset tfds --data-dir ~/tensorflow_datasets \\
      --idx-dir path/to/mnist --out runs/models/lenet_tanh_tfds

(``python -m experiments.commands.train`` from a checkout is the same command.)
``--dataset`` names the source (``embedded``, ``idx``, ``tfds``; ``--data-dir`` alone
means ``idx``); ``--name`` picks MNIST or Fashion-MNIST; ``--recipe`` a training recipe
(``jsma_jax.models.Recipe``): ``shipped``, the default, is the recipe of the package's
default paper LeNet (``glorot_adam_b128_e6``: Glorot initialisation, Adam at 1e-3, batches
of 128, 6 epochs, the last sixth of the training images held out), or one of ``jsma_jax.models.RECIPES``
(``theano_tutorial``, ``adam_cosine``, ``pytorch_sgd``); the other options change its
fields. OUT receives the checkpoint (``weights.msgpack``, ``metadata.json``,
``weights.npz``), ``results.json``, ``training.png`` and ``report.md``. A run whose
OUT already holds a checkpoint of the same configuration is not redone (``--force``);
an interrupted run resumes from its last finished epoch when the same command is run
again (the state is kept in OUT as ``train_state.msgpack`` until the run completes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np

from ..common import cli_args
from ..common.stages import atomic_write_bytes, writable_folder

# Flax and optax (jsma_jax.models) and matplotlib (figures): imported inside the functions
# that use them (heavy, the [experiments] extra), so that --help needs the core only.

PROG = "jsma-jax train"
SHIPPED_RECIPE = "shipped"  # --recipe value: the recipe recorded in the shipped paper LeNet


RECIPE_FLAGS = {  # command-line flag -> Recipe field; None: keep the recipe's value
    "activation": "activation", "epochs": "epochs", "batch_size": "batch_size",
    "learning_rate": "learning_rate", "optimizer": "optimizer", "schedule": "schedule",
    "init": "init", "split": "split", "seed": "seed"}


@dataclasses.dataclass(frozen=True)
class Config:
  """One training run: the data, the recipe (a preset and the fields changed) and OUT."""

  source: str = "embedded"
  name: str = "mnist"
  data_dir: str | None = None
  idx_dir: str | None = None
  download: bool = False
  recipe: str = SHIPPED_RECIPE
  activation: str | None = None
  epochs: int | None = None
  batch_size: int | None = None
  learning_rate: float | None = None
  optimizer: str | None = None
  schedule: str | None = None
  init: str | None = None
  split: str | None = None
  seed: int | None = None
  out: str = "runs/models/lenet"

  def make_recipe(self):
    """The :class:`jsma_jax.models.Recipe` of this run."""
    from jsma_jax.models import Recipe, load_metadata, preset
    from jsma_jax.models.checkpoint import shipped_lenet_path

    changes = {field: getattr(self, flag) for flag, field in RECIPE_FLAGS.items()
               if getattr(self, flag) is not None}
    if self.recipe == SHIPPED_RECIPE:
      with shipped_lenet_path() as path:
        base = Recipe.from_dict(load_metadata(path)["recipe"])
    else:
      base = preset(self.recipe)
    return base.replace(**changes)


def parser() -> argparse.ArgumentParser:
  """The command line of ``jsma-jax train``."""
  from jsma_jax.models.recipe import INITS, OPTIMIZERS, PRESETS, SCHEDULES, TRAIN_SPLITS

  d = Config()
  p = cli_args.Parser(prog=PROG, description=__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter)
  p.add_argument("--dataset", dest="source", choices=cli_args.SOURCES, default=None, help=cli_args.DATASET_HELP)
  p.add_argument("--name", choices=("mnist", "fashion_mnist"), default=d.name, help="which dataset")
  p.add_argument("--data-dir", default=None,
                 help="idx: folder of IDX files; tfds: TFDS data folder")
  p.add_argument("--idx-dir", default=None,
                 help="tfds: IDX files to prepare the TFDS dataset from if needed")
  p.add_argument("--download", action=argparse.BooleanOptionalAction, default=d.download,
                 help="tfds: allow downloading the IDX files if not prepared")
  p.add_argument("--recipe", choices=(SHIPPED_RECIPE,) + tuple(PRESETS), default=d.recipe,
                 help=f"the training recipe the options below change: {SHIPPED_RECIPE!r}, the recipe of the "
                      f"package's default paper LeNet ({shipped_recipe_name()}), or one of jsma_jax.models.RECIPES")
  recipe = "(default: the recipe's)"
  p.add_argument("--activation", choices=("tanh", "relu"), help=f"the LeNet's activation {recipe}")
  p.add_argument("--epochs", type=cli_args.count, help=f"passes over the training set {recipe}")
  p.add_argument("--batch-size", type=cli_args.count, help=f"training batch size {recipe}")
  p.add_argument("--lr", dest="learning_rate", type=float, help=f"the (peak) step size {recipe}")
  p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"optimiser {recipe}")
  p.add_argument("--schedule", choices=SCHEDULES, help=f"learning-rate schedule {recipe}")
  p.add_argument("--init", choices=INITS, help=f"initialisation scheme {recipe}")
  p.add_argument("--split", choices=TRAIN_SPLITS,
                 help=f"all training images, or hold out the last sixth for validation {recipe}")
  p.add_argument("--seed", type=cli_args.natural, help=f"seed of initialisation and shuffling {recipe}")
  p.add_argument("--out", default=d.out, help="checkpoint folder to write")
  p.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                 help="retrain from the start even if OUT is done, discarding any partial run there")
  return p


def parse_args(argv=None) -> tuple[Config, bool]:
  """The training configuration of a command line, and ``--force``."""
  p = parser()
  args = vars(p.parse_args(argv))
  force = args.pop("force")
  args["source"] = cli_args.data_source(args["source"], args["data_dir"])
  config = cli_args.configuration(p, Config, args)
  cli_args.configuration(p, config.make_recipe, {})  # the recipe's own checks, in flags
  return config, force


def _every_sixth_last(x, y):
  """The embedded training digits with every 6th moved to the end, so that the recipe's holdout
  (the last sixth) validates on all classes, as ``jsma-jax reproduce`` does: the digits are
  sorted by class, and their last sixth would be nines and eights only."""
  n = len(y)
  order = np.concatenate([np.flatnonzero(np.arange(n) % 6 != 5), np.flatnonzero(np.arange(n) % 6 == 5)])
  return x[order], y[order]


def _plot(history, path):
  from ..common.figures import training_curves  # matplotlib: the [experiments] extra

  training_curves(history, path)


def _write_reports(out: str, meta: dict) -> None:
  """``results.json``, ``training.png`` and ``report.md`` of a saved run, from its metadata
  alone (each written atomically; ``results.json``, whose ``run`` says which run they
  describe, last)."""
  from jsma_jax.models import Recipe

  history, dataset, sw = meta["history"], meta["dataset"], meta["software"]
  recipe = Recipe.from_dict(meta["recipe"])
  _plot(history, os.path.join(out, "training.png"))
  report = (
      f"# LeNet ({recipe.activation}) on {meta['run']['name']} ({meta['run']['source']})\n\n"
      f"- test accuracy: **{meta['test_accuracy']:.4f}** on {dataset['n_test']} "
      f"test images; {_trained_on(dataset)}\n"
      f"- recipe `{recipe.name}`: {recipe.describe()}, seed {recipe.seed}\n"
      f"- training time: {history['train_seconds']:.0f} s on {sw['backend']} "
      f"({sw['device']}, {sw.get('cpu_count', os.cpu_count())} CPU cores visible)\n"
      f"- per-epoch test accuracy: "
      f"{', '.join(f'{a:.4f}' for a in history['test_accuracy'])}\n"
      f"- JAX {sw['jax']}, Flax {sw['flax']}, optax {sw['optax']}\n\n"
      f"![training](training.png)\n")
  atomic_write_bytes(os.path.join(out, "report.md"), report.encode())
  results = {k: meta[k] for k in ("run", "dataset", "test_accuracy", "train_seconds", "history",
                                  "software")}
  atomic_write_bytes(os.path.join(out, "results.json"), json.dumps(results, indent=2).encode())


def shipped_recipe_name() -> str:
  """The name of the recipe ``--recipe shipped`` trains (the default paper LeNet's)."""
  from jsma_jax.models import load_metadata
  from jsma_jax.models.checkpoint import shipped_lenet_path

  with shipped_lenet_path() as path:
    return load_metadata(path)["recipe"]["name"]


def _trained_on(dataset: dict) -> str:
  """What the weights were fitted on: all the training images, or all but the held-out sixth."""
  if "n_fit" not in dataset:
    return f"trained on all {dataset['n_train']:,} training images"
  return (f"trained on {dataset['n_fit']:,} of the {dataset['n_train']:,} training images, "
          f"the last {dataset['n_validation']:,} held out for validation")


def _reports_describe(out: str, run: dict) -> bool:
  try:
    with open(os.path.join(out, "results.json")) as f:
      return json.load(f).get("run") == run and all(
          os.path.isfile(os.path.join(out, n)) for n in ("report.md", "training.png"))
  except (OSError, ValueError):
    return False


def main(argv=None) -> dict:
  """Trains the LeNet of a command line and writes its checkpoint folder; returns its metadata.

  The run's state is saved in OUT after every epoch (``train_state.msgpack``): the same
  command, stopped and run again, resumes from the last finished epoch and ends with the
  weights of an uninterrupted run. A partial run of another configuration in OUT is
  refused (``--force`` discards it).
  """
  config, force = parse_args(argv)  # before the imports below, so that --help needs the core only
  from jsma_jax.models import checkpoint as ckpt_lib
  from jsma_jax.models import train_state
  from jsma_jax.models.train import train

  if config.source == "idx":
    cli_args.require_folder(config.data_dir, "--data-dir", "the IDX files")
  t0 = time.perf_counter()  # the data first: data that is not there stops the command before it writes
  train_data, test_data = (cli_args.load_data(config.name, config.source, split, config.data_dir,
                                              idx_dir=config.idx_dir, download=config.download, prepare_flags=True)
                           for split in ("train", "test"))
  load_seconds = time.perf_counter() - t0
  writable_folder(config.out)  # before any training (the arguments checked first)
  config_dict = dataclasses.asdict(config)
  state_path = os.path.join(config.out, train_state.STATE_FILE)
  if force and os.path.isfile(state_path):
    os.remove(state_path)
  if not force and os.path.isfile(os.path.join(config.out, ckpt_lib.METADATA)):
    meta = ckpt_lib.load_metadata(config.out)
    if meta.get("run") == config_dict:
      if not _reports_describe(config.out, config_dict):  # stopped after the checkpoint
        _write_reports(config.out, meta)
      print(f"{config.out} already holds this run (test accuracy "
            f"{meta['test_accuracy']:.4f}); use --force to retrain")
      return meta

  print(f"loaded {config.name} from {config.source}: {len(train_data[1])} train, "
        f"{len(test_data[1])} test ({load_seconds:.1f} s)")

  recipe = config.make_recipe()
  if config.source == "embedded" and recipe.split == "holdout":
    train_data = _every_sixth_last(*train_data)
  try:
    model, history = train(recipe, train_data, test_data, checkpoint_dir=config.out)
  except train_state.TrainStateError as e:
    raise train_state.TrainStateError(f"{e} ({PROG} --force does that)") from None
  dataset = {"name": config.name, "source": config.source, "data_dir": config.data_dir,
             "n_train": len(train_data[1]), "n_test": len(test_data[1])}
  if recipe.split == "holdout":  # the images the weights were fitted on, and those held out
    from jsma_jax.models import holdout_split

    fit, held = holdout_split(len(train_data[1]))
    dataset.update(n_fit=len(fit), n_validation=len(held))
  if config.source == "embedded":
    dataset["split"] = ("the embedded digits: 5,000 official training digits (500 per class), "
                        "1,000 official test digits (100 per class)"
                        + ("; validation: every 6th training digit (jsma-jax reproduce's split)"
                           if recipe.split == "holdout" else ""))
  meta = {"run": config_dict, "dataset": dataset,
          "recipe": history["recipe"], "history": history,
          "test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"]
          else None,
          "train_seconds": history["train_seconds"], "load_seconds": load_seconds,
          "command": " ".join([PROG]
                              + (sys.argv[1:] if argv is None else list(argv)))}
  ckpt_lib.save_checkpoint(config.out, model, meta)
  if os.path.isfile(state_path):  # the run is complete: its checkpoint replaces the state
    os.remove(state_path)
  meta = ckpt_lib.load_metadata(config.out)
  _write_reports(config.out, meta)
  print(f"saved to {config.out}: test accuracy {meta['test_accuracy']:.4f}, "
        f"{history['train_seconds']:.0f} s")
  return meta


if __name__ == "__main__":
  from ..cli import run

  sys.exit(run("train", sys.argv[1:]))
