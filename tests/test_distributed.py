"""The sharded attack equals the single-device attack (CPU with 4 virtual devices)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import chex
    chex.set_n_cpu_devices(4)
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    assert jax.device_count() == 4, jax.devices()
    import jsma_jax, toy_models
    from jsma_jax.distributed import jsma_sharded
    params = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), toy_models.mlp_params(5, (5, 6), 5))
    x = jnp.asarray(toy_models.random_inputs(6, 10, (5, 6)), jnp.float32)   # 10: not a multiple of 4
    t = jnp.asarray(np.random.default_rng(7).integers(0, 5, size=10), jnp.int32)
    one = jsma_jax.jsma(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.4, record_trace=True, slots=2)
    many = jsma_sharded(toy_models.apply_mlp_relu, x, t, params=params, gamma=0.4, record_trace=True, slots=2)
    assert len(many.x_adv.sharding.device_set) == 4 or many.x_adv.shape[0] == 10
    for a, b in zip(one, many):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert 0 < int(one.success.sum()) < 10, one.success
    even = jsma_sharded(toy_models.apply_mlp_relu, x[:8], t[:8], params=params, gamma=0.4, slots=2)
    assert even.x_adv.sharding.spec == P("batch") and len(even.x_adv.sharding.device_set) == 4, even.x_adv.sharding
    np.testing.assert_array_equal(np.asarray(even.x_adv), np.asarray(one.x_adv)[:8])
    try:
        jsma_sharded(toy_models.apply_mlp_relu, x, t, params=params, gamma=2.0)
    except ValueError as e:
        assert "gamma" in str(e)
    else:
        raise AssertionError("no error")
    print("OK")
    """
)


def test_sharded_equals_single_device():
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  here = Path(__file__).parent
  env["PYTHONPATH"] = os.pathsep.join([str(here), str(here.parent), env.get("PYTHONPATH", "")])
  proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().endswith("OK")
