"""prepare_model: weights are data for every kind of model; errors name the argument and the fix."""

from __future__ import annotations

import functools
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsma_jax.models import as_logits_fn
from jsma_jax.user_model import check_outputs, eval_closed_jaxpr, is_traced, prepare_model

X = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 2, 3)), jnp.float32)


class MLP(nnx.Module):
  def __init__(self, hidden: int = 8, *, seed: int = 0):
    rngs = nnx.Rngs(seed)
    self.l1 = nnx.Linear(6, hidden, rngs=rngs)
    self.l2 = nnx.Linear(hidden, 3, rngs=rngs)

  def __call__(self, x):
    return self.l2(jnp.tanh(self.l1(x.reshape(x.shape[0], -1))))


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(8)(x.reshape(x.shape[0], -1))
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.Dense(3)(jnp.tanh(x))


def apply_dict(params, x):
  return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"]) @ params["v"]


def dict_params(seed):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32),
          "v": jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)}


def _perturb(tree):
  return jax.tree.map(lambda a: a * 1.5 + 0.25, tree)


class Kind:
  """One way a user hands over a model: ``make()`` -> (logits_fn, params, reference, update)."""

  @staticmethod
  def nnx_module():
    m = MLP()
    def update():
      m.l2.kernel[...] = m.l2.kernel[...] * 1.5 + 0.25
    return m, None, lambda x: m(x), update

  @staticmethod
  def nnx_closure():
    m = MLP()
    def update():
      m.l1.bias[...] = m.l1.bias[...] + 0.5
    return (lambda x: m(x)), None, lambda x: m(x), update

  @staticmethod
  def dict_closure():
    params = dict_params(1)
    def update():
      params["w"] = params["w"] * 1.5 + 0.25
    return (lambda x: apply_dict(params, x)), None, lambda x: apply_dict(params, x), update

  @staticmethod
  def linen_partial():
    module = LinenMLP()
    variables = module.init(jax.random.key(0), X)
    def update():
      variables["params"]["Dense_0"]["kernel"] = variables["params"]["Dense_0"]["kernel"] * 1.5 + 0.25
    return functools.partial(module.apply, variables), None, lambda x: module.apply(variables, x), update

  @staticmethod
  def linen_apply_params():
    module = LinenMLP()
    box = {"v": module.init(jax.random.key(0), X)}
    def update():
      box["v"] = _perturb(box["v"])
    return module.apply, box, lambda x: module.apply(box["v"], x), update

  @staticmethod
  def plain_params():
    box = {"v": dict_params(2)}
    def update():
      box["v"] = _perturb(box["v"])
    return apply_dict, box, lambda x: apply_dict(box["v"], x), update


KINDS = ["nnx_module", "nnx_closure", "dict_closure", "linen_partial", "linen_apply_params", "plain_params"]


def _prepare(logits_fn, box, **kw):
  params = None if box is None else box["v"]
  return prepare_model(logits_fn, params, X.shape, X.dtype, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_new_weights_are_seen_and_do_not_recompile(kind):
  logits_fn, box, reference, update = getattr(Kind, kind)()
  traces = []

  def apply(fn, weights, x):
    traces.append(1)
    return fn(weights, x)

  apply = jax.jit(apply, static_argnums=0)
  first = _prepare(logits_fn, box)
  before = reference(X)
  np.testing.assert_allclose(apply(first.fn, first.weights, X), before, rtol=1e-5, atol=1e-6)
  update()
  second = _prepare(logits_fn, box)
  after = reference(X)
  assert not np.allclose(after, before)
  np.testing.assert_allclose(apply(second.fn, second.weights, X), after, rtol=1e-5, atol=1e-6)
  assert first.fn == second.fn and hash(first.fn) == hash(second.fn)
  assert len(traces) == 1  # one compile for both weight sets
  assert first.num_classes == 3
  assert all(isinstance(w, jax.Array) for w in second.weights)


def test_as_logits_fn_and_the_module_give_the_same_static():
  m = MLP()
  fn, params = as_logits_fn(m)
  assert prepare_model(m, None, X.shape, X.dtype).fn == prepare_model(fn, params, X.shape, X.dtype).fn


@pytest.mark.parametrize(
    "a,b",
    [(lambda: MLP(8), lambda: MLP(9)),
     (lambda: (lambda x: apply_dict(dict_params(0), x) * 2.0),
      lambda: (lambda x: apply_dict(dict_params(0), x) * 3.0))],
    ids=["hidden_width", "python_float"],
)
def test_another_architecture_or_literal_is_another_static(a, b):
  fa, fb = a(), b()
  pa, pb = prepare_model(fa, None, X.shape, X.dtype), prepare_model(fb, None, X.shape, X.dtype)
  assert pa.fn != pb.fn
  np.testing.assert_allclose(pb.fn(pb.weights, X), fb(X), rtol=1e-5)  # the literal is in the jaxpr: not stale


def test_shapes_dtypes_and_evaluator_are_part_of_the_static():
  m = MLP()
  base = prepare_model(m, None, X.shape, X.dtype).fn
  assert prepare_model(m, None, (5, 6), X.dtype).fn != base
  assert prepare_model(m, None, (7, 2, 3), X.dtype).fn == base  # the batch size is not
  calls = []
  def evaluate(closed, *args):
    calls.append(1)
    return eval_closed_jaxpr(closed, *args)
  other = prepare_model(m, None, X.shape, X.dtype, evaluate=evaluate)
  assert other.fn != base
  np.testing.assert_allclose(other.fn(other.weights, X), m(X), rtol=1e-5, atol=1e-6)
  assert calls


def test_nested_jit_closure_is_hoisted():
  box = {"w": jnp.ones((6, 3))}

  def model(x):
    w = box["w"]
    inner = jax.jit(lambda v: v.reshape(v.shape[0], -1) @ w)
    return inner(x)

  first = prepare_model(model, None, X.shape, X.dtype)
  box["w"] = jnp.full((6, 3), 2.0, jnp.float32)
  second = prepare_model(model, None, X.shape, X.dtype)
  assert first.fn == second.fn and len(second.weights) == 1
  np.testing.assert_allclose(second.fn(second.weights, X), model(X), rtol=1e-6)


def test_numpy_closures_become_weights_and_created_arrays_stay_ops():
  w = np.random.default_rng(0).normal(size=(6, 3))  # float64 NumPy: a weight of dtype float32
  model = lambda x: x.reshape(x.shape[0], -1) @ w + jnp.zeros((2000, 3)).sum(0)
  p = prepare_model(model, None, X.shape, X.dtype)
  assert len(p.weights) == 1 and p.weights[0].dtype == jnp.float32 and p.weights[0].shape == (6, 3)
  np.testing.assert_allclose(p.fn(p.weights, X), model(X), rtol=1e-5, atol=1e-6)


def test_batches_are_evaluated_one_example_at_a_time():
  m = MLP()
  p = prepare_model(m, None, X.shape, X.dtype)
  for b in (1, 5):
    np.testing.assert_allclose(p.fn(p.weights, X[:b]), m(X[:b]), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="traced for examples float32"):
    p.fn(p.weights, X.reshape(5, 6))
  with pytest.raises(ValueError, match="weights: expected 4"):
    p.fn(p.weights[:2], X)


def test_precision_is_frozen_into_the_jaxpr():
  p = prepare_model(MLP(), None, X.shape, X.dtype, precision="highest")
  assert "HIGHEST" in str(p.fn.jaxpr) and p.fn != prepare_model(MLP(), None, X.shape, X.dtype).fn


def test_works_under_a_users_jit():
  params = dict_params(3)

  @jax.jit
  def user(params, x):
    assert is_traced(x) and is_traced(params)
    p = prepare_model(lambda v: apply_dict(params, v), None, x.shape, x.dtype)
    return p.fn(p.weights, x)

  np.testing.assert_allclose(user(params, X), apply_dict(params, X), rtol=1e-5, atol=1e-6)
  assert not is_traced(X, params)


def _bn_nnx():
  class BN(nnx.Module):
    def __init__(self):
      self.l, self.bn = nnx.Linear(6, 3, rngs=nnx.Rngs(0)), nnx.BatchNorm(3, rngs=nnx.Rngs(0))
    def __call__(self, x):
      return self.bn(self.l(x.reshape(x.shape[0], -1)))
  return BN(), None


def _dropout_nnx():
  class Drop(nnx.Module):
    def __init__(self):
      self.l, self.drop = nnx.Linear(6, 3, rngs=nnx.Rngs(0)), nnx.Dropout(0.5, rngs=nnx.Rngs(1))
    def __call__(self, x):
      return self.drop(self.l(x.reshape(x.shape[0], -1)))
  return Drop(), None


def _linen_train():
  module = LinenMLP()
  return functools.partial(module.apply, module.init(jax.random.key(0), X), train=True), None


def _missing_layer():
  fn, params = as_logits_fn(MLP())
  del params["l2"]
  return fn, params


def _wrong_kernel():
  fn, params = as_logits_fn(MLP())
  params["l1"]["kernel"] = jnp.ones((5, 8))
  return fn, params


def _linen_wrong_kernel():
  module = LinenMLP()
  variables = module.init(jax.random.key(0), X)
  variables["params"]["Dense_0"]["kernel"] = jnp.ones((5, 8))
  return module.apply, variables


def _star_args():
  m = MLP()
  return (lambda *args: m(*args)), as_logits_fn(m)[1]


ERRORS = {
    "not_callable": (lambda: (3, None), TypeError, r"logits_fn must be callable"),
    "returns_tuple": (lambda: ((lambda x: (x, x)), None), ValueError, r"must return one array of logits"),
    "wrong_rank": (lambda: ((lambda x: x), None), ValueError, r"shape \[B, num_classes\] with num_classes >= 2"),
    "one_class": (lambda: ((lambda x: x.reshape(x.shape[0], -1)[:, :1]), None), ValueError, r"returned shape \(1, 1\)"),
    "int_outputs": (lambda: ((lambda x: x.reshape(x.shape[0], -1).astype(jnp.int32)), None), ValueError, "floating"),
    "params_to_one_arg_module": (lambda: (MLP(), as_logits_fn(MLP())[1]), TypeError,
                                 r"logits_fn takes one argument \(x\) but params= was given; "
                                 r"drop params= or pass a function \(params, x\)"),
    "params_to_star_args": (_star_args, TypeError,
                            r"logits_fn takes one argument \(x\) but params= was given.*drop params="),
    "two_args_no_params": (lambda: (as_logits_fn(MLP())[0], None), TypeError,
                           r"takes two arguments \(params, x\) but params= was not given; pass params="),
    "linen_apply_no_params": (lambda: (LinenMLP().apply, None), TypeError, r"params= was not given; pass params="),
    "missing_layer": (_missing_layer, ValueError,
                      r"params does not fit logits_fn: .*Incorrect number of leaves.*as_logits_fn\(model\)"),
    "wrong_kernel_shape": (_wrong_kernel, ValueError, r"params does not fit logits_fn: .*dot_general.*as_logits_fn"),
    "linen_wrong_kernel": (_linen_wrong_kernel, ValueError, r"params does not fit logits_fn: ScopeParamShapeError"),
    "nnx_batchnorm_training": (_bn_nnx, ValueError,
                               r"BatchStat.*must run in inference mode: .*as_logits_fn.*model.eval\(\)"),
    "nnx_dropout_training": (_dropout_nnx, ValueError, r"must run in inference mode.*deterministic=True"),
    "linen_batchnorm_training": (_linen_train, ValueError, r"batch_stats.*must run in inference mode"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_name_the_argument_and_the_fix(case):
  make, error, pattern = ERRORS[case]
  logits_fn, params = make()
  with pytest.raises(error, match=pattern):
    prepare_model(logits_fn, params, X.shape, X.dtype)


def test_inference_view_of_a_training_module_works():
  m, _ = _bn_nnx()
  fn, params = as_logits_fn(m)
  p = prepare_model(fn, params, X.shape, X.dtype)
  np.testing.assert_allclose(p.fn(p.weights, X), fn(params, X), rtol=1e-5, atol=1e-6)


def _warns(outputs, **kw):
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    check_outputs(outputs, **kw)
  return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def test_probabilities_and_log_probabilities_get_a_hint():
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 10)), jnp.float32)
  assert _warns(z) == []
  (hint,) = _warns(jax.nn.softmax(z))
  assert "probabilities" in hint and "expects logits (JSMA-Z)" in hint and "probabilities=True" in hint
  assert "log-probabilities" in _warns(jax.nn.log_softmax(z))[0]
  assert _warns(jax.nn.log_softmax(z), probabilities=True) == []  # softmax(log p) = p: JSMA-F exact
  assert _warns(jax.nn.softmax(z), probabilities=True)


def test_non_finite_outputs_name_the_examples():
  z = np.zeros((8, 3), np.float32)
  z[2, 1], z[6, 0] = np.nan, np.inf
  with pytest.raises(ValueError, match=r"logits_fn returned NaN or inf for 2 of 8 examples \(indices \[2, 6\]\)"):
    check_outputs(z)
