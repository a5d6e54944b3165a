"""Files on disk never lie: checkpoints, stage records and training state, as a user meets them.

Each test is a user's scenario. Interruptions are injected at the exact point between two
writes (a patched writer or ``os.replace`` that raises), never by timing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jsma_jax.models


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
  """data.py and tfds_builders.py no longer import each other (issue 24, item 6)."""
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
