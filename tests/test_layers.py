"""The layer rules of ARCHITECTURE.md, read from its table and checked on the code.

The table under "## Layers" lists the core's modules from the bottom layer up; a module
may import only from its own layer or the layers below. Every module of the core has a
row, so a new module is placed (and drawn) before it lands. Around the core: the core
never imports ``jsma_jax.models``, ``jsma_jax.torch`` or the experiments, and imports no
third-party package at module level beyond what the light install has.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "jsma_jax"
EXPERIMENTS = ROOT / "experiments"
# What `pip install jsma-jax` (no extras) brings: pyproject.toml's dependencies.
LIGHT = {"jax", "jaxlib", "numpy", "chex", "tqdm"}


def layers() -> list[tuple[str, list[str]]]:
  """``(layer, modules)`` from ARCHITECTURE.md's table, bottom first."""
  text = (ROOT / "ARCHITECTURE.md").read_text()
  table = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
  rows = []
  for line in table.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    modules = re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)(?:\.py|/)`", cells[1]) if len(cells) > 1 else []
    if modules:
      rows.append((cells[0], modules))
  return rows


def imports(path: Path, package: str, *, top_level_only: bool = False) -> list[tuple[str, int]]:
  """``(module, line)`` for each import of ``package``'s modules in ``path`` (relative ones resolved)."""
  tree = ast.parse(path.read_text())
  nodes = tree.body if top_level_only else list(ast.walk(tree))
  here = path.relative_to(ROOT).with_suffix("").parts
  found = []
  for node in nodes:
    if isinstance(node, ast.ImportFrom):
      if node.level:  # relative: resolve against the importing module's package
        base = ".".join((package, *here[1:-1][: len(here) - 1 - node.level]))
        module = f"{base}.{node.module}" if node.module else base
      else:
        module = node.module or ""
      if module == package or module.startswith(package + "."):
        names = [f"{module}.{a.name}" for a in node.names] if module == package else [module]
        found += [(n, node.lineno) for n in names]
    elif isinstance(node, ast.Import):
      found += [(a.name, node.lineno) for a in node.names if a.name == package or a.name.startswith(package + ".")]
  return found


def core_modules() -> dict[str, list[Path]]:
  """Each module of the core by name, with its files (a private subpackage counts as one module);
  ``jsma_jax.models`` sits apart (see ARCHITECTURE.md)."""
  found = {p.stem: [p] for p in CORE.glob("*.py") if p.stem != "__init__"}
  for init in CORE.glob("*/__init__.py"):
    if init.parent.name != "models":
      found[init.parent.name] = sorted(init.parent.rglob("*.py"))
  return found


def test_every_core_module_has_a_layer():
  placed = {m for _, modules in layers() for m in modules}
  present = set(core_modules())
  assert not present - placed, f"add these modules to ARCHITECTURE.md's layer table: {sorted(present - placed)}"
  assert not placed - present, ("ARCHITECTURE.md's layer table names modules that do not exist: "
                                f"{sorted(placed - present)}")


def test_imports_go_down_the_layers():
  level = {m: i for i, (_, modules) in enumerate(layers()) for m in modules}
  names = {i: name for i, (name, _) in enumerate(layers())}
  wrong = []
  for name, paths in sorted(core_modules().items()):
    for path in paths:
      for module, line in imports(path, "jsma_jax"):
        target = module.split(".")[1] if module.count(".") >= 1 else None
        if target in level and target != name and level[target] > level[name]:
          wrong.append(f"{path.relative_to(ROOT)}:{line} ({names[level[name]]}) imports {target} "
                       f"({names[level[target]]})")
  assert not wrong, "imports up the layers of ARCHITECTURE.md:\n" + "\n".join(wrong)


@pytest.mark.parametrize("apart", ["jsma_jax.models", "jsma_jax.torch", "jsma_jax_experiments", "experiments"])
def test_the_core_never_imports(apart):
  bridge = {"torch", "_aten"}  # the PyTorch bridge is the one place that may use it
  for name, paths in sorted(core_modules().items()):
    if apart == "jsma_jax.torch" and name in bridge:
      continue
    for path in paths:
      for module, line in imports(path, apart.split(".")[0]):
        assert not (module == apart
                    or module.startswith(apart + ".")), f"{path.relative_to(ROOT)}:{line} imports {module}"


def test_the_core_imports_only_the_light_install_at_module_level():
  stdlib = set(sys.stdlib_module_names)
  for path in sorted(p for paths in core_modules().values() for p in paths):
    for node in ast.parse(path.read_text()).body:
      roots = []
      if isinstance(node, ast.Import):
        roots = [a.name.split(".")[0] for a in node.names]
      elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
        roots = [node.module.split(".")[0]]
      for root in roots:
        assert root in stdlib | LIGHT | {"jsma_jax"}, (
            f"{path.relative_to(ROOT)}:{node.lineno} imports {root} at module level; the light install "
            f"(pyproject's dependencies) has only {sorted(LIGHT)}: import it inside the function that needs it")


def test_experiments_have_no_import_cycle_at_module_level():
  modules = {p.stem: p for p in EXPERIMENTS.glob("*.py") if p.stem != "__init__"}
  graph = {m: {mod.split(".")[1] for mod, _ in imports(p, "experiments", top_level_only=True)
               if mod.count(".") >= 1 and mod.split(".")[1] in modules and mod.split(".")[1] != m}
           for m, p in modules.items()}
  state: dict[str, int] = {}

  def visit(m: str, path: list[str]) -> None:
    if state.get(m) == 1:
      raise AssertionError(f"import cycle in experiments/: {' -> '.join([*path, m])}")
    if state.get(m) != 2:
      state[m] = 1
      for d in sorted(graph[m]):
        visit(d, [*path, m])
      state[m] = 2

  for m in sorted(graph):
    visit(m, [])
