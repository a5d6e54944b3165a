"""The light install (``pip install jsma-jax``, no extras): the core imports and attacks a plain JAX model.

Run by ``.ci/run`` in a fresh virtual environment holding only the core's dependencies;
not a pytest test (it must not need pytest either).
"""

import importlib.util
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax

HEAVY = ("flax", "optax", "tensorflow_datasets", "tensorflow", "array_record", "matplotlib", "experiments")
installed = [m for m in HEAVY if importlib.util.find_spec(m) is not None]
assert not installed, f"the light install pulled {installed}"
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
assert not loaded, f"import jsma_jax imported {loaded}"


def mlp(params, x):
  """A plain JAX MLP: ``[B, 6, 6] -> [B, 4]`` logits."""
  h = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  return h @ params["w2"] + params["b2"]


k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
params = {"w1": jax.random.normal(k1, (36, 16)) / 6.0, "b1": jnp.zeros(16),
          "w2": jax.random.normal(k2, (16, 4)) / 4.0, "b2": jnp.zeros(4)}
x = jax.random.uniform(k3, (8, 6, 6))
labels = mlp(params, x).argmax(-1)
batch = jsma_jax.all_other_targets(x, labels, 4)
result = jsma_jax.jsma(mlp, batch.x, batch.targets, params=params, gamma=0.5)
success = np.asarray(result.success)
changed = np.asarray(result.x_adv != batch.x).reshape(len(success), -1).sum(1)
assert success.shape == (24,) and success.any(), success
assert (changed == np.asarray(result.n_changed)).all()
assert (np.asarray(result.x_adv) >= 0).all() and (np.asarray(result.x_adv) <= 1).all()
if hasattr(jsma_jax, "summarize"):
  print(jsma_jax.summarize(result))
print(f"light install: jsma_jax {jsma_jax.__version__} on {jax.default_backend()}, "
      f"{success.sum()}/{success.size} attacks succeeded")
