"""The docstring examples of the public API run, and print what they say they print.

One test per module that defines a public name of ``jsma_jax`` or ``jsma_jax.models``.
Each example defines what it needs (a tiny linear model, a few digits); the doctest
globals hold ``jax``, ``jnp``, ``np``, ``nnx``, ``jsma_jax`` and the public names of the
package, as a user's session would.
"""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsma_jax

# module -> whether its docstrings hold examples (a module without any must still pass)
CORE = {
    "attack": True,
    "batching": True,
    "compile_cache": True,
    "curves": True,
    "dataset": True,
    "distance": True,
    "distributed": True,
    "drivers": True,
    "family": True,
    "jacobian": True,
    "metrics": True,
    "options": True,
    "rewrite": True,
    "rules": True,
    "saliency": True,
    "progress": True,
    "step": True,
    "targets": True,
    "types": True,
}
MODELS = {
    "apply": True,
    "checkpoint": True,
    "data": True,
    "files": True,
    "idx": True,
    "lenet": True,
    "recipe": True,
    "train": True,
}
MODULES = [f"jsma_jax.{name}" for name in CORE] + [f"jsma_jax.models.{name}" for name in MODELS]
HAS_EXAMPLES = {**{f"jsma_jax.{k}": v for k, v in CORE.items()},
                **{f"jsma_jax.models.{k}": v for k, v in MODELS.items()}}


def _globals(module_name: str) -> dict:
  names = {"jax": jax, "jnp": jnp, "np": np, "jsma_jax": jsma_jax}
  names.update({name: getattr(jsma_jax, name) for name in jsma_jax.__all__})
  if module_name.startswith("jsma_jax.models"):
    from flax import nnx

    import jsma_jax.models as models
    names["nnx"] = nnx
    names.update({name: getattr(models, name) for name in models.__all__})
  return names


@pytest.mark.slow
@pytest.mark.parametrize("module_name", MODULES, ids=lambda name: name.removeprefix("jsma_jax."))
def test_docstring_examples(module_name):
  if module_name.startswith("jsma_jax.models"):
    pytest.importorskip("flax")
    pytest.importorskip("optax")
  module = importlib.import_module(module_name)
  failed, attempted = doctest.testmod(
      module,
      extraglobs=_globals(module_name),
      optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
      report=True,
      verbose=False,
  )
  assert failed == 0, f"{failed} of {attempted} doctest examples of {module_name} failed (see the output above)"
  if HAS_EXAMPLES[module_name]:
    assert attempted > 0, f"{module_name} has no doctest examples"
