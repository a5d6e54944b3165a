"""Transformations and properties of the attack loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models

import jsma_jax
from jsma_jax import StopReason, jsma

SHAPE = (4, 5)
N = 4


@pytest.fixture(scope="module")
def model():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(11, SHAPE, N))
  x = jnp.asarray(toy_models.random_inputs(12, 8, SHAPE), jnp.float32)
  targets = jnp.asarray(np.random.default_rng(13).integers(0, N, size=8), jnp.int32)
  return toy_models.apply_mlp_tanh, params, x, targets


def _same(r1, r2):
  for name in ("x_adv", "success", "iterations", "n_changed", "stop_reason", "predicted"):
    np.testing.assert_array_equal(getattr(r1, name), getattr(r2, name), err_msg=name)


def test_result_fields_shapes_and_dtypes(model):
  apply_fn, params, x, t = model
  r = jsma(apply_fn, x, t, params=params, gamma=0.5)
  assert r.x_adv.shape == x.shape and r.x_adv.dtype == x.dtype
  for name, dtype in (("success", jnp.bool_), ("iterations", jnp.int32), ("n_changed", jnp.int32),
                      ("stop_reason", jnp.int32), ("predicted", jnp.int32)):
    assert getattr(r, name).shape == (8,) and getattr(r, name).dtype == dtype, name
  assert r.trace is None
  assert set(np.asarray(r.stop_reason).tolist()) <= {1, 2, 3, 4}
  np.testing.assert_array_equal(r.success, r.stop_reason == StopReason.REACHED_TARGET)
  np.testing.assert_array_equal(r.predicted, jnp.argmax(apply_fn(params, r.x_adv), axis=1))
  np.testing.assert_array_equal(r.n_changed, jnp.sum(r.x_adv != x, axis=(1, 2)))


@pytest.mark.slow
def test_jit_equals_eager(model):
  apply_fn, params, x, t = model
  r_jit = jsma(apply_fn, x, t, params=params, gamma=0.5)
  with jax.disable_jit():
    r_eager = jsma(apply_fn, x[:3], t[:3], params=params, gamma=0.5)
  _same(jax.tree.map(lambda v: v[:3], r_jit), r_eager)


def test_an_exported_attack_serialises_and_returns_the_same_result(model):
  """``jax.export``: the attack as a serialised program, its JSMAResult and metadata intact."""
  apply_fn, params, x, t = model
  fn = jax.jit(lambda p, x, t: jsma(apply_fn, x, t, params=p, gamma=0.5,
                                    rule=jsma_jax.maximal_rule(), record_trace=True))
  blob = jax.export.export(fn)(params, x, t).serialize()
  got, want = jax.export.deserialize(blob).call(params, x, t), fn(params, x, t)
  assert (got.rule, got.criterion) == (want.rule, want.criterion) == ("maximal", want.criterion)
  _same(got, want)
  np.testing.assert_array_equal(got.trace, want.trace)


def test_batch_equals_loop_over_examples(model):
  apply_fn, params, x, t = model
  batch = jsma(apply_fn, x, t, params=params, gamma=0.5)
  for i in range(x.shape[0]):
    one = jsma(apply_fn, x[i : i + 1], t[i : i + 1], params=params, gamma=0.5)
    _same(jax.tree.map(lambda v: v[i : i + 1], batch), one)


def test_inside_user_jit_and_vmap(model):
  apply_fn, params, x, t = model
  direct = jsma(apply_fn, x, t, params=params, gamma=0.5)
  inside = jax.jit(lambda p, x, t: jsma(apply_fn, x, t, params=p, gamma=0.5))(params, x, t)
  _same(direct, inside)
  # vmap of the batched attack over an extra leading axis of batches
  stacked = jax.vmap(lambda x, t: jsma(apply_fn, x, t, params=params, gamma=0.5))(x.reshape(2, 4, *SHAPE),
                                                                                  t.reshape(2, 4))
  _same(direct, jax.tree.map(lambda v: v.reshape((8,) + v.shape[2:]), stacked))


def test_example_already_at_target_is_untouched(model):
  apply_fn, params, x, _ = model
  pred = jnp.argmax(apply_fn(params, x), axis=1).astype(jnp.int32)
  r = jsma(apply_fn, x, pred, params=params)
  np.testing.assert_array_equal(r.iterations, 0)
  np.testing.assert_array_equal(r.n_changed, 0)
  np.testing.assert_array_equal(r.x_adv, x)
  assert bool(jnp.all(r.success)) and bool(jnp.all(r.stop_reason == StopReason.REACHED_TARGET))


@pytest.mark.parametrize("theta", [1.0, -1.0, 0.3, -0.7])
@pytest.mark.parametrize("pairwise", [True, False], ids=["pairs", "single"])
def test_bounds_and_budget(model, theta, pairwise):
  apply_fn, params, x, t = model
  r = jsma(apply_fn, x, t, params=params, theta=theta, gamma=0.5, pairwise=pairwise, record_trace=True)
  budget = jsma_jax.max_iterations(20, 0.5, pairwise=pairwise)
  assert bool(jnp.all((r.x_adv >= 0) & (r.x_adv <= 1)))
  assert bool(jnp.all(r.iterations <= budget))
  assert bool(jnp.all(r.n_changed <= (2 if pairwise else 1) * budget))
  assert r.trace.shape == (8, budget + 1)
  np.testing.assert_array_equal(r.trace[:, -1], r.n_changed)
  assert bool(jnp.all(jnp.diff(r.trace, axis=1) >= 0))
  moved = r.x_adv - x
  assert bool(jnp.all(moved >= 0)) if theta > 0 else bool(jnp.all(moved <= 0))  # decreasing really decreases


def test_hitting_the_cap_is_failure(model):
  apply_fn, params, x, t = model
  r = jsma(apply_fn, x, t, params=params, max_iter=1)
  capped = r.stop_reason == StopReason.BUDGET_SPENT
  assert bool(jnp.any(capped))
  assert not bool(jnp.any(r.success & capped))
  assert bool(jnp.all(jnp.where(capped, r.iterations == 1, True)))


@pytest.mark.slow
def test_gamma_budget_on_mnist_shape():
  assert jsma_jax.max_iterations(784, 0.145) == 56
  assert jsma_jax.max_iterations(784, 0.145, pairwise=False) == 113
  assert jsma_jax.max_iterations(100, 0.5) == 25


def apply_ones(params, x):
  """Two classes; class 1 rises with every feature, class 0 falls: increasing always admissible."""
  s = jnp.sum(x.reshape(x.shape[0], -1) * params, axis=1)
  return jnp.stack([-s, s - 100.0], axis=1)


def test_domain_exhausted():
  x = jnp.zeros((1, 3), jnp.float32)
  r = jsma(apply_ones, x, jnp.array([1]), params=jnp.ones(3), max_iter=5)
  # pairs: one pair changes 2 features, then 1 feature is left: domain exhausted
  assert int(r.stop_reason[0]) == StopReason.DOMAIN_EXHAUSTED and int(r.iterations[0]) == 1
  r = jsma(apply_ones, x, jnp.array([1]), params=jnp.ones(3), max_iter=5, pairwise=False)
  assert int(r.stop_reason[0]) == StopReason.DOMAIN_EXHAUSTED and int(r.iterations[0]) == 3


@pytest.mark.slow
def test_no_admissible_pair_stops_without_change():
  # every feature pushes towards class 0: nothing raises class 1 while lowering the others
  x = jnp.full((1, 4), 0.5, jnp.float32)
  r = jsma(apply_ones, x, jnp.array([1]), params=-jnp.ones(4), gamma=1.0)
  assert int(r.stop_reason[0]) == StopReason.NO_ADMISSIBLE
  assert int(r.iterations[0]) == 0 and int(r.n_changed[0]) == 0


@pytest.mark.slow
def test_all_domain_can_waste_iterations_on_saturated_features():
  """Paper's literal domain: features already at clip_max may be picked (and then leave)."""
  x = jnp.array([[1.0, 1.0, 0.0, 0.0]], jnp.float32)
  w = jnp.array([4.0, 3.0, 1.0, 1.0])
  r_all = jsma(apply_ones, x, jnp.array([1]), params=w, gamma=1.0, initial_domain="all")
  r_mov = jsma(apply_ones, x, jnp.array([1]), params=w, gamma=1.0)
  assert int(r_all.iterations[0]) == 2 and int(r_all.n_changed[0]) == 2  # first pair (0, 1) changes nothing
  assert int(r_mov.iterations[0]) == 1 and int(r_mov.n_changed[0]) == 2


@pytest.mark.slow
def test_fractional_theta_picks_a_feature_until_it_saturates():
  x = jnp.zeros((1, 2), jnp.float32)
  r = jsma(apply_ones, x, jnp.array([1]), params=jnp.array([2.0, 1.0]),
           theta=0.4, gamma=1.0, pairwise=False, max_iter=4)
  # feature 0 is the most salient: 0.4, 0.8, 1.0 (saturated, leaves), then feature 1
  np.testing.assert_allclose(r.x_adv[0], [1.0, 0.4], rtol=1e-6)
  assert int(r.iterations[0]) == 4


def test_no_recompile_on_second_call_or_new_params(model):
  apply_fn, params, x, t = model
  traces = []

  def counted(params, x):
    traces.append(1)
    return apply_fn(params, x)

  jsma(counted, x, t, params=params, gamma=0.5)
  n = len(traces)
  assert n > 0
  jsma(counted, x + 0.0, t, params=params, gamma=0.5)
  jsma(counted, x, t, params=jax.tree.map(lambda v: v * 1.5, params), gamma=0.5)
  jsma(counted, x, t, params=params, gamma=0.5, theta=0.5)  # theta, clip bounds are data too
  assert len(traces) == n


@pytest.mark.slow
def test_probabilities_and_wjsma_rule_run(model):
  apply_fn, params, x, t = model
  for kwargs in ({"probabilities": True}, {"rule": jsma_jax.wjsma_rule()}):
    r = jsma(apply_fn, x, t, params=params, gamma=0.5, **kwargs)
    assert bool(jnp.all((r.x_adv >= 0) & (r.x_adv <= 1)))
    np.testing.assert_array_equal(r.success, r.predicted == t)


def test_one_argument_logits_fn_and_numpy_inputs(model):
  apply_fn, params, x, t = model
  f = jax.tree_util.Partial(apply_fn, params)
  r1 = jsma(f, np.asarray(x), np.asarray(t), gamma=0.5)
  r2 = jsma(apply_fn, x, t, params=params, gamma=0.5)
  _same(r1, r2)


@pytest.mark.slow
def test_refill_phases_equal_lockstep_on_a_large_batch():
  """slots=128 runs in two phases (128 then 16 slots) over 300 examples, each refilled many times."""
  from jsma_jax.refill import phase_widths

  assert phase_widths(128) == [128, 16]
  with jax.enable_x64(True):
    params = jax.tree.map(jnp.asarray, toy_models.mlp_params(21, SHAPE, N))
    x = jnp.asarray(toy_models.random_inputs(22, 300, SHAPE))
    t = jnp.asarray(np.random.default_rng(23).integers(0, N, size=300))
    refill = jsma(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.6, slots=128, candidates=6, record_trace=True)
    lock = jsma(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.6, schedule="lockstep", record_trace=True)
  _same(refill, lock)
  np.testing.assert_array_equal(refill.trace, lock.trace)
  assert len(set(np.asarray(refill.iterations).tolist())) > 3  # attacks of many lengths were interleaved


@pytest.mark.parametrize("cores,devices,slots", [(1, 1, 16), (2, 1, 16), (4, 1, 32), (8, 1, 64), (16, 1, 128),
                                                  (64, 1, 256), (2, 2, 16), (16, 2, 64), (16, 16, 16), (4, 8, 16)])
def test_cpu_default_slots_follow_the_cores(monkeypatch, cores, devices, slots):
  """8 slots per usable core of each CPU device, at least 16, at most 256 (one compiled phase below 128 slots)."""
  from jsma_jax import options

  monkeypatch.setattr(options.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
  monkeypatch.setattr(options.jax, "default_backend", lambda: "cpu")
  monkeypatch.setattr(options.jax, "local_devices", lambda backend=None: [object()] * devices)
  assert options.cpu_cores() == cores
  assert options.default_slots() == slots
  monkeypatch.setattr(options.jax, "default_backend", lambda: "gpu")
  assert options.default_slots() == 8192


def _lowered_text(apply_fn, params, x, t, **options) -> str:
  return jsma_jax.lower(apply_fn, x, t, params=params, gamma=0.5, jacobian="reduced", **options).as_text()


@pytest.mark.slow
def test_precision_reaches_the_models_matmuls_and_their_derivatives(model):
  """Full float32 by default (a GPU would otherwise use TF32); other precisions are passed through."""
  apply_fn, params, x, t = model
  dots = lambda text: [line for line in text.splitlines() if "stablehlo.dot_general" in line]
  highest = dots(_lowered_text(apply_fn, params, x, t))
  assert len(highest) >= 4  # the MLP's forward and backward matmuls
  assert all("precision = [HIGHEST, HIGHEST]" in line for line in highest)
  bf16 = dots(_lowered_text(apply_fn, params, x, t, precision="bfloat16"))
  assert len(bf16) == len(highest) and not any("HIGHEST" in line for line in bf16)
  _same(jsma(apply_fn, x, t, params=params, gamma=0.5), jsma(apply_fn, x, t, params=params, gamma=0.5, precision=None))
