"""The adversarial distance of a model: ``A(x, t)`` without an attack.

Papernot et al. (EuroS&P 2016), Section V: ``A(x, t) = 1 - #{i : S(x, t)[i] > 0} / M``
with the single-feature map ``S`` (Eq. 8, or Eq. 9 for decreasing attacks). It
costs one forward pass and two VJPs per example (:func:`jsma_jax.target_rows`);
the arithmetic on the rows is :func:`jsma_jax.metrics.adversarial_distance`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from jsma_jax import batching, metrics
from jsma_jax import jacobian as jac_lib


def adversarial_distance_of(logits_fn: Callable[..., Any], x: Any, targets: Any, *,
                            params: Any = None, probabilities: bool = False,
                            increase: bool = True, batch_size: int = 1000) -> np.ndarray:
  """``A(x, t)`` of a model for every ``(x, t)``, ``batch_size`` examples per compiled call.

  Args:
    logits_fn, params: the model, as for :func:`jsma_jax.jsma`.
    x: ``[B, *shape]`` inputs.
    targets: ``[B]`` int target classes.
    probabilities: differentiate the softmax (JSMA-F) instead of the logits.
    increase: direction of the attack (Eq. 8 or Eq. 9).
    batch_size: examples per call; every call has this size (the last padded).

  Returns:
    ``[B]`` float64 in ``[0, 1]``; closer to 0 is easier.

  Example:
    For this linear model one feature of four is salient towards either class:

    >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
    >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
    >>> adversarial_distance_of(f, np.zeros((2, 4)), np.array([1, 0])).tolist()
    [0.75, 0.75]
  """
  x, targets = np.asarray(x), np.asarray(targets)
  out = []
  for _, n, (xb, tb) in batching.chunks((x, targets), min(batch_size, len(targets))):
    _, a, b = jac_lib.target_rows(logits_fn, xb, tb, params=params, probabilities=probabilities)
    out.append(metrics.adversarial_distance(a, b, increase=increase)[:n])
  return np.concatenate(out) if out else np.zeros(0)
