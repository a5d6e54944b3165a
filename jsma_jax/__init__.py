"""jsma-jax: the Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016) in JAX."""

from jsma_jax import metrics
from jsma_jax.attack import cache_size
from jsma_jax.compile_cache import enable as enable_compile_cache
from jsma_jax.attack import jsma
from jsma_jax.attack import lower
from jsma_jax.dataset import attack_dataset
from jsma_jax.batching import bucket_size
from jsma_jax.curves import Curve
from jsma_jax.curves import robustness_curve
from jsma_jax.distance import adversarial_distance_all
from jsma_jax.distance import adversarial_distance_of
from jsma_jax.distributed import jsma_local, jsma_sharded
from jsma_jax.drivers import Problem
from jsma_jax.family import maximal_rule
from jsma_jax.family import tjsma_rule
from jsma_jax.family import untargeted_rule
from jsma_jax.drivers import register_driver
from jsma_jax.jacobian import forward_derivative
from jsma_jax.jacobian import target_rows
from jsma_jax.metrics import Summary
from jsma_jax.metrics import summarize
from jsma_jax.options import AttackOptions
from jsma_jax.options import EngineOptions
from jsma_jax.options import max_iterations
from jsma_jax.rewrite import loop_friendly
from jsma_jax.rules import SaliencyRule
from jsma_jax.rules import jsma_rule
from jsma_jax.rules import wjsma_rule
from jsma_jax.saliency import best_feature
from jsma_jax.saliency import best_pair
from jsma_jax.saliency import pairwise_saliency
from jsma_jax.saliency import single_feature_saliency
from jsma_jax.step import StepInfo
from jsma_jax.step import step
from jsma_jax.targets import all_other_targets
from jsma_jax.targets import other_classes
from jsma_jax.targets import random_targets
from jsma_jax.types import AttackState
from jsma_jax.types import Choice
from jsma_jax.types import Decision
from jsma_jax.types import JSMAResult
from jsma_jax.types import Maps
from jsma_jax.types import StepView
from jsma_jax.types import StopReason

from jsma_jax._version import __version__

__all__ = [
    "AttackOptions",
    "AttackState",
    "Choice",
    "Curve",
    "Decision",
    "EngineOptions",
    "JSMAResult",
    "Maps",
    "Problem",
    "SaliencyRule",
    "StepInfo",
    "StepView",
    "StopReason",
    "Summary",
    "adversarial_distance_all",
    "adversarial_distance_of",
    "all_other_targets",
    "attack_dataset",
    "best_feature",
    "best_pair",
    "bucket_size",
    "cache_size",
    "enable_compile_cache",
    "forward_derivative",
    "jsma",
    "jsma_rule",
    "jsma_local",
    "jsma_sharded",
    "loop_friendly",
    "lower",
    "max_iterations",
    "maximal_rule",
    "metrics",
    "other_classes",
    "pairwise_saliency",
    "random_targets",
    "robustness_curve",
    "register_driver",
    "single_feature_saliency",
    "step",
    "summarize",
    "target_rows",
    "tjsma_rule",
    "untargeted_rule",
    "wjsma_rule",
]
