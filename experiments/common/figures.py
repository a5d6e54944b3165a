"""The study's figures (matplotlib, Agg backend): one PNG each, written to the out folder."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DPI = 90


def _save(fig, path: str) -> str:
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=DPI)
  plt.close(fig)
  os.replace(tmp, path)
  return os.path.basename(path)


def series(ax, x, curves: dict, ylabel: str, xlabel: str) -> None:
  """Curves ``{label: ys}`` against ``x``; a single point is drawn as bars (a dot hides on a line plot)."""
  if len(x) == 1:
    labels = list(curves)
    values = [curves[k][0] for k in labels]
    ax.bar(range(len(labels)), values, color=[f"C{i}" for i in range(len(labels))], tick_label=labels)
    for i, v in enumerate(values):
      ax.annotate(f"{v:.4g}", (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(f"{xlabel} {x[0]}")
  else:
    for label, ys in curves.items():
      ax.plot(x, ys, marker="o", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)


def training_curves(history: dict, path: str) -> str:
  """Training loss and accuracy per epoch (``jsma_jax.models.train``'s history)."""
  epochs = list(range(1, len(history["train_loss"]) + 1))
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
  series(a, epochs, {"train loss": history["train_loss"]}, "train loss", "epoch")
  accuracy = {"train (running)": history["train_accuracy"]}
  if history.get("test_accuracy"):
    accuracy["test"] = history["test_accuracy"]
  series(b, epochs, accuracy, "accuracy", "epoch")
  return _save(fig, path)


def success_vs_budget(results: dict, path: str) -> str:
  """Success rate and mean distortion (successful) against the budget, per model (the study's sweep)."""
  sweeps = {f"LeNet {act}": sweep for act, sweep in results["sweeps"].items()}
  return budget_curves(sweeps, 2 * results["rows"][0]["table_max_iter"], results["dataset"]["num_features"],
                       path, paper=True)


def budget_curves(sweeps: dict, table_pixels: int, num_features: int, path: str, paper: bool = False) -> str:
  """Success and distortion against the budget: ``sweeps`` is ``{label: [{pixels, success_rate,
  distortion_successful}, ...]}``; ``paper`` draws the paper's numbers at gamma = 14.5%."""
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
  for label, sweep in sweeps.items():
    px = [p["pixels"] for p in sweep]
    ax1.plot(px, [100 * p["success_rate"] for p in sweep], marker="o", label=label)
    ax2.plot(px, [100 * (p["distortion_successful"] or np.nan) for p in sweep], marker="o", label=label)
  if paper:  # each dashed line says what it is, in the legend
    ax1.axhline(97.1, color="k", ls="--", lw=1, label="paper: 97.1% at gamma = 14.5%")
    ax2.axhline(4.02, color="k", ls="--", lw=1, label="paper: 4.02% at gamma = 14.5%")
  for ax in (ax1, ax2):
    ax.axvline(table_pixels, color="grey", ls=":", lw=1, label="the table's budget")
    ax.set_xscale("log")
    ax.set_xlabel(f"budget (changed features; gamma = features / {num_features})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  ax1.set_ylabel("success rate (%)")
  ax2.set_ylabel("mean distortion, successful\n(% of features)")  # two lines: one is clipped at this height
  fig.suptitle("Success and distortion against the budget (one run at the largest budget)")
  return _save(fig, path)


def pair_success(success_rate, path: str, title: str) -> str:
  """The success rate of each (source, target) pair as a heat map."""
  fig, ax = plt.subplots(figsize=(5.5, 4.6))
  _heat(ax, 100 * np.asarray(success_rate, float), "success rate (%) per pair", ".0f", "viridis")
  fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def _heat(ax, mat, title, fmt, cmap):
  mat = np.asarray(mat, float)
  im = ax.imshow(mat, cmap=cmap)
  for s in range(mat.shape[0]):
    for t in range(mat.shape[1]):
      if np.isfinite(mat[s, t]):  # white on the dark half of the colour map (viridis: the low end)
        dark = float(im.norm(mat[s, t])) < 0.5
        ax.text(t, s, format(mat[s, t], fmt), ha="center", va="center", fontsize=6,
                color="white" if dark else "black")
  ax.set_xticks(range(mat.shape[1]))
  ax.set_yticks(range(mat.shape[0]))
  ax.set_xlabel("target class")
  ax.set_ylabel("source class")
  ax.set_title(title, fontsize=9)
  plt.colorbar(im, ax=ax, fraction=0.046)


def pair_maps(pairs: dict, activation: str, path: str) -> str:
  """Hardness ``H(s, t)``, mean adversarial distance, and their scatter, for one model."""
  h = np.array(pairs["hardness"], float)
  a = np.array(pairs["mean_distance"], float)
  fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.4))
  _heat(ax1, 1000 * h, "hardness H(s, t) x 1000 (trapezoid over the grid)", ".1f", "viridis")
  _heat(ax2, a, "mean adversarial distance A(x, t)", ".2f", "viridis")
  off = ~np.eye(h.shape[0], dtype=bool) & np.isfinite(h) & np.isfinite(a)
  ax3.scatter(a[off], h[off], s=12)
  ax3.set_xlabel("mean A(x, t) of the pair")
  ax3.set_ylabel("hardness H(s, t)")
  rho = pairs["spearman_distance_hardness"]
  ax3.set_title(f"Spearman rho = {rho:.3f}" if rho is not None else "Spearman rho: n/a", fontsize=9)
  ax3.grid(alpha=0.3)
  fig.suptitle(f"LeNet {activation}: class pairs ({pairs['split']} sources)")
  return _save(fig, path)


def adversarial_grid(picture: dict, activation: str, path: str, model: str | None = None) -> str:
  """The paper's Figure 1: rows the source class, columns the target, originals on the diagonal."""
  grid, ok = picture["grid"], picture["grid_success"]
  n = grid.shape[0]
  fig, axes = plt.subplots(n, n, figsize=(n * 0.8, n * 0.8))
  for s in range(n):
    for t in range(n):
      ax = axes[s, t]
      ax.imshow(grid[s, t, ..., 0], cmap="gray", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if not ok[s, t]:
        for side in ax.spines.values():
          side.set_color("red")
          side.set_linewidth(2)
      if s == 0:
        ax.set_title(str(t), fontsize=8)
      if t == 0:
        ax.set_ylabel(str(s), fontsize=8)
  fig.suptitle(f"{model or 'LeNet ' + activation}: adversarial examples (row source, column target; red: failed)",
               fontsize=9)
  return _save(fig, path)


def saliency_examples(picture: dict, activation: str, path: str, model: str | None = None) -> str:
  """A few examples: original, its increasing saliency map towards the target, adversarial."""
  k = len(picture["ex_target"])
  fig, axes = plt.subplots(k, 3, figsize=(6, 2 * k), squeeze=False)
  for i in range(k):
    s, t = int(picture["ex_source"][i]), int(picture["ex_target"][i])
    sal = picture["ex_saliency"][i].reshape(picture["ex_x"][i].shape)[..., 0]
    panels = [(picture["ex_x"][i][..., 0], f"source {s}", "gray"),
              (sal, f"saliency S(x, {t}) (Eq. 8)", "hot"),
              (picture["ex_adv"][i][..., 0], f"to {t}: {'success' if picture['ex_success'][i] else 'failed'}", "gray")]
    for ax, (img, title, cmap) in zip(axes[i], panels):
      ax.imshow(img, cmap=cmap, **({"vmin": 0, "vmax": 1} if cmap == "gray" else {}))
      ax.set_title(title, fontsize=8)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.suptitle(f"{model or 'LeNet ' + activation}: saliency maps", fontsize=9)
  return _save(fig, path)


def write_all(results: dict, pictures: dict, out: str) -> list[str]:
  """Writes every figure (``pictures``: the picture stage's arrays per activation); returns their names."""
  names = [success_vs_budget(results, os.path.join(out, "success_vs_budget.png"))]
  for act, pairs in results["pairs"].items():
    names.append(pair_maps(pairs, act, os.path.join(out, f"pairs_{act}.png")))
    names.append(adversarial_grid(pictures[act], act, os.path.join(out, f"adversarial_grid_{act}.png")))
    names.append(saliency_examples(pictures[act], act, os.path.join(out, f"saliency_{act}.png")))
  return names
