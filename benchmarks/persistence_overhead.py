r"""What resumable training and atomic checkpoints cost: per epoch, and per save.

    python benchmarks/persistence_overhead.py --data-dir ../shared/data/mnist

Measures, for the paper's LeNet on full MNIST (the ``theano_tutorial`` recipe's
50,000-image training split and the 10,000 test images): the data digests that
``train(checkpoint_dir=...)`` computes once per call (to refuse another run's state), the
per-epoch write of ``train_state.msgpack`` (weights + optimiser state + history, fsynced
and renamed) for plain SGD and for Adam, and one atomic ``save_checkpoint`` (the folder
written beside the old one, fsynced, swapped). Medians of ``--repeats`` after one
warm-up; the machine and its load average are printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import jax
from flax import nnx

from jsma_jax.models import LeNet, holdout_split, load_mnist, make_optimizer, preset, save_checkpoint, train_state
from jsma_jax.models.checkpoint import cpu_model


def _median_seconds(fn, repeats: int) -> float:
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--data-dir", default=os.path.join("..", "shared", "data", "mnist"))
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.platform()}, JAX {jax.__version__}; "
        f"load average at start {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
  x, y = load_mnist("idx", data_dir=args.data_dir, split="train")
  test = load_mnist("idx", data_dir=args.data_dir, split="test")
  train_idx, _ = holdout_split(len(y))
  train_data = (x, y)
  seconds = _median_seconds(lambda: (train_state.data_digest(train_data), train_state.data_digest(test)),
                            args.repeats)
  print(f"data digests (60,000 + 10,000 images, once per train call): {seconds:.3f} s")
  model = LeNet(rngs=nnx.Rngs(0))
  params = nnx.to_pure_dict(nnx.state(model))
  history = {"train_loss": [0.1] * 200, "train_accuracy": [0.9] * 200, "test_accuracy": [0.99] * 200,
             "validation_accuracy": [0.99] * 200, "epoch_seconds": [30.0] * 200}
  steps = len(train_idx) // 500
  folder = tempfile.mkdtemp()
  for name in ("theano_tutorial", "adam_cosine"):
    tx = make_optimizer(preset(name), steps)
    opt_state = tx.init(params)
    ident = {"recipe": preset(name).to_dict()}
    seconds = _median_seconds(lambda: train_state.save(folder, ident, 200, params, opt_state, history),
                              args.repeats)
    size = os.path.getsize(os.path.join(folder, train_state.STATE_FILE))
    print(f"per-epoch state write, {name} ({preset(name).optimizer}): {seconds * 1e3:.1f} ms, "
          f"{size / 1e6:.2f} MB")
  path = os.path.join(folder, "lenet")
  seconds = _median_seconds(lambda: save_checkpoint(path, model, {"history": history}), args.repeats)
  print(f"atomic save_checkpoint over an existing one (with weights.npz): {seconds * 1e3:.1f} ms")
  print(f"load average at end {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
  main()
