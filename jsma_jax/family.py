"""The rest of the JSMA family as saliency rules: TJSMA, non-targeted JSMA, Maximal JSMA.

Each rule plugs into the one attack step (:mod:`jsma_jax.step`) through the
:class:`~jsma_jax.rules.SaliencyRule` seam; none touches the loop. They run
pairwise (Algorithm 3 of Papernot et al. 2016) and single-feature
(Algorithm 1, ``pairwise=False``) through the same maps: a single-feature step
scores feature ``i`` as the pair ``(i, i)`` would be scored with
``alpha = a_i``, ``beta = b_i``.

Notation: ``J[j] = dZ_j/dx`` (the rows of the forward derivative), ``l`` the
label given to :func:`jsma_jax.jsma` (a target for targeted rules, the source
class for the non-targeted ones), ``p = softmax(Z)``, ``[lo, hi]`` the clip
bounds. A map ``(a, b)`` in direction "up" admits ``alpha = a_p + a_q > 0``,
``beta = b_p + b_q < 0`` and scores ``-alpha * beta`` (signs mirrored "down").

Example:
  A linear model of 4 features and 2 classes; the source is class 0:

  >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])  # [M=4, N=2]
  >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
  >>> x, sources = jnp.full((1, 4), 0.5), jnp.array([0])
  >>> r = jsma_jax.jsma(f, x, sources, rule=maximal_rule(), max_iter=2)
  >>> r.success.tolist(), r.criterion, r.predicted.tolist()
  ([True], 'argmax != source', [1])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jsma_jax.rules import SaliencyRule, argmax_is_target, target_and_others, weighted_others
from jsma_jax.types import Maps, StepView

Array = jax.Array


# ------------------------------------------------------------------------ TJSMA


def _room(view: StepView) -> Array:
  """``[M]`` room each feature has left in the attack's direction: ``hi - x`` up, ``x - lo`` down."""
  return jnp.where(view.theta > 0, view.clip_max - view.x, view.x - view.clip_min)


def _taylor_map(rows: Array, outputs: Array, label: Array, view: StepView) -> Maps:
  del outputs, label
  room = _room(view)
  return Maps((room * rows[0])[None], (room * rows[1])[None], (view.theta > 0)[None])


def tjsma_rule() -> SaliencyRule:
  """Taylor JSMA (Combey, Loison, Faucher, Hajri, *Probabilistic Jacobian-based Saliency Maps Attacks*, 2020).

  WJSMA with every derivative also weighted by the room ``r_i`` the feature has
  left in the attack's direction:

    ``a_i = r_i dZ_t/dx_i``,  ``b_i = r_i sum_{j != t} p_j(x) dZ_j/dx_i``,
    ``r_i = clip_max - x_i`` when ``theta > 0``, ``x_i - clip_min`` when ``theta < 0``.

  The paper states it for increasing attacks on ``[0, 1]`` (``r_i = 1 - x_i``);
  the general box and the decreasing direction are pinned here as above. ``r``
  is read at the current ``x`` of every step. A feature with no room left has
  ``a_i = b_i = 0``: never admissible alone (pairs with it score as the other
  feature alone would, weighted). Success when ``argmax Z(x) == t``.
  """
  return SaliencyRule("tjsma", weighted_others, _taylor_map, argmax_is_target)


# ------------------------------------------------------------ non-targeted JSMA


def _source_swapped_map(rows: Array, outputs: Array, label: Array, view: StepView) -> Maps:
  del outputs, label
  return Maps(rows[1][None], rows[0][None], (view.theta > 0)[None])


def _argmax_is_not_source(outputs: Array, source: Array) -> Array:
  return jnp.argmax(outputs) != source


def untargeted_rule() -> SaliencyRule:
  """Non-targeted JSMA (Wiyatno and Xu, *Maximal Jacobian-based Saliency Map Attack*, 2018).

  The labels are the SOURCE classes ``s``. The source output is pushed down and
  the others up: the roles of the paper's two terms swap,

    ``a_i = sum_{j != s} dZ_j/dx_i`` (pushed up),  ``b_i = dZ_s/dx_i`` (pushed down),

  so a pair is admissible when increasing (``theta > 0``) iff
  ``sum_{j != s}`` over the pair is ``> 0`` and ``dZ_s`` over the pair is ``< 0``
  (mirrored when decreasing), scoring ``|alpha_s| * beta_others``. One map, in
  the direction of ``theta``; budget and domain as the paper's rule. Success
  when ``argmax Z(x) != s``.
  """
  return SaliencyRule("untargeted", target_and_others, _source_swapped_map, _argmax_is_not_source,
                      criterion="argmax != source", targeted=False)


# ---------------------------------------------------------------- Maximal JSMA


def _every_class_and_its_others(outputs: Array, label: Array) -> Array:
  """``W = [I_N; 1 - I_N]`` ``[2N, N]``: rows ``c`` give ``dZ_c/dx``, rows ``N + c`` ``sum_{j != c} dZ_j/dx``."""
  del label
  eye = jnp.eye(outputs.shape[-1], dtype=outputs.dtype)
  return jnp.concatenate([eye, 1 - eye])


def _maximal_maps(rows: Array, outputs: Array, label: Array, view: StepView) -> Maps:
  n = outputs.shape[-1]
  own, rest = rows[:n], rows[n:]  # [N, M] each
  is_source = (jnp.arange(n) == label)[:, None]
  a = jnp.where(is_source, rest, own)  # the source class: terms swapped (push it down)
  b = jnp.where(is_source, own, rest)
  # map k = 2c + d: class c, direction up (d = 0) or down (d = 1)
  a, b = jnp.repeat(a, 2, axis=0), jnp.repeat(b, 2, axis=0)
  increase = jnp.tile(jnp.array([True, False]), n)
  up = increase[:, None]
  movable = jnp.where(up, view.x < view.clip_max, view.x > view.clip_min)
  not_back = jnp.where(up, view.last >= 0, view.last <= 0)
  domain = view.domain[None, :] & movable & not_back
  return Maps(a, b, increase, domain)


def maximal_rule() -> SaliencyRule:
  """Maximal JSMA (Wiyatno and Xu, *Maximal Jacobian-based Saliency Map Attack*, 2018).

  Non-targeted: the labels are the SOURCE classes ``s``. Every step considers
  every class ``c`` and both directions, ``K = 2N`` maps, ``k = 2c`` (up) and
  ``k = 2c + 1`` (down):

    ``c != s``: ``a = dZ_c/dx``, ``b = sum_{j != c} dZ_j/dx`` (raise ``c`` over the rest);
    ``c == s``: ``a = sum_{j != s} dZ_j/dx``, ``b = dZ_s/dx`` (push the source down).

  The best admissible pair over all maps wins (ties to the lowest ``k``, then
  the lowest flat index) and moves by ``|theta|`` in its map's direction: the
  direction follows the sign of class ``c``'s ``alpha``, reversed for the
  source. Each map's domain is the state's domain minus the features that
  cannot move in its direction (``x`` at ``clip_max`` for up, ``clip_min`` for
  down) and minus those whose last change went the other way ("a feature is
  never moved back against its last change"). Only ``theta``'s magnitude is
  used; the initial ``"movable"`` domain holds the features that can move
  either way. A feature leaves the domain when it saturates in the direction
  it moved. Budget: the paper's rule, ``floor(M * gamma / 2)`` pair iterations
  (``floor(M * gamma)`` single-feature ones) or ``max_iter``. Stops on success
  (``argmax Z(x) != s``), budget, fewer than two (one) features in the domain,
  or no admissible pair in any map.

  ``cotangents`` is ``W = [I_N; 1 - I_N]`` (``2N > N`` rows, so ``"auto"``
  takes one ``jacrev``); the step's memory is ``O(S x 2N x M)`` for ``S``
  examples in flight, never the ``N x B x M x M`` of the public TF1 code.
  """
  return SaliencyRule("maximal", _every_class_and_its_others, _maximal_maps, _argmax_is_not_source,
                      criterion="argmax != source", targeted=False, directions="both")
