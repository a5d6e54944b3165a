"""Matmuls, shapes, element-wise operators and reductions."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax._aten._registry import OPS, Unsupported, axes_of, register

# ------------------------------------------------------------------ matmuls and shapes


@register("aten.addmm.default")
def addmm(bias, a, b, *, beta=1, alpha=1):
  product = jnp.matmul(a, b)
  product = product if alpha == 1 else alpha * product
  return product + (bias if beta == 1 else beta * bias)


OPS["aten.mm.default"] = OPS["aten.bmm.default"] = jnp.matmul


@register("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default")
def view(x, shape):
  return jnp.reshape(x, tuple(shape))


@register("aten.expand.default")
def expand(x, size, *, implicit=False):
  del implicit
  size = tuple(size)
  lead = len(size) - x.ndim
  return jnp.broadcast_to(x, tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(size)))


@register("aten.slice.Tensor")
def slice_(x, dim=0, start=None, end=None, step=1):
  index = [slice(None)] * x.ndim
  index[dim % x.ndim] = slice(start, None if end is None or end >= 2 ** 62 else end, step)
  return x[tuple(index)]


@register("aten.constant_pad_nd.default")
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
    "aten.sign.default": jnp.sign, "aten.sin.default": jnp.sin, "aten.cos.default": jnp.cos,
    "aten.erf.default": jax.scipy.special.erf,
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
    "aten.mean.dim": lambda x, dim, keepdim=False, *, dtype=None: jnp.mean(x, axes_of(x, dim), dtype, keepdims=keepdim),
    "aten.mean.default": lambda x, *, dtype=None: jnp.mean(x, dtype=dtype),
    "aten.sum.dim_IntList": lambda x, dim, keepdim=False, *, dtype=None: jnp.sum(x, axes_of(x, dim), dtype,
                                                                                 keepdims=keepdim),
    "aten.sum.default": lambda x, *, dtype=None: jnp.sum(x, dtype=dtype),
    "aten.amax.default": lambda x, dim=(), keepdim=False: jnp.max(x, axes_of(x, dim), keepdims=keepdim),
    "aten.amin.default": lambda x, dim=(), keepdim=False: jnp.min(x, axes_of(x, dim), keepdims=keepdim),
})


@register("aten.softplus.default")
def softplus(x, beta=1.0, threshold=20.0):
  """``log(1 + exp(beta x)) / beta``, linear where ``beta x > threshold``, as torch."""
  return jnp.where(x * beta > threshold, x, jnp.logaddexp(x * beta, 0.0) / beta)


OPS.update({
    "aten.fmod.Scalar": jnp.fmod, "aten.fmod.Tensor": jnp.fmod,  # the sign of the dividend, as C's fmod
    "aten.remainder.Scalar": jnp.remainder, "aten.remainder.Tensor": jnp.remainder,  # the divisor's sign
    "aten.floor_divide.default": jnp.floor_divide,
    "aten.floor.default": jnp.floor, "aten.ceil.default": jnp.ceil, "aten.round.default": jnp.round,
    "aten.trunc.default": jnp.trunc,
    "aten.eq.Tensor": jnp.equal, "aten.ne.Tensor": jnp.not_equal, "aten.le.Tensor": jnp.less_equal,
    "aten.ge.Tensor": jnp.greater_equal,
    "aten.logical_and.default": jnp.logical_and, "aten.logical_or.default": jnp.logical_or,
    "aten.logical_xor.default": jnp.logical_xor,
    "aten.bitwise_not.default": jnp.invert, "aten.bitwise_and.Tensor": jnp.bitwise_and,
    "aten.bitwise_or.Tensor": jnp.bitwise_or, "aten.bitwise_xor.Tensor": jnp.bitwise_xor,
    "aten.isnan.default": jnp.isnan, "aten.isinf.default": jnp.isinf,
    "aten.hardsigmoid.default": lambda x: jnp.clip(x / 6 + 0.5, 0, 1),
    "aten.hardswish.default": lambda x: x * jnp.clip(x / 6 + 0.5, 0, 1),
    "aten.silu.default": jax.nn.silu, "aten.mish.default": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
    "aten.prod.dim_int": lambda x, dim, keepdim=False, *, dtype=None: jnp.prod(x, dim, dtype, keepdims=keepdim),
    "aten.var.correction": lambda x, dim=None, *, correction=1, keepdim=False: jnp.var(
        x, axes_of(x, dim), ddof=1 if correction is None else correction, keepdims=keepdim),
    "aten.cumsum.default": lambda x, dim, *, dtype=None: jnp.cumsum(x, dim, dtype),
    "aten.tril.default": lambda x, diagonal=0: jnp.tril(x, diagonal),
    "aten.triu.default": lambda x, diagonal=0: jnp.triu(x, diagonal),
    "aten.flip.default": lambda x, dims: jnp.flip(x, tuple(dims)),
    "aten.roll.default": lambda x, shifts, dims=(): jnp.roll(x, tuple(shifts), tuple(dims) or None),
    "aten.repeat.default": lambda x, repeats: jnp.tile(x, tuple(repeats)),
    "aten.atan2.default": jnp.arctan2, "aten.tan.default": jnp.tan, "aten.atan.default": jnp.arctan,
    "aten.log2.default": jnp.log2, "aten.log10.default": jnp.log10,
    "aten.pow.Scalar": jnp.power, "aten.clamp_min.default": jnp.maximum, "aten.clamp_max.default": jnp.minimum,
})


@register("aten.linalg_vector_norm.default")
def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
  """``torch.linalg.vector_norm`` for a finite ``ord >= 1``; at a zero vector the derivative is 0, as torch's."""
  if not isinstance(ord, (int, float)) or not 1 <= ord < float("inf"):
    raise Unsupported(f"linalg_vector_norm with ord={ord} (converted: finite ord >= 1)")
  x = x if dtype is None else x.astype(dtype)
  axes = axes_of(x, dim)
  total = jnp.sum(jnp.abs(x) ** ord, axes, keepdims=True)
  safe = jnp.where(total > 0, total, 1)
  norm = jnp.where(total > 0, safe ** (1 / ord), 0)
  return norm if keepdim else jnp.squeeze(norm, axes)
