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

from jsma_jax.models.apply import LogitsFn
from jsma_jax.models.apply import as_logits_fn
from jsma_jax.models.checkpoint import SHIPPED_LENETS
from jsma_jax.models.checkpoint import CheckpointError
from jsma_jax.models.checkpoint import load_checkpoint
from jsma_jax.models.checkpoint import load_metadata
from jsma_jax.models.checkpoint import load_paper_lenet
from jsma_jax.models.checkpoint import save_checkpoint
from jsma_jax.models.data import load_dataset
from jsma_jax.models.data import load_embedded_mnist
from jsma_jax.models.data import load_fashion_mnist
from jsma_jax.models.data import load_idx
from jsma_jax.models.data import load_mnist
from jsma_jax.models.idx import read_idx
from jsma_jax.models.lenet import LeNet
from jsma_jax.models.lenet import ModelConfig
from jsma_jax.models.lenet import SmallCNN
from jsma_jax.models.lenet import config_of
from jsma_jax.models.lenet import lenet_numpy_weights
from jsma_jax.models.lenet import register_architecture
from jsma_jax.models.recipe import PRESETS as RECIPES
from jsma_jax.models.recipe import Recipe
from jsma_jax.models.recipe import holdout_split
from jsma_jax.models.recipe import initialise
from jsma_jax.models.recipe import preset
from jsma_jax.models.train import evaluate
from jsma_jax.models.train import make_optimizer
from jsma_jax.models.train import train

__all__ = [
    "CheckpointError",
    "LeNet",
    "LogitsFn",
    "ModelConfig",
    "RECIPES",
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
    "load_paper_lenet",
    "load_mnist",
    "make_optimizer",
    "preset",
    "read_idx",
    "register_architecture",
    "save_checkpoint",
    "SHIPPED_LENETS",
    "train",
]
