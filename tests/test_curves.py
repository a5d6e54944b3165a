"""robustness_curve: one run at the largest budget equals separate runs at each budget, exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models

import jsma_jax
from jsma_jax.curves import robustness_curve
from jsma_jax.family import maximal_rule, tjsma_rule

SHAPE, N = (4, 5), 4


@pytest.mark.slow
@pytest.mark.parametrize("rule, pairwise", [(jsma_jax.jsma_rule(), True), (tjsma_rule(), False),
                                            (maximal_rule(), True)], ids=["jsma-pairs", "tjsma-single", "maximal"])
def test_curve_equals_separate_runs(rule, pairwise):
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(41, SHAPE, N))
  x = jnp.asarray(toy_models.random_inputs(42, 8, SHAPE), jnp.float32)
  pred = jnp.argmax(toy_models.apply_mlp_relu(params, x), axis=1).astype(jnp.int32)
  labels = (pred + 1) % N if rule.targeted else pred
  budgets = (2, 6) if pairwise else (1, 3)
  curve = robustness_curve(toy_models.apply_mlp_relu, x, labels, params=params, rule=rule, budgets=budgets,
                           pairwise=pairwise, theta=0.6)
  assert curve.rule == rule.name and curve.success.shape == (2, 8)
  for k, budget in enumerate(budgets):
    r = jsma_jax.jsma(toy_models.apply_mlp_relu, x, labels, params=params, rule=rule, pairwise=pairwise,
                      theta=0.6, max_iter=budget // 2 if pairwise else budget)
    np.testing.assert_array_equal(curve.success[k], np.asarray(r.success))
    np.testing.assert_array_equal(curve.n_changed[k], np.asarray(r.n_changed))
    assert curve.success_rate[k] == np.mean(np.asarray(r.success))
    assert curve.mean_l0_all[k] == np.mean(np.asarray(r.n_changed))
    wins = np.asarray(r.success)
    if wins.any():
      assert curve.mean_l0[k] == np.mean(np.asarray(r.n_changed)[wins])
  assert np.all(np.diff(curve.success_rate) >= 0)
  assert 0 < curve.success_rate[-1] and curve.success_rate[0] < 1  # the budgets matter here


def test_curve_rejects_options_it_sets():
  with pytest.raises(TypeError, match="gamma"):
    robustness_curve(toy_models.apply_mlp_relu, np.zeros((1, 3)), np.zeros(1, int), gamma=0.2)
  with pytest.raises(ValueError, match="budgets"):
    robustness_curve(toy_models.apply_mlp_relu, np.zeros((1, 3)), np.zeros(1, int), budgets=(1,))
