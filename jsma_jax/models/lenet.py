"""Flax NNX models: the paper's LeNet for MNIST and a small CNN for 32x32x3 inputs.

Papernot et al. (2016), Section V, attack "a LeNet-style network": conv 20@5x5, 2x2
max-pool, conv 50@5x5, 2x2 max-pool, dense 500, dense 10. The paper does not state the
activation; the Theano LeNet tutorial it follows uses tanh, which is the default here.
ReLU is the other choice because the activation changes JSMA's success rate a lot.

Both models take NHWC float images in [0, 1] and return logits (no softmax), have no
BatchNorm and no dropout, so inference mode is the only mode and the per-example
Jacobians the attack needs are never coupled across a batch. They are written as a user
would write them (``nnx.Conv``, ``nnx.max_pool``): what keeps them fast inside the
attack's loop is the library's rewrite (:mod:`jsma_jax.rewrite`), which serves any model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Activation = Literal["tanh", "relu"]
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _check_common(activation, num_classes):
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}")


class LeNet(nnx.Module):
  """The paper's LeNet: conv 20@5x5, pool, conv 50@5x5, pool, dense 500, dense N.

  Convolutions are VALID, pools are 2x2 max-pools with stride 2, and the flatten is in
  NHWC order (h, w, c), so ``fc1.kernel`` rows are indexed ``(h * 4 + w) * 50 + c``.

  Args:
    activation: ``"tanh"`` (default, the Theano tutorial's choice) or ``"relu"``.
    num_classes: number of output logits.
    rngs: ``nnx.Rngs`` for the initialisers.

  Returns (on call with ``x`` of shape ``[B, 28, 28, 1]``): logits ``[B, num_classes]``.

  Example:
    >>> model = LeNet(rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
  """

  def __init__(self, *, activation: Activation = "tanh", num_classes: int = 10,
               rngs: nnx.Rngs):
    _check_common(activation, num_classes)
    self.activation = activation
    self.num_classes = int(num_classes)
    self.conv1 = nnx.Conv(1, 20, kernel_size=(5, 5), padding="VALID", rngs=rngs)
    self.conv2 = nnx.Conv(20, 50, kernel_size=(5, 5), padding="VALID", rngs=rngs)
    self.fc1 = nnx.Linear(4 * 4 * 50, 500, rngs=rngs)
    self.fc2 = nnx.Linear(500, self.num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    x = nnx.max_pool(act(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
    x = nnx.max_pool(act(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)  # NHWC flatten: (h, w, c)
    x = act(self.fc1(x))
    return self.fc2(x)


class SmallCNN(nnx.Module):
  """A small CNN for 32x32x3 inputs (CIFAR-10 sized), for the scale experiments.

  conv 32@3x3, conv 32@3x3, pool, conv 64@3x3, conv 64@3x3, pool (SAME padding), dense
  256, dense N; about 1.1M parameters. No BatchNorm, so it is inference-mode only.

  Args:
    activation: ``"relu"`` (default) or ``"tanh"``.
    num_classes: number of output logits.
    rngs: ``nnx.Rngs`` for the initialisers.

  Returns (on call with ``x`` of shape ``[B, 32, 32, 3]``): logits ``[B, num_classes]``.

  Example:
    Shapes only (``jax.eval_shape`` traces the model without computing it):

    >>> out = jax.eval_shape(lambda x: SmallCNN(rngs=nnx.Rngs(0))(x), jnp.zeros((1, 32, 32, 3)))
    >>> out.shape
    (1, 10)
  """

  def __init__(self, *, activation: Activation = "relu", num_classes: int = 10,
               in_channels: int = 3, rngs: nnx.Rngs):
    _check_common(activation, num_classes)
    self.activation = activation
    self.num_classes = int(num_classes)
    conv = lambda i, o: nnx.Conv(i, o, kernel_size=(3, 3), padding="SAME", rngs=rngs)
    self.conv1 = conv(in_channels, 32)
    self.conv2 = conv(32, 32)
    self.conv3 = conv(32, 64)
    self.conv4 = conv(64, 64)
    self.fc1 = nnx.Linear(8 * 8 * 64, 256, rngs=rngs)
    self.fc2 = nnx.Linear(256, self.num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    x = act(self.conv2(act(self.conv1(x))))
    x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = act(self.conv4(act(self.conv3(x))))
    x = nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    return self.fc2(act(self.fc1(x)))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What is needed to rebuild a model: recorded in checkpoints.

  Attributes:
    arch: ``"lenet"``, ``"small_cnn"`` or a name given to :func:`register_architecture`.
    activation: ``"tanh"`` or ``"relu"``.
    num_classes: number of logits.

  Example:
    >>> config = ModelConfig(activation="relu")
    >>> config.input_shape, type(config.build(rngs=nnx.Rngs(0))).__name__
    ((28, 28, 1), 'LeNet')
    >>> ModelConfig(arch="resnet")
    Traceback (most recent call last):
    ValueError: arch must be one of [...], got 'resnet'
  """

  arch: str = "lenet"  # "lenet", "small_cnn" or a name given to register_architecture
  activation: Activation = "tanh"
  num_classes: int = 10

  def __post_init__(self):
    if self.arch not in ARCHITECTURES:
      raise ValueError(f"arch must be one of {sorted(ARCHITECTURES)}, got {self.arch!r}")
    _check_common(self.activation, self.num_classes)

  @property
  def input_shape(self) -> tuple[int, int, int]:
    """The (H, W, C) input shape the architecture expects."""
    return (28, 28, 1) if self.arch == "lenet" else (32, 32, 3)

  def build(self, *, rngs: nnx.Rngs) -> nnx.Module:
    """Builds a freshly initialised model."""
    return ARCHITECTURES[self.arch](activation=self.activation,
                                    num_classes=self.num_classes, rngs=rngs)


ARCHITECTURES = {"lenet": LeNet, "small_cnn": SmallCNN}


def register_architecture(name: str, cls: type) -> type:
  """Make ``ModelConfig(arch=name)`` build ``cls`` (and checkpoints save and load it).

  ``cls(activation=..., num_classes=..., rngs=...)`` must build the model, which must
  keep ``activation`` and ``num_classes`` as attributes.

  Args:
    name: the architecture's name, a non-empty str.
    cls: an ``nnx.Module`` subclass.

  Returns:
    ``cls`` (so it works as ``register_architecture("name", cls)`` after the class).

  Example:
    >>> class Linear(nnx.Module):  # a linear classifier of 28x28x1 digits
    ...   def __init__(self, *, activation="tanh", num_classes=10, rngs):
    ...     self.activation, self.num_classes = activation, num_classes
    ...     self.fc = nnx.Linear(784, num_classes, rngs=rngs)
    ...   def __call__(self, x):
    ...     return self.fc(x.reshape(x.shape[0], -1))
    >>> _ = register_architecture("doc_linear", Linear)
    >>> model = ModelConfig(arch="doc_linear", num_classes=3).build(rngs=nnx.Rngs(0))
    >>> model(jnp.zeros((2, 28, 28, 1))).shape, config_of(model)
    ((2, 3), ModelConfig(arch='doc_linear', activation='tanh', num_classes=3))
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"name must be a non-empty str, got {name!r}")
  if not isinstance(cls, type) or not issubclass(cls, nnx.Module):
    raise TypeError(f"cls must be an nnx.Module subclass, got {cls!r}")
  ARCHITECTURES[name] = cls
  return cls


def config_of(model: nnx.Module) -> ModelConfig:
  """Returns the ``ModelConfig`` of a ``LeNet`` or ``SmallCNN`` (or a registered architecture).

  Args:
    model: a model of a registered architecture (``TypeError`` otherwise).

  Returns:
    the :class:`ModelConfig` that rebuilds it (freshly initialised).

  Example:
    >>> config_of(LeNet(activation="relu", num_classes=5, rngs=nnx.Rngs(0)))
    ModelConfig(arch='lenet', activation='relu', num_classes=5)
  """
  for arch, cls in ARCHITECTURES.items():
    if type(model) is cls:
      return ModelConfig(arch=arch, activation=model.activation,
                         num_classes=model.num_classes)
  raise TypeError(f"model must be a LeNet or SmallCNN, got {type(model).__name__}")


def lenet_numpy_weights(model: LeNet) -> dict[str, np.ndarray]:
  """Exports a LeNet's weights as NumPy arrays, for other frameworks.

  Convolution kernels are HWIO, dense kernels are ``(in, out)``, and ``fc1.kernel`` rows
  follow the NHWC flatten order ``(h, w, c)`` of the 4x4x50 feature map (a PyTorch NCHW
  model must permute them).

  Args:
    model: a ``LeNet``.

  Returns:
    ``{"conv1.kernel": (5, 5, 1, 20), "conv1.bias": (20,), "conv2.kernel": (5, 5, 20, 50),
    "conv2.bias": (50,), "fc1.kernel": (800, 500), "fc1.bias": (500,),
    "fc2.kernel": (500, N), "fc2.bias": (N,), "activation": 0-d str array}``.

  Example:
    >>> w = lenet_numpy_weights(LeNet(rngs=nnx.Rngs(0)))
    >>> w["fc1.kernel"].shape, str(w["activation"])
    ((800, 500), 'tanh')
  """
  if not isinstance(model, LeNet):
    raise TypeError(f"model must be a LeNet, got {type(model).__name__}")
  out = {}
  for name in ("conv1", "conv2", "fc1", "fc2"):
    layer = getattr(model, name)
    out[f"{name}.kernel"] = np.asarray(layer.kernel[...])
    out[f"{name}.bias"] = np.asarray(layer.bias[...])
  out["activation"] = np.array(model.activation)
  return out
