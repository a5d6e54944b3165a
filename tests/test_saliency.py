"""Saliency maps on hand-built Jacobian rows (Eq. 8, Eq. 9, Algorithm 3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference

from jsma_jax import best_feature, best_pair, pairwise_saliency, single_feature_saliency


def test_single_feature_increasing_eq8():
  a = jnp.array([2.0, -1.0, 3.0, 0.5, 0.0])
  b = jnp.array([-1.5, -4.0, 2.0, -2.0, -1.0])
  # admissible: a > 0 and b < 0 -> features 0 and 3; S = a |b|
  np.testing.assert_allclose(single_feature_saliency(a, b), [3.0, 0.0, 0.0, 1.0, 0.0])


def test_single_feature_decreasing_eq9():
  a = jnp.array([-2.0, 1.0, -3.0, -0.5])
  b = jnp.array([1.5, 4.0, -2.0, 2.0])
  # admissible: a < 0 and b > 0 -> features 0 and 3; S = |a| b
  np.testing.assert_allclose(single_feature_saliency(a, b, increase=False), [3.0, 0.0, 0.0, 1.0])


def test_single_feature_respects_domain():
  a, b = jnp.array([2.0, 1.0]), jnp.array([-1.0, -1.0])
  np.testing.assert_allclose(single_feature_saliency(a, b, jnp.array([False, True])), [0.0, 1.0])


def test_best_pair_hand_example():
  # pairs: (0,1): alpha=1, beta=-3 -> 3; (0,2): alpha=4, beta=-1 -> 4; (1,2): alpha=1, beta=0 -> inadmissible
  a = jnp.array([2.0, -1.0, 2.0])
  b = jnp.array([-2.0, -1.0, 1.0])
  choice = best_pair(a, b, jnp.ones(3, bool))
  assert (int(choice.p), int(choice.q), float(choice.score)) == (0, 2, 4.0)


def test_best_pair_none_admissible_is_minus_inf():
  a, b = jnp.array([-1.0, -2.0, -3.0]), jnp.array([1.0, 1.0, 1.0])
  assert float(best_pair(a, b, jnp.ones(3, bool)).score) == -np.inf
  assert float(best_feature(a, b, jnp.ones(3, bool)).score) == -np.inf


@pytest.mark.parametrize("increase", [True, False], ids=["increase", "decrease"])
@pytest.mark.parametrize("seed", range(6))
def test_best_pair_matches_brute_force_with_many_ties(seed, increase):
  """Small integer rows make many exact ties; the lowest flat index must win."""
  rng = np.random.default_rng(seed)
  m = 17
  a = rng.integers(-3, 4, size=m).astype(np.float32)
  b = rng.integers(-3, 4, size=m).astype(np.float32)
  domain = rng.uniform(size=m) < 0.8
  got = best_pair(jnp.asarray(a), jnp.asarray(b), jnp.asarray(domain), increase=increase)
  want = reference.best_pair(a.astype(np.float64), b.astype(np.float64), domain.tolist(), increase)
  assert want is not None
  assert (float(got.score), int(got.p), int(got.q)) == want


@pytest.mark.parametrize("increase", [True, False], ids=["increase", "decrease"])
def test_best_feature_matches_brute_force_with_ties(increase):
  rng = np.random.default_rng(7)
  a = rng.integers(-2, 3, size=25).astype(np.float32)
  b = rng.integers(-2, 3, size=25).astype(np.float32)
  domain = np.ones(25, bool)
  got = best_feature(jnp.asarray(a), jnp.asarray(b), jnp.asarray(domain), increase=increase)
  want = reference.best_feature(a, b, domain.tolist(), increase)
  assert (float(got.score), int(got.p), int(got.q)) == want


def test_pairwise_matrix_agrees_with_best_pair():
  rng = np.random.default_rng(1)
  a, b = jnp.asarray(rng.normal(size=30)), jnp.asarray(rng.normal(size=30))
  domain = jnp.asarray(rng.uniform(size=30) < 0.7)
  s = pairwise_saliency(a, b, domain)
  np.testing.assert_array_equal(s, s.T)
  assert bool(jnp.all(jnp.diag(s) == -jnp.inf))
  flat = int(jnp.argmax(s))
  choice = best_pair(a, b, domain)
  assert divmod(flat, 30) == (int(choice.p), int(choice.q))
  assert float(s.max()) == float(choice.score)


def test_pairwise_decreasing_mirrors_increasing():
  rng = np.random.default_rng(2)
  a, b = jnp.asarray(rng.normal(size=12)), jnp.asarray(rng.normal(size=12))
  np.testing.assert_array_equal(pairwise_saliency(a, b), pairwise_saliency(-a, -b, increase=False))


def test_best_pair_vmaps_over_a_batch():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(5, 20)), rng.normal(size=(5, 20))
  domain = np.ones((5, 20), bool)
  batched = jax.vmap(lambda a, b, d: best_pair(a, b, d))(a, b, domain)
  for i in range(5):
    one = best_pair(jnp.asarray(a[i]), jnp.asarray(b[i]), jnp.asarray(domain[i]))
    assert (int(batched.p[i]), int(batched.q[i])) == (int(one.p), int(one.q))


def test_best_pair_in_row_blocks_equals_one_block(monkeypatch):
  """Scoring the rows a block at a time (large M) changes no choice, ties included."""
  from jsma_jax import saliency

  rng = np.random.default_rng(5)
  m = 301
  for _ in range(4):
    a = jnp.asarray(rng.integers(-3, 4, m), jnp.float32)
    b = jnp.asarray(rng.integers(-3, 4, m), jnp.float32)
    domain = jnp.asarray(rng.uniform(size=m) < 0.8)
    for increase in (True, False):
      monkeypatch.setattr(saliency, "PAIR_BLOCK_ELEMENTS", 1 << 30)
      whole = saliency.best_pair(a, b, domain, increase=increase)
      monkeypatch.setattr(saliency, "PAIR_BLOCK_ELEMENTS", 7 * m + 5)  # 7 rows a block, ragged last block
      blocked = saliency.best_pair(a, b, domain, increase=increase)
      for w, g in zip(whole, blocked):
        np.testing.assert_array_equal(w, g)


def test_best_pair_memory_is_linear_in_m():
  """The dense search never holds an M x M array (XLA's buffer assignment of the compiled search)."""
  m = 8192
  spec = jax.ShapeDtypeStruct((m,), jnp.float32)
  compiled = jax.jit(lambda a, b, d: best_pair(a, b, d)).lower(spec, spec, jax.ShapeDtypeStruct((m,), bool)).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < m * m / 4  # an M x M bool alone would be 64 MiB
