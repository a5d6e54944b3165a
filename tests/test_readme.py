"""The README's Python examples run as written (each ```python block, in order, one namespace)."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
  """The bodies of the ```python fenced blocks of a Markdown text."""
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_readme_has_python_examples():
  assert python_blocks(README.read_text())


def test_readme_python_blocks_run(capsys):
  namespace: dict = {"__name__": "readme"}
  for i, block in enumerate(python_blocks(README.read_text())):
    exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
  out = capsys.readouterr().out
  assert "test accuracy" in out  # the example printed its numbers
  summary, keep = namespace["summary"], namespace["keep"]
  assert summary.n == 9 * int(keep.sum()) > 0  # correctly classified sources only, 9 targets each
  assert summary.success_rate > 0.5  # a trained model: most attacks succeed
