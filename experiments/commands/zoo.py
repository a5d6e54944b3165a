"""``jsma-jax zoo``: its command line; the zoo itself is :mod:`..zoo.zoo` (recipes, training)
and :mod:`..zoo.zoo_report` (attacks, measures, report)."""

from __future__ import annotations

import argparse
import sys
import time

from ..common import cli_args
from ..common.stages import writable_folder
from ..zoo import zoo, zoo_report


def _thetas(text: str) -> tuple[float, ...]:
  """``--thetas``: comma-separated numbers."""
  try:
    return tuple(float(t) for t in text.split(",") if t)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,-1, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
  """The command line of ``jsma-jax zoo``."""
  d = zoo.ZooConfig()
  p = cli_args.Parser(prog=zoo.PROG, description=zoo.__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter)
  p.add_argument("--data-dir", default=d.data_dir,
                 help="folder of the MNIST IDX files (required: every recipe trains on full MNIST; "
                      "the embedded 5,000 digits are too few)")
  p.add_argument("--out", default=d.out, help="output folder")
  p.add_argument("--sources", dest="n_sources", type=cli_args.count, default=d.n_sources,
                 help="test sources, each attacked towards its 9 other classes")
  p.add_argument("--thetas", type=_thetas,
                 default=",".join(f"{t:g}" for t in d.thetas),
                 help="the attacks' directions, comma-separated (each runs over every recipe in turn)")
  p.add_argument("--chunk-sources", type=cli_args.count, default=d.chunk_sources, help="sources per stage file")
  p.add_argument("--batch-size", type=cli_args.count, default=d.batch_size, help="attacks per compiled call")
  p.add_argument("--seed", type=cli_args.natural, default=d.seed, help="seed of the source sampling")
  p.add_argument("--stage", choices=("all", "train", "report"), default=d.stage,
                 help="train: the models only; report: render what is done, run nothing new")
  return p


def parse_args(argv=None) -> zoo.ZooConfig:
  """The zoo configuration of a command line."""
  p = parser()
  config = cli_args.configuration(p, zoo.ZooConfig, vars(p.parse_args(argv)))
  if not config.thetas:
    raise cli_args.UsageError("--thetas names no direction: pass one or more, comma-separated (--thetas 1,-1)")
  for theta in config.thetas:  # each direction, by the library's own check
    cli_args.check_attack_options(p, {"theta": "--thetas"}, theta=theta)
  return config


def main(argv=None) -> dict:
  """Runs the zoo of a command line."""
  config = parse_args(sys.argv[1:] if argv is None else argv)
  cli_args.require_folder(config.data_dir, "--data-dir", "the MNIST IDX files; the zoo trains on full MNIST")

  log = lambda s: print(s, flush=True)
  t0 = time.perf_counter()
  train_set = cli_args.load_data("mnist", "idx", "train", config.data_dir)
  test_set = cli_args.load_data("mnist", "idx", "test", config.data_dir)
  writable_folder(config.out)  # after the data: data that is not there stops the command before it writes
  models = [zoo.train_stage(r, (train_set, test_set), config.out, log) for r in zoo.zoo_recipes()]
  log(f"{len(models)} models ready ({time.perf_counter() - t0:.0f} s)")
  if config.stage == "train":
    return {"models": [m.info for m in models]}
  return zoo_report.run(config, models, test_set, log, pairs=zoo.PAIRS)


if __name__ == "__main__":
  from ..cli import run  # the dispatcher: one place that turns errors into exit statuses

  sys.exit(run("zoo", sys.argv[1:]))
