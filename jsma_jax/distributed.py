"""The attack over many devices: the batch is sharded, every device attacks its part.

Each example's attack is independent, so the batch splits along its first axis
over a one-axis device mesh (``jax.sharding``); each device runs the compiled
attack (refill scheduler included) on its shard with the model's parameters
replicated, and the results come back as arrays sharded the same way. Results
equal the single-device ones example for example.

Multi-host (``jax.distributed``): call ``jax.distributed.initialize()`` on
every host, build the global inputs with
``jax.make_array_from_process_local_data(NamedSharding(mesh, P("batch")), local)``
over ``mesh = Mesh(np.asarray(jax.devices()), ("batch",))``, and call
:func:`jsma_sharded` with that mesh on every host; each host then holds the
results of its own examples (``result.x_adv.addressable_shards``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jsma_jax import attack

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("logits_fn", "config", "mesh"))
def _sharded(logits_fn, params, x, targets, theta, clip_min, clip_max, *, config, mesh):
  axis = mesh.axis_names[0]

  def local(params, x, targets):
    return attack._jsma_compiled(logits_fn, params, x, targets, theta, clip_min, clip_max, config=config)

  spec = P(axis)
  out_specs = attack.JSMAResult(spec, spec, spec, spec, spec, spec, spec if config.record_trace else None)
  return jax.shard_map(local, mesh=mesh, in_specs=(P(), spec, spec), out_specs=out_specs, check_vma=False)(
      params, x, targets
  )


def jsma_sharded(
    logits_fn: Callable[..., Array],
    x: Array,
    targets: Array,
    *,
    params: Any = None,
    mesh: Mesh | None = None,
    **kwargs: Any,
) -> attack.JSMAResult:
  """:func:`jsma_jax.jsma` with the batch sharded over the devices of ``mesh``.

  Args:
    logits_fn, x, targets, params: as for :func:`jsma_jax.jsma`.
    mesh: a one-axis :class:`jax.sharding.Mesh`; all devices by default. The
      batch is padded (with copies of its first example, dropped afterwards) to
      a multiple of the mesh size.
    **kwargs: every keyword of :func:`jsma_jax.jsma` (``slots`` is per device).

  Returns:
    :class:`jsma_jax.JSMAResult`, equal to the single-device result.
  """
  if mesh is None:
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
  if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
    raise ValueError(f"mesh must be a jax.sharding.Mesh with one axis, got {mesh!r}")
  n = mesh.devices.size
  x, targets = attack._validate.check_inputs(x, targets)
  batch = x.shape[0]
  pad = -batch % n
  if pad:
    x = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)])
    targets = jnp.concatenate([targets, jnp.repeat(targets[:1], pad)])
  local_size = x.shape[0] // n
  # Validate everything (and derive the config) on the shard shape each device sees.
  slots = kwargs.pop("slots", None)
  config, _, _, (theta, clip_min, clip_max) = attack.make_config(
      logits_fn, params, x[:local_size], targets[:local_size], slots=slots, **_defaults(kwargs)
  )
  attack._validate.check_values(x, targets, _num_classes(logits_fn, params, x[:1]), clip_min, clip_max)
  sharding = NamedSharding(mesh, P(mesh.axis_names[0]))
  x, targets = jax.device_put(x, sharding), jax.device_put(jnp.asarray(targets, jnp.int32), sharding)
  result = _sharded(logits_fn, params, x, targets, theta, clip_min, clip_max, config=config, mesh=mesh)
  if pad:
    result = jax.tree.map(lambda v: v[:batch], result)
  return result


def _num_classes(logits_fn, params, x) -> int:
  return attack._validate.check_model(logits_fn, params, x)


def _defaults(kwargs: dict) -> dict:
  defaults = dict(
      theta=1.0, gamma=0.145, clip_min=0.0, clip_max=1.0, pairwise=True, jacobian="auto", probabilities=False,
      initial_domain="movable", max_iter=None, rule=None, record_trace=False, schedule="refill", candidates=None,
      region=None, precision="highest",
  )
  unknown = set(kwargs) - set(defaults)
  if unknown:
    raise TypeError(f"jsma_sharded got unexpected keyword arguments {sorted(unknown)}")
  return {**defaults, **kwargs}
