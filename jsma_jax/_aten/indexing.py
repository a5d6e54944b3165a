"""Splits, advanced indexing, gathers and scatters, ranges, arg-reductions and memory layouts.

Indices are integer arrays; where torch's result shape would depend on the data (a boolean
mask index), the operator is :class:`Unsupported`. Scatters write with ``x.at[...]``,
whose derivative JAX knows; a gather's derivative is a scatter-add, as torch's.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jsma_jax._aten._registry import OPS, Unsupported, axes_of, register

_BIG = 2 ** 62  # torch.export writes an open slice end as a huge integer


def _slice(start, end, step) -> slice:
  return slice(start, None if end is None or end >= _BIG else end, step)


# ------------------------------------------------------------------ splits


@register("aten.split_with_sizes.default", "aten.split_with_sizes_copy.default")
def split_with_sizes(x, split_sizes, dim=0):
  """``torch.split(x, [sizes], dim)``: a list of consecutive pieces along ``dim``."""
  ends = np.cumsum(split_sizes)[:-1].tolist()
  return list(jnp.split(x, ends, axis=dim))


@register("aten.split.Tensor", "aten.split_copy.Tensor")
def split(x, split_size, dim=0):
  """``torch.split(x, size, dim)`` (and ``chunk``): pieces of ``split_size``, the last one shorter."""
  n = x.shape[dim]
  return split_with_sizes(x, [min(split_size, n - i) for i in range(0, n, split_size)] or [0], dim)


@register("aten.unbind.int", "aten.unbind_copy.int")
def unbind(x, dim=0):
  """``x.unbind(dim)``: the slices along ``dim``, that axis removed."""
  return [jnp.take(x, i, axis=dim) for i in range(x.shape[dim])]


# ------------------------------------------------------------------ indexing, gathers, scatters


def _index_array(index):
  if index is None:
    return slice(None)
  if jnp.issubdtype(index.dtype, jnp.bool_):
    raise Unsupported("a boolean mask index (its result's shape depends on the data); use torch.where")
  return index


@register("aten.index.Tensor")
def index(x, indices):
  """``x[i, :, j]`` with integer index tensors (``None`` for the axes taken whole), NumPy's rules, as torch's."""
  return x[tuple(_index_array(i) for i in indices)]


@register("aten.index_put.default", "aten._unsafe_index_put.default")
def index_put(x, indices, values, accumulate=False):
  """``x[i, j] = values`` (``accumulate``: ``+=``, repeated indices add up) on a copy."""
  where = x.at[tuple(_index_array(i) for i in indices)]
  return where.add(values) if accumulate else where.set(values.astype(x.dtype) if hasattr(values, "astype") else values)


OPS["aten._unsafe_index.Tensor"] = index


@register("aten.index_select.default")
def index_select(x, dim, index):
  """``x.index_select(dim, index)``: the entries ``index`` (1-d) along ``dim``."""
  return jnp.take(x, jnp.reshape(index, (-1,)), axis=dim)


@register("aten.gather.default")
def gather(x, dim, index, sparse_grad=False):
  """``x.gather(dim, index)``: ``out[i][j] = x[index[i][j]][j]`` (for ``dim = 0``); ``index`` may be shorter."""
  del sparse_grad
  dim %= x.ndim
  x = x[tuple(slice(None) if d == dim else slice(0, index.shape[d]) for d in range(x.ndim))]
  return jnp.take_along_axis(x, index, axis=dim)


def _scatter_at(x, dim, index):
  """``x.at[...]`` at the places ``x.scatter_(dim, index, ...)`` writes: ``index`` along ``dim``, else
  its own position."""
  grids = list(jnp.indices(index.shape, sparse=True))
  grids[dim % x.ndim] = index
  return x.at[tuple(grids)]


def _cut(src, index):
  return src[tuple(slice(0, n) for n in index.shape)]


@register("aten.scatter.src")
def scatter_src(x, dim, index, src):
  return _scatter_at(x, dim, index).set(_cut(src, index).astype(x.dtype))


@register("aten.scatter.value")
def scatter_value(x, dim, index, value):
  return _scatter_at(x, dim, index).set(value)


@register("aten.scatter_add.default")
def scatter_add(x, dim, index, src):
  return _scatter_at(x, dim, index).add(_cut(src, index).astype(x.dtype))


@register("aten.scatter_reduce.two")
def scatter_reduce(x, dim, index, src, reduce, *, include_self=True):
  """``x.scatter_reduce(dim, index, src, reduce)`` for ``sum``, ``prod``, ``amax``, ``amin`` with ``include_self``."""
  ops = {"sum": "add", "prod": "multiply", "amax": "max", "amin": "min"}
  if reduce not in ops or not include_self:
    raise Unsupported(f"scatter_reduce with reduce={reduce!r}, include_self={include_self} "
                      "(converted: sum, prod, amax, amin with include_self=True)")
  return getattr(_scatter_at(x, dim, index), ops[reduce])(_cut(src, index).astype(x.dtype))


@register("aten.slice_scatter.default")
def slice_scatter(x, src, dim=0, start=None, end=None, step=1):
  """``x`` with ``x[..., start:end:step, ...] = src`` along ``dim``."""
  where = [slice(None)] * x.ndim
  where[dim % x.ndim] = _slice(start, end, step)
  return x.at[tuple(where)].set(src.astype(x.dtype))


@register("aten.select_scatter.default")
def select_scatter(x, src, dim, index):
  """``x`` with ``x.select(dim, index) = src``."""
  where = [slice(None)] * x.ndim
  where[dim % x.ndim] = index
  return x.at[tuple(where)].set(src.astype(x.dtype))


@register("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def masked_fill(x, mask, value):
  return jnp.where(mask, jnp.asarray(value, x.dtype), x)


@register("aten.copy.default")
def copy(x, src, non_blocking=False):
  """``x.copy_(src)`` as a value: ``src`` broadcast to ``x``'s shape, in ``x``'s dtype."""
  del non_blocking
  return jnp.broadcast_to(src, x.shape).astype(x.dtype)


# ------------------------------------------------------------------ arg-reductions with an index


def _extreme(x, dim, keepdim, pick):
  """``(values, indices)`` of ``torch.max(x, dim)``: the derivative goes to the returned index, as torch's."""
  dim %= max(x.ndim, 1)
  at = pick(x, axis=dim, keepdims=True)
  values = jnp.take_along_axis(x, at, axis=dim)
  return (values, at) if keepdim else (jnp.squeeze(values, dim), jnp.squeeze(at, dim))


OPS.update({
    "aten.max.dim": lambda x, dim, keepdim=False: _extreme(x, dim, keepdim, jnp.argmax),
    "aten.min.dim": lambda x, dim, keepdim=False: _extreme(x, dim, keepdim, jnp.argmin),
    "aten.max.default": jnp.max, "aten.min.default": jnp.min,
    "aten.argmax.default": lambda x, dim=None, keepdim=False: jnp.argmax(x, axis=dim, keepdims=keepdim),
    "aten.argmin.default": lambda x, dim=None, keepdim=False: jnp.argmin(x, axis=dim, keepdims=keepdim),
    "aten.any.dim": lambda x, dim, keepdim=False: jnp.any(x, axis=dim, keepdims=keepdim),
    "aten.any.dims": lambda x, dim=None, keepdim=False: jnp.any(x, axis=axes_of(x, dim), keepdims=keepdim),
    "aten.any.default": jnp.any,
    "aten.all.dim": lambda x, dim, keepdim=False: jnp.all(x, axis=dim, keepdims=keepdim),
    "aten.all.dims": lambda x, dim=None, keepdim=False: jnp.all(x, axis=axes_of(x, dim), keepdims=keepdim),
    "aten.all.default": jnp.all,
})


# ------------------------------------------------------------------ new tensors


def _float_or_int(dtype, *values):
  if dtype is not None:
    return dtype
  return jnp.float32 if any(isinstance(v, float) for v in values) else jnp.int32


@register("aten.arange.start_step", "aten.arange.start", "aten.arange.default")
def arange(*args, dtype=None, layout=None, device=None, pin_memory=None):
  """``torch.arange(start=0, end, step=1)``; an integer range unless a bound is a float or ``dtype`` says."""
  del layout, device, pin_memory
  start, end, step = (0, args[0], 1) if len(args) == 1 else (tuple(args) + (1,))[:3]
  dtype = _float_or_int(dtype, start, end, step)
  if jnp.issubdtype(dtype, jnp.floating):  # torch's length: ceil((end - start) / step), in double
    return jnp.asarray(start + step * np.arange(math.ceil((end - start) / step), dtype=np.float64), dtype)
  return jnp.arange(start, end, step, dtype=dtype)


def _creation(fill):
  def create(size, *args, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None, **_):
    value = args[0] if args else fill
    return jnp.full(tuple(size), value, dtype if dtype is not None else (
        jnp.float32 if fill is not None or isinstance(value, float) else jnp.int32))
  return create


def _like(fill):
  def like(x, *args, dtype=None, layout=None, device=None, pin_memory=None, memory_format=None):
    return jnp.full(x.shape, args[0] if fill is None else fill, x.dtype if dtype is None else dtype)
  return like


def _new(fill):
  def new(x, size, *args, dtype=None, layout=None, device=None, pin_memory=None):
    return jnp.full(tuple(size), args[0] if fill is None else fill, x.dtype if dtype is None else dtype)
  return new


OPS.update({
    "aten.zeros.default": _creation(0.0), "aten.ones.default": _creation(1.0),
    "aten.empty.memory_format": _creation(0.0),  # never read before written
    "aten.full_like.default": _like(None), "aten.zeros_like.default": _like(0), "aten.ones_like.default": _like(1),
    "aten.empty_like.default": _like(0),
    "aten.new_zeros.default": _new(0), "aten.new_ones.default": _new(1), "aten.new_full.default": _new(None),
    "aten.new_empty.default": _new(0),
    "aten.new_empty_strided.default": lambda x, size, stride, **kw: _new(0)(x, size, **kw),
    "aten.empty_strided.default": lambda size, stride, **kw: _creation(0.0)(size, **kw),
})


# ------------------------------------------------------------------ memory layouts


def _memory_order(shape: tuple, stride: tuple) -> list[int] | None:
  """The axes from outermost to innermost in memory, when ``stride`` lays ``shape`` out densely; else None."""
  order = sorted(range(len(shape)), key=lambda d: (-stride[d], d))
  expected = 1
  for d in reversed(order):
    if shape[d] != 1 and stride[d] != expected:
      return None
    expected *= shape[d]
  return order


@register("aten.as_strided.default", "aten.as_strided_copy.default")
def as_strided(x, size, stride, storage_offset=None, *, input_layout=None):
  """``torch.as_strided(x, size, stride, offset)`` read from ``x``'s memory.

  ``input_layout`` is ``(strides, storage_offset)`` of ``x`` in the traced program (the bridge
  reads it off the graph). Where that layout is dense, the memory is ``x``'s axes in stride
  order, flattened; the view reads it at the (static) flat positions. The common case, a
  view that restores ``x``'s own layout (channels-last tensors), is ``x`` itself.
  """
  if input_layout is None:
    raise Unsupported("as_strided of a tensor whose memory layout the graph does not record")
  in_stride, in_offset = tuple(input_layout[0]), input_layout[1]
  offset = 0 if storage_offset is None else storage_offset - in_offset
  size, stride = tuple(size), tuple(stride)
  order = _memory_order(tuple(x.shape), in_stride)
  if order is None:
    raise Unsupported(f"as_strided of a non-dense view (shape {list(x.shape)}, strides {list(in_stride)}); "
                      "call .contiguous() before it")
  if offset == 0 and size == tuple(x.shape) and all(a == b for n, a, b in zip(size, stride, in_stride) if n != 1):
    return x
  memory = jnp.reshape(jnp.transpose(x, order), (-1,))
  flat = np.full(size, offset, np.int64)
  for axis, (n, s) in enumerate(zip(size, stride)):
    flat = flat + (np.arange(n) * s).reshape((n,) + (1,) * (len(size) - axis - 1))
  if flat.size and (flat.min() < 0 or flat.max() >= memory.size):
    raise Unsupported(f"as_strided reads outside its input's memory (size {list(size)}, stride {list(stride)})")
  return jnp.take(memory, jnp.asarray(flat, jnp.int32))
