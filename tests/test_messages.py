"""Mistakes a user makes in the second hour get a message that names the fix."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsma_jax
from jsma_jax import jsma

N = 4


def _nhwc_cnn():
  """A small NHWC convolutional model, as Flax writes them: [B, H, W, C] -> [B, N]."""
  rng = np.random.default_rng(0)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 1, 2)), jnp.float32)
  dense = jnp.asarray(rng.normal(size=(6 * 6 * 2, N)), jnp.float32)

  def f(x):
    h = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.tanh(h).reshape(x.shape[0], -1) @ dense

  return f


def _images(n=3):
  return jnp.asarray(np.random.default_rng(1).uniform(0, 1, size=(n, 6, 6, 1)), jnp.float32)


def test_an_nchw_batch_for_an_nhwc_model_names_the_transpose():
  f, x = _nhwc_cnn(), _images()
  with pytest.raises(ValueError, match=r"looks like NCHW.*takes NHWC.*x.transpose\(0, 2, 3, 1\)"):
    jsma(f, x.transpose(0, 3, 1, 2), jnp.array([1, 2, 3]))


def test_an_nchw_batch_for_a_model_with_params_is_not_blamed_on_params():
  f, x = _nhwc_cnn(), _images()
  with pytest.raises(ValueError, match="looks like NCHW") as info:
    jsma(lambda p, x: f(x) * p, x.transpose(0, 3, 1, 2), jnp.array([1, 2, 3]), params=jnp.float32(1.0))
  assert "params does not fit" not in str(info.value)


def test_one_image_without_a_batch_axis_names_x_none():
  f, x = _nhwc_cnn(), _images()
  with pytest.raises(ValueError, match=r"ONE example without its batch axis, add it: x\[None\]"):
    jsma(f, x[0], jnp.array([1]))


def test_uint8_images_name_the_division_by_255():
  f, x = _nhwc_cnn(), _images()
  with pytest.raises(TypeError, match=r"uint8.*astype\(np.float32\) / 255.*clip_max=255"):
    jsma(f, np.asarray(x * 255, np.uint8), jnp.array([1, 2, 3]))


def test_float_images_in_0_255_name_the_division_by_255():
  f, x = _nhwc_cnn(), _images()
  with pytest.raises(ValueError, match=r"images in \[0, 255\]\? divide x by 255, or pass clip_max=255"):
    jsma(f, x * 255, jnp.array([1, 2, 3]))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_are_refused_with_the_reason(dtype):
  f, x = _nhwc_cnn(), _images()
  before = jsma_jax.cache_size()
  with pytest.raises(TypeError, match=r"float32 or float64.*ties.*x.astype\(jnp.float32\)"):
    jsma(f, x.astype(dtype), jnp.array([1, 2, 3]))
  assert jsma_jax.cache_size() == before


def test_labels_passed_as_targets_warn_and_still_count_as_the_criterion_says():
  f, x = _nhwc_cnn(), _images(8)
  labels = jnp.argmax(f(x), axis=1)  # what a user has: the true (here: predicted) classes
  with pytest.warns(UserWarning, match=r"targets equal the model's current prediction for 8 of 8.*all_other_targets"):
    r = jsma(f, x, labels)
  assert np.all(r.success) and np.all(r.iterations == 0) and np.all(r.n_changed == 0)


def test_real_targets_do_not_warn():
  f, x = _nhwc_cnn(), _images(8)
  labels = jnp.argmax(f(x), axis=1)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    jsma(f, x, (labels + 1) % N, max_iter=2)  # every target differs from the prediction
    jsma(f, x, labels, max_iter=2, rule=jsma_jax.untargeted_rule())  # labels ARE the input of this rule
