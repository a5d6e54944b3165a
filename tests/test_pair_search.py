"""The pruned pair search equals the dense search exactly, and its certificate is sound."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsma_jax import best_pair
from jsma_jax.pair_search import best_pairs, candidate_pair, feature_bounds, region_pair

DISTRIBUTIONS = {
    "normal": lambda rng, s: (rng.normal(size=s), rng.normal(size=s)),
    "heavy-tailed": lambda rng, s: (rng.standard_t(2, size=s), rng.standard_t(2, size=s)),
    "integers-with-ties": lambda rng, s: (rng.integers(-3, 4, size=s), rng.integers(-3, 4, size=s)),
    "sparse-zeros": lambda rng, s: (rng.normal(size=s) * (rng.uniform(size=s) < 0.2),
                                    rng.normal(size=s) * (rng.uniform(size=s) < 0.2)),
    "correlated": lambda rng, s: (lambda z: (z + 0.1 * rng.normal(size=s),
                                             -z + 0.1 * rng.normal(size=s)))(rng.normal(size=s)),
    "tiny-scale": lambda rng, s: (rng.normal(size=s) * 1e-20, rng.normal(size=s) * 1e-20),
}


def _dense(a, b, domain, increase):
  return jax.vmap(lambda a, b, d: best_pair(a, b, d, increase=increase))(a, b, domain)


def _mixed_batch(seed: int, rows: int = 24, m: int = 150):
  """``rows`` examples of every distribution above, stacked: ``a, b, domain [6 rows, m]`` and each row's name."""
  rng = np.random.default_rng(seed)
  parts = [dist(rng, (rows, m)) for dist in DISTRIBUTIONS.values()]
  a, b = (jnp.asarray(np.concatenate([part[i] for part in parts]), jnp.float32) for i in (0, 1))
  domain = jnp.asarray(rng.uniform(size=a.shape) < 0.85)
  return a, b, domain, np.repeat(list(DISTRIBUTIONS), rows)


TIERS = {
    "k1-dense": dict(k=1, region=0),  # one candidate: never a pair, every row falls back
    "k8-dense": dict(k=8, region=0),
    "k32-dense": dict(k=32, region=0),
    "k4-region8-dense": dict(k=4, region=8),  # the region search settles some rows and overflows on others
    "k4-region40-dense": dict(k=4, region=40),
}


@pytest.mark.slow
@pytest.mark.parametrize("increase", [True, False], ids=["increase", "decrease"])
@pytest.mark.parametrize("tiers", TIERS.values(), ids=TIERS.keys())
def test_pruned_equals_dense(tiers, increase):
  a, b, domain, names = _mixed_batch(tiers["k"] + tiers["region"])
  search = jax.jit(lambda a, b, d: best_pairs(a, b, d, increase=increase, chunk=5, **tiers))
  got, want = search(a, b, domain), _dense(a, b, domain, increase)
  for g, w, field in zip(got, want, ("score", "p", "q")):
    wrong = np.flatnonzero(np.asarray(g) != np.asarray(w))
    assert wrong.size == 0, f"{field} differs on rows {wrong[:5]} ({sorted(set(names[wrong]))})"


@pytest.mark.parametrize("k", [150, 151, 1000], ids=["k-equals-m", "k-above-m", "k-far-above-m"])
def test_every_feature_a_candidate_compiles_the_dense_search_alone(k):
  """k >= M: every pair is a candidate, so no later tier can ever run; none is traced, and the result is
  the dense one."""
  a, b, domain, _names = _mixed_batch(7)  # m = 150
  search = jax.jit(lambda a, b, d: best_pairs(a, b, d, increase=True, k=k, chunk=5, region=40))
  assert "stablehlo.while" not in search.lower(a, b, domain).as_text()
  for g, w in zip(search(a, b, domain), _dense(a, b, domain, True)):
    np.testing.assert_array_equal(np.asarray(g), np.asarray(w))


def test_certificate_holds_often_on_smooth_data_and_is_never_wrong():
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.normal(size=(200, 300)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(200, 300)) - 0.5, jnp.float32)
  domain = jnp.ones((200, 300), bool)
  cand = jax.jit(jax.vmap(lambda a, b, d: candidate_pair(a, b, d, increase=True, k=32)))(a, b, domain)
  dense = _dense(a, b, domain, True)
  certified = np.asarray(cand.certified)
  assert certified.mean() > 0.5
  for field in ("score", "p", "q"):
    np.testing.assert_array_equal(np.asarray(getattr(cand.choice, field))[certified],
                                  np.asarray(getattr(dense, field))[certified])


def test_small_domain_is_always_certified():
  a = jnp.asarray([[1.0, 2.0, -1.0, 3.0]])
  b = jnp.asarray([[-1.0, -2.0, 1.0, -3.0]])
  domain = jnp.asarray([[True, False, True, False]])
  cand = jax.jit(jax.vmap(lambda a, b, d: candidate_pair(a, b, d, increase=True, k=2)))(a, b, domain)
  assert bool(cand.certified[0])
  assert float(cand.choice.score[0]) == float(best_pair(a[0], b[0], domain[0]).score)


@pytest.mark.slow
def test_inactive_rows_skip_the_fallback():
  rng = np.random.default_rng(1)
  a, b = (jnp.asarray(rng.integers(-2, 3, size=(6, 40)), jnp.float32) for _ in range(2))
  domain = jnp.ones((6, 40), bool)
  active = jnp.asarray([True, False, True, False, True, False])
  got = jax.jit(lambda a, b, d, act: best_pairs(a, b, d, increase=True, k=2, chunk=2, active=act))(a, b, domain, active)
  want = _dense(a, b, domain, True)
  for g, w in zip(got, want):
    np.testing.assert_array_equal(np.asarray(g)[np.asarray(active)], np.asarray(w)[np.asarray(active)])


@pytest.mark.slow
def test_region_search_settles_uncertified_rows_exactly_and_reports_overflow():
  rng = np.random.default_rng(12)
  a, b = (jnp.asarray(rng.standard_t(2, size=(48, 150)), jnp.float32) for _ in range(2))
  domain = jnp.ones((48, 150), bool)
  cand = jax.jit(jax.vmap(lambda a, b, d: candidate_pair(a, b, d, increase=True, k=4)))(a, b, domain)
  region = jax.jit(jax.vmap(lambda a, b, d, f: region_pair(a, b, d, f, increase=True, size=8, groups=16)))
  choice, fits = region(a, b, domain, cand.choice.score)
  dense = _dense(a, b, domain, True)
  uncertified, fits = ~np.asarray(cand.certified), np.asarray(fits)
  assert (uncertified & fits).sum() >= 5  # the second tier does settle rows the certificate left open ...
  assert (uncertified & ~fits).sum() >= 1  # ... and says so when its region overflows
  for field in ("score", "p", "q"):
    np.testing.assert_array_equal(np.asarray(getattr(choice, field))[fits], np.asarray(getattr(dense, field))[fits])


def _brute_bounds(u, v, domain):
  """Best score of an admissible pair holding each feature, by enumeration, rounded as the dense search rounds it.

  In JAX, not NumPy: XLA:CPU flushes subnormal results to zero, and the bound must hold for the scores the
  attack compares, not for NumPy's.
  """
  u, v, domain = jnp.asarray(u), jnp.asarray(v), jnp.asarray(domain)
  alpha, beta = u[:, None] + u[None, :], v[:, None] + v[None, :]
  ok = domain[:, None] & domain[None, :] & ~jnp.eye(u.shape[0], dtype=bool) & (alpha > 0) & (beta > 0)
  return np.asarray(jnp.where(ok, alpha * beta, -jnp.inf).max(axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("dist", DISTRIBUTIONS.values(), ids=DISTRIBUTIONS.keys())
def test_feature_bounds_hold_for_every_feature(dist, groups):
  rng = np.random.default_rng(groups)
  for _ in range(5):
    u, v = (np.asarray(w, np.float32) for w in dist(rng, (120,)))
    domain = rng.uniform(size=120) < 0.8
    bound = np.asarray(feature_bounds(jnp.asarray(u), jnp.asarray(v), jnp.asarray(domain), groups=groups))
    best = _brute_bounds(u, v, domain)
    assert np.all(bound >= best)
    assert np.all(bound[~domain] == -np.inf)


def test_binned_bound_is_tighter_than_the_box():
  rng = np.random.default_rng(3)
  u, v = (jnp.asarray(rng.normal(size=4000), jnp.float32) for _ in range(2))
  domain = jnp.ones(4000, bool)
  one, binned = (np.asarray(feature_bounds(u, v, domain, groups=g)) for g in (1, 16))
  finite = np.isfinite(one)
  assert np.all(binned[finite] <= one[finite])
  assert np.mean(binned[finite] < one[finite]) > 0.1


@pytest.mark.slow
def test_few_pending_rows_take_the_narrow_chunk():
  """One uncertified row among many: results stay exact when the fallback narrows its chunk."""
  rng = np.random.default_rng(5)
  a = jnp.asarray(rng.normal(size=(64, 60)), jnp.float32)
  b = jnp.asarray(rng.normal(size=(64, 60)), jnp.float32)
  domain = jnp.ones((64, 60), bool)
  active = jnp.zeros(64, bool).at[jnp.asarray([3, 40])].set(True)
  for region in (0, 10):
    search = jax.jit(lambda a, b, d, act: best_pairs(a, b, d, increase=True, k=1, chunk=32, active=act, region=region))
    got = search(a, b, domain, active)
    want = _dense(a, b, domain, True)
    for g, w in zip(got, want):
      np.testing.assert_array_equal(np.asarray(g)[[3, 40]], np.asarray(w)[[3, 40]])
