"""The seams of the core: rules and drivers plug in from outside, no import cycles, few traces."""

from __future__ import annotations

import ast
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models

import jsma_jax
from jsma_jax import StopReason, jsma

SHAPE = (12,)
N = 4


@pytest.fixture(scope="module")
def model():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(31, SHAPE, N))
  x = jnp.asarray(toy_models.random_inputs(32, 10, SHAPE), jnp.float32)
  t = jnp.asarray(np.random.default_rng(33).integers(0, N, size=10), jnp.int32)
  return toy_models.apply_mlp_tanh, params, x, t


def _same(r1, r2):
  for a, b in zip(r1, r2):
    if a is not None or b is not None:
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# A rule written outside the package: the paper's map, moved against theta's sign.
def _against_theta(rows, outputs, label, view):
  del outputs, label
  return jsma_jax.Maps(rows[0][None], rows[1][None], (view.theta < 0)[None])


AGAINST = jsma_jax.SaliencyRule("against-theta", jsma_jax.jsma_rule().cotangents, _against_theta,
                                jsma_jax.jsma_rule().success)


@pytest.mark.slow
def test_outside_rule_plugs_in_and_direction_is_data(model):
  apply_fn, params, x, t = model
  flipped = jsma(apply_fn, x, t, params=params, gamma=0.5, theta=1.0, rule=AGAINST, initial_domain="all")
  decreasing = jsma(apply_fn, x, t, params=params, gamma=0.5, theta=-1.0, initial_domain="all")
  _same(flipped, decreasing)
  assert flipped.rule == "against-theta" and flipped.criterion == "argmax == target"


# An untargeted two-map rule from outside: push the label down, either way, per step.
def _label_down_both_ways(rows, outputs, label, view):
  del outputs, label, view
  a, b = rows[1], rows[0]  # others up, the label down
  return jsma_jax.Maps(jnp.stack([a, a]), jnp.stack([b, b]), jnp.array([True, False]))


def _left_label(outputs, label):
  return jnp.argmax(outputs) != label


UNTARGETED = jsma_jax.SaliencyRule("toy-untargeted", jsma_jax.jsma_rule().cotangents, _label_down_both_ways,
                                   _left_label, criterion="argmax != source", targeted=False, directions="both")


def test_outside_rule_with_two_maps_moves_both_ways(model):
  apply_fn, params, x, _ = model
  labels = jnp.argmax(apply_fn(params, x), axis=1).astype(jnp.int32)
  r = jsma(apply_fn, x, labels, params=params, gamma=0.5, rule=UNTARGETED, theta=0.3)
  assert r.criterion == "argmax != source"
  np.testing.assert_array_equal(r.success, r.predicted != labels)
  moved = np.asarray(r.x_adv - x)
  assert (moved > 0).any() and (moved < 0).any()  # both directions were chosen somewhere
  summary = jsma_jax.summarize(r)
  assert summary.n_success == int(np.sum(r.success)) and summary.criterion == "argmax != source"


def test_rule_with_wrong_shapes_is_named(model):
  apply_fn, params, x, t = model
  bad = AGAINST._replace(name="bad-rule", maps=lambda rows, o, label, v: jsma_jax.Maps(rows[0], rows[1], v.theta > 0))
  with pytest.raises(ValueError, match=r"rule 'bad-rule': maps\(\.\.\.\) must return Maps with a and b \[K, M\]"):
    jsma(apply_fn, x, t, params=params, gamma=0.5, rule=bad)


@jsma_jax.register_driver("test-fixed-count")
def _fixed_count(problem: jsma_jax.Problem) -> jsma_jax.AttackState:
  """A driver from outside: the one step, max_iter + 1 times, over the whole batch."""
  from jsma_jax.step import initial_states

  state = initial_states(problem, problem.x, problem.valid)
  body = lambda _, s: jsma_jax.step(problem, s, problem.x, problem.labels)[0]
  return jax.lax.fori_loop(0, problem.plan.max_iter + 1, body, state)


def test_outside_driver_plugs_in(model):
  apply_fn, params, x, t = model
  mine = jsma(apply_fn, x, t, params=params, gamma=0.5, schedule="test-fixed-count", record_trace=True)
  refill = jsma(apply_fn, x, t, params=params, gamma=0.5, record_trace=True)
  _same(mine, refill)


def test_lockstep_uses_the_pruned_search(model):
  apply_fn, params, x, t = model
  text = jsma_jax.lower(apply_fn, x, t, params=params, gamma=0.5, schedule="lockstep", candidates=4).as_text()
  dense = jsma_jax.lower(apply_fn, x, t, params=params, gamma=0.5, schedule="lockstep", candidates=0).as_text()
  assert text != dense  # the candidate tier is compiled in unless asked for the dense search


def test_theta_sign_and_new_weights_do_not_retrace(model):
  apply_fn, params, x, t = model

  @chex.assert_max_traces(n=2)  # the argument check's abstract evaluation, then the one compile
  def traced(params, x):
    return apply_fn(params, x)

  for theta in (1.0, -1.0, 0.5, -0.25):  # the direction is data, not a compile-time setting
    jsma(traced, x, t, params=params, gamma=0.5, theta=theta)
  jsma(traced, x, t, params=jax.tree.map(lambda v: v * 2, params), gamma=0.5)


def test_ragged_batches_share_a_bucket(model):
  apply_fn, params, x, t = model
  jsma(apply_fn, x, t, params=params, gamma=0.45)
  before = jsma_jax.cache_size()
  for n in (9, 10):  # 8 < n <= 10: both padded to 10
    jsma(apply_fn, x[:n], t[:n], params=params, gamma=0.45)
  assert jsma_jax.cache_size() == before


def test_padding_does_not_change_results(model):
  apply_fn, params, x, t = model
  padded = jsma(apply_fn, x[:9], t[:9], params=params, gamma=0.5)
  exact = jsma(apply_fn, x[:9], t[:9], params=params, gamma=0.5, pad_batches=False)
  _same(padded, exact)
  assert padded.x_adv.shape[0] == 9


def test_stop_reason_names_are_neutral():
  assert StopReason.SUCCESS == StopReason.REACHED_TARGET == 1
  assert StopReason(1).name == "SUCCESS"


def _imports(path: Path, package: str) -> set[str]:
  tree = ast.parse(path.read_text())
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
      found.add(node.module)
      found.update(f"{node.module}.{a.name}" for a in node.names)
    elif isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name.startswith(package))
  return found


def test_no_import_cycle_in_the_core():
  root = Path(jsma_jax.__file__).parent
  modules = {f"jsma_jax.{p.stem}": p for p in root.glob("*.py") if p.stem != "__init__"}
  graph = {m: {d for d in _imports(p, "jsma_jax") if d in modules and d != m} for m, p in modules.items()}
  state: dict[str, int] = {}

  def visit(m, path):
    if state.get(m) == 1:
      raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
    if state.get(m) == 2:
      return
    state[m] = 1
    for d in sorted(graph[m]):
      visit(d, path + [m])
    state[m] = 2

  for m in sorted(graph):
    visit(m, [])
  core = {m for m in modules if m != "jsma_jax.user_model" and m != "jsma_jax.rewrite"}
  for m in core:  # the core never imports the models (flax), data or experiments
    assert not any(d.startswith("jsma_jax.models") for d in _imports(modules[m], "jsma_jax")), m
