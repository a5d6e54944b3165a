"""Models, data and training for jsma-jax, kept apart from the attack.

The core attack (``jsma_jax``) imports nothing from here. ``tfds_builders`` is imported
lazily (by ``load_mnist(source="tfds")``) so that importing this package does not import
tensorflow-datasets. Without Flax or optax (the ``models`` extra), importing it raises a
``ModuleNotFoundError`` that names the install command.
"""

try:
  import flax  # noqa: F401
  import optax  # noqa: F401
except ModuleNotFoundError as e:
  raise ModuleNotFoundError(
      f"jsma_jax.models needs {e.name}, which is not installed: pip install 'jsma-jax[models]' "
      "(from a checkout: pip install -e '.[models]'); the attack itself (import jsma_jax) does not",
      name=e.name) from e

from jsma_jax.models.apply import LogitsFn, as_logits_fn
from jsma_jax.models.checkpoint import (
  SHIPPED_LENETS,
  CheckpointError,
  load_checkpoint,
  load_metadata,
  load_paper_lenet,
  save_checkpoint,
)
from jsma_jax.models.data import load_dataset, load_embedded_mnist, load_fashion_mnist, load_idx, load_mnist
from jsma_jax.models.idx import read_idx
from jsma_jax.models.lenet import LeNet, ModelConfig, SmallCNN, config_of, lenet_numpy_weights, register_architecture
from jsma_jax.models.recipe import PRESETS as RECIPES
from jsma_jax.models.recipe import Recipe, holdout_split, initialise, preset
from jsma_jax.models.train import evaluate, make_optimizer, train

__all__ = [
  "RECIPES",
  "SHIPPED_LENETS",
  "CheckpointError",
  "LeNet",
  "LogitsFn",
  "ModelConfig",
  "Recipe",
  "SmallCNN",
  "as_logits_fn",
  "config_of",
  "evaluate",
  "holdout_split",
  "initialise",
  "lenet_numpy_weights",
  "load_checkpoint",
  "load_dataset",
  "load_embedded_mnist",
  "load_fashion_mnist",
  "load_idx",
  "load_metadata",
  "load_mnist",
  "load_paper_lenet",
  "make_optimizer",
  "preset",
  "read_idx",
  "register_architecture",
  "save_checkpoint",
  "train",
]
