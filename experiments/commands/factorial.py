"""``jsma-jax factorial``: its command line; the design and its training are
:mod:`..zoo.factorial`, the attacks, choice, analysis and report :mod:`..zoo.factorial_report`."""

from __future__ import annotations

import argparse
import sys
import time

from ..common import cli_args
from ..common.stages import writable_folder
from ..zoo import factorial, factorial_report


def parser() -> argparse.ArgumentParser:
  """The command line of ``jsma-jax factorial``."""
  d = factorial.FactorialConfig()
  p = cli_args.Parser(prog=factorial.PROG, description=factorial.__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter)
  p.add_argument("--data-dir", default=d.data_dir, help="folder of the MNIST IDX files (required)")
  p.add_argument("--out", default=d.out, help="output folder")
  p.add_argument("--sources", dest="n_sources", type=cli_args.count, default=d.n_sources,
                 help="sources per set (validation, test), each attacked towards its 9 other classes")
  p.add_argument("--chunk-sources", type=cli_args.count, default=d.chunk_sources, help="sources per stage file")
  p.add_argument("--batch-size", type=cli_args.count, default=d.batch_size, help="attacks per compiled call")
  p.add_argument("--seed", type=cli_args.natural, default=d.seed, help="seed of the source sampling")
  p.add_argument("--tutorial-epochs", type=cli_args.natural, default=d.tutorial_epochs,
                 help="also train the Theano tutorial's recipe this long (200: its own length; 0: no)")
  p.add_argument("--modern", action=argparse.BooleanOptionalAction, default=d.modern,
                 help="also the recipe most users write today (PyTorch init, Adam, batch 128, 10 epochs), "
                      "tanh and ReLU")
  p.add_argument("--stage", choices=("all", "train", "validation"), default=d.stage,
                 help="train: the models only; validation: up to the choice (a repeated run loads what is done)")
  return p


def parse_args(argv=None) -> factorial.FactorialConfig:
  """The configuration of a command line."""
  p = parser()
  return cli_args.configuration(p, factorial.FactorialConfig, vars(p.parse_args(argv)))  # counts checked by their types


def main(argv=None) -> dict:
  """Runs the factorial zoo of a command line."""
  config = parse_args(sys.argv[1:] if argv is None else argv)
  cli_args.require_folder(config.data_dir, "--data-dir", "the MNIST IDX files; every model trains on full MNIST")

  log = lambda s: print(s, flush=True)
  t0 = time.perf_counter()
  train_set = cli_args.load_data("mnist", "idx", "train", config.data_dir)
  test_set = cli_args.load_data("mnist", "idx", "test", config.data_dir)
  writable_folder(config.out)  # after the data: data that is not there stops the command before it writes
  models = factorial.train_all(config, (train_set, test_set), log, factorial.FACTORS)
  log(f"{len(models)} models ready ({time.perf_counter() - t0:.0f} s)")
  if config.stage == "train":
    return {"models": {m.name: m.info for m in models}}
  return factorial_report.run(config, models, train_set, test_set, log, factorial.FACTORS)


if __name__ == "__main__":
  from ..cli import run  # the dispatcher: one place that turns errors into exit statuses

  sys.exit(run("factorial", sys.argv[1:]))
