"""Slow, obviously-correct NumPy references of the JSMA family (../shared/PAPER.md section 7).

Written from each variant's definition, not from the library: plain Python
loops over features, pairs, classes and directions, float64, one example at a
time, with the crafting loop of Algorithm 2 (``reference.py`` holds the
paper's rule). Stop reasons use the codes of ``jsma_jax.StopReason``.

* ``"tjsma"`` (Combey et al. 2020): ``a_i = r_i dZ_t/dx_i``,
  ``b_i = r_i sum_{j != t} softmax(Z)_j dZ_j/dx_i``, ``r_i`` the room left in
  the direction of ``theta`` (``hi - x_i`` up, ``x_i - lo`` down).
* ``"untargeted"`` (Wiyatno and Xu 2018): the label is the source ``s``;
  admissible (increasing) when the source's derivative over the pair is
  negative and the others' positive, score ``|alpha_s| beta_others``; success
  when the prediction is no longer ``s``.
* ``"maximal"`` (Wiyatno and Xu 2018): every class ``c``, both directions;
  ``alpha`` over the pair for ``c``, ``beta`` for the rest, the two of
  opposite signs; the move goes the way ``alpha``'s sign says for ``c != s``
  and the other way for ``c == s``; a feature never moves against its last
  change nor past a bound. Candidates are visited class by class, up before
  down, pairs in increasing flat order; the first strictly best one wins.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
from reference import RefResult

SUCCESS, BUDGET_SPENT, NO_ADMISSIBLE, DOMAIN_EXHAUSTED = 1, 2, 3, 4
TARGETED = {"tjsma": True, "untargeted": False, "maximal": False}


def _softmax(z):
  e = np.exp(z - np.max(z))
  return e / e.sum()


def _pairs(m, pairwise):
  """Candidate (p, q) in increasing flat order: p < q for pairs, p == q for single features."""
  for p in range(m):
    for q in (range(p + 1, m) if pairwise else (p,)):
      yield p, q


def _over(v, p, q):
  """A term summed over the chosen features: ``v_p + v_q`` (``v_p`` for a single feature)."""
  return v[p] + v[q] if p != q else v[p]


def _choice_along_theta(a, b, domain, increase, pairwise):
  """The paper's search on one map: admissible alpha > 0, beta < 0 when increasing (mirrored)."""
  best = None
  for p, q in _pairs(len(a), pairwise):
    if not (domain[p] and domain[q]):
      continue
    alpha, beta = _over(a, p, q), _over(b, p, q)
    ok = (alpha > 0 and beta < 0) if increase else (alpha < 0 and beta > 0)
    if ok and (best is None or -alpha * beta > best[0]):
      best = (-alpha * beta, p, q, increase)
  return best


def tjsma_choice(outputs, J, target, xs, domain, last, theta, lo, hi, pairwise):
  del last
  n, m = J.shape
  probs = _softmax(outputs)
  room = [(hi[i] - xs[i]) if theta > 0 else (xs[i] - lo[i]) for i in range(m)]
  a = np.array([room[i] * J[target, i] for i in range(m)])
  b = np.zeros(m)
  for i in range(m):
    total = 0.0
    for j in range(n):
      if j != target:
        total += probs[j] * J[j, i]
    b[i] = room[i] * total
  return _choice_along_theta(a, b, domain, theta > 0, pairwise)


def untargeted_choice(outputs, J, source, xs, domain, last, theta, lo, hi, pairwise):
  del outputs, xs, last, lo, hi
  n, m = J.shape
  source_term = J[source].copy()
  others = np.zeros(m)
  for j in range(n):
    if j != source:
      others += J[j]
  best = None
  increase = theta > 0
  for p, q in _pairs(m, pairwise):
    if not (domain[p] and domain[q]):
      continue
    s, o = _over(source_term, p, q), _over(others, p, q)
    # moving up lowers the source iff s < 0 and raises the others iff o > 0 (mirrored down)
    ok = (s < 0 and o > 0) if increase else (s > 0 and o < 0)
    if ok and (best is None or -s * o > best[0]):
      best = (-s * o, p, q, increase)
  return best


def maximal_choice(outputs, J, source, xs, domain, last, theta, lo, hi, pairwise):
  del outputs, theta
  n, m = J.shape
  best = None
  for c in range(n):
    alpha_term = J[c].copy()
    beta_term = np.zeros(m)
    for j in range(n):
      if j != c:
        beta_term += J[j]
    for up in (True, False):
      allowed = [domain[i] and (xs[i] < hi[i] if up else xs[i] > lo[i]) and (last[i] >= 0 if up else last[i] <= 0)
                 for i in range(m)]
      # the move's direction is sign(alpha) for c != source, -sign(alpha) for the source
      alpha_positive = up if c != source else not up
      for p, q in _pairs(m, pairwise):
        if not (allowed[p] and allowed[q]):
          continue
        alpha, beta = _over(alpha_term, p, q), _over(beta_term, p, q)
        ok = (alpha > 0 and beta < 0) if alpha_positive else (alpha < 0 and beta > 0)
        if ok and (best is None or -alpha * beta > best[0]):
          best = (-alpha * beta, p, q, up)
  return best


CHOICES = {"tjsma": tjsma_choice, "untargeted": untargeted_choice, "maximal": maximal_choice}


def reference_family(variant, model, x, label, *, theta, gamma, clip_min=0.0, clip_max=1.0, pairwise=True,
                     initial_domain="movable", max_iter=None, mask=None) -> RefResult:
  """Run ``variant`` on one example; ``model: x_flat [M] -> (outputs [N], J [N, M])`` in float64.

  ``clip_min``, ``clip_max``: scalars or one bound per feature (x's shape);
  ``mask``: optional bool per feature, the features that may change at all.
  """
  choose = CHOICES[variant]
  x0 = np.asarray(x, np.float64).reshape(-1)
  xs = x0.copy()
  m = xs.size
  lo = [float(v) for v in np.broadcast_to(np.asarray(clip_min, np.float64), np.shape(x)).reshape(-1)]
  hi = [float(v) for v in np.broadcast_to(np.asarray(clip_max, np.float64), np.shape(x)).reshape(-1)]
  allowed = [True] * m if mask is None else [bool(v) for v in np.broadcast_to(mask, np.shape(x)).reshape(-1)]
  if max_iter is None:
    exact = Fraction(repr(float(gamma))) * m
    max_iter = math.floor(exact / 2) if pairwise else math.floor(exact)
  if initial_domain == "all":
    domain = [True] * m
  elif variant == "maximal":  # moves either way: any feature that can move at all
    domain = [bool(xs[i] < hi[i] or xs[i] > lo[i]) for i in range(m)]
  else:
    domain = [bool(xs[i] < hi[i]) if theta > 0 else bool(xs[i] > lo[i]) for i in range(m)]
  domain = [d and ok for d, ok in zip(domain, allowed)]
  last = [0] * m
  need = 2 if pairwise else 1
  iteration, trace = 0, [0]
  while True:
    outputs, J = model(xs)
    predicted = int(np.argmax(outputs))
    if (predicted == label) if TARGETED[variant] else (predicted != label):
      reason = SUCCESS
      break
    if iteration >= max_iter:
      reason = BUDGET_SPENT
      break
    if sum(domain) < need:
      reason = DOMAIN_EXHAUSTED
      break
    best = choose(outputs, J, label, xs, domain, last, theta, lo, hi, pairwise)
    if best is None:
      reason = NO_ADMISSIBLE
      break
    _, p, q, up = best
    step = abs(theta) if up else -abs(theta)
    for i in {p, q}:
      xs[i] = min(max(xs[i] + step, lo[i]), hi[i])
      last[i] = 1 if up else -1
      if (up and xs[i] >= hi[i]) or (not up and xs[i] <= lo[i]):
        domain[i] = False
    iteration += 1
    trace.append(int(np.sum(xs != x0)))
  return RefResult(
      x_adv=xs.reshape(np.shape(x)), success=reason == SUCCESS, iterations=iteration,
      n_changed=int(np.sum(xs != x0)), stop_reason=reason, predicted=predicted, trace=trace,
  )
