"""The reproduction study: data, models, attacks, measures, stage by stage.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings* (EuroS&P
2016), Sections IV and V. Every source is attacked towards the 9 other classes. Each
piece of work is a stage of :mod:`experiments.stages` (atomic, resumable);
:func:`run_study` returns the aggregated results that :mod:`experiments.reproduce`
writes to ``results.json`` with the figures and the report.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Any, Callable

import jax
import numpy as np

from jsma_jax import metrics
from jsma_jax.models.checkpoint import cpu_model
from experiments.attacks import attack_stage, distance_stage, picture_stage
from experiments.config import NUM_CLASSES, NUM_FEATURES, PAPER_PIXELS, SPLITS, VARIANTS  # noqa: F401
from experiments.config import StudyConfig, Variant  # noqa: F401
from experiments.inputs import load_model, load_splits, model_stage, source_indices  # noqa: F401
from experiments.stages import Stages

# ----------------------------------------------------------------------- the study


def environment() -> dict:
  """JAX version, backend, device and host, recorded with every run."""
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "backend": jax.default_backend(), "device": str(dev),
          "device_kind": getattr(dev, "device_kind", ""), "device_count": jax.device_count(),
          "python": platform.python_version(), "platform": platform.platform(),
          "cpu_count": os.cpu_count(), "processor": cpu_model()}


def pair_measures(config: StudyConfig, attack: tuple[dict, dict], distance: tuple[dict, dict]) -> dict:
  """Per-pair success, hardness over the paper's grid, mean distance and their correlation."""
  _, arr = attack
  grid = [int(i) for i in metrics.pixels_to_iterations(config.pixels)]
  rows = [list(arr["sweep_iterations"]).index(m) for m in grid]
  sweep = metrics.Sweep(np.asarray(grid), arr["sweep_success"][rows], arr["sweep_n_changed"][rows])
  h, tau, eps = metrics.hardness_matrix(sweep, arr["source"], arr["target"], NUM_CLASSES, NUM_FEATURES)
  k = list(arr["sweep_iterations"]).index(config.table_iterations)
  table_tau, table_eps = metrics.pair_success_distortion(
      arr["sweep_success"][k], arr["sweep_n_changed"][k], arr["source"], arr["target"], NUM_CLASSES, NUM_FEATURES)
  dsum, darr = distance
  mean_a = metrics.pair_matrix(darr["distance"], darr["source"], darr["target"], NUM_CLASSES)
  count = metrics.pair_matrix(arr["success"], arr["source"], arr["target"], NUM_CLASSES, reduce="count")
  return {
      "grid_pixels": list(config.pixels),
      "success_count": metrics.pair_matrix(arr["sweep_success"][k], arr["source"], arr["target"],
                                           NUM_CLASSES, reduce="sum"),
      "attack_count": count,
      "success_rate": table_tau,
      "distortion_successful": table_eps,
      "hardness": h,
      "tau": tau,
      "eps": eps,
      "mean_distance": mean_a,
      "robustness": dsum["robustness"],
      "spearman_distance_hardness": metrics.spearman(mean_a, h),
  }


def run_study(config: StudyConfig, log: Callable[[str], None] = print) -> tuple[dict, dict]:
  """Runs (or resumes) every stage; returns ``(results, arrays)`` for the report and figures."""
  start = time.perf_counter()
  stages = Stages(config.out, log)
  data, dataset = load_splits(config)
  log(f"data: {dataset['sizes']} ({dataset['source']})")
  results: dict[str, Any] = {"config": dataclasses.asdict(config), "dataset": dataset,
                             "environment": environment(), "seed": config.seed,
                             "models": {}, "rows": [], "pairs": {}, "picture": {}, "stage_seconds": {}}
  arrays: dict[str, Any] = {"pictures": {}, "sweeps": {}}
  models = {}
  for act in config.activations:
    models[act] = model_stage(config, stages, data, act)
    results["models"][act] = models[act][2]
    log(f"model {act}: accuracy {models[act][2]['accuracy']}")
  main_split = "test" if "test" in config.splits else config.splits[0]
  attacks = {}
  for act, variant, split, n in config.rows():
    attacks[act, variant, split] = attack_stage(config, stages, data, models[act], act, variant, split, n)
    s = attacks[act, variant, split][0]
    log(f"{act}/{variant}/{split}: success {s['success_rate']:.4f}, distortion (successful) "
        f"{s['distortion_successful']:.4f}, {s['attacks_per_second']:.1f} attacks/s")
    results["rows"].append({k: v for k, v in s.items() if k != "sweep"})
  for act, variant, split, n in config.rows():
    if variant != "paper" and (act, "paper", split) in attacks:  # the paper row on the same sources
      arr = attacks[act, "paper", split][1]
      keep = np.isin(arr["source_index"], attacks[act, variant, split][1]["source_index"])
      k = list(arr["sweep_iterations"]).index(config.table_iterations)
      results.setdefault("paper_on_subsets", {})[f"{act}/{variant}/{split}"] = metrics.summary(
          arr["sweep_success"][k][keep], arr["sweep_n_changed"][k][keep], NUM_FEATURES)
  for act in config.activations:
    dist = distance_stage(config, stages, data, models[act], act, main_split)
    results["pairs"][act] = pair_measures(config, attacks[act, "paper", main_split], dist)
    results["pairs"][act]["split"] = main_split
    results.setdefault("sweeps", {})[act] = attacks[act, "paper", main_split][0]["sweep"]
    pic, pic_arr = picture_stage(config, stages, data, models[act], act, main_split)
    results["picture"][act] = pic
    arrays["pictures"][act] = pic_arr
  for name in sorted(os.listdir(stages.folder)):
    if name.endswith(".json"):
      results["stage_seconds"][name[:-5]] = stages.seconds(name[:-5])
  results["total_attack_seconds"] = sum(r["attack_seconds"] for r in results["rows"])
  results["total_attacks"] = sum(r["n"] for r in results["rows"])
  results["this_process_seconds"] = time.perf_counter() - start
  results["stages_ran"], results["stages_loaded"] = stages.ran, stages.loaded
  return results, arrays
