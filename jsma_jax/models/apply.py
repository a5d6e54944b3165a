"""Turn an NNX model into a pure, hashable ``apply_fn(params, x) -> logits``.

``jsma_jax.jsma(apply_fn, x, targets, params=params)`` jits with ``apply_fn`` as a static
argument, so ``apply_fn`` must hash and compare by *architecture*, not by object
identity: two models of the same architecture (e.g. a retrained LeNet) must give equal
``apply_fn``s, or every attack call would recompile. ``LogitsFn`` is a frozen dataclass
holding the model's NNX ``GraphDef`` (which is hashable and compares structurally); the
weights travel separately as a plain nested dict of arrays. ``nnx.merge`` rebuilds the
module only while tracing, so the compiled code has no Python-object traversal.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class LogitsFn:
  """A pure logits function ``(params, x) -> logits`` for one architecture.

  Attributes:
    graphdef: the NNX ``GraphDef`` of the model in inference mode.

  Example:
    Two models of one architecture give equal (and equally hashing) functions:

    >>> f1, _ = as_logits_fn(LeNet(rngs=nnx.Rngs(0)))
    >>> f2, _ = as_logits_fn(LeNet(rngs=nnx.Rngs(1)))
    >>> f1 == f2, hash(f1) == hash(f2)
    (True, True)
  """

  graphdef: Any

  def __call__(self, params: Any, x: jax.Array) -> jax.Array:
    """Logits ``[B, N]`` for a batch ``x`` ``[B, ...]`` with weights ``params``."""
    return nnx.merge(self.graphdef, params)(x)


def as_logits_fn(model: nnx.Module) -> tuple[LogitsFn, dict]:
  """Splits a model into a pure ``apply_fn`` and its weights, in inference mode.

  Dropout is made deterministic and BatchNorm uses running averages (on a view: the
  model passed in is not modified). For equal architectures the returned ``apply_fn``
  objects are equal and hash equal, so a jitted caller that takes ``apply_fn`` as a
  static argument compiles once per architecture.

  Args:
    model: an ``nnx.Module`` mapping ``[B, ...]`` inputs to ``[B, N]`` logits.

  Returns:
    ``(apply_fn, params)``: ``apply_fn(params, x)`` equals ``model(x)`` in inference mode;
    ``params`` is a nested dict of ``jax.Array`` (all the model's state).

  Example:
    >>> apply_fn, params = as_logits_fn(LeNet(rngs=nnx.Rngs(0)))
    >>> jax.jit(apply_fn)(params, jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
  """
  if not isinstance(model, nnx.Module):
    raise TypeError(f"model must be an nnx.Module, got {type(model).__name__}")
  inference = nnx.view(model, deterministic=True, use_running_average=True,
                       raise_if_not_found=False)
  graphdef, state = nnx.split(inference)
  return LogitsFn(graphdef), nnx.to_pure_dict(state)
