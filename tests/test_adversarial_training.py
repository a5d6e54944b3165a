"""JSMA inside a training step (experiments/scripts/adversarial_training.py) at a tiny size.

One run of the command line (embedded MNIST, 3 steps of 16 with 4 attacked at
max_iter 3, 2 x 9 evaluation attacks); the step-level checks reuse its compiled
training step (``make_train_step`` is cached on its arguments).
"""

from __future__ import annotations

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jsma_jax
from experiments.scripts import adversarial_training as at
from jsma_jax.models import LeNet, as_logits_fn, load_mnist

TINY = ["--max-steps", "3", "--batch-size", "16", "--attack-size", "4", "--train-max-iter", "3",
        "--eval-sources", "2", "--eval-max-iter", "3", "--eval-schedule", "lockstep", "--log-every", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("adversarial_training"))
  config = at.parse_args(TINY + ["--out", out])
  results = at.run(config)
  with open(os.path.join(out, "results.json")) as f:
    written = json.load(f)
  return config, results, written


@pytest.fixture(scope="module")
def step(run):
  """The run's adversarial training step (the same compiled function), and the shapes it saw."""
  config, results, _ = run
  apply_fn, _ = as_logits_fn(LeNet(activation=config.activation, rngs=nnx.Rngs(0)))
  return at.make_train_step(
      apply_fn, num_classes=10, total_steps=results["models"]["adversarial"]["train"]["steps"],
      learning_rate=config.learning_rate, lr_schedule=config.lr_schedule, attack_size=config.attack_size,
      adversarial_weight=config.adversarial_weight, theta=config.train_theta, gamma=config.train_gamma,
      max_iter=config.train_max_iter, attack_schedule=config.attack_schedule), apply_fn


@pytest.mark.slow
def test_results_json_has_the_fields(run):
  config, _, res = run
  for key in ("config", "environment", "pinned", "sources", "models", "stage_seconds", "dataset"):
    assert key in res, key
  for key in ("jax", "backend", "cpu", "cpu_count"):
    assert res["environment"][key], key
  assert set(res["models"]) == {"plain", "adversarial"}
  for name, m in res["models"].items():
    assert 0 <= m["clean_test_accuracy"] <= 1
    assert m["jsma"]["attacks"] == config.eval_sources * 9
    for key in ("success_rate", "mean_l0_successful", "mean_l0_all", "mean_iterations", "seconds"):
      assert key in m["jsma"], (name, key)
    assert m["jsma"]["mean_l0_all"] <= 2 * config.eval_max_iter
    assert m["train"]["steps"] == 3 and m["train"]["traces"] == 1, name
  assert len(res["sources"]) == config.eval_sources
  assert os.path.getsize(os.path.join(config.out, "report.md")) > 0


@pytest.mark.slow
def test_losses_are_finite_and_the_attack_ran_in_the_step(run):
  _, results, _ = run
  for name, m in results["models"].items():
    for key in ("loss", "clean_loss", "adv_loss"):
      assert all(math.isfinite(v) for v in m["train"][key]), (name, key)
  adv, plain = results["models"]["adversarial"]["train"], results["models"]["plain"]["train"]
  assert all(0 < v <= 6 for v in adv["attack_l0"])  # pairs: at most 2 * max_iter features
  assert plain["attack_l0"] == [0.0] * len(plain["attack_l0"])


@pytest.mark.slow
def test_the_step_compiles_once_and_attacks_with_the_current_params(step):
  (fn, tx, traces), apply_fn = step
  x, y = load_mnist("embedded", split="test")
  x, y = x[:16], y[:16].astype(np.int32)
  key = jax.random.key(7)
  params_a = as_logits_fn(LeNet(rngs=nnx.Rngs(1)))[1]
  params_b = as_logits_fn(LeNet(rngs=nnx.Rngs(2)))[1]
  _, _, next_key, out_a = fn(params_a, tx.init(params_a), key, x, y)
  _, _, _, out_b = fn(params_b, tx.init(params_b), key, x, y)
  assert traces["step"] == 1  # the CLI run's trace: none of these calls retraced
  np.testing.assert_array_equal(out_a["targets"], out_b["targets"])  # same key, same targets
  assert not np.array_equal(jax.random.key_data(next_key), jax.random.key_data(key))  # split per step
  # The examples crafted inside the step are those of jsma with that step's params.
  # (18 rows, the 4 attacked ones repeated: the shape and options of the run's evaluation
  # attack, whose compiled program is reused; each row's attack is independent of the others.)
  rows = np.arange(18) % 4
  for params, out in ((params_a, out_a), (params_b, out_b)):
    eager = jsma_jax.jsma(apply_fn, x[rows], np.asarray(out["targets"])[rows], params=params, theta=1.0,
                          gamma=0.145, max_iter=3, schedule="lockstep", pad_batches=False)
    np.testing.assert_array_equal(np.asarray(out["x_adv"]), np.asarray(eager.x_adv)[:4])
  assert not np.array_equal(np.asarray(out_a["x_adv"]), np.asarray(out_b["x_adv"]))
  changed = np.sum(np.asarray(out_a["x_adv"]).reshape(4, -1) != x[:4].reshape(4, -1), axis=1)
  # an example whose target the model already predicts is a success with nothing changed
  already = np.asarray(apply_fn(params_a, x[:4]).argmax(-1)) == np.asarray(out_a["targets"])[:4]
  assert np.all(changed[~already] > 0) and np.all(changed[already] == 0) and np.all(changed <= 6)
  assert (~already).sum() >= 2
  assert all(np.isfinite(float(out[k])) for out in (out_a, out_b) for k in ("loss", "adv_loss"))


@pytest.mark.slow
def test_adversarial_term_changes_the_update(step):
  """The adversarial examples enter the loss: the step differs from plain training on the same batch."""
  (fn, tx, _), apply_fn = step
  x, y = load_mnist("embedded", split="test")
  x, y = x[:16], y[:16].astype(np.int32)
  params = as_logits_fn(LeNet(rngs=nnx.Rngs(1)))[1]
  _, _, _, out = fn(params, tx.init(params), jax.random.key(0), x, y)
  logits = apply_fn(params, jnp.asarray(out["x_adv"]))
  expected = 0.5 * out["clean_loss"] + 0.5 * jnp.mean(
      jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, jnp.asarray(y[:4])[:, None], -1)[:, 0])
  np.testing.assert_allclose(float(out["loss"]), float(expected), rtol=1e-5)
