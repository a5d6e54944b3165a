"""The JSMA family side by side: every variant on the same model, sources and targets.

Usage::

  jsma-jax family                                  # the shipped paper LeNet, embedded test digits
  jsma-jax family --checkpoint runs/models/lenet_tanh_mnist \\
      --data-dir path/to/mnist --sources 100 --out experiments/results/family   # full MNIST

Variants (``jsma_jax.rules`` and ``jsma_jax.family``): JSMA, WJSMA and TJSMA with pairs,
JSMA with single features (Algorithm 1), non-targeted JSMA and Maximal JSMA. The sources
are a seeded sample of the test digits the model classifies correctly; the targeted
variants attack each towards the 9 other classes (``jsma_jax.all_other_targets``), the
non-targeted ones once per source. Every variant runs once at the gamma budget
(theta = +1, gamma = 14.5%, the library's default "movable" initial domain) with the L0
trace recorded; ``jsma_jax.curves.robustness_curve`` reads the success at every smaller
L0 budget off that run. OUT receives ``results.json``, ``report.md``,
``success_vs_budget.png`` and ``stages/`` (a finished variant is loaded, not redone).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shlex
import sys
import time

import jax
import numpy as np

import jsma_jax
from jsma_jax import family
from jsma_jax.curves import robustness_curve

from ..common import cli_args
from ..common.environment import environment
from ..common.stages import Stages, atomic_write_bytes, atomic_write_json

# Flax (jsma_jax.models) and matplotlib: imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.

PROG = "jsma-jax family"
VARIANTS = ("jsma", "wjsma", "tjsma", "jsma-single", "untargeted", "maximal")


@dataclasses.dataclass(frozen=True)
class FamilyConfig:
  """One comparison: the model, the data, the sources and the shared attack settings."""

  checkpoint: str = cli_args.SHIPPED
  out: str = "runs/family"
  data_dir: str | None = None  # IDX folder (full MNIST); None: the embedded digits
  split: str = "test"
  n_sources: int = 20
  seed: int = 0
  theta: float = 1.0
  gamma: float = 0.145
  budgets: tuple = (2, 10, 20, 40, 60, 80, 100)  # L0 budgets below the gamma budget, for the curve
  variants: tuple = VARIANTS
  chunk_size: int = 1024

  def __post_init__(self):
    if self.n_sources < 1 or self.chunk_size < 1:
      raise ValueError(f"n_sources and chunk_size must be >= 1, got {self.n_sources}, {self.chunk_size}")
    unknown = sorted(set(self.variants) - set(VARIANTS))
    if unknown:
      raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")


def variant_spec(name: str):
  """``(rule, pairwise)`` of a variant."""
  return {
      "jsma": (jsma_jax.jsma_rule(), True),
      "wjsma": (jsma_jax.wjsma_rule(), True),
      "tjsma": (family.tjsma_rule(), True),
      "jsma-single": (jsma_jax.jsma_rule(), False),
      "untargeted": (family.untargeted_rule(), True),
      "maximal": (family.maximal_rule(), True),
  }[name]


def parser() -> argparse.ArgumentParser:
  d = FamilyConfig()
  p = cli_args.Parser(prog=PROG, description=__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter)
  p.add_argument("--checkpoint", default=d.checkpoint,
                 help=f"checkpoint folder (jsma_jax.models.save_checkpoint), or {cli_args.SHIPPED!r}: the "
                      "package's paper LeNet (jsma_jax.models.load_paper_lenet; shipped:NAME for another shipped one)")
  p.add_argument("--out", default=d.out, help="output folder")
  p.add_argument("--data-dir", default=d.data_dir,
                 help="folder of the MNIST IDX files (default: none, the embedded test digits)")
  p.add_argument("--sources", dest="n_sources", type=cli_args.count, default=d.n_sources,
                 help="correctly classified test digits to attack (x9 targeted attacks each)")
  p.add_argument("--seed", type=cli_args.natural, default=d.seed, help="seed of the source sample")
  p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(d.variants),
                 help=f"variants to run, space-separated (default: all: {' '.join(d.variants)})")
  p.add_argument("--chunk-size", type=cli_args.count, default=d.chunk_size, help="attacks per compiled call")
  return p


def parse_args(argv=None) -> FamilyConfig:
  p = parser()
  args = vars(p.parse_args(argv))
  args["variants"] = tuple(args["variants"])
  return cli_args.configuration(p, FamilyConfig, args)


def _machine() -> dict:
  from jsma_jax.models.checkpoint import cpu_model

  return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}


def run_variant(config: FamilyConfig, name: str, apply_fn, params, x, y, num_classes: int) -> tuple[dict, dict]:
  """One variant on the sources: its curve and table row (summary) and per-attack arrays."""
  rule, pairwise = variant_spec(name)
  m = int(np.prod(x.shape[1:]))
  if rule.targeted:
    e = jsma_jax.all_other_targets(x, y, num_classes)
    xs, labels, sources = np.asarray(e.x), np.asarray(e.targets), np.asarray(e.labels)
  else:
    xs, labels, sources = x, y, y
  table_iter = jsma_jax.max_iterations(m, config.gamma, pairwise=pairwise)
  table_budget = table_iter * (2 if pairwise else 1)
  budgets = tuple(b for b in config.budgets if b < table_budget) + (table_budget,)
  start = time.perf_counter()
  curve = robustness_curve(apply_fn, xs, labels, params=params, rule=rule, budgets=budgets, pairwise=pairwise,
                           theta=config.theta, chunk_size=config.chunk_size, progress=True)
  seconds = time.perf_counter() - start
  r = curve.result
  s = jsma_jax.summarize(r)
  summary = {
      "variant": name, "rule": r.rule, "criterion": r.criterion, "pairwise": pairwise, "targeted": rule.targeted,
      "n": s.n, "success_rate": s.success_rate, "mean_l0_successful": s.mean_l0_successful,
      "mean_l0_all": s.mean_l0_all, "distortion_successful": s.distortion_successful,
      "distortion_all": s.distortion_all, "mean_iterations": s.mean_iterations, "stop_reasons": s.stop_reasons,
      "max_iter": table_iter, "seconds": seconds, "attacks_per_second": s.n / seconds,
      "curve": {"budgets": curve.budgets, "max_iter": curve.max_iter, "success_rate": curve.success_rate,
                "mean_l0": curve.mean_l0, "mean_l0_all": curve.mean_l0_all},
  }
  arrays = {"source": sources.astype(np.int32), "label": labels.astype(np.int32), "success": r.success,
            "n_changed": r.n_changed, "iterations": r.iterations, "stop_reason": r.stop_reason}
  return summary, arrays


def _predict(apply_fn, params, x: np.ndarray, size: int = 1000) -> np.ndarray:
  f = jax.jit(apply_fn)
  return np.concatenate([np.asarray(f(params, x[i:i + size]).argmax(-1)) for i in range(0, len(x), size)])


def render(results: dict) -> str:
  """The Markdown report of a comparison."""
  pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
  num = lambda v: "n/a" if v is None else f"{v:.2f}"
  d, env, mach = results["dataset"], results["environment"], results["machine"]
  lines = [
      "# The JSMA family on one model", "",
      f"Command: `{results['command']}`", "",
      f"- model: checkpoint `{results['config']['checkpoint']}` ({results['model'].get('arch', '')} "
      f"{results['model'].get('activation', '')}), accuracy on {d['source']} {d['split']} ({d['size']} digits): "
      f"{pct(d['accuracy'])}",
      f"- sources: {d['n_sources']} correctly classified {d['split']} digits (seed {results['config']['seed']}); "
      f"targeted variants: each source towards its 9 other classes; non-targeted: once per source",
      f"- settings: theta = {results['config']['theta']}, gamma = {results['config']['gamma']} "
      f"(pairs: {results['rows'][0]['max_iter'] if results['rows'] else ''} iterations), initial domain 'movable', "
      "Jacobian of the logits",
      f"- machine: {mach['cpu']}, {mach['cores']} cores (shared; load average at start "
      f"{', '.join(f'{v:.1f}' for v in mach['load_average_at_start'])}), {env['backend']}, JAX {env['jax']}; "
      f"wall time {results['wall_seconds']:.0f} s (attacks {results['attack_seconds_total']:.0f} s)", "",
      "| variant | criterion | attacks | success | mean L0 (successful) | "
      "mean L0 (all) | iterations | attacks/s | stop reasons |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in results["rows"]:
    reasons = ", ".join(f"{k} {v}" for k, v in r["stop_reasons"].items())
    lines.append(
        f"| {r['variant']} | {r['criterion']} | {r['n']} | {pct(r['success_rate'])} | "
        f"{num(r['mean_l0_successful'])} ({pct(r['distortion_successful'])}) | {num(r['mean_l0_all'])} | "
        f"{num(r['mean_iterations'])} | {r['attacks_per_second']:.1f} | {reasons} |")
  lines += ["", "L0 is the number of pixels changed (of 784). Attacks/s include one compilation per variant. "
            "Non-targeted success (leave the source class) is a different, easier goal than reaching a "
            "chosen target: compare those two rows with each other.", "",
            "Success against the L0 budget (from one run per variant, `jsma_jax.curves.robustness_curve`):", "",
            "| budget (pixels) | " + " | ".join(r["variant"] for r in results["rows"]) + " |",
            "|---|" + "---|" * len(results["rows"])]
  budgets = sorted({b for r in results["rows"] for b in r["curve"]["budgets"]})
  for b in budgets:
    cells = []
    for r in results["rows"]:
      c = r["curve"]
      cells.append(pct(c["success_rate"][c["budgets"].index(b)]) if b in c["budgets"] else "")
    lines.append(f"| {b} | " + " | ".join(cells) + " |")
  lines += ["", "![success against the L0 budget](success_vs_budget.png)", ""]
  return "\n".join(lines)


def plot(results: dict, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
  for r in results["rows"]:
    c = r["curve"]
    style = "-" if r["targeted"] else "--"
    ax1.plot(c["budgets"], [100 * v for v in c["success_rate"]], style, marker="o", ms=3, label=r["variant"])
    ax2.plot(c["budgets"], [np.nan if v is None else v for v in c["mean_l0"]], style, marker="o", ms=3,
             label=r["variant"])
  for ax in (ax1, ax2):
    ax.set_xscale("log")
    ax.set_xlabel("L0 budget (changed pixels)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  ax1.set_ylabel("success rate (%)")
  ax2.set_ylabel("mean L0 of successful attacks")
  fig.suptitle("JSMA family: success against the L0 budget (dashed: non-targeted)")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def main(argv=None) -> dict:
  argv = sys.argv[1:] if argv is None else list(argv)
  config = parse_args(argv)

  from jsma_jax.models import as_logits_fn


  wall = time.perf_counter()
  machine = _machine()
  command = PROG + " " + " ".join(shlex.quote(a) for a in argv)
  if config.data_dir is not None:
    cli_args.require_folder(config.data_dir, "--data-dir", "the MNIST IDX files")
  net, meta = cli_args.load_model(config.checkpoint)
  apply_fn, params = as_logits_fn(net)
  if config.data_dir is None:
    x_all, y_all = cli_args.load_data("mnist", "embedded", config.split)
  else:
    x_all, y_all = cli_args.load_data("mnist", "idx", config.split, config.data_dir)
  num_classes = int(jax.eval_shape(apply_fn, params, x_all[:1]).shape[-1])
  predicted = _predict(apply_fn, params, x_all)
  order = np.random.default_rng(config.seed).permutation(len(y_all))
  idx = order[predicted[order] == y_all[order]][:config.n_sources]
  x, y = x_all[idx], y_all[idx].astype(np.int32)
  print(f"{PROG}: {len(idx)} sources, {len(config.variants)} variants", flush=True)
  stages = Stages(config.out)
  key = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "variants", "chunk_size")}
  key["weights_sha256"] = meta["weights_sha256"]  # the model itself, not only its path
  rows = []
  for name in config.variants:
    summary, _ = stages.run(f"variant_{name}", {**key, "variant": name},
                            functools.partial(run_variant, config, name, apply_fn, params, x, y, num_classes))
    rows.append(summary)
  results = {
      "command": command, "config": dataclasses.asdict(config), "model": meta.get("model", {}),
      "checkpoint_test_accuracy": meta.get("test_accuracy"),
      "dataset": {"source": "embedded" if config.data_dir is None else "idx", "data_dir": config.data_dir,
                  "split": config.split, "size": len(y_all), "accuracy": float((predicted == y_all).mean()),
                  "n_sources": len(idx), "source_indices": idx},
      "environment": environment(), "machine": machine, "rows": rows,
      "wall_seconds": time.perf_counter() - wall,
      "attack_seconds_total": float(sum(r["seconds"] for r in rows)),  # includes stages loaded from a previous run
      "stages_loaded": stages.loaded,
  }
  os.makedirs(config.out, exist_ok=True)
  atomic_write_json(os.path.join(config.out, "results.json"), results)
  with open(os.path.join(config.out, "results.json")) as f:  # the report reads what was written (nan as null)

    results = json.load(f)
  plot(results, os.path.join(config.out, "success_vs_budget.png"))
  atomic_write_bytes(os.path.join(config.out, "report.md"), render(results).encode())
  print(render(results))
  return results


if __name__ == "__main__":
  from ..cli import run

  sys.exit(run("family", sys.argv[1:]))
