"""The reproduction command on a tiny configuration: files, schema, consistency, resume."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import cli
from experiments.commands import attack as attack_cli
from experiments.commands import reproduce
from experiments.commands import train as train_lenet
from experiments.common import stages as stages_lib
from experiments.study import config as config_lib
from experiments.study import inputs
from jsma_jax import StopReason, all_other_targets, jsma

TINY = ["--arch", "tiny_mlp", "--epochs", "1", "--activations", "tanh", "--sources", "3",
        "--ablation-sources", "2", "--variants", "paper,decrease,single", "--pixels", "2,6,10,20",
        "--gamma", "0.02", "--figure-examples", "1", "--batch-size", "16"]
VOLATILE = {"seconds", "attack_seconds", "attacks_per_second", "stage_seconds", "total_attack_seconds",
            "this_process_seconds", "stages_ran", "stages_loaded", "command", "out", "train_seconds"}


def _stable(obj):
  """``obj`` without timings, paths and bookkeeping: what must repeat exactly."""
  if isinstance(obj, dict):
    return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
  if isinstance(obj, list):
    return [_stable(v) for v in obj]
  return obj


def _load(out):
  with open(os.path.join(out, "results.json")) as f:
    return json.load(f)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("study"))
  reproduce.main(TINY + ["--out", out])
  return out, _load(out)


@pytest.mark.slow
def test_files_and_schema(run):
  out, res = run
  for name in ("results.json", "report.md", "success_vs_budget.png", "pairs_tanh.png",
               "adversarial_grid_tanh.png", "saliency_tanh.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  for key in ("config", "dataset", "environment", "seed", "models", "rows", "pairs", "sweeps", "figures"):
    assert key in res, key
  for key in ("jax", "backend", "device"):
    assert res["environment"][key]
  assert 0 <= res["models"]["tanh"]["accuracy"]["test"] <= 1
  assert [(r["variant"], r["n"]) for r in res["rows"]] == [("paper", 27), ("decrease", 18), ("single", 18)]
  report = open(os.path.join(out, "report.md")).read()
  assert "97.10%" in report and "64.7%" in report and "What moves the numbers" in report
  pairs = res["pairs"]["tanh"]
  for key in ("hardness", "mean_distance", "success_rate", "success_count", "attack_count"):
    assert np.array(pairs[key], dtype=float).shape == (10, 10), key


@pytest.mark.slow
def test_internal_consistency(run):
  out, res = run
  paper = res["rows"][0]
  pairs = res["pairs"]["tanh"]
  count, wins = np.array(pairs["attack_count"]), np.array(pairs["success_count"])
  assert count.sum() == paper["n"] and wins.sum() == paper["n_success"]
  assert np.all(np.diag(count) == 0)
  rate = np.array(pairs["success_rate"], dtype=float)
  np.testing.assert_allclose(rate[count > 0], wins[count > 0] / count[count > 0])
  h = np.array(pairs["hardness"], dtype=float)
  assert np.isnan(np.diag(h)).all() and (h[count > 0] >= 0).all()
  sweep = res["sweeps"]["tanh"]
  table = next(p for p in sweep if p["iterations"] == paper["table_max_iter"])
  assert (table["n_success"], table["success_rate"]) == (paper["n_success"], paper["success_rate"])
  rates = [p["success_rate"] for p in sweep]
  assert rates == sorted(rates)
  d = np.load(os.path.join(out, "stages", "distance_tanh_test.npz"))["distance"]
  assert ((d >= 0) & (d <= 1)).all() and res["pairs"]["tanh"]["robustness"]["min"] == pytest.approx(d.min())


@pytest.mark.slow
def test_budget_sweep_agrees_with_separate_runs(run):
  out, _res = run
  config = reproduce.parse_args(TINY + ["--out", out])
  apply_fn, params, _ = inputs.load_model(config, "tanh")
  arr = np.load(os.path.join(out, "stages", "attack_tanh_paper_test_c000.npz"))
  data = inputs.load_data(config)
  x_all, y_all = data["test"]
  e = all_other_targets(x_all[inputs.source_indices(config, "test", len(y_all))], y_all[
      inputs.source_indices(config, "test", len(y_all))], 10)
  np.testing.assert_array_equal(arr["target"], np.asarray(e.targets))
  for k, m in enumerate(arr["sweep_iterations"]):
    if m == arr["sweep_iterations"][-1] or k % 2:
      continue
    r = jsma(apply_fn, e.x, e.targets, params=params, initial_domain="all", max_iter=int(m))
    np.testing.assert_array_equal(arr["sweep_success"][k], np.asarray(r.success), err_msg=f"budget {m}")
    np.testing.assert_array_equal(arr["sweep_n_changed"][k], np.asarray(r.n_changed), err_msg=f"budget {m}")


@pytest.mark.slow
def test_repeat_loads_every_stage_and_gives_identical_numbers(run):
  out, res = run
  again = reproduce.main(TINY + ["--out", out])
  assert again["stages_ran"] == [] and len(again["stages_loaded"]) == 6
  assert _stable(_load(out)) == _stable(res)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_results(run, tmp_path, monkeypatch):
  out, res = run
  resumed = str(tmp_path / "resumed")
  original = stages_lib.Stages.run
  calls = []

  def interrupted(self, name, key, fn, **kwargs):
    if len(calls) == 3:
      raise KeyboardInterrupt  # killed in the middle of the 4th stage
    calls.append(name)
    return original(self, name, key, fn, **kwargs)

  monkeypatch.setattr(stages_lib.Stages, "run", interrupted)
  with pytest.raises(KeyboardInterrupt):
    reproduce.main(TINY + ["--out", resumed])
  monkeypatch.setattr(stages_lib.Stages, "run", original)
  assert not os.path.exists(os.path.join(resumed, "results.json"))
  second = reproduce.main(TINY + ["--out", resumed])
  assert second["stages_loaded"] == calls and len(second["stages_ran"]) == 3
  assert _stable(_load(resumed)) == _stable(res)
  for name in os.listdir(os.path.join(out, "stages")):
    if name.endswith(".npz"):
      a, b = np.load(os.path.join(out, "stages", name)), np.load(os.path.join(resumed, "stages", name))
      for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")


@pytest.mark.slow
def test_more_sources_reuse_finished_chunks(tmp_path):
  out = str(tmp_path / "grow")
  small = reproduce.main(TINY + ["--out", out, "--sources", "3", "--chunk-sources", "2"])
  grown = reproduce.main(TINY + ["--out", out, "--sources", "4", "--chunk-sources", "2"])
  assert "attack_tanh_paper_test_c000" in grown["stages_loaded"]
  assert "attack_tanh_paper_test_c001" in grown["stages_ran"]  # its sources changed: [2] -> [2, 3]
  assert grown["rows"][0]["n"] == 36 and small["rows"][0]["n"] == 27


@pytest.mark.slow
def test_changed_configuration_redoes_the_stage(tmp_path):
  st = stages_lib.Stages(str(tmp_path), log=lambda s: None)
  n = []
  work = lambda: (n.append(1) or {"v": len(n)}, {"a": np.arange(3)})
  assert st.run("s", {"k": 1}, work)[0] == {"v": 1}
  assert st.run("s", {"k": 1}, work)[0] == {"v": 1} and len(n) == 1
  summary, arrays = st.run("s", {"k": 2}, work)
  assert summary == {"v": 2} and len(n) == 2
  np.testing.assert_array_equal(arrays["a"], np.arange(3))
  assert not [f for f in os.listdir(st.folder) if f.startswith(".tmp-")]


@pytest.mark.parametrize("argv, message", [
    (["--variants", "nope"], "--variants"),
    (["--splits", "dev"], "--splits"),
    (["--pixels", "10,2"], "--pixels"),
    (["--sources", "0"], "--sources"),
], ids=["variant", "split", "pixels-order", "sources"])
def test_config_validation(argv, message):
  """The configuration's checks refuse them; the command line's message names the flag."""
  from experiments.common.cli_args import UsageError

  with pytest.raises(UsageError, match=message):
    reproduce.parse_args(argv)
  with pytest.raises(ValueError, match="variants"):  # from Python, the configuration's own check
    config_lib.StudyConfig(variants=("nope",))


def test_full_preset():
  c = reproduce.parse_args(["--full"])
  assert (c.source, c.n_sources, c.n_sources_splits, c.splits) == ("idx", 10000, 1000, config_lib.SPLITS)
  assert c.shipped and c.activations == ("tanh",) and c.data_dir.endswith(os.path.join("data", "mnist"))
  assert c.budgets(28 * 28).table == 56 and c.budgets(28 * 28).sweep[-1] == 150


def test_presets_are_configs_and_the_flag_is_the_preset():
  assert reproduce.parse_args(["--preset", "full_mnist"]) == reproduce.parse_args(["--full"])
  assert reproduce.parse_args([]) == config_lib.PRESETS["quick"]()
  assert reproduce.parse_args(["--full", "--sources", "7"]).n_sources == 7  # options override the preset


@pytest.mark.parametrize("parser", [reproduce.parser, train_lenet.parser, attack_cli.parser],
                         ids=["reproduce", "train", "attack"])
def test_help_describes_every_option_with_its_default(parser, capsys):
  p = parser()
  assert p.prog.startswith("jsma-jax ")
  for action in p._actions:
    assert action.help, action.option_strings  # every option has a description
  with pytest.raises(SystemExit):
    p.parse_args(["--help"])
  text = capsys.readouterr().out
  shown = [a for a in p._actions if a.dest != "help" and not a.required]
  assert text.count("(default:") >= len(shown)


def test_cli_dispatches_and_lists_commands(capsys):
  assert cli.main(["--help"]) == 0
  out = capsys.readouterr().out
  assert all(command in out for command in cli.COMMANDS)
  assert cli.main(["nope"]) == 2


@pytest.mark.slow
def test_attack_command_on_the_study_model(run, tmp_path):
  out, _res = run
  folder = str(tmp_path / "attack")
  got = cli.main(["attack", "--checkpoint", inputs.model_path(reproduce.parse_args(TINY + ["--out", out]), "tanh"),
                  "--sources", "2", "--gamma", "0.02", "--out", folder])
  assert got == 0
  with open(os.path.join(folder, "results.json")) as f:
    r = json.load(f)
  assert r["summary"]["n"] == 18 and sum(r["stop_reasons"].values()) == 18
  assert set(r["stop_reasons"]) <= {reason.name for reason in StopReason}
  assert "success rate" in open(os.path.join(folder, "report.md")).read()
  assert np.load(os.path.join(folder, "attacks.npz"))["x_adv"].shape == (18, 28, 28, 1)


@pytest.mark.slow
def test_tabular_writes_where_the_user_runs_it_never_into_the_package(tmp_path, monkeypatch):
  """``python -m jsma_jax_experiments.scripts.tabular`` with no ``--out`` writes under the current folder
  (``runs/tabular``), not beside its module (site-packages, or the committed results of a checkout)."""
  import pathlib

  from experiments.scripts import tabular

  written = []
  monkeypatch.setattr(tabular, "run_all", lambda config, out: written.append((config, out)) or {})
  monkeypatch.chdir(tmp_path)
  tabular.main([])
  (_config, out), = written
  package = pathlib.Path(tabular.__file__).resolve().parent
  assert out.resolve() == tmp_path / "runs" / "tabular"
  assert package not in out.resolve().parents
  tabular.main(["--out", "elsewhere", "--seed", "3"])
  assert written[1][1].resolve() == tmp_path / "elsewhere" and written[1][0].seed == 3
