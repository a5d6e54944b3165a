"""Suite-wide fixtures.

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


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  yield
  if _ALLOWANCE is not None and _maps_in_use() > _ALLOWANCE // 3:
    jax.clear_caches()
    gc.collect()
