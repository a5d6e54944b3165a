"""jsma-jax: the Jacobian-based Saliency Map Attack (Papernot et al., EuroS&P 2016) in JAX."""

from jsma_jax import metrics
from jsma_jax._version import __version__
from jsma_jax.attack import cache_size, jsma, lower
from jsma_jax.batching import bucket_size
from jsma_jax.compile_cache import enable as enable_compile_cache
from jsma_jax.curves import Curve, robustness_curve
from jsma_jax.dataset import attack_dataset
from jsma_jax.distance import adversarial_distance_all, adversarial_distance_of
from jsma_jax.distributed import jsma_local, jsma_sharded
from jsma_jax.drivers import Problem, register_driver
from jsma_jax.family import maximal_rule, tjsma_rule, untargeted_rule
from jsma_jax.jacobian import forward_derivative, target_rows
from jsma_jax.metrics import Summary, summarize
from jsma_jax.options import AttackOptions, EngineOptions, max_iterations
from jsma_jax.rewrite import loop_friendly
from jsma_jax.rules import SaliencyRule, jsma_rule, wjsma_rule
from jsma_jax.saliency import best_feature, best_pair, pairwise_saliency, single_feature_saliency
from jsma_jax.step import StepInfo, step
from jsma_jax.targets import all_other_targets, other_classes, random_targets
from jsma_jax.types import AttackState, Choice, Decision, JSMAResult, Maps, StepView, StopReason

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
    "__version__",
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
    "jsma_local",
    "jsma_rule",
    "jsma_sharded",
    "loop_friendly",
    "lower",
    "max_iterations",
    "maximal_rule",
    "metrics",
    "other_classes",
    "pairwise_saliency",
    "random_targets",
    "register_driver",
    "robustness_curve",
    "single_feature_saliency",
    "step",
    "summarize",
    "target_rows",
    "tjsma_rule",
    "untargeted_rule",
    "wjsma_rule",
]
