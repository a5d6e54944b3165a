"""Reproduce Papernot et al. (EuroS&P 2016) end to end: one command, one output folder.

Usage::

  python -m experiments.reproduce                      # embedded data, a few minutes on 2 CPUs
  python -m experiments.reproduce --dataset idx --data-dir ../shared/data/mnist \\
      --checkpoint-dir runs/models --sources 300 --ablation-sources 50 --out runs/mnist
  python -m experiments.reproduce --full --data-dir ../shared/data/mnist   # 10,000 sources per set

OUT receives ``results.json`` (every number, the configuration, dataset, model accuracy,
JAX version, backend, device and seed), the figures (PNG) and ``report.md``, plus
``stages/`` (one atomic JSON/NPZ per finished stage) and ``models/``. A repeated
command resumes: finished stages are loaded, not redone.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

from experiments import figures
from experiments import report
from experiments import stages
from experiments import study


def _csv(kind):
  return lambda s: tuple(kind(v) for v in s.split(",") if v)


def parse_args(argv=None) -> study.StudyConfig:
  d = study.StudyConfig()
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default=d.out)
  p.add_argument("--dataset", dest="source", choices=("embedded", "idx", "tfds"), default=None)
  p.add_argument("--data-dir", default=None, help="idx: folder of the IDX files; tfds: TFDS data folder")
  p.add_argument("--activations", type=_csv(str), default=d.activations, help="e.g. tanh,relu")
  p.add_argument("--arch", choices=("lenet", "tiny_mlp"), default=d.arch,
                 help="tiny_mlp is a fast stand-in for tests")
  p.add_argument("--checkpoint-dir", default=None,
                 help="folder with lenet_<activation>_mnist checkpoints (else models are trained)")
  p.add_argument("--epochs", type=int, default=d.epochs)
  p.add_argument("--splits", type=_csv(str), default=None, help="subset of train,validation,test")
  p.add_argument("--sources", dest="n_sources", type=int, default=None, help="sources per set (main row)")
  p.add_argument("--ablation-sources", dest="n_sources_ablation", type=int, default=None)
  p.add_argument("--split-sources", dest="n_sources_splits", type=int, default=None,
                 help="sources for the paper row on train/validation (default: --sources)")
  p.add_argument("--chunk-sources", type=int, default=d.chunk_sources, help="sources per stage file")
  p.add_argument("--variants", type=_csv(str), default=d.variants, help=",".join(study.VARIANTS))
  p.add_argument("--pixels", type=_csv(int), default=d.pixels, help="budget grid in pixels")
  p.add_argument("--gamma", type=float, default=d.gamma)
  p.add_argument("--batch-size", type=int, default=d.batch_size)
  p.add_argument("--figure-examples", dest="n_figure_examples", type=int, default=d.n_figure_examples)
  p.add_argument("--seed", type=int, default=d.seed)
  p.add_argument("--full", action="store_true",
                 help="the paper's scale: full MNIST (idx), 10,000 sources per set, all three sets")
  args = vars(p.parse_args(argv))
  full = args.pop("full")
  preset = {"source": "idx", "n_sources": 10000, "n_sources_ablation": 1000,
            "splits": study.SPLITS} if full else {}
  for k, v in list(args.items()):
    if v is None:
      args[k] = preset.get(k, getattr(d, k))
  if full and args["checkpoint_dir"] is None:
    args["checkpoint_dir"] = "runs/models"
  if args["source"] != "embedded" and args["data_dir"] is None and args["source"] == "idx":
    args["data_dir"] = os.path.join("..", "shared", "data", "mnist")
  return study.StudyConfig(**args)


def main(argv=None) -> dict:
  config = parse_args(argv)
  command = "python -m experiments.reproduce " + " ".join(
      shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
  os.makedirs(config.out, exist_ok=True)
  print(f"study: {dataclasses.asdict(config)}", flush=True)
  results, arrays = study.run_study(config, log=lambda s: print(s, flush=True))
  results["command"] = command
  names = figures.write_all(results, arrays, config.out)
  results["figures"] = names
  stages.atomic_write_json(os.path.join(config.out, "results.json"), results)
  text = report.render(results, names, command)
  stages.atomic_write_bytes(os.path.join(config.out, "report.md"), text.encode())
  print(f"wrote {config.out}/results.json, report.md and {len(names)} figures", flush=True)
  return results


if __name__ == "__main__":
  main()
