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


def test_readme_python_blocks_run(capsys):
  namespace = run_blocks(README)
  out = capsys.readouterr().out
  assert "success" in out  # the example printed its summary
  summary = namespace["summary"]
  assert summary.n > 0 and summary.success_rate > 0.5  # a trained model: most attacks succeed
