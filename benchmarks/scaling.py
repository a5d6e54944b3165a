"""Scaling curves: attacks/s and peak memory against the batch size and against M.

* Batch: the paper's LeNet on MNIST (M = 784), every source towards its 9 other
  classes, batch sizes from ``--batches``; attacks/s (median of repeats after a
  warm-up, compile time apart) and peak memory. Peak memory is the device's
  ``peak_bytes_in_use`` on a GPU; on the CPU it is XLA's buffer assignment for
  the compiled program (arguments + outputs + temporaries), which the CPU
  runtime does not report otherwise. Batches too long to run on a CPU are only
  compiled (memory, no time): ``--compile-only-batches``.
* Features: a small fully-convolutional CNN (two stride-2 3x3 convolutions,
  global average pooling, dense; it fits any image size) on inputs of
  28x28x1, 32x32x3, 64x64x3 and 224x224x3 (M = 784 ... 150,528), exact pairwise
  rule, a few iterations: seconds per iteration and peak memory. At 224x224x3
  one n x n float32 pair matrix would take 84 GiB.
* CIFAR-sized batch: the package's ``SmallCNN`` (32x32x3, about 1.1M
  parameters, random weights: no CIFAR-10 files are at hand offline) attacked on
  ``--cifar-batch`` random images at once (default 1,000), ``--cifar-iterations``
  iterations each: attack-iterations per second and peak memory.

    python benchmarks/scaling.py --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax

SIZES = {"28x28x1": (28, 28, 1), "32x32x3": (32, 32, 3), "64x64x3": (64, 64, 3), "224x224x3": (224, 224, 3)}


def fcn_params(channels: int, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  f = lambda *s: jnp.asarray(rng.normal(size=s) / np.sqrt(np.prod(s[:-1])), jnp.float32)
  return {"k1": f(3, 3, channels, 16), "k2": f(3, 3, 16, 32), "w": f(32, 10) * 4, "c": jnp.zeros(10)}


def apply_fcn(params, x):
  dn = ("NHWC", "HWIO", "NHWC")
  h = jax.nn.relu(jax.lax.conv_general_dilated(x, params["k1"], (2, 2), "SAME", dimension_numbers=dn))
  h = jax.nn.relu(jax.lax.conv_general_dilated(h, params["k2"], (2, 2), "SAME", dimension_numbers=dn))
  return jnp.mean(h, axis=(1, 2)) @ params["w"] + params["c"]


def compiled_bytes(apply_fn, params, x, t, **options) -> int:
  compiled = jsma_jax.lower(apply_fn, x, t, params=params, theta=1.0, gamma=0.145, **options).compile()
  m = compiled.memory_analysis()
  return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)


def peak_memory(fallback: int) -> tuple[float, str]:
  stats = jax.devices()[0].memory_stats()
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20, "device peak_bytes_in_use"
  return fallback / 2**20, "XLA buffer assignment (CPU)"


def run_timed(fn, repeats: int) -> tuple[float, float, object]:
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  run = statistics.median(times)
  return run, max(first - run, 0.0), out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default="runs/models/lenet_tanh_mnist")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--batches", default="90,270,900")
  parser.add_argument("--compile-only-batches", default="10000,90000")
  parser.add_argument("--sizes", default=",".join(SIZES))
  parser.add_argument("--feature-batch", type=int, default=8)
  parser.add_argument("--feature-iterations", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--cifar-batch", type=int, default=1000, help="0: skip the CIFAR-sized batch")
  parser.add_argument("--cifar-iterations", type=int, default=10)
  parser.add_argument("--out", default="benchmarks/results/scaling")
  parser.add_argument("--replot", action="store_true", help="only redraw scaling.png from --out's scaling.json")
  args = parser.parse_args()
  out_dir = Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  if args.replot:
    data = json.loads((out_dir / "scaling.json").read_text())
    plot(data["device"], data["batch"], data["features"], out_dir)
    return
  from jsma_jax.models import as_logits_fn, load_checkpoint, load_mnist

  model, _ = load_checkpoint(args.checkpoint)
  apply_fn, params = as_logits_fn(model)
  x, y = (load_mnist("idx", data_dir=args.data_dir, split="test")
          if args.data_dir else load_mnist("embedded", split="test"))
  e = jsma_jax.all_other_targets(x[:20_000], y[:20_000], 10)
  device = str(jax.devices()[0])
  print(f"device: {device}")

  batch_rows = []
  for b in [int(v) for v in args.batches.split(",") if v]:
    reps = -(-b // e.x.shape[0])  # more attacks than sources x 9: the work repeats
    xb, tb = jnp.tile(e.x, (reps, 1, 1, 1))[:b], jnp.tile(e.targets, reps)[:b]
    run, compile_s, r = run_timed(lambda: jsma_jax.jsma(apply_fn, xb, tb, params=params), args.repeats)
    mem, kind = peak_memory(compiled_bytes(apply_fn, params, xb, tb))
    row = {"batch": b, "attacks_per_second": b / run, "seconds": run, "compile_seconds": compile_s,
           "peak_memory_mb": mem, "memory_kind": kind, "success_rate": float(r.success.mean())}
    batch_rows.append(row)
    print(f"batch {b:6d}: {row['attacks_per_second']:8.1f} attacks/s, peak {mem:8.1f} MB ({kind})", flush=True)
  for b in [int(v) for v in args.compile_only_batches.split(",") if v]:
    xb = jnp.zeros((b, 28, 28, 1), jnp.float32)
    tb = jnp.zeros((b,), jnp.int32)
    mem = compiled_bytes(apply_fn, params, xb, tb) / 2**20
    batch_rows.append({"batch": b, "peak_memory_mb": mem, "memory_kind": "XLA buffer assignment (compiled, not run)"})
    print(f"batch {b:6d}: compiled only, {mem:8.1f} MB", flush=True)

  feature_rows = []
  for name in args.sizes.split(","):
    shape = SIZES[name]
    m = int(np.prod(shape))
    p = fcn_params(shape[-1])
    xs = jnp.asarray(np.random.default_rng(0).uniform(0, 0.5, size=(args.feature_batch,) + shape), jnp.float32)
    pred = jnp.argmax(apply_fcn(p, xs), axis=1)
    ts = ((pred + 1) % 10).astype(jnp.int32)
    k = args.feature_iterations
    fn = lambda: jsma_jax.jsma(apply_fcn, xs, ts, params=p, max_iter=k)
    run, compile_s, r = run_timed(fn, max(1, args.repeats - 1))
    steps = int(jnp.max(r.iterations)) + 1
    mem, kind = peak_memory(compiled_bytes(apply_fcn, p, xs, ts, max_iter=k))
    row = {"input": name, "features": m, "batch": args.feature_batch, "iterations": k,
           "seconds_per_iteration": run / steps, "compile_seconds": compile_s, "peak_memory_mb": mem,
           "memory_kind": kind, "pair_matrix_gib_if_materialised": m * m * 4 / 2**30}
    feature_rows.append(row)
    print(f"{name:10s} M={m:7d}: {row['seconds_per_iteration']*1e3:9.1f} ms per iteration "
          f"for {args.feature_batch} examples, "
          f"peak {mem:8.1f} MB "
          f"(one M x M float32 matrix: {row['pair_matrix_gib_if_materialised']:.1f} GiB)", flush=True)

  cifar_rows = []
  if args.cifar_batch:
    from flax import nnx

    from jsma_jax.models import SmallCNN

    cnn_fn, cnn_params = as_logits_fn(SmallCNN(rngs=nnx.Rngs(0)))
    xs = jnp.asarray(np.random.default_rng(1).uniform(0, 0.5, size=(args.cifar_batch, 32, 32, 3)), jnp.float32)
    ts = ((jnp.argmax(cnn_fn(cnn_params, xs), axis=1) + 1) % 10).astype(jnp.int32)
    k = args.cifar_iterations
    fn = lambda: jsma_jax.jsma(cnn_fn, xs, ts, params=cnn_params, max_iter=k)
    run, compile_s, r = run_timed(fn, max(1, args.repeats - 2))
    steps = int(jnp.sum(r.iterations))
    mem, kind = peak_memory(compiled_bytes(cnn_fn, cnn_params, xs, ts, max_iter=k))
    cifar_rows.append({"model": "SmallCNN (random weights)", "input": "32x32x3", "batch": args.cifar_batch,
                       "max_iter": k, "attack_iterations": steps, "seconds": run, "compile_seconds": compile_s,
                       "attack_iterations_per_second": steps / run, "peak_memory_mb": mem, "memory_kind": kind,
                       "success_rate": float(r.success.mean())})
    print(f"SmallCNN 32x32x3 batch {args.cifar_batch}: {steps} attack-iterations in {run:.1f} s "
          f"({steps / run:.0f}/s), peak {mem:.1f} MB ({kind})", flush=True)

  (out_dir / "scaling.json").write_text(
      json.dumps({"device": device, "batch": batch_rows, "features": feature_rows, "cifar": cifar_rows}, indent=2)
  )
  print(f"wrote {out_dir / 'scaling.json'}")
  if batch_rows and feature_rows:
    plot(device, batch_rows, feature_rows, out_dir)


def plot(device: str, batch_rows: list, feature_rows: list, out_dir: Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  axes = axes.ravel()
  timed_rows = [r for r in batch_rows if "attacks_per_second" in r]
  axes[0].plot([r["batch"] for r in timed_rows], [r["attacks_per_second"] for r in timed_rows], "o-")
  axes[0].set(xscale="log", xlabel="batch (attacks)", ylabel="attacks/s", title=f"LeNet/MNIST throughput ({device})")
  axes[1].plot([r["batch"] for r in batch_rows], [r["peak_memory_mb"] for r in batch_rows], "o-")
  axes[1].set(xscale="log", yscale="log", xlabel="batch (attacks)", ylabel="peak memory (MB)", title="memory vs batch")
  ms = [r["features"] for r in feature_rows]
  axes[2].plot(ms, [r["seconds_per_iteration"] * 1e3 for r in feature_rows], "o-")
  axes[2].set(xscale="log", yscale="log", xlabel="features M", ylabel="ms per iteration",
              title=f"time per iteration vs M (batch {feature_rows[0]['batch']}, exact pairs)")
  axes[3].plot(ms, [r["peak_memory_mb"] for r in feature_rows], "o-", label="jsma-jax peak")
  axes[3].plot(ms, [r["pair_matrix_gib_if_materialised"] * 1024 * r["batch"] for r in feature_rows],
               "x--", label="B x M x M float32 (not built)")
  axes[3].set(xscale="log", yscale="log", xlabel="features M", ylabel="MB",
              title=f"memory vs M (batch {feature_rows[0]['batch']})")
  axes[3].legend()
  fig.tight_layout()
  fig.savefig(out_dir / "scaling.png", dpi=110)
  print(f"wrote {out_dir / 'scaling.png'}")


if __name__ == "__main__":
  main()
