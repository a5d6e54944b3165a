"""Tests for jsma_jax.rewrite: same function, same derivative, untouched where unsupported."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import user_models
from flax import nnx
from jax import lax

import jsma_jax
from jsma_jax.models import load_mnist
from jsma_jax.rewrite import enabled_by_default, eval_jaxpr_loop_friendly, loop_friendly

RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def _highest():
  with jax.default_matmul_precision("highest"):  # as the attack traces the model
    yield


def _mnist(n=3):
  x, y = load_mnist("embedded", split="test")
  pick = np.flatnonzero(np.isin(y, [0, 1, 7]))[::100][:n]  # digits on a blank background
  return jnp.asarray(x[pick]), jnp.asarray(y[pick], jnp.int32)


def _normal(seed, shape, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


def _conv(x_shape, w_shape, **kwargs):
  """An op ``x -> conv(x, w)`` with fixed random weights, and an input of ``x_shape``."""
  w = _normal(1, w_shape, 0.3)
  return (lambda x: lax.conv_general_dilated(x, w, **kwargs)), _normal(0, x_shape)


def _pool(x, kind, window, strides, padding="VALID", **kwargs):
  init, op = (-jnp.inf, lax.max) if kind == "max" else (0.0, lax.add)
  return (lambda v: lax.reduce_window(v, init, op, window, strides, padding, **kwargs)), x


def _model(build):
  fn, params = build()
  return functools.partial(fn, params)


def _lax_lenet():
  return user_models.lax_lenet_relu, user_models.lax_params_from_nnx(user_models.nnx_lenet("relu")[1])


NHWC = ("NHWC", "HWIO", "NHWC")
NCHW = ("NCHW", "OIHW", "NCHW")
IMAGES = lambda: _mnist()[0]  # [3, 28, 28, 1], blank backgrounds: ties in every pool window
CONSTANT = lambda: jnp.full((2, 6, 6, 3), 0.5)  # every window a tie

OPS = {  # name: () -> (f, x)
    "conv-nhwc-valid": lambda: _conv((2, 9, 9, 3), (3, 3, 3, 4), window_strides=(1, 1),
                                     padding="VALID", dimension_numbers=NHWC),
    "conv-nchw-same": lambda: _conv((2, 3, 9, 8), (4, 3, 3, 3), window_strides=(1, 1),
                                    padding="SAME", dimension_numbers=NCHW),
    "conv-strided-same": lambda: _conv((2, 11, 10, 3), (3, 3, 3, 5), window_strides=(2, 3),
                                       padding="SAME", dimension_numbers=NHWC),
    "conv-asymmetric-pad": lambda: _conv((2, 8, 8, 2), (3, 2, 2, 4), window_strides=(1, 2),
                                         padding=((1, 2), (0, 3)), dimension_numbers=NHWC),
    "conv-negative-pad": lambda: _conv((2, 8, 8, 2), (3, 3, 2, 4), window_strides=(1, 1),
                                       padding=((-1, 1), (2, -2)), dimension_numbers=NHWC),
    "conv-lhs-dilated": lambda: _conv((2, 6, 7, 2), (3, 3, 2, 3), window_strides=(1, 1),
                                      padding=((2, 2), (1, 1)), lhs_dilation=(2, 3),
                                      dimension_numbers=NHWC),
    "conv-rhs-dilated": lambda: _conv((2, 3, 12, 12), (4, 3, 3, 3), window_strides=(1, 1),
                                      padding="SAME", rhs_dilation=(2, 3), dimension_numbers=NCHW),
    "conv-grouped": lambda: _conv((2, 7, 7, 6), (3, 3, 2, 9), window_strides=(1, 1),
                                  padding="VALID", feature_group_count=3, dimension_numbers=NHWC),
    "conv-depthwise-nchw": lambda: _conv((2, 4, 8, 8), (8, 1, 3, 3), window_strides=(2, 2),
                                         padding="SAME", feature_group_count=4,
                                         dimension_numbers=NCHW),
    "conv-mixed-layouts": lambda: _conv((3, 8, 2, 7), (2, 3, 4, 3), window_strides=(1, 1),
                                        padding="VALID", dimension_numbers=("HNCW", "IHOW", "WCNH")),
    "conv-1d": lambda: _conv((2, 10, 3), (3, 3, 4), window_strides=(2,), padding="SAME",
                             dimension_numbers=("NWC", "WIO", "NWC")),
    "conv-precision-highest": lambda: _conv((2, 9, 9, 3), (3, 3, 3, 4), window_strides=(1, 1),
                                            padding="VALID", dimension_numbers=NHWC,
                                            precision=lax.Precision.HIGHEST),
    "maxpool-2x2-mnist": lambda: _pool(IMAGES(), "max", (1, 2, 2, 1), (1, 2, 2, 1)),
    "maxpool-2x2-constant": lambda: _pool(CONSTANT(), "max", (1, 2, 2, 1), (1, 2, 2, 1)),
    "maxpool-3x3s2-same-mnist": lambda: _pool(IMAGES(), "max", (1, 3, 3, 1), (1, 2, 2, 1), "SAME"),
    "maxpool-3x3s1-constant": lambda: _pool(CONSTANT(), "max", (1, 3, 3, 1), (1, 1, 1, 1)),
    "maxpool-2x2-nchw-odd": lambda: _pool(jnp.round(_normal(0, (2, 3, 7, 9))), "max",
                                          (1, 1, 2, 2), (1, 1, 2, 2)),
    "maxpool-padded-asym": lambda: _pool(IMAGES(), "max", (1, 2, 3, 1), (1, 2, 2, 1),
                                         ((0, 0), (1, 0), (0, 2), (0, 0))),
    "maxpool-window-dilated": lambda: _pool(IMAGES(), "max", (1, 2, 2, 1), (1, 1, 1, 1),
                                            window_dilation=(1, 2, 2, 1)),
    "maxpool-base-dilated": lambda: _pool(IMAGES(), "max", (1, 3, 3, 1), (1, 2, 2, 1),
                                          base_dilation=(1, 2, 1, 1)),
    "avgpool-2x2-mnist": lambda: (lambda v: nnx.avg_pool(v, (2, 2), (2, 2)), IMAGES()),
    "avgpool-3x3-same": lambda: (lambda v: nnx.avg_pool(v, (3, 3), (1, 1), "SAME"), IMAGES()),
    "nnx-lenet-relu": lambda: (_model(lambda: user_models.nnx_lenet("relu")), IMAGES()),
    "nnx-lenet-tanh": lambda: (_model(lambda: user_models.nnx_lenet("tanh")), IMAGES()),
    "lax-lenet-nchw": lambda: (_model(_lax_lenet), IMAGES()),
    "linen-cnn": lambda: (_model(user_models.linen_cnn), IMAGES()),
    "cifar-cnn-batchnorm": lambda: (_model(user_models.cifar_cnn), jax.random.uniform(
        jax.random.key(0), (2, 32, 32, 3))),
}


def _cotangents(y, n=2):
  """``n`` small-integer cotangents: sums of them are exact, so pool gradients compare exactly."""
  return [jnp.asarray(np.random.default_rng(10 + i).integers(-2, 3, size=y.shape), y.dtype)
          for i in range(n)]


def _vjps(f, x):
  """Value and two VJP rows (Jacobian rows, as the attack takes them)."""
  y, vjp = jax.vjp(f, x)
  return y, [vjp(ct)[0] for ct in _cotangents(y)]


def _jvps(f, x):
  """Value and two JVP columns (for ops whose original has no VJP)."""
  return f(x), [jax.jvp(f, (x,), (t,))[1] for t in _cotangents(x)]


JVP_ONLY = {"maxpool-window-dilated"}  # JAX has no VJP for a window-dilated max-pool


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPS))
def test_same_value_and_vjp(name):
  f, x = OPS[name]()
  rows = _jvps if name in JVP_ONLY else _vjps
  (y0, g0), (y1, g1) = jax.jit(lambda v: (rows(f, v), rows(loop_friendly(f), v)))(x)
  np.testing.assert_allclose(y1, y0, rtol=RTOL, atol=ATOL)
  scale = max(float(jnp.max(jnp.abs(g))) for g in g0)
  for a, b in zip(g1, g0):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * max(scale, 1.0))
  if name.startswith("maxpool"):  # ties: the same input gets the gradient, to the bit
    np.testing.assert_array_equal(y1, y0)
    for a, b in zip(g1, g0):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["conv-nchw-same", "conv-strided-same", "conv-grouped",
                                  "maxpool-2x2-mnist", "maxpool-3x3s2-same-mnist"])
def test_rewritten_jaxpr_has_no_slow_primitive(name):
  f, x = OPS[name]()
  text = str(jax.make_jaxpr(jax.grad(lambda v: jnp.sum(loop_friendly(f)(v) ** 2)))(x))
  for slow in ("conv_general_dilated", "reduce_window_max", "select_and_scatter_add"):
    assert slow not in text


def test_max_pool_ties_go_to_the_first_maximum():
  x = jnp.zeros((1, 4, 4, 1))  # all ties
  g = jax.grad(lambda v: jnp.sum(loop_friendly(
      lambda u: nnx.max_pool(u, (2, 2), (2, 2)))(v)))(x)
  expected = np.zeros((4, 4))
  expected[::2, ::2] = 1  # the top-left entry of every window
  np.testing.assert_array_equal(g[0, :, :, 0], expected)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar-cnn-batchnorm"])
def test_jvp_jit_vmap(name):
  f, x = OPS[name]()
  fast = loop_friendly(f)
  t = _normal(3, x.shape)
  y0, dy0 = jax.jvp(f, (x,), (t,))
  y1, dy1 = jax.jit(lambda a, b: jax.jvp(fast, (a,), (b,)))(x, t)
  np.testing.assert_allclose(y1, y0, rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(dy1, dy0, rtol=RTOL, atol=ATOL * max(1.0, float(jnp.max(jnp.abs(dy0)))))
  per_example = jax.vmap(lambda v: fast(v[None])[0])(x)  # the attack's batching
  np.testing.assert_allclose(per_example, y0, rtol=RTOL, atol=ATOL)


def _conv_batch_groups(x):
  w = _normal(1, (3, 3, 4, 6))
  return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC,
                                  batch_group_count=2)


PASS_THROUGH = {  # name: (f, x, the primitive that must stay)
    "conv-batch-groups": (_conv_batch_groups, _normal(0, (4, 6, 6, 4)), "batch_group_count=2"),
    "sort": (lambda x: jnp.sort(x, axis=-1) * 2.0, _normal(0, (3, 7)), "sort"),
    "int-maxpool": (lambda x: lax.reduce_window(x, np.iinfo(np.int32).min, lax.max, (2, 2), (2, 2),
                                                "VALID"), jnp.arange(16, dtype=jnp.int32).reshape(4, 4),
                    "reduce_window_max"),
    "avgpool": (lambda x: nnx.avg_pool(x, (2, 2), (2, 2)), _normal(0, (1, 4, 4, 1)),
                "reduce_window_sum"),
    "conv-in-cond": (lambda x: lax.cond(jnp.sum(x) > 0, lambda v: _conv_batch_groups(v) + 1,
                                        lambda v: _conv_batch_groups(v) - 1, x),
                     _normal(0, (4, 6, 6, 4)), "cond"),
    "custom-jvp-relu": (jax.nn.relu, _normal(0, (5,)), "custom_jvp_call"),
}


@pytest.mark.parametrize("name", list(PASS_THROUGH))
def test_unsupported_passes_through(name):
  f, x, marker = PASS_THROUGH[name]
  assert marker in str(jax.make_jaxpr(loop_friendly(f))(x))
  np.testing.assert_array_equal(loop_friendly(f)(x), f(x))


def test_custom_vjp_rule_is_kept():
  @jax.custom_vjp
  def double_grad(x):
    return _conv((1, 5, 5, 2), (3, 3, 2, 2), window_strides=(1, 1), padding="SAME",
                 dimension_numbers=NHWC)[0](x)

  double_grad.defvjp(lambda x: (double_grad(x), x), lambda x, g: (2.0 * x * jnp.sum(g),))
  x = _normal(0, (1, 5, 5, 2))
  loss = lambda fn: jax.grad(lambda v: jnp.sum(fn(v)))(x)
  np.testing.assert_array_equal(loss(loop_friendly(double_grad)), loss(double_grad))


def test_nested_jit_and_remat_are_rewritten():
  conv, x = OPS["conv-strided-same"]()
  f = jax.jit(jax.checkpoint(lambda v: jnp.tanh(jax.jit(conv)(v))))
  text = str(jax.make_jaxpr(loop_friendly(f))(x))
  assert "conv_general_dilated" not in text
  assert "checkpoint" in text or "remat" in text
  (y0, g0), (y1, g1) = jax.jit(lambda v: (_vjps(f, v), _vjps(loop_friendly(f), v)))(x)
  np.testing.assert_allclose(y1, y0, rtol=RTOL, atol=ATOL)
  for a, b in zip(g1, g0):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * 10)


@pytest.mark.slow
def test_pytrees_in_and_out_and_closed_jaxpr_entry():
  apply_fn, params = user_models.linen_cnn()
  x = IMAGES()
  fast = loop_friendly(lambda p, v: {"logits": apply_fn(p, v), "n": v.shape[0]})
  out = fast(params, x)
  np.testing.assert_allclose(out["logits"], apply_fn(params, x), rtol=RTOL, atol=ATOL)
  closed = jax.make_jaxpr(apply_fn)(params, x)
  (logits,) = eval_jaxpr_loop_friendly(closed, *jax.tree.leaves((params, x)))
  np.testing.assert_allclose(logits, apply_fn(params, x), rtol=RTOL, atol=ATOL)
  with pytest.raises(TypeError, match="args"):
    eval_jaxpr_loop_friendly(closed, x)


def test_hashable_and_equal():
  f = user_models.lax_lenet_relu
  assert loop_friendly(f) == loop_friendly(f)
  assert hash(loop_friendly(f)) == hash(loop_friendly(f))
  assert loop_friendly(loop_friendly(f)) == loop_friendly(f)
  assert loop_friendly(f) != loop_friendly(user_models.lax_lenet_tanh)
  a, _ = user_models.nnx_lenet("relu", seed=0)
  b, _ = user_models.nnx_lenet("relu", seed=1)  # same architecture, other weights
  assert loop_friendly(a) == loop_friendly(b) and hash(loop_friendly(a)) == hash(loop_friendly(b))
  with pytest.raises(TypeError, match="fn"):
    loop_friendly(3)


def test_backend_policy():
  assert enabled_by_default("cpu")
  assert not enabled_by_default("gpu") and not enabled_by_default("tpu")


@pytest.mark.slow
@pytest.mark.parametrize("model,options", [
    ("nnx", {}),  # the default refill schedule and pruned search
    ("lax", {"schedule": "lockstep", "candidates": 0}),  # the plain vmapped while_loop
], ids=["nnx-lenet-refill", "lax-lenet-nchw-lockstep"])
def test_mnist_attacks_same_x_adv(model, options):
  """Real digits to all their other classes: identical x_adv with the rewrite on and off."""
  apply_fn, params = user_models.nnx_lenet("relu", seed=0)
  if model == "lax":
    apply_fn, params = _lax_lenet()
  x, y = _mnist(2)
  e = jsma_jax.all_other_targets(x, y, 10)  # 18 attacks
  off = jsma_jax.jsma(apply_fn, e.x, e.targets, params=params, max_iter=20, **options)
  on = jsma_jax.jsma(loop_friendly(apply_fn), e.x, e.targets, params=params, max_iter=20,
                     **options)
  np.testing.assert_array_equal(on.x_adv, off.x_adv)
  np.testing.assert_array_equal(on.iterations, off.iterations)
  assert int(jnp.sum(off.iterations)) > 0
