"""The zoo's attacks, measures and report (see :mod:`.zoo`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

import jsma_jax
from jsma_jax import metrics

from ..common.environment import environment
from ..common.sources import seeded_sources
from ..common.stages import Stages, atomic_write_bytes, atomic_write_json
from ..common.stats import format_p, mcnemar_p, percent
from .zoo import PAIRS

# Flax (jsma_jax.models) and matplotlib: imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.


class Outcome(NamedTuple):
  """One recipe's attacks at one theta, over the zoo's sources x 9 targets."""

  success: np.ndarray  # bool [B]
  n_changed: np.ndarray  # int16 [B]
  stop_reason: np.ndarray  # int8 [B]


class ModelMeasures(NamedTuple):
  """What a model's test set says about it, besides its accuracy."""

  test_accuracy: float
  mean_margin: float  # mean over test images of the top logit minus the runner-up
  mean_confidence: float  # mean over test images of the largest softmax probability


class RecipeRow(NamedTuple):
  """One line of the zoo's table."""

  name: str
  description: str
  measures: ModelMeasures
  validation_accuracy: float | None
  train_seconds: float
  outcomes: dict  # theta -> Outcome


def model_measures(apply_fn, params, test) -> ModelMeasures:
  """Accuracy, mean logit margin and mean softmax confidence on the test set."""
  forward = jax.jit(apply_fn)  # one wrapper for every batch
  logits = [np.asarray(forward(params, test[0][lo:lo + 1000])) for lo in range(0, len(test[1]), 1000)]
  z = np.concatenate(logits).astype(np.float64)
  top2 = np.sort(z, axis=1)[:, -2:]
  p = np.exp(z - z.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  return ModelMeasures(float((z.argmax(1) == test[1]).mean()), float((top2[:, 1] - top2[:, 0]).mean()),
                       float(p.max(1).mean()))


def _chunks(config, n_test: int) -> list[np.ndarray]:
  idx = seeded_sources(n_test, config.n_sources, config.seed, 2)  # 2: the test set's index in SPLITS
  return [idx[lo:lo + config.chunk_sources] for lo in range(0, len(idx), config.chunk_sources)]


def attack_stage_names(config, trained, theta: float, n_test: int = 10000) -> list[str]:
  """The stage names of one recipe's attacks at ``theta``."""
  return [f"attack_{trained.recipe.name}_theta{theta:+g}_c{c:02d}" for c in range(len(_chunks(config, n_test)))]


def attack_stage(stages: Stages, config, trained, apply_fn, params, test, theta: float) -> Outcome:
  """Every zoo source towards its 9 other classes at ``theta``, chunk by chunk."""
  return attack_sources(stages, attack_stage_names(config, trained, theta, len(test[1])),
                        {"recipe": trained.recipe.to_dict()}, apply_fn, params, test,
                        _chunks(config, len(test[1])), theta=theta, gamma=config.gamma,
                        batch_size=config.batch_size, description=f"{trained.recipe.name} theta={theta:+g}")


def attack_sources(stages: Stages, names: list[str], key: dict, apply_fn, params, pool, chunks,
                   *, theta: float, gamma: float, batch_size: int, description: str) -> Outcome:
  """The paper's attack (pairs, logits, domain all) on each source of ``pool`` chosen by
  ``chunks`` (index arrays, one stage each, named by ``names``) towards its 9 other
  classes; ``key`` (what the model depends on) goes into each stage's key."""
  parts = []
  for name, chunk in zip(names, chunks, strict=True):

    def work(chunk=chunk):
      e = jsma_jax.all_other_targets(pool[0][chunk], pool[1][chunk], 10)
      r = jsma_jax.attack_dataset(apply_fn, np.asarray(e.x), np.asarray(e.targets), params=params,
                                  chunk_size=batch_size, theta=theta, gamma=gamma,
                                  initial_domain="all", description=description)
      return {"n": len(e.targets)}, {
          "success": np.asarray(r.success), "n_changed": np.asarray(r.n_changed).astype(np.int16),
          "stop_reason": np.asarray(r.stop_reason).astype(np.int8)}

    _, arrays = stages.run(name, {**key, "theta": theta, "gamma": gamma, "sources": chunk,
                                  "initial_domain": "all"}, work)
    parts.append(Outcome(arrays["success"], arrays["n_changed"], arrays["stop_reason"]))
  return Outcome(*(np.concatenate([getattr(p, f) for p in parts]) for f in Outcome._fields))


def run(config, models, test, log: Callable[[str], None], pairs=None) -> dict:
  """Attacks every zoo model (or loads the stages) and writes the report."""
  from jsma_jax.models import as_logits_fn, load_checkpoint

  stages = Stages(config.out, log)
  loaded, measures = [], []
  for trained in models:
    model, _ = load_checkpoint(trained.path)
    apply_fn, params = as_logits_fn(model)
    loaded.append((apply_fn, params))
    m, _ = stages.run(f"measures_{trained.recipe.name}", {"recipe": trained.recipe.to_dict()},
                      lambda apply_fn=apply_fn, params=params: (model_measures(apply_fn, params, test)._asdict(), None))
    measures.append(ModelMeasures(**m))
  outcomes = [{} for _ in models]
  for theta in config.thetas:  # one theta over every recipe first: a column of the table at a time
    for trained, (apply_fn, params), out in zip(models, loaded, outcomes):
      if config.stage == "report" and not stages.done(attack_stage_names(config, trained, theta)):
        continue
      out[theta] = attack_stage(stages, config, trained, apply_fn, params, test, theta)
      log(f"{trained.recipe.name} theta={theta:+g}: success {out[theta].success.mean():.4f}, "
          f"distortion {metrics.mean_distortion(out[theta].n_changed, 784, out[theta].success):.4f}")
  rows = [RecipeRow(t.recipe.name, t.recipe.describe(), m, t.info["validation_accuracy"],
                    t.info["train_seconds"], o) for t, m, o in zip(models, measures, outcomes)]
  results = summarize(config, rows, pairs)
  attack_names = [n for t in models for theta in config.thetas for n in attack_stage_names(config, t, theta)]
  results["wall_seconds"] = {  # as each stage recorded it, whichever invocation ran it
      "training": float(sum(t.info["train_seconds"] for t in models)),
      "attacks": float(sum(stages.seconds(n) for n in attack_names if stages.done([n]))),
  }
  atomic_write_json(os.path.join(config.out, "results.json"), results)
  figure(rows, os.path.join(config.out, "zoo.png"))
  atomic_write_bytes(os.path.join(config.out, "report.md"), render(config, results).encode())
  log(f"wrote {config.out}/results.json, report.md and zoo.png")
  return results


def summarize(config, rows: list[RecipeRow], pairs=None) -> dict:
  """Every number of the zoo: the table, the paired comparisons (``pairs``: triples
  ``(factor, recipe, changed recipe)``, default ``zoo.PAIRS``), the rank correlations."""
  table = []
  for r in rows:
    entry = {"recipe": r.name, "description": r.description, **r.measures._asdict(),
             "validation_accuracy": r.validation_accuracy, "train_seconds": r.train_seconds}
    for theta, o in r.outcomes.items():
      entry[f"theta{theta:+g}"] = metrics.summary(o.success, o.n_changed, 784)
    table.append(entry)
  by_name = {r.name: r for r in rows}
  compared = []
  for factor, a, b in (PAIRS if pairs is None else pairs):
    if a not in by_name or b not in by_name or not by_name[a].outcomes:
      continue
    ra, rb = by_name[a], by_name[b]
    item = {"factor": factor, "from": a, "to": b,
            "test_accuracy": [ra.measures.test_accuracy, rb.measures.test_accuracy],
            "mean_margin": [ra.measures.mean_margin, rb.measures.mean_margin]}
    for theta in config.thetas:
      if theta not in ra.outcomes or theta not in rb.outcomes:
        continue
      oa, ob = ra.outcomes[theta], rb.outcomes[theta]
      item[f"theta{theta:+g}"] = {
          "success": [float(oa.success.mean()), float(ob.success.mean())],
          "distortion_successful": [metrics.mean_distortion(oa.n_changed, 784, oa.success),
                                    metrics.mean_distortion(ob.n_changed, 784, ob.success)],
          "only_from": int((oa.success & ~ob.success).sum()), "only_to": int((~oa.success & ob.success).sum()),
          "mcnemar_p": mcnemar_p(oa.success, ob.success)}
    compared.append(item)
  correlations = {}
  for theta in config.thetas:
    attacked = [r for r in rows if theta in r.outcomes]
    if len(attacked) >= 3:
      succ = np.array([r.outcomes[theta].success.mean() for r in attacked])
      for name in ModelMeasures._fields:
        vals = np.array([getattr(r.measures, name) for r in attacked])
        correlations[f"theta{theta:+g}/success~{name}"] = metrics.spearman(vals, succ)
      correlations[f"theta{theta:+g}/n_recipes"] = len(attacked)
  return {"config": dataclasses.asdict(config), "table": table, "pairs": compared,
          "spearman": correlations, "n_attacks_per_theta": int(config.n_sources * 9),
          "environment": environment()}


def figure(rows: list[RecipeRow], path: str) -> None:
  """Success (theta = +1 and -1) per recipe beside its mean logit margin."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  attacked = [r for r in rows if 1.0 in r.outcomes]
  if not attacked:
    return
  fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
  names = [r.name for r in attacked]
  pos = np.arange(len(attacked))
  for k, theta in enumerate((1.0, -1.0)):
    a.bar(pos + (k - 0.5) * 0.4, [100 * r.outcomes[theta].success.mean() if theta in r.outcomes else 0
                                  for r in attacked], 0.4, label=f"theta = {theta:+g}")
  a.set_xticks(pos, names, rotation=40, ha="right", fontsize=8)
  a.set(ylabel="targeted success (%)", title="JSMA success per training recipe", ylim=(0, 118))
  a.legend(loc="upper center", ncol=2)  # above the bars, which reach at most 100
  for theta, marker in ((1.0, "o"), (-1.0, "s")):
    have = [r for r in attacked if theta in r.outcomes]
    if have:
      b.scatter([r.measures.mean_margin for r in have], [100 * r.outcomes[theta].success.mean() for r in have],
                marker=marker, label=f"theta = {theta:+g}")
  for r in attacked:
    b.annotate(r.name, (r.measures.mean_margin, 100 * r.outcomes[1.0].success.mean()), fontsize=6)
  b.set(xlabel="mean logit margin on the test set (top-1 minus runner-up)", ylabel="success (%)",
        title="success against the model's logit margin")
  b.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def table_lines(results: dict) -> list[str]:
  """The zoo's table, in Markdown (also shown beside the reproduction's report)."""
  lines = ["| recipe | how | test acc | val acc | margin | confidence | "
           "success +1 | distortion +1 | success -1 | distortion -1 |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for t in results["table"]:
    p, m = t.get("theta+1", {}), t.get("theta-1", {})
    lines.append(f"| {t['recipe']} | {t['description']} | {percent(t['test_accuracy'])} | "
                 f"{percent(t['validation_accuracy'])} | {t['mean_margin']:.2f} | {t['mean_confidence']:.4f} | "
                 f"{percent(p.get('success_rate'))} | {percent(p.get('distortion_successful'))} | "
                 f"{percent(m.get('success_rate'))} | {percent(m.get('distortion_successful'))} |")
  return lines


def render(config, results: dict) -> str:
  """``report.md``."""
  env = results["environment"]
  n = results["n_attacks_per_theta"]
  lines = [
      "# Model zoo: how the training recipe moves JSMA's success",
      "",
      f"Every recipe trains the paper's LeNet (conv 20@5x5, pool, conv 50@5x5, pool, dense 500, "
      f"dense 10) on full MNIST. Each model is attacked with the paper's settings (pairs, logits "
      f"Jacobian, all features in the initial domain, gamma = {config.gamma:.1%}) on the same "
      f"{config.n_sources} test sources x 9 targets ({n} attacks per theta); success is argmax = target, "
      "distortion is the share of the 784 pixels changed, over successful attacks. Margin: the mean over "
      "the 10,000 test images of the top logit minus the runner-up; confidence: the mean largest softmax "
      "probability. Recipes with the 50k/10k split report validation accuracy on the 10,000 held out.",
      "",
  ] + table_lines(results)
  lines += ["", "Paper (Papernot et al. 2016): 97.10% success, 4.02% distortion (theta = +1); "
            "64.7% success (theta = -1).", "", "![zoo](zoo.png)", "",
            "## One factor changed at a time", "",
            "Each pair trains with the same seed and differs in the one factor named. p: exact McNemar test "
            "on the paired outcomes of the same attacks (the counts of attacks that succeed against one model "
            "of the pair and not the other are in results.json).", "",
            "| factor | from -> to | test acc | success +1 | p (+1) | success -1 | p (-1) |",
            "|---|---|---|---|---|---|---|"]
  def cells(d):
    if not d:
      return "not run | -"
    return f"{percent(d['success'][0])} -> {percent(d['success'][1])} | {format_p(d['mcnemar_p'])}"

  for item in results["pairs"]:
    lines.append(
        f"| {item['factor']} | {item['from']} -> {item['to']} | {percent(item['test_accuracy'][0])} -> "
        f"{percent(item['test_accuracy'][1])} | {cells(item.get('theta+1'))} | {cells(item.get('theta-1'))} |")
  lines += ["", "## Rank correlations over the zoo", "",
            "Spearman's rho between each model measure and success, across the recipes:", "",
            "| | rho |", "|---|---|"]
  for k, v in results["spearman"].items():
    if not k.endswith("n_recipes"):
      lines.append(f"| {k} | {v:+.2f} |")
  wall = results.get("wall_seconds")
  if wall:
    lines += ["", f"Wall time, as the stages recorded it: training {wall['training'] / 60:.1f} min (all recipes), "
              f"attacks {wall['attacks'] / 60:.1f} min. A model retrained on another machine "
              "need not be bit-identical (XLA:CPU's kernels depend on the processor); each checkpoint records "
              "its machine (`software` in its metadata)."]
  lines += ["", f"Machine: {env['processor']} ({env['cpu_count']} CPUs), JAX {env['jax']} on "
            f"{env['backend']}. Command: `jsma-jax zoo --data-dir {config.data_dir} --out {config.out} --thetas "
            f"{','.join(f'{t:g}' for t in config.thetas)}`"
            + ("" if all(t in results["table"][0] for t in ("theta+1", "theta-1")) else
               "; the theta = -1 column is not run yet (`--thetas 1,-1` resumes and adds it)") + ".", ""]
  return "\n".join(lines)
