"""Tests for jsma_jax.models.lenet and jsma_jax.models.apply."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsma_jax.models import LeNet, LogitsFn, ModelConfig, SmallCNN, as_logits_fn, config_of, lenet_numpy_weights


def _images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


def _out_shape(model, shape):
  """Output shape without compiling anything."""
  apply_fn, params = as_logits_fn(model)
  return jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


# ------------------------------------------------------------------------------- models


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_lenet_shapes(activation):
  model = LeNet(activation=activation, rngs=nnx.Rngs(0))
  assert _out_shape(model, (3, 28, 28, 1)) == (3, 10)
  assert model.conv1.kernel.shape == (5, 5, 1, 20)
  assert model.conv2.kernel.shape == (5, 5, 20, 50)
  assert model.fc1.kernel.shape == (800, 500)
  assert model.fc2.kernel.shape == (500, 10)


def test_lenet_num_classes_and_default_activation():
  model = LeNet(num_classes=7, rngs=nnx.Rngs(0))
  assert model.activation == "tanh"
  assert _out_shape(model, (2, 28, 28, 1)) == (2, 7)


def test_small_cnn_shapes():
  model = nnx.eval_shape(lambda: SmallCNN(rngs=nnx.Rngs(0)))  # abstract: no compiles
  assert _out_shape(model, (2, 32, 32, 3)) == (2, 10)
  assert model.conv1.kernel.shape == (3, 3, 3, 32)
  assert model.fc1.kernel.shape == (8 * 8 * 64, 256)


@pytest.mark.parametrize(
    "kwargs, error",
    [({"activation": "sigmoid"}, ValueError), ({"num_classes": 1}, ValueError),
     ({"num_classes": 2.0}, TypeError)],
    ids=["bad-activation", "one-class", "float-classes"])
@pytest.mark.parametrize("cls", [LeNet, SmallCNN], ids=["lenet", "small_cnn"])
def test_model_validation(cls, kwargs, error):
  with pytest.raises(error, match=next(iter(kwargs))):
    cls(rngs=nnx.Rngs(0), **kwargs)


def test_model_config_roundtrip():
  for config in [ModelConfig(), ModelConfig("small_cnn", "relu", 5)]:
    assert config_of(nnx.eval_shape(lambda: config.build(rngs=nnx.Rngs(0)))) == config
  with pytest.raises(ValueError, match="arch"):
    ModelConfig(arch="resnet")


# ---------------------------------------------------------------- NumPy weight export


def _np_conv_valid(x, w, b):
  """x [B, H, W, I], w [kh, kw, I, O] -> [B, H-kh+1, W-kw+1, O] (cross-correlation)."""
  kh, kw = w.shape[:2]
  win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
  return np.einsum("bhwiyx,yxio->bhwo", win, w) + b


def _np_pool(x):
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _np_lenet(weights, x):
  act = {"tanh": np.tanh, "relu": lambda v: np.maximum(v, 0)}[str(weights["activation"])]
  x = _np_pool(act(_np_conv_valid(x, weights["conv1.kernel"], weights["conv1.bias"])))
  x = _np_pool(act(_np_conv_valid(x, weights["conv2.kernel"], weights["conv2.bias"])))
  x = act(x.reshape(len(x), -1) @ weights["fc1.kernel"] + weights["fc1.bias"])
  return x @ weights["fc2.kernel"] + weights["fc2.bias"]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_weights_reproduce_logits(activation):
  """The exported weights, in the documented layout, give the model's logits."""
  model = LeNet(activation=activation, rngs=nnx.Rngs(1))
  weights = lenet_numpy_weights(model)
  expected = {"conv1.kernel": (5, 5, 1, 20), "conv1.bias": (20,),
              "conv2.kernel": (5, 5, 20, 50), "conv2.bias": (50,),
              "fc1.kernel": (800, 500), "fc1.bias": (500,), "fc2.kernel": (500, 10),
              "fc2.bias": (10,), "activation": ()}
  assert {k: v.shape for k, v in weights.items()} == expected
  assert weights["activation"].dtype.kind == "U" and str(weights["activation"]) == activation
  x = np.asarray(_images((4, 28, 28, 1)), np.float64)
  ref = _np_lenet({k: (v.astype(np.float64) if v.dtype.kind == "f" else v)
                   for k, v in weights.items()}, x)
  np.testing.assert_allclose(np.asarray(model(jnp.asarray(x, jnp.float32))), ref,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_numpy_weights_rejects_other_models():
  with pytest.raises(TypeError, match="model"):
    lenet_numpy_weights(SmallCNN(rngs=nnx.Rngs(0)))


# ------------------------------------------------------------------------ as_logits_fn


@pytest.mark.parametrize(
    "make, shape",
    [(lambda r: LeNet(rngs=r), (5, 28, 28, 1)),
     (lambda r: LeNet(activation="relu", rngs=r), (5, 28, 28, 1)),
     (lambda r: SmallCNN(rngs=r), (3, 32, 32, 3))],
    ids=["lenet-tanh", "lenet-relu", "small_cnn"])
def test_logits_fn_matches_model(make, shape):
  model = make(nnx.Rngs(0))
  apply_fn, params = as_logits_fn(model)
  x = _images(shape)
  np.testing.assert_allclose(apply_fn(params, x), model(x), rtol=0, atol=0)
  np.testing.assert_allclose(jax.jit(apply_fn)(params, x), model(x), rtol=1e-5,
                             atol=1e-5)
  assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(params))


def test_logits_fn_equality_and_hash():
  f1, _ = as_logits_fn(LeNet(rngs=nnx.Rngs(0)))
  f2, _ = as_logits_fn(LeNet(rngs=nnx.Rngs(1)))
  f3, _ = as_logits_fn(LeNet(activation="relu", rngs=nnx.Rngs(0)))
  f4, _ = as_logits_fn(SmallCNN(rngs=nnx.Rngs(0)))
  assert isinstance(f1, LogitsFn)
  assert f1 == f2 and hash(f1) == hash(f2)
  assert f1 != f3 and f1 != f4


def test_logits_fn_no_retrace_with_new_params():
  """As in jsma(apply_fn, x, ..., params=...): apply_fn static, params traced."""
  traces = []

  def attack_like(apply_fn, params, x):
    traces.append(1)
    return jnp.argmax(apply_fn(params, x), -1)

  jitted = jax.jit(attack_like, static_argnums=0)
  x = _images((2, 28, 28, 1))
  for seed in range(3):  # three independently built models, same architecture
    apply_fn, params = as_logits_fn(LeNet(rngs=nnx.Rngs(seed)))
    jitted(apply_fn, params, x).block_until_ready()
  assert len(traces) == 1
  apply_fn, params = as_logits_fn(LeNet(activation="relu", rngs=nnx.Rngs(0)))
  jitted(apply_fn, params, x)
  assert len(traces) == 2  # a different architecture does compile again


def test_logits_fn_leaves_model_alone():
  model = LeNet(rngs=nnx.Rngs(0))
  before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
  apply_fn, params = as_logits_fn(model)
  apply_fn(jax.tree.map(jnp.zeros_like, params), _images((1, 28, 28, 1)))
  after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
  jax.tree.map(np.testing.assert_array_equal, before, after)


def test_logits_fn_uses_inference_mode():
  class Dropped(nnx.Module):
    def __init__(self, rngs):
      self.fc = nnx.Linear(4, 3, rngs=rngs)
      self.drop = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
      return self.fc(self.drop(x))

  model = Dropped(nnx.Rngs(0))
  apply_fn, params = as_logits_fn(model)
  x = jnp.ones((8, 4))
  np.testing.assert_array_equal(apply_fn(params, x), apply_fn(params, x))
  np.testing.assert_allclose(apply_fn(params, x), model.fc(x), rtol=1e-6)
  assert model.drop.deterministic is False  # the model itself is untouched


def test_logits_fn_type_error():
  with pytest.raises(TypeError, match="model"):
    as_logits_fn(lambda x: x)
