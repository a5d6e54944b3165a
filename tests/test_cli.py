"""The command line without traps: the defaults ``--help`` shows are the ones used, and every
command runs with its defaults in a fresh folder (or stops with one line naming the option)."""

from __future__ import annotations

import argparse
import json
import os
import re

import pytest

from experiments import cli
from experiments.commands import attack, factorial, family, reproduce, zoo
from experiments.commands import train as train_lenet
from experiments.common import cli_args

COMMANDS = {  # command -> (its parser, its configuration from a command line)
    "reproduce": (reproduce.parser, reproduce.parse_args),
    "train": (train_lenet.parser, lambda argv: train_lenet.parse_args(argv)),
    "attack": (attack.parser, attack.parse_args),
    "family": (family.parser, family.parse_args),
    "zoo": (zoo.parser, zoo.parse_args),
    "factorial": (factorial.parser, factorial.parse_args),
}


def shown_defaults(p: argparse.ArgumentParser) -> dict:
  """``{action: the default text --help prints}`` for the options whose default argparse fills in."""
  formatter = p._get_formatter()
  shown = {}
  for action in p._actions:
    if action.dest == "help" or action.help is None or "(default" in action.help:
      continue  # help and options whose help states its default in words
    text = formatter._expand_help(action)
    match = re.search(r"\(default: (.*)\)$", text, flags=re.S)
    assert match, f"{action.option_strings}: --help shows no default"
    shown[action] = match.group(1)
  return shown


def argv_of(shown: dict) -> list[str]:
  """The command line that passes every shown default explicitly."""
  argv = []
  for action, text in shown.items():
    flag = action.option_strings[0]
    if text == "None":
      continue  # nothing to pass: the help says what None means
    if isinstance(action, argparse.BooleanOptionalAction):
      argv.append(flag if text == "True" else "--no-" + flag[2:])
    elif action.nargs == 0:  # store_true: only a default of off can be shown truthfully
      assert text in ("False", "off"), f"{flag}: a store_true flag cannot be turned off; use BooleanOptionalAction"
    elif action.nargs == "+":
      argv += [flag, *text.split(" ")]
    else:
      argv += [flag, text]
  return argv


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_shows_the_defaults_that_are_used(command):
  """Passing every default --help shows, as text, gives the configuration of passing nothing."""
  make_parser, parse = COMMANDS[command]
  p = make_parser()
  assert p.prog == f"jsma-jax {command}"
  assert all(action.help for action in p._actions), "every option has a description"
  explicit = argv_of(shown_defaults(p))
  assert explicit  # the test compares something
  assert parse(explicit) == parse([])


def test_help_formats_without_error(capsys):
  for make_parser, _ in COMMANDS.values():
    with pytest.raises(SystemExit):
      make_parser().parse_args(["--help"])
  text = capsys.readouterr().out
  assert "(default: (" not in text  # no tuple shown as the default of a comma-separated flag


@pytest.mark.parametrize("command", ["train", "attack", "reproduce"])
def test_data_dir_alone_selects_idx_files(command):
  _, parse = COMMANDS[command]
  config = parse(["--data-dir", "some/folder"])
  config = config[0] if isinstance(config, tuple) else config
  assert (config.source, config.data_dir) == ("idx", "some/folder")
  config = parse([])
  config = config[0] if isinstance(config, tuple) else config
  assert config.source == "embedded"


@pytest.mark.parametrize("command", ["train", "attack", "reproduce"])
def test_data_dir_with_embedded_data_is_refused(command):
  _, parse = COMMANDS[command]
  with pytest.raises(cli_args.UsageError, match="--data-dir"):
    parse(["--dataset", "embedded", "--data-dir", "some/folder"])


def test_defaults_agree_with_the_library_or_say_why():
  from jsma_jax import AttackOptions
  from jsma_jax.options import DEFAULT_GAMMA

  library = {name: f.default for name, f in AttackOptions.__dataclass_fields__.items()}
  library["gamma"] = DEFAULT_GAMMA if library["gamma"] is None else library["gamma"]  # None: the paper's
  config = attack.parse_args([])
  for name in ("theta", "gamma", "probabilities", "max_iter"):
    assert getattr(config, name) == library[name], name
  assert config.initial_domain != library["initial_domain"]  # the paper's; the help says why
  help_of = {a.dest: a.help for a in attack.parser()._actions}
  assert "library's jsma default" in help_of["initial_domain"]
  assert "Algorithm 2" in help_of["initial_domain"]


def test_checkpoint_names_a_shipped_lenet_or_says_which_exist():
  from jsma_jax.models import SHIPPED_LENETS, load_paper_lenet

  for name in SHIPPED_LENETS:
    _, meta = cli_args.load_model(f"{cli_args.SHIPPED}:{name}")
    assert meta["weights_sha256"] == load_paper_lenet(name)[1]["weights_sha256"]
  assert cli_args.load_model(cli_args.SHIPPED)[1]["weights_sha256"] == load_paper_lenet()[1]["weights_sha256"]
  with pytest.raises(cli_args.UsageError, match="theano_tutorial_30ep") as e:
    cli_args.load_model("shipped:theano")
  assert "--checkpoint 'shipped:theano'" in str(e.value)


def test_train_defaults_to_the_shipped_models_recipe():
  from jsma_jax.models import load_paper_lenet

  config, _ = train_lenet.parse_args([])
  assert config.make_recipe().to_dict() == load_paper_lenet()[1]["recipe"]
  help_of = {a.dest: a.help for a in train_lenet.parser()._actions}
  assert "jsma_jax.models.RECIPES" in help_of["recipe"] and "PRESETS" not in help_of["recipe"]
  assert train_lenet.parse_args(["--recipe", "adam_cosine"])[0].make_recipe().name == "adam_cosine"


def test_zoo_thetas_default_is_the_comma_separated_text():
  assert zoo.parse_args([]).thetas == (1.0, -1.0)
  assert zoo.parser().get_default("thetas") == "1,-1"


def _one_line_error(capsys, argv, option):
  assert cli.main(argv) == 2
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith(f"jsma-jax {argv[0]}: ") and option in lines[0], lines[0]
  assert "Traceback" not in captured.err


@pytest.mark.parametrize("argv, option", [
    (["zoo"], "--data-dir"),
    (["zoo", "--data-dir", "no/such/folder"], "--data-dir"),
    (["factorial"], "--data-dir"),
    (["factorial", "--data-dir", "no/such/folder"], "--data-dir"),
    (["attack", "--data-dir", "no/such/folder"], "--data-dir"),
    (["attack", "--dataset", "idx"], "--data-dir"),
    (["attack", "--checkpoint", "no/such/checkpoint"], "--checkpoint"),
    (["family", "--checkpoint", "no/such/checkpoint"], "--checkpoint"),
    (["family", "--data-dir", "no/such/folder"], "--data-dir"),
    (["train", "--data-dir", "no/such/folder"], "--data-dir"),
    (["train", "--dataset", "embedded", "--data-dir", "x"], "--data-dir"),
    (["reproduce", "--full"], "--data-dir"),
    (["reproduce", "--checkpoint-dir", "no/such/folder"], "--checkpoint-dir"),
], ids=lambda v: v if isinstance(v, str) else "-".join(v).replace("/", "_"))
def test_what_cannot_run_stops_with_one_line_naming_the_option(argv, option, capsys, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a fresh folder: no repository layout to lean on
  _one_line_error(capsys, argv, option)
  assert not os.listdir(tmp_path)  # stopped before writing anything


# Each command with its defaults, in a fresh folder, at the smallest size its options allow.
FRESH = {
    "train": (["--epochs", "1"], "runs/models/lenet/report.md"),
    "attack": (["--sources", "1"], "runs/attack/report.md"),
    "family": (["--sources", "1", "--variants", "jsma"], "runs/family/report.md"),
    "reproduce": (["--sources", "1", "--ablation-sources", "1", "--variants", "paper", "--pixels", "2,10",
                   "--figure-examples", "1", "--gamma", "0.02"], "runs/reproduce/report.md"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(FRESH))
def test_each_command_runs_with_its_defaults_in_a_fresh_folder(command, tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  size, report = FRESH[command]
  assert cli.main([command, *size]) == 0, capsys.readouterr().err
  text = (tmp_path / report).read_text()
  for figure in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):  # every figure the report shows exists
    assert os.path.getsize(tmp_path / os.path.dirname(report) / figure) > 0, figure
  if command == "reproduce":  # the README's main command at a tiny size: the default shipped LeNet, untrained here
    assert "the shipped model, trained on 50,000 full-MNIST training images" in text
    assert "lower accuracy" not in text and "recipe `glorot_adam_b128_e6`" in text
    res = json.loads((tmp_path / "runs/reproduce/results.json").read_text())
    m = res["models"]["tanh"]
    assert not m["trained_here"] and m["recipe"]["name"] == "glorot_adam_b128_e6"
    assert m["accuracy"]["test"] > 0.97  # the 1,000 shipped test digits
    assert [(r["variant"], r["n"]) for r in res["rows"]] == [("paper", 9)]
  assert command not in FIGURES or set(FIGURES[command]) <= set(re.findall(r"\]\(([^)]+\.png)\)", text))


FIGURES = {  # the figures each report must show
    "train": ["training.png"],
    "attack": ["success_vs_budget.png", "pairs.png", "adversarial_grid.png", "saliency.png"],
    "reproduce": ["success_vs_budget.png", "pairs_tanh.png", "adversarial_grid_tanh.png", "saliency_tanh.png"],
}


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["flax", "optax"])
def test_models_without_flax_name_the_extra_to_install(missing):
  import subprocess
  import sys

  code = (f"import sys; sys.modules[{missing!r}] = None\n"
          "try:\n  import jsma_jax.models\n"
          "except ModuleNotFoundError as e:\n  print(e.name); print(e)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.splitlines()
  assert out[0] == missing  # the CLI's handler keys on the name
  assert "pip install 'jsma-jax[models]'" in out[1] and missing in out[1]


def test_train_on_embedded_digits_validates_on_every_class():
  """The embedded digits are sorted by class: the recipe's holdout (last sixth) must not be nines only."""
  from jsma_jax.models import holdout_split, load_mnist

  x, y = load_mnist("embedded", split="train")
  xs, ys = train_lenet._every_sixth_last(x, y)
  train_idx, val_idx = holdout_split(len(ys))
  assert set(ys[val_idx].tolist()) == set(ys[train_idx].tolist()) == set(range(10))
  assert (xs[val_idx] == x[5::6]).all()  # jsma-jax reproduce's validation digits


# ------------------------------------------------------------ every bad value: one line, exit 2


def _bad_values(command: str):
  """``(argv, flag)``: for every option of a command, values its type or choices refuse."""
  p = COMMANDS[command][0]()
  for action in p._actions:
    if not action.option_strings or action.dest == "help":
      continue
    flag = action.option_strings[0]
    if action.type is cli_args.count:
      yield [flag, "0"], flag
      yield [flag, "x"], flag
    elif action.type is cli_args.natural:
      yield [flag, "-1"], flag
    elif action.choices:
      yield [flag, "nosuch"], flag
    elif action.type in (int, float):
      yield [flag, "x"], flag
  yield ["--nosuch-flag"], "--nosuch-flag"


EMPTY = "EMPTY"  # replaced by an empty folder outside the current one (a TFDS folder nothing was prepared in)
BAD = {  # beyond what the types and choices refuse: the library's checks, the configurations', the data's
    "attack": [(["--theta", "0"], "--theta"), (["--gamma", "1.5"], "--gamma"), (["--gamma", "0"], "--gamma"),
               (["--dataset", "tfds", "--data-dir", EMPTY], "--data-dir"),
               (["--data-dir", EMPTY], "--data-dir"), (["--name", "fashion_mnist"], "--data-dir")],
    "reproduce": [(["--gamma", "1.5"], "--gamma"), (["--pixels", "1,10"], "--pixels"), (["--pixels", "a"], "--pixels"),
                  (["--variants", "nosuch"], "--variants"), (["--activations", "sigmoid"], "--activations"),
                  (["--splits", "nosuch"], "--splits"), (["--dataset", "tfds", "--data-dir", EMPTY], "--data-dir"),
                  (["--data-dir", EMPTY], "--data-dir")],
    "train": [(["--lr", "0"], "--lr"), (["--dataset", "tfds", "--data-dir", EMPTY], "--idx-dir"),
              (["--name", "fashion_mnist"], "--data-dir"), (["--data-dir", EMPTY], "--data-dir")],
    "family": [(["--data-dir", EMPTY], "--data-dir")],
    "zoo": [(["--thetas", "0"], "--thetas"), (["--thetas", ""], "--thetas"), (["--thetas", "a"], "--thetas"),
            (["--data-dir", EMPTY], "--data-dir")],
    "factorial": [(["--data-dir", EMPTY], "--data-dir")],
}
CASES = [(command, argv, flag) for command in COMMANDS for argv, flag in [*_bad_values(command), *BAD.get(command, [])]]


@pytest.mark.parametrize("command, argv, flag", CASES,
                         ids=[f"{c}{'_'.join(a)}".replace("/", "_") or c for c, a, _ in CASES])
def test_every_bad_value_of_every_command_is_one_line_naming_its_flag(command, argv, flag, capsys, tmp_path,
                                                                     monkeypatch):
  (tmp_path / "empty").mkdir()
  (tmp_path / "cwd").mkdir()
  monkeypatch.chdir(tmp_path / "cwd")
  argv = [str(tmp_path / "empty") if a == EMPTY else a for a in argv]
  _one_line_error(capsys, [command, *argv], flag)
  assert not os.listdir(tmp_path / "cwd") and not os.listdir(tmp_path / "empty")  # stopped before writing


def test_the_library_checks_the_attack_flags_and_the_message_names_the_flag(capsys):
  """theta and gamma are checked once, by jsma_jax.AttackOptions; the command line shows its flag."""
  assert cli.main(["attack", "--gamma", "1.5"]) == 2
  line = capsys.readouterr().err.strip()
  assert line == "jsma-jax attack: --gamma must lie in (0, 1] (a fraction of the features), got 1.5"


def test_in_flags_replaces_names_only_where_they_name_an_argument():
  p = attack.parser()
  assert cli_args.in_flags(p, "n_sources and batch_size must be >= 1") == "--sources and --batch-size must be >= 1"
  assert cli_args.in_flags(p, "give max_iter=3 or nothing") == "give --max-iter=3 or nothing"
  assert (cli_args.in_flags(p, "a label out of range, the split of the name")
          == "a label out of range, the split of the name")


@pytest.mark.slow
def test_a_fixed_batch_pt2_file_is_one_line_naming_the_checkpoint(tmp_path, monkeypatch, capsys):
  """A ``.pt2`` program exported for a batch of 4 cannot be attacked one example at a time:
  ``from_torch``'s reason, as one line that names ``--checkpoint``."""
  torch = pytest.importorskip("torch")
  module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
  torch.export.save(torch.export.export(module, (torch.zeros(4, 1, 28, 28),)), str(tmp_path / "fixed4.pt2"))
  (tmp_path / "cwd").mkdir()
  monkeypatch.chdir(tmp_path / "cwd")
  _one_line_error(capsys, ["attack", "--checkpoint", str(tmp_path / "fixed4.pt2")], "--checkpoint")
  assert not os.listdir(tmp_path / "cwd")


def test_version_is_the_package_metadatas(capsys):
  from importlib import metadata

  assert cli.main(["--version"]) == 0
  assert capsys.readouterr().out.strip() == f"jsma-jax {metadata.version('jsma-jax')}"


# ------------------------------------------------------------------- help that says what is used


def test_the_shipped_recipe_has_one_name_in_help_package_and_docs():
  """``--recipe shipped`` trains the default LeNet's recipe; its help, the shipped model's name and
  its recorded recipe name are one name, which the docs use too."""
  import pathlib

  from jsma_jax.models import SHIPPED_LENETS, load_paper_lenet

  name = load_paper_lenet()[1]["recipe"]["name"]
  assert name == SHIPPED_LENETS[0] == train_lenet.shipped_recipe_name()
  help_of = {a.dest: a.help for a in train_lenet.parser()._actions}
  assert name in help_of["recipe"] and "theano" not in help_of["recipe"]
  assert name in train_lenet.__doc__ and "(``theano_tutorial`` at 30 epochs)" not in train_lenet.__doc__
  root = pathlib.Path(__file__).resolve().parent.parent
  for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
    assert f"f_{name}" not in doc.read_text(), doc.name  # the factorial's own label stays in its files
    assert "the shipped LeNet) |" not in doc.read_text(), doc.name  # a zoo row calling another the default


def test_output_defaults_are_under_the_current_folder():
  """Every command writes where the user runs it (``runs/...``), never into the package or
  the committed results."""
  from experiments.scripts import tabular

  for command, (make_parser, _) in COMMANDS.items():
    out = make_parser().get_default("out")
    assert not os.path.isabs(out) and out.split(os.sep)[0] == "runs", (command, out)
  assert tabular.OUT == os.path.join("runs", "tabular")


@pytest.mark.slow
def test_attack_says_when_the_set_has_fewer_sources_than_asked(tmp_path, monkeypatch, capsys):
  """``--sources 5000`` on the 1,000 embedded test digits: it says how many it attacks and why."""
  monkeypatch.chdir(tmp_path)
  res = attack.main(["--sources", "5000", "--gamma", "0.01", "--batch-size", "2048"])
  out = capsys.readouterr().out
  n = res["dataset"]["n_sources"]
  assert n < 1000 and f"--sources 5000: the test set has only {n} sources the model classifies correctly" in out
  assert res["dataset"]["short"] in (tmp_path / "runs/attack/report.md").read_text()
  wrote = next(line for line in out.splitlines() if "wrote" in line)
  assert all(f in wrote for f in res["figures"]) and "x_adv NHWC" in wrote
  import numpy as np

  with np.load(tmp_path / "runs/attack/attacks.npz") as f:
    assert str(f["x_adv_layout"]) == "NHWC" and f["x_adv"].shape[1:] == (28, 28, 1)


def test_reproduce_names_the_idx_folder_it_reads(tmp_path, monkeypatch, capsys):
  """``--dataset idx`` without ``--data-dir`` reads a folder relative to the current one: the
  command names it, as an absolute path, before any work (and its error says it is the default)."""
  import numpy as np

  from experiments.study import config as config_lib
  from experiments.study import study
  from jsma_jax.models import load_mnist

  cwd = tmp_path / "work" / "here"
  cwd.mkdir(parents=True)
  monkeypatch.chdir(cwd)
  assert cli.main(["reproduce", "--dataset", "idx"]) == 2
  err = capsys.readouterr().err
  assert "--data-dir" in err and config_lib.IDX_DIR in err and "under the current folder" in err
  folder = (cwd / config_lib.IDX_DIR).resolve()
  folder.mkdir(parents=True)
  for split, prefix in (("train", "train"), ("test", "t10k")):
    x, y = load_mnist("embedded", split=split)
    for kind, array in (("images-idx3", np.round(255 * x[:20, ..., 0])), ("labels-idx1", y[:20])):
      array = np.asarray(array, np.uint8)
      header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
      (folder / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())

  class Stop(Exception):
    pass

  def stop(*args, **kwargs):
    raise Stop

  monkeypatch.setattr(study, "run_study", stop)
  with pytest.raises(Stop):
    reproduce.main(["--dataset", "idx", "--out", str(tmp_path / "out")])
  assert f"MNIST from idx files in {folder} (--data-dir)" in capsys.readouterr().out
