"""Files on disk never lie: checkpoints, stage records and training state, as a user meets them.

Each test is a user's scenario. Interruptions are injected at the exact point between two
writes (a patched writer or ``os.replace`` that raises), never by timing.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

import jsma_jax.models
from experiments import cli
from jsma_jax.models import CheckpointError, LeNet, load_checkpoint, save_checkpoint
from jsma_jax.models import checkpoint as checkpoint_lib
from jsma_jax.models import files as files_lib
from jsma_jax.models.checkpoint import METADATA, WEIGHTS

# ------------------------------------------------------------------ import structure


def _imports_anywhere(path: Path, package: str) -> set[str]:
  """Every module of ``package`` that ``path`` imports, at the top or inside a function."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
      found.add(node.module)
      found.update(f"{node.module}.{a.name}" for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith(package))
  return found


def test_models_modules_import_no_cycle_even_lazily():
  """data.py and tfds_builders.py no longer import each other."""
  root = Path(jsma_jax.models.__file__).parent
  modules = {f"jsma_jax.models.{p.stem}": p for p in root.glob("*.py") if p.stem != "__init__"}
  graph = {m: {d for d in _imports_anywhere(p, "jsma_jax.models") if d in modules and d != m}
           for m, p in modules.items()}
  state: dict[str, int] = {}

  def visit(m, path):
    assert state.get(m) != 1, f"import cycle: {' -> '.join(path + [m])}"
    if state.get(m) == 2:
      return
    state[m] = 1
    for d in sorted(graph[m]):
      visit(d, path + [m])
    state[m] = 2

  for m in sorted(graph):
    visit(m, [])
  assert "jsma_jax.models.tfds_builders" in graph["jsma_jax.models.data"]  # the lazy import is seen


# ------------------------------------------------------------------ shared helpers


def _weights(model) -> dict:
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))


def _same_weights(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(np.array_equal, _weights(a), _weights(b))))


def _fails_on(real, predicate, exc=KeyboardInterrupt):
  """``real``, except that the first call whose arguments satisfy ``predicate`` raises ``exc``
  (the interruption, injected at an exact point)."""
  fired = []

  def wrapped(*args, **kwargs):
    if not fired and predicate(*args):
      fired.append(args)
      raise exc(f"injected fault at {args}")
    return real(*args, **kwargs)

  wrapped.fired = fired
  return wrapped


def _hidden_siblings(path) -> list[str]:
  parent, name = os.path.split(os.fspath(path))
  return sorted(e for e in os.listdir(parent) if e.startswith(f".{name}."))


@pytest.fixture(scope="module")
def two_models():
  """Two LeNets with different weights: the checkpoint saved first, and its replacement."""
  return LeNet(rngs=nnx.Rngs(0)), LeNet(rngs=nnx.Rngs(1))


# -------------------------------------------------- checkpoints: atomic overwrite

# Every point between two writes of an overwrite, and which checkpoint must load after it.
FAULTS = [
    ("writing weights.msgpack", "atomic", lambda p, *_: p.endswith(WEIGHTS), "old"),
    ("between weights.msgpack and metadata.json", "atomic", lambda p, *_: p.endswith(METADATA), "old"),
    ("renaming the old folder aside", "rename", lambda a, b: "." not in os.path.basename(a)[:1], "old"),
    ("renaming the new folder in", "rename", lambda a, b: ".new-" in os.path.basename(a), "new"),
    ("removing the old folder", "rmtree", lambda p, *_: ".old-" in os.path.basename(p), "new"),
]


@pytest.mark.parametrize("where, target, predicate, survivor", FAULTS, ids=[f[0] for f in FAULTS])
def test_interrupted_checkpoint_overwrite_leaves_old_or_new_loadable(
    tmp_path, monkeypatch, two_models, where, target, predicate, survivor):
  """A user overwrites a checkpoint and the process dies at ``where``: loading the folder
  gives the old model or the new one, whole (the SHA-256 check passes), never neither."""
  old_model, new_model = two_models
  path = str(tmp_path / "lenet")
  save_checkpoint(path, old_model, {"run": "old"})
  with open(os.path.join(path, "notes.txt"), "w") as f:  # the user's own file beside it
    f.write("mine")
  if target == "atomic":
    fault = _fails_on(checkpoint_lib.atomic_write_bytes, predicate)
    monkeypatch.setattr(checkpoint_lib, "atomic_write_bytes", fault)
  elif target == "rename":
    fault = _fails_on(os.rename, predicate)
    monkeypatch.setattr(files_lib.os, "rename", fault)
  else:
    fault = _fails_on(files_lib.shutil.rmtree, predicate)
    monkeypatch.setattr(files_lib.shutil, "rmtree", fault)
  with pytest.raises(KeyboardInterrupt, match="injected"):
    save_checkpoint(path, new_model, {"run": "new"})
  monkeypatch.undo()
  assert fault.fired, where
  loaded, meta = load_checkpoint(path)
  assert meta["run"] == survivor
  assert _same_weights(loaded, old_model if survivor == "old" else new_model)
  assert open(os.path.join(path, "notes.txt")).read() == "mine"
  assert not [e for e in _hidden_siblings(path) if ".old-" in e]  # the swap was finished
  save_checkpoint(path, new_model, {"run": "again"})  # the next save cleans up after the crash
  assert _hidden_siblings(path) == []
  assert load_checkpoint(path)[1]["run"] == "again"


def test_a_reader_in_the_middle_of_a_swap_loads_the_new_checkpoint(tmp_path, monkeypatch, two_models):
  """Another process loads the checkpoint between the writer's two renames: it finishes the
  swap and loads the new model; the writer then completes without error."""
  old_model, new_model = two_models
  path = str(tmp_path / "lenet")
  save_checkpoint(path, old_model, {"run": "old"})
  real, seen = os.rename, []

  def rename(a, b):
    if ".new-" in os.path.basename(a) and not seen:
      seen.append(None)
      seen[0] = load_checkpoint(path)  # the reader, at the exact point
    return real(a, b)

  monkeypatch.setattr(files_lib.os, "rename", rename)
  save_checkpoint(path, new_model, {"run": "new"})
  monkeypatch.undo()
  assert seen[0][1]["run"] == "new" and _same_weights(seen[0][0], new_model)
  assert load_checkpoint(path)[1]["run"] == "new" and _hidden_siblings(path) == []


def test_overwrite_drops_stale_checkpoint_files_and_keeps_the_users(tmp_path, two_models):
  """A LeNet saved with its NumPy weights, then overwritten without: no stale weights.npz
  of the old model is left beside the new one; other files in the folder stay."""
  old_model, new_model = two_models
  path = str(tmp_path / "lenet")
  save_checkpoint(path, old_model)
  (tmp_path / "lenet" / "report.md").write_text("# my notes")
  save_checkpoint(path, new_model, numpy_weights=False)
  assert sorted(os.listdir(path)) == [METADATA, "report.md", WEIGHTS]
  assert _same_weights(load_checkpoint(path)[0], new_model)


# ------------------------------------------------ damaged metadata.json

DAMAGE = [
    ("bad JSON", lambda meta: '{"model": {"arch": "lenet",', "not valid JSON"),
    ("missing model", lambda meta: json.dumps({k: v for k, v in meta.items() if k != "model"}),
     "has no key 'model'"),
    ("missing SHA-256", lambda meta: json.dumps({k: v for k, v in meta.items() if k != "weights_sha256"}),
     "has no key 'weights_sha256'"),
    ("a list", lambda meta: "[]", "not a JSON object"),
    ("wrong model", lambda meta: json.dumps({**meta, "model": {"arch": "lenet", "colour": "red"}}),
     "is not a model configuration"),
]


@pytest.mark.parametrize("what, damage, message", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_metadata_names_the_path_the_fault_and_the_fix(tmp_path, two_models, what, damage, message):
  path = str(tmp_path / "lenet")
  save_checkpoint(path, two_models[0])
  meta = json.loads((tmp_path / "lenet" / METADATA).read_text())
  (tmp_path / "lenet" / METADATA).write_text(damage(meta))
  with pytest.raises(CheckpointError) as info:
    load_checkpoint(path)
  text = str(info.value)
  assert path in text and message in text and ("save it again" in text or "save the checkpoint again" in text)
  assert isinstance(info.value, ValueError)


def test_missing_checkpoint_is_a_file_not_found_error_naming_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint at path"):
    load_checkpoint(tmp_path / "nothing")


def test_cli_prints_one_line_for_a_damaged_checkpoint(tmp_path, two_models, capsys):
  """``jsma-jax attack`` on a damaged checkpoint: exit status 2 (a user error) and one line, no traceback."""
  path = str(tmp_path / "lenet")
  save_checkpoint(path, two_models[0])
  (tmp_path / "lenet" / METADATA).write_text("{not json")
  assert cli.main(["attack", "--checkpoint", path, "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "Traceback" not in err
  assert err.startswith("jsma-jax attack: error: checkpoint") and path in err and "not valid JSON" in err


# ------------------------------------------------------- an unwritable --out


def test_attack_with_an_unwritable_out_fails_before_any_attack(tmp_path, two_models, monkeypatch, capsys):
  """``--out`` under a file (a typo): the command stops at once, saying so, and attacks nothing."""
  import jsma_jax

  path = str(tmp_path / "lenet")
  save_checkpoint(path, two_models[0])
  (tmp_path / "results").write_text("a file, not a folder")
  out = str(tmp_path / "results" / "attack")

  def no_attack(*args, **kwargs):
    raise AssertionError("an attack ran before the output folder was checked")

  monkeypatch.setattr(jsma_jax, "attack_dataset", no_attack)
  assert cli.main(["attack", "--checkpoint", path, "--out", out, "--sources", "1"]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert err.startswith(f"jsma-jax attack: error: --out {out!r} cannot be written")


def test_reproduce_and_attack_share_the_one_output_check():
  """One home for the check: both commands call ``stages.writable_folder``."""
  import inspect

  from experiments.commands import attack as attack_cli
  from experiments.commands import reproduce

  for module in (attack_cli, reproduce):
    assert "writable_folder(config.out)" in inspect.getsource(module.main), module.__name__


# ------------------------------------------------ stage records that cannot be mixed


@pytest.mark.slow
def test_stage_arrays_from_another_configuration_are_never_loaded(tmp_path, monkeypatch):
  """Config 1 finishes a stage; config 2 rewrites its .npz and dies before its .json;
  config 1 again: the .npz is not the one its record was written with, so it is redone."""
  from experiments.common import stages as stages_lib

  logs = []
  stages = stages_lib.Stages(str(tmp_path), logs.append)
  work = lambda value: (lambda: ({"value": value}, {"a": np.full(3, value)}))
  stages.run("s", {"config": 1}, work(1))
  json_path, _ = stages.paths("s")
  fault = _fails_on(stages_lib.atomic_write_json, lambda p, *_: p == json_path)
  monkeypatch.setattr(stages_lib, "atomic_write_json", fault)
  with pytest.raises(KeyboardInterrupt):
    stages_lib.Stages(str(tmp_path), logs.append).run("s", {"config": 2}, work(2))
  monkeypatch.undo()
  again = stages_lib.Stages(str(tmp_path), logs.append)
  summary, arrays = again.run("s", {"config": 1}, work(1))
  assert again.ran == ["s"] and "is not the one its record was written with" in logs[-3]
  assert summary == {"value": 1} and arrays["a"].tolist() == [1, 1, 1]
  assert stages_lib.Stages(str(tmp_path), logs.append).run("s", {"config": 1}, work(1))[1]["a"].tolist() == [1, 1, 1]


@pytest.mark.slow
def test_stage_artefact_replaced_by_another_run_is_redone(tmp_path, two_models):
  """A stage that wrote a checkpoint is redone when the checkpoint was replaced since."""
  from experiments.common import stages as stages_lib

  path = str(tmp_path / "models" / "m")
  models = two_models

  def work(i):
    def fn():
      save_checkpoint(path, models[i], numpy_weights=False)
      return {"model": i}, None
    return fn

  logs = []
  first = stages_lib.Stages(str(tmp_path), logs.append)
  assert first.run("model", {"k": 0}, work(0), artefacts=[path])[0] == {"model": 0}
  save_checkpoint(path, models[1], numpy_weights=False)  # another run's model, same folder
  second = stages_lib.Stages(str(tmp_path), logs.append)
  second.run("model", {"k": 0}, work(0), artefacts=[path])
  assert second.ran == ["model"] and "changed since this stage wrote it" in " ".join(logs)
  assert _same_weights(load_checkpoint(path)[0], models[0])
  third = stages_lib.Stages(str(tmp_path), logs.append)
  third.run("model", {"k": 0}, work(0), artefacts=[path])
  assert third.loaded == ["model"]


STUDY = ["--arch", "tiny_mlp", "--activations", "tanh", "--sources", "2", "--ablation-sources", "1",
         "--variants", "paper", "--pixels", "2,6", "--gamma", "0.01", "--figure-examples", "1",
         "--batch-size", "8"]


@pytest.mark.slow  # three tiny studies: about 30 s alone on 2 cores
def test_resumed_study_never_attacks_another_studys_model(tmp_path, monkeypatch, capsys):
  """The scenario: study A done; study B (another epoch count) on the same --out
  replaces models/tiny_mlp_tanh and dies before its stage record; rerunning A retrains
  A's model instead of attacking B's, and gives A's numbers again."""
  from experiments.commands import reproduce
  from experiments.common import stages as stages_lib
  from experiments.study import inputs

  out = str(tmp_path / "study")
  a, b = STUDY + ["--epochs", "1", "--out", out], STUDY + ["--epochs", "2", "--out", out]
  first = reproduce.main(a)
  record = os.path.join(out, "stages", "model_tanh.json")
  fault = _fails_on(stages_lib.atomic_write_json, lambda p, *_: p == record)
  monkeypatch.setattr(stages_lib, "atomic_write_json", fault)
  with pytest.raises(KeyboardInterrupt):
    reproduce.main(b)
  monkeypatch.undo()
  config_b = reproduce.parse_args(b)
  assert load_checkpoint(inputs.model_path(config_b, "tanh"))[1]["study_model"]["epochs"] == 2
  capsys.readouterr()
  again = reproduce.main(a)
  printed = capsys.readouterr().out
  assert "[model_tanh] done before" not in printed and "changed since this stage wrote it" in printed
  config_a = reproduce.parse_args(a)
  assert load_checkpoint(inputs.model_path(config_a, "tanh"))[1]["study_model"]["epochs"] == 1
  assert again["rows"][0]["success_rate"] == first["rows"][0]["success_rate"]
  assert (again["models"] == first["models"]
          or again["models"]["tanh"]["accuracy"] == first["models"]["tanh"]["accuracy"])


# ---------------------------------------------------------- training that resumes

TIMINGS = {"epoch_seconds", "train_seconds"}


def _tiny_recipe(**changes):
  """Adam on a cosine schedule (the optimiser's step count matters), a held-out sixth."""
  from jsma_jax.models import ModelConfig, Recipe

  return Recipe(name="tiny", model=ModelConfig(), optimizer="adam", schedule="cosine",
                learning_rate=3e-3, batch_size=32, epochs=3, split="holdout", eval_batch_size=64,
                seed=3).replace(**changes)


@pytest.fixture(scope="module")
def digits():
  from jsma_jax.models import load_mnist

  x, y = load_mnist(split="train")
  xt, yt = load_mnist(split="test")
  return (x[::40], y[::40]), (xt[::20], yt[::20])  # 125 training, 50 test digits


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory):
  from jsma_jax.models import train

  folder = str(tmp_path_factory.mktemp("uninterrupted"))
  return train(_tiny_recipe(), *digits, checkpoint_dir=folder, print_fn=None), folder


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["after epoch 1 was saved", "while saving epoch 2"])
def test_interrupted_training_resumes_to_the_uninterrupted_result(digits, uninterrupted, tmp_path,
                                                                  monkeypatch, stop):
  """A run stopped between two epochs and started again with the same call ends with the
  weights and history of the run that was never stopped, bit for bit."""
  from jsma_jax.models import train, train_state

  (model_a, history_a), _ = uninterrupted
  folder = str(tmp_path / "run")
  real = train_state.save
  epochs_saved = []

  def save_then_die(folder_, ident, epochs_done, *rest):
    if stop == "while saving epoch 2" and epochs_done == 2:
      raise KeyboardInterrupt("injected before epoch 2's state was written")
    real(folder_, ident, epochs_done, *rest)
    epochs_saved.append(epochs_done)
    if stop == "after epoch 1 was saved" and epochs_done == 1:
      raise KeyboardInterrupt("injected after epoch 1's state was written")

  monkeypatch.setattr(train_state, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt, match="injected"):
    train(_tiny_recipe(), *digits, checkpoint_dir=folder, print_fn=None)
  monkeypatch.undo()
  assert epochs_saved == [1]
  lines = []
  model_b, history_b = train(_tiny_recipe(), *digits, checkpoint_dir=folder, print_fn=lines.append)
  assert any("resuming from" in s and "1 of 3 epochs done" in s for s in lines)
  assert _same_weights(model_a, model_b)
  assert {k: v for k, v in history_a.items() if k not in TIMINGS} == \
      {k: v for k, v in history_b.items() if k not in TIMINGS}
  assert len(history_b["epoch_seconds"]) == 3


@pytest.mark.slow
def test_training_with_a_checkpoint_folder_equals_training_without(digits, uninterrupted):
  from jsma_jax.models import train

  (model_a, history_a), _ = uninterrupted
  model, history = train(_tiny_recipe(), *digits, print_fn=None)
  assert _same_weights(model, model_a)
  assert history["train_loss"] == history_a["train_loss"]


@pytest.mark.slow
def test_a_finished_run_is_returned_without_training(digits, uninterrupted):
  from jsma_jax.models import train

  (model_a, history_a), folder = uninterrupted
  lines = []
  model, history = train(_tiny_recipe(), *digits, checkpoint_dir=folder, print_fn=lines.append)
  assert _same_weights(model, model_a) and history["test_accuracy"] == history_a["test_accuracy"]
  assert not any(s.startswith("epoch ") for s in lines)


@pytest.mark.slow
@pytest.mark.parametrize("change, named", [
    ({"learning_rate": 1e-3}, "recipe.learning_rate"),
    ({"epochs": 4}, "recipe.epochs"),
    ({"seed": 4}, "key"),
], ids=["learning rate", "epochs", "seed"])
def test_a_partial_run_of_another_recipe_is_refused(digits, uninterrupted, change, named):
  from jsma_jax.models import train

  _, folder = uninterrupted
  with pytest.raises(ValueError, match="holds a partial run of another recipe or data") as info:
    train(_tiny_recipe(**change), *digits, checkpoint_dir=folder, print_fn=None)
  assert named in str(info.value) and "delete" in str(info.value)


@pytest.mark.slow
def test_a_partial_run_from_other_starting_weights_is_refused(digits, tmp_path):
  """Fine-tuning a module: the state of a run that started from other weights is refused."""
  from jsma_jax.models import train

  folder = str(tmp_path / "run")
  recipe = dict(epochs=1, batch_size=64, split="all", print_fn=None, checkpoint_dir=folder)
  train(LeNet(rngs=nnx.Rngs(0)), digits[0], **recipe)
  with pytest.raises(ValueError, match="initial_weights"):
    train(LeNet(rngs=nnx.Rngs(1)), digits[0], **recipe)


@pytest.mark.slow
def test_a_partial_run_on_other_data_is_refused(digits, uninterrupted):
  from jsma_jax.models import train

  (x, y), test = digits
  _, folder = uninterrupted
  with pytest.raises(ValueError, match="train_data"):
    train(_tiny_recipe(), (x[:-1], y[:-1]), test, checkpoint_dir=folder, print_fn=None)


TRAIN = ["train", "--dataset", "embedded", "--recipe", "theano_tutorial", "--epochs", "2",
         "--batch-size", "1000"]


@pytest.mark.slow  # three short trainings on the 5,000 embedded digits
def test_train_command_resumes_an_interrupted_run_and_refuses_another_recipe(tmp_path, monkeypatch, capsys):
  """``jsma-jax train`` stopped after its first epoch: the same command resumes from
  there; the same OUT with another learning rate is refused in one line until --force."""
  from jsma_jax.models import train_state

  out = str(tmp_path / "lenet")
  real = train_state.save

  def save_then_die(folder, ident, epochs_done, *rest):
    real(folder, ident, epochs_done, *rest)
    raise KeyboardInterrupt("injected after epoch 1's state was written")

  monkeypatch.setattr(train_state, "save", save_then_die)
  with pytest.raises(KeyboardInterrupt):
    cli.main(TRAIN + ["--out", out])
  monkeypatch.undo()
  assert os.path.isfile(os.path.join(out, train_state.STATE_FILE))
  assert not os.path.isfile(os.path.join(out, METADATA))
  capsys.readouterr()
  assert cli.main(TRAIN + ["--lr", "0.05", "--out", out]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "holds a partial run of another recipe" in err
  assert "recipe.learning_rate 0.1 there, 0.05 here" in err and "--force" in err
  assert cli.main(TRAIN + ["--out", out]) == 0
  printed = capsys.readouterr().out
  assert "1 of 2 epochs done" in printed and "epoch 1/2" not in printed and "epoch 2/2" in printed
  _model, meta = load_checkpoint(out)
  assert len(meta["history"]["train_loss"]) == 2
  assert not os.path.isfile(os.path.join(out, train_state.STATE_FILE))
  with open(os.path.join(out, "results.json")) as f:
    assert json.load(f)["run"] == meta["run"]
  assert cli.main(TRAIN + ["--lr", "0.05", "--out", out]) == 0  # a finished run is replaced
  assert load_checkpoint(out)[1]["recipe"]["learning_rate"] == 0.05


@pytest.mark.slow
def test_train_command_rewrites_reports_it_did_not_finish(tmp_path, monkeypatch, capsys):
  """Stopped between the checkpoint and its reports: the next run writes the reports of
  this checkpoint instead of leaving another run's results.json beside it."""
  from experiments.commands import train as train_lenet

  out = tmp_path / "lenet"
  out.mkdir()
  (out / "results.json").write_text(json.dumps({"run": {"epochs": 99}}))
  model = LeNet(rngs=nnx.Rngs(0))
  config, _ = train_lenet.parse_args(TRAIN[1:] + ["--out", str(out)])
  history = {"train_loss": [1.0, 0.5], "train_accuracy": [0.5, 0.8], "test_accuracy": [0.6, 0.9],
             "validation_accuracy": [], "epoch_seconds": [1.0, 1.0], "train_seconds": 2.0}
  save_checkpoint(out, model, {"run": dataclasses.asdict(config), "recipe": config.make_recipe().to_dict(),
                               "history": history, "test_accuracy": 0.9, "train_seconds": 2.0,
                               "dataset": {"n_train": 5000, "n_test": 1000}})
  meta = train_lenet.main(TRAIN[1:] + ["--out", str(out)])
  assert "already holds this run" in capsys.readouterr().out
  assert json.loads((out / "results.json").read_text())["run"] == meta["run"]
  assert "0.9000" in (out / "report.md").read_text()


@pytest.mark.slow  # compiles and runs a LeNet's training step
def test_the_persistence_page_runs_as_written(capsys):
  """docs/persistence.md: its python blocks, in order, in one namespace."""
  import re

  page = Path(__file__).resolve().parent.parent / "docs" / "persistence.md"
  namespace: dict = {"__name__": "docs"}
  blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S)
  assert len(blocks) == 3
  for i, block in enumerate(blocks):
    exec(compile(block, f"docs/persistence.md python block {i + 1}", "exec"), namespace)
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "second ['metadata.json', 'weights.msgpack', 'weights.npz']"
  assert out[1] == "True" and "holds a partial run of another recipe" in out[2]


@pytest.mark.slow  # two tiny family runs on a LeNet
def test_family_rerun_on_a_replaced_checkpoint_is_not_answered_from_the_old_model(tmp_path, two_models, capsys):
  """``jsma-jax family --checkpoint C`` done; C retrained in place; the same command
  attacks the new model instead of loading the old model's stage."""
  from experiments.commands import family

  ckpt, out = str(tmp_path / "lenet"), str(tmp_path / "family")
  argv = ["--checkpoint", ckpt, "--out", out, "--sources", "1", "--variants", "jsma", "--chunk-size", "16"]
  save_checkpoint(ckpt, two_models[0])
  family.main(argv)
  save_checkpoint(ckpt, two_models[1])
  capsys.readouterr()
  again = family.main(argv)
  assert again["stages_loaded"] == [] and "configuration changed" in capsys.readouterr().out
