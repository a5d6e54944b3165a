"""The reproduction study: data, models, attacks, measures, stage by stage.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings* (EuroS&P
2016), Sections IV and V. Every source is attacked towards every other class. Each piece
of work is a stage of :mod:`..common.stages` (atomic, resumable); :func:`run_study` returns the
aggregated results that :mod:`..commands.reproduce` writes to ``results.json`` with the figures
and the report.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jsma_jax import metrics

from ..common.environment import environment
from ..common.stages import Stages
from .attack_stages import Context, RowResult, attack_stage, distance_stage, picture_stage
from .config import StudyConfig
from .inputs import load_data, model_stage


class StudyResult(NamedTuple):
  """What a study returns: ``results`` (``results.json``) and the arrays the figures draw."""

  results: dict
  pictures: dict[str, dict[str, np.ndarray]]  # per activation: the picture stage's arrays


def pair_measures(ctx: Context, row: RowResult, distance: tuple[dict, dict]) -> dict:
  """Per-pair success, hardness over the paper's grid, mean distance and their correlation."""
  b, n, m = ctx.budgets, ctx.data.num_classes, ctx.data.num_features
  a = row.attacks
  grid = b.grid_indices
  sweep = metrics.Sweep(np.asarray(b.grid), a.sweep_success[grid], a.sweep_n_changed[grid])
  h, tau, eps = metrics.hardness_matrix(sweep, a.source, a.target, n, m)
  success, n_changed = a.table(b)
  table_tau, table_eps = metrics.pair_success_distortion(success, n_changed, a.source, a.target, n, m)
  dsum, darr = distance
  mean_a = metrics.pair_matrix(darr["distance"], darr["source"], darr["target"], n)
  return {
      "grid_pixels": list(ctx.config.pixels),
      "success_count": metrics.pair_matrix(success, a.source, a.target, n, reduce="sum"),
      "attack_count": metrics.pair_matrix(a.success, a.source, a.target, n, reduce="count"),
      "success_rate": table_tau,
      "distortion_successful": table_eps,
      "hardness": h,
      "tau": tau,
      "eps": eps,
      "mean_distance": mean_a,
      "robustness": dsum["robustness"],
      "spearman_distance_hardness": metrics.spearman(mean_a, h),
  }


def _reproduction_on_subsets(ctx: Context, rows: list[RowResult]) -> dict:
  """The reproduction row restricted to each variant's sources (same attacks, compared)."""
  main = {(r.row.activation, r.row.split): r for r in rows if r.row.is_reproduction}
  out = {}
  for r in rows:
    ref = main.get((r.row.activation, r.row.split))
    if r.row.is_reproduction or ref is None:
      continue
    keep = np.isin(ref.attacks.source_index, r.attacks.source_index)
    success, n_changed = ref.attacks.table(ctx.budgets)
    out[r.row.name] = metrics.summary(success[keep], n_changed[keep], ctx.data.num_features)
  return out


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> StudyResult:
  """Runs (or resumes) every stage; returns the results and the figures' arrays."""
  start = time.perf_counter()
  stages = Stages(config.out, log)
  data = load_data(config)
  log(f"data: {data.info['sizes']} ({data.info['source']}), shape {data.shape}, {data.num_classes} classes")
  ctx = Context(config, stages, data, config.budgets(data.num_features))
  results: dict[str, Any] = {"config": dataclasses.asdict(config), "dataset": data.info,
                             "environment": environment(), "seed": config.seed,
                             "models": {}, "rows": [], "pairs": {}, "picture": {}, "stage_seconds": {}}
  models = {}
  for act in config.activations:
    models[act] = model_stage(config, stages, data, act)
    results["models"][act] = models[act].info
    log(f"model {act}: accuracy {models[act].info['accuracy']}")
  rows = []
  for row in config.rows():
    rows.append(attack_stage(ctx, models[row.activation], row))
    s = rows[-1].summary
    log(f"{row.name}: success {s['success_rate']:.4f}, distortion (successful) "
        f"{s['distortion_successful']:.4f}, {s['attacks_per_second']:.1f} attacks/s")
    results["rows"].append({k: v for k, v in s.items() if k != "sweep"})
  subsets = _reproduction_on_subsets(ctx, rows)
  if subsets:
    results["paper_on_subsets"] = subsets
  pictures = {}
  main = {r.row.activation: r for r in rows if r.row.is_reproduction and r.row.split == config.main_split}
  for act, model in models.items():
    results["pairs"][act] = pair_measures(ctx, main[act], distance_stage(ctx, model))
    results["pairs"][act]["split"] = config.main_split
    results.setdefault("sweeps", {})[act] = main[act].summary["sweep"]
    results["picture"][act], pictures[act] = picture_stage(ctx, model)
  for name in sorted(os.listdir(stages.folder)):
    if name.endswith(".json"):
      results["stage_seconds"][name[:-5]] = stages.seconds(name[:-5])
  results["total_attack_seconds"] = sum(r["attack_seconds"] for r in results["rows"])
  results["total_attacks"] = sum(r["n"] for r in results["rows"])
  results["this_process_seconds"] = time.perf_counter() - start
  results["stages_ran"], results["stages_loaded"] = stages.ran, stages.loaded
  return StudyResult(results, pictures)
