"""PyTorch's core ATen operators as JAX functions, for :mod:`jsma_jax.torch`; no torch import.

Each entry of :data:`OPS` takes the operator's arguments as ``torch.export`` records them
(tensors as JAX arrays, ``torch.dtype`` already turned into a NumPy dtype) and returns
what the operator returns, in torch's layout (channels first: ``N, C, *spatial``;
convolution weights ``O, I/groups, *kernel``). Every formula follows the operator's
definition in PyTorch's documentation, including the corner cases a classifier meets:
padded, strided, dilated and grouped convolutions (also transposed); max pools with
``-inf`` padding and ``ceil_mode``; average pools with ``count_include_pad``,
``ceil_mode`` and ``divisor_override``; eval-mode batch, layer and group norms.
Convolutions and pools are written with ``lax.conv_general_dilated`` and
``lax.reduce_window``, so the core's loop-friendly rewrite (:mod:`jsma_jax.rewrite`)
applies to them. An operator or argument not covered raises :class:`Unsupported`, which
the bridge turns into an error naming the layer.

Modules: ``_registry`` (the table :data:`OPS`, the training-only and ignored operators),
``layers`` (convolutions, pools, norms, upsampling), ``tensors`` (matmuls, shapes,
element-wise, reductions), ``indexing`` (splits, advanced indexing, gathers, scatters,
ranges, ``max``/``min`` with ``dim``, ``as_strided``), ``attention`` (scaled dot-product
attention kept as one operator).
"""

from jsma_jax._aten import attention, indexing, layers, tensors  # noqa: F401  (each registers its operators)
from jsma_jax._aten._registry import IGNORED, OPS, TRAINING_OPS, Unsupported, supported

__all__ = ["IGNORED", "OPS", "TRAINING_OPS", "Unsupported", "supported"]
