"""jsma_jax.torch: the building blocks of today's classifiers, each against torch.

Every module here is plain torch (no torchvision): attention (``F.scaled_dot_product_attention``,
``nn.MultiheadAttention``, with and without masks), splits, memory layouts (``as_strided``),
advanced indexing, gathers and scatters, ranges and ``fmod``, ``max``/``min`` with ``dim``,
upsampling and the instance, group and layer norms. Each is converted by ``from_torch`` and
compared with torch's own forward and autograd: the logits and the VJP of a random cotangent
with respect to the input, on a batch (vmapped) and example by example, under ``jax.jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiers

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from jsma_jax import _aten  # noqa: E402
from jsma_jax.torch import from_torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.export's own deprecations


class Fn(nn.Module):
  """``fn(self, x)`` flattened to ``[B, K]`` (the bridge's output), with optional layers in ``self.layers``."""

  def __init__(self, fn, **layers):
    super().__init__()
    self.fn = fn
    self.layers = nn.ModuleDict(layers)

  def forward(self, x):
    return self.fn(self.layers, x).flatten(1)


def _check(module: nn.Module, shape: tuple, *, seed: int = 0, low: float = -1.0, high: float = 1.0):
  """Logits and input VJPs of the converted ``module`` equal torch's (float32 tolerance)."""
  torch.manual_seed(seed)
  module = module.eval()
  x = np.random.default_rng(seed + 1).uniform(low, high, size=(3, *shape)).astype(np.float32)
  apply_fn, params = from_torch(module, torch.from_numpy(x[:1]))
  xt = torch.from_numpy(x).requires_grad_(True)
  want = module(xt)
  cot = np.random.default_rng(seed + 2).standard_normal(tuple(want.shape)).astype(np.float32)
  (want * torch.from_numpy(cot)).sum().backward()
  vjp = jax.jit(lambda v, c: (lambda out, back: (out, back(c)[0]))(*jax.vjp(lambda u: apply_fn(params, u), v)))
  batch = vjp(jnp.asarray(x), jnp.asarray(cot))
  alone = [vjp(jnp.asarray(x[i:i + 1]), jnp.asarray(cot[i:i + 1])) for i in range(len(x))]
  want, wgrad = want.detach().numpy(), xt.grad.numpy()
  scale, gscale = max(1.0, float(np.abs(want).max())), max(1e-3, float(np.abs(wgrad).max()))
  for logits, grad in [batch, (np.concatenate([a[0] for a in alone]), np.concatenate([a[1] for a in alone]))]:
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-5, atol=2e-5 * scale)
    np.testing.assert_allclose(np.asarray(grad), wgrad, rtol=1e-4, atol=2e-5 * gscale)
  return apply_fn


def _ops_of(module: nn.Module, shape: tuple) -> set[str]:
  program = torch.export.export(module.eval(), (torch.zeros(1, *shape),), strict=False).run_decompositions()
  return {str(n.target) for n in program.graph.nodes if n.op == "call_function"}


# ---------------------------------------------------------------- attention


def _qkv(layers, x):
  """Queries, keys, values ``[B, heads=2, L, 4]`` from ``x`` ``[B, L, 8]``."""
  b, n, _ = x.shape
  q, k, v = layers["proj"](x).chunk(3, dim=-1)
  return [t.reshape(b, n, 2, 4).transpose(1, 2) for t in (q, k, v)]


_MASK_BOOL = torch.tensor([[1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [0, 1, 1, 0, 1], [1, 1, 1, 1, 0], [0, 0, 1, 1, 1]],
                          dtype=torch.bool)
_MASK_FLOAT = torch.linspace(-1.0, 1.0, 25).reshape(5, 5)

SDPA = [
    ("plain", lambda layers, x: F.scaled_dot_product_attention(*_qkv(layers, x))),
    ("bool-mask", lambda layers, x: F.scaled_dot_product_attention(*_qkv(layers, x), attn_mask=_MASK_BOOL)),
    ("float-mask", lambda layers, x: F.scaled_dot_product_attention(*_qkv(layers, x), attn_mask=_MASK_FLOAT)),
    ("causal", lambda layers, x: F.scaled_dot_product_attention(*_qkv(layers, x), is_causal=True)),
    ("scale", lambda layers, x: F.scaled_dot_product_attention(*_qkv(layers, x), scale=0.3)),
]


@pytest.mark.parametrize("fn", tiers.fast_few(dict(SDPA), (SDPA[0][0],)))
def test_scaled_dot_product_attention(fn):
  _check(Fn(fn, proj=nn.Linear(8, 24)), (5, 8))


class Attention(nn.Module):
  def __init__(self, **call):
    super().__init__()
    self.mha, self.call = nn.MultiheadAttention(8, 2, batch_first=True), call

  def forward(self, x):
    call = dict(self.call)
    if "key_padding_mask" in call:  # one mask row for every example
      call["key_padding_mask"] = call["key_padding_mask"].expand(x.shape[0], -1)
    out, weights = self.mha(x, x, x, **call)
    return torch.cat([out.flatten(1), weights.flatten(1)], 1) if weights is not None else out.flatten(1)


MHA = [
    ("no-mask", {}),
    ("no-weights", {"need_weights": False}),
    ("key-padding-mask", {"key_padding_mask": torch.tensor([[False, False, True, False, True]])}),
    ("bool-attn-mask", {"attn_mask": ~_MASK_BOOL}),  # nn.MultiheadAttention: True = may NOT attend
    ("float-attn-mask", {"attn_mask": _MASK_FLOAT}),
    ("causal", {"attn_mask": nn.Transformer.generate_square_subsequent_mask(5), "is_causal": True}),
    ("per-head-weights", {"average_attn_weights": False}),
]


@pytest.mark.parametrize("call", tiers.fast_few(dict(MHA), (MHA[0][0],)))
def test_multihead_attention(call):
  _check(Attention(**call), (5, 8))


@pytest.mark.slow
def test_multihead_attention_in_an_encoder_layer():
  layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.1, batch_first=True, norm_first=True)
  _check(Fn(lambda layers, x: layers["enc"](x), enc=layer), (5, 8))


# ---------------------------------------------------------------- splits and layouts


SHAPES = [
    ("chunk", lambda layers, x: (lambda a, b: torch.cat([b * 2, a.sin()], 1))(*x.chunk(2, dim=1))),
    ("chunk-uneven",
     lambda layers, x: torch.cat([p.sum(1, keepdim=True) * (i + 1) for i, p in enumerate(x.chunk(3, dim=1))], 1)),
    ("split-sizes",
     lambda layers, x: (lambda a, b, c: a * b.mean(1, keepdim=True) + c.exp().sum(1, keepdim=True))(
         *torch.split(x, [1, 2, 1], dim=1))),
    ("split-int", lambda layers, x: torch.stack([p.tanh() for p in torch.split(x, 3, dim=-1)[:2]], 1)),
    ("unbind", lambda layers, x: (lambda *rows: rows[0] * rows[1] - rows[3])(*x.unbind(1))),
    ("channel-shuffle",
     lambda layers, x: x.reshape(x.shape[0], 2, 2, 5, 6).transpose(1, 2).reshape(x.shape[0], -1, 5, 6)),
    ("channels-last-pool", lambda layers, x: F.adaptive_avg_pool2d(
        layers["conv"](x.contiguous(memory_format=torch.channels_last)), 1)),
    ("permute-layernorm",
     lambda layers, x: layers["ln"](layers["conv"](x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()),
    ("as-strided-read", lambda layers, x: torch.as_strided(x.contiguous(), (x.shape[0], 2, 3, 4), (120, 20, 2, 5), 1)),
    ("flip-roll-repeat", lambda layers, x: torch.roll(x.flip(-1), shifts=(1, -2), dims=(2, 3)).repeat(1, 1, 2, 1)),
]


@pytest.mark.parametrize("fn", tiers.fast_few(dict(SHAPES), (SHAPES[0][0],)))
def test_splits_and_layouts(fn):
  _check(Fn(fn, conv=nn.Conv2d(4, 6, 3), ln=nn.LayerNorm(6)), (4, 5, 6))


def test_as_strided_that_restores_a_layout_is_the_identity():
  module = Fn(lambda layers, x: F.adaptive_avg_pool2d(
                  layers["conv"](x.contiguous(memory_format=torch.channels_last)), 1),
              conv=nn.Conv2d(4, 6, 3))
  assert "aten.as_strided.default" in _ops_of(module, (4, 5, 6))  # convnext's case
  out = _aten.OPS["aten.as_strided.default"](jnp.ones((2, 3, 4)), (2, 3, 4), (1, 8, 2), input_layout=((1, 8, 2), 0))
  assert out.shape == (2, 3, 4)


# ---------------------------------------------------------------- indexing, gathers, scatters


_IDX = torch.tensor([3, 0, 2, 2])


def _put(x):
  y = x.clone()
  y[:, 1:3] = x[:, 1:3] * 3  # slice_scatter
  y[:, 0] = x[:, 3].exp()  # select_scatter
  return y


INDEXING = [
    ("index-tensor", lambda layers, x: x[:, _IDX]),
    ("index-two-arrays", lambda layers, x: x[:, torch.tensor([0, 2]), torch.tensor([1, 3])]),
    # NumPy's rule: the indexed axis first
    ("index-with-slice-between", lambda layers, x: x[:, torch.tensor([1, 0]), :, torch.tensor([4, 2])].transpose(0, 1)),
    ("index-select", lambda layers, x: x.index_select(2, _IDX)),
    ("gather", lambda layers, x: x.gather(3, torch.tensor([[[[0, 4, 4], [1, 1, 3]]]]).expand(x.shape[0], 4, 2, 3))),
    ("scatter-src", lambda layers, x: torch.zeros(x.shape[0], 4, 5, 7).scatter(
        3, torch.tensor([[[[0, 6, 2, 3, 4, 5]]]]).expand(x.shape[0], 4, 5, 6), x)),
    ("scatter-add", lambda layers, x: torch.ones(x.shape[0], 4, 5, 3).scatter_add(
        3, torch.tensor([[[[0, 1, 2, 0, 1, 0]]]]).expand(x.shape[0], 4, 5, 6), x)),
    ("index-put", lambda layers, x: _index_put(x)),
    ("index-put-accumulate", lambda layers, x: torch.zeros(x.shape[0], 4, 6).index_put(
        (torch.arange(x.shape[0])[:, None], torch.tensor([[0, 2, 2]])), x[:, 0, :3], accumulate=True)),
    ("slice-select-scatter", lambda layers, x: _put(x)),
    ("masked-fill", lambda layers, x: x.masked_fill(_MASK_BOOL[:, :, None].expand(5, 5, 6)[:4], -2.0)),
]


def _index_put(x):
  y = torch.zeros_like(x)
  y[:, torch.tensor([0, 2])] = x[:, 1:3] * 2
  return y


@pytest.mark.parametrize("fn", tiers.fast_few(dict(INDEXING), (INDEXING[0][0],)))
def test_indexing_gathers_scatters(fn):
  _check(Fn(fn), (4, 5, 6))


# ---------------------------------------------------------------- ranges, fmod, reductions with an index


def _window_shift(x):
  """Swin's cyclic shift written with indices, as torch.roll lowers: arange, fmod, index_select."""
  n = x.shape[-1]
  idx = torch.fmod(torch.arange(n) + (n - 2), n)
  rows = torch.remainder(torch.arange(0, 2 * x.shape[-2], 2) - 3, x.shape[-2])
  return x.index_select(-1, idx)[:, :, rows]


RANGES = [
    ("arange-fmod-shift", _window_shift),
    ("arange-float", lambda x: x * torch.arange(0.5, 3.0, 0.5).reshape(5, 1)),
    ("fmod-remainder-values", lambda x: torch.fmod(x * 3, 0.7) + torch.remainder(x * 3, 0.7)),
    ("max-min-dim", lambda x: x.flatten(2).max(2).values - x.flatten(2).min(2).values + x.max(1)[0].sum(1)[:, :1]),
    ("max-dim-keepdim-indices", lambda x: x.gather(1, x.max(1, keepdim=True).indices)),
    ("amax-amin-argmax", lambda x: x.amax((2, 3)) * x.amin(1).sum(1).sum(1, keepdim=True)
     + x.argmax(1).float().sum(2).sum(1, keepdim=True)),
    ("full-like-any", lambda x: torch.where((x > 0.5).any(dim=1, keepdim=True), x, torch.full_like(x, 0.25))),
    ("new-tensors", lambda x: x + torch.ones_like(x) * 2 + x.new_zeros(x.shape[-1]) + torch.zeros(x.shape[-1])),
]


@pytest.mark.parametrize("fn", tiers.fast_few(dict(RANGES), (RANGES[0][0],)))
def test_ranges_fmod_and_indexed_reductions(fn):
  _check(Fn(lambda layers, x: fn(x)), (3, 5, 6))


# ---------------------------------------------------------------- upsampling


UPSAMPLE = [
    ("nearest-2x", dict(scale_factor=2, mode="nearest")),
    ("nearest-size", dict(size=(7, 4), mode="nearest")),
    ("nearest-1.5x", dict(scale_factor=1.5, mode="nearest")),
    ("nearest-exact", dict(size=(7, 9), mode="nearest-exact")),
    ("bilinear-2x", dict(scale_factor=2, mode="bilinear")),
    ("bilinear-size", dict(size=(9, 4), mode="bilinear")),
    ("bilinear-align-corners", dict(size=(9, 11), mode="bilinear", align_corners=True)),
    ("bilinear-1.7x", dict(scale_factor=1.7, mode="bilinear")),
]


@pytest.mark.parametrize("how", tiers.fast_few(dict(UPSAMPLE), (UPSAMPLE[0][0],)))
def test_upsampling(how):
  _check(Fn(lambda layers, x: layers["up"](x), up=nn.Upsample(**how)), (2, 5, 6))


@pytest.mark.slow
def test_upsampling_1d_and_3d():
  _check(Fn(lambda layers, x: F.interpolate(x, scale_factor=2.5, mode="linear") + 0), (2, 7))
  _check(Fn(lambda layers, x: F.interpolate(x, size=(3, 5, 4), mode="nearest")), (2, 2, 3, 3))


# ---------------------------------------------------------------- norms and small activations


NORMS = [
    ("instance-norm", nn.InstanceNorm2d(4)),
    ("instance-norm-affine", nn.InstanceNorm2d(4, affine=True)),
    ("instance-norm-running-stats", nn.InstanceNorm2d(4, affine=True, track_running_stats=True)),
    ("group-norm", nn.GroupNorm(2, 4)),
    ("layer-norm-last", nn.LayerNorm(6)),
    ("layer-norm-no-affine", nn.LayerNorm([5, 6], elementwise_affine=False)),
]


@pytest.mark.parametrize("norm", tiers.fast_few(dict(NORMS), (NORMS[0][0],)))
def test_norms_in_eval_mode(norm):
  with torch.no_grad():
    for name, t in norm.named_buffers():
      if t.is_floating_point():
        t.copy_(torch.rand(t.shape) + (0.5 if "var" in name else -0.5))
    for t in norm.parameters():
      t.copy_(torch.rand(t.shape) + 0.5)
  _check(Fn(lambda layers, x: layers["norm"](x * 2 + 1), norm=norm), (4, 5, 6))


@pytest.mark.slow
def test_small_functions_models_use():
  _check(Fn(lambda layers, x: torch.cat([F.hardswish(x * 4), F.hardsigmoid(x * 4), F.silu(x), F.mish(x),
                                    F.normalize(x, dim=1), x.cumsum(2), x.var(1, keepdim=True).expand_as(x)], 1)),
         (3, 4, 5))
