"""Measures of a JSMA study: success, distortion, budget sweeps, hardness, distance.

Papernot et al., *The Limitations of Deep Learning in Adversarial Settings*
(EuroS&P 2016), Section IV (success rate and distortion) and Section V (the
hardness ``H(s, t)`` of a class pair, the adversarial distance ``A(x, t)`` and
the robustness ``R(F)``).

Everything here is a pure function of arrays (NumPy in, NumPy out; JAX arrays
are accepted); nothing runs a model (:func:`jsma_jax.distance.adversarial_distance_of`
does, for ``A(x, t)``). Distortion is the share of features changed,
``L0 / M``. Per-pair matrices are ``[N, N]`` with rows the source class and
columns the target; cells with no example (the diagonal) are ``nan``.

Example:
  >>> metrics.success_rate([True, False, True, True])
  0.75
  >>> metrics.pair_matrix([1, 0, 1], [0, 0, 1], [1, 1, 0], 2).tolist()  # success per (source, target)
  [[nan, 0.5], [1.0, nan]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jsma_jax import saliency
from jsma_jax.options import changes_to_iterations
from jsma_jax.types import StopReason

# ----------------------------------------------------------------- success and L0


def success_rate(success: Any) -> float:
  """Share of successful attacks, ``mean(success)``; ``nan`` for no attack.

  Example:
    >>> success_rate([True, False]), success_rate([])
    (0.5, nan)
  """
  success = np.asarray(success, bool)
  return float(success.mean()) if success.size else float("nan")


def mean_distortion(n_changed: Any, num_features: int, success: Any | None = None) -> float:
  """Mean share of features changed, ``mean(L0) / M``.

  Args:
    n_changed: ``[B]`` int, features changed per attack (``JSMAResult.n_changed``).
    num_features: ``M``.
    success: optional ``[B]`` bool: average over the successful attacks only
      (the paper's figure, 4.02% on MNIST); over all attacks when ``None``.

  Returns:
    a float in ``[0, 1]``; ``nan`` when nothing is averaged.

  Example:
    >>> round(mean_distortion([2, 4, 100], 784, success=[True, True, False]) * 784, 6)  # 3 / 784
    3.0
    >>> mean_distortion([2, 4, 100], 100)  # over all attacks
    0.35333333333333333
  """
  n_changed = np.asarray(n_changed, np.float64)
  if success is not None:
    n_changed = n_changed[np.asarray(success, bool)]
  return float(n_changed.mean() / num_features) if n_changed.size else float("nan")


def summary(success: Any, n_changed: Any, num_features: int) -> dict[str, float]:
  """The paper's table row: count, success rate, distortion over successful and all.

  Returns:
    a dict of ``n``, ``n_success`` (ints), ``success_rate``,
    ``distortion_successful`` and ``distortion_all`` (floats).

  Example:
    >>> summary([True, False], [2, 4], 4)
    {'n': 2, 'n_success': 1, 'success_rate': 0.5, 'distortion_successful': 0.5, 'distortion_all': 0.75}
  """
  success = np.asarray(success, bool)
  return {
      "n": int(success.size),
      "n_success": int(success.sum()),
      "success_rate": success_rate(success),
      "distortion_successful": mean_distortion(n_changed, num_features, success),
      "distortion_all": mean_distortion(n_changed, num_features),
  }


class Summary(NamedTuple):
  """A result in a few numbers (:func:`summarize`); ``str()`` prints it as a short report.

  Example:
    >>> s = summarize(jsma_jax.JSMAResult(x_adv=np.zeros((2, 4)), success=np.array([True, False]),
    ...     iterations=np.array([1, 2]), n_changed=np.array([2, 4]), stop_reason=np.array([1, 2]),
    ...     predicted=np.array([1, 0])))
    >>> s.n, s.n_success, s.success_rate, s.mean_l0_successful, s.stop_reasons
    (2, 1, 0.5, 2.0, {'SUCCESS': 1, 'BUDGET_SPENT': 1})
  """

  n: int  # attacks
  n_success: int
  success_rate: float
  mean_l0_successful: float  # features changed, over the successful attacks (nan when none)
  mean_l0_all: float
  distortion_successful: float  # mean_l0_successful / M (the paper's figure)
  distortion_all: float
  mean_iterations: float
  stop_reasons: dict  # StopReason name -> count, every reason that occurs
  criterion: str  # what success means

  def __str__(self) -> str:
    reasons = ", ".join(f"{name} {count}" for name, count in self.stop_reasons.items())
    return (
        f"{self.n_success}/{self.n} attacks succeeded ({self.success_rate:.2%}; success: {self.criterion})\n"
        f"L0 over successful: {self.mean_l0_successful:.2f} features ({self.distortion_successful:.2%}); "
        f"over all: {self.mean_l0_all:.2f} ({self.distortion_all:.2%})\n"
        f"iterations: {self.mean_iterations:.2f} on average; stop reasons: {reasons}"
    )


def summarize(result: Any) -> Summary:
  """Success rate, L0 over successful and over all attacks, and the count of each stop reason.

  Args:
    result: a :class:`jsma_jax.JSMAResult` (JAX or NumPy arrays).

  Returns:
    :class:`Summary`.

  Example:
    A result of two attacks on 4 features, the first successful in one pair step:

    >>> result = jsma_jax.JSMAResult(x_adv=np.zeros((2, 4)), success=np.array([True, False]),
    ...     iterations=np.array([1, 2]), n_changed=np.array([2, 4]), stop_reason=np.array([1, 2]),
    ...     predicted=np.array([1, 0]))
    >>> print(summarize(result))
    1/2 attacks succeeded (50.00%; success: argmax == target)
    L0 over successful: 2.00 features (50.00%); over all: 3.00 (75.00%)
    iterations: 1.50 on average; stop reasons: SUCCESS 1, BUDGET_SPENT 1
  """
  success = np.asarray(result.success, bool)
  n_changed = np.asarray(result.n_changed, np.float64)
  reasons = np.asarray(result.stop_reason)
  num_features = int(np.prod(np.shape(result.x_adv)[1:]))
  mean = lambda v: float(v.mean()) if v.size else float("nan")
  counts = {r.name: int(np.sum(reasons == r.value)) for r in StopReason if r.name != "REACHED_TARGET"}
  return Summary(
      n=int(success.size),
      n_success=int(success.sum()),
      success_rate=success_rate(success),
      mean_l0_successful=mean(n_changed[success]),
      mean_l0_all=mean(n_changed),
      distortion_successful=mean_distortion(n_changed, num_features, success),
      distortion_all=mean_distortion(n_changed, num_features),
      mean_iterations=mean(np.asarray(result.iterations, np.float64)),
      stop_reasons={name: c for name, c in counts.items() if c},
      criterion=getattr(result, "criterion", "argmax == target"),
  )


# ------------------------------------------------------------------ budget sweep


class Sweep(NamedTuple):
  """Outcome of every attack at every budget of a grid (:func:`budget_sweep`).

  Example:
    >>> Sweep._fields
    ('max_iter', 'success', 'n_changed')
  """

  max_iter: np.ndarray  # [K] int, iteration budget k
  success: np.ndarray  # [K, B] bool, reached the target within max_iter[k]
  n_changed: np.ndarray  # [K, B] int, L0 after min(max_iter[k], stop) iterations


def budget_sweep(success: Any, iterations: Any, trace: Any, max_iters: Any) -> Sweep:
  """Results at every smaller budget from ONE run at the largest budget.

  The attack is deterministic and greedy and no choice depends on the budget,
  so the run with budget ``k`` is the run with the largest budget stopped after
  ``k`` iterations: it succeeds iff the large run succeeded within ``k``
  iterations, and its distortion is the large run's L0 after ``min(k, stop)``
  iterations (``trace[:, k]``, which stays constant after the stop).

  Args:
    success: ``[B]`` bool of the run at the largest budget.
    iterations: ``[B]`` int, iterations that run applied.
    trace: ``[B, T]`` int, L0 after k iterations (``jsma(..., record_trace=True)``).
    max_iters: ``[K]`` int budgets, each ``< T``.

  Returns:
    :class:`Sweep` (``max_iter [K]``, ``success [K, B]``, ``n_changed [K, B]``).

  Example:
    Two attacks run with budget 3: the first succeeded after 2 iterations:

    >>> trace = np.array([[0, 2, 4, 4], [0, 2, 4, 6]])  # L0 after k = 0..3 iterations
    >>> sweep = budget_sweep([True, False], [2, 3], trace, [1, 2, 3])
    >>> sweep.success.tolist(), sweep.n_changed.tolist()
    ([[False, False], [True, False], [True, False]], [[2, 2], [4, 4], [4, 6]])
  """
  success = np.asarray(success, bool)
  iterations = np.asarray(iterations)
  trace = np.asarray(trace)
  max_iters = np.asarray(max_iters, np.int64).reshape(-1)
  if trace.ndim != 2 or trace.shape[0] != success.shape[0]:
    raise ValueError(f"trace must be [B, T] with B = {success.shape[0]}, got shape {trace.shape}")
  if max_iters.size and (max_iters.min() < 0 or max_iters.max() >= trace.shape[1]):
    raise ValueError(f"max_iters must lie in [0, {trace.shape[1] - 1}], got {max_iters.tolist()}")
  ok = success[None, :] & (iterations[None, :] <= max_iters[:, None])
  return Sweep(max_iters, ok, trace[:, max_iters].T)


def pixels_to_iterations(pixels: Any, *, pairwise: bool = True) -> np.ndarray:
  """Budgets in changed features to iterations: ``pixels // 2`` for pairs.

  Example:
    >>> pixels_to_iterations([2, 11, 112]).tolist(), pixels_to_iterations([11], pairwise=False).tolist()
    ([1, 5, 56], [11])
  """
  return changes_to_iterations(np.asarray(pixels, np.int64), pairwise=pairwise)


# ------------------------------------------------------------- per-pair matrices


def pair_matrix(values: Any, sources: Any, targets: Any, num_classes: int, *,
                reduce: str = "mean") -> np.ndarray:
  """Reduce per-attack ``values`` over each (source, target) class pair.

  Args:
    values: ``[B]`` numbers (bools count as 0/1).
    sources, targets: ``[B]`` int classes.
    num_classes: ``N``.
    reduce: ``"mean"``, ``"sum"`` or ``"count"``.

  Returns:
    ``[N, N]`` float64, rows the source; ``nan`` (``0`` for sum/count) where
    a pair has no attack.

  Example:
    >>> pair_matrix([1, 0, 1], [0, 0, 1], [1, 1, 0], 2, reduce="count").tolist()
    [[0.0, 2.0], [1.0, 0.0]]
  """
  if reduce not in ("mean", "sum", "count"):
    raise ValueError(f"reduce must be 'mean', 'sum' or 'count', got {reduce!r}")
  values = np.asarray(values, np.float64)
  flat = np.asarray(sources, np.int64) * num_classes + np.asarray(targets, np.int64)
  count = np.bincount(flat, minlength=num_classes**2).astype(np.float64)
  if reduce == "count":
    return count.reshape(num_classes, num_classes)
  total = np.bincount(flat, weights=values, minlength=num_classes**2)
  if reduce == "sum":
    return total.reshape(num_classes, num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).reshape(num_classes, num_classes)


def pair_success_distortion(success: Any, n_changed: Any, sources: Any, targets: Any,
                            num_classes: int, num_features: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-pair success rate ``tau`` and mean distortion of successful attacks ``eps``.

  Args:
    success: ``[B]`` bool.
    n_changed: ``[B]`` int, features changed (L0).
    sources, targets: ``[B]`` int classes.
    num_classes: ``N``.
    num_features: ``M``.

  Returns:
    ``(tau, eps)``, each ``[N, N]``; ``eps`` is ``nan`` where a pair has no success.

  Example:
    >>> tau, eps = pair_success_distortion([True, False, True], [2, 8, 4], [0, 0, 1], [1, 1, 0], 2, 4)
    >>> tau.tolist(), eps.tolist()
    ([[nan, 0.5], [1.0, nan]], [[nan, 0.5], [1.0, nan]])
  """
  success = np.asarray(success, bool)
  tau = pair_matrix(success, sources, targets, num_classes)
  l0 = np.where(success, np.asarray(n_changed, np.float64), 0.0)
  total = pair_matrix(l0, sources, targets, num_classes, reduce="sum")
  wins = pair_matrix(success, sources, targets, num_classes, reduce="sum")
  with np.errstate(invalid="ignore", divide="ignore"):
    eps = np.where(wins > 0, total / np.maximum(wins, 1) / num_features, np.nan)
  return tau, eps


# --------------------------------------------------------------------- hardness


def hardness(tau: Any, eps: Any) -> np.ndarray:
  """Hardness ``H = integral of eps d tau`` by the trapezoid rule over the budgets.

  ``tau[..., k]`` and ``eps[..., k]`` are the success rate and the mean
  distortion of successful attacks at budget ``k`` (budgets ascending, last
  axis). A budget with no success has no distortion; it counts as ``eps = 0``,
  the point ``(0, 0)`` where every curve starts. Larger is harder.

  Returns:
    ``tau.shape[:-1]`` float64.

  Example:
    >>> round(float(hardness([0.5, 1.0], [0.02, 0.04])), 6)  # 0.5 * (0.02 + 0.04) / 2
    0.015
  """
  tau = np.asarray(tau, np.float64)
  eps = np.nan_to_num(np.asarray(eps, np.float64), nan=0.0)
  return np.sum(np.diff(tau, axis=-1) * (eps[..., 1:] + eps[..., :-1]) / 2, axis=-1)


def hardness_matrix(sweep: Sweep, sources: Any, targets: Any, num_classes: int,
                    num_features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``H(s, t)`` for every class pair from a :class:`Sweep` (the paper's Section V).

  Args:
    sweep: the :class:`Sweep` of the attacks (``K`` budgets ascending).
    sources, targets: ``[B]`` int classes.
    num_classes: ``N``.
    num_features: ``M``.

  Returns:
    ``(H [N, N], tau [N, N, K], eps [N, N, K])``; ``H`` is ``nan`` off the pairs
    that have attacks (the diagonal).

  Example:
    >>> trace = np.array([[0, 2, 4], [0, 2, 2]])  # two attacks, 0 -> 1 and 1 -> 0
    >>> sweep = budget_sweep([True, True], [2, 1], trace, [0, 1, 2])  # budgets from 0
    >>> h, tau, eps = hardness_matrix(sweep, [0, 1], [1, 0], 2, 4)
    >>> h.tolist()  # 0 -> 1 needs more iterations and more distortion: harder
    [[nan, 0.5], [0.25, nan]]
  """
  taus, epss = [], []
  for k in range(sweep.success.shape[0]):
    tau, eps = pair_success_distortion(sweep.success[k], sweep.n_changed[k], sources, targets,
                                       num_classes, num_features)
    taus.append(tau)
    epss.append(eps)
  tau, eps = np.stack(taus, -1), np.stack(epss, -1)
  h = hardness(np.nan_to_num(tau, nan=0.0), eps)
  return np.where(np.isnan(tau[..., 0]), np.nan, h), tau, eps


# ------------------------------------------------------- adversarial distance


def adversarial_distance(a: Any, b: Any, *, increase: bool = True) -> np.ndarray:
  """Adversarial distance ``A(x, t) = 1 - #{i : S(x, t)[i] > 0} / M``.

  ``S`` is the single-feature saliency map (Eq. 8, or Eq. 9 when
  ``increase=False``) over all features: the share of features with zero
  saliency towards ``t``. In ``[0, 1]``; closer to 0 is easier.

  Args:
    a, b: ``[B, *shape]`` rows from :func:`jsma_jax.target_rows`.
    increase: direction of the attack.

  Returns:
    ``[B]`` float64.

  Example:
    >>> a = np.array([[1., -1., .5, 0.]])  # dZ_t/dx
    >>> b = np.array([[-1., 1., -2., 0.]])  # sum of the others
    >>> adversarial_distance(a, b).tolist()  # features 0 and 2 are salient: 1 - 2/4
    [0.5]
  """
  s = saliency.single_feature_saliency(np.asarray(a), np.asarray(b), increase=increase)  # elementwise
  s = np.asarray(s).reshape(s.shape[0], -1)
  return 1.0 - np.mean(np.asarray(s) > 0, axis=1, dtype=np.float64)


def robustness(distances: Any) -> dict[str, float]:
  """Robustness ``R(F) = min over (x, t) of A(x, t)``, with the mean the paper also quotes.

  Example:
    >>> robustness([0.5, 0.75, 1.0])
    {'min': 0.5, 'mean': 0.75}
  """
  d = np.asarray(distances, np.float64)
  return {"min": float(d.min()), "mean": float(d.mean())} if d.size else {"min": float("nan"), "mean": float("nan")}


# ------------------------------------------------------------ rank correlation


def rankdata(values: Any) -> np.ndarray:
  """Ranks from 1, ties sharing the average rank (as ``scipy.stats.rankdata``).

  Example:
    >>> rankdata([10, 30, 20, 20]).tolist()
    [1.0, 4.0, 2.5, 2.5]
  """
  v = np.asarray(values, np.float64).reshape(-1)
  order = np.argsort(v, kind="stable")
  sorted_v = v[order]
  starts = np.r_[0, np.flatnonzero(np.diff(sorted_v)) + 1]
  ends = np.r_[starts[1:], v.size]
  ranks = np.empty(v.size)
  ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
  return ranks


def spearman(x: Any, y: Any) -> float:
  """Spearman's rank correlation over the entries where both are finite.

  Returns:
    a float in ``[-1, 1]``; ``nan`` with fewer than 2 points or a constant input.

  Example:
    >>> spearman([1, 2, 3, np.nan], [10, 20, 30, 0]), spearman([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
  """
  x = np.asarray(x, np.float64).reshape(-1)
  y = np.asarray(y, np.float64).reshape(-1)
  keep = np.isfinite(x) & np.isfinite(y)
  if keep.sum() < 2:
    return float("nan")
  rx, ry = rankdata(x[keep]), rankdata(y[keep])
  rx, ry = rx - rx.mean(), ry - ry.mean()
  denom = np.sqrt((rx**2).sum() * (ry**2).sum())
  return float((rx * ry).sum() / denom) if denom > 0 else float("nan")

