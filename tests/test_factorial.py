"""The factorial zoo (experiments/zoo/factorial.py): its design, its analysis against a plain
reference, the snapshot that gives the short length, the pre-registered choice, and a
tiny run end to end."""

import itertools
import json
import math
import os
from fractions import Fraction

import jax
import numpy as np
import pytest

from experiments.commands import factorial as factorial_cli
from experiments.common import stats
from experiments.zoo import factorial, factorial_report, zoo
from jsma_jax.models import Recipe, load_checkpoint, load_mnist, preset


def test_the_design_is_a_full_factorial_of_recipes_that_differ_in_their_factors_only():
  names = [f.name for f in factorial.FACTORS]
  assert names == ["init", "optimizer", "batch", "length"]
  recipes = {c: factorial.cell_recipe(c) for c in factorial.cells()}
  assert len(recipes) == 16 and len({r.name for r in recipes.values()}) == 16
  base = preset("theano_tutorial")
  for c, r in recipes.items():
    assert r.model.activation == "tanh" and r.split == "holdout" and r.schedule == "constant" and r.seed == 0
    assert (r.init, r.zero_output) == (("pytorch", False) if c[0] else (base.init, base.zero_output))
    assert (r.optimizer, r.learning_rate) == (("adam", 1e-3) if c[1] else ("sgd", 0.1))
    assert r.batch_size == (128 if c[2] else 500)
    assert r.epochs == (factorial.LONG_EPOCHS if c[3] else factorial.SHORT_EPOCHS)
  for a, b in itertools.combinations(recipes, 2):  # cells one level apart differ in that factor's fields only
    if sum(x != y for x, y in zip(a, b)) == 1:
      j = next(i for i in range(4) if a[i] != b[i])
      da, db = recipes[a].to_dict(), recipes[b].to_dict()
      changed = {k for k in da if k != "name" and da[k] != db[k]}
      assert changed == set(factorial.FACTORS[j].fields[1]) | set(factorial.FACTORS[j].fields[0]), (a, b)
  modern = {r.name: r for r in factorial.modern_recipes()}
  # the modern recipe is the all-level-1 cell but for its data (all 60,000 images) and its 10 epochs
  assert modern["modern_tanh"].replace(name="x", split="holdout", epochs=factorial.LONG_EPOCHS) == \
      recipes[(1, 1, 1, 1)].replace(name="x")
  assert modern["modern_tanh"].epochs == 10
  assert modern["modern_relu"].model.activation == "relu" and modern["modern_tanh"].split == "all"


def _reference_effects(outcomes, k):
  """Effects the textbook way: for each contrast, average success of the + cells minus
  average of the - cells; each attack's contrast in exact fractions, the sign test as a
  binomial sum in fractions."""
  out = {}
  for r in range(1, k + 1):
    for subset in itertools.combinations(range(k), r):
      plus = [c for c in outcomes if math.prod(1 if c[j] else -1 for j in subset) > 0]
      minus = [c for c in outcomes if c not in plus]
      est = np.mean([outcomes[c].mean() for c in plus]) - np.mean([outcomes[c].mean() for c in minus])
      n = len(next(iter(outcomes.values())))
      per = [sum(Fraction(int(outcomes[c][i])) for c in plus) - sum(Fraction(int(outcomes[c][i])) for c in minus)
             for i in range(n)]
      pos, neg = sum(v > 0 for v in per), sum(v < 0 for v in per)
      m = pos + neg
      tail = sum(Fraction(math.comb(m, i), 2 ** m) for i in range(min(pos, neg) + 1)) if m else Fraction(1, 2)
      out[subset] = (est, pos, neg, float(min(Fraction(1), 2 * tail)))
  return out


@pytest.mark.parametrize("k", [2, 3, 4])
def test_effects_match_the_textbook_reference(k):
  rng = np.random.default_rng(k)
  cells = list(itertools.product((0, 1), repeat=k))
  # success that depends on the first factor, on an interaction of the first two, and noise
  base = rng.random(60)
  outcomes = {c: base + 0.3 * c[0] - 0.2 * c[0] * c[-1] + 0.2 * rng.random(60) > 0.7 for c in cells}
  names = tuple("abcd"[:k])
  got = factorial_report.effects(outcomes, names)
  want = _reference_effects(outcomes, k)
  assert len(got) == 2 ** k - 1
  assert [e.factors for e in got] == [tuple(names[j] for j in s) for s in want]
  for e, (est, pos, neg, p) in zip(got, want.values()):
    assert e.estimate == pytest.approx(est, abs=1e-12)
    assert (e.n_pos, e.n_neg) == (pos, neg)
    assert e.p == pytest.approx(p, rel=1e-12)
  assert got[0].estimate > 0.15 and got[0].p < 0.01  # the planted main effect is found


def test_effects_refuse_an_incomplete_design():
  with pytest.raises(ValueError, match="full 2"):
    factorial_report.effects({(0, 0): np.ones(3, bool), (1, 1): np.ones(3, bool)}, ("a", "b"))


def test_sign_test():
  assert stats.sign_test_p(0, 0) == 1.0
  assert stats.sign_test_p(5, 0) == pytest.approx(2 / 32)
  assert stats.sign_test_p(3, 3) == 1.0


def test_paired_counts_the_discordant_attacks():
  a = np.array([1, 1, 1, 0, 0, 1, 1], bool)
  b = np.array([1, 0, 0, 0, 1, 0, 1], bool)
  q = factorial_report.paired("x", "y", "why", "test", -1.0, a, b)
  assert (q.a_only, q.b_only) == (3, 1) and q.difference == pytest.approx(2 / 7)
  assert q.p == pytest.approx(stats.sign_test_p(3, 1)) and q.theta == -1.0
  with pytest.raises(ValueError, match="same attacks"):
    factorial_report.paired("x", "y", "why", "test", 1.0, a, b[:3])


def test_the_choice_is_the_nearest_eligible_model_by_the_stated_distance():
  class M:
    def __init__(self, name, held):
      self.name, self.held_out_validation = name, held

  rows = {"far": {"success+1": 0.90, "distortion+1": 0.045, "success-1": 0.55},
          "near": {"success+1": 0.96, "distortion+1": 0.042, "success-1": 0.62},
          "saw_validation": {"success+1": 0.9719, "distortion+1": 0.0401, "success-1": 0.647}}
  c = factorial_report.choose([M("far", True), M("near", True), M("saw_validation", False)], rows)
  assert c["chosen"] == "near" and c["excluded"] == ["saw_validation"]
  assert c["distances"]["near"] == pytest.approx(100 * (0.0119 + 0.027 + 10 * 0.0019))
  assert "saw_validation" not in c["distances"]


@pytest.mark.slow
def test_a_snapshot_is_the_shorter_run_bit_for_bit(tmp_path):
  x, y = load_mnist("embedded", split="train")
  xt, yt = load_mnist("embedded", split="test")
  data = ((x[::8], y[::8]), (xt[::10], yt[::10]))
  long = Recipe(name="long", epochs=2, batch_size=64, schedule="constant", split="holdout")
  short = long.replace(name="short", epochs=1)
  out = str(tmp_path / "zoo")
  zoo.train_stage(long, data, out, lambda s: None, snapshots=(short,))
  snap, meta = load_checkpoint(os.path.join(out, "models", "short"))
  assert meta["snapshot_of"] == "long" and len(meta["history"]["train_loss"]) == 1
  alone = zoo.train_stage(short.replace(name="alone"), data, str(tmp_path / "other"), lambda s: None)
  model, _ = load_checkpoint(alone.path)
  for a, b in zip(jax.tree.leaves(jax.tree.map(np.asarray, snap)), jax.tree.leaves(jax.tree.map(np.asarray, model))):
    np.testing.assert_array_equal(a, b)
  assert zoo.trained(short, out).info["epochs_run"] == 1
  with pytest.raises(ValueError, match="constant schedule"):
    zoo.train_stage(long.replace(schedule="cosine"), data, out, lambda s: None,
                    snapshots=(short.replace(schedule="cosine"),))
  with pytest.raises(ValueError, match="fewer epochs"):
    zoo.train_stage(long, data, out, lambda s: None, snapshots=(short.replace(batch_size=32),))


def test_cli_refuses_bad_sizes():
  from experiments.common.cli_args import UsageError

  with pytest.raises(UsageError, match="--sources"):
    factorial_cli.parse_args(["--sources", "0"])
  with pytest.raises(UsageError, match="--tutorial-epochs"):
    factorial_cli.parse_args(["--tutorial-epochs", "-1"])


@pytest.mark.slow
def test_a_tiny_factorial_end_to_end_chooses_before_the_test_attacks_and_resumes(tmp_path, monkeypatch):
  # two factors (optimiser, length) of one epoch or two, on 1,250 digits: the whole pipeline
  two = tuple(f for f in factorial.FACTORS if f.name in ("optimizer", "length"))
  two = tuple(f._replace(fields=({"epochs": 1}, {"epochs": 2}), codes=("e1", "e2")) if f.name == "length" else f
              for f in two)
  monkeypatch.setattr(factorial, "modern_recipes", lambda: [
      Recipe(name="modern_tanh", init="pytorch", optimizer="adam", schedule="constant", epochs=1)])
  x, y = load_mnist("embedded", split="train")
  xt, yt = load_mnist("embedded", split="test")
  train_set, test_set = (x[::4], y[::4]), (xt[::5], yt[::5])  # every class (the files are sorted)
  config = factorial.FactorialConfig(out=str(tmp_path / "f"), n_sources=2, chunk_sources=2, batch_size=18,
                                     gamma=0.05)
  models = factorial.train_all(config, (train_set, test_set), lambda s: None, two)
  names = [m.name for m in models]
  assert names[:4] == ["f_sgd_e1", "f_sgd_e2", "f_adam_e1", "f_adam_e2"]
  assert names[4:6] == ["modern_tanh", "theano_tutorial_30ep"]
  assert [m.held_out_validation for m in models][:6] == [True] * 4 + [False, True]
  results = factorial_report.run(config, models, train_set, test_set, lambda s: None, two)
  choice = factorial.read_choice(config.out)
  assert choice == results["choice"] and choice["chosen"] in choice["distances"]
  assert "modern_tanh" not in choice["distances"]
  stage_time = lambda name: os.path.getmtime(os.path.join(config.out, "stages", name + ".json"))
  first_test = min(stage_time(f"test_{n}_theta+1_c00") for n in names)
  assert stage_time("choice") <= first_test  # chosen before any test attack
  effects = results["effects_on_success"]["test/theta+1"]
  assert [e["name"] for e in effects] == ["optimizer", "length", "optimizer x length"]
  for t in results["table"]:
    assert t["test"]["success+1"] is not None and 0 <= t["validation"]["success-1"] <= 1
  report = open(os.path.join(config.out, "report.md")).read()
  assert "(chosen)" in report and "| optimizer x length |" in report
  pairs = {(q["a"], q["b"], q["set_name"], q["theta"]) for q in results["comparisons"]}
  for other in ("modern_tanh", "theano_tutorial_30ep"):  # the modern ReLU is not in this run
    assert {(choice["chosen"], other, s, t) for s in ("validation", "test") for t in (1.0, -1.0)} <= pairs
  tutorial = ["theano_tutorial_30ep", "theano_tutorial_100ep", "theano_tutorial_200ep"]
  assert names[5:] == tutorial  # the longer runs are read from experiments/results/zoo
  assert results["read_not_trained"] == tutorial and "not trained by this run: theano_tutorial_30ep, " in report
  assert {("theano_tutorial_100ep", "theano_tutorial_30ep", "test", 1.0),
          ("theano_tutorial_200ep", "theano_tutorial_100ep", "test", -1.0),
          (choice["chosen"], "theano_tutorial_200ep", "validation", 1.0)} <= pairs
  assert len(pairs) == 20 and "## Models beside the design, paired" in report
  # a repeated run loads every stage: nothing is attacked again, the report is the same
  again = factorial_report.run(config, factorial.train_all(config, (train_set, test_set), lambda s: None, two),
                               train_set, test_set, lambda s: None, two)
  same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN distortions too
  assert same(again["table"], results["table"]) and again["choice"] == results["choice"]
