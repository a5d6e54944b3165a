"""The model zoo (experiments/zoo/zoo.py) end to end at a tiny size: train, attack, report, resume."""

import os

import numpy as np
import pytest

from experiments.common import stats
from experiments.zoo import zoo, zoo_report
from jsma_jax.models import Recipe, load_mnist, preset


def test_zoo_recipes_span_the_factors_and_pairs_change_one_factor():
  recipes = {r.name: r for r in zoo.zoo_recipes()}
  assert len(recipes) >= 8
  assert {r.model.activation for r in recipes.values()} == {"tanh", "relu"}
  assert {r.init for r in recipes.values()} == {"default", "glorot", "pytorch"}
  assert {r.optimizer for r in recipes.values()} == {"sgd", "momentum", "adam"}
  assert {r.schedule for r in recipes.values()} >= {"constant", "cosine"}
  assert recipes["theano_tutorial"] == preset("theano_tutorial").replace(epochs=zoo.LONG_EPOCHS)
  for _, a, b in zoo.PAIRS:
    da, db = recipes[a].to_dict(), recipes[b].to_dict()
    changed = {k for k in da if k not in ("name",) and da[k] != db[k]}
    assert changed, (a, b)
    # one factor: a field and the fields tied to it (an optimiser's learning rate, the
    # zero output layer of the Glorot scheme)
    assert changed <= {"model"} or changed <= {"epochs"} or changed <= {"init", "zero_output"} \
        or changed <= {"optimizer", "learning_rate"} or changed <= {"schedule"}, (a, b, changed)


def test_mcnemar_p():
  a = np.array([True] * 10 + [False] * 10)
  assert stats.mcnemar_p(a, a) == 1.0
  b = np.array([False] * 10 + [False] * 10)
  assert stats.mcnemar_p(a, b) == pytest.approx(2 / 2 ** 10)
  # more than 1,023 discordant pairs (2.0 ** n overflows a float): exact, no error
  a, b = np.zeros(3000, bool), np.ones(3000, bool)
  b[:1000] = False
  a[:10] = True
  assert stats.mcnemar_p(a, b) == 0.0  # below the smallest float
  a, b = np.arange(2000) % 2 == 0, np.arange(2000) % 2 == 1  # 1000 vs 1000
  assert stats.mcnemar_p(a, b) == 1.0


@pytest.mark.slow
def test_zoo_trains_attacks_reports_and_resumes(tmp_path, capsys):
  x, y = load_mnist("embedded", split="train")
  xt, yt = load_mnist("embedded", split="test")
  train_set, test_set = (x[::10], y[::10]), (xt[::10], yt[::10])
  base = Recipe(name="a", epochs=1, batch_size=50, split="holdout")
  recipes = [base, base.replace(name="b", activation="relu"), base.replace(name="c", init="pytorch")]
  out = str(tmp_path / "zoo")
  config = zoo.ZooConfig(out=out, n_sources=3, chunk_sources=2, gamma=0.03, batch_size=16)
  models = [zoo.train_stage(r, (train_set, test_set), out, print) for r in recipes]
  results = zoo_report.run(config, models, test_set, print, pairs=(("activation", "a", "b"),))
  assert [t["recipe"] for t in results["table"]] == ["a", "b", "c"]
  for t in results["table"]:
    for theta in ("+1", "-1"):
      assert t[f"theta{theta}"]["n"] == 27
    assert 0 <= t["test_accuracy"] <= 1 and t["mean_confidence"] <= 1 and t["mean_margin"] >= 0
  (pair,) = results["pairs"]
  assert pair["factor"] == "activation" and 0 <= pair["theta+1"]["mcnemar_p"] <= 1
  assert set(results["spearman"]) >= {"theta+1/success~mean_margin", "theta-1/success~test_accuracy"}
  for name in ("report.md", "results.json", "zoo.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  text = open(os.path.join(out, "report.md")).read()
  assert "| a |" in text and "One factor changed" in text
  capsys.readouterr()
  models = [zoo.train_stage(r, (train_set, test_set), out, print) for r in recipes]
  again = zoo_report.run(config, models, test_set, print, pairs=(("activation", "a", "b"),))
  log = capsys.readouterr().out
  assert "running" not in log and "done before" in log  # every stage loaded
  assert [t["theta+1"]["success_rate"] for t in again["table"]] == \
      [t["theta+1"]["success_rate"] for t in results["table"]]
