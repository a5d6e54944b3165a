"""The layout of experiments/: no import cycles, and commands that do not import each other.

Read from the source (``ast``), not by importing: every import counts, those inside
functions and under ``if __name__ == "__main__"`` too, except the dispatcher's
``importlib.import_module`` (``experiments/cli.py`` runs a command by name, the one place
where the command line chooses a module).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "experiments"
PACKAGE = "experiments"


def _modules() -> dict[str, pathlib.Path]:
  """Every module of experiments/ by dotted name (``experiments.zoo.zoo``); packages by their ``__init__``."""
  out = {}
  for path in sorted(ROOT.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if "results" in parts:
      continue
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join((PACKAGE,) + parts)] = path
  return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
  """The absolute name a relative ``from`` import starts from."""
  if node.level == 0:
    return node.module or ""
  base = module.split(".") if is_package else module.split(".")[:-1]
  base = base[:len(base) - (node.level - 1)]
  return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
  """For each module, the modules of experiments/ it imports (anywhere in its source)."""
  graph = {}
  for name, path in modules.items():
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      targets = []
      if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = _resolve(name, is_package, node)
        # ``from pkg import mod`` imports the module pkg.mod where there is one, else names of pkg
        targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
      for t in targets:
        t = "experiments" + t[len("jsma_jax_experiments"):] if t.startswith("jsma_jax_experiments") else t
        while t and t not in modules:  # a name inside a module: the module
          t = t.rpartition(".")[0]
        if t and t != name:
          found.add(t)
    graph[name] = found
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle through each strongly connected group of modules (Tarjan's algorithm), if any."""
  index, low, stack, on_stack, groups = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      group = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        group.append(w)
        if w == v:
          break
      if len(group) > 1:
        groups.append(sorted(group))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return groups


def test_the_walk_sees_every_kind_of_import():
  graph = imports(_modules())
  assert "experiments.zoo.zoo" in graph["experiments.zoo.factorial"]  # from . import zoo (a module)
  assert "experiments.zoo.factorial" in graph["experiments.zoo.factorial_report"]  # from .factorial import names
  assert "experiments.common.cli_args" in graph["experiments.cli"]  # from .common.cli_args import UsageError
  assert "experiments.cli" in graph["experiments.commands.attack"]  # under if __name__ == "__main__"
  assert "experiments.common.figures" in graph["experiments.commands.reproduce"]  # inside a function


def test_a_cycle_is_found():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_experiments_has_no_import_cycle():
  assert cycles(imports(_modules())) == [], "import cycles in experiments/ (function-level imports included)"


def test_every_package_init_imports_nothing():
  """So that importing a subpackage costs nothing and adds no edge to the graph above."""
  for name, path in _modules().items():
    if path.name == "__init__.py":
      body = ast.parse(path.read_text()).body
      assert not [n for n in ast.walk(ast.Module(body=body, type_ignores=[]))
                  if isinstance(n, (ast.Import, ast.ImportFrom))], name


@pytest.mark.parametrize("command", sorted(m for m in _modules() if m.startswith("experiments.commands.")))
def test_a_command_imports_no_other_command(command):
  graph = imports(_modules())
  others = {m for m in graph[command] if m.startswith("experiments.commands.") and m != command}
  assert not others, f"{command} imports the command modules {sorted(others)}: share through experiments.common"


def test_cli_dispatches_to_command_modules_that_exist():
  """The dispatcher names modules by string (imported lazily): each one exists."""
  import importlib

  from experiments import cli

  for name, (module, _) in cli.COMMANDS.items():
    assert f"experiments.{module}" in _modules(), name
    assert hasattr(importlib.import_module(f"experiments.{module}"), "main"), name
