"""Training recipes as data: a frozen :class:`Recipe`, named presets, initialisation schemes.

JSMA's success on MNIST moves by several points between LeNets of one architecture and
one test accuracy, depending on how they were trained. A :class:`Recipe` names every
choice that does so (activation, initialisation, optimiser, learning rate and schedule,
batch size, epochs, training split, seed); :func:`jsma_jax.models.train` takes one and
records it in the checkpoint, and :meth:`Recipe.from_dict` reads it back.

Initialisation schemes (:func:`initialise`):

* ``"default"``: the module's own initialisers, left alone (Flax: LeCun-normal kernels,
  truncated at two standard deviations, zero biases).
* ``"glorot"``: the Theano LeNet tutorial's (``convolutional_mlp.py``): kernels uniform in
  ``+-sqrt(6 / (fan_in + fan_out))``, biases zero. A convolution's ``fan_in`` is
  ``in_channels * kh * kw`` and its ``fan_out`` is ``out_channels * kh * kw / pool_area``
  (the tutorial divides by the area of the max-pool that follows each convolution: 4
  for the paper's LeNet); a dense layer's are its input and output widths.
* ``"pytorch"``: PyTorch's defaults for ``nn.Conv2d`` and ``nn.Linear``, kernels *and*
  biases uniform in ``+-1 / sqrt(fan_in)``.

``zero_output`` also sets the last dense layer to zero, as the tutorial's
``LogisticRegression`` layer starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jsma_jax.models.lenet import ModelConfig

INITS = ("default", "glorot", "pytorch")
OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "step")
TRAIN_SPLITS = ("all", "holdout")


def holdout_split(n: int) -> tuple[np.ndarray, np.ndarray]:
  """The training/validation split of ``n`` training images: the last sixth held out.

  On MNIST's 60,000 training images: the first 50,000 train, the last 10,000 validate,
  as in the ``mnist.pkl.gz`` the Theano tutorials (and the paper's three sets of 10,000)
  used. The 5,000 embedded training digits give 4,167 / 833.

  Args:
    n: the number of training images, >= 2.

  Returns:
    ``(train_idx, validation_idx)``: disjoint, ascending int64 index arrays covering
    ``range(n)``.

  Example:
    >>> train_idx, val_idx = holdout_split(60000)
    >>> len(train_idx), len(val_idx), int(train_idx[-1]), int(val_idx[0])
    (50000, 10000, 49999, 50000)
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
    raise ValueError(f"n must be an int >= 2, got {n!r}")
  cut = n - n // 6
  return np.arange(cut), np.arange(cut, n)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a model is trained: every choice, recorded in its checkpoint.

  Attributes:
    name: a label (a preset's name, or your own).
    model: the architecture and activation (:class:`~jsma_jax.models.ModelConfig`).
    init: ``"default"`` (the module's own initialisers: Flax's), ``"glorot"`` (the
      Theano tutorial's, with the pooling-adjusted fan-out) or ``"pytorch"``; see
      :func:`initialise`.
    zero_output: start the last dense layer at zero (the tutorial's logistic layer).
    pool_area: the pooling area that divides a convolution's fan-out under ``"glorot"``.
    optimizer: ``"sgd"`` (plain), ``"momentum"`` (heavy ball, as ``torch.optim.SGD``)
      or ``"adam"``.
    learning_rate: the (peak) step size.
    momentum: the momentum of ``"momentum"``.
    schedule: ``"constant"``, ``"cosine"`` (decay to 0 over the run) or ``"step"``
      (times ``step_factor`` every ``step_epochs`` epochs).
    step_epochs, step_factor: the ``"step"`` schedule.
    batch_size: training batch size (the last incomplete batch of an epoch is dropped).
    epochs: passes over the training images.
    split: ``"all"`` (train on every training image) or ``"holdout"`` (train on the
      first five sixths, validate on the last sixth: :func:`holdout_split`).
    seed: initialisation and shuffling.
    eval_batch_size: evaluation batch size (does not change the model).

  Example:
    >>> r = preset("theano_tutorial")
    >>> r.model.activation, r.init, r.optimizer, r.learning_rate, r.batch_size, r.split
    ('tanh', 'glorot', 'sgd', 0.1, 500, 'holdout')
    >>> Recipe.from_dict(r.to_dict()) == r
    True
    >>> Recipe(optimizer="rmsprop")
    Traceback (most recent call last):
    ValueError: optimizer must be one of ('sgd', 'momentum', 'adam'), got 'rmsprop'
  """

  name: str = "custom"
  model: ModelConfig = ModelConfig()  # noqa: RUF009 (frozen: sharing is safe)
  init: str = "default"
  zero_output: bool = False
  pool_area: int = 4
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  momentum: float = 0.9
  schedule: str = "cosine"
  step_epochs: int = 10
  step_factor: float = 0.1
  batch_size: int = 128
  epochs: int = 5
  split: str = "all"
  seed: int = 0
  eval_batch_size: int = 1000

  def __post_init__(self):
    if not isinstance(self.model, ModelConfig):
      raise TypeError(f"model must be a ModelConfig, got {type(self.model).__name__}")
    for field, allowed in (("init", INITS), ("optimizer", OPTIMIZERS),
                           ("schedule", SCHEDULES), ("split", TRAIN_SPLITS)):
      if getattr(self, field) not in allowed:
        raise ValueError(f"{field} must be one of {allowed}, got {getattr(self, field)!r}")
    for field in ("epochs", "batch_size", "eval_batch_size", "pool_area", "step_epochs", "seed"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{field} must be an int, got {type(v).__name__}")
      if v < (0 if field in ("epochs", "seed") else 1):
        raise ValueError(f"{field} must be positive, got {v}")
    for field in ("learning_rate", "step_factor"):
      v = getattr(self, field)
      if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
        raise ValueError(f"{field} must be a finite float > 0, got {v!r}")
    if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
    if not isinstance(self.zero_output, bool):
      raise TypeError(f"zero_output must be a bool, got {type(self.zero_output).__name__}")

  @property
  def activation(self) -> str:
    """The model's activation (``model.activation``)."""
    return self.model.activation

  def replace(self, **changes: Any) -> Recipe:
    """A copy with fields changed; ``activation=`` changes ``model.activation``.

    Example:
      >>> preset("theano_tutorial").replace(activation="relu", epochs=5).model.activation
      'relu'
    """
    if "activation" in changes:
      changes["model"] = dataclasses.replace(changes.get("model", self.model),
                                             activation=changes.pop("activation"))
    bad = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
    if bad:
      raise TypeError(f"unknown recipe field(s) {bad}; the fields are "
                      f"{[f.name for f in dataclasses.fields(self)] + ['activation']}")
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able dict (what checkpoints record)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Recipe:
    """The recipe of :meth:`to_dict` (or of a checkpoint's ``metadata["recipe"]``)."""
    d = dict(d)
    d["model"] = ModelConfig(**d["model"])
    return cls(**d)

  def describe(self) -> str:
    """One line: the choices that matter, for reports."""
    opt = {"sgd": "SGD", "momentum": f"SGD+momentum {self.momentum}", "adam": "Adam"}[self.optimizer]
    sched = (f"step x{self.step_factor}/{self.step_epochs} ep" if self.schedule == "step"
             else self.schedule)
    init = {"default": "Flax init", "glorot": "Glorot/zero-bias init",
            "pytorch": "PyTorch init"}[self.init] + (", zero output" if self.zero_output else "")
    data = "the last sixth of the training images held out" if self.split == "holdout" else "all training images"
    return (f"{self.model.activation}, {init}, {opt} lr {self.learning_rate:g} {sched}, "
            f"batch {self.batch_size}, {self.epochs} epochs, {data}")


def _theano_tutorial() -> Recipe:
  """The Theano LeNet tutorial of the paper's time (``convolutional_mlp.py``): tanh,
  plain SGD at 0.1, batches of 500, Glorot-uniform kernels with the pooling-adjusted
  fan-out, zero biases, a zero output layer, trained on the first 50,000 images. The
  tutorial runs 200 epochs (with early stopping on the validation set); the preset
  keeps 200, and runs on a small CPU say how many they could afford."""
  return Recipe(name="theano_tutorial", model=ModelConfig(activation="tanh"), init="glorot",
                zero_output=True, optimizer="sgd", learning_rate=0.1, schedule="constant",
                batch_size=500, epochs=200, split="holdout")


def _adam_cosine() -> Recipe:
  """This project's first recipe: Flax initialisation, Adam 1e-3 with cosine decay to
  zero, batches of 128, 10 epochs over all 60,000 images (chosen for accuracy)."""
  return Recipe(name="adam_cosine", model=ModelConfig(activation="tanh"), init="default",
                optimizer="adam", learning_rate=1e-3, schedule="cosine", batch_size=128,
                epochs=10, split="all")


def _pytorch_sgd() -> Recipe:
  """A PyTorch-style recipe: PyTorch's default initialisation, SGD with momentum 0.9 at
  0.01, the step size divided by 10 every 10 epochs, batches of 64, 20 epochs, 60k."""
  return Recipe(name="pytorch_sgd", model=ModelConfig(activation="relu"), init="pytorch",
                optimizer="momentum", learning_rate=0.01, momentum=0.9, schedule="step",
                step_epochs=10, step_factor=0.1, batch_size=64, epochs=20, split="all")


PRESETS: dict[str, Callable[[], Recipe]] = {
    "theano_tutorial": _theano_tutorial,
    "adam_cosine": _adam_cosine,
    "pytorch_sgd": _pytorch_sgd,
}


def preset(name: str) -> Recipe:
  """The named recipe (see ``PRESETS``).

  Example:
    >>> preset("adam_cosine").describe()
    'tanh, Flax init, Adam lr 0.001 cosine, batch 128, 10 epochs, all training images'
  """
  if name not in PRESETS:
    raise ValueError(f"recipe must be a Recipe or one of the presets {sorted(PRESETS)}, "
                     f"got {name!r}")
  return PRESETS[name]()


def _fans(layer) -> tuple[int, int, bool]:
  kernel = layer.kernel[...]
  if isinstance(layer, nnx.Conv):
    receptive = math.prod(kernel.shape[:-2])
    return kernel.shape[-2] * receptive, kernel.shape[-1] * receptive, True
  return kernel.shape[0], kernel.shape[1], False


def initialise(model: nnx.Module, scheme: str, key: jax.Array, *, zero_output: bool = False,
               pool_area: int = 4) -> nnx.Module:
  """Re-initialises every ``nnx.Conv`` and ``nnx.Linear`` of ``model`` in place.

  Args:
    model: an ``nnx.Module``.
    scheme: ``"default"`` (leave the weights as they are), ``"glorot"`` or ``"pytorch"``
      (module docstring).
    key: PRNG key; layer ``k`` (in graph order) draws from ``fold_in(key, k)``.
    zero_output: set the kernel and bias of the last ``nnx.Linear`` to zero.
    pool_area: divides a convolution's fan-out under ``"glorot"``.

  Returns:
    ``model``.

  Example:
    >>> from jsma_jax.models import LeNet
    >>> m = initialise(LeNet(rngs=nnx.Rngs(0)), "pytorch", jax.random.key(1))
    >>> bound = 1 / np.sqrt(5 * 5 * 20)  # conv2: 20 input channels, 5x5
    >>> bool(np.abs(m.conv2.kernel[...]).max() <= bound), bool(np.abs(m.conv2.bias[...]).max() > 0)
    (True, True)
  """
  if scheme not in INITS:
    raise ValueError(f"scheme must be one of {INITS}, got {scheme!r}")
  layers = [m for _, m in nnx.iter_modules(model) if isinstance(m, (nnx.Conv, nnx.Linear))]
  for k, layer in enumerate(layers):
    kernel = layer.kernel[...]
    fan_in, fan_out, is_conv = _fans(layer)
    kkey, bkey = jax.random.split(jax.random.fold_in(key, k))
    if scheme == "glorot":
      bound = math.sqrt(6.0 / (fan_in + (fan_out / pool_area if is_conv else fan_out)))
      layer.kernel[...] = jax.random.uniform(kkey, kernel.shape, kernel.dtype, -bound, bound)
      if layer.bias is not None:
        layer.bias[...] = jnp.zeros_like(layer.bias[...])
    elif scheme == "pytorch":
      bound = 1.0 / math.sqrt(fan_in)
      layer.kernel[...] = jax.random.uniform(kkey, kernel.shape, kernel.dtype, -bound, bound)
      if layer.bias is not None:
        b = layer.bias[...]
        layer.bias[...] = jax.random.uniform(bkey, b.shape, b.dtype, -bound, bound)
  if zero_output:
    linear = [m for m in layers if isinstance(m, nnx.Linear)]
    if not linear:
      raise ValueError("zero_output=True needs an nnx.Linear output layer; the model has none")
    out = linear[-1]
    out.kernel[...] = jnp.zeros_like(out.kernel[...])
    if out.bias is not None:
      out.bias[...] = jnp.zeros_like(out.bias[...])
  return model
