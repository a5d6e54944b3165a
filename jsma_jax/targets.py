"""Target classes for targeted attacks.

The paper attacks every source towards each of the other ``N - 1`` classes
(Section IV-A: 9 targets per MNIST digit). :func:`all_other_targets` expands a
batch that way; :func:`random_targets` draws one other class per example from
an explicit PRNG key; explicit targets are any int array ``[B]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jsma_jax import _validate

Array = jax.Array


class ExpandedTargets(NamedTuple):
  """A batch expanded to one row per (source, target) pair."""

  x: Array  # [B * (N - 1), *shape] each source repeated N - 1 times
  labels: Array  # [B * (N - 1)] int32 source labels
  targets: Array  # [B * (N - 1)] int32, every class but the source, ascending
  source_index: Array  # [B * (N - 1)] int32 index of the source in the input batch


def _check(labels, num_classes: int) -> Array:
  _validate.check_num_classes(num_classes)
  labels = jnp.asarray(labels)
  _validate.check_label_array("labels", labels)
  if _validate.is_concrete(labels):
    _validate.check_labels("labels", labels, num_classes)
  return labels.astype(jnp.int32)


def other_classes(labels: Array, num_classes: int) -> Array:
  """Every class but the label, ascending: ``[B, N - 1]`` int32.

  Args:
    labels: ``[B]`` int classes in ``[0, N)``.
    num_classes: ``N >= 2``.

  Returns:
    ``[B, N - 1]`` int32.

  Example:
    >>> other_classes(jnp.array([0, 2]), 3)
    Array([[1, 2], [0, 1]], dtype=int32)
  """
  labels = _check(labels, num_classes)
  k = jnp.arange(num_classes - 1, dtype=jnp.int32)
  return k[None, :] + (k[None, :] >= labels[:, None]).astype(jnp.int32)


def all_other_targets(x: Array, labels: Array, num_classes: int) -> ExpandedTargets:
  """Expand ``(x, labels)`` to every (source, other class) pair, source-major.

  Args:
    x: ``[B, *shape]`` sources.
    labels: ``[B]`` int source labels (or the model's predictions).
    num_classes: ``N``.

  Returns:
    :class:`ExpandedTargets` ``(x, labels, targets, source_index)`` with
    ``B * (N - 1)`` rows.

  Example:
    >>> batch = all_other_targets(jnp.zeros((2, 4)), jnp.array([0, 2]), 3)
    >>> batch.x.shape, batch.targets.tolist(), batch.labels.tolist(), batch.source_index.tolist()
    ((4, 4), [1, 2, 0, 1], [0, 0, 2, 2], [0, 0, 1, 1])
  """
  labels = _check(labels, num_classes)
  x = jnp.asarray(x)
  if x.shape[:1] != labels.shape:
    raise ValueError(f"x and labels must have the same batch size, got {x.shape[:1]} and {labels.shape}")
  targets = other_classes(labels, num_classes).reshape(-1)
  source_index = jnp.repeat(jnp.arange(labels.shape[0], dtype=jnp.int32), num_classes - 1)
  return ExpandedTargets(x[source_index], labels[source_index], targets, source_index)


def random_targets(key: Array, labels: Array, num_classes: int) -> Array:
  """One class other than the label per example, uniformly, from ``key``: ``[B]`` int32.

  Args:
    key: a ``jax.random`` key (the only source of randomness).
    labels: ``[B]`` int source classes in ``[0, N)``.
    num_classes: ``N >= 2``.

  Returns:
    ``[B]`` int32 targets, each different from its label.

  Example:
    >>> labels = jnp.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    >>> targets = random_targets(jax.random.key(0), labels, 10)
    >>> targets.shape, bool(jnp.all(targets != labels)), bool(jnp.all((targets >= 0) & (targets < 10)))
    ((10,), True, True)
  """
  labels = _check(labels, num_classes)
  shift = jax.random.randint(key, labels.shape, 1, num_classes, dtype=jnp.int32)
  return (labels + shift) % num_classes
