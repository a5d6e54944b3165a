"""The attack over many devices: the batch is sharded, every device attacks its part.

Each example's attack is independent, so the batch splits along its first axis
over a one-axis device mesh (``jax.sharding``); each device runs the compiled
attack (refill scheduler included) on its shard with the model's parameters
replicated, and the results come back as arrays sharded the same way. Results
equal the single-device ones example for example.

Many processes and many hosts (JAX's multi-controller runtime,
``jax.distributed.initialize()``): every process calls :func:`jsma_sharded`
with the same global arrays, each holding its own rows; the checks read only
those rows and every process raises the same error. ``docs/distributed.md``
shows what each process passes and gets back, with an example that runs on
one machine as two processes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jsma_jax import _validate, attack, batching
from jsma_jax.options import AttackOptions, EngineOptions, Plan
from jsma_jax.types import JSMAResult

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("logits_fn", "plan", "mesh"))
def _sharded(logits_fn, params, x, targets, theta, clip_min, clip_max, batch, mask, *, plan: Plan, mesh: Mesh):
  axis = mesh.axis_names[0]
  local_size = x.shape[0] // mesh.devices.size

  def local(params, x, targets, clip_min, clip_max, mask):
    # Each device attacks its shard; its examples' global indices tell padding from real examples.
    first = jax.lax.axis_index(axis) * local_size
    return attack.attack_batch(logits_fn, params, x, targets, theta, clip_min, clip_max, batch - first, plan, mask)

  spec = P(axis)
  per_example = lambda v: spec if v.shape[0] > 1 else P()  # per-example bounds and mask split with the batch
  out_specs = JSMAResult(spec, spec, spec, spec, spec, spec, spec if plan.record_trace else None,
                         rule=plan.rule.name, criterion=plan.rule.criterion)
  in_specs = (P(), spec, spec, per_example(clip_min), per_example(clip_max), per_example(mask))
  return jax.shard_map(local, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)(
      params, x, targets, clip_min, clip_max, mask
  )


def jsma_sharded(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    mesh: Mesh | None = None,
    options: AttackOptions | None = None,
    engine: EngineOptions | None = None,
    **overrides: Any,
) -> JSMAResult:
  """:func:`jsma_jax.jsma` with the batch sharded over the devices of ``mesh``.

  Args:
    logits_fn, x, targets, params, options, engine, **overrides: as for
      :func:`jsma_jax.jsma` (``slots`` is per device). ``x`` and ``targets``
      may be global arrays over several processes, sharded along the batch
      (``jax.make_array_from_process_local_data``); every process then calls
      this with the same arguments.
    mesh: a one-axis :class:`jax.sharding.Mesh`; all devices by default (of
      every process). The batch is padded (with invalid examples, dropped
      afterwards) to a multiple of the mesh size.

  Returns:
    :class:`jsma_jax.JSMAResult`, equal to the single-device result, its
    arrays sharded along the batch (``NamedSharding(mesh, P(axis))``); each
    process holds the rows of its devices (``.addressable_shards``). A batch
    that does not split evenly over the mesh comes back replicated.

  Example:
    Over every device of the machine (one CPU here works too):

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> from jax.sharding import Mesh
    >>> mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    >>> result = jsma_sharded(f, jnp.zeros((2, 4)), jnp.array([1, 1]), mesh=mesh, max_iter=2)
    >>> result.success.tolist(), result.x_adv[0].tolist()
    ([True, True], [0.0, 1.0, 0.0, 1.0])
  """
  if mesh is None:
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
  _validate.check_mesh(mesh)
  n = mesh.devices.size
  p = attack.prepare(logits_fn, x, targets, params, options, engine, overrides)
  batch = p.batch
  size = n * -(-p.x.shape[0] // n)  # the (bucketed) batch, to a multiple of the mesh
  local = size // n
  plan = p.plan._replace(slots=min(p.plan.slots, local))
  x, labels = batching.pad_batch((p.x, p.labels), size)
  lo, hi, mask = (jnp.asarray(batching.pad_batch(v, size) if v.shape[0] > 1 else v)
                  for v in (p.clip_min, p.clip_max, p.mask))
  sharding = NamedSharding(mesh, P(mesh.axis_names[0]))
  x, labels = jax.device_put(x, sharding), jax.device_put(labels, sharding)
  result = _sharded(p.logits_fn, p.params, x, labels, p.theta, lo, hi, batch, mask, plan=plan, mesh=mesh)
  if size == batch:
    return result
  # Drop the padding and keep the documented sharding: re-shard the first `batch` rows (a multiple of n when
  # it can be; else replicated, as a batch that does not split evenly cannot be sharded).
  keep = jax.tree.map(lambda v: v[:batch], result)
  target = sharding if batch % n == 0 else NamedSharding(mesh, P())
  return jax.device_put(keep, target)


def local_mesh() -> Mesh:
  """A one-axis mesh (``"batch"``) over this process's devices (``jax.local_devices()``)."""
  return Mesh(np.asarray(jax.local_devices()), ("batch",))


def jsma_local(logits_fn: Callable[..., Array], x: Array, targets: Array, **kwargs: Any) -> JSMAResult:
  """:func:`jsma_jax.jsma` over every device of this process.

  On one device this is :func:`jsma_jax.jsma`; on several (accelerators, or a CPU split
  into one XLA device per core with ``jax.config.update("jax_num_cpu_devices", n)``
  before JAX starts) it is :func:`jsma_sharded` over :func:`local_mesh`. Results are
  equal either way, example for example. On a 2-core CPU two devices ran the paper's
  reproduction row 1.21-1.29x faster than one device using both cores (``docs/performance.md``).

  Args:
    logits_fn, x, targets, **kwargs: as for :func:`jsma_jax.jsma`.

  Returns:
    :class:`jsma_jax.JSMAResult`.

  Example:
    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> jsma_local(f, jnp.zeros((2, 4)), jnp.array([1, 1]), max_iter=2).success.tolist()
    [True, True]
  """
  if jax.local_device_count() == 1:
    return attack.jsma(logits_fn, x, targets, **kwargs)
  return jsma_sharded(logits_fn, x, targets, mesh=local_mesh(), **kwargs)
