"""What a user reads: a result's repr names its stop reasons, the progress bar says it is
compiling before its first count."""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax
from jsma_jax import progress
from jsma_jax.types import JSMAResult

W = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])


def model(x):
  return x.reshape(x.shape[0], -1) @ W


def test_a_results_repr_names_its_stop_reasons_and_counts_them():
  result = jsma_jax.jsma(model, jnp.zeros((3, 4)), jnp.array([1, 1, 0]), max_iter=1)
  text = repr(result)
  reasons = np.asarray(result.stop_reason)
  for code in np.unique(reasons):
    assert f"{jsma_jax.StopReason(int(code)).name} {int((reasons == code).sum())}" in text
  assert "3 examples" in text and "x_adv float32[3, 4]" in text and str(result) == text


def test_the_repr_keeps_the_result_a_pytree_that_exports():
  """A repr does not change what the result is: jax.tree, jit and a jax.export round trip."""
  x, t = jnp.zeros((2, 4)), jnp.array([1, 1])
  attack = jax.jit(lambda x, t: jsma_jax.jsma(model, x, t, max_iter=2))
  exported = jax.export.export(attack)(x, t)
  back = jax.export.deserialize(exported.serialize()).call(x, t)
  assert isinstance(back, JSMAResult) and back.rule == "jsma" and "SUCCESS 2" in repr(back)
  assert len(jax.tree.leaves(back)) == 6  # the arrays (trace is None)
  seen = []
  jax.jit(lambda x, t: seen.append(repr(jsma_jax.jsma(model, x, t, max_iter=2))) or 0)(x, t)
  assert seen[0].startswith("JSMAResult(rule='jsma'") and "stop_reason int32[2]" in seen[0]  # traced: the fields


def test_the_progress_bar_says_compiling_until_its_first_count():
  out = io.StringIO()
  with progress.bar(10, "attack", file=out, mininterval=0) as bar:
    bar.refresh()
    before = out.getvalue()
    bar.update(5)
    bar.set_postfix(success="80.0%")
    bar.refresh()
    after = out.getvalue()[len(before):]
  assert "compiling" in before and "0/10" in before
  assert "compiling" not in after and "5/10" in after and "success=80.0%" in after


def test_attack_dataset_shows_the_bar_of_the_progress_module(monkeypatch):
  """attack_dataset's bar is progress.bar: one home for what the bar says."""
  made, original = [], progress.bar

  def bar(total, description):
    made.append((total, description))
    return original(total, description)

  monkeypatch.setattr(progress, "bar", bar)
  jsma_jax.attack_dataset(model, np.zeros((3, 4)), np.ones(3, int), chunk_size=2, max_iter=1, description="d")
  assert made == [(3, "d")]
