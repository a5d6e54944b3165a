"""The forward derivative: modes agree with each other and with analytic Jacobians."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import toy_models

from jsma_jax import forward_derivative, target_rows
from jsma_jax import jacobian as jac_lib
from jsma_jax.jacobian import resolve_mode

MODES = ["jacfwd", "jacrev", "reduced"]


def apply_linear(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"] + params["c"]


@pytest.fixture
def linear():
  rng = np.random.default_rng(0)
  return {"w": jnp.asarray(rng.normal(size=(2 * 3 * 2, 4)), jnp.float32), "c": jnp.zeros(4)}


@pytest.mark.parametrize("mode", MODES)
def test_linear_model_jacobian_is_the_weights(linear, mode):
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(3, 2, 3, 2)), jnp.float32)
  z, J = forward_derivative(apply_linear, x, params=linear, mode=mode)
  assert J.shape == (3, 4, 2, 3, 2)
  want = np.broadcast_to(np.asarray(linear["w"]).T.reshape(4, 2, 3, 2), J.shape)
  np.testing.assert_allclose(J, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(z, apply_linear(linear, x), rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_softmax_jacobian_of_linear_model(linear, mode):
  x = jnp.asarray(np.random.default_rng(2).uniform(size=(2, 2, 3, 2)), jnp.float32)
  p, J = forward_derivative(apply_linear, x, params=linear, mode=mode, probabilities=True)
  w = np.asarray(linear["w"])
  for i in range(2):
    pi = np.asarray(p[i])
    want = (np.diag(pi) - np.outer(pi, pi)) @ w.T  # d softmax / dx = (diag p - p p^T) W^T
    np.testing.assert_allclose(np.asarray(J[i]).reshape(4, -1), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_mlp_modes_agree_with_analytic(activation):
  params = toy_models.mlp_params(0, (4, 5), 6)
  x = toy_models.random_inputs(1, 4, (4, 5))
  numpy_model = toy_models.numpy_mlp(params, activation)
  with jax.enable_x64(True):
    p64 = jax.tree.map(jnp.asarray, params)
    for mode in MODES:
      _, J = forward_derivative(toy_models.APPLY_MLP[activation], jnp.asarray(x), params=p64, mode=mode)
      for i in range(4):
        np.testing.assert_allclose(np.asarray(J[i]).reshape(6, -1), numpy_model(x[i].ravel())[1],
                                   rtol=1e-12, atol=1e-12)


def test_cnn_modes_agree():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(0, 2, 5))
  x = jnp.asarray(toy_models.random_inputs(2, 3, (6, 6, 2)), jnp.float32)
  results = [forward_derivative(toy_models.apply_cnn, x, params=params, mode=m)[1] for m in MODES]
  for J in results[1:]:
    np.testing.assert_allclose(J, results[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("probabilities", [False, True], ids=["logits", "softmax"])
def test_target_rows_are_rows_of_the_full_jacobian(probabilities):
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(1, 1, 4))
  x = jnp.asarray(toy_models.random_inputs(3, 5, (6, 6, 1)), jnp.float32)
  t = jnp.array([0, 1, 2, 3, 1])
  _, J = forward_derivative(toy_models.apply_cnn, x, params=params, probabilities=probabilities)
  for mode in MODES:
    _, a, b = target_rows(toy_models.apply_cnn, x, t, params=params, mode=mode, probabilities=probabilities)
    for i in range(5):
      others = [j for j in range(4) if j != int(t[i])]
      np.testing.assert_allclose(a[i], J[i, int(t[i])], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(b[i], J[i, others].sum(0), rtol=1e-5, atol=1e-5)


def test_softmax_other_rows_are_minus_target_row():
  """Softmax outputs sum to one, so b = -a exactly in exact arithmetic (JSMA-F)."""
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(2, 1, 3))
  x = jnp.asarray(toy_models.random_inputs(4, 2, (6, 6, 1)), jnp.float32)
  _, a, b = target_rows(toy_models.apply_cnn, x, jnp.array([0, 2]), params=params, probabilities=True)
  np.testing.assert_allclose(b, -a, atol=1e-6)


def test_one_argument_logits_fn():
  w = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)), jnp.float32)
  f = lambda x: x @ w
  _, J = forward_derivative(f, jnp.ones((2, 6)))
  np.testing.assert_allclose(J[0], w.T, rtol=1e-6)


@pytest.mark.parametrize(
    "mode,m,n,r,want",
    [("auto", 784, 10, 2, "reduced"), ("auto", 1, 10, 2, "jacfwd"), ("auto", 150528, 1000, 2, "reduced"),
     ("jacrev", 784, 10, 2, "jacrev"), ("auto", 784, 10, 10, "reduced"), ("auto", 784, 10, 11, "jacrev"),
     ("auto", 5, 10, 12, "jacfwd"), ("auto", 12, 10, 12, "jacrev"), ("jacfwd", 784, 10, 2, "jacfwd")],
    ids=["lenet", "tiny_input", "imagenet", "explicit", "rows_eq_classes", "rows_gt_classes",
         "fewer_features_than_both", "more_features", "explicit_jacfwd"],
)
def test_auto_mode(mode, m, n, r, want):
  assert resolve_mode(mode, m, n, r) == want


def test_bad_mode():
  with pytest.raises(ValueError, match="jacobian"):
    resolve_mode("fastest", 784, 10, 2)
  with pytest.raises(ValueError, match="mode"):
    forward_derivative(lambda x: x, jnp.ones((1, 2)), mode="auto")


def _cnn():
  params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.cnn_params(3, 2, 5))
  x = jnp.asarray(toy_models.random_inputs(5, 3, (6, 6, 2)), jnp.float32)  # M = 72
  return params, x


@pytest.mark.parametrize("chunk", [1, 7, 64, 72, 500], ids=lambda c: f"chunk{c}")
def test_chunked_jacfwd_equals_jax_jacfwd_and_the_other_modes(chunk):
  params, x = _cnn()
  f = lambda v: toy_models.apply_cnn(params, v.reshape(1, 6, 6, 2))[0]
  flat = x.reshape(3, -1)
  want = jax.vmap(jax.jacfwd(f))(flat)
  outputs, got = jax.vmap(lambda v: jac_lib.jacfwd_chunked(f, v, chunk))(flat)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(outputs, jax.vmap(f)(flat), rtol=1e-6)
  _, J = forward_derivative(toy_models.apply_cnn, x, params=params, mode="jacfwd", jvp_chunk=chunk)
  _, J_rev = forward_derivative(toy_models.apply_cnn, x, params=params, mode="jacrev")
  np.testing.assert_allclose(J, J_rev, rtol=1e-5, atol=1e-5)
  t = jnp.array([0, 3, 4])
  rows = {m: target_rows(toy_models.apply_cnn, x, t, params=params, mode=m, jvp_chunk=chunk)[1:] for m in MODES}
  for mode in ("jacrev", "reduced"):
    for got_row, want_row in zip(rows["jacfwd"], rows[mode]):
      np.testing.assert_allclose(got_row, want_row, rtol=1e-5, atol=1e-5)


def _jacfwd_temp_bytes(chunk, m_side, *, full=False):
  rng = np.random.default_rng(0)
  k = jnp.asarray(rng.normal(size=(3, 3, 1, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=((m_side - 2) ** 2 * 8, 10)), jnp.float32)

  def f(v):
    y = jax.lax.conv_general_dilated(v.reshape(1, m_side, m_side, 1), k, (1, 1), "VALID",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return (jnp.tanh(y).reshape(1, -1) @ w)[0]

  one = (lambda v: jax.jacfwd(f)(v)) if full else (lambda v: jac_lib.jacfwd_chunked(f, v, chunk)[1])
  x = jnp.zeros((4, m_side * m_side), jnp.float32)
  return jax.jit(jax.vmap(one)).lower(x).compile().memory_analysis().temp_size_in_bytes


def test_chunked_jacfwd_memory_grows_with_the_chunk_not_with_m():
  small, large = _jacfwd_temp_bytes(4, 28), _jacfwd_temp_bytes(64, 28)
  assert large > 4 * small  # the tangents of a chunk dominate
  full = _jacfwd_temp_bytes(None, 28, full=True)  # jax.jacfwd: all M = 784 tangents at once
  assert small < full / 20
  # 4x the features at the same chunk: the per-tangent activations grow 4x, the number of tangents does not;
  # jax.jacfwd would grow 16x (M tangents of 4x the size).
  assert _jacfwd_temp_bytes(4, 56) < 8 * small


def test_bad_jvp_chunk():
  for bad in (0, -1, 2.0, True):
    with pytest.raises(ValueError, match="jvp_chunk"):
      forward_derivative(lambda x: x, jnp.ones((1, 2)), mode="jacfwd", jvp_chunk=bad)
