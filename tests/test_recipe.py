"""Training recipes (jsma_jax.models.recipe): every field changes the training it names.

Also: the recipe round-trips through a checkpoint, and the shipped paper LeNet loads and
reaches its recorded accuracy on the shipped test digits.
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jsma_jax.models import (
  SHIPPED_LENETS,
  LeNet,
  ModelConfig,
  Recipe,
  as_logits_fn,
  evaluate,
  holdout_split,
  initialise,
  load_metadata,
  load_mnist,
  load_paper_lenet,
  make_optimizer,
  preset,
  save_checkpoint,
  train,
)


@pytest.fixture(scope="module")
def tiny_data():
  x, y = load_mnist("embedded", split="train")
  return x[::20], y[::20]  # 250 digits, 25 per class


def _lenet(seed=0):
  return LeNet(rngs=nnx.Rngs(seed))


def _uniform_ok(w, bound):
  """Uniform in [-bound, bound]: inside, reaching near both ends, with its standard deviation."""
  w = np.asarray(w).ravel()
  assert np.abs(w).max() <= bound * (1 + 1e-6)
  assert w.max() > 0.95 * bound and w.min() < -0.95 * bound
  assert abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound / math.sqrt(3)


@pytest.mark.slow
def test_glorot_is_the_theano_tutorials():
  m = initialise(_lenet(), "glorot", jax.random.key(0), zero_output=True)
  # conv: fan_in = in * 25, fan_out = out * 25 / 4 (the 2x2 pool)
  _uniform_ok(m.conv1.kernel[...], math.sqrt(6 / (1 * 25 + 20 * 25 / 4)))
  _uniform_ok(m.conv2.kernel[...], math.sqrt(6 / (20 * 25 + 50 * 25 / 4)))
  _uniform_ok(m.fc1.kernel[...], math.sqrt(6 / (800 + 500)))
  for layer in (m.conv1, m.conv2, m.fc1, m.fc2):
    assert not np.any(np.asarray(layer.bias[...]))
  assert not np.any(np.asarray(m.fc2.kernel[...]))  # the zero logistic layer


def test_pool_area_changes_the_glorot_bound():
  m = initialise(_lenet(), "glorot", jax.random.key(0), pool_area=1)
  _uniform_ok(m.conv2.kernel[...], math.sqrt(6 / (20 * 25 + 50 * 25)))


def test_pytorch_init_is_uniform_in_one_over_sqrt_fan_in_for_weights_and_biases():
  m = initialise(_lenet(), "pytorch", jax.random.key(0))
  for layer, fan_in in ((m.conv2, 20 * 25), (m.fc1, 800), (m.fc2, 500)):
    _uniform_ok(layer.kernel[...], 1 / math.sqrt(fan_in))
    b = np.asarray(layer.bias[...])
    assert np.abs(b).max() <= 1 / math.sqrt(fan_in) and np.abs(b).max() > 0.5 / math.sqrt(fan_in)
  assert np.any(np.asarray(m.fc2.kernel[...]))  # no zero output unless asked


def test_default_init_is_flax_lecun_normal_and_left_alone():
  m = _lenet()
  before = np.asarray(m.fc1.kernel[...]).copy()
  initialise(m, "default", jax.random.key(5))
  np.testing.assert_array_equal(np.asarray(m.fc1.kernel[...]), before)
  assert abs(before.std() - 1 / math.sqrt(800)) < 0.05 / math.sqrt(800)
  assert not np.any(np.asarray(m.fc1.bias[...]))


def test_recipe_init_is_applied_by_train(tiny_data):
  model, _ = train(preset("theano_tutorial"), tiny_data, epochs=0, batch_size=50, print_fn=None)
  assert not np.any(np.asarray(model.fc2.kernel[...]))  # zero output, 0 epochs: untouched
  _uniform_ok(model.fc1.kernel[...], math.sqrt(6 / 1300))


def _updates(tx, grads, steps):
  params = {"w": jnp.zeros(())}
  state = tx.init(params)
  out = []
  for g in grads[:steps]:
    u, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    out.append(float(u["w"]))
  return np.array(out)


def test_optimizers_and_schedules_do_what_they_say():
  g = [1.0] * 30
  sgd = Recipe(optimizer="sgd", learning_rate=0.1, schedule="constant", epochs=3)
  np.testing.assert_allclose(_updates(make_optimizer(sgd, 10), g, 3), [-0.1] * 3, rtol=1e-6)
  mom = sgd.replace(optimizer="momentum", momentum=0.9)
  np.testing.assert_allclose(_updates(make_optimizer(mom, 10), g, 3), [-0.1, -0.19, -0.271], rtol=1e-5)
  adam = sgd.replace(optimizer="adam", learning_rate=1e-3)
  np.testing.assert_allclose(_updates(make_optimizer(adam, 10), g, 2), [-1e-3] * 2, rtol=1e-3)
  step = sgd.replace(schedule="step", step_epochs=1, step_factor=0.5)  # halve every 10 steps
  u = _updates(make_optimizer(step, 10), g, 21)
  np.testing.assert_allclose(u[[0, 9, 10, 19, 20]], [-0.1, -0.1, -0.05, -0.05, -0.025], rtol=1e-5)
  cos = sgd.replace(schedule="cosine")  # 3 epochs x 10 steps: from 0.1 down to ~0
  u = _updates(make_optimizer(cos, 10), g, 30)
  assert u[0] == pytest.approx(-0.1) and abs(u[15]) == pytest.approx(0.05, rel=1e-4) and abs(u[-1]) < 1e-3


def test_holdout_split_is_disjoint_and_covers():
  tr, va = holdout_split(60000)
  assert len(tr) == 50000 and len(va) == 10000
  assert not np.intersect1d(tr, va).size and np.array_equal(np.union1d(tr, va), np.arange(60000))
  assert tr.max() < va.min()  # the last 10,000 held out, as in the Theano tutorial


@pytest.mark.slow
def test_split_batch_epochs_and_seed_change_training(tiny_data):
  _x, _y = tiny_data
  _, h = train(ModelConfig(), tiny_data, epochs=2, batch_size=50, split="holdout", print_fn=None)
  assert h["n_train"] == 250 - 250 // 6 and h["n_validation"] == 250 // 6
  assert len(h["validation_accuracy"]) == 2 and h["steps"] == 2 * ((250 - 41) // 50)
  _, h_all = train(ModelConfig(), tiny_data, epochs=1, batch_size=125, print_fn=None)
  assert h_all["n_train"] == 250 and h_all["n_validation"] == 0 and h_all["steps"] == 2
  a, _ = train(ModelConfig(), tiny_data, epochs=0, seed=1, print_fn=None)
  b, _ = train(ModelConfig(), tiny_data, epochs=0, seed=1, print_fn=None)
  c, _ = train(ModelConfig(), tiny_data, epochs=0, seed=2, print_fn=None)
  np.testing.assert_array_equal(np.asarray(a.fc1.kernel[...]), np.asarray(b.fc1.kernel[...]))
  assert not np.array_equal(np.asarray(a.fc1.kernel[...]), np.asarray(c.fc1.kernel[...]))


def test_activation_override_builds_that_model(tiny_data):
  model, h = train("theano_tutorial", tiny_data, epochs=0, batch_size=50, activation="relu", print_fn=None)
  assert model.activation == "relu" and h["recipe"]["model"]["activation"] == "relu"


@pytest.mark.slow
def test_rewrite_does_not_change_training_beyond_rounding(tiny_data):
  # plain SGD, so that the comparison sees the gradients (Adam normalises away their scale)
  kw = dict(epochs=1, batch_size=50, optimizer="sgd", learning_rate=0.1, print_fn=None)
  on, _ = train(ModelConfig(), tiny_data, rewrite=True, **kw)
  off, _ = train(ModelConfig(), tiny_data, rewrite=False, **kw)
  for name in ("conv1", "conv2", "fc1", "fc2"):
    np.testing.assert_allclose(np.asarray(getattr(on, name).kernel[...]),
                               np.asarray(getattr(off, name).kernel[...]), atol=2e-6)


def test_recipe_round_trips_through_the_checkpoint(tmp_path, tiny_data):
  recipe = preset("pytorch_sgd").replace(epochs=1, batch_size=125, name="mine")
  model, h = train(recipe, tiny_data, print_fn=None)
  path = save_checkpoint(os.path.join(tmp_path, "m"), model, {"recipe": h["recipe"]})
  assert Recipe.from_dict(load_metadata(path)["recipe"]) == recipe


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(init="xavier"), ValueError, "init must be one of"),
    (dict(schedule="linear"), ValueError, "schedule must be one of"),
    (dict(split="50k"), ValueError, "split must be one of"),
    (dict(learning_rate=0.0), ValueError, "learning_rate must be"),
    (dict(momentum=1.0), ValueError, "momentum must be in"),
    (dict(epochs=2.5), TypeError, "epochs must be an int"),
])
def test_bad_recipe_fields_are_named(kwargs, error, match):
  with pytest.raises(error, match=match):
    Recipe(**kwargs)


def test_unknown_preset_and_field_are_named(tiny_data):
  with pytest.raises(ValueError, match="theano_tutorial"):
    train("lenet", tiny_data, print_fn=None)
  with pytest.raises(TypeError, match="unknown recipe field"):
    preset("adam_cosine").replace(lr=0.1)


@pytest.mark.parametrize("name", SHIPPED_LENETS)
def test_shipped_lenets_reach_their_recorded_accuracy_on_the_shipped_digits(name):
  model, meta = load_paper_lenet(name)
  apply_fn, params = as_logits_fn(model)
  acc = evaluate(apply_fn, load_mnist("embedded", split="test"), params=params)
  assert acc == meta["embedded_test_accuracy"]
  assert acc > 0.97 and meta["test_accuracy"] > 0.98
  recipe = Recipe.from_dict(meta["recipe"])
  # both held out the validation images, and each is the recipe its name says
  assert recipe.split == "holdout" and meta["dataset"]["n_train"] == 50000
  expected = {"glorot_adam_b128_e6": dict(init="glorot", optimizer="adam", batch_size=128, epochs=6,
                                          learning_rate=1e-3, schedule="constant"),
              "theano_tutorial_30ep": dict(name="theano_tutorial", init="glorot", optimizer="sgd",
                                           batch_size=500, epochs=30, learning_rate=0.1)}[name]
  assert {k: getattr(recipe, k) for k in expected} == expected
  assert len(meta["history"]["train_loss"]) == recipe.epochs


def test_the_default_shipped_lenet_is_the_first_and_unknown_names_are_refused():
  assert load_paper_lenet()[1]["weights_sha256"] == load_paper_lenet(SHIPPED_LENETS[0])[1]["weights_sha256"]
  with pytest.raises(ValueError, match="theano_tutorial_30ep"):
    load_paper_lenet("theano_tutorial")
