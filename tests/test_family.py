"""The JSMA family (jsma_jax.family): each rule against its NumPy reference, and the core's transformations.

Run with ``pytest -p xdist -n 2 tests/test_family.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_family
import tiers
import toy_models

import jsma_jax
from jsma_jax import StopReason, jsma
from jsma_jax.family import maximal_rule, tjsma_rule, untargeted_rule

RULES = {"tjsma": tjsma_rule, "untargeted": untargeted_rule, "maximal": maximal_rule}


class Case(NamedTuple):
  variant: str  # a key of RULES
  model: str  # "mlp-tanh" | "mlp-relu" | "cnn"
  feature_shape: tuple
  num_classes: int
  theta: float
  gamma: float
  pairwise: bool = True
  initial_domain: str = "movable"
  clip: tuple = (0.0, 1.0)
  engine: tuple = ()  # engine options as (name, value) pairs: pruned search, few slots, lockstep


PRUNED = (("slots", 2), ("candidates", 2), ("region", 0))
CASES = {
    "tjsma-mlp-tanh-N4-increase": Case("tjsma", "mlp-tanh", (12,), 4, 1.0, 0.5),
    "tjsma-mlp-relu-N5-decrease-pruned-2-slots": Case("tjsma", "mlp-relu", (3, 5), 5, -1.0, 0.5, engine=PRUNED),
    "tjsma-mlp-tanh-fractional-clip-1-2": Case("tjsma", "mlp-tanh", (12,), 3, 0.45, 0.6, clip=(-1.0, 2.0)),
    "tjsma-mlp-relu-single-fractional-decrease": Case("tjsma", "mlp-relu", (14,), 4, -0.4, 0.5, pairwise=False),
    "tjsma-cnn-increase-all-domain": Case("tjsma", "cnn", (5, 5, 1), 3, 1.0, 0.3, initial_domain="all"),
    "untargeted-mlp-tanh-N4-increase": Case("untargeted", "mlp-tanh", (12,), 4, 1.0, 0.5),
    "untargeted-mlp-relu-decrease-pruned-2-slots": Case("untargeted", "mlp-relu", (3, 5), 5, -1.0, 0.4, engine=PRUNED),
    "untargeted-mlp-tanh-fractional": Case("untargeted", "mlp-tanh", (12,), 3, 0.3, 0.4),
    "untargeted-mlp-relu-single-decrease-fractional": Case("untargeted", "mlp-relu", (14,), 4, -0.35, 0.4,
                                                           pairwise=False),
    "untargeted-cnn-decrease": Case("untargeted", "cnn", (5, 5, 1), 3, -1.0, 0.3),
    "maximal-mlp-tanh-N4-lockstep": Case("maximal", "mlp-tanh", (12,), 4, 1.0, 0.5, engine=(("schedule", "lockstep"),)),
    "maximal-mlp-relu-N5-fractional-pruned-2-slots": Case("maximal", "mlp-relu", (3, 5), 5, 0.35, 0.5, engine=PRUNED),
    "maximal-mlp-tanh-negative-theta-clip-1-2": Case("maximal", "mlp-tanh", (12,), 3, -0.6, 0.6, clip=(-1.0, 2.0)),
    "maximal-mlp-relu-single-fractional": Case("maximal", "mlp-relu", (14,), 4, 0.4, 0.4, pairwise=False),
    "maximal-mlp-tanh-single-all-domain": Case("maximal", "mlp-tanh", (10,), 3, 1.0, 0.6, pairwise=False,
                                               initial_domain="all"),
    "maximal-cnn": Case("maximal", "cnn", (5, 5, 1), 3, 1.0, 0.3),
}


def _models(case: Case, seed: int):
  if case.model == "cnn":
    params = toy_models.cnn_params(seed, case.feature_shape[-1], case.num_classes, spatial=case.feature_shape[0])
    return toy_models.apply_cnn, params, toy_models.jax_model_for_reference(toy_models.apply_cnn, params,
                                                                             case.feature_shape)
  activation = case.model.split("-")[1]
  params = toy_models.mlp_params(seed, case.feature_shape, case.num_classes)
  return toy_models.APPLY_MLP[activation], params, toy_models.numpy_mlp(params, activation)


def _labels(case: Case, ref_model, x, seed: int):
  """Random targets for targeted rules; for the others the predicted class (the last example: another class)."""
  rng = np.random.default_rng(seed)
  if reference_family.TARGETED[case.variant]:
    return rng.integers(0, case.num_classes, size=x.shape[0])
  pred = np.array([np.argmax(ref_model(v.reshape(-1))[0]) for v in x])
  pred[-1] = (pred[-1] + 1) % case.num_classes  # already misclassified: 0 iterations
  return pred


def run_both(case: Case, seed: int, batch: int = 5, **options):
  apply_fn, params, ref_model = _models(case, seed)
  lo, hi = case.clip
  x = toy_models.random_inputs(seed + 1, batch, case.feature_shape, low=lo, high=hi)
  labels = _labels(case, ref_model, x, seed + 2)
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), params)
    result = jsma(
        apply_fn, jnp.asarray(x, jnp.float64), jnp.asarray(labels), params=p64, rule=RULES[case.variant](),
        theta=case.theta, gamma=case.gamma, clip_min=lo, clip_max=hi, pairwise=case.pairwise,
        initial_domain=case.initial_domain, record_trace=True, **dict(case.engine), **options,
    )
    result = jax.tree.map(np.asarray, result)
  refs = [
      reference_family.reference_family(
          case.variant, ref_model, x[i], int(labels[i]), theta=case.theta, gamma=case.gamma, clip_min=lo,
          clip_max=hi, pairwise=case.pairwise, initial_domain=case.initial_domain,
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


def _seed(case: Case) -> int:
  return sum(map(ord, repr(case))) % 1000


@pytest.mark.parametrize("case", tiers.fast_few(CASES, ("tjsma-mlp-tanh-N4-increase", "untargeted-mlp-tanh-N4-increase",
                                                     "maximal-mlp-tanh-N4-lockstep")))
def test_matches_reference(case):
  result, refs = run_both(case, _seed(case))
  assert_agrees(result, refs)
  assert result.criterion == RULES[case.variant]().criterion
  lo, hi = case.clip
  assert np.all((result.x_adv >= lo) & (result.x_adv <= hi))
  moved = result.x_adv - toy_models.random_inputs(_seed(case) + 1, 5, case.feature_shape, low=lo, high=hi)
  if case.variant != "maximal":  # the direction of theta, really
    assert np.all(moved >= 0) if case.theta > 0 else np.all(moved <= 0)


def reference_only(case: Case, seed: int, batch: int = 5):
  _, _, ref_model = _models(case, seed)
  lo, hi = case.clip
  x = toy_models.random_inputs(seed + 1, batch, case.feature_shape, low=lo, high=hi)
  labels = _labels(case, ref_model, x, seed + 2)
  refs = [reference_family.reference_family(case.variant, ref_model, x[i], int(labels[i]), theta=case.theta,
                                            gamma=case.gamma, clip_min=lo, clip_max=hi, pairwise=case.pairwise,
                                            initial_domain=case.initial_domain) for i in range(batch)]
  return x, refs


def test_cases_reach_several_stop_reasons():
  """The table exercises success, budget and no-admissible stops, and Maximal JSMA moving both ways."""
  seen, moved_both_ways = set(), False
  for case in CASES.values():
    if case.model == "cnn":
      continue
    x, refs = reference_only(case, _seed(case))
    seen |= {r.stop_reason for r in refs}
    if case.variant == "maximal":
      for x0, r in zip(x, refs):
        d = (r.x_adv - x0).reshape(-1)
        moved_both_ways |= bool(np.any(d > 0) and np.any(d < 0))
  assert {1, 2, 3} <= seen, seen
  assert moved_both_ways


# --------------------------------------------------------------- transformations, every rule

ALL_RULES = {"jsma": jsma_jax.jsma_rule, "wjsma": jsma_jax.wjsma_rule, **RULES}
SHAPE, N = (3, 5), 4


def _same(r1, r2):
  for name in ("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted"):
    np.testing.assert_array_equal(np.asarray(getattr(r1, name)), np.asarray(getattr(r2, name)), err_msg=name)


def _labels_for(rule, pred):
  """Labels whose attacks take a few steps: targets other than the prediction, or the prediction as source."""
  return (pred + 1) % N if rule.targeted else pred


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_RULES, ids=ALL_RULES.keys())
def test_transformations(name):
  """batch == single examples, lockstep == refill, no recompile, finished examples frozen
  (the even examples are successful at the start); for the paper's rule and Maximal JSMA
  also jit == eager and inside a user's jit of vmap (the core's loop is the same for
  every rule, so the others need not pay for these slow checks)."""
  params, x, pred = _toy()
  rule = ALL_RULES[name]()
  done = pred if rule.targeted else (pred + 1) % N  # the criterion holds at x
  runs = pred if not rule.targeted else (pred + 1) % N  # attacks of a few steps
  frozen = np.arange(6) % 2 == 0
  labels = jnp.where(jnp.asarray(frozen), done, runs)
  run = lambda x, t, p=params, **kw: jsma(toy_models.apply_mlp_tanh, x, t, params=p, rule=rule, gamma=0.6,
                                          **{"theta": 0.5, **kw})
  batch = run(x, labels)
  assert batch.rule == name and batch.criterion == rule.criterion
  np.testing.assert_array_equal(np.asarray(batch.iterations)[frozen], 0)
  np.testing.assert_array_equal(np.asarray(batch.x_adv)[frozen], np.asarray(x)[frozen])
  assert np.all(np.asarray(batch.stop_reason)[frozen] == StopReason.SUCCESS)
  assert np.all(np.asarray(batch.iterations)[~frozen] > 0)
  assert np.all(np.asarray(batch.n_changed) <= 2 * jsma_jax.max_iterations(15, 0.6))
  for i in (1, 4):
    _same(jax.tree.map(lambda v: v[i:i + 1], batch), run(x[i:i + 1], labels[i:i + 1]))
  _same(batch, run(x, labels, schedule="lockstep"))
  if name in ("jsma", "maximal"):  # the two extremes of the family: one map, and 2N maps
    with jax.disable_jit():  # one example that runs (op by op: slow)
      eager = run(x[1:2], labels[1:2])
    _same(jax.tree.map(lambda v: v[1:2], batch), eager)
    stacked = jax.jit(jax.vmap(lambda x, t: run(x, t)))(x.reshape(2, 3, *SHAPE), labels.reshape(2, 3))
    _same(batch, jax.tree.map(lambda v: v.reshape((6,) + v.shape[2:]), stacked))
  compiled = jsma_jax.cache_size()
  run(x + 0.0, labels)
  run(x, labels, p=jax.tree.map(lambda v: v * 1.5, params))
  run(x, labels, theta=-0.25)  # theta is data: its sign never recompiles
  assert jsma_jax.cache_size() == compiled


_TOY = {}


def _toy():
  if not _TOY:
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(31, SHAPE, N))
    x = jnp.asarray(toy_models.random_inputs(32, 6, SHAPE), jnp.float32)
    pred = jnp.argmax(toy_models.apply_mlp_tanh(params, x), axis=1).astype(jnp.int32)
    _TOY["v"] = (params, x, pred)
  return _TOY["v"]
