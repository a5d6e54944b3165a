"""JSMA on a real table: per-column bounds from the data, immutable columns masked.

The data ship inside scikit-learn's wheel (``sklearn.datasets.load_wine``: 178 wines,
13 chemical measurements, 3 cultivars; no download). Columns are min-max scaled
with the training split's range; each column's bounds are the range the whole
table shows (so the attack never leaves values a wine was seen to have); a set of
columns is declared immutable (a scenario: the grape's own measurements that a
producer cannot change after harvest) and masked out. A small Flax MLP is trained
on 70% of the table, and the test wines it classifies correctly are attacked:

* targeted (the paper's rule): each wine towards each of the 2 other cultivars,
  increasing (``theta = +0.25``) and decreasing (``theta = -0.25``) features;
* non-targeted (Maximal JSMA, both directions, ``|theta| = 0.25``).

Every attack has a budget of ``max_changes`` changed features. Writes
``results.json`` and ``report.md`` to ``--out`` (default ``runs/tabular``, under the
current folder: never into the installed package or the committed
``experiments/results/tabular/``, which a maintainer refreshes with ``--out
experiments/results/tabular``). Needs the ``[tabular]`` extra (scikit-learn) and
``[models]`` (Flax, optax).

Usage::

    python -m experiments.scripts.tabular --out runs/tabular
    # installed: python -m jsma_jax_experiments.scripts.tabular --out runs/tabular
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax
from jsma_jax.family import maximal_rule

from ..common import cli_args
from ..common.environment import environment

# Flax, optax and scikit-learn: imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.

OUT = os.path.join("runs", "tabular")  # relative: under the folder the command runs in


@dataclasses.dataclass(frozen=True)
class Config:
  """One run of the tabular example."""

  immutable: tuple = ("alcohol", "malic_acid", "ash", "proline")  # masked: never changed
  hidden: int = 32
  steps: int = 400  # full-batch Adam steps
  learning_rate: float = 0.01
  test_share: float = 0.3
  theta: float = 0.25
  max_changes: int = 6
  seed: int = 0


def make_model(num_features: int, num_classes: int, hidden: int, seed: int):
  """A ReLU MLP ``num_features -> hidden -> hidden -> num_classes`` (Flax NNX, an optional dependency)."""
  from flax import nnx

  class TableMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
      self.l1 = nnx.Linear(num_features, hidden, rngs=rngs)
      self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
      self.out = nnx.Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x):
      x = jax.nn.relu(self.l1(x))
      return self.out(jax.nn.relu(self.l2(x)))

  return TableMLP(nnx.Rngs(seed))


def load(config: Config):
  """The table, split and scaled; per-column bounds and the mask of mutable columns."""
  from sklearn.datasets import load_wine

  data = load_wine()
  x, y, names = data.data.astype(np.float64), data.target.astype(np.int32), list(data.feature_names)
  unknown = sorted(set(config.immutable) - set(names))
  if unknown:
    raise ValueError(f"immutable must name columns of the table {names}, got {unknown}")
  rng = np.random.default_rng(config.seed)
  order = rng.permutation(len(y))
  n_test = round(config.test_share * len(y))
  test, train = order[:n_test], order[n_test:]
  low, high = x[train].min(axis=0), x[train].max(axis=0)
  scaled = ((x - low) / (high - low)).astype(np.float32)  # min-max, fitted on the training split
  lo, hi = scaled.min(axis=0), scaled.max(axis=0)  # each column's bounds: the range the table shows
  mutable = np.array([n not in config.immutable for n in names])
  return scaled[train], y[train], scaled[test], y[test], lo, hi, mutable, names


def train(model, x, y, config: Config):
  import optax
  from flax import nnx

  optimizer = nnx.Optimizer(model, optax.adam(config.learning_rate), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  for _ in range(config.steps):
    loss = step(model, optimizer, jnp.asarray(x), jnp.asarray(y))
  return float(loss)


def measure(result, x, mutable) -> dict:
  summary = jsma_jax.summarize(result)
  x_adv = np.asarray(result.x_adv)
  return {
      "attacks": summary.n, "success_rate": summary.success_rate,
      "mean_l0_successful": summary.mean_l0_successful, "mean_l0_all": summary.mean_l0_all,
      "stop_reasons": summary.stop_reasons,
      "immutable_changed": int((x_adv != x)[:, ~mutable].sum()),
      "mean_abs_change_successful": float(np.abs(x_adv - x)[np.asarray(result.success)].sum(axis=1).mean())
      if summary.n_success else float("nan"),
  }


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(prog="python -m jsma_jax_experiments.scripts.tabular", description=__doc__.split("\n")[0],
                              formatter_class=cli_args.HelpFormatter)
  p.add_argument("--out", default=OUT, help="output folder (results.json, report.md), relative to the current one")
  p.add_argument("--seed", type=cli_args.natural, default=Config.seed, help="seed of the split and the model")
  args = p.parse_args(argv)
  return run_all(Config(seed=args.seed), pathlib.Path(args.out))


def run_all(config: Config, out: pathlib.Path) -> dict:
  from jsma_jax.models import as_logits_fn

  t0 = time.perf_counter()
  x_train, y_train, x_test, y_test, lo, hi, mutable, names = load(config)
  model = make_model(x_train.shape[1], 3, config.hidden, config.seed)
  loss = train(model, x_train, y_train, config)
  apply_fn, params = as_logits_fn(model)
  accuracy = lambda x, y: float((np.asarray(apply_fn(params, x)).argmax(-1) == y).mean())
  keep = np.asarray(apply_fn(params, x_test)).argmax(-1) == y_test
  sources, labels = x_test[keep], y_test[keep]
  common = dict(params=params, clip_min=lo, clip_max=hi, mask=mutable, max_changes=config.max_changes)
  batch = jsma_jax.all_other_targets(sources, labels, 3)
  rows = {}
  for name, theta in (("targeted, increasing", config.theta), ("targeted, decreasing", -config.theta)):
    result = jsma_jax.jsma(apply_fn, batch.x, batch.targets, theta=theta, **common)
    rows[name] = measure(result, np.asarray(batch.x), mutable)
  result = jsma_jax.jsma(apply_fn, sources, labels, rule=maximal_rule(), theta=config.theta, **common)
  rows["non-targeted (Maximal JSMA)"] = measure(result, sources, mutable)

  record = {
      "config": dataclasses.asdict(config), "environment": environment(), "seconds": time.perf_counter() - t0,
      "data": {"dataset": "sklearn.datasets.load_wine", "features": names, "n_train": len(y_train),
               "n_test": len(y_test), "mutable": [n for n, m in zip(names, mutable) if m],
               "bounds": {n: [float(a), float(b)] for n, a, b in zip(names, lo, hi)}},
      "model": {"train_loss": loss, "train_accuracy": accuracy(x_train, y_train),
                "test_accuracy": accuracy(x_test, y_test), "attacked_sources": int(keep.sum())},
      "attacks": rows,
  }
  out.mkdir(parents=True, exist_ok=True)
  (out / "results.json").write_text(json.dumps(record, indent=1, default=float))
  (out / "report.md").write_text(report(record))
  print(report(record))
  print(f"wrote {out / 'results.json'} and {out / 'report.md'}")
  return record


def report(record: dict) -> str:
  d, m, c = record["data"], record["model"], record["config"]
  lines = [
      "# JSMA on a table: per-column bounds and immutable columns (scikit-learn's wine data)",
      "",
      f"{d['n_train']} training and {d['n_test']} test wines, {len(d['features'])} columns min-max scaled on the "
      "training split; each column bounded by the range the whole table shows; immutable (masked) columns: "
      f"{', '.join(c['immutable'])}. MLP {len(d['features'])} -> {c['hidden']} -> {c['hidden']} -> 3 (ReLU), "
      f"{c['steps']} full-batch Adam steps: train accuracy {m['train_accuracy']:.1%}, test accuracy "
      f"{m['test_accuracy']:.1%}. Attacked: the {m['attacked_sources']} test wines classified correctly; "
      f"budget max_changes = {c['max_changes']} features, |theta| = {c['theta']}.",
      "",
      "| attack | attacks | success | mean L0 (successful) | mean L0 (all) | immutable features changed | "
      "mean L1 change (successful) | stop reasons |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for name, r in record["attacks"].items():
    reasons = ", ".join(f"{k} {v}" for k, v in r["stop_reasons"].items())
    lines.append(f"| {name} | {r['attacks']} | {r['success_rate']:.1%} | {r['mean_l0_successful']:.2f} | "
                 f"{r['mean_l0_all']:.2f} | {r['immutable_changed']} | {r['mean_abs_change_successful']:.3f} | "
                 f"{reasons} |")
  env = record["environment"]
  lines += ["", f"Targeted: every source towards each of its 2 other classes (the paper's rule, pairs). "
            "Non-targeted: Maximal JSMA (every class, both directions). Run: "
            f"{record['seconds']:.0f} s, JAX {env['jax']} on {env['backend']} ({env['processor']}), seed {c['seed']}.",
            ""]
  return "\n".join(lines)


if __name__ == "__main__":
  main()
