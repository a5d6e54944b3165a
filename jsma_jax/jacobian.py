"""The forward derivative: the Jacobian of a classifier's outputs w.r.t. its input.

Papernot et al. (EuroS&P 2016), Section III-A. All modes live here:

* ``"jacfwd"``: one JVP per input feature (``M`` passes), the forward derivative
  as the paper computes it; run ``jvp_chunk`` tangents at a time (default
  :data:`JVP_CHUNK`), so memory grows with the chunk, not with ``M``;
* ``"jacrev"``: ``jax.jacrev``, one VJP per output class (``N`` passes);
* ``"reduced"``: one forward pass and one VJP per *row the saliency rule needs*
  (two for the targeted map: the target class and the sum of the others);
* ``"auto"``: the cheapest exact mode for the shapes at hand, see
  :func:`resolve_mode`.

Each mode returns the same rows up to floating-point rounding.

JSMA-Z (the paper's MNIST choice, default) differentiates the logits; JSMA-F
(``probabilities=True``) differentiates the softmax probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jsma_jax import _validate

Array = jax.Array

MODES = ("auto", "jacfwd", "jacrev", "reduced")
# jacfwd tangents per pass: B * JVP_CHUNK tangents' activations live at once. LeNet, batch 256, 2-core CPU:
# chunk 8 and chunk 1 cost the same (730 vs 695 ms per example), 579 vs 119 MB; 8 leaves wider ops to a GPU.
JVP_CHUNK = 8


def resolve_mode(mode: str, num_features: int, num_classes: int, num_rows: int) -> str:
  """The concrete Jacobian mode ``"auto"`` stands for.

  Cost in passes through the network: ``jacfwd`` needs ``M`` JVPs, ``jacrev``
  ``N`` VJPs and ``reduced`` one forward pass plus ``R`` VJPs (``R = 2`` for the
  targeted map). ``"auto"`` picks ``reduced`` when ``R <= N``, ``jacrev`` when a
  rule needs more rows than there are classes, and ``jacfwd`` only when
  ``M < min(R, N)``. Measured on the paper's LeNet (M = 784, N = 10, R = 2) at
  batch 256 on a 2-core CPU, per example and iteration
  (``benchmarks/results/per_iteration_cpu.json``, a loaded machine): reduced
  1.5 ms, jacrev 5.7 ms, jacfwd (chunk 8) 730 ms, about 490x reduced.

  Args:
    mode: one of :data:`MODES`.
    num_features: ``M``, features per example.
    num_classes: ``N``, the model's outputs.
    num_rows: ``R``, Jacobian rows the saliency rule needs.

  Returns:
    ``"jacfwd"``, ``"jacrev"`` or ``"reduced"``.

  Example:
    >>> resolve_mode("auto", 784, 10, 2), resolve_mode("auto", 784, 10, 20)
    ('reduced', 'jacrev')
  """
  _validate.check_choice("jacobian", mode, MODES)
  if mode != "auto":
    return mode
  if num_features < min(num_rows, num_classes):
    return "jacfwd"
  return "reduced" if num_rows <= num_classes else "jacrev"


def output_fn(
    logits_fn: Callable[..., Array], params: Any, *, has_params: bool, probabilities: bool
) -> Callable[[Array], Array]:
  """The batched function to differentiate: logits, or softmax of the logits."""

  def f(x):
    z = logits_fn(params, x) if has_params else logits_fn(x)
    return jax.nn.softmax(z, axis=-1) if probabilities else z

  return f


def _single(f: Callable[[Array], Array], shape: tuple[int, ...]) -> Callable[[Array], Array]:
  """One flat example ``[M] -> [N]`` from a batched function ``[B, *shape] -> [B, N]``."""
  return lambda v: f(v.reshape((1,) + shape))[0]


def check_chunk(jvp_chunk: Any) -> int:
  """``jvp_chunk`` as a positive int, or a ``ValueError`` naming it."""
  _validate.check_count("jvp_chunk", jvp_chunk, minimum=1, optional=False, what=" (tangents per forward pass)")
  return jvp_chunk


def jacfwd_chunked(f: Callable[[Array], Array], x: Array, chunk: int = JVP_CHUNK) -> tuple[Array, Array]:
  """``(f(x) [N], J [N, M])`` by forward mode, ``chunk`` JVPs at a time.

  ``jax.linearize`` runs the forward pass once; a ``lax.map`` over the
  ``ceil(M / chunk)`` blocks of the identity then pushes ``chunk`` basis
  tangents at a time through the linearised network (``vmap``), built inside
  the loop, so at most ``chunk`` tangents (and their activations) exist at
  once. ``M`` is padded to a multiple of ``chunk`` with zero tangents. Equal to
  ``jax.jacfwd(f)(x)`` up to rounding.
  """
  m = x.shape[0]
  chunk = min(check_chunk(chunk), m)
  blocks = -(-m // chunk)
  outputs, push = jax.linearize(f, x)

  def block(start):
    basis = jax.nn.one_hot(start + jnp.arange(chunk), m, dtype=x.dtype)  # [chunk, M]; rows >= M are 0
    return jax.vmap(push)(basis)  # [chunk, N]

  columns = lax.map(block, jnp.arange(blocks) * chunk)  # [blocks, chunk, N]
  return outputs, columns.reshape(blocks * chunk, -1)[:m].T


def rows_one(
    f: Callable[[Array], Array],
    x: Array,
    cotangents: Callable[[Array], Array],
    mode: str,
    *,
    jvp_chunk: int = JVP_CHUNK,
) -> tuple[Array, Array]:
  """Outputs and chosen Jacobian rows for one example.

  Args:
    f: ``[M] -> [N]`` function of one flat example.
    x: ``[M]`` the example.
    cotangents: maps the outputs ``[N]`` to weights ``W`` ``[R, N]``; the rows
      returned are ``W @ J``.
    mode: ``"jacfwd"``, ``"jacrev"`` or ``"reduced"`` (already resolved).
    jvp_chunk: ``jacfwd`` only: tangents per forward pass (memory grows with it).

  Returns:
    ``(outputs [N], rows [R, M])``.
  """
  if mode == "reduced":
    outputs, vjp = jax.vjp(f, x)
    weights = lax.stop_gradient(cotangents(outputs))
    (rows,) = jax.vmap(vjp)(weights.astype(outputs.dtype))
    return outputs, rows
  if mode == "jacfwd":
    outputs, full = jacfwd_chunked(f, x, jvp_chunk)
  else:
    def with_aux(v):
      y = f(v)
      return y, y

    full, outputs = jax.jacrev(with_aux, has_aux=True)(x)
  weights = lax.stop_gradient(cotangents(outputs)).astype(full.dtype)
  rows = jnp.einsum("rn,nm->rm", weights, full, precision=lax.Precision.HIGHEST)
  return outputs, rows


def forward_derivative(
    logits_fn: Callable[..., Array],
    x: Array,
    *,
    params: Any = None,
    mode: str = "jacrev",
    probabilities: bool = False,
    jvp_chunk: int = JVP_CHUNK,
) -> tuple[Array, Array]:
  """The full forward derivative ``J[j, i] = dF_j / dx_i`` of a batch.

  Args:
    logits_fn: ``[B, *shape] -> [B, N]``; called as ``logits_fn(params, x)``
      when ``params`` is given, else ``logits_fn(x)``.
    x: ``[B, *shape]`` float inputs.
    params: optional model parameters (a pytree).
    mode: ``"jacfwd"``, ``"jacrev"`` or ``"reduced"`` (all ``N`` rows via VJPs).
    probabilities: differentiate the softmax (JSMA-F) instead of the logits.
    jvp_chunk: ``jacfwd`` only: tangents per forward pass (see :func:`jacfwd_chunked`).

  Returns:
    ``(outputs [B, N], jacobian [B, N, *shape])``.

  Example:
    A linear model's Jacobian is its weights, at every input:

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> z, J = forward_derivative(f, jnp.ones((3, 4)))
    >>> z.shape, J.shape
    ((3, 2), (3, 2, 4))
    >>> bool(jnp.allclose(J, w.T)), bool(jnp.allclose(forward_derivative(f, jnp.ones((3, 4)), mode="jacfwd")[1], J))
    (True, True)
  """
  _validate.check_choice("mode", mode, ("jacfwd", "jacrev", "reduced"))
  x = jnp.asarray(x)
  shape = x.shape[1:]
  f = _single(
      output_fn(logits_fn, params, has_params=params is not None, probabilities=probabilities),
      shape,
  )
  identity = lambda out: jnp.eye(out.shape[0], dtype=out.dtype)
  one = lambda v: rows_one(f, v, identity, mode, jvp_chunk=jvp_chunk)
  outputs, rows = jax.vmap(one)(x.reshape(x.shape[0], -1))
  return outputs, rows.reshape(rows.shape[:2] + shape)


def target_rows(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    mode: str = "reduced",
    probabilities: bool = False,
    jvp_chunk: int = JVP_CHUNK,
) -> tuple[Array, Array, Array]:
  """The two rows the targeted saliency maps need, ``a = dF_t/dx`` and ``b``.

  ``b = sum_{j != t} dF_j/dx`` (Eq. 8). With ``mode="reduced"`` this costs one
  forward pass and two VJPs per example.

  Args:
    logits_fn: ``[B, *shape] -> [B, N]``; called as ``logits_fn(params, x)``
      when ``params`` is given, else ``logits_fn(x)``.
    x: ``[B, *shape]`` float inputs.
    targets: ``[B]`` int target classes.
    params: optional model parameters (a pytree).
    mode: ``"reduced"`` (default), ``"jacrev"`` or ``"jacfwd"``: the same rows.
    probabilities: differentiate the softmax (JSMA-F) instead of the logits.
    jvp_chunk: ``jacfwd`` only: tangents per forward pass.

  Returns:
    ``(outputs [B, N], a [B, *shape], b [B, *shape])``.

  Example:
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> z, a, b = target_rows(f, jnp.zeros((1, 4)), jnp.array([1]))
    >>> a.tolist(), b.tolist()  # column 1 of w, and column 0 (the only other class)
    ([[-1.0, 1.0, 0.0, 0.5]], [[1.0, -1.0, 0.5, 0.0]])
  """
  from jsma_jax.rules import jsma_rule  # local: rules imports nothing from here

  x = jnp.asarray(x)
  shape = x.shape[1:]
  f = _single(
      output_fn(logits_fn, params, has_params=params is not None, probabilities=probabilities),
      shape,
  )
  rule = jsma_rule()

  def one(v, t):
    outputs, rows = rows_one(f, v, lambda out: rule.cotangents(out, t), mode, jvp_chunk=jvp_chunk)
    return outputs, rows[0], rows[1]  # the paper's rule: a = dF_t/dx, b = sum of the others

  outputs, a, b = jax.vmap(one)(x.reshape(x.shape[0], -1), jnp.asarray(targets))
  return outputs, a.reshape(x.shape), b.reshape(x.shape)
