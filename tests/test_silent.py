"""Never a silently wrong result: each scenario from the user's side (stale traces, unseen weights, NaN,
traced values)."""

from __future__ import annotations

import functools
import warnings

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models
from flax import nnx

import jsma_jax
from jsma_jax import StopReason, jsma

SHAPE = (3, 4)
N = 5


class MLP(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(12, 16, rngs=rngs)
    self.out = nnx.Linear(16, N, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.hidden(x.reshape(x.shape[0], -1))))


class LinenMLP(linen.Module):
  @linen.compact
  def __call__(self, x):
    return linen.Dense(N)(jnp.tanh(linen.Dense(16)(x.reshape(x.shape[0], -1))))


def _inputs(n=6, seed=0):
  x = jnp.asarray(np.random.default_rng(seed).uniform(0, 0.6, size=(n,) + SHAPE), jnp.float32)
  return x, jnp.asarray(np.arange(n) % N, jnp.int32)


def _set_output_bias_to(module, cls):
  module.out.bias[...] = jnp.zeros(N).at[cls].set(100.0)  # the model now predicts `cls` everywhere


# ----------------------------------------------------------------- 1. stale weights


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["module", "closure"])
def test_nnx_module_weights_changed_in_place_are_seen(kind):
  model = MLP(nnx.Rngs(0))
  x, t = _inputs()
  fn = model if kind == "module" else (lambda x: model(x))
  jsma(fn, x, t, gamma=0.5, max_iter=1)
  before = jsma_jax.cache_size()
  _set_output_bias_to(model, 4)  # an optimiser step, a fine-tune
  r = jsma(fn, x, t, gamma=0.5, max_iter=1)
  np.testing.assert_array_equal(jnp.argmax(model(r.x_adv), axis=1), r.predicted)
  assert set(np.asarray(r.predicted).tolist()) == {4}
  np.testing.assert_array_equal(r.success, t == 4)
  assert jsma_jax.cache_size() == before  # new weights of the same shapes: no recompile


@pytest.mark.slow
def test_closure_over_arrays_is_not_stale():
  params = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(12, N)), jnp.float32)}
  fn = lambda x: x.reshape(x.shape[0], -1) @ params["w"]
  x, t = _inputs()
  jsma(fn, x, t, gamma=0.5)
  params["w"] = params["w"].at[:, 2].add(100.0)
  r = jsma(fn, x, t, gamma=0.5, max_iter=1)
  np.testing.assert_array_equal(jnp.argmax(fn(r.x_adv), axis=1), r.predicted)
  np.testing.assert_array_equal(r.success, t == 2)


@pytest.mark.parametrize("style", ["partial", "params="])
def test_linen_apply_with_variables_sees_new_variables(style):
  module = LinenMLP()
  x, t = _inputs()
  variables = module.init(jax.random.key(0), x)
  call = lambda v: jsma(functools.partial(module.apply, v), x, t, gamma=0.5, max_iter=1) if style == "partial" else \
      jsma(module.apply, x, t, params=v, gamma=0.5, max_iter=1)
  call(variables)
  before = jsma_jax.cache_size()
  bias = variables["params"]["Dense_0"]["bias"]  # the output layer (built first)
  new = jax.tree.map(lambda v: v, variables)
  new["params"]["Dense_0"]["bias"] = bias.at[3].set(100.0)
  r = call(new)
  np.testing.assert_array_equal(jnp.argmax(module.apply(new, r.x_adv), axis=1), r.predicted)
  np.testing.assert_array_equal(r.success, t == 3)
  assert jsma_jax.cache_size() == before


# ------------------------------------------------------------ 2. non-finite models


def test_nan_model_is_an_error_before_compiling():
  x, t = _inputs()
  before = jsma_jax.cache_size()
  with pytest.raises(ValueError, match=r"returned NaN or inf for 6 of 6 examples"):
    jsma(lambda x: jnp.full((x.shape[0], N), jnp.nan) * x.reshape(x.shape[0], -1)[:, :N], x, t, gamma=0.5)
  assert jsma_jax.cache_size() == before


def test_nan_appearing_mid_attack_has_its_own_stop_reason():
  w = jnp.asarray(np.random.default_rng(2).normal(size=(12, N)), jnp.float32)

  def blows_up(x):  # finite at the inputs, NaN once any feature passes 0.9
    flat = x.reshape(x.shape[0], -1)
    z = flat @ w
    return jnp.where(jnp.max(flat, axis=1, keepdims=True) > 0.9, jnp.nan, z)

  x, t = _inputs()
  r = jsma(blows_up, x, t, gamma=0.5)
  changed = np.asarray(r.iterations) > 0
  assert np.any(np.asarray(r.stop_reason) == StopReason.NON_FINITE)
  assert np.all(np.asarray(r.stop_reason)[changed] == StopReason.NON_FINITE)
  assert not np.any(np.asarray(r.success)[changed])
  assert jsma_jax.summarize(r).stop_reasons["NON_FINITE"] == int(np.sum(r.stop_reason == StopReason.NON_FINITE))


def test_nan_model_inside_a_trace_is_marked_not_disguised():
  x, t = _inputs()
  nan_model = lambda x: jnp.full((x.shape[0], N), jnp.nan) * x.reshape(x.shape[0], -1)[:, :N]
  r = jax.jit(lambda x, t: jsma(nan_model, x, t, gamma=0.5))(x, t)
  assert np.all(np.asarray(r.stop_reason) == StopReason.NON_FINITE)
  assert not np.any(np.asarray(r.success))


# ----------------------------------------------------- 3. invalid input under a trace


def test_invalid_examples_inside_a_users_jit_are_marked_and_untouched():
  model = MLP(nnx.Rngs(1))
  apply_fn, params = nnx.split(model)
  fn = lambda p, x: nnx.merge(apply_fn, p)(x)
  x, t = _inputs()
  x = x.at[1, 0, 0].set(2.0)  # outside the clip range
  t = t.at[2].set(N)  # target 10 of a 10-class model, here N of N
  r = jax.jit(lambda p, x, t: jsma(fn, x, t, params=p, gamma=0.5))(params, x, t)
  reasons = np.asarray(r.stop_reason)
  assert reasons[1] == StopReason.INVALID_INPUT and reasons[2] == StopReason.INVALID_INPUT
  np.testing.assert_array_equal(r.x_adv[1], x[1])
  np.testing.assert_array_equal(r.x_adv[2], x[2])
  assert not bool(r.success[1]) and not bool(r.success[2])
  assert np.all(reasons[[0, 3, 4, 5]] != StopReason.INVALID_INPUT)
  with pytest.raises(ValueError, match="targets must lie in"):  # outside a trace: an error, as before
    jsma(fn, x.at[1, 0, 0].set(0.5), t, params=params, gamma=0.5)


# -------------------------------------------------------------- 4. jacfwd, bounded


@pytest.mark.slow
def test_jacfwd_is_bounded_and_agrees_with_reduced():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(3, 1, N, spatial=6))
  x = jnp.asarray(np.random.default_rng(4).uniform(0, 0.5, size=(4, 6, 6, 1)), jnp.float32)
  t = jnp.arange(4, dtype=jnp.int32) % N
  a = jsma(toy_models.apply_cnn, x, t, params=params, gamma=0.3, jacobian="jacfwd", jvp_chunk=4)
  b = jsma(toy_models.apply_cnn, x, t, params=params, gamma=0.3, jacobian="reduced")
  np.testing.assert_array_equal(a.iterations, b.iterations)
  np.testing.assert_array_equal(a.stop_reason, b.stop_reason)
  small = jsma_jax.lower(toy_models.apply_cnn, x, t, params=params, gamma=0.3, jacobian="jacfwd", jvp_chunk=2)
  large = jsma_jax.lower(toy_models.apply_cnn, x, t, params=params, gamma=0.3, jacobian="jacfwd", jvp_chunk=36)
  temp = lambda low: low.compile().memory_analysis().temp_size_in_bytes
  assert temp(small) < temp(large)  # memory follows the chunk


# ------------------------------------------------------- 5. errors that say what to do


def _model_and_params():
  model = MLP(nnx.Rngs(2))
  graphdef, state = nnx.split(model)
  return (lambda p, x: nnx.merge(graphdef, p)(x)), nnx.to_pure_dict(state), model


CALL_ERRORS = {
    "params-missing-a-layer": (lambda f, p, m: (f, {"hidden": p["hidden"]}),
                               ValueError, "params does not fit logits_fn"),
    "wrong-kernel-shape": (lambda f, p, m: (f, {**p, "out": {**p["out"], "kernel": jnp.zeros((7, N))}}), ValueError,
                           "params does not fit logits_fn"),
    "params-to-one-argument-model": (lambda f, p, m: (m, p), TypeError, "takes one argument .x. but params= was given"),
    "two-argument-without-params": (lambda f, p, m: (f, None), TypeError, "params= was not given"),
}


@pytest.mark.parametrize("make,error,message", CALL_ERRORS.values(), ids=CALL_ERRORS.keys())
def test_call_convention_mistakes_name_the_fix(make, error, message):
  f, p, m = _model_and_params()
  fn, params = make(f, p, m)
  x, t = _inputs()
  before = jsma_jax.cache_size()
  with pytest.raises(error, match=message):
    jsma(fn, x, t, params=params, gamma=0.5)
  assert jsma_jax.cache_size() == before


def test_batchnorm_in_training_mode_names_inference_mode():
  class WithBN(nnx.Module):
    def __init__(self, rngs):
      self.lin = nnx.Linear(12, N, rngs=rngs)
      self.bn = nnx.BatchNorm(N, rngs=rngs)

    def __call__(self, x):
      return self.bn(self.lin(x.reshape(x.shape[0], -1)))

  x, t = _inputs()
  with pytest.raises(ValueError, match="inference mode"):
    jsma(WithBN(nnx.Rngs(0)), x, t, gamma=0.5)


def test_grad_through_jsma_is_zero():
  f, p, _ = _model_and_params()
  x, t = _inputs()
  grads = jax.grad(lambda p, x: jnp.sum(jsma(f, x, t, params=p, gamma=0.5).x_adv), argnums=(0, 1))(p, x)
  assert all(bool(jnp.all(g == 0)) for g in jax.tree.leaves(grads))


# ------------------------------------------------------------------- 6. smaller ones


def test_probabilities_output_gets_a_hint():
  w = jnp.asarray(np.random.default_rng(5).normal(size=(12, N)), jnp.float32)
  x, t = _inputs()
  with pytest.warns(UserWarning, match="expects logits"):
    jsma(lambda x: jax.nn.softmax(x.reshape(x.shape[0], -1) @ w), x, t, gamma=0.5)


@pytest.mark.slow
def test_theta_as_a_jax_scalar_and_traced():
  f, p, _ = _model_and_params()
  x, t = _inputs()
  plain = jsma(f, x, t, params=p, gamma=0.5, theta=-0.5)
  scalar = jsma(f, x, t, params=p, gamma=0.5, theta=jnp.float32(-0.5))
  traced = jax.jit(lambda theta: jsma(f, x, t, params=p, gamma=0.5, theta=theta))(jnp.float32(-0.5))
  for r in (scalar, traced):
    np.testing.assert_array_equal(r.x_adv, plain.x_adv)


def test_numpy_float64_input_gives_no_warning():
  f, p, _ = _model_and_params()
  x, t = _inputs()
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    r = jsma(f, np.asarray(x, np.float64), np.asarray(t), params=p, gamma=0.5)
  assert r.x_adv.dtype == jnp.float32


# ------------------------------------------------- the attack core: scale, bounds and theta under a trace


def _linear(seed=7, m=12, n=N):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(m, n)), jnp.float32)


def test_a_python_number_in_params_is_data_not_a_constant_of_the_trace():
  w = _linear()
  apply = lambda p, x: (x.reshape(x.shape[0], -1) @ p["w"]) * p["scale"]
  x, t = _inputs()
  jsma(apply, x, t, params={"w": w, "scale": 1.0}, gamma=0.5)
  r = jsma(apply, x, t, params={"w": w, "scale": -1.0}, gamma=0.5)
  fresh = jsma(lambda p, x: apply(p, x), x, t, params={"w": w, "scale": -1.0}, gamma=0.5)  # never seen before
  np.testing.assert_array_equal(r.x_adv, fresh.x_adv)
  np.testing.assert_array_equal(r.predicted, jnp.argmax(apply({"w": w, "scale": -1.0}, r.x_adv), axis=1))


def test_two_leaves_made_as_one_array_stay_two_weights():
  w = _linear()
  apply = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b1"] + 2.0 * p["b2"]
  x, t = _inputs()
  zeros = jnp.zeros(N)
  jsma(apply, x, t, params={"w": w, "b1": zeros, "b2": zeros}, gamma=0.5)  # one object at the first call
  new = {"w": w, "b1": jnp.zeros(N).at[3].set(50.0), "b2": zeros}  # the model now predicts 3
  r = jsma(apply, x, t, params=new, gamma=0.5)
  assert set(np.asarray(r.predicted).tolist()) == {3}
  np.testing.assert_array_equal(r.success, t == 3)


@pytest.mark.slow
def test_linen_batchnorm_in_training_mode_is_refused_with_the_fix():
  class BN(linen.Module):
    @linen.compact
    def __call__(self, x, train):
      h = linen.BatchNorm(use_running_average=not train)(linen.Dense(16)(x.reshape(x.shape[0], -1)))
      return linen.Dense(N)(jnp.tanh(h))

  module, (x, t) = BN(), _inputs()
  variables = module.init(jax.random.key(0), x, train=False)
  train_mode = lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"])[0]
  with pytest.raises(ValueError, match=r"couples the examples of a batch.*inference mode"):
    jsma(train_mode, x, t, params=variables, gamma=0.5)
  r = jsma(lambda v, x: module.apply(v, x, train=False), x, t, params=variables, gamma=0.5)  # the fix
  assert r.x_adv.shape == x.shape


def test_normalising_by_batch_statistics_is_refused():
  w = _linear()
  coupled = lambda x: ((x - x.mean(0)) / (x.std(0) + 1e-3)).reshape(x.shape[0], -1) @ w
  x, t = _inputs()
  with pytest.raises(ValueError, match="couples the examples"):
    jsma(coupled, x, t, gamma=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [2.0 ** 66, 2.0 ** -75, 1e20, 1e-22])
@pytest.mark.parametrize("pairwise", [True, False])
def test_choices_do_not_depend_on_the_scale_of_the_logits(scale, pairwise):
  # Scores are products of two derivatives: at 2 ** 66 they overflow float32, at 2 ** -75 they underflow.
  w = _linear(seed=3)
  x, t = _inputs(n=8, seed=4)
  f = lambda x: x.reshape(x.shape[0], -1) @ w
  base = jsma(f, x, t, gamma=0.5, pairwise=pairwise)
  scaled = jsma(lambda x: f(x) * scale, x, t, gamma=0.5, pairwise=pairwise)
  np.testing.assert_array_equal(scaled.x_adv, base.x_adv)
  np.testing.assert_array_equal(scaled.stop_reason, base.stop_reason)


@pytest.mark.parametrize("bad", [0.0, float("nan"), float("inf")])
def test_an_invalid_theta_under_a_trace_is_invalid_input_with_x_unchanged(bad):
  f, p, _ = _model_and_params()
  x, t = _inputs()
  r = jax.jit(lambda theta: jsma(f, x, t, params=p, gamma=0.5, theta=theta))(jnp.float32(bad))
  assert set(np.asarray(r.stop_reason).tolist()) == {StopReason.INVALID_INPUT}
  np.testing.assert_array_equal(r.x_adv, x)
  assert not np.any(r.success)


def test_bounds_crossed_under_a_trace_are_invalid_input():
  f, p, _ = _model_and_params()
  x, t = _inputs()
  r = jax.jit(lambda lo, hi: jsma(f, x, t, params=p, gamma=0.5, clip_min=lo, clip_max=hi))(jnp.float32(1.0),
                                                                                            jnp.float32(0.5))
  assert set(np.asarray(r.stop_reason).tolist()) == {StopReason.INVALID_INPUT}


def test_finite_outputs_at_the_target_succeed_even_with_infinite_derivatives():
  v = _linear(seed=9)
  f = lambda x: jnp.sqrt(x.reshape(x.shape[0], -1)) @ v  # d sqrt(x)/dx is inf at x = 0
  x, _ = _inputs(n=6)
  x = x.at[:, 0].set(0.0)
  predicted = jnp.argmax(f(x), axis=1)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # targets == predictions on purpose
    r = jsma(f, x, predicted, gamma=0.5)
  assert set(np.asarray(r.stop_reason).tolist()) == {StopReason.SUCCESS}
  assert np.all(r.success)
  elsewhere = (predicted + 1) % N  # not there yet: the infinite derivative stops it, as NON_FINITE
  r = jsma(f, x, elsewhere, gamma=0.5)
  assert set(np.asarray(r.stop_reason).tolist()) == {StopReason.NON_FINITE}


@pytest.mark.parametrize("kind", ["pure_callback", "io_callback"])
def test_a_model_calling_host_code_is_refused_before_compiling(kind):
  from jax.experimental import io_callback

  w = _linear()
  callback = jax.pure_callback if kind == "pure_callback" else io_callback
  f = lambda x: callback(np.tanh, jax.ShapeDtypeStruct(x.shape, x.dtype), x).reshape(x.shape[0], -1) @ w
  x, t = _inputs()
  before = jsma_jax.cache_size()
  with pytest.raises(ValueError, match=f"calls host code \\(jax.{kind}\\).*fix: write the model in JAX"):
    jsma(f, x, t, gamma=0.5)
  assert jsma_jax.cache_size() == before


@pytest.mark.slow
def test_a_host_callback_with_a_derivative_and_a_vmap_method_is_attacked():
  w = _linear()

  @jax.custom_jvp
  def host_tanh(v):
    return jax.pure_callback(np.tanh, jax.ShapeDtypeStruct(v.shape, v.dtype), v, vmap_method="sequential")

  host_tanh.defjvp(lambda primals, tangents: (host_tanh(primals[0]), tangents[0] * (1 - host_tanh(primals[0]) ** 2)))
  x, t = _inputs()
  r = jsma(lambda x: host_tanh(x.reshape(x.shape[0], -1)) @ w, x, t, gamma=0.5)
  plain = jsma(lambda x: jnp.tanh(x.reshape(x.shape[0], -1)) @ w, x, t, gamma=0.5)
  np.testing.assert_array_equal(r.success, plain.success)


def test_a_budget_of_hours_is_announced():
  w = jnp.ones((3 * 128 * 128, 2), jnp.float32)
  f = lambda x: x.reshape(x.shape[0], -1) @ w
  x, t = jnp.zeros((1, 128, 128, 3)), jnp.array([1])
  opts = jsma_jax.AttackOptions()
  lowered = lambda **kw: jsma_jax.lower(f, x, t, **kw)
  with pytest.warns(UserWarning, match="allows 12,288 iterations per example.*pass max_iter="):
    lowered(gamma=0.5)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    lowered(gamma=0.5, max_iter=20)  # a budget given in iterations is the one meant
    assert opts.budget(784) == 56  # MNIST's default budget stays quiet


@pytest.mark.slow
def test_a_long_attack_reports_its_iterations_and_the_result_does_not_change():
  f, p, _ = _model_and_params()
  x, t = _inputs()
  seen = []
  with jsma_jax.progress.listening(lambda iteration, running: seen.append((iteration, running))):
    reported = jsma(f, x, t, params=p, gamma=0.5, max_iter=12, progress_every=3)
    jax.effects_barrier()
  quiet = jsma(f, x, t, params=p, gamma=0.5, max_iter=12)
  for name in ("x_adv", "iterations", "stop_reason"):
    np.testing.assert_array_equal(getattr(reported, name), getattr(quiet, name))
  assert seen and all(i % 3 == 0 and 0 < i <= 12 and 0 < r <= len(t) for i, r in seen)


def test_attack_dataset_shows_the_iteration_reached_on_long_budgets(monkeypatch):
  from jsma_jax import dataset

  class Bar:
    def __init__(self):
      self.postfixes = []

    def update(self, n):
      pass

    def set_postfix(self, **fields):
      self.postfixes.append(fields)

    def close(self):
      pass

  bar = Bar()
  monkeypatch.setattr(dataset, "_progress", lambda total, description: bar)
  monkeypatch.setattr(dataset, "LONG_ATTACK", 40)  # a 12-feature toy: a long budget is a small one
  # Target 0 gains 0.001 per unit of any feature while class 4 leads by 4: 40 steps of 0.01 never get there.
  w = jnp.zeros((12, N)).at[:, 0].set(1e-3).at[:, 1].set(-1e-3)
  x, _ = _inputs()
  r = jsma_jax.attack_dataset(lambda x: x.reshape(x.shape[0], -1) @ w + jnp.arange(N), x, jnp.zeros(6, jnp.int32),
                              max_iter=40, pairwise=False, theta=0.01, chunk_size=3)
  assert set(r.stop_reason.tolist()) == {StopReason.BUDGET_SPENT}
  iterations = [fields["iteration"] for fields in bar.postfixes if "iteration" in fields]
  assert iterations and iterations[-1].endswith("/40") and any(v.startswith("10/") for v in iterations)
