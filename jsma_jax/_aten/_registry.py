"""The operator table of :mod:`jsma_jax._aten` and the helpers its modules share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Unsupported(NotImplementedError):
  """An operator, or an argument of one, that the bridge does not convert."""


OPS: dict[str, Callable[..., Any]] = {}
# Operators that hold only in training mode: the module must be exported in eval mode.
TRAINING_OPS = frozenset({
    "aten._native_batch_norm_legit_functional.default", "aten._native_batch_norm_legit.default",
    "aten._native_batch_norm_legit.no_stats", "aten.native_batch_norm.default",
    "aten.native_dropout.default", "aten.dropout.default", "aten.bernoulli.p", "aten.rand.default",
})
# Run-time checks torch.export records; shapes here are static, so they carry nothing.
IGNORED = frozenset({"aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
                     "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg"})


def register(*names: str):
  """Decorator: ``fn`` is the JAX function of the ATen operators ``names``."""
  def add(fn):
    for name in names:
      OPS[name] = fn
    return fn
  return add


def tuple_of(value: Any, n: int) -> tuple:
  value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  return value * n if len(value) == 1 else value


def axes_of(x, dim) -> tuple:
  if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
    return tuple(range(x.ndim))
  return tuple(d % x.ndim for d in tuple_of(dim, 1))


def supported() -> list[str]:
  """The converted operators' names, sorted (for error messages and the docs)."""
  return sorted(name.removeprefix("aten.") for name in OPS if name.startswith("aten."))
