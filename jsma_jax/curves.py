"""A model's L0 robustness curve for any JSMA variant, from one run.

Papernot et al. (EuroS&P 2016), Section IV-C (success against the maximum
distortion): the attack is deterministic and greedy and none of its choices
depends on the budget, so one run at the largest budget with the L0 trace
recorded gives the result at every smaller budget
(:func:`jsma_jax.metrics.budget_sweep`). This holds for every rule of the
family (their choices read the current state, never the budget).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jsma_jax import _validate, metrics
from jsma_jax.dataset import attack_dataset
from jsma_jax.rules import SaliencyRule


class Curve(NamedTuple):
  """Success and distortion against the budget, one entry per budget."""

  budgets: np.ndarray  # [K] int, budgets in changed features (as asked)
  max_iter: np.ndarray  # [K] int, the iterations each budget allows (budget // 2 for pairs)
  success_rate: np.ndarray  # [K] float, share of attacks successful within the budget
  mean_l0: np.ndarray  # [K] float, mean features changed over the successful attacks (nan when none)
  mean_l0_all: np.ndarray  # [K] float, mean features changed over all attacks
  success: np.ndarray  # [K, B] bool, per attack
  n_changed: np.ndarray  # [K, B] int, per attack
  rule: str  # the rule's name
  criterion: str  # what success means
  result: Any = None  # the JSMAResult (NumPy) of the one run, at the largest budget


def robustness_curve(
    logits_fn: Callable[..., Any],
    x: Any,
    labels: Any,
    *,
    params: Any = None,
    rule: SaliencyRule | None = None,
    budgets: Any = (2, 10, 20, 40, 60, 80, 100, 200, 300),
    progress: bool = False,
    **jsma_options: Any,
) -> Curve:
  """Success rate and mean L0 against the L0 budget, from ONE attack run at the largest budget.

  The run uses ``max_iter = max(budgets) // 2`` pair iterations (``max(budgets)``
  single-feature ones) and ``record_trace=True``; every budget ``b`` is then
  read off it as the run with ``max_iter = b // 2`` (``b``), exactly. A budget
  of ``b`` changed features allows ``b // 2`` pair iterations, so an odd budget
  counts as the even one below it. ``gamma`` and ``max_iter`` are not options
  here: the budgets set them.

  Args:
    logits_fn, params: the model, as for :func:`jsma_jax.jsma`.
    x: ``[B, *shape]`` inputs.
    labels: ``[B]`` int targets (sources for a non-targeted rule).
    rule: a :class:`~jsma_jax.SaliencyRule` (the paper's by default).
    budgets: ``[K]`` positive ints, changed features.
    progress: show a progress bar (:func:`jsma_jax.attack_dataset`).
    **jsma_options: any other option of :func:`jsma_jax.jsma` (``theta``,
      ``pairwise``, ``clip_min``, engine options, ...).

  Returns:
    :class:`Curve` with ``K`` entries per field (``[K, B]`` per attack).

  Example:
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> curve = robustness_curve(f, jnp.zeros((2, 4)), jnp.array([1, 1]), budgets=(2, 4), progress=False)
    >>> curve.budgets.tolist(), curve.success_rate.tolist()
    ([2, 4], [1.0, 1.0])
  """
  _validate.check_not_given("robustness_curve", jsma_options, ("gamma", "max_iter", "max_changes", "record_trace"))
  pairwise = bool(jsma_options.get("pairwise", True))
  budgets = _validate.check_budgets(budgets, pairwise=pairwise)
  iters = metrics.pixels_to_iterations(budgets, pairwise=pairwise)
  if rule is not None:
    jsma_options["rule"] = rule
  result = attack_dataset(logits_fn, x, labels, params=params, progress=progress, max_iter=int(iters.max()),
                          record_trace=True, **jsma_options)
  sweep = metrics.budget_sweep(result.success, result.iterations, result.trace, iters)
  n_changed = sweep.n_changed.astype(np.float64)
  with np.errstate(invalid="ignore"):
    wins = sweep.success.sum(axis=1)
    mean_l0 = np.where(wins > 0, (n_changed * sweep.success).sum(axis=1) / np.maximum(wins, 1), np.nan)
  return Curve(
      budgets=budgets.astype(np.int64), max_iter=iters, success_rate=sweep.success.mean(axis=1),
      mean_l0=mean_l0, mean_l0_all=n_changed.mean(axis=1), success=sweep.success, n_changed=sweep.n_changed,
      rule=result.rule, criterion=result.criterion, result=result,
  )
