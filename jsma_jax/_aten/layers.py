"""Layers: convolutions, pools and normalisations (channels first, as torch)."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
from jax import lax

from jsma_jax._aten._registry import register, tuple_of

# ------------------------------------------------------------------ layers


@register("aten.convolution.default")
def convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
  """``torch.nn.functional.conv{1,2,3}d`` and ``conv_transpose{1,2,3}d`` (NC..., O I ...)."""
  nd = w.ndim - 2
  stride, padding, dilation = tuple_of(stride, nd), tuple_of(padding, nd), tuple_of(dilation, nd)
  if not transposed:
    y = lax.conv_general_dilated(x, w, stride, [(p, p) for p in padding], rhs_dilation=dilation,
                                 feature_group_count=groups)
  else:  # the gradient of a convolution: dilate the input, flip the kernel, swap I and O per group
    out_pad = tuple_of(output_padding, nd)
    cin, cout_g, kernel = w.shape[0], w.shape[1], w.shape[2:]
    w = w.reshape(groups, cin // groups, cout_g, *kernel).swapaxes(1, 2)
    w = jnp.flip(w.reshape(groups * cout_g, cin // groups, *kernel), axis=tuple(range(2, 2 + nd)))
    pads = [(d * (k - 1) - p, d * (k - 1) - p + o) for k, p, d, o in zip(kernel, padding, dilation, out_pad)]
    y = lax.conv_general_dilated(x, w, (1,) * nd, pads, lhs_dilation=stride, rhs_dilation=dilation,
                                 feature_group_count=groups)
  return y if bias is None else y + bias.reshape((1, -1) + (1,) * nd)


def _pool_pads(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
  """Torch's pool output length, as (padding before, padding after) of a VALID window."""
  span = size + 2 * p - d * (k - 1) - 1
  out = (-(-span // s) if ceil_mode else span // s) + 1
  if ceil_mode and (out - 1) * s >= size + p:  # the last window must start inside the input
    out -= 1
  return p, (out - 1) * s + d * (k - 1) + 1 - size - p


def _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode):
  """The pool's window arguments; a negative padding after (unused input) becomes a crop of ``x``."""
  nd = len(tuple_of(kernel, 1))
  kernel = tuple_of(kernel, nd)
  stride = tuple_of(stride, nd) if stride not in (None, [], ()) else kernel
  padding, dilation = tuple_of(padding, nd), tuple_of(dilation, nd)
  lead = x.ndim - nd
  pads = [_pool_pads(n, k, s, p, d, ceil_mode)
          for n, k, s, p, d in zip(x.shape[lead:], kernel, stride, padding, dilation)]
  for axis, (_, hi) in enumerate(pads):
    if hi < 0:
      x = lax.slice_in_dim(x, 0, x.shape[lead + axis] + hi, axis=lead + axis)
  return x, lead, kernel, stride, padding, dilation, pads


@register("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default",
     "aten.max_pool1d_with_indices.default")
def max_pool(x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
  """Max pool; padding is ``-inf``; the gradient goes to each window's first maximum, as torch's.

  The indices output is not converted (``None``).
  """
  x, lead, kernel, stride, _, dilation, pads = _pool_geometry(x, kernel, stride, padding, dilation, ceil_mode)
  pads = [(0, 0)] * lead + [(lo, max(hi, 0)) for lo, hi in pads]
  if all(d == 1 for d in dilation):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) * lead + kernel, (1,) * lead + stride, pads), None
  # JAX has no derivative for dilated max windows: the windows' entries stacked, then the first maximum
  x = lax.pad(x, jnp.array(-jnp.inf, x.dtype), [(lo, hi, 0) for lo, hi in pads])
  out = [(n - d * (k - 1) - 1) // s + 1 for n, k, s, d in zip(x.shape[lead:], kernel, stride, dilation)]
  entries = []
  for offset in np.ndindex(*kernel):
    start = (0,) * lead + tuple(o * d for o, d in zip(offset, dilation))
    limit = x.shape[:lead] + tuple(b + (m - 1) * s + 1 for b, m, s in zip(start[lead:], out, stride))
    entries.append(lax.slice(x, start, limit, (1,) * lead + stride))
  stacked = jnp.stack(entries, axis=-1)
  first = jnp.argmax(stacked, axis=-1)[..., None]
  return jnp.take_along_axis(stacked, first, axis=-1)[..., 0], None


@register("aten.avg_pool2d.default", "aten.avg_pool3d.default", "aten.avg_pool1d.default")
def avg_pool(x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
  """Average pool: a window sum over zero padding, divided as torch divides it."""
  shape = x.shape
  x, lead, kernel, stride, padding, _, pads = _pool_geometry(x, kernel, stride, padding, 1, ceil_mode)
  # a concrete NumPy zero makes this the reduce_window_sum primitive; a traced zero would give the
  # generic reduce_window, which JAX cannot differentiate in reverse mode
  total = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, (1,) * lead + kernel, (1,) * lead + stride,
                            [(0, 0)] * lead + [(lo, max(hi, 0)) for lo, hi in pads])
  if divisor_override:
    return total / divisor_override
  counts = np.ones((), np.float64)
  for n, k, s, p, (lo, hi) in zip(shape[lead:], kernel, stride, padding, pads):
    # torch divides by the window clipped to the padded input (count_include_pad) or to the
    # input; the extra windows of ceil_mode count neither
    inside = np.zeros(max(n + lo + hi, n + 2 * p))
    inside[slice(0, n + 2 * p) if count_include_pad else slice(p, p + n)] = 1
    windows = (n + lo + hi - k) // s + 1
    counts = np.multiply.outer(counts, [inside[i * s:i * s + k].sum() for i in range(windows)])
  return total / jnp.asarray(counts, x.dtype)


def _adaptive_axis(x, axis: int, out: int, reduce: Callable):
  n = x.shape[axis]
  if n % out == 0:  # equal windows: one reshape
    shape = x.shape[:axis] + (out, n // out) + x.shape[axis + 1:]
    return reduce(x.reshape(shape), axis + 1)
  parts = [reduce(lax.slice_in_dim(x, (i * n) // out, -(-((i + 1) * n) // out), axis=axis), axis)
           for i in range(out)]
  return jnp.stack(parts, axis=axis)


@register("aten._adaptive_avg_pool2d.default", "aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool1d.default")
def adaptive_avg_pool(x, output_size):
  """Adaptive average pool: windows ``[floor(i n / out), ceil((i + 1) n / out))``, per axis."""
  sizes = tuple_of(output_size, 1)
  for axis, out in zip(range(x.ndim - len(sizes), x.ndim), sizes):
    x = _adaptive_axis(x, axis, out if out is not None else x.shape[axis], lambda a, ax: jnp.mean(a, axis=ax))
  return x


@register("aten._native_batch_norm_legit_no_training.default")
def batch_norm_eval(x, weight, bias, mean, var, momentum, eps):
  """Eval-mode batch norm: ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``."""
  del momentum
  shape = (1, -1) + (1,) * (x.ndim - 2)
  y = (x - mean.reshape(shape)) * lax.rsqrt(var.reshape(shape) + eps)
  if weight is not None:
    y = y * weight.reshape(shape)
  if bias is not None:
    y = y + bias.reshape(shape)
  return y, jnp.zeros((0,), x.dtype), jnp.zeros((0,), x.dtype)


@register("aten.native_layer_norm.default")
def layer_norm(x, normalized_shape, weight, bias, eps):
  axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  rstd = lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True) + eps)
  y = (x - mean) * rstd
  y = y if weight is None else y * weight
  return (y if bias is None else y + bias), mean, rstd


@register("aten.native_group_norm.default")
def group_norm(x, weight, bias, n, c, hxw, group, eps):
  del hxw
  g = x.reshape(n, group, -1)
  mean = jnp.mean(g, axis=2, keepdims=True)
  rstd = lax.rsqrt(jnp.mean(jnp.square(g - mean), axis=2, keepdims=True) + eps)
  y = ((g - mean) * rstd).reshape(x.shape)
  shape = (1, c) + (1,) * (x.ndim - 2)
  y = y if weight is None else y * weight.reshape(shape)
  return (y if bias is None else y + bias.reshape(shape)), mean[..., 0], rstd[..., 0]


@register("aten._native_batch_norm_legit.no_stats")
def instance_statistics_norm(x, weight, bias, training, momentum, eps):
  """Batch norm over the statistics of ``x`` itself (every axis but 1): ``InstanceNorm`` lowers to it.

  The bridge allows it only inside an ``InstanceNorm`` layer, whose statistics are one example's;
  a ``BatchNorm`` without running statistics would mix the examples of a batch.
  """
  del training, momentum
  axes = (0,) + tuple(range(2, x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  rstd = lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True) + eps)
  shape = (1, -1) + (1,) * (x.ndim - 2)
  y = (x - mean) * rstd
  y = y if weight is None else y * weight.reshape(shape)
  return (y if bias is None else y + bias.reshape(shape)), mean.reshape(-1), rstd.reshape(-1)


# ------------------------------------------------------------------ upsampling


def _resize_geometry(x, output_size, scales) -> list[tuple[int, int, float | None]]:
  """``(input length, output length, scale factor or None)`` per spatial axis, as ``F.interpolate`` passes them."""
  spatial = x.shape[2:]
  scales = (list(scales) if scales else [])[:len(spatial)]
  scales += [None] * (len(spatial) - len(scales))
  if output_size:
    sizes = list(output_size)
  else:  # torch: floor(input * scale), in double
    sizes = [int(np.floor(n * s)) for n, s in zip(spatial, scales)]
  return list(zip(spatial, sizes, scales))


def _scale(n_in: int, n_out: int, factor, align_corners: bool = False) -> np.float32:
  """Torch's source-per-output step (``area_pixel_compute_scale``), in float32 as its CPU kernels."""
  if align_corners:
    return np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
  return np.float32(1.0 / factor) if factor is not None and factor > 0 else np.float32(n_in) / np.float32(n_out)


def _nearest(x, output_size, scales, exact: bool):
  for axis, (n_in, n_out, factor) in enumerate(_resize_geometry(x, output_size, scales), start=2):
    scale = _scale(n_in, n_out, factor)
    dst = np.arange(n_out, dtype=np.float32) + (np.float32(0.5) if exact else np.float32(0))
    src = np.minimum(np.floor(dst * scale).astype(np.int64), n_in - 1)
    x = jnp.take(x, jnp.asarray(src, jnp.int32), axis=axis)
  return x


def _linear(x, output_size, align_corners, scales):
  """Separable linear interpolation with torch's source indices and weights, one spatial axis at a time."""
  for axis, (n_in, n_out, factor) in enumerate(_resize_geometry(x, output_size, scales), start=2):
    scale = _scale(n_in, n_out, factor, align_corners)
    dst = np.arange(n_out, dtype=np.float32)
    src = dst * scale if align_corners else np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), 0)
    lo = np.minimum(src.astype(np.int64), n_in - 1)
    hi = lo + (lo < n_in - 1)
    w_hi = (src - lo).astype(np.float32)
    shape = (n_out,) + (1,) * (x.ndim - axis - 1)
    x = (jnp.take(x, jnp.asarray(lo, jnp.int32), axis=axis) * jnp.asarray((1 - w_hi).reshape(shape), x.dtype)
         + jnp.take(x, jnp.asarray(hi, jnp.int32), axis=axis) * jnp.asarray(w_hi.reshape(shape), x.dtype))
  return x


for _nd in (1, 2, 3):
  register(f"aten.upsample_nearest{_nd}d.vec")(lambda x, output_size, scale_factors: _nearest(
      x, output_size, scale_factors, exact=False))
  register(f"aten._upsample_nearest_exact{_nd}d.vec")(lambda x, output_size, scale_factors: _nearest(
      x, output_size, scale_factors, exact=True))
  register(f"aten.upsample_nearest{_nd}d.default")(lambda x, output_size, *scales: _nearest(
      x, output_size, list(scales), exact=False))
  register(f"aten._upsample_nearest_exact{_nd}d.default")(lambda x, output_size, *scales: _nearest(
      x, output_size, list(scales), exact=True))
register("aten.upsample_linear1d.vec", "aten.upsample_bilinear2d.vec", "aten.upsample_trilinear3d.vec")(
    lambda x, output_size, align_corners, scale_factors: _linear(x, output_size, align_corners, scale_factors))
register("aten.upsample_linear1d.default", "aten.upsample_bilinear2d.default", "aten.upsample_trilinear3d.default")(
    lambda x, output_size, align_corners, *scales: _linear(
        x, output_size, align_corners, list(scales)))
