"""Loop-friendly models: a jaxpr rewrite that keeps a model fast inside ``lax.while_loop``.

JSMA differentiates the user's model once per iteration inside one ``lax.while_loop``.
On XLA:CPU two derivatives fall onto slow kernels there (``benchmarks/RESULTS.md``
has the measurements): the input gradient of ``lax.conv_general_dilated`` (the transposed
convolution keeps an ``01oi`` kernel layout that the fast path does not take; LeNet's
second convolution at batch 256: 323 ms per VJP in the loop, 50 ms outside one) and
``select_and_scatter_add``, the gradient of a max-pool. Whatever the model's authors
wrote (``nnx.Conv``, ``flax.linen``, raw ``lax`` in NCHW), :func:`loop_friendly` traces
it to a jaxpr and evaluates that jaxpr with mathematically identical, loop-friendly
implementations of these primitives:

* ``conv_general_dilated`` -> shifted (strided) slices and one ``dot_general`` (im2col),
  for any dimension numbers, strides, explicit padding (also asymmetric or negative),
  lhs/rhs dilation and feature groups; the conv's ``precision`` and
  ``preferred_element_type`` go to the ``dot_general`` unchanged. Its derivative is made
  of pads, adds and a matmul, fast in and out of loops. ``batch_group_count != 1`` and
  empty outputs are left untouched.
* ``reduce_window_max`` (max-pool) -> the windows stacked on a new axis (by a reshape
  when they do not overlap, else as strided slices; a reshape's transpose fuses with
  the convolution gradient's pads on XLA:CPU, strided slices' did not); the value
  is the entry at the *first* maximum of each window in row-major window order
  (``argmax``) plus zeros, so the gradient goes to that one entry, as XLA's
  ``select_and_scatter``, ``nnx.max_pool`` and PyTorch's ``max_pool2d`` do. This matters
  on MNIST, whose blank background makes every window a tie. Padding and base dilation
  holes are ``-inf``, as in XLA. Floating dtypes only.
* ``reduce_window_sum`` (average pools) is left alone: its VJP (pad + ``reduce_window``)
  measured fast in the loop, and a sum of strided slices was slower (3x3 SAME window,
  batch 256 x 16 x 16 x 32, in a ``fori_loop``: 48-63 ms per VJP pair as is, 107-137 ms as
  slices; 2x2 non-overlapping: 4.0-4.1 ms as is, 4.7-7.4 ms as slices).

Measured (``benchmarks/bench_attacks.py``, 270 MNIST attacks, quiet 2-core CPU,
``benchmarks/RESULTS.md``): the rewrite made a plain NNX LeNet 10.3x faster (163 attacks/s,
1.7x the hand-written im2col LeNet of the same weights), a raw-lax NCHW LeNet 6.3x (115
attacks/s), a CIFAR-sized CNN with strided SAME convolutions, BatchNorm and average
pooling 3.5x; ``x_adv`` identical to the rewrite-off run on every attack.

Sub-jaxprs are rewritten recursively: nested ``jit`` and ``closed_call`` are inlined,
``checkpoint`` (remat) is re-wrapped around the rewritten body with its policy.
``custom_jvp_call`` / ``custom_vjp_call`` pass through unchanged: their user-written
derivative rule defines the derivative, and the rule is a traced Python function the
rewrite cannot reach; rewriting only the primal body would change nothing the attack
differentiates. Control flow (``cond``, ``while``, ``scan``) and every other primitive
are bound as they are, so an unsupported primitive computes exactly what it did.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core
from jax.extend.core import primitives as prims


def enabled_by_default(backend: str) -> bool:
  """Whether the attack should rewrite the model on ``backend`` (``jax.default_backend()``).

  True on ``"cpu"``, where the rewrite was measured to pay (``benchmarks/user_models.py``). False on ``"gpu"``
  and ``"tpu"`` until measured there: cuDNN / the TPU convolution emitters have no known
  in-loop slowdown, and an im2col matmul could well be slower than their convolutions.
  """
  return backend == "cpu"


# ------------------------------------------------------------------------- substitutions


def _window_slices(x: jax.Array, window: Sequence[int], strides: Sequence[int],
                   dilation: Sequence[int], out: Sequence[int]) -> list[jax.Array]:
  """One strided slice ``[*out]`` of ``x`` per window offset, in row-major window order."""
  slices = []
  for offset in itertools.product(*map(range, window)):
    start = [k * d for k, d in zip(offset, dilation)]
    limit = [s + (o - 1) * st + 1 for s, o, st in zip(start, out, strides)]
    slices.append(lax.slice(x, start, limit, strides))
  return slices


def _out_size(size: int, window: int, stride: int, dilation: int) -> int:
  return (size - (window - 1) * dilation - 1) // stride + 1


def _pad(x: jax.Array, fill, config: Sequence[tuple[int, int, int]]) -> jax.Array:
  """``lax.pad``, skipped when it pads nothing (a no-op pad's transpose blocks fusion)."""
  if all(c == (0, 0, 0) for c in config):
    return x
  return lax.pad(x, np.array(fill, x.dtype), config)


def _transpose(x: jax.Array, perm: Sequence[int]) -> jax.Array:
  return x if tuple(perm) == tuple(range(x.ndim)) else lax.transpose(x, perm)


def _conv(lhs, rhs, *, window_strides, padding, lhs_dilation, rhs_dilation,
          dimension_numbers, feature_group_count, batch_group_count, precision,
          preferred_element_type, **unused):
  """``conv_general_dilated`` as im2col: slices of the padded input and one matmul."""
  del unused  # out_sharding: a single-device rewrite
  if batch_group_count != 1 or not isinstance(padding, (tuple, list)):
    return None
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  n = len(dn.lhs_spec) - 2
  x = _transpose(lhs, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # [B, *S, C]
  w = _transpose(rhs, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # [*K, Cg, O]
  pads = [(0, 0, 0)] + [(lo, hi, d - 1) for (lo, hi), d in zip(padding, lhs_dilation)]
  x = _pad(x, 0, pads + [(0, 0, 0)])
  window = w.shape[:n]
  out = [_out_size(x.shape[1 + i], window[i], window_strides[i], rhs_dilation[i])
         for i in range(n)]
  if min(out, default=1) <= 0 or x.shape[0] == 0:
    return None
  b, c, o, k = x.shape[0], x.shape[-1], w.shape[-1], math.prod(window)
  cols = _window_slices(x, (1, *window, 1), (1, *window_strides, 1),
                        (1, *rhs_dilation, 1), (b, *out, c))
  cols = cols[0] if k == 1 else lax.concatenate(cols, n + 1)  # [B, *out, K * C], (k, c) order
  g = feature_group_count
  dot = functools.partial(lax.dot_general, precision=precision,
                          preferred_element_type=preferred_element_type)
  if g == 1:
    y = dot(cols, w.reshape(k * c, o), (((n + 1,), (0,)), ((), ())))
  else:  # output feature g * (O // G) + j reads input features g * (C // G) + i
    cols = cols.reshape(b, *out, k, g, c // g)
    w = w.reshape(k, c // g, g, o // g)
    y = dot(cols, w, (((n + 1, n + 3), (0, 1)), ((n + 2,), (2,))))  # [G, B, *out, O // G]
    y = jnp.moveaxis(y, 0, -2).reshape(b, *out, o)
  perm = [0] * (n + 2)  # y is [B, *out, O]; put each axis where out_spec says
  perm[dn.out_spec[0]], perm[dn.out_spec[1]] = 0, n + 1
  for i, axis in enumerate(dn.out_spec[2:]):
    perm[axis] = 1 + i
  return _transpose(y, perm)


def _pool_windows(x, fill, window_dimensions, window_strides, padding, base_dilation,
                  window_dilation):
  """The windows of a ``reduce_window``, stacked ``[*out, K]``, or None if empty.

  Window entries come in row-major window order. Non-overlapping windows (strides equal
  to the window, no window dilation) are cut by a reshape, whose transpose fuses well on
  XLA:CPU; other windows are strided slices. Returns None if the output is empty.
  """
  if not isinstance(padding, (tuple, list)):
    return None
  x = _pad(x, fill, [(lo, hi, d - 1) for (lo, hi), d in zip(padding, base_dilation)])
  out = [_out_size(*args) for args in zip(x.shape, window_dimensions, window_strides,
                                          window_dilation)]
  if min(out, default=1) <= 0:
    return None
  if tuple(window_strides) == tuple(window_dimensions) and set(window_dilation) == {1}:
    n = x.ndim
    crop = [o * w for o, w in zip(out, window_dimensions)]
    x = x if list(x.shape) == crop else lax.slice(x, [0] * n, crop)
    x = x.reshape([v for o, w in zip(out, window_dimensions) for v in (o, w)])
    x = _transpose(x, [*range(0, 2 * n, 2), *range(1, 2 * n, 2)])
    return x.reshape(*out, -1)
  wins = _window_slices(x, window_dimensions, window_strides, window_dilation, out)
  return jnp.stack(wins, axis=-1)


def _max_pool(x, **params):
  """``reduce_window_max`` with its derivative at the first maximum of each window."""
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return None
  wins = _pool_windows(x, -np.inf, **params)  # [*out, K]
  if wins is None:
    return None
  first = jnp.argmax(wins, axis=-1)  # the first maximum (NaN counts as a maximum)
  pick = lax.broadcasted_iota(first.dtype, wins.shape, wins.ndim - 1) == first[..., None]
  return jnp.sum(jnp.where(pick, wins, jnp.zeros((), x.dtype)), axis=-1)  # exact: max + zeros


# ------------------------------------------------------------------------- interpreter


def _inline(key):
  """A rule that evaluates the eqn's ClosedJaxpr ``params[key]`` in place."""
  def rule(*args, **params):
    closed = params[key]
    return _eval(closed.jaxpr, closed.consts, args)
  return rule


def _remat(*args, jaxpr, prevent_cse, policy, **unused):
  del unused  # differentiated: set again by jax.checkpoint's own rules
  body = lambda *a: _eval(jaxpr, (), a)
  return jax.checkpoint(body, prevent_cse=prevent_cse, policy=policy)(*args)


_RULES: dict[core.Primitive, Callable[..., Any]] = {
    prims.conv_general_dilated_p: _conv,
    prims.reduce_window_max_p: _max_pool,
    prims.jit_p: _inline("jaxpr"),
    prims.closed_call_p: _inline("call_jaxpr"),
    prims.remat_p: _remat,
}


def _eval(jaxpr: core.Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
  """Evaluates ``jaxpr`` like ``jax.core.eval_jaxpr``, with the rules of ``_RULES``."""
  env: dict[core.Var, Any] = {}
  read = lambda v: v.val if isinstance(v, core.Literal) else env[v]
  env.update(zip(jaxpr.constvars, consts))
  env.update(zip(jaxpr.invars, args))
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    rule = _RULES.get(eqn.primitive)
    with eqn.ctx.manager:  # the eqn's trace-time context (e.g. compute_on, xla metadata)
      outs = None if rule is None else rule(*invals, **eqn.params)
      if outs is None:  # untouched: bound exactly as traced
        outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
    if not eqn.primitive.multiple_results:
      outs = [outs]
    for var, val in zip(eqn.outvars, outs):
      if not isinstance(var, core.DropVar):
        env[var] = val
  return [read(v) for v in jaxpr.outvars]


def eval_jaxpr_loop_friendly(closed_jaxpr: core.ClosedJaxpr, *args: Any) -> list[Any]:
  """Evaluates a ClosedJaxpr with loop-friendly convolutions and pools.

  The same function and derivative as ``jax.extend.core.jaxpr_as_fun(closed_jaxpr)(*args)``
  up to float rounding (max-pool ties to the first maximum, as XLA). Works under any
  transformation (``jit``, ``vmap``, ``vjp``, ``jvp``).

  Args:
    closed_jaxpr: e.g. from ``jax.make_jaxpr(fn)(*example_args)``.
    *args: flat arrays (or tracers), one per ``closed_jaxpr.jaxpr.invars``.

  Returns:
    The flat list of outputs, one per ``closed_jaxpr.jaxpr.outvars``.

  Example:
    >>> k = jnp.ones((3, 3, 1, 2))  # HWIO
    >>> model = lambda k, x: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID",
    ...                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    >>> x = jnp.arange(2 * 5 * 5.).reshape(2, 5, 5, 1)
    >>> closed = jax.make_jaxpr(model)(k, x)
    >>> out, = eval_jaxpr_loop_friendly(closed, k, x)
    >>> bool(jnp.allclose(out, model(k, x)))
    True
  """
  if len(args) != len(closed_jaxpr.jaxpr.invars):
    raise TypeError(f"args: expected {len(closed_jaxpr.jaxpr.invars)} flat arrays, "
                    f"got {len(args)}")
  return _eval(closed_jaxpr.jaxpr, closed_jaxpr.consts, args)


@dataclasses.dataclass(frozen=True)
class LoopFriendly:
  """``fn`` evaluated through :func:`eval_jaxpr_loop_friendly`; hashes as ``fn`` does.

  Attributes:
    fn: the wrapped function (any positional pytree arguments, pytree outputs).
  """

  fn: Callable[..., Any]

  def __call__(self, *args: Any) -> Any:
    closed, out_shape = jax.make_jaxpr(self.fn, return_shape=True)(*args)
    outs = eval_jaxpr_loop_friendly(closed, *jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def loop_friendly(fn: Callable[..., Any]) -> LoopFriendly:
  """Wraps a model so that its convolutions and pools are fast inside ``while_loop``.

  ``loop_friendly(fn)(*args)`` traces ``fn(*args)`` to a jaxpr and evaluates it with
  the substitutions of this module: same values and derivatives as ``fn`` up to float
  rounding. Wrappers of the same ``fn`` are equal and hash equal, so a ``jit`` that takes
  the wrapper as a static argument compiles once.

  Args:
    fn: a function of positional (pytree) arguments, e.g. ``apply_fn(params, x)``.

  Returns:
    A hashable callable with ``fn``'s signature.

  Example:
    >>> pool = lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    >>> fast = loop_friendly(pool)
    >>> x = jnp.zeros((1, 2, 2, 1))  # a tie: the gradient goes to the first maximum
    >>> jax.grad(lambda x: fast(x).sum())(x).reshape(-1).tolist()
    [1.0, 0.0, 0.0, 0.0]
    >>> fast == loop_friendly(pool)
    True
  """
  if not callable(fn):
    raise TypeError(f"fn must be callable, got {type(fn).__name__}")
  return fn if isinstance(fn, LoopFriendly) else LoopFriendly(fn)
