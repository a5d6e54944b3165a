"""Tests of jsma_jax.metrics: hand-built values, and the budget-sweep shortcut against separate runs."""

from __future__ import annotations

import numpy as np
import pytest

from jsma_jax import distance, forward_derivative, jsma, metrics, target_rows
from tests import toy_models

NAN = float("nan")


@pytest.mark.parametrize(
    "success, n_changed, over, expected",
    [
        ([True, True, False], [2, 4, 100], "successful", 3 / 784),
        ([True, True, False], [2, 4, 100], "all", 106 / 3 / 784),
        ([False, False], [8, 8], "successful", NAN),
        ([], [], "all", NAN),
    ],
    ids=["successful", "all", "no-success-is-nan", "empty-is-nan"],
)
def test_mean_distortion(success, n_changed, over, expected):
  got = metrics.mean_distortion(n_changed, 784, success if over == "successful" else None)
  np.testing.assert_allclose(got, expected)


def test_summary_row():
  row = metrics.summary([True, False, True, True], [10, 50, 20, 30], 100)
  assert row == {"n": 4, "n_success": 3, "success_rate": 0.75,
                 "distortion_successful": pytest.approx(0.2), "distortion_all": pytest.approx(0.275)}


def test_pair_matrix_reductions_and_empty_cells():
  src, tgt = np.array([0, 0, 1, 2]), np.array([1, 1, 0, 1])
  vals = np.array([1.0, 3.0, 5.0, 7.0])
  mean = metrics.pair_matrix(vals, src, tgt, 3)
  assert mean[0, 1] == 2.0 and mean[1, 0] == 5.0 and mean[2, 1] == 7.0
  assert np.isnan(mean[0, 0]) and np.isnan(mean[1, 2])
  assert metrics.pair_matrix(vals, src, tgt, 3, reduce="count").sum() == 4
  assert metrics.pair_matrix(vals, src, tgt, 3, reduce="sum")[0, 1] == 4.0
  with pytest.raises(ValueError, match="reduce"):
    metrics.pair_matrix(vals, src, tgt, 3, reduce="max")


def test_pair_success_distortion():
  tau, eps = metrics.pair_success_distortion(
      [True, False, True, False], [4, 9, 8, 1], [0, 0, 1, 1], [1, 1, 0, 0], 2, 10)
  np.testing.assert_allclose(tau, [[NAN, 0.5], [0.5, NAN]])
  np.testing.assert_allclose(eps, [[NAN, 0.4], [0.8, NAN]])


@pytest.mark.parametrize(
    "tau, eps, expected",
    [
        ([0.5, 1.0], [0.02, 0.04], 0.5 * 0.03),
        ([0.0, 0.5, 1.0], [NAN, 0.02, 0.04], 0.5 * 0.01 + 0.5 * 0.03),
        ([0.2, 0.2, 0.2], [0.1, 0.2, 0.3], 0.0),
        ([0.0, 0.0], [NAN, NAN], 0.0),
    ],
    ids=["two-points", "no-success-counts-as-zero", "flat-success-is-zero", "never-succeeds"],
)
def test_hardness_trapezoid(tau, eps, expected):
  np.testing.assert_allclose(metrics.hardness(tau, eps), expected)


def test_hardness_batched_matches_numpy_trapezoid():
  rng = np.random.default_rng(0)
  tau = np.sort(rng.uniform(size=(3, 4, 6)), -1)
  eps = rng.uniform(size=(3, 4, 6))
  np.testing.assert_allclose(metrics.hardness(tau, eps), np.trapezoid(eps, tau, axis=-1))


def test_spearman_and_rankdata():
  np.testing.assert_array_equal(metrics.rankdata([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
  assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
  assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
  assert metrics.spearman([1, 2, NAN, 4], [1, 2, 5, 4]) == pytest.approx(1.0)  # nan dropped
  assert np.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))
  scipy_stats = pytest.importorskip("scipy.stats")
  rng = np.random.default_rng(1)
  x, y = rng.integers(0, 5, 40), rng.normal(size=40)
  assert metrics.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_adversarial_distance_hand_built():
  a = np.array([[1.0, 1.0, -1.0, 1.0]])
  b = np.array([[-1.0, 1.0, -1.0, -2.0]])
  # increasing: admissible a > 0 and b < 0: features 0 and 3 -> A = 1 - 2/4
  np.testing.assert_allclose(metrics.adversarial_distance(a, b), [0.5])
  # decreasing: a < 0 and b > 0: none -> A = 1
  np.testing.assert_allclose(metrics.adversarial_distance(a, b, increase=False), [1.0])
  assert metrics.robustness([0.5, 0.25, 1.0]) == {"min": 0.25, "mean": pytest.approx(1.75 / 3)}


def test_adversarial_distance_of_model_matches_rows_and_pads_batches():
  params = toy_models.mlp_params(0, (4, 4, 1), 5)
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(7, 4, 4, 1)).astype(np.float32)
  t = rng.integers(0, 5, 7)
  _, a, b = target_rows(toy_models.apply_mlp_tanh, x, t, params=params)
  want = metrics.adversarial_distance(a, b)
  got = distance.adversarial_distance_of(toy_models.apply_mlp_tanh, x, t, params=params, batch_size=3)
  np.testing.assert_allclose(got, want)
  assert ((got >= 0) & (got <= 1)).all()


@pytest.mark.parametrize("increase", [True, False], ids=["increase", "decrease"])
def test_adversarial_distance_all_equals_per_pair_and_a_numpy_reference(increase):
  """One Jacobian per example gives every class's A(x, t): the per-pair path's values, and a
  NumPy count over the full Jacobian (the sum of the other rows taken in float64)."""
  params = toy_models.mlp_params(1, (4, 4, 1), 5)
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(7, 4, 4, 1)).astype(np.float32)
  got = distance.adversarial_distance_all(toy_models.apply_mlp_tanh, x, params=params, increase=increase,
                                          batch_size=3)  # 3 chunks, the last padded
  assert got.shape == (7, 5) and got.dtype == np.float64
  src, t = np.repeat(np.arange(7), 5), np.tile(np.arange(5), 7)
  per_pair = distance.adversarial_distance_of(toy_models.apply_mlp_tanh, x[src], t, params=params,
                                              increase=increase)
  np.testing.assert_array_equal(got[src, t], per_pair)
  _, jac = forward_derivative(toy_models.apply_mlp_tanh, x, params=params)
  jac = np.asarray(jac, np.float64).reshape(7, 5, -1)
  want = np.empty((7, 5))
  for i in range(7):
    for c in range(5):
      a, b = jac[i, c], jac[i].sum(0) - jac[i, c]
      sa, sb = (a, b) if increase else (-a, -b)
      want[i, c] = 1 - np.mean((sa > 0) & (sb < 0))
  np.testing.assert_array_equal(got, want)
  assert len(np.unique(got)) > 3  # the classes differ: not a constant that would pass by accident


def test_adversarial_distance_all_refuses_a_bad_batch():
  with pytest.raises(ValueError, match="batch_size"):
    distance.adversarial_distance_all(toy_models.apply_mlp_tanh, np.zeros((2, 4, 4, 1), np.float32),
                                      params=toy_models.mlp_params(0, (4, 4, 1), 5), batch_size=0)
  with pytest.raises(ValueError, match="batch"):
    distance.adversarial_distance_all(toy_models.apply_mlp_tanh, np.zeros(4, np.float32))


# --------------------------------------------------------------------- sweep


@pytest.fixture(scope="module")
def sweep_setup():
  params = toy_models.mlp_params(3, (6, 6, 1), 4, hidden=12)
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 0.6, size=(24, 6, 6, 1)).astype(np.float32)
  t = rng.integers(0, 4, 24)
  return params, x, t


@pytest.mark.slow
@pytest.mark.parametrize("theta, pairwise, domain", [(1.0, True, "all"), (1.0, True, "movable"),
                                                     (-1.0, True, "movable"), (1.0, False, "all")],
                         ids=["pairs-all", "pairs-movable", "decrease", "single"])
def test_budget_sweep_equals_separate_runs(sweep_setup, theta, pairwise, domain):
  """One run at the largest budget gives every smaller budget exactly."""
  params, x, t = sweep_setup
  kw = dict(params=params, theta=theta, pairwise=pairwise, initial_domain=domain, schedule="lockstep")
  big = jsma(toy_models.apply_mlp_tanh, x, t, max_iter=12, record_trace=True, **kw)
  budgets = [1, 4, 12]
  sweep = metrics.budget_sweep(big.success, big.iterations, big.trace, budgets)
  assert sweep.success.shape == sweep.n_changed.shape == (3, 24)
  for k, m in enumerate(budgets):
    small = jsma(toy_models.apply_mlp_tanh, x, t, max_iter=m, **kw)
    np.testing.assert_array_equal(sweep.success[k], np.asarray(small.success), err_msg=f"budget {m}")
    np.testing.assert_array_equal(sweep.n_changed[k], np.asarray(small.n_changed), err_msg=f"budget {m}")
  assert (np.diff(sweep.success.astype(int), axis=0) >= 0).all()  # success only grows
  assert 0 < sweep.success[-1].mean() and sweep.success[0].mean() < sweep.success[-1].mean()


def test_budget_sweep_validates():
  with pytest.raises(ValueError, match="max_iters"):
    metrics.budget_sweep([True], [1], [[0, 2]], [2])
  with pytest.raises(ValueError, match="trace"):
    metrics.budget_sweep([True, False], [1, 1], [[0, 2]], [1])
  np.testing.assert_array_equal(metrics.pixels_to_iterations([2, 10, 113, 300]), [1, 5, 56, 150])


def test_hardness_matrix_from_sweep():
  # two pairs: (0 -> 1) succeeds at budget 1 with 2 features; (1 -> 0) only at budget 2 with 4
  sweep = metrics.Sweep(np.array([1, 2]), np.array([[True, False], [True, True]]), np.array([[2, 2], [2, 4]]))
  h, tau, eps = metrics.hardness_matrix(sweep, [0, 1], [1, 0], 2, 10)
  assert tau.shape == eps.shape == (2, 2, 2)
  np.testing.assert_allclose(h[0, 1], 0.0)  # tau flat at 1
  np.testing.assert_allclose(h[1, 0], 1.0 * (0.0 + 0.4) / 2)  # from (0, no eps) to (1, 0.4)
  assert np.isnan(h[0, 0]) and np.isnan(h[1, 1])
