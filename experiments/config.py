"""The study's configuration: attack variants and the frozen ``StudyConfig``.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings* (EuroS&P
2016): MNIST, theta = +1, gamma = 14.5%, every source towards the 9 other classes.
"""

from __future__ import annotations

import dataclasses

from jsma_jax import max_iterations
from jsma_jax import metrics

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
  n_sources_ablation: int = 5
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
