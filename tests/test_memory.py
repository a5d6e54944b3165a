"""Peak memory of the compiled attack grows linearly in the batch, never as B x M x M.

Reads XLA's own memory analysis of the compiled program (no run needed).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import jsma_jax


def apply_mlp(params, x):
  return jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"]) @ params["w2"]


def _temp_bytes(batch: int, m_side: int = 28) -> int:
  rng = np.random.default_rng(0)
  m = m_side * m_side
  params = {"w1": jnp.asarray(rng.normal(size=(m, 32)), jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(32, 10)), jnp.float32)}
  x = jnp.zeros((batch, m_side, m_side, 1), jnp.float32)
  t = jnp.zeros((batch,), jnp.int32)
  compiled = jsma_jax.lower(apply_mlp, x, t, params=params, theta=1.0, gamma=0.145, pad_batches=False).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_no_batch_times_pair_matrix():
  small, large = _temp_bytes(16), _temp_bytes(512)
  pair_matrix = 512 * 784 * 784 * 4  # what a materialised B x M x M float32 array would take: 1.26 GB
  assert large < pair_matrix / 50
  per_example = (large - small) / (512 - 16)
  assert per_example < 64 * 784  # a few dozen floats per feature and example, not M per feature
