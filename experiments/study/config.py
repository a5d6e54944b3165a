"""The study's configuration: attack variants, the frozen ``StudyConfig`` and its presets.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings* (EuroS&P
2016): MNIST, theta = +1, gamma = 14.5%, every source towards the other classes. Nothing
here knows the data's shape: budgets in iterations are computed from the number of
features of the loaded data (``StudyConfig.budgets``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import NamedTuple

from jsma_jax import max_iterations, metrics

from ..common.sources import SPLITS

PAPER_PIXELS = (2, 10, 20, 40, 60, 80, 100, 200, 300)
SOURCES = ("embedded", "idx", "tfds")
ARCHS = ("lenet", "tiny_mlp")
ACTIVATIONS = ("tanh", "relu")
IDX_DIR = os.path.join("..", "shared", "data", "mnist")  # where ``source="idx"`` looks by default


@dataclasses.dataclass(frozen=True)
class Variant:
  """One attack configuration of the study's table: ``jsma`` options and a label."""

  name: str
  label: str
  theta: float = 1.0
  pairwise: bool = True
  probabilities: bool = False
  initial_domain: str = "all"

  def options(self) -> dict:
    """The keyword options of ``jsma_jax.jsma`` that this variant sets."""
    return {"theta": self.theta, "pairwise": self.pairwise,
            "probabilities": self.probabilities, "initial_domain": self.initial_domain}


# The paper's own choices: increasing pairs, Jacobian of the logits, all features in the
# initial search domain (Algorithm 2 as written). Its row is the reproduction row: it
# always runs, on every source set, sweeps the budget, and draws the figures.
REPRODUCTION = Variant("paper", "increasing pairs, logits, domain all (the paper's choices)")
VARIANTS = {
    v.name: v
    for v in (
        REPRODUCTION,
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


class Row(NamedTuple):
  """One attack row of the study: a model, a variant, a source set and its size."""

  activation: str
  variant: Variant
  split: str
  n_sources: int

  @property
  def is_reproduction(self) -> bool:
    """The paper's row: it also sweeps the budget (one run with the L0 trace)."""
    return self.variant == REPRODUCTION

  @property
  def name(self) -> str:
    return f"{self.activation}/{self.variant.name}/{self.split}"


class Budgets(NamedTuple):
  """The study's budgets in iterations, for data with a given number of features.

  Attributes:
    table: pair iterations of the table's budget, ``floor(M * gamma / 2)`` (56 on MNIST).
    sweep: every budget of the sweep, ascending: the grid and the table's budget.
    grid: the pixel grid in pair iterations (the hardness integral's points).
  """

  table: int
  sweep: tuple[int, ...]
  grid: tuple[int, ...]

  @property
  def table_index(self) -> int:
    """Where the table's budget sits in ``sweep``."""
    return self.sweep.index(self.table)

  @property
  def grid_indices(self) -> list[int]:
    """Where each grid budget sits in ``sweep``."""
    return [self.sweep.index(m) for m in self.grid]


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """Everything that determines a study's numbers (and where it writes).

  Attributes:
    out: output folder.
    source: ``"embedded"``, ``"idx"`` or ``"tfds"`` (see ``jsma_jax.models.load_mnist``).
    data_dir: IDX folder (``idx``; default ``IDX_DIR``) or TFDS data folder (``tfds``).
    activations: LeNet activations to study.
    arch: ``"lenet"`` (the paper's) or ``"tiny_mlp"`` (a one-hidden-layer MLP, for tests).
    shipped: the tanh LeNet is the package's paper LeNet
      (:func:`jsma_jax.models.load_paper_lenet`: the ``theano_tutorial`` recipe on full
      MNIST), so nothing is trained; other activations, or ``shipped=False``, load
      ``checkpoint_dir`` or train here.
    checkpoint_dir: folder holding ``lenet_<activation>_mnist`` checkpoints to load;
      models missing there are trained here (and saved under ``out/models``).
    epochs: training epochs for models trained here.
    splits: source sets for the reproduction row (``train``, ``validation``, ``test``).
    n_sources: sources per split for the reproduction row (attacked towards every other class).
    n_sources_ablation: sources for the other variants (test split, or the first split).
    n_sources_splits: sources for the reproduction row on the sets other than test
      (default ``n_sources``).
    chunk_sources: sources per stage file (a long row is saved chunk by chunk).
    variants: which rows run (names of ``VARIANTS``); the reproduction row always runs.
    pixels: the budget grid in changed pixels (2 per pair iteration).
    gamma: the table's budget (share of features).
    batch_size: attacks per ``jsma`` call.
    n_figure_examples: saliency-map examples in the picture.
    seed: source sampling and training.
    zoo_results: a model zoo's ``results.json`` (``jsma-jax zoo``) to show beside the
      reproduction in the report, if the file exists.
  """

  out: str = "runs/reproduce"
  source: str = "embedded"
  data_dir: str | None = None
  activations: tuple[str, ...] = ACTIVATIONS
  arch: str = "lenet"
  shipped: bool = True
  checkpoint_dir: str | None = None
  epochs: int = 3
  splits: tuple[str, ...] = ("test",)
  n_sources: int = 20
  n_sources_ablation: int = 5
  variants: tuple[str, ...] = tuple(VARIANTS)
  pixels: tuple[int, ...] = PAPER_PIXELS
  gamma: float = 0.145
  n_sources_splits: int | None = None
  chunk_sources: int = 100
  batch_size: int = 1024
  n_figure_examples: int = 3
  seed: int = 0
  zoo_results: str | None = None

  def __post_init__(self):
    if self.source == "idx" and self.data_dir is None:
      object.__setattr__(self, "data_dir", IDX_DIR)
    bad = [v for v in self.variants if v not in VARIANTS]
    if bad:
      raise ValueError(f"variants must be among {sorted(VARIANTS)}, got {bad}")
    bad = [s for s in self.splits if s not in SPLITS]
    if bad or not self.splits:
      raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {self.splits}")
    if any(a not in ACTIVATIONS for a in self.activations) or not self.activations:
      raise ValueError(f"activations must be 'tanh' and/or 'relu', got {self.activations}")
    if self.arch not in ARCHS:
      raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
    if self.source not in SOURCES:
      raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
    for name in ("n_sources", "n_sources_ablation", "batch_size", "epochs", "chunk_sources"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not self.pixels or any(p < 2 for p in self.pixels) or list(self.pixels) != sorted(set(self.pixels)):
      raise ValueError(f"pixels must be ascending, distinct, each >= 2, got {self.pixels}")

  @property
  def main_split(self) -> str:
    """The set of the variants, the pair measures and the picture: test if studied."""
    return "test" if "test" in self.splits else self.splits[0]

  def budgets(self, num_features: int) -> Budgets:
    """The table's budget, the sweep and the grid in pair iterations for ``M`` features."""
    table = max_iterations(num_features, self.gamma, pairwise=True)
    grid = tuple(int(i) for i in metrics.pixels_to_iterations(self.pixels))
    return Budgets(table=table, sweep=tuple(sorted(set(grid) | {table})), grid=grid)

  def rows(self) -> list[Row]:
    """Every attack row: the reproduction rows first, then the variants, then the other sets."""
    main = self.main_split
    rows = [Row(act, REPRODUCTION, main, self.n_sources) for act in self.activations]
    rows += [Row(act, VARIANTS[v], main, min(self.n_sources_ablation, self.n_sources))
             for act in self.activations for v in self.variants if VARIANTS[v] != REPRODUCTION]
    rows += [Row(act, REPRODUCTION, split, self.n_sources_splits or self.n_sources)
             for act in self.activations for split in self.splits if split != main]
    return rows


def quick() -> StudyConfig:
  """The default: the shipped paper LeNet on the embedded test digits, a few minutes on 2 CPUs."""
  return StudyConfig(activations=("tanh",), n_sources=100, n_sources_ablation=20)


def embedded_training() -> StudyConfig:
  """Both LeNets trained here on the 5,000 embedded training digits, then attacked."""
  return StudyConfig(shipped=False, n_sources=20, n_sources_ablation=5)


def full_mnist() -> StudyConfig:
  """The paper's scale: the shipped paper LeNet on full MNIST (IDX files), all 10,000 test
  sources and 1,000 each from the training and validation sets.

  The validation set is the last 10,000 training images, which the shipped LeNet's
  recipe (``theano_tutorial``) holds out.
  """
  return StudyConfig(source="idx", data_dir=IDX_DIR, activations=("tanh",), splits=SPLITS,
                     n_sources=10000, n_sources_splits=1000, n_sources_ablation=500,
                     zoo_results=os.path.join("experiments", "results", "zoo", "results.json"))


PRESETS: dict[str, Callable[[], StudyConfig]] = {"quick": quick, "embedded_training": embedded_training,
                                                 "full_mnist": full_mnist}
