"""Bad input gets a clear error naming the argument, before anything is compiled."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import toy_models

import jsma_jax
from jsma_jax import jsma

PARAMS = {k: jnp.asarray(v, jnp.float32) for k, v in toy_models.mlp_params(0, (6,), 3).items()}
X = jnp.full((2, 6), 0.5, jnp.float32)
T = jnp.array([0, 1], jnp.int32)



CASES = {
    "x-int": (dict(x=jnp.ones((2, 6), jnp.int32)), TypeError, "x must be a floating-point"),
    "x-no-feature-axis": (dict(x=jnp.ones((2,), jnp.float32), targets=T), ValueError, "x must be a batch"),
    "x-empty": (dict(x=jnp.ones((0, 6), jnp.float32), targets=jnp.zeros((0,), jnp.int32)),
                ValueError, "at least one example"),
    "x-above-clip": (dict(x=X.at[0, 0].set(1.5)), ValueError, r"x must lie within \[clip_min, clip_max\]"),
    "x-below-clip": (dict(x=X.at[1, 2].set(-0.1)), ValueError, "x must lie within"),
    "x-nan": (dict(x=X.at[0, 0].set(jnp.nan)), ValueError, "x must be finite"),
    "targets-float": (dict(targets=jnp.array([0.0, 1.0])), TypeError, "targets must be an integer"),
    "targets-shape": (dict(targets=jnp.array([0, 1, 2])), ValueError, r"targets must have shape \[B\]"),
    "targets-2d": (dict(targets=jnp.array([[0], [1]])), ValueError, "targets must have shape"),
    "targets-too-big": (dict(targets=jnp.array([0, 3])), ValueError, r"targets must lie in \[0, 3\)"),
    "targets-negative": (dict(targets=jnp.array([-1, 0])), ValueError, "targets must lie in"),
    "gamma-zero": (dict(gamma=0.0), ValueError, r"gamma must lie in \(0, 1\]"),
    "gamma-above-one": (dict(gamma=1.5), ValueError, "gamma must lie in"),
    "gamma-too-small-for-one-step": (dict(gamma=0.1), ValueError, "gamma=0.1 allows no iteration"),
    "gamma-string": (dict(gamma="0.1"), TypeError, "gamma must be a Python or NumPy real number"),
    "theta-zero": (dict(theta=0.0), ValueError, "theta must be non-zero"),
    "theta-inf": (dict(theta=float("inf")), ValueError, "theta must be finite"),
    "clip-order": (dict(clip_min=1.0, clip_max=0.0), ValueError, "clip_min must be below clip_max"),
    "clip-equal": (dict(clip_min=0.5, clip_max=0.5), ValueError, "clip_min must be below clip_max"),
    "jacobian-mode": (dict(jacobian="fast"), ValueError, "jacobian must be one of"),
    "initial-domain": (dict(initial_domain="some"), ValueError, "initial_domain must be one of"),
    "pairwise-not-bool": (dict(pairwise=1), TypeError, "pairwise must be a bool"),
    "max-iter-zero": (dict(max_iter=0), ValueError, "max_iter must be a positive int"),
    "rule-wrong-type": (dict(rule="jsma"), TypeError, "rule must be a jsma_jax.SaliencyRule"),
    "precision-unknown": (dict(precision="fp8"), ValueError, "precision must be one of"),
    "region-negative": (dict(region=-1), ValueError, "region must be a non-negative int"),
    "candidates-float": (dict(candidates=2.5), ValueError, "candidates must be a non-negative int"),
    "slots-zero": (dict(slots=0), ValueError, "slots must be a positive int"),
    "logits-fn-not-callable": (dict(logits_fn=3), TypeError, "logits_fn must be callable"),
    "logits-fn-wrong-rank": (dict(logits_fn=lambda p, x: x[:, 0]),
                             ValueError, r"logits_fn\(params, x\) must return logits of shape"),
    "logits-fn-wrong-batch": (dict(logits_fn=lambda p, x: x[:1, :3]), ValueError, "must return logits of shape"),
    "logits-fn-one-class": (dict(logits_fn=lambda p, x: x[:, :1]), ValueError, "N >= 2"),
    "logits-fn-tuple": (dict(logits_fn=lambda p, x: (x, x)), ValueError, "must return one array"),
    "logits-fn-int": (dict(logits_fn=lambda p, x: (x > 0).astype(jnp.int32)), ValueError, "floating-point logits"),
}


@pytest.mark.parametrize("kwargs,error,message", CASES.values(), ids=CASES.keys())
def test_bad_input_raises_before_compiling(kwargs, error, message):
  args = dict(logits_fn=toy_models.apply_mlp_tanh, x=X, targets=T)
  args.update(kwargs)
  before = jsma_jax.cache_size()
  with pytest.raises(error, match=message):
    jsma(args.pop("logits_fn"), args.pop("x"), args.pop("targets"), params=PARAMS, **args)
  assert jsma_jax.cache_size() == before


def test_good_input_with_numpy_float64_scalars():
  r = jsma(toy_models.apply_mlp_tanh, np.asarray(X), np.asarray(T), params=PARAMS,
           gamma=np.float64(0.5), theta=np.float32(1))
  assert r.x_adv.shape == X.shape


def test_attack_dataset_names_the_examples_index_in_x_not_in_its_chunk():
  w = jnp.ones((4, 3)) * jnp.arange(3.0)
  f = lambda x: x.reshape(x.shape[0], -1) @ w
  x = np.full((7, 4), 0.5, np.float32)
  x[5, 2] = 1.5  # the second example of the third chunk of 2
  with pytest.raises(ValueError, match=r"example 5, feature 2 is 1\.5"):
    jsma_jax.attack_dataset(f, x, np.ones(7, int), chunk_size=2, progress=False)
