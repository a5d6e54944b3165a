"""Attention: ``F.scaled_dot_product_attention`` where an export keeps it as one operator.

``softmax(q k^T * scale + mask) v`` over the last two axes, with torch's conventions: the
scale defaults to ``1 / sqrt(E)``; a boolean mask marks the places that may attend (False:
``-inf``), a float mask is added; ``is_causal`` keeps the lower triangle. A row with no
place to attend is NaN, as torch's math kernel gives. Dropout (training only) is refused.
``nn.MultiheadAttention`` lowers to matmuls, softmax and masking, which the other
modules convert.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jsma_jax._aten._registry import Unsupported, register


def _attend(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa=False):
  if dropout_p:
    raise Unsupported(f"scaled_dot_product_attention with dropout_p={dropout_p} (training only); "
                      "pass dropout_p=self.dropout if self.training else 0.0")
  if enable_gqa and k.shape[-3] != q.shape[-3]:  # grouped-query attention: each key head serves several
    repeat = q.shape[-3] // k.shape[-3]
    k, v = jnp.repeat(k, repeat, axis=-3), jnp.repeat(v, repeat, axis=-3)
  scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
  scores = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) * jnp.asarray(scale, q.dtype)
  if is_causal:
    keep = np.tril(np.ones((q.shape[-2], k.shape[-2]), bool))
    scores = jnp.where(keep, scores, -jnp.inf)
  if attn_mask is not None:
    scores = jnp.where(attn_mask, scores, -jnp.inf) if attn_mask.dtype == jnp.bool_ else scores + attn_mask
  weights = jax.nn.softmax(scores, axis=-1)
  return jnp.matmul(weights, v), jax.nn.logsumexp(scores, axis=-1)


@register("aten.scaled_dot_product_attention.default")
def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
                                 enable_gqa=False):
  return _attend(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)[0]


@register("aten._scaled_dot_product_flash_attention_for_cpu.default")
def flash_attention_cpu(q, k, v, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None):
  """The CPU kernel's entry: ``(output, logsumexp)``."""
  return _attend(q, k, v, attn_mask, dropout_p, is_causal, scale)
