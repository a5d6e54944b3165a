"""The attack stages: rows of the table (in chunks), adversarial distance, the picture."""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import numpy as np

from jsma_jax import all_other_targets
from jsma_jax import jsma
from jsma_jax import max_iterations
from jsma_jax import metrics
from jsma_jax import single_feature_saliency
from jsma_jax import target_rows
from experiments.config import NUM_CLASSES, NUM_FEATURES, VARIANTS, StudyConfig
from experiments.inputs import source_indices, stages_key_model
from experiments.stages import Stages

# --------------------------------------------------------------------------- attacks


def run_batched(apply_fn, params, x: np.ndarray, targets: np.ndarray, batch_size: int,
                log: Callable[[str], None], tag: str, **kwargs) -> dict[str, np.ndarray]:
  """``jsma`` over ``x`` in batches of one compiled shape (the last one padded)."""
  n = len(targets)
  b = min(batch_size, n)
  out: dict[str, list] = {k: [] for k in ("success", "iterations", "n_changed", "stop_reason",
                                          "predicted", "trace")}
  start = time.perf_counter()
  for lo in range(0, n, b):
    xb, tb = x[lo:lo + b], targets[lo:lo + b]
    pad = b - len(tb)
    if pad:
      xb = np.concatenate([xb, np.repeat(xb[:1], pad, 0)])
      tb = np.concatenate([tb, np.repeat(tb[:1], pad, 0)])
    r = jax.device_get(jsma(apply_fn, xb, tb, params=params, **kwargs))
    for k in out:
      v = getattr(r, k)
      if v is not None:
        out[k].append(np.asarray(v)[:b - pad])
    done = min(lo + b, n)
    rate = done / (time.perf_counter() - start)
    log(f"  {tag}: {done}/{n} attacks, {rate:.1f} attacks/s, eta {(n - done) / rate:.0f} s")
  return {k: np.concatenate(v) for k, v in out.items() if v}


def attack_stage(config: StudyConfig, stages: Stages, data: dict, model, activation: str,
                 variant_name: str, split: str, n_sources: int) -> tuple[dict, dict]:
  """Every source of the row towards its 9 other classes, in chunks of
  ``chunk_sources`` sources (one stage each); the paper row also sweeps the budget
  (one run at the largest budget with the L0 trace).

  Returns:
    ``(summary, arrays)`` of the whole row (chunks concatenated).
  """
  apply_fn, params, _ = model
  variant = VARIANTS[variant_name]
  sweep = variant_name == "paper"
  x_all, y_all = data[split]
  idx = source_indices(config, split, len(y_all))[:n_sources]
  name = f"attack_{activation}_{variant_name}_{split}"
  if sweep:
    max_iter = max(config.sweep_iterations)
  else:
    max_iter = max_iterations(NUM_FEATURES, config.gamma, pairwise=variant.pairwise)

  def chunk_work(chunk, tag):
    def work():
      e = all_other_targets(x_all[chunk], y_all[chunk], NUM_CLASSES)
      src = np.asarray(e.source_index)
      start = time.perf_counter()
      r = run_batched(apply_fn, params, np.asarray(e.x), np.asarray(e.targets), config.batch_size,
                      stages.log, tag, theta=variant.theta, pairwise=variant.pairwise,
                      probabilities=variant.probabilities, initial_domain=variant.initial_domain,
                      max_iter=max_iter, record_trace=sweep)
      arrays = {"source_index": chunk[src].astype(np.int32), "source": np.asarray(e.labels, np.int32),
                "target": np.asarray(e.targets, np.int32), "success": r["success"],
                "iterations": r["iterations"].astype(np.int16), "n_changed": r["n_changed"].astype(np.int16),
                "stop_reason": r["stop_reason"].astype(np.int8)}
      if sweep:
        s = metrics.budget_sweep(r["success"], r["iterations"], r["trace"], config.sweep_iterations)
        arrays.update(sweep_iterations=np.asarray(config.sweep_iterations, np.int16),
                      sweep_success=s.success, sweep_n_changed=s.n_changed.astype(np.int16))
      return {"attack_seconds": time.perf_counter() - start, "n": int(len(src))}, arrays
    return work

  parts, seconds = [], 0.0
  for c, lo in enumerate(range(0, len(idx), config.chunk_sources)):
    chunk = idx[lo:lo + config.chunk_sources]
    key = {"model": stages_key_model(config, activation), "variant": dataclasses.asdict(variant),
           "split": split, "sources": chunk, "max_iter": max_iter,
           "sweep": config.sweep_iterations if sweep else None}
    tag = f"{name}_c{c:03d}"
    summary, arrays = stages.run(tag, key, chunk_work(chunk, tag))
    parts.append(arrays)
    seconds += summary["attack_seconds"]
  arr = {k: np.concatenate([p[k] for p in parts], axis=-1 if k.startswith("sweep_") and k != "sweep_iterations" else 0)
         for k in parts[0] if k != "sweep_iterations"}
  table_success, table_l0 = arr["success"], arr["n_changed"]
  summary = {}
  if sweep:
    arr["sweep_iterations"] = parts[0]["sweep_iterations"]
    k = config.sweep_iterations.index(config.table_iterations)
    table_success, table_l0 = arr["sweep_success"][k], arr["sweep_n_changed"][k]
    summary["sweep"] = [dict(iterations=int(m), pixels=2 * int(m), gamma=2 * int(m) / NUM_FEATURES,
                             **metrics.summary(arr["sweep_success"][j], arr["sweep_n_changed"][j], NUM_FEATURES))
                        for j, m in enumerate(config.sweep_iterations)]
  n = len(arr["success"])
  summary.update(metrics.summary(table_success, table_l0, NUM_FEATURES))
  summary.update(activation=activation, variant=variant_name, split=split, n_sources=int(len(idx)),
                 max_iter=max_iter, table_max_iter=config.table_iterations if variant.pairwise else max_iter,
                 attack_seconds=seconds, attacks_per_second=n / max(seconds, 1e-9), chunks=len(parts),
                 stop_reasons={int(c): int((arr["stop_reason"] == c).sum()) for c in np.unique(arr["stop_reason"])})
  return summary, arr


# ------------------------------------------------------------- distance and picture


def distance_stage(config: StudyConfig, stages: Stages, data: dict, model, activation: str,
                   split: str) -> tuple[dict, dict]:
  """``A(x, t)`` for every attack of the paper row on ``split``: one Jacobian each."""
  apply_fn, params, _ = model
  x_all, y_all = data[split]
  idx = source_indices(config, split, len(y_all))[:config.n_sources]

  def work():
    e = all_other_targets(x_all[idx], y_all[idx], NUM_CLASSES)
    a = metrics.adversarial_distance_of(apply_fn, np.asarray(e.x), np.asarray(e.targets), params=params,
                                        batch_size=min(config.batch_size, len(idx) * (NUM_CLASSES - 1)))
    return ({"robustness": metrics.robustness(a), "n": int(len(a))},
            {"distance": a, "source": np.asarray(e.labels, np.int32), "target": np.asarray(e.targets, np.int32)})

  key = {"model": stages_key_model(config, activation), "split": split, "sources": idx}
  return stages.run(f"distance_{activation}_{split}", key, work)


def picture_stage(config: StudyConfig, stages: Stages, data: dict, model, activation: str,
                  split: str) -> tuple[dict, dict]:
  """Figure 1: one source per class towards every class (paper row), and saliency maps."""
  apply_fn, params, _ = model
  x_all, y_all = data[split]
  first = np.array([int(np.flatnonzero(y_all == c)[0]) for c in range(NUM_CLASSES)])
  variant = VARIANTS["paper"]

  def work():
    e = all_other_targets(x_all[first], y_all[first], NUM_CLASSES)
    x, t = np.asarray(e.x), np.asarray(e.targets)
    r = jax.device_get(jsma(apply_fn, x, t, params=params, theta=variant.theta, gamma=config.gamma,
                            initial_domain=variant.initial_domain))
    grid = np.repeat(x_all[first][:, None], NUM_CLASSES, 1).copy()  # diagonal: the original
    grid[np.asarray(e.labels), t] = np.asarray(r.x_adv)
    success = np.eye(NUM_CLASSES, dtype=bool)
    success[np.asarray(e.labels), t] = np.asarray(r.success)
    k = config.n_figure_examples
    pick = np.arange(k) * (len(t) // max(k, 1))  # spread over sources
    _, a, b = target_rows(apply_fn, x[pick], t[pick], params=params)
    sal = np.asarray(single_feature_saliency(np.asarray(a), np.asarray(b)))
    arrays = {"grid": grid.astype(np.float32), "grid_success": success, "sources": first,
              "ex_x": x[pick], "ex_adv": np.asarray(r.x_adv)[pick], "ex_saliency": sal,
              "ex_source": np.asarray(e.labels)[pick], "ex_target": t[pick],
              "ex_success": np.asarray(r.success)[pick]}
    return {"grid_success_rate": float(np.asarray(r.success).mean()), "split": split,
            "source_indices": first}, arrays

  key = {"model": stages_key_model(config, activation), "split": split, "gamma": config.gamma,
         "n_examples": config.n_figure_examples}
  return stages.run(f"picture_{activation}", key, work)
