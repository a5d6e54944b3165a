"""A slow, obviously-correct NumPy reference of JSMA (Papernot et al. 2016).

Algorithm 1 (single features, Eq. 8/9), Algorithm 2 (the crafting loop) and
Algorithm 3 (pairwise search) written as plain Python loops over features and
pairs, in float64, one example at a time. It mirrors the semantics jsma-jax
pins (../shared/PAPER.md section 3); the stop reasons use the same codes as
``jsma_jax.StopReason``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

REACHED_TARGET, BUDGET_SPENT, NO_ADMISSIBLE, DOMAIN_EXHAUSTED = 1, 2, 3, 4


@dataclass
class RefResult:
  x_adv: np.ndarray
  success: bool
  iterations: int
  n_changed: int
  stop_reason: int
  predicted: int
  trace: list


def saliency_inputs(J: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
  """a = dZ_t/dx, b = sum over the other classes of dZ_j/dx (explicit loop)."""
  a = J[target].copy()
  b = np.zeros_like(a)
  for j in range(J.shape[0]):
    if j != target:
      b += J[j]
  return a, b


def admissible(alpha: float, beta: float, increase: bool) -> bool:
  return (alpha > 0 and beta < 0) if increase else (alpha < 0 and beta > 0)


def best_pair(a, b, domain, increase):
  """Algorithm 3: scan every pair p < q; keep the first strictly better one."""
  best = None
  m = len(a)
  for p in range(m):
    if not domain[p]:
      continue
    for q in range(p + 1, m):
      if not domain[q]:
        continue
      alpha, beta = a[p] + a[q], b[p] + b[q]
      if admissible(alpha, beta, increase):
        score = -alpha * beta
        if best is None or score > best[0]:
          best = (score, p, q)
  return best


def best_feature(a, b, domain, increase):
  """Algorithm 1's choice with the Eq. 8/9 map: first feature of maximal saliency."""
  best = None
  for i in range(len(a)):
    if domain[i] and admissible(a[i], b[i], increase):
      score = -a[i] * b[i]
      if best is None or score > best[0]:
        best = (score, i, i)
  return best


def reference_jsma(
    model: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    target: int,
    *,
    theta: float,
    gamma: float,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    pairwise: bool = True,
    initial_domain: str = "movable",
    max_iter: int | None = None,
    mask=None,
) -> RefResult:
  """Run the attack on one example.

  Args:
    model: ``x_flat [M] -> (outputs [N], jacobian [N, M])`` in float64.
    x: one example (any shape), values within the clip bounds.
    clip_min, clip_max: scalars or one bound per feature (x's shape).
    mask: optional bool per feature (x's shape): features outside it never change.
  """
  x0 = np.asarray(x, np.float64).reshape(-1)
  xs = x0.copy()
  m = xs.size
  lo = [float(v) for v in np.broadcast_to(np.asarray(clip_min, np.float64), np.shape(x)).reshape(-1)]
  hi = [float(v) for v in np.broadcast_to(np.asarray(clip_max, np.float64), np.shape(x)).reshape(-1)]
  allowed = [True] * m if mask is None else [bool(v) for v in np.broadcast_to(mask, np.shape(x)).reshape(-1)]
  increase = theta > 0
  if max_iter is None:
    from fractions import Fraction

    exact = Fraction(repr(float(gamma))) * m
    max_iter = math.floor(exact / 2) if pairwise else math.floor(exact)
  if initial_domain == "all":
    domain = [True] * m
  elif increase:
    domain = [bool(xs[i] < hi[i]) for i in range(m)]
  else:
    domain = [bool(xs[i] > lo[i]) for i in range(m)]
  domain = [d and ok for d, ok in zip(domain, allowed)]
  need = 2 if pairwise else 1
  iteration = 0
  trace = [0]
  while True:
    outputs, J = model(xs)
    predicted = int(np.argmax(outputs))
    a, b = saliency_inputs(J, target)
    if predicted == target:
      reason = REACHED_TARGET
      break
    if iteration >= max_iter:
      reason = BUDGET_SPENT
      break
    if sum(domain) < need:
      reason = DOMAIN_EXHAUSTED
      break
    best = (best_pair if pairwise else best_feature)(a, b, domain, increase)
    if best is None:
      reason = NO_ADMISSIBLE
      break
    _, p, q = best
    for i in {p, q}:
      xs[i] = min(max(xs[i] + theta, lo[i]), hi[i])
      if (increase and xs[i] >= hi[i]) or (not increase and xs[i] <= lo[i]):
        domain[i] = False
    iteration += 1
    trace.append(int(np.sum(xs != x0)))
  return RefResult(
      x_adv=xs.reshape(np.shape(x)),
      success=reason == REACHED_TARGET,
      iterations=iteration,
      n_changed=int(np.sum(xs != x0)),
      stop_reason=reason,
      predicted=predicted,
      trace=trace,
  )
