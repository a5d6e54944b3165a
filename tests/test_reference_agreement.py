"""The library returns what the NumPy reference returns, example by example."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference
import tiers
import toy_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jsma_jax


class Case(NamedTuple):
  model: str  # "mlp-tanh" | "mlp-relu" | "cnn"
  feature_shape: tuple
  num_classes: int
  theta: float
  gamma: float
  pairwise: bool = True
  initial_domain: str = "movable"
  clip: tuple = (0.0, 1.0)


CASES = {
    "mlp-tanh-flat12-N3-increase": Case("mlp-tanh", (12,), 3, 1.0, 0.5),
    "mlp-relu-5x6-N10-increase": Case("mlp-relu", (5, 6), 10, 1.0, 0.3),
    "mlp-tanh-4x4x2-N4-decrease": Case("mlp-tanh", (4, 4, 2), 4, -1.0, 0.4),
    "mlp-tanh-binary": Case("mlp-tanh", (10,), 2, 1.0, 0.6),
    "mlp-tanh-fractional-increase": Case("mlp-tanh", (12,), 3, 0.3, 0.6),
    "mlp-relu-fractional-decrease": Case("mlp-relu", (3, 5), 4, -0.45, 0.6),
    "mlp-tanh-single-increase": Case("mlp-tanh", (16,), 5, 1.0, 0.4, pairwise=False),
    "mlp-relu-single-decrease": Case("mlp-relu", (16,), 5, -1.0, 0.4, pairwise=False),
    "mlp-relu-single-fractional": Case("mlp-relu", (16,), 5, 0.4, 0.5, pairwise=False),
    "mlp-tanh-all-domain": Case("mlp-tanh", (12,), 3, 1.0, 0.7, initial_domain="all"),
    "mlp-relu-all-domain-decrease": Case("mlp-relu", (12,), 3, -1.0, 0.7, initial_domain="all"),
    "mlp-tanh-clip-minus1-2": Case("mlp-tanh", (12,), 4, 0.7, 0.6, clip=(-1.0, 2.0)),
    "cnn-relu-6x6x2-N5-increase": Case("cnn", (6, 6, 2), 5, 1.0, 0.25),
    "cnn-relu-6x6x1-N3-decrease-fractional": Case("cnn", (6, 6, 1), 3, -0.6, 0.4),
}


def _models(case: Case, seed: int):
  if case.model == "cnn":
    params = toy_models.cnn_params(seed, case.feature_shape[-1], case.num_classes, spatial=case.feature_shape[0])
    apply_fn = toy_models.apply_cnn
    ref_model = toy_models.jax_model_for_reference(apply_fn, params, case.feature_shape)
  else:
    activation = case.model.split("-")[1]
    params = toy_models.mlp_params(seed, case.feature_shape, case.num_classes)
    apply_fn = toy_models.APPLY_MLP[activation]
    ref_model = toy_models.numpy_mlp(params, activation)
  return apply_fn, params, ref_model


def run_both(case: Case, seed: int, batch: int = 6, jacobian: str = "auto", **options):
  apply_fn, params, ref_model = _models(case, seed)
  lo, hi = case.clip
  x = toy_models.random_inputs(seed + 1, batch, case.feature_shape, low=lo, high=hi)
  targets = np.random.default_rng(seed + 2).integers(0, case.num_classes, size=batch)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
    result = jsma_jax.jsma(
        apply_fn, jnp.asarray(x, jnp.float64), jnp.asarray(targets), params=p64, theta=case.theta,
        gamma=case.gamma, clip_min=lo, clip_max=hi, pairwise=case.pairwise, jacobian=jacobian,
        initial_domain=case.initial_domain, record_trace=True, **options,
    )
    result = jax.tree.map(np.asarray, result)
  refs = [
      reference.reference_jsma(
          ref_model, x[i], int(targets[i]), theta=case.theta, gamma=case.gamma, clip_min=lo, clip_max=hi,
          pairwise=case.pairwise, initial_domain=case.initial_domain,
      )
      for i in range(batch)
  ]
  return result, refs


def assert_agrees(result, refs):
  for i, ref in enumerate(refs):
    where = f"example {i}"
    assert result.stop_reason[i] == ref.stop_reason, where
    assert result.iterations[i] == ref.iterations, where
    assert bool(result.success[i]) == ref.success, where
    assert result.predicted[i] == ref.predicted, where
    assert result.n_changed[i] == ref.n_changed, where
    np.testing.assert_array_equal(result.x_adv[i], ref.x_adv, err_msg=where)
    full_trace = ref.trace + [ref.n_changed] * (result.trace.shape[1] - len(ref.trace))
    np.testing.assert_array_equal(result.trace[i], full_trace, err_msg=where)


@pytest.mark.parametrize("case", tiers.fast_few(CASES, ("mlp-tanh-flat12-N3-increase", "mlp-relu-single-decrease")))
def test_matches_reference(case):
  result, refs = run_both(case, seed=sum(map(ord, repr(case))) % 1000)
  assert_agrees(result, refs)


SCHEDULES = {
    "lockstep": dict(schedule="lockstep"),
    "refill-1-slot-dense": dict(slots=1, candidates=0),
    "refill-2-slots-pruned-k2": dict(slots=2, candidates=2),
    "refill-4-slots-pruned-k5": dict(slots=4, candidates=5),
    "refill-2-slots-k2-no-region": dict(slots=2, candidates=2, region=0),
    "refill-3-slots-k2-region4": dict(slots=3, candidates=2, region=4),
}


@pytest.mark.slow
@pytest.mark.parametrize("options", SCHEDULES.values(), ids=SCHEDULES.keys())
@pytest.mark.parametrize(
    "name", ["mlp-relu-5x6-N10-increase", "mlp-tanh-4x4x2-N4-decrease", "mlp-relu-fractional-decrease",
             "mlp-tanh-all-domain", "cnn-relu-6x6x2-N5-increase", "mlp-relu-single-decrease"]
)
def test_schedules_and_pruned_search_match_reference(name, options):
  case = CASES[name]
  result, refs = run_both(case, seed=sum(map(ord, repr(case))) % 1000, batch=7, **options)
  assert_agrees(result, refs)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["jacfwd", "jacrev", "reduced"])
def test_every_jacobian_mode_matches_reference(mode):
  result, refs = run_both(CASES["mlp-relu-5x6-N10-increase"], seed=3, jacobian=mode)
  assert_agrees(result, refs)


@pytest.mark.slow
def test_cases_reach_every_stop_reason():
  """The table above exercises success, budget and no-admissible stops for real."""
  seen = set()
  for case in CASES.values():
    result, _ = run_both(case, seed=sum(map(ord, repr(case))) % 1000)
    seen |= set(result.stop_reason.tolist())
  assert {1, 2, 3} <= seen, seen


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    activation=st.sampled_from(["tanh", "relu"]),
    shape=st.sampled_from([(8,), (3, 4), (2, 3, 2)]),
    num_classes=st.integers(2, 6),
    theta=st.sampled_from([1.0, -1.0, 0.35, -0.6]),
    gamma=st.sampled_from([0.4, 0.75, 1.0]),
    pairwise=st.booleans(),
    initial_domain=st.sampled_from(["movable", "all"]),
    slots=st.integers(1, 3),
    candidates=st.sampled_from([0, 2, 4]),
    region=st.sampled_from([None, 0, 3]),
)
def test_property_random_models_match_reference(
    seed, activation, shape, num_classes, theta, gamma, pairwise, initial_domain, slots, candidates, region
):
  case = Case(f"mlp-{activation}", shape, num_classes, theta, gamma, pairwise, initial_domain)
  result, refs = run_both(case, seed=seed, batch=3, slots=slots, candidates=candidates, region=region)
  assert_agrees(result, refs)
  m = math.prod(shape)
  budget = jsma_jax.max_iterations(m, gamma, pairwise=pairwise)
  assert np.all(result.n_changed <= (2 if pairwise else 1) * budget)
  assert np.all((result.x_adv >= 0) & (result.x_adv <= 1))
