"""Tests for jsma_jax.models.train, jsma_jax.models.checkpoint and the train command."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from experiments.commands import train as train_lenet
from jsma_jax.models import (
  LeNet,
  ModelConfig,
  SmallCNN,
  as_logits_fn,
  evaluate,
  lenet_numpy_weights,
  load_checkpoint,
  load_mnist,
  save_checkpoint,
  train,
)


def _bits(model):
  """The model's state as raw bits, for bit-exact comparisons."""
  return [np.asarray(v).view(np.uint8) for v in
          jax.tree.leaves(nnx.to_pure_dict(nnx.state(model)))]


def _assert_bit_equal(a, b):
  bits_a, bits_b = _bits(a), _bits(b)
  assert len(bits_a) == len(bits_b)
  for x, y in zip(bits_a, bits_b):
    np.testing.assert_array_equal(x, y)


def _random_model(build, seed):
  """A model with random weights, built without compiling anything (fast)."""
  graphdef, state = nnx.split(nnx.eval_shape(build))
  rng = np.random.default_rng(seed)
  values = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype),
                        nnx.to_pure_dict(state))
  nnx.replace_by_pure_dict(state, values)
  return nnx.merge(graphdef, state)


@pytest.fixture(scope="module")
def tiny_data():
  images, labels = load_mnist(split="train")
  return images[:256], labels[:256]


# -------------------------------------------------------------------------------- train


@pytest.mark.slow
def test_train_is_deterministic_given_key(tiny_data):
  runs = [train(ModelConfig(), tiny_data, tiny_data, epochs=1, batch_size=64,
                key=jax.random.key(3), print_fn=None) for _ in range(2)]
  _assert_bit_equal(runs[0][0], runs[1][0])
  assert runs[0][1]["train_loss"] == runs[1][1]["train_loss"]
  other, _ = train(ModelConfig(), tiny_data, epochs=1, batch_size=64,
                   key=jax.random.key(4), print_fn=None)
  assert any(not np.array_equal(x, y) for x, y in zip(_bits(other), _bits(runs[0][0])))
  history = runs[0][1]
  assert history["steps"] == 4 and len(history["test_accuracy"]) == 1
  assert history["recipe"]["batch_size"] == 64


@pytest.mark.slow
def test_train_updates_given_model_in_place(tiny_data):
  model = LeNet(rngs=nnx.Rngs(0))
  before = _bits(model)
  out, _ = train(model, tiny_data, epochs=1, batch_size=128, print_fn=None)
  assert out is model
  assert any(not np.array_equal(x, y) for x, y in zip(before, _bits(model)))


@pytest.mark.slow
def test_train_prints_progress(tiny_data):
  lines = []
  train(ModelConfig(), tiny_data, tiny_data, epochs=1, batch_size=64, log_every=2,
        print_fn=lines.append)
  assert any("step 2/4" in s for s in lines)
  assert any("epoch 1/1" in s and "test acc" in s for s in lines)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs, error, match",
    [({"epochs": 1.5}, TypeError, "epochs"), ({"batch_size": 0}, ValueError, "batch_size"),
     ({"learning_rate": 0.0}, ValueError, "learning_rate"),
     ({"batch_size": 1000}, ValueError, "batch_size"),
     ({"schedule": "linear"}, ValueError, "schedule")],
    ids=["float-epochs", "zero-batch", "zero-lr", "batch-too-big", "bad-schedule"])
def test_train_validation(tiny_data, kwargs, error, match):
  with pytest.raises(error, match=match):
    train(ModelConfig(), tiny_data, print_fn=None, **kwargs)


def test_train_rejects_bad_inputs(tiny_data):
  with pytest.raises(ValueError, match="presets"):
    train("lenet", tiny_data, print_fn=None)
  with pytest.raises(TypeError, match="model_or_recipe"):
    train(3, tiny_data, print_fn=None)
  with pytest.raises(ValueError, match="train_data"):
    train(ModelConfig(), (tiny_data[0][:, :, :, 0], tiny_data[1]), print_fn=None)


def test_evaluate_pads_last_batch(tiny_data):
  model = LeNet(rngs=nnx.Rngs(0))
  apply_fn, params = as_logits_fn(model)
  images, labels = tiny_data
  expected = float(np.mean(np.argmax(apply_fn(params, images[:100]), -1) == labels[:100]))
  assert evaluate(model, (images[:100], labels[:100]), batch_size=64) == expected


# --------------------------------------------------------------------------- checkpoint


@pytest.mark.parametrize("build", [lambda: LeNet(activation="relu", rngs=nnx.Rngs(5)),
                                   lambda: SmallCNN(num_classes=4, rngs=nnx.Rngs(6))],
                         ids=["lenet-relu", "small_cnn"])
def test_checkpoint_roundtrip_bit_exact(tmp_path, build):
  model = _random_model(build, 0)
  meta_in = {"dataset": {"name": "mnist", "source": "embedded"}, "test_accuracy": 0.5,
             "train": {"epochs": 1}, "array": np.float32(0.25)}
  save_checkpoint(tmp_path / "ckpt", model, meta_in)
  loaded, meta = load_checkpoint(tmp_path / "ckpt")
  assert type(loaded) is type(model)
  assert loaded.activation == model.activation
  assert loaded.num_classes == model.num_classes
  _assert_bit_equal(model, loaded)
  assert meta["dataset"] == meta_in["dataset"] and meta["test_accuracy"] == 0.5
  assert meta["array"] == 0.25
  for key in ("jax", "flax", "optax", "numpy", "python", "backend"):
    assert meta["software"][key]
  assert meta["model"]["activation"] == model.activation


def test_checkpoint_numpy_export(tmp_path):
  model = LeNet(rngs=nnx.Rngs(2))
  save_checkpoint(tmp_path, model)
  with np.load(tmp_path / "weights.npz") as z:
    exported = {k: z[k] for k in z.files}
  reference = lenet_numpy_weights(model)
  assert exported.keys() == reference.keys()
  for k in reference:
    np.testing.assert_array_equal(exported[k], reference[k])


def test_checkpoint_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="path"):
    load_checkpoint(tmp_path / "nothing")
  save_checkpoint(tmp_path / "c", LeNet(rngs=nnx.Rngs(0)))
  blob = bytearray((tmp_path / "c" / "weights.msgpack").read_bytes())
  blob[-1] ^= 1
  (tmp_path / "c" / "weights.msgpack").write_bytes(bytes(blob))
  with pytest.raises(ValueError, match="SHA-256"):
    load_checkpoint(tmp_path / "c")
  with pytest.raises(TypeError, match="metadata"):
    save_checkpoint(tmp_path / "d", LeNet(rngs=nnx.Rngs(0)), metadata=[1])
  with pytest.raises(TypeError, match="model"):
    save_checkpoint(tmp_path / "e", nnx.Linear(2, 2, rngs=nnx.Rngs(0)))


# ---------------------------------------------------------------------- command + accuracy


@pytest.mark.slow
def test_train_command_embedded_reaches_sane_accuracy(tmp_path, capsys):
  """Two epochs of Adam on the embedded 5,000 training digits; the 1,000 test digits should be > 85%."""
  out = tmp_path / "lenet"
  meta = train_lenet.main(["--dataset", "embedded", "--recipe", "adam_cosine", "--epochs", "2", "--out", str(out)])
  assert meta["test_accuracy"] > 0.85
  for name in ("weights.msgpack", "metadata.json", "weights.npz", "results.json",
               "report.md", "training.png"):
    assert (out / name).is_file(), name
  model, saved = load_checkpoint(out)
  assert saved["dataset"]["n_test"] == 1000 and saved["dataset"]["source"] == "embedded"
  assert evaluate(model, load_mnist(split="test")) == saved["test_accuracy"]
  with open(out / "results.json") as f:
    assert json.load(f)["test_accuracy"] == saved["test_accuracy"]
  capsys.readouterr()
  again = train_lenet.main(["--dataset", "embedded", "--recipe", "adam_cosine", "--epochs", "2", "--out", str(out)])
  assert "already holds this run" in capsys.readouterr().out
  assert again["created"] == saved["created"]
