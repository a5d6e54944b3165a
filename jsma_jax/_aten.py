"""PyTorch's core ATen operators as JAX functions, for :mod:`jsma_jax.torch`; no torch import.

Each entry of :data:`OPS` takes the operator's arguments as ``torch.export`` records them
(tensors as JAX arrays, ``torch.dtype`` already turned into a NumPy dtype) and returns
what the operator returns, in torch's layout (channels first: ``N, C, *spatial``;
convolution weights ``O, I/groups, *kernel``). Every formula follows the operator's
definition in PyTorch's documentation, including the corner cases a classifier meets:
padded, strided, dilated and grouped convolutions (also transposed); max pools with
``-inf`` padding and ``ceil_mode``; average pools with ``count_include_pad``,
``ceil_mode`` and ``divisor_override``; eval-mode batch, layer and group norms.
Convolutions and pools are written with ``lax.conv_general_dilated`` and
``lax.reduce_window``, so the core's loop-friendly rewrite (:mod:`jsma_jax.rewrite`)
applies to them. An operator or argument not covered raises :class:`Unsupported`, which
the bridge turns into an error naming the layer.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


class Unsupported(NotImplementedError):
  """An operator, or an argument of one, that the bridge does not convert."""


OPS: dict[str, Callable[..., Any]] = {}
# Operators that hold only in training mode: the module must be exported in eval mode.
TRAINING_OPS = frozenset({
    "aten._native_batch_norm_legit_functional.default", "aten._native_batch_norm_legit.default",
    "aten._native_batch_norm_legit.no_stats", "aten.native_batch_norm.default",
    "aten.native_dropout.default", "aten.dropout.default", "aten.bernoulli.p", "aten.rand.default",
})
# Run-time checks torch.export records; shapes here are static, so they carry nothing.
IGNORED = frozenset({"aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
                     "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg"})


def _op(*names: str):
  def register(fn):
    for name in names:
      OPS[name] = fn
    return fn
  return register


def _tuple(value: Any, n: int) -> tuple:
  value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  return value * n if len(value) == 1 else value


def _axes(x, dim) -> tuple:
  if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
    return tuple(range(x.ndim))
  return tuple(d % x.ndim for d in _tuple(dim, 1))


# ------------------------------------------------------------------ layers


@_op("aten.convolution.default")
def convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
  """``torch.nn.functional.conv{1,2,3}d`` and ``conv_transpose{1,2,3}d`` (NC..., O I ...)."""
  nd = w.ndim - 2
  stride, padding, dilation = _tuple(stride, nd), _tuple(padding, nd), _tuple(dilation, nd)
  if not transposed:
    y = lax.conv_general_dilated(x, w, stride, [(p, p) for p in padding], rhs_dilation=dilation,
                                 feature_group_count=groups)
  else:  # the gradient of a convolution: dilate the input, flip the kernel, swap I and O per group
    out_pad = _tuple(output_padding, nd)
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
  nd = len(_tuple(kernel, 1))
  kernel = _tuple(kernel, nd)
  stride = _tuple(stride, nd) if stride not in (None, [], ()) else kernel
  padding, dilation = _tuple(padding, nd), _tuple(dilation, nd)
  lead = x.ndim - nd
  pads = [_pool_pads(n, k, s, p, d, ceil_mode)
          for n, k, s, p, d in zip(x.shape[lead:], kernel, stride, padding, dilation)]
  for axis, (_, hi) in enumerate(pads):
    if hi < 0:
      x = lax.slice_in_dim(x, 0, x.shape[lead + axis] + hi, axis=lead + axis)
  return x, lead, kernel, stride, padding, dilation, pads


@_op("aten.max_pool2d_with_indices.default", "aten.max_pool3d_with_indices.default",
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


@_op("aten.avg_pool2d.default", "aten.avg_pool3d.default", "aten.avg_pool1d.default")
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


@_op("aten._adaptive_avg_pool2d.default", "aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool1d.default")
def adaptive_avg_pool(x, output_size):
  """Adaptive average pool: windows ``[floor(i n / out), ceil((i + 1) n / out))``, per axis."""
  sizes = _tuple(output_size, 1)
  for axis, out in zip(range(x.ndim - len(sizes), x.ndim), sizes):
    x = _adaptive_axis(x, axis, out if out is not None else x.shape[axis], lambda a, ax: jnp.mean(a, axis=ax))
  return x


@_op("aten._native_batch_norm_legit_no_training.default")
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


@_op("aten.native_layer_norm.default")
def layer_norm(x, normalized_shape, weight, bias, eps):
  axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  rstd = lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True) + eps)
  y = (x - mean) * rstd
  y = y if weight is None else y * weight
  return (y if bias is None else y + bias), mean, rstd


@_op("aten.native_group_norm.default")
def group_norm(x, weight, bias, n, c, hxw, group, eps):
  del hxw
  g = x.reshape(n, group, -1)
  mean = jnp.mean(g, axis=2, keepdims=True)
  rstd = lax.rsqrt(jnp.mean(jnp.square(g - mean), axis=2, keepdims=True) + eps)
  y = ((g - mean) * rstd).reshape(x.shape)
  shape = (1, c) + (1,) * (x.ndim - 2)
  y = y if weight is None else y * weight.reshape(shape)
  return (y if bias is None else y + bias.reshape(shape)), mean[..., 0], rstd[..., 0]


# ------------------------------------------------------------------ matmuls and shapes


@_op("aten.addmm.default")
def addmm(bias, a, b, *, beta=1, alpha=1):
  product = jnp.matmul(a, b)
  product = product if alpha == 1 else alpha * product
  return product + (bias if beta == 1 else beta * bias)


OPS["aten.mm.default"] = OPS["aten.bmm.default"] = jnp.matmul


@_op("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def view(x, shape):
  return jnp.reshape(x, tuple(shape))


@_op("aten.expand.default")
def expand(x, size, *, implicit=False):
  del implicit
  size = tuple(size)
  lead = len(size) - x.ndim
  return jnp.broadcast_to(x, tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(size)))


@_op("aten.slice.Tensor")
def slice_(x, dim=0, start=None, end=None, step=1):
  index = [slice(None)] * x.ndim
  index[dim % x.ndim] = slice(start, None if end is None or end >= 2 ** 62 else end, step)
  return x[tuple(index)]


@_op("aten.constant_pad_nd.default")
def constant_pad_nd(x, pad, value=0):
  """``F.pad(x, pad)``: ``pad`` lists (before, after) from the last axis backwards; may be negative."""
  pairs = [(0, 0, 0)] * x.ndim
  for i in range(len(pad) // 2):
    pairs[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1], 0)
  return lax.pad(x, jnp.array(value, x.dtype), pairs)


OPS.update({
    "aten.permute.default": lambda x, dims: jnp.transpose(x, tuple(dims)),
    "aten.squeeze.dims": lambda x, dims: jnp.squeeze(x, tuple(d % x.ndim for d in dims if x.shape[d] == 1)),
    "aten.squeeze.dim": lambda x, dim: jnp.squeeze(x, dim) if x.shape[dim] == 1 else x,
    "aten.unsqueeze.default": lambda x, dim: jnp.expand_dims(x, dim % (x.ndim + 1)),
    "aten.cat.default": lambda xs, dim=0: jnp.concatenate(xs, axis=dim),
    "aten.select.int": lambda x, dim, index: jnp.take(x, index, axis=dim),
    "aten.clone.default": lambda x, *, memory_format=None: x,
    "aten.alias.default": lambda x: x,
    "aten.lift_fresh_copy.default": lambda x: x,
    "aten._to_copy.default": lambda x, *, dtype=None, **_: x if dtype is None else x.astype(dtype),
    "aten.full.default": lambda size, value, *, dtype=None, **_: jnp.full(tuple(size), value, dtype),
    "aten.scalar_tensor.default": lambda value, *, dtype=None, **_: jnp.asarray(value, dtype),
    "<built-in function getitem>": operator.getitem,
    # a dynamic batch: sizes are read off the (static) JAX shapes, and integer arithmetic on them
    "aten.sym_size.int": lambda x, dim: x.shape[dim],
    "aten.sym_numel.default": lambda x: x.size,
})
OPS.update({f"<built-in function {f.__name__}>": f for f in (
    operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod, operator.neg,
    operator.eq, operator.ne, operator.ge, operator.gt, operator.le, operator.lt)})


# ------------------------------------------------------------------ element-wise and reductions


def _with_alpha(fn):
  return lambda a, b, *, alpha=1: fn(a, b if alpha == 1 else alpha * b)


OPS.update({
    "aten.add.Tensor": _with_alpha(jnp.add), "aten.add.Scalar": _with_alpha(jnp.add),
    "aten.sub.Tensor": _with_alpha(jnp.subtract), "aten.sub.Scalar": _with_alpha(jnp.subtract),
    "aten.rsub.Scalar": lambda a, b, alpha=1: b - alpha * a,
    "aten.mul.Tensor": jnp.multiply, "aten.mul.Scalar": jnp.multiply,
    "aten.div.Tensor": jnp.divide, "aten.div.Scalar": jnp.divide,
    "aten.pow.Tensor_Scalar": jnp.power, "aten.pow.Tensor_Tensor": jnp.power,
    "aten.maximum.default": jnp.maximum, "aten.minimum.default": jnp.minimum,
    "aten.where.self": jnp.where,
    "aten.relu.default": jax.nn.relu, "aten.tanh.default": jnp.tanh, "aten.sigmoid.default": jax.nn.sigmoid,
    "aten.exp.default": jnp.exp, "aten.log.default": jnp.log, "aten.sqrt.default": jnp.sqrt,
    "aten.rsqrt.default": lax.rsqrt, "aten.neg.default": jnp.negative, "aten.abs.default": jnp.abs,
    "aten.reciprocal.default": jnp.reciprocal, "aten.log1p.default": jnp.log1p, "aten.expm1.default": jnp.expm1,
    "aten.sign.default": jnp.sign, "aten.sin.default": jnp.sin, "aten.cos.default": jnp.cos, "aten.erf.default": jax.scipy.special.erf,
    "aten.gt.Scalar": jnp.greater, "aten.gt.Tensor": jnp.greater, "aten.lt.Scalar": jnp.less,
    "aten.lt.Tensor": jnp.less, "aten.ge.Scalar": jnp.greater_equal, "aten.le.Scalar": jnp.less_equal,
    "aten.eq.Scalar": jnp.equal, "aten.ne.Scalar": jnp.not_equal, "aten.logical_not.default": jnp.logical_not,
    "aten.clamp.default": lambda x, lo=None, hi=None: jnp.clip(x, lo, hi),
    "aten.clamp.Tensor": lambda x, lo=None, hi=None: jnp.clip(x, lo, hi),
    "aten.hardtanh.default": lambda x, lo=-1.0, hi=1.0: jnp.clip(x, lo, hi),
    "aten.leaky_relu.default": lambda x, slope=0.01: jnp.where(x > 0, x, x * slope),
    "aten.elu.default": lambda x, alpha=1.0, scale=1.0, input_scale=1.0: scale * jnp.where(
        x > 0, x, alpha * jnp.expm1(x * input_scale)),
    "aten.gelu.default": lambda x, *, approximate="none": jax.nn.gelu(x, approximate=approximate == "tanh"),
    "aten._softmax.default": lambda x, dim, half_to_float=False: jax.nn.softmax(x, axis=dim),
    "aten._log_softmax.default": lambda x, dim, half_to_float=False: jax.nn.log_softmax(x, axis=dim),
    "aten.mean.dim": lambda x, dim, keepdim=False, *, dtype=None: jnp.mean(x, _axes(x, dim), dtype, keepdims=keepdim),
    "aten.mean.default": lambda x, *, dtype=None: jnp.mean(x, dtype=dtype),
    "aten.sum.dim_IntList": lambda x, dim, keepdim=False, *, dtype=None: jnp.sum(x, _axes(x, dim), dtype, keepdims=keepdim),
    "aten.sum.default": lambda x, *, dtype=None: jnp.sum(x, dtype=dtype),
    "aten.amax.default": lambda x, dim=(), keepdim=False: jnp.max(x, _axes(x, dim), keepdims=keepdim),
    "aten.amin.default": lambda x, dim=(), keepdim=False: jnp.min(x, _axes(x, dim), keepdims=keepdim),
})


@_op("aten.softplus.default")
def softplus(x, beta=1.0, threshold=20.0):
  """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``, as torch."""
  return jnp.where(x * beta > threshold, x, jnp.logaddexp(x * beta, 0.0) / beta)


def supported() -> list[str]:
  """The converted operators' names, sorted (for error messages and the docs)."""
  return sorted(name.removeprefix("aten.") for name in OPS if name.startswith("aten."))

