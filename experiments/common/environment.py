"""The environment a run records beside its numbers: JAX, backend, device, host."""

from __future__ import annotations

import os
import platform

import jax


def environment() -> dict:
  """JAX version, backend, device and host, recorded with every run."""
  # jsma_jax.models imports flax: only a run that records its environment pays for it
  from jsma_jax.models.checkpoint import cpu_model

  dev = jax.devices()[0]
  return {"jax": jax.__version__, "backend": jax.default_backend(), "device": str(dev),
          "device_kind": getattr(dev, "device_kind", ""), "device_count": jax.device_count(),
          "python": platform.python_version(), "platform": platform.platform(),
          "cpu_count": os.cpu_count(), "processor": cpu_model()}
