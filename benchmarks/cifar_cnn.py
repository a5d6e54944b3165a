"""A CIFAR-sized CNN written the way people write one in Flax NNX, for bench_attacks.py.

The third model kind of ``benchmarks/bench_attacks.py --model cifar-cnn``: 32x32x3 inputs,
3x3 convolutions with SAME padding (the second and third with stride 2), BatchNorm after
every convolution (inference mode when attacked: ``as_logits_fn`` views the model with
``use_running_average=True``, and the running statistics are the ones training left,
not the initial zeros and ones), ReLU, a 2x2 VALID average pool (``nnx.avg_pool``) and a
dense head (hidden 128, ReLU, 10 logits)::

    conv1  3->16, 3x3, stride 1, SAME   -> bn1 -> relu     32x32x16
    conv2 16->32, 3x3, stride 2, SAME   -> bn2 -> relu     16x16x32
    conv3 32->64, 3x3, stride 2, SAME   -> bn3 -> relu      8x8x64
    avg_pool 2x2, stride 2, VALID                           4x4x64
    flatten (NHWC order) -> fc1 1024->128 -> relu -> fc2 128->10

**The data is a stand-in, not CIFAR-10.** No CIFAR data is on the benchmark machine and
it has no network, so the images are MNIST digits (the IDX files of ``--data-dir``, or
the embedded split) padded by 2 pixels to 32x32 and tinted: channel ``c`` of image ``i``
is the digit times a colour drawn once per image from ``uniform(0.5, 1.0)^3`` with a
fixed seed (so the three channels differ and few pixels sit at the clip bound of 1).
The labels are the digits'. The attack sees 3,072 features as on CIFAR-10; the images
are easier than CIFAR-10's, which is what lets a short CPU training give a model that
classifies well enough for targeted attacks to mean something. Measured speed depends
on the model's size, the number of features and the iterations the attacks take, not on
what the images show; but success rates and L0 on this stand-in say nothing about CIFAR.

Weights: trained here, briefly (Adam, ``epochs`` passes over ``n_train`` stand-in
training images; about half a minute on 2 CPU cores), with BatchNorm momentum 0.9 so
that the running statistics settle within the short run. The result is cached under
``runs/bench/`` (git-ignored), keyed by a hash of the training settings and this file's
architecture version, so later runs reuse it. ``numpy_weights`` exports the weights as
a flat dict (``"conv1.kernel"`` HWIO, ``"bn1.mean"``, ..., ``"fc1.kernel"`` with rows in
NHWC flatten order, ``"kind": "cifar-cnn"``) for the PyTorch port
``peers.TorchCifarCNN``.

    python benchmarks/cifar_cnn.py --data-dir ../shared/data/mnist   # train (or load) and report
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE_DIR = ROOT / "runs" / "bench"
ARCH_VERSION = "cifar-cnn v1: 16/32/64 SAME convs (strides 1,2,2), BN, relu, avgpool2 VALID, 128, 10"
BN_EPSILON = 1e-5  # flax's default; the torch port uses the same
BN_MOMENTUM = 0.9
KIND = "cifar-cnn"


class CifarCNN(nnx.Module):
  """The CNN of the module docstring (NHWC input ``[B, 32, 32, 3]`` in [0, 1])."""

  def __init__(self, *, in_channels: int = 3, num_classes: int = 10, rngs: nnx.Rngs):
    bn = dict(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)
    self.conv1 = nnx.Conv(in_channels, 16, kernel_size=(3, 3), strides=(1, 1), padding="SAME", rngs=rngs)
    self.bn1 = nnx.BatchNorm(16, **bn)
    self.conv2 = nnx.Conv(16, 32, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
    self.bn2 = nnx.BatchNorm(32, **bn)
    self.conv3 = nnx.Conv(32, 64, kernel_size=(3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
    self.bn3 = nnx.BatchNorm(64, **bn)
    self.fc1 = nnx.Linear(4 * 4 * 64, 128, rngs=rngs)
    self.fc2 = nnx.Linear(128, num_classes, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.bn1(self.conv1(x)))  # 32x32x16
    x = nnx.relu(self.bn2(self.conv2(x)))  # 16x16x32
    x = nnx.relu(self.bn3(self.conv3(x)))  # 8x8x64
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")  # 4x4x64
    x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
    return self.fc2(x)


# ---------------------------------------------------------------- stand-in data

def standin(images: np.ndarray, labels: np.ndarray, *, offset: int = 0, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
  """MNIST ``[n, 28, 28, 1]`` -> tinted ``[n, 32, 32, 3]`` float32 in [0, 1] (see the docstring).

  The tint of image ``i`` depends only on ``seed`` and ``offset + i``, so any slice of a
  split gets the same images whichever way it is cut.
  """
  images = np.asarray(images, np.float32)
  n = len(images)
  rng = np.random.default_rng(seed)
  colours = rng.uniform(0.5, 1.0, size=(offset + n, 3)).astype(np.float32)[offset:]
  padded = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))
  x = padded[..., None] * colours[:, None, None, :]
  return np.clip(x, 0.0, 1.0).astype(np.float32), np.asarray(labels, np.int32)


def load_standin(split: str, n: int, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The first ``n`` stand-in images of ``split`` ("train" or "test")."""
  from jsma_jax.models import load_mnist

  if data_dir:
    x, y = load_mnist("idx", data_dir=data_dir, split=split)
  else:
    x, y = load_mnist("embedded", split=split)
  return standin(x[:n], y[:n], seed={"train": 1, "test": 2}[split])


# ---------------------------------------------------------------- weights

def numpy_weights(model: CifarCNN) -> dict[str, np.ndarray]:
  """Flat NumPy dict of all the model's state (parameters and BatchNorm statistics)."""
  flat = {}

  def walk(prefix, tree):
    for k, v in tree.items():
      if isinstance(v, dict):
        walk(f"{prefix}{k}.", v)
      else:
        flat[f"{prefix}{k}"] = np.asarray(v)

  walk("", nnx.to_pure_dict(nnx.state(model)))
  flat["kind"] = np.array(KIND)
  flat["bn_epsilon"] = np.array(BN_EPSILON, np.float64)
  return flat


def from_numpy_weights(weights: dict) -> CifarCNN:
  """The :class:`CifarCNN` holding ``weights`` (a :func:`numpy_weights` dict)."""
  if str(weights.get("kind", "")) != KIND:
    raise ValueError(f"not {KIND} weights: kind={weights.get('kind')!r}")
  model = CifarCNN(in_channels=int(np.shape(weights["conv1.kernel"])[2]),
                   num_classes=int(np.shape(weights["fc2.bias"])[0]), rngs=nnx.Rngs(0))
  state = nnx.state(model)
  pure = nnx.to_pure_dict(state)

  def fill(prefix, tree):
    for k, v in tree.items():
      if isinstance(v, dict):
        fill(f"{prefix}{k}.", v)
      else:
        w = np.asarray(weights[f"{prefix}{k}"])
        if w.shape != v.shape:
          raise ValueError(f"{prefix}{k}: shape {w.shape}, expected {v.shape}")
        tree[k] = jnp.asarray(w, v.dtype)

  fill("", pure)
  nnx.replace_by_pure_dict(state, pure)
  nnx.update(model, state)
  return model


def _accuracy(model: CifarCNN, x: np.ndarray, y: np.ndarray) -> float:
  from jsma_jax.models import as_logits_fn

  apply_fn, params = as_logits_fn(model)
  f = jax.jit(apply_fn)
  pred = np.concatenate([np.argmax(f(params, jnp.asarray(x[i:i + 500])), 1) for i in range(0, len(x), 500)])
  return float(np.mean(pred == y))


def train(x: np.ndarray, y: np.ndarray, *, epochs: int = 2, batch_size: int = 64, lr: float = 2e-3,
          seed: int = 0, print_fn=print) -> tuple[CifarCNN, dict]:
  """Trains a fresh :class:`CifarCNN` (BatchNorm in training mode) with Adam."""
  import optax

  model = CifarCNN(in_channels=x.shape[-1], rngs=nnx.Rngs(seed))
  optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, xb, yb):
    def loss_fn(model):
      logits = model(xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  rng = np.random.default_rng(seed)
  steps = len(x) // batch_size
  start, losses = time.perf_counter(), []
  for epoch in range(epochs):
    perm = rng.permutation(len(x))
    for i in range(steps):
      idx = perm[i * batch_size:(i + 1) * batch_size]
      losses.append(float(step(model, optimizer, jnp.asarray(x[idx]), jnp.asarray(y[idx]))))
    if print_fn:
      print_fn(f"  epoch {epoch + 1}/{epochs}: mean loss {np.mean(losses[-steps:]):.4f} "
               f"({time.perf_counter() - start:.1f} s)")
  return model, {"train_seconds": time.perf_counter() - start, "steps": epochs * steps,
                 "final_loss": float(np.mean(losses[-max(steps // 4, 1):]))}


def load_or_train(*, data_dir: str | None = None, n_train: int = 8000, epochs: int = 2,
                  batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                  cache_dir: str | os.PathLike = CACHE_DIR, print_fn=print) -> tuple[CifarCNN, dict]:
  """The trained stand-in model from the cache, training and caching it first if needed.

  Returns ``(model, meta)``; ``meta`` has the training settings, ``standin_test_accuracy``
  (on the first 2,000 stand-in test images), the cache ``path`` and ``trained_now``.
  """
  settings = {"arch": ARCH_VERSION, "data": "MNIST padded to 32x32, tinted (stand-in for CIFAR-10)",
              "data_source": "idx" if data_dir else "embedded", "n_train": n_train, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "seed": seed, "bn_momentum": BN_MOMENTUM}
  key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
  path = Path(cache_dir) / f"cifar_cnn_standin_{key}.npz"
  meta_path = path.with_suffix(".json")
  if path.exists() and meta_path.exists():
    with np.load(path, allow_pickle=False) as f:
      weights = dict(f)
    meta = json.loads(meta_path.read_text())
    meta.update(path=str(path), trained_now=False)
    return from_numpy_weights(weights), meta
  x, y = load_standin("train", n_train, data_dir)
  if print_fn:
    print_fn(f"training the stand-in CIFAR-sized CNN on {len(x)} tinted 32x32 MNIST digits "
             f"({epochs} epochs, batch {batch_size}); cached at {path}")
  model, history = train(x, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, print_fn=print_fn)
  xt, yt = load_standin("test", 2000, data_dir)
  meta = {"settings": settings, **history, "standin_test_accuracy": _accuracy(model, xt, yt),
          "bn_running_mean_abs_mean": float(np.mean([np.abs(np.asarray(getattr(model, b).mean[...])).mean()
                                                     for b in ("bn1", "bn2", "bn3")])),
          "bn_running_var_mean": float(np.mean([np.asarray(getattr(model, b).var[...]).mean()
                                                for b in ("bn1", "bn2", "bn3")]))}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
  np.savez(tmp, **numpy_weights(model))
  os.replace(tmp, path)
  meta_path.write_text(json.dumps(meta, indent=2))
  if print_fn:
    print_fn(f"  stand-in test accuracy {meta['standin_test_accuracy']:.4f}, {history['train_seconds']:.1f} s")
  meta.update(path=str(path), trained_now=True)
  return model, meta


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: the embedded split)")
  parser.add_argument("--n-train", type=int, default=8000)
  parser.add_argument("--epochs", type=int, default=2)
  args = parser.parse_args()
  _, meta = load_or_train(data_dir=args.data_dir, n_train=args.n_train, epochs=args.epochs)
  print(json.dumps(meta, indent=2))


if __name__ == "__main__":
  main()
