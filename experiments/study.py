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
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import serialization

from jsma_jax import all_other_targets
from jsma_jax import jsma
from jsma_jax import max_iterations
from jsma_jax import metrics
from jsma_jax import single_feature_saliency
from jsma_jax import target_rows
from experiments.stages import Stages

NUM_CLASSES = 10
NUM_FEATURES = 28 * 28
PAPER_PIXELS = (2, 10, 20, 40, 60, 80, 100, 200, 300)
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One attack configuration of the study's table."""

  name: str
  label: str
  theta: float = 1.0
  pairwise: bool = True
  probabilities: bool = False
  initial_domain: str = "all"


# The paper's own choices first: increasing pairs, Jacobian of the logits, all
# features in the initial search domain (Algorithm 2 as written).
VARIANTS = {
    v.name: v
    for v in (
        Variant("paper", "increasing pairs, logits, domain all (the paper's choices)"),
        Variant("movable", "increasing pairs, logits, domain movable (library default)",
                initial_domain="movable"),
        Variant("softmax", "increasing pairs, softmax Jacobian (JSMA-F), domain all",
                probabilities=True),
        Variant("decrease", "decreasing pairs (theta = -1), logits, domain all", theta=-1.0),
        Variant("decrease_movable", "decreasing pairs (theta = -1), logits, domain movable",
                theta=-1.0, initial_domain="movable"),
        Variant("single", "single features (Algorithm 1), logits, domain all", pairwise=False),
    )
}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Everything that determines a study's numbers (and where it writes).

  Attributes:
    out: output folder.
    source: ``"embedded"``, ``"idx"`` or ``"tfds"`` (see ``jsma_jax.models.load_mnist``).
    data_dir: IDX folder (``idx``) or TFDS data folder (``tfds``).
    activations: LeNet activations to study.
    arch: ``"lenet"`` (the paper's) or ``"tiny_mlp"`` (a 784-32-10 MLP, for tests).
    checkpoint_dir: folder holding ``lenet_<activation>_mnist`` checkpoints to load;
      models missing there are trained here (and saved under ``out/models``).
    epochs: training epochs for models trained here.
    splits: source sets for the paper row (``train``, ``validation``, ``test``).
    n_sources: sources per split for the paper row (9 attacks each).
    n_sources_ablation: sources for the other variants (test split, or the first split).
    n_sources_splits: sources for the paper row on the sets other than test
      (default ``n_sources``).
    chunk_sources: sources per stage file (a long row is saved chunk by chunk).
    variants: which rows run (names of ``VARIANTS``); ``paper`` always runs.
    pixels: the budget grid in changed pixels (2 per pair iteration).
    gamma: the table's budget (share of features).
    batch_size: attacks per ``jsma`` call.
    n_figure_examples: saliency-map examples in the picture.
    seed: source sampling and training.
  """

  out: str = "runs/reproduce"
  source: str = "embedded"
  data_dir: str | None = None
  activations: tuple[str, ...] = ("tanh", "relu")
  arch: str = "lenet"
  checkpoint_dir: str | None = None
  epochs: int = 3
  splits: tuple[str, ...] = ("test",)
  n_sources: int = 20
  n_sources_ablation: int = 10
  variants: tuple[str, ...] = tuple(VARIANTS)
  pixels: tuple[int, ...] = PAPER_PIXELS
  gamma: float = 0.145
  n_sources_splits: int | None = None
  chunk_sources: int = 100
  batch_size: int = 1024
  n_figure_examples: int = 3
  seed: int = 0

  def __post_init__(self):
    bad = [v for v in self.variants if v not in VARIANTS]
    if bad:
      raise ValueError(f"variants must be among {sorted(VARIANTS)}, got {bad}")
    bad = [s for s in self.splits if s not in SPLITS]
    if bad or not self.splits:
      raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {self.splits}")
    if any(a not in ("tanh", "relu") for a in self.activations) or not self.activations:
      raise ValueError(f"activations must be 'tanh' and/or 'relu', got {self.activations}")
    if self.arch not in ("lenet", "tiny_mlp"):
      raise ValueError(f"arch must be 'lenet' or 'tiny_mlp', got {self.arch!r}")
    if self.source not in ("embedded", "idx", "tfds"):
      raise ValueError(f"source must be 'embedded', 'idx' or 'tfds', got {self.source!r}")
    for name in ("n_sources", "n_sources_ablation", "batch_size", "epochs", "chunk_sources"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not self.pixels or any(p < 2 for p in self.pixels) or list(self.pixels) != sorted(set(self.pixels)):
      raise ValueError(f"pixels must be ascending, distinct, each >= 2, got {self.pixels}")

  @property
  def table_iterations(self) -> int:
    """Pair iterations of the table's budget, ``floor(M * gamma / 2)`` (56 on MNIST)."""
    return max_iterations(NUM_FEATURES, self.gamma, pairwise=True)

  @property
  def sweep_iterations(self) -> tuple[int, ...]:
    """Every budget of the sweep in pair iterations: the grid and the table's budget."""
    grid = {int(i) for i in metrics.pixels_to_iterations(self.pixels)}
    return tuple(sorted(grid | {self.table_iterations}))

  def rows(self) -> list[tuple[str, str, str, int]]:
    """``(activation, variant, split, n_sources)`` of every attack stage."""
    main = "test" if "test" in self.splits else self.splits[0]
    rows = [(act, "paper", main, self.n_sources) for act in self.activations]
    rows += [(act, v, main, min(self.n_sources_ablation, self.n_sources))
             for act in self.activations for v in self.variants if v != "paper"]
    rows += [(act, "paper", split, self.n_sources_splits or self.n_sources)
             for act in self.activations for split in self.splits if split != main]
    return rows  # the reproduction rows first, then the variants, then the other sets


# ------------------------------------------------------------------------------ data


def load_splits(config: StudyConfig) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
  """The train / validation / test sets; validation is the last sixth of the training
  images (the last 10,000 of MNIST's 60,000, as in the paper's Theano setup; every 6th
  image of the class-sorted embedded subset)."""
  from jsma_jax.models import load_mnist

  kwargs = {} if config.source == "embedded" else {"data_dir": config.data_dir}
  x_train, y_train = load_mnist(config.source, split="train", **kwargs)
  x_test, y_test = load_mnist(config.source, split="test", **kwargs)
  n = len(y_train)
  if config.source == "embedded":  # the embedded subset is sorted by class: every 6th image
    val = np.arange(n) % 6 == 5
    how = f"every 6th of the {n} embedded training images"
  else:
    val = np.arange(n) >= n - n // 6
    how = f"last {n // 6} of the {n} training images"
  data = {
      "train": (x_train[~val], y_train[~val]),
      "validation": (x_train[val], y_train[val]),
      "test": (x_test, y_test),
  }
  info = {"name": "mnist", "source": config.source, "data_dir": config.data_dir,
          "sizes": {k: int(len(v[1])) for k, v in data.items()}, "validation": how}
  return data, info


def source_indices(config: StudyConfig, split: str, n_available: int) -> np.ndarray:
  """The first ``n`` of a seeded permutation of a split (same for every row, so a
  smaller row's sources are a prefix of a larger row's, and chunks are reused when
  ``n_sources`` grows)."""
  rng = np.random.default_rng([config.seed, SPLITS.index(split)])
  return rng.permutation(n_available)[:min(max(config.n_sources, config.n_sources_splits or 0), n_available)]


# ---------------------------------------------------------------------------- models


class TinyMLP(nnx.Module):
  """784-32-N MLP, a fast stand-in for the LeNet in tests."""

  def __init__(self, *, activation: str = "tanh", num_classes: int = 10, rngs: nnx.Rngs):
    self.activation = activation
    self.fc1 = nnx.Linear(NUM_FEATURES, 32, rngs=rngs)
    self.fc2 = nnx.Linear(32, num_classes, rngs=rngs)

  def __call__(self, x):
    act = jnp.tanh if self.activation == "tanh" else jax.nn.relu
    return self.fc2(act(self.fc1(x.reshape(x.shape[0], -1))))


def _build(config: StudyConfig, activation: str) -> nnx.Module:
  from jsma_jax.models import LeNet

  cls = LeNet if config.arch == "lenet" else TinyMLP
  return cls(activation=activation, rngs=nnx.Rngs(config.seed))


def _model_path(config: StudyConfig, activation: str) -> str:
  return os.path.join(config.out, "models", f"{config.arch}_{activation}.msgpack")


def _external_checkpoint(config: StudyConfig, activation: str) -> str | None:
  if config.checkpoint_dir is None or config.arch != "lenet":
    return None
  path = os.path.join(config.checkpoint_dir, f"lenet_{activation}_mnist")
  return path if os.path.isfile(os.path.join(path, "metadata.json")) else None


def model_stage(config: StudyConfig, stages: Stages, data: dict, activation: str) -> tuple[Any, Any, dict]:
  """Loads the checkpoint or trains the model; returns ``(apply_fn, params, info)``."""
  from jsma_jax.models import as_logits_fn, evaluate, load_checkpoint, train

  external = _external_checkpoint(config, activation)
  key = stages_key_model(config, activation)
  path = _model_path(config, activation)

  def work():
    if external is not None:
      model, meta = load_checkpoint(external)
      info = {"checkpoint": external, "trained_here": False,
              "train": meta.get("train"), "dataset": meta.get("dataset"),
              "checkpoint_test_accuracy": meta.get("test_accuracy")}
    else:
      model, hist = train(_build(config, activation), data["train"], None, epochs=config.epochs,
                          seed=config.seed, print_fn=stages.log)
      info = {"checkpoint": None, "trained_here": True, "epochs": config.epochs,
              "n_train": int(len(data["train"][1])), "train_seconds": hist["train_seconds"]}
    state = nnx.to_pure_dict(nnx.state(model))
    from experiments.stages import atomic_write_bytes

    atomic_write_bytes(path, serialization.msgpack_serialize(jax.device_get(state)))
    apply_fn, params = as_logits_fn(model)
    info["accuracy"] = {s: evaluate(apply_fn, data[s], params=params) for s in SPLITS}
    return info, None

  info, _ = stages.run(f"model_{activation}", key, work)
  return (*load_model(config, activation), info)


def load_model(config: StudyConfig, activation: str) -> tuple[Any, Any]:
  """``(apply_fn, params)`` of a model a study saved under ``out/models``."""
  from jsma_jax.models import as_logits_fn

  graphdef, state = nnx.split(_build(config, activation))
  with open(_model_path(config, activation), "rb") as f:
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, serialization.msgpack_restore(f.read())))
  return as_logits_fn(nnx.merge(graphdef, state))


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


def stages_key_model(config: StudyConfig, activation: str) -> dict:
  return {"arch": config.arch, "activation": activation, "source": config.source,
          "data_dir": config.data_dir, "checkpoint": _external_checkpoint(config, activation), "epochs": config.epochs,
          "seed": config.seed}


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


# ----------------------------------------------------------------------- the study


def environment() -> dict:
  """JAX version, backend, device and host, recorded with every run."""
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "backend": jax.default_backend(), "device": str(dev),
          "device_kind": getattr(dev, "device_kind", ""), "device_count": jax.device_count(),
          "python": platform.python_version(), "platform": platform.platform(),
          "cpu_count": os.cpu_count(), "processor": platform.processor()}


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
