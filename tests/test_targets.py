"""Target helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsma_jax import all_other_targets, other_classes, random_targets


def test_other_classes_ascending_without_label():
  got = np.asarray(other_classes(jnp.array([0, 4, 9]), 10))
  for row, label in zip(got, [0, 4, 9]):
    assert row.tolist() == [c for c in range(10) if c != label]


def test_all_other_targets_expands_source_major():
  x = jnp.arange(3 * 2, dtype=jnp.float32).reshape(3, 2)
  e = all_other_targets(x, jnp.array([1, 0, 2]), 3)
  assert e.x.shape == (6, 2)
  assert e.targets.tolist() == [0, 2, 1, 2, 0, 1]
  assert e.labels.tolist() == [1, 1, 0, 0, 2, 2]
  assert e.source_index.tolist() == [0, 0, 1, 1, 2, 2]
  np.testing.assert_array_equal(e.x, x[e.source_index])
  assert bool(jnp.all(e.targets != e.labels))


def test_random_targets_never_the_label_and_reproducible():
  labels = jnp.asarray(np.random.default_rng(0).integers(0, 7, size=2000))
  t1 = random_targets(jax.random.key(0), labels, 7)
  t2 = random_targets(jax.random.key(0), labels, 7)
  np.testing.assert_array_equal(t1, t2)
  assert bool(jnp.all(t1 != labels)) and bool(jnp.all((t1 >= 0) & (t1 < 7)))
  counts = np.bincount(np.asarray(t1), minlength=7)
  assert counts.min() > 200  # every class is drawn


@pytest.mark.parametrize(
    "labels,num_classes,message",
    [([0, 10], 10, "labels must lie"), ([[0]], 10, "1-D int"), ([0.0], 10, "1-D int"), ([0], 1, "num_classes")],
)
def test_bad_labels(labels, num_classes, message):
  with pytest.raises(ValueError, match=message):
    other_classes(jnp.asarray(labels), num_classes)
