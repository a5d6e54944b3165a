"""The reports' statistics and number formats: exact sign and McNemar tests, p-values, percentages."""

from __future__ import annotations

import math

import numpy as np


def sign_test_p(n_pos: int, n_neg: int) -> float:
  """Exact two-sided sign test: the binomial(n_pos + n_neg, 1/2) probability of a split at
  least as uneven as ``n_pos`` : ``n_neg``."""
  n = n_pos + n_neg
  if n == 0:
    return 1.0
  k = min(n_pos, n_neg)
  # integers throughout: 2.0 ** n overflows a float beyond n = 1023 discordant pairs; the
  # quotient is rounded once (to 0.0 below the smallest float, rendered as such)
  tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)
  return min(1.0, 2 * tail)


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
  """Exact two-sided McNemar p-value of paired successes ``a`` and ``b`` (same attacks):
  the sign test on the discordant pairs."""
  return sign_test_p(int((~a & b).sum()), int((a & ~b).sum()))


def format_p(value: float) -> str:
  """A p-value as the reports print it."""
  return "< 1e-300" if value == 0.0 else f"{value:.2g}"


def percent(v, digits: int = 2, missing: str = "-", finite_only: bool = False) -> str:
  """A share as a percentage with ``digits`` decimals; ``missing`` for None (and, with
  ``finite_only``, for a NaN or infinite float)."""
  if v is None or (finite_only and isinstance(v, float) and not np.isfinite(v)):
    return missing
  return f"{100 * v:.{digits}f}%"
