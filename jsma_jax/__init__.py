"""jsma-jax: the Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016) in JAX."""

from jsma_jax._validate import max_iterations
from jsma_jax.attack import JSMAResult
from jsma_jax.attack import StopReason
from jsma_jax.attack import jsma
from jsma_jax.distributed import jsma_sharded
from jsma_jax.jacobian import forward_derivative
from jsma_jax.jacobian import target_rows
from jsma_jax.rules import SaliencyRule
from jsma_jax.rules import jsma_rule
from jsma_jax.rules import wjsma_rule
from jsma_jax.saliency import best_feature
from jsma_jax.saliency import best_pair
from jsma_jax.saliency import pairwise_saliency
from jsma_jax.saliency import single_feature_saliency
from jsma_jax.targets import all_other_targets
from jsma_jax.targets import other_classes
from jsma_jax.targets import random_targets

__version__ = "0.1.0"

__all__ = [
    "JSMAResult",
    "SaliencyRule",
    "StopReason",
    "all_other_targets",
    "best_feature",
    "best_pair",
    "forward_derivative",
    "jsma",
    "jsma_sharded",
    "jsma_rule",
    "max_iterations",
    "other_classes",
    "pairwise_saliency",
    "random_targets",
    "single_feature_saliency",
    "target_rows",
    "wjsma_rule",
]
