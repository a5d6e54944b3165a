"""The study's attack stages: rows of the table (in chunks), adversarial distance, the picture.

The stages of ``jsma-jax reproduce`` that call the library; the library's own entry point is
:mod:`jsma_jax.attack` (``jsma``), which this module uses.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

import jsma_jax
from jsma_jax import (
  all_other_targets,
  jsma,
  jsma_local,
  max_iterations,
  metrics,
  other_classes,
  progress,
  single_feature_saliency,
  target_rows,
)
from jsma_jax.batching import chunks

from ..common.stages import Stages
from .config import REPRODUCTION, Budgets, Row, StudyConfig
from .inputs import Data, Model, source_indices


class Context(NamedTuple):
  """What every stage of one study reads: its configuration, stage folder, data, budgets."""

  config: StudyConfig
  stages: Stages
  data: Data
  budgets: Budgets


class Attacks(NamedTuple):
  """Per-attack outcomes of a row, ``[B]`` each (sources in order, 9 targets each on MNIST).

  ``sweep_success`` / ``sweep_n_changed`` (``[K, B]``, one row per budget of
  ``Budgets.sweep``) only for the reproduction row.
  """

  source_index: np.ndarray  # int32, index of the source in its set
  source: np.ndarray  # int32, its label
  target: np.ndarray  # int32
  success: np.ndarray  # bool
  iterations: np.ndarray  # int16
  n_changed: np.ndarray  # int16, L0
  stop_reason: np.ndarray  # int8, jsma_jax.StopReason
  sweep_success: np.ndarray | None = None
  sweep_n_changed: np.ndarray | None = None

  def table(self, budgets: Budgets) -> tuple[np.ndarray, np.ndarray]:
    """``(success, n_changed)`` at the table's budget."""
    if self.sweep_success is None:
      return self.success, self.n_changed
    return self.sweep_success[budgets.table_index], self.sweep_n_changed[budgets.table_index]

  def arrays(self, budgets: Budgets) -> dict[str, np.ndarray]:
    """The stage file's arrays (the sweep's budgets included)."""
    out = {k: v for k, v in self._asdict().items() if v is not None}
    if self.sweep_success is not None:
      out["sweep_iterations"] = np.asarray(budgets.sweep, np.int16)
    return out

  @classmethod
  def of(cls, arrays: dict[str, np.ndarray]) -> Attacks:
    return cls(**{k: arrays[k] for k in cls._fields if k in arrays})

  @classmethod
  def concatenate(cls, parts: list[Attacks]) -> Attacks:
    return cls(*(None if v is None else np.concatenate([getattr(p, k) for p in parts], axis=-1)
                 for k, v in parts[0]._asdict().items()))


class RowResult(NamedTuple):
  """One row of the table: its JSON summary (``results.json``) and its attacks."""

  row: Row
  summary: dict
  attacks: Attacks


# sources per compiled call of A(x, t): their Jacobians ([DISTANCE_BATCH, N, M] floats) live at once
DISTANCE_BATCH = 250

# --------------------------------------------------------------------------- attacks


def run_batched(model: Model, x: np.ndarray, targets: np.ndarray, batch_size: int,
                log: Callable[[str], None], tag: str, table_iter: int | None = None,
                **options) -> jsma_jax.JSMAResult:
  """``jsma`` over ``x`` in chunks of one compiled shape, with a progress bar (``jsma_jax.attack_dataset``).

  A run past the table's budget (``table_iter``: the budget sweep's run, with
  ``record_trace``) shows the success at the table's budget, the number its row reports,
  rather than at the run's larger budget.
  """
  del log  # the progress bar reports
  if table_iter is None:
    return jsma_jax.attack_dataset(model.apply_fn, x, targets, params=model.params, chunk_size=batch_size,
                                   description=tag, **options)

  parts, wins = [], 0
  with progress.bar(len(x), tag) as bar:  # "compiling" until the first chunk is counted
    for start, n, (xs, ts) in chunks((x, targets), min(batch_size, len(x))):
      r = jax.device_get(jsma_local(model.apply_fn, xs, ts, params=model.params, pad_batches=False, **options))
      r = jax.tree.map(lambda v, n=n: v[:n], r)
      parts.append(r)
      wins += int(metrics.budget_sweep(r.success, r.iterations, r.trace, (table_iter,)).success[0].sum())
      bar.update(n)
      bar.set_postfix_str(f"success at {2 * table_iter} pixels={wins / (start + n):.1%}")
  return jsma_jax.JSMAResult(*(None if v[0] is None else np.concatenate(v) for v in zip(*parts)),
                             rule=parts[0].rule, criterion=parts[0].criterion)


def _max_iter(ctx: Context, row: Row) -> int:
  if row.is_reproduction:
    return max(ctx.budgets.sweep)
  return max_iterations(ctx.data.num_features, ctx.config.gamma, pairwise=row.variant.pairwise)


def _attack_chunk(ctx: Context, model: Model, row: Row, chunk: np.ndarray, tag: str) -> Callable:
  """The work of one chunk of sources: ``() -> (summary, arrays)``."""
  split = ctx.data[row.split]

  def work():
    e = all_other_targets(split.x[chunk], split.y[chunk], ctx.data.num_classes)
    src = np.asarray(e.source_index)
    start = time.perf_counter()
    r = run_batched(model, np.asarray(e.x), np.asarray(e.targets), ctx.config.batch_size,
                    ctx.stages.log, tag, table_iter=ctx.budgets.table if row.is_reproduction else None,
                    max_iter=_max_iter(ctx, row), record_trace=row.is_reproduction, **row.variant.options())
    sweep = None
    if row.is_reproduction:
      sweep = metrics.budget_sweep(r.success, r.iterations, r.trace, ctx.budgets.sweep)
    attacks = Attacks(
        source_index=chunk[src].astype(np.int32), source=np.asarray(e.labels, np.int32),
        target=np.asarray(e.targets, np.int32), success=np.asarray(r.success),
        iterations=np.asarray(r.iterations).astype(np.int16),
        n_changed=np.asarray(r.n_changed).astype(np.int16),
        stop_reason=np.asarray(r.stop_reason).astype(np.int8),
        sweep_success=None if sweep is None else sweep.success,
        sweep_n_changed=None if sweep is None else sweep.n_changed.astype(np.int16))
    return {"attack_seconds": time.perf_counter() - start, "n": len(src)}, attacks.arrays(ctx.budgets)
  return work


def attack_stage(ctx: Context, model: Model, row: Row) -> RowResult:
  """Every source of the row towards every other class, in chunks of ``chunk_sources``
  sources (one stage each); the reproduction row also sweeps the budget (one run at the
  largest budget with the L0 trace)."""
  config, budgets, m = ctx.config, ctx.budgets, ctx.data.num_features
  idx = source_indices(config, row.split, len(ctx.data[row.split].y))[:row.n_sources]
  max_iter = _max_iter(ctx, row)
  parts, seconds = [], 0.0
  for c, lo in enumerate(range(0, len(idx), config.chunk_sources)):
    chunk = idx[lo:lo + config.chunk_sources]
    key = {"model": model.key, "variant": dataclasses.asdict(row.variant), "split": row.split,
           "sources": chunk, "max_iter": max_iter, "sweep": budgets.sweep if row.is_reproduction else None}
    tag = f"attack_{model.activation}_{row.variant.name}_{row.split}_c{c:03d}"
    summary, arrays = ctx.stages.run(tag, key, _attack_chunk(ctx, model, row, chunk, tag))
    parts.append(Attacks.of(arrays))
    seconds += summary["attack_seconds"]
  attacks = Attacks.concatenate(parts)
  summary = {}
  if row.is_reproduction:
    summary["sweep"] = [dict(iterations=int(k), pixels=2 * int(k), gamma=2 * int(k) / m,
                             **metrics.summary(attacks.sweep_success[j], attacks.sweep_n_changed[j], m))
                        for j, k in enumerate(budgets.sweep)]
  n = len(attacks.success)
  reasons = attacks.stop_reason
  summary.update(metrics.summary(*attacks.table(budgets), m))
  summary.update(activation=model.activation, variant=row.variant.name, split=row.split,
                 n_sources=len(idx), max_iter=max_iter,
                 table_max_iter=budgets.table if row.variant.pairwise else max_iter,
                 attack_seconds=seconds, attacks_per_second=n / max(seconds, 1e-9), chunks=len(parts),
                 stop_reasons={int(c): int((reasons == c).sum()) for c in np.unique(reasons)})
  return RowResult(row, summary, attacks)


# ------------------------------------------------------------- distance and picture


def distance_stage(ctx: Context, model: Model) -> tuple[dict, dict]:
  """``A(x, t)`` for every attack of the reproduction row on the main set: one Jacobian per source."""
  split_name = ctx.config.main_split
  split, n_classes = ctx.data[split_name], ctx.data.num_classes
  idx = source_indices(ctx.config, split_name, len(split.y))[:ctx.config.n_sources]

  def work():
    labels = np.asarray(split.y[idx])
    targets = np.asarray(other_classes(labels, n_classes)).reshape(-1)  # all_other_targets' order, no copies of x
    source = np.repeat(np.arange(len(idx)), n_classes - 1)
    every = jsma_jax.adversarial_distance_all(model.apply_fn, split.x[idx], params=model.params,
                                             batch_size=min(DISTANCE_BATCH, len(idx)))  # [sources, N]
    a = every[source, targets]
    return ({"robustness": metrics.robustness(a), "n": len(a)},
            {"distance": a, "source": labels[source].astype(np.int32), "target": targets.astype(np.int32)})

  key = {"model": model.key, "split": split_name, "sources": idx}
  return ctx.stages.run(f"distance_{model.activation}_{split_name}", key, work)


def picture_stage(ctx: Context, model: Model) -> tuple[dict, dict]:
  """Figure 1: one source per class towards every class (reproduction row), and saliency maps."""
  split_name, n_classes = ctx.config.main_split, ctx.data.num_classes
  split = ctx.data[split_name]
  first = np.array([int(np.flatnonzero(split.y == c)[0]) for c in range(n_classes)])

  def work():
    e = all_other_targets(split.x[first], split.y[first], n_classes)
    x, t = np.asarray(e.x), np.asarray(e.targets)
    r = jax.device_get(jsma(model.apply_fn, x, t, params=model.params, theta=REPRODUCTION.theta,
                            gamma=ctx.config.gamma, initial_domain=REPRODUCTION.initial_domain))
    grid = np.repeat(split.x[first][:, None], n_classes, 1).copy()  # diagonal: the original
    grid[np.asarray(e.labels), t] = np.asarray(r.x_adv)
    success = np.eye(n_classes, dtype=bool)
    success[np.asarray(e.labels), t] = np.asarray(r.success)
    k = ctx.config.n_figure_examples
    pick = np.arange(k) * (len(t) // max(k, 1))  # spread over sources
    _, a, b = target_rows(model.apply_fn, x[pick], t[pick], params=model.params)
    sal = np.asarray(single_feature_saliency(np.asarray(a), np.asarray(b)))
    arrays = {"grid": grid.astype(np.float32), "grid_success": success, "sources": first,
              "ex_x": x[pick], "ex_adv": np.asarray(r.x_adv)[pick], "ex_saliency": sal,
              "ex_source": np.asarray(e.labels)[pick], "ex_target": t[pick],
              "ex_success": np.asarray(r.success)[pick]}
    return {"grid_success_rate": float(np.asarray(r.success).mean()), "split": split_name,
            "source_indices": first}, arrays

  key = {"model": model.key, "split": split_name, "gamma": ctx.config.gamma,
         "n_examples": ctx.config.n_figure_examples}
  return ctx.stages.run(f"picture_{model.activation}", key, work)
