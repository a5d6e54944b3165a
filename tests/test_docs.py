"""The documentation: the site builds with warnings as errors, and every python example of
the README and of every page under docs/ runs as written (each page's blocks in order, in one
namespace, as a reader would paste them)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))


def python_blocks(text: str) -> list[str]:
  """The bodies of the ```python fenced blocks of a Markdown text."""
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def run_blocks(path: pathlib.Path) -> dict:
  """Runs the python blocks of one page in order, in one namespace; returns the namespace."""
  namespace: dict = {"__name__": f"docs_{path.stem}"}
  for i, block in enumerate(python_blocks(path.read_text())):
    exec(compile(block, f"{path.relative_to(ROOT)} python block {i + 1}", "exec"), namespace)
  return namespace


def test_every_page_is_in_the_site_and_has_a_title():
  nav = (ROOT / "mkdocs.yml").read_text()
  for page in PAGES:
    assert page.read_text().startswith("# "), page.name
  for name in ("index.md", "models.md", "standardised.md", "reproduce.md", "family.md", "performance.md",
               "api.md"):
    assert f": {name}" in nav, name


def test_readme_links_to_the_pages():
  text = README.read_text()
  for name in ("models.md", "standardised.md", "reproduce.md", "family.md", "performance.md", "api.md"):
    assert f"docs/{name}" in text, name


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="mkdocs and mkdocstrings are not installed (pip install -e '.[docs]')")
def test_site_builds_strict(tmp_path):
  """``mkdocs build --strict``: broken links, docstrings mkdocstrings cannot read, or a page
  left out of the navigation fail the build."""
  mkdocs = shutil.which("mkdocs", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("mkdocs")
  command = [mkdocs] if mkdocs else [sys.executable, "-m", "mkdocs"]
  done = subprocess.run([*command, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                        capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
  assert done.returncode == 0, done.stdout + done.stderr
  for page in PAGES:
    built = tmp_path / "site" / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
    assert built.is_file(), built
  assert "jsma_jax.jsma" in (tmp_path / "site" / "api" / "index.html").read_text()


def _feature_spaces_prints(lines: list[str]) -> None:
  assert len(python_blocks((ROOT / "docs" / "feature-spaces.md").read_text())) >= 4
  assert lines[0].endswith("True True") and lines[1].startswith("False") and lines[-1] == "True"
  assert lines[2].endswith("True True") and "True" in lines[2].split("]")[0]  # some app evaded, additions only


def _pytorch_prints(lines: list[str]) -> None:
  assert len(python_blocks((ROOT / "docs" / "pytorch.md").read_text())) >= 3
  assert lines[-1] == "True"  # the .pt2 round trip matched the module


# What a page's examples must print, beyond printing something (the last lines they show).
PRINTS = {"feature-spaces.md": _feature_spaces_prints, "pytorch.md": _pytorch_prints}


def test_every_page_check_names_a_page_with_examples():
  assert set(PRINTS) <= {p.name for p in PAGES if python_blocks(p.read_text())}  # a renamed page keeps its check


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p.read_text())], ids=lambda p: p.name)
def test_page_examples_run(page, capsys):
  run_blocks(page)
  lines = capsys.readouterr().out.splitlines()
  assert lines  # every page's examples print what they show
  PRINTS.get(page.name, lambda lines: None)(lines)


def test_readme_has_python_examples():
  assert python_blocks(README.read_text())


@pytest.mark.slow
def test_readme_python_blocks_run(capsys):
  namespace = run_blocks(README)
  out = capsys.readouterr().out
  assert "success" in out  # the example printed its summary
  summary = namespace["summary"]
  assert summary.n > 0 and summary.success_rate > 0.5  # a trained model: most attacks succeed


# ------------------------------------------------------------------ shell commands and install lines

SHELLS = ("bash", "sh", "shell", "console")


def fenced_blocks(text: str) -> list[tuple[str, str]]:
  """``(language, body)`` of every fenced block of a Markdown text, in order."""
  blocks, lang, body = [], None, []
  for line in text.splitlines():
    fence = re.match(r"^\s*```(\S*)", line)
    if fence and lang is None:
      lang, body = fence.group(1) or "text", []
    elif fence:
      blocks.append((lang, "\n".join(body)))
      lang = None
    elif lang is not None:
      body.append(line)
  return blocks


def shell_commands(text: str) -> list[list[str]]:
  """Every command of the shell blocks of a Markdown text, as words: lines joined at a trailing
  backslash, comments dropped, split at ``&&`` and ``;``."""
  import shlex

  commands = []
  for lang, body in fenced_blocks(text):
    if lang not in SHELLS:
      continue
    for line in body.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      command: list[str] = []
      for word in words + ["&&"]:
        if word in ("&&", ";"):
          if command:
            commands.append(command)
          command = []
        else:
          command.append(word)
  return commands


def install_lines(text: str) -> list[str]:
  """Every ``pip install ...`` of a Markdown text, in shell blocks or inline code, as written."""
  lines = []
  for lang, body in fenced_blocks(text):
    if lang in SHELLS:  # as written, quotes kept: a comment dropped, split at && and ;
      for line in body.replace("\\\n", " ").splitlines():
        lines += [part.strip() for part in re.split(r"&&|;", re.sub(r"\s#.*$", "", line))
                  if part.strip().startswith("pip install")]
  inline = re.findall(r"`(pip install [^`]*)`", text)
  return lines + [line for part in inline for line in part.split(" && ") if line.startswith("pip install")]


def _extras() -> set[str]:
  import tomllib

  return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


DOCUMENTS = [README, *PAGES]
OTHER_PACKAGES = re.compile(r"^(torch|jax)(\[[a-z0-9_]+\])?(==[\d.]+)?$")  # from PyPI, as written


def _checkout_targets(line: str) -> list[str]:
  """The targets of an install line that install this checkout: ``.`` or ``.[extras]`` (quotes kept)."""
  import shlex

  words = line.split()[2:]
  targets = [w for w in words if not w.startswith("-")]
  checkout = [w for w in targets if shlex.split(w)[0].startswith(".")]
  for w in set(targets) - set(checkout):  # anything else must come from PyPI: never jsma-jax itself
    assert OTHER_PACKAGES.match(shlex.split(w)[0]), f"{line!r}: {w} is not this checkout nor a known PyPI package"
  return checkout


def test_every_install_line_installs_from_the_checkout_with_extras_that_exist():
  """The package is not on any index: every install line installs the checkout (``".[extra]"``,
  quoted so that no shell globs the brackets), and every extra it names is in pyproject.toml."""
  extras, seen = _extras(), 0
  for doc in DOCUMENTS:
    for line in install_lines(doc.read_text()):
      seen += 1
      assert "jsma-jax[" not in line and "jsma_jax[" not in line, f"{doc.name}: {line!r} installs from an index"
      for target in _checkout_targets(line):
        if target == ".":
          continue
        match = re.fullmatch(r'"\.\[([a-z0-9_,]+)\]"', target)
        assert match, f"{doc.name}: {line!r}: write the checkout with its extras quoted, \".[extra]\""
        assert set(match.group(1).split(",")) <= extras, f"{doc.name}: {line!r} names an extra pyproject.toml lacks"
  assert seen >= 8  # the README's, the quick start's table, the GPU, PyTorch and export lines


def test_the_commands_install_hint_is_a_checkout_line_with_a_real_extra():
  from experiments import cli

  for extra in set(cli.EXTRAS.values()):
    line = cli.install_line(extra)
    assert line.startswith(f'pip install ".[{extra}]"') and extra in _extras(), line


@pytest.mark.slow
def test_install_lines_resolve_offline_from_the_checkout(tmp_path):
  """pip itself resolves every extra the docs install, from this checkout, without an index
  (``--dry-run --no-index``: the test environment holds every dependency; nothing is installed).
  An extra pyproject.toml lacks would be a warning; one that cannot be met, an error."""
  import shlex

  named = set()
  for doc in DOCUMENTS:
    for line in install_lines(doc.read_text()):
      for target in _checkout_targets(line):
        named |= set(re.findall(r"\[([a-z0-9_,]+)\]", shlex.split(target)[0])[0].split(",")) if "[" in target else set()
  report = tmp_path / "report.json"
  done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-build-isolation",
                         "--quiet", "--report", str(report), f".[{','.join(sorted(named))}]"],
                        cwd=ROOT, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr
  assert "does not provide the extra" not in done.stderr, done.stderr
  import json

  install = json.loads(report.read_text())["install"]
  ours = [i for i in install if i["metadata"]["name"] == "jsma-jax"]
  assert ours and named <= set(ours[0]["requested_extras"]) and named >= {"experiments", "torch", "export", "test"}


def test_every_jsma_jax_command_of_the_docs_parses():
  """Each ``jsma-jax ...`` line of a shell block is a command line its subcommand accepts."""
  from experiments import cli

  seen = 0
  for doc in DOCUMENTS:
    for command in shell_commands(doc.read_text()):
      if command[0] != "jsma-jax":
        continue
      seen += 1
      if command[1:] == ["--version"]:
        assert cli.main(["--version"]) == 0
        continue
      assert command[1] in cli.COMMANDS, f"{doc.name}: {' '.join(command)}"
      module = importlib.import_module(f"experiments.{cli.COMMANDS[command[1]][0]}")
      module.parse_args(command[2:])  # a UsageError here names the flag the docs got wrong
  assert seen >= 8


def test_every_page_is_listed_by_the_quick_start_and_the_readme():
  index, readme = (ROOT / "docs" / "index.md").read_text(), README.read_text()
  for page in PAGES:
    if page.name != "index.md":
      assert f"]({page.name})" in index, f"docs/index.md does not list {page.name}"
      assert f"](docs/{page.name})" in readme, f"README.md does not list {page.name}"


def test_readme_and_quick_start_state_the_same_test_time():
  """One measurement, said the same way in both places."""
  said = [re.findall(r"take (\d+) to (\d+) minutes on a 2-core CPU", doc.read_text().replace("\n", " "))
          for doc in (README, ROOT / "docs" / "index.md")]
  assert said[0] and said[0] == said[1], said
