"""Attack a trained checkpoint on a dataset and write the results: one command, one folder.

Usage::

  jsma-jax attack                                  # the shipped paper LeNet, embedded test digits
  jsma-jax attack --checkpoint runs/models/lenet_relu_mnist \\
      --data-dir path/to/mnist --sources 1000 --out runs/attack_relu   # IDX files: full MNIST
  jsma-jax attack --checkpoint CKPT --theta -1 --initial-domain movable      # other settings

(``python -m experiments.commands.attack`` from a checkout is the same command.) The defaults are
the paper's settings (theta = +1, gamma = 14.5%, pairs, Jacobian of the logits, every
feature in the initial search domain, as ``jsma-jax reproduce``'s table; the library's
``jsma`` starts from the features that can move instead); the sources are a seeded sample of the set that
the model classifies correctly, each attacked towards every other class. OUT receives
``results.json`` (settings, model, data, environment, success rate, distortion, stop
reasons by name, per-pair success), ``attacks.npz`` (per attack: source index, target,
success, L0, iterations, stop reason, adversarial input in the data sets' layout, which
``x_adv_layout`` names: ``NHWC``, also for a ``.pt2`` program, whose NCHW input is
``x_adv.transpose(0, 3, 1, 2)``),
``report.md`` and the figures of ``jsma-jax reproduce`` (success against the budget,
per-pair success, adversarial examples, saliency maps).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax
from jsma_jax import metrics

from ..common import cli_args
from ..common.environment import environment
from ..common.stages import atomic_write_bytes, atomic_write_json, atomic_write_npz, writable_folder
from ..study.config import PAPER_PIXELS

# Flax (jsma_jax.models), matplotlib (figures) and torch (a .pt2): imported inside the functions
# that use them (heavy: the [experiments] and [torch] extras), so that --help needs the core only.

PROG = "jsma-jax attack"
X_ADV_LAYOUT = "NHWC"  # attacks.npz's x_adv: the data sets' layout, whatever the model's


@dataclasses.dataclass(frozen=True)
class AttackConfig:
  """One attack run: the model, the data, the sources and the ``jsma`` settings."""

  checkpoint: str = cli_args.SHIPPED
  out: str = "runs/attack"
  source: str = "embedded"
  name: str = "mnist"
  data_dir: str | None = None
  split: str = "test"
  n_sources: int = 100
  include_misclassified: bool = False
  targets: str = "all"
  theta: float = 1.0
  gamma: float = 0.145
  pairwise: bool = True
  probabilities: bool = False
  initial_domain: str = "all"
  max_iter: int | None = None
  batch_size: int = 1024
  seed: int = 0

  def __post_init__(self):
    if self.n_sources < 1 or self.batch_size < 1:
      raise ValueError(f"n_sources and batch_size must be >= 1, got {self.n_sources}, {self.batch_size}")
    if self.targets not in ("all", "random"):
      raise ValueError(f"targets must be 'all' or 'random', got {self.targets!r}")

  def jsma_options(self) -> dict:
    """The keyword options of ``jsma_jax.jsma``."""
    return {"theta": self.theta, "gamma": self.gamma, "pairwise": self.pairwise,
            "probabilities": self.probabilities, "initial_domain": self.initial_domain,
            "max_iter": self.max_iter}


def parser() -> argparse.ArgumentParser:
  """The command line of ``jsma-jax attack``."""
  d = AttackConfig()
  p = cli_args.Parser(prog=PROG, description=__doc__.split("\n")[0],
                      formatter_class=cli_args.HelpFormatter)
  p.add_argument("--checkpoint", default=d.checkpoint,
                 help="checkpoint folder (jsma_jax.models.save_checkpoint; e.g. from jsma-jax train), "
                      f"or {cli_args.SHIPPED!r}: the package's paper LeNet (jsma_jax.models.load_paper_lenet; "
                      f"{cli_args.SHIPPED}:NAME for another shipped one), "
                      "or a PyTorch model saved by torch.export.save (a .pt2 file, NCHW input; needs jsma-jax[torch])")
  p.add_argument("--out", default=d.out, help="output folder (results.json, attacks.npz, report.md, figures)")
  p.add_argument("--dataset", dest="source", choices=cli_args.SOURCES, default=None, help=cli_args.DATASET_HELP)
  p.add_argument("--name", choices=("mnist", "fashion_mnist"), default=d.name, help="which dataset")
  p.add_argument("--data-dir", default=d.data_dir, help="idx: folder of the IDX files; tfds: TFDS data folder")
  p.add_argument("--split", choices=("train", "test"), default=d.split, help="the set the sources come from")
  p.add_argument("--sources", dest="n_sources", type=cli_args.count, default=d.n_sources,
                 help="sources to attack (a seeded sample of the set)")
  p.add_argument("--include-misclassified", action=argparse.BooleanOptionalAction, default=d.include_misclassified,
                 help="also attack sources the model gets wrong (by default only correctly classified ones)")
  p.add_argument("--targets", choices=("all", "random"), default=d.targets,
                 help="all: every other class per source (the paper); random: one random other class")
  p.add_argument("--theta", type=float, default=d.theta, help="change per feature and step (< 0: decreasing)")
  p.add_argument("--gamma", type=float, default=d.gamma, help="maximum distortion, a share of the features")
  p.add_argument("--single", action=argparse.BooleanOptionalAction, default=not d.pairwise,
                 help="one feature per step (Algorithm 1) instead of pairs (Algorithm 3)")
  p.add_argument("--probabilities", action=argparse.BooleanOptionalAction, default=d.probabilities,
                 help="differentiate the softmax (JSMA-F) instead of the logits (JSMA-Z)")
  p.add_argument("--initial-domain", choices=("all", "movable"), default=d.initial_domain,
                 help="all: every feature starts in the search domain (the paper's Algorithm 2, and "
                      "jsma-jax reproduce's table: this command defaults to the paper's settings); "
                      "movable: only those that can move in the attack's direction (the library's jsma default)")
  p.add_argument("--max-iter", type=cli_args.count, default=d.max_iter,
                 help="iteration budget (None: floor(M * gamma / 2) for pairs, floor(M * gamma) for single)")
  p.add_argument("--batch-size", type=cli_args.count, default=d.batch_size, help="attacks per compiled jsma call")
  p.add_argument("--seed", type=cli_args.natural, default=d.seed,
                 help="seed of the source sample and of random targets")
  return p


def parse_args(argv=None) -> AttackConfig:
  """The attack configuration of a command line."""
  p = parser()
  args = vars(p.parse_args(argv))
  args["pairwise"] = not args.pop("single")
  args["source"] = cli_args.data_source(args["source"], args["data_dir"])
  config = cli_args.configuration(p, AttackConfig, args)
  cli_args.check_attack_options(p, **config.jsma_options())
  return config


def _report(res: dict) -> str:
  s, m = res["summary"], res["model"]
  pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"
  lines = [f"# JSMA on {m.get('arch', 'model')} {m.get('activation', '')} ({res['dataset']['name']}, "
           f"{res['dataset']['source']} {res['dataset']['split']})", "",
           f"Command: `{res['command']}`", "",
           f"- checkpoint `{res['config']['checkpoint']}`; accuracy on the set {pct(res['dataset']['accuracy'])}",
           f"- sources: {res['dataset']['n_sources']} "
           f"({'all' if res['config']['include_misclassified'] else 'correctly classified'}), "
           f"targets: {res['config']['targets']}; {s['n']} attacks"
           + (f" ({res['dataset']['short']})" if res["dataset"].get("short") else ""),
           f"- settings: {', '.join(f'{k}={v}' for k, v in res['jsma_options'].items())} "
           f"(budget {res['max_iter']} iterations)",
           f"- **success rate {pct(s['success_rate'])}**; mean distortion {pct(s['distortion_successful'])} of "
           f"the {res['dataset']['num_features']} features over successful attacks, "
           f"{pct(s['distortion_all'])} over all",
           f"- stop reasons: {', '.join(f'{k} {v}' for k, v in res['stop_reasons'].items())}",
           f"- {res['attack_seconds']:.1f} s ({s['n'] / max(res['attack_seconds'], 1e-9):.1f} attacks/s) on "
           f"{res['environment']['backend']} ({res['environment']['device']}), JAX {res['environment']['jax']}"]
  lines += ["", "## Figures", "", "Success and distortion against the budget (read off the one run, recording "
            "the L0 after each iteration), success per class pair, adversarial examples (the first source of "
            "each class; red: failed) and saliency maps:", ""] + [f"![{f}]({f})" for f in res.get("figures", [])]
  return "\n".join(lines) + "\n"


def _figures(config: AttackConfig, r, x, labels, targets, apply_fn, params, model_info: dict, max_iter: int,
             num_classes: int) -> list[str]:
  """The figures of ``jsma-jax reproduce`` for this run (the model ``apply_fn(params, x)``, described by
  ``model_info``); returns their file names."""
  from ..common import figures  # matplotlib: the [experiments] extra

  m, pairwise = int(np.prod(x.shape[1:])), config.pairwise
  per_iteration = 2 if pairwise else 1
  budgets = sorted({int(k) for k in metrics.pixels_to_iterations(PAPER_PIXELS, pairwise=pairwise)
                    if 0 < k < max_iter} | {max_iter})
  sweep = metrics.budget_sweep(r.success, r.iterations, r.trace, budgets)
  points = [dict(pixels=per_iteration * k, **metrics.summary(sweep.success[j], sweep.n_changed[j], m))
            for j, k in enumerate(budgets)]
  name = f"{model_info.get('arch', 'model')} {model_info.get('activation', '')}".strip()
  names = [figures.budget_curves({name: points}, per_iteration * max_iter, m,
                                 os.path.join(config.out, "success_vs_budget.png"),
                                 paper=config.jsma_options() == AttackConfig().jsma_options()),
           figures.pair_success(metrics.pair_matrix(r.success, labels, targets, num_classes),
                                os.path.join(config.out, "pairs.png"), f"{name}: success per class pair")]
  # Figure 1 of the paper: the first source of each class towards every target (blank where not attacked).
  grid = np.zeros((num_classes, num_classes) + x.shape[1:], np.float32)
  ok = np.ones((num_classes, num_classes), bool)
  for i in range(len(targets) - 1, -1, -1):  # backwards: the first attack of each pair stays
    s_, t_ = int(labels[i]), int(targets[i])
    grid[s_, t_], ok[s_, t_], grid[s_, s_] = np.asarray(r.x_adv[i]), bool(r.success[i]), x[i]
  names.append(figures.adversarial_grid({"grid": grid, "grid_success": ok}, "", os.path.join(
      config.out, "adversarial_grid.png"), model=name))
  pick = np.linspace(0, len(targets) - 1, min(3, len(targets))).astype(int)
  _, a, b = jsma_jax.target_rows(apply_fn, x[pick], targets[pick], params=params)
  picture = {"ex_x": x[pick], "ex_adv": np.asarray(r.x_adv)[pick], "ex_source": labels[pick],
             "ex_target": targets[pick], "ex_success": np.asarray(r.success)[pick],
             "ex_saliency": np.asarray(jsma_jax.single_feature_saliency(np.asarray(a), np.asarray(b)))}
  names.append(figures.saliency_examples(picture, "", os.path.join(config.out, "saliency.png"), model=name))
  return names


def _predict(apply_fn, params, x: np.ndarray, batch_size: int) -> np.ndarray:
  """``argmax`` of the logits of every input, in batches of one compiled shape."""
  b = min(batch_size, len(x))
  logits = jax.jit(apply_fn)
  out = []
  for lo in range(0, len(x), b):
    xb = x[lo:lo + b]
    pad = b - len(xb)
    xb = np.concatenate([xb, np.repeat(xb[:1], pad, 0)]) if pad else xb
    out.append(np.asarray(logits(params, xb).argmax(-1))[:b - pad])
  return np.concatenate(out)


def _torch_program(path: str, example_nhwc: np.ndarray):
  """``(apply_fn, params, meta)`` of a ``torch.export`` file, taking the NHWC images of the data sets."""
  from jsma_jax.torch import from_pt2

  bridge, params = from_pt2(path, np.ascontiguousarray(example_nhwc.transpose(0, 3, 1, 2)))
  apply_fn = lambda params, x: bridge(params, jnp.transpose(x, (0, 3, 1, 2)))
  return apply_fn, params, {"model": {"arch": f"torch.export program {os.path.basename(path)} (NCHW)"}}


def main(argv=None) -> dict:
  """Runs the attack of a command line and writes its folder; returns ``results``."""
  argv = sys.argv[1:] if argv is None else list(argv)
  config = parse_args(argv)  # before the import below, so that --help needs the core only
  from jsma_jax.models import as_logits_fn  # flax: the [experiments] extra

  command = PROG + " " + " ".join(shlex.quote(a) for a in argv)
  if config.source == "idx":
    cli_args.require_folder(config.data_dir, "--data-dir", "the MNIST IDX files")
  x_all, y_all = cli_args.load_data(config.name, config.source, config.split, config.data_dir)
  if config.checkpoint.endswith(".pt2") and os.path.isfile(config.checkpoint):
    with cli_args.flag_error("--checkpoint", config.checkpoint):  # the file cannot be attacked: why, in one line
      apply_fn, params, meta = _torch_program(config.checkpoint, x_all[:1])
  else:
    net, meta = cli_args.load_model(config.checkpoint)
    apply_fn, params = as_logits_fn(net)
  writable_folder(config.out)  # before any attack (the arguments checked first): an unwritable --out fails now
  num_classes = int(jax.eval_shape(apply_fn, params, x_all[:1]).shape[-1])
  predicted = _predict(apply_fn, params, x_all, config.batch_size)
  accuracy = float((predicted == y_all).mean())
  order = np.random.default_rng(config.seed).permutation(len(y_all))
  if not config.include_misclassified:
    order = order[predicted[order] == y_all[order]]
  idx = order[:config.n_sources]
  short = None
  if len(idx) < config.n_sources:  # said, not quietly fewer
    short = (f"--sources {config.n_sources}: the {config.split} set has only {len(idx)} sources"
             + ("" if config.include_misclassified else
                f" the model classifies correctly (of {len(y_all)}; --include-misclassified attacks them all)")
             + f", so {len(idx)} are attacked")
    print(f"{PROG}: {short}", flush=True)
  if config.targets == "all":
    e = jsma_jax.all_other_targets(x_all[idx], y_all[idx], num_classes)
    x, targets, labels, src = (np.asarray(e.x), np.asarray(e.targets), np.asarray(e.labels),
                               idx[np.asarray(e.source_index)])
  else:
    x, labels, src = x_all[idx], y_all[idx], idx
    targets = np.asarray(jsma_jax.random_targets(jax.random.key(config.seed), labels, num_classes))
  print(f"{PROG}: {len(targets)} attacks on {len(idx)} sources ({config.name} {config.split}, "
        f"model accuracy {accuracy:.4f})", flush=True)
  start = time.perf_counter()
  r = jsma_jax.attack_dataset(apply_fn, x, targets, params=params, chunk_size=config.batch_size,
                              description="attack", record_trace=True, **config.jsma_options())
  seconds = time.perf_counter() - start
  m = int(np.prod(x.shape[1:]))
  success, n_changed, reason = np.asarray(r.success), np.asarray(r.n_changed), np.asarray(r.stop_reason)
  results = {
      "command": command, "config": dataclasses.asdict(config), "jsma_options": config.jsma_options(),
      "max_iter": config.max_iter or jsma_jax.max_iterations(m, config.gamma, pairwise=config.pairwise),
      "model": meta.get("model", {}), "checkpoint_test_accuracy": meta.get("test_accuracy"),
      "dataset": {"name": config.name, "source": config.source, "data_dir": config.data_dir,
                  "split": config.split, "size": len(y_all), "shape": list(x.shape[1:]),
                  "num_features": m, "num_classes": num_classes, "accuracy": accuracy,
                  "n_sources": len(idx), "n_sources_asked": config.n_sources, "short": short},
      "environment": environment(), "seed": config.seed, "attack_seconds": seconds,
      "summary": metrics.summary(success, n_changed, m),
      "stop_reasons": {jsma_jax.StopReason(int(c)).name: int((reason == c).sum()) for c in np.unique(reason)},
      "pairs": {"success_rate": metrics.pair_matrix(success, labels, targets, num_classes),
                "attack_count": metrics.pair_matrix(success, labels, targets, num_classes, reduce="count")},
  }
  atomic_write_npz(os.path.join(config.out, "attacks.npz"), {
      "source_index": src.astype(np.int32), "source": labels.astype(np.int32), "target": targets.astype(np.int32),
      "success": success, "n_changed": n_changed, "iterations": np.asarray(r.iterations),
      "stop_reason": reason, "x_adv": np.asarray(r.x_adv),
      "x_adv_layout": np.array(X_ADV_LAYOUT)})  # said in the file: a .pt2 model's own layout is NCHW
  results["figures"] = _figures(config, r, x, labels, targets, apply_fn, params, meta.get("model", {}),
                                results["max_iter"], num_classes)
  atomic_write_json(os.path.join(config.out, "results.json"), results)
  atomic_write_bytes(os.path.join(config.out, "report.md"), _report(results).encode())
  s = results["summary"]
  print(f"success {s['success_rate']:.4f}, distortion (successful) {s['distortion_successful']:.4f}, "
        f"stop reasons {results['stop_reasons']}; wrote {config.out}/results.json, attacks.npz (x_adv {X_ADV_LAYOUT}), "
        f"report.md and {len(results['figures'])} figures ({', '.join(results['figures'])})")
  return results


if __name__ == "__main__":
  from ..cli import run

  sys.exit(run("attack", sys.argv[1:]))
