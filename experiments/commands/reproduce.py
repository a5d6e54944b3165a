"""Reproduce Papernot et al. (EuroS&P 2016) end to end: one command, one output folder.

Usage::

  jsma-jax reproduce                                   # embedded data, a few minutes on 2 CPUs
  jsma-jax reproduce --data-dir path/to/mnist \\
      --checkpoint-dir runs/models --sources 300 --ablation-sources 50 --out runs/mnist
  jsma-jax reproduce --preset full_mnist --data-dir path/to/mnist  # 10,000 sources per set

(``python -m experiments.commands.reproduce`` from a checkout is the same command.) OUT receives
``results.json`` (every number, the configuration, dataset, model accuracy, JAX version,
backend, device and seed), the figures (PNG) and ``report.md``, plus ``stages/`` (one
atomic JSON/NPZ per finished stage) and ``models/``. A repeated command resumes:
finished stages are loaded, not redone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from ..common import cli_args
from ..study import config as config_lib

# The study's modules need jsma_jax.models (flax, optax) and matplotlib: imported when the
# command runs, so that `jsma-jax reproduce --help` needs the core only (the light install).

PROG = "jsma-jax reproduce"


def _csv(kind):
  """An ``argparse`` type: comma-separated values of ``kind``."""
  def parse(text):
    try:
      return tuple(kind(v) for v in text.split(",") if v)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from None
  return parse


def parser(preset: str = "quick") -> argparse.ArgumentParser:
  """The command line of ``jsma-jax reproduce``, with the defaults of ``preset``."""
  d = config_lib.PRESETS[preset]()
  p = cli_args.Parser(prog=PROG, description=__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter,
                              epilog="Defaults shown are those of the chosen --preset.")
  p.add_argument("--preset", choices=tuple(config_lib.PRESETS), default=preset,
                 help="named configuration the other options start from: "
                      + "; ".join(f"{k}: {' '.join(f.__doc__.split(chr(10) * 2)[0].split()).rstrip('.')}"
                                   for k, f in config_lib.PRESETS.items()))
  p.add_argument("--full", action="store_true", help="same as --preset full_mnist (default: off)")
  p.add_argument("--out", default=d.out, help="output folder (results.json, report.md, figures, stages/)")
  p.add_argument("--dataset", dest="source", choices=config_lib.SOURCES, default=None,
                 help="where MNIST comes from: the embedded 5,000 digits, IDX files, or tensorflow-datasets "
                      f"(default: idx when --data-dir is given, else the preset's: {d.source})")
  p.add_argument("--data-dir", default=d.data_dir,
                 help=f"idx: folder of the IDX files; tfds: TFDS data folder (default: {d.data_dir}; "
                      f"with --dataset idx: {config_lib.IDX_DIR})")
  p.add_argument("--activations", type=_csv(str), default=",".join(d.activations),
                 help="LeNet activations to study, comma-separated (tanh,relu)")
  p.add_argument("--arch", choices=config_lib.ARCHS, default=d.arch,
                 help="model: the paper's LeNet, or tiny_mlp (a fast stand-in for tests)")
  p.add_argument("--shipped", action=argparse.BooleanOptionalAction, default=d.shipped,
                 help="attack the package's paper LeNet as the tanh model; --no-shipped: train it (or load "
                      "it from --checkpoint-dir)")
  p.add_argument("--checkpoint-dir", default=d.checkpoint_dir,
                 help="folder with lenet_<activation>_mnist checkpoints (models missing there are trained)")
  p.add_argument("--epochs", type=cli_args.count, default=d.epochs, help="training epochs of models trained here")
  p.add_argument("--splits", type=_csv(str), default=",".join(d.splits),
                 help="source sets of the reproduction row, a subset of train,validation,test")
  p.add_argument("--sources", dest="n_sources", type=cli_args.count, default=d.n_sources,
                 help="sources per set for the reproduction row (each attacked towards every other class)")
  p.add_argument("--ablation-sources", dest="n_sources_ablation", type=cli_args.count, default=d.n_sources_ablation,
                 help="sources for each other variant")
  p.add_argument("--split-sources", dest="n_sources_splits", type=cli_args.count, default=d.n_sources_splits,
                 help="sources for the reproduction row on train/validation (None: --sources)")
  p.add_argument("--chunk-sources", type=cli_args.count, default=d.chunk_sources, help="sources per stage file")
  p.add_argument("--variants", type=_csv(str), default=",".join(d.variants),
                 help="rows to run, comma-separated, among " + ",".join(config_lib.VARIANTS))
  p.add_argument("--pixels", type=_csv(int), default=",".join(map(str, d.pixels)),
                 help="budget grid in changed pixels, ascending (the hardness integral's points)")
  p.add_argument("--gamma", type=float, default=d.gamma, help="the table's budget, a share of the features")
  p.add_argument("--batch-size", type=cli_args.count, default=d.batch_size, help="attacks per compiled jsma call")
  p.add_argument("--figure-examples", dest="n_figure_examples", type=cli_args.natural, default=d.n_figure_examples,
                 help="saliency-map examples in the figure")
  p.add_argument("--seed", type=cli_args.natural, default=d.seed, help="seed of the source sampling and of training")
  p.add_argument("--zoo-results", default=d.zoo_results,
                 help="a model zoo's results.json (jsma-jax zoo) to show beside the reproduction")
  return p


def parse_args(argv=None) -> config_lib.StudyConfig:
  """The study configuration of a command line: the preset, then the options given."""
  argv = sys.argv[1:] if argv is None else list(argv)
  first = cli_args.Parser(prog=PROG, add_help=False)
  first.add_argument("--preset", choices=tuple(config_lib.PRESETS), default="quick")
  first.add_argument("--full", action="store_true")
  known, _ = first.parse_known_args(argv)
  p = parser("full_mnist" if known.full else known.preset)
  args = vars(p.parse_args(argv))
  del args["preset"], args["full"]
  preset = config_lib.PRESETS["full_mnist" if known.full else known.preset]()
  given_dir = args["data_dir"] if args["data_dir"] != preset.data_dir else None  # --data-dir alone: idx
  args["source"] = cli_args.data_source(args["source"], given_dir, default=preset.source)
  config = cli_args.configuration(p, config_lib.StudyConfig, args)
  cli_args.check_attack_options(p, gamma=config.gamma)
  return config


def main(argv=None) -> dict:
  """Runs the study of a command line and writes its folder; returns ``results``."""
  argv = sys.argv[1:] if argv is None else list(argv)
  config = parse_args(argv)  # before the import below, so that --help needs the core only
  from ..common import figures  # matplotlib: the [experiments] extra

  if config.source == "idx":
    cli_args.require_folder(config.data_dir, "--data-dir", "the MNIST IDX files" + (
        f"; without --data-dir, {config_lib.IDX_DIR} under the current folder" if config.data_dir == config_lib.IDX_DIR
        else ""))
  if config.source != "embedded":  # the data is there, before any work; and which folder is read, said
    cli_args.load_data("mnist", config.source, "test", config.data_dir)
    folder = os.path.abspath(os.path.expanduser(config.data_dir or "~/tensorflow_datasets"))
    print(f"{PROG}: MNIST from {config.source} files in {folder} (--data-dir)", flush=True)
  if config.checkpoint_dir is not None:
    cli_args.require_folder(config.checkpoint_dir, "--checkpoint-dir", "lenet_<activation>_mnist checkpoints")
  from ..common import stages
  from ..study import report, study

  command = PROG + " " + " ".join(shlex.quote(a) for a in argv)
  stages.writable_folder(config.out)  # before any work: an unwritable --out fails now
  print(f"study: {dataclasses.asdict(config)}", flush=True)
  results, pictures = study.run_study(config, log=lambda s: print(s, flush=True))
  results["command"] = command
  names = figures.write_all(results, pictures, config.out)
  results["figures"] = names
  stages.atomic_write_json(os.path.join(config.out, "results.json"), results)
  text = report.render(results, names, command)
  stages.atomic_write_bytes(os.path.join(config.out, "report.md"), text.encode())
  print(f"wrote {config.out}/results.json, report.md and {len(names)} figures", flush=True)
  return results


if __name__ == "__main__":
  from ..cli import run

  sys.exit(run("reproduce", sys.argv[1:]))
