"""Suite-wide fixtures and the two tiers.

Tiers: ``pytest`` runs the fast tier (every test not marked ``slow``: unit tests, small
NumPy references, the user-scenario probes); ``pytest --full`` runs everything, as CI
does. A test named on the command line by its node id (``file.py::test``) always runs.
Mark a test ``slow`` when it takes more than a few seconds of CPU alone (end-to-end
commands, trainings, many-model sweeps, real multi-process runs): the fast tier must stay
a loop of minutes on 2 cores.

Compiled programs:

Each test module compiles its own attacks (a new model function is a new static argument
of the attack's ``jax.jit``), and JAX keeps every compiled program for the life of the
process. XLA:CPU maps about six memory regions per compiled program, and Linux allows a
process 65,530 (``vm.max_map_count``): under ``pytest -n 2`` a worker that had run half
the suite segfaulted inside ``backend_compile_and_load`` (CI, and again here, always deep
into the run, never when the failing module ran alone). After each module, when the
process holds more than a third of its allowance, JAX's caches are cleared; below that
the compiled programs stay, for the modules that share them.

The persistent compilation cache (``jsma_jax.compile_cache``, which the ``jsma-jax``
commands turn on) stays off in the suite's own process: tests never write to the user's
cache folder; tests/test_compile_cache.py turns it on in child processes of its own.
"""

import gc
import os

import jax
import pytest

os.environ.setdefault("JSMA_JAX_COMPILE_CACHE", "0")


def _map_allowance() -> int | None:
  try:
    with open("/proc/sys/vm/max_map_count") as f:
      return int(f.read())
  except (OSError, ValueError):
    return None  # not Linux: no such limit to guard


_ALLOWANCE = _map_allowance()


def _maps_in_use() -> int:
  with open(f"/proc/{os.getpid()}/maps") as f:
    return sum(1 for _ in f)


def pytest_addoption(parser):
  parser.addoption("--full", action="store_true", default=False,
                   help="run the whole suite, the tests marked slow included (CI runs this)")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--full") or config.getoption("markexpr"):
    return  # everything, or the user's own marker selection
  named = [arg.replace("\\", "/").rsplit("/", 1)[-1] for arg in config.args if "::" in arg]  # by node id

  def asked_for(item) -> bool:
    tail = item.nodeid.rsplit("/", 1)[-1]  # "test_x.py::test_y[case]"
    return any(tail == arg or tail.startswith((arg + "[", arg + "::")) for arg in named)

  slow = [item for item in items if item.get_closest_marker("slow") is not None and not asked_for(item)]
  if slow:
    config.hook.pytest_deselected(items=slow)
    chosen = set(map(id, slow))
    items[:] = [item for item in items if id(item) not in chosen]


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  yield
  if _ALLOWANCE is not None and _maps_in_use() > _ALLOWANCE // 3:
    jax.clear_caches()
    gc.collect()
