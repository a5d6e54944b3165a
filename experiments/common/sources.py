"""The one seeded choice of sources: the first ``n`` of a seeded permutation of a set.

Every study draws its sources here, so that the reproduction study's rows, the zoo and the
factorial zoo attack the same images of a set for the same seed, and a smaller run's
sources are a prefix of a larger one's (stage files are reused when ``n`` grows).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")  # the sets, in the order that numbers their permutations


def seeded_sources(n_available: int, n: int, seed: int, stream: int) -> np.ndarray:
  """The first ``n`` indices of the permutation of ``range(n_available)`` seeded by
  ``[seed, stream]`` (``stream``: the set's index in :data:`SPLITS`)."""
  return np.random.default_rng([seed, stream]).permutation(n_available)[:n]
