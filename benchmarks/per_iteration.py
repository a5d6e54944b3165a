"""Cost of one attack iteration, part by part: each Jacobian mode and each pair search.

Measures, on the paper's LeNet and real MNIST digits, per example and
iteration: the forward derivative rows in the modes ``reduced`` (one forward
pass, two VJPs), ``jacrev`` (ten VJPs) and ``jacfwd`` (784 JVPs, ``jvp_chunk``
tangents at a time: one row per chunk size, with XLA's temp memory), and the pair
search dense (all M^2 pairs, fused) and pruned (top-K candidates with the
AM-GM certificate; its certification rate is reported). Compilation is timed
apart; times are medians over repeats after a warm-up call.

    python benchmarks/per_iteration.py --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist

Without the checkpoint the LeNet is randomly initialised (seed 0): the cost per
iteration does not depend on the weights (no data-dependent control flow).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jsma_jax
from jsma_jax import jacobian as jac_lib
from jsma_jax.pair_search import best_pairs, candidate_pair
from jsma_jax.rules import jsma_rule
from jsma_jax.saliency import best_pair


def timed(fn, *args, repeats: int) -> tuple[float, float]:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  run = statistics.median(times)
  return run, max(first - run, 0.0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default="runs/models/lenet_tanh_mnist")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--fwd-batch", type=int, default=None, help="batch for jacfwd (default: --batch)")
  parser.add_argument("--jvp-chunks", default="8", help="jacfwd chunk sizes to time, comma-separated")
  parser.add_argument("--fwd-repeats", type=int, default=1, help="jacfwd is ~M/2 times dearer: fewer repeats")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()

  from flax import nnx

  from jsma_jax.models import LeNet, as_logits_fn, load_checkpoint, load_mnist
  from jsma_jax.models.checkpoint import cpu_model

  if Path(args.checkpoint).exists():
    model, _ = load_checkpoint(args.checkpoint)
    weights = args.checkpoint
  else:
    model, weights = LeNet(rngs=nnx.Rngs(0)), "random init (seed 0): no checkpoint at " + args.checkpoint
  apply_fn, params = as_logits_fn(model)
  if args.data_dir:
    x, y = load_mnist("idx", data_dir=args.data_dir, split="test")
  else:
    x, y = load_mnist("embedded", split="test")
  e = jsma_jax.all_other_targets(x[: args.batch], y[: args.batch], 10)
  xb, tb = e.x[: args.batch], e.targets[: args.batch]
  flat = xb.reshape(args.batch, -1)
  rule = jsma_rule()
  f = lambda v: apply_fn(params, v.reshape((1, 28, 28, 1)))[0]
  rows = {}
  print(f"device: {jax.devices()[0]}, batch {args.batch}")
  chunks = [int(c) for c in args.jvp_chunks.split(",") if c]
  for mode, chunk in [("reduced", None), ("jacrev", None)] + [("jacfwd", c) for c in chunks]:
    batch = (args.fwd_batch or args.batch) if mode == "jacfwd" else args.batch
    one = lambda v, t, mode=mode, chunk=chunk: jac_lib.rows_one(
        f, v, lambda o: rule.cotangents(o, t), mode, jvp_chunk=chunk or jac_lib.JVP_CHUNK)
    fn = jax.jit(jax.vmap(one))
    start = time.perf_counter()
    temp = fn.lower(flat[:batch], tb[:batch]).compile().memory_analysis().temp_size_in_bytes
    compile_s = time.perf_counter() - start  # the jit call below reuses this executable
    run, _ = timed(fn, flat[:batch], tb[:batch], repeats=args.fwd_repeats if mode == "jacfwd" else args.repeats)
    name = f"jacobian/{mode}" + (f"_chunk{chunk}" if chunk else "")
    rows[name] = {"ms_per_example": 1e3 * run / batch, "compile_s": compile_s, "batch": batch, "temp_mb": temp / 1e6}
    if chunk:
      rows[name]["jvp_chunk"] = chunk
    print(f"{name:26s} {rows[name]['ms_per_example']:9.3f} ms per example and iteration, "
          f"{temp / 1e6:.0f} MB", flush=True)
  _, a, b = jsma_jax.target_rows(apply_fn, xb, tb, params=params)
  a, b = a.reshape(args.batch, -1), b.reshape(args.batch, -1)
  domain = flat < 1
  dense = jax.jit(jax.vmap(lambda a, b, d: best_pair(a, b, d)))
  run, compile_s = timed(dense, a, b, domain, repeats=args.repeats)
  rows["pair_search/dense"] = {"ms_per_example": 1e3 * run / args.batch, "compile_s": compile_s, "batch": args.batch}
  for k in (16, 64):
    pruned = jax.jit(lambda a, b, d, k=k: best_pairs(a, b, d, increase=True, k=k, chunk=32))
    run, compile_s = timed(pruned, a, b, domain, repeats=args.repeats)
    cert = jax.vmap(lambda a, b, d, k=k: candidate_pair(a, b, d, increase=True, k=k))(a, b, domain).certified
    got, want = pruned(a, b, domain), dense(a, b, domain)
    assert all(np.array_equal(g, w) for g, w in zip(got, want)), "pruned search differs from dense"
    rows[f"pair_search/pruned_k{k}"] = {
        "ms_per_example": 1e3 * run / args.batch, "compile_s": compile_s, "batch": args.batch,
        "certified_first_iteration": float(np.mean(cert)),
    }
  for name, row in rows.items():
    extra = f", certified {row['certified_first_iteration']:.1%}" if "certified_first_iteration" in row else ""
    print(f"{name:26s} {row['ms_per_example']:9.3f} ms per example and iteration "
          f"(compile {row['compile_s']:.1f} s{extra})")
  print(f"auto picks: {jac_lib.resolve_mode('auto', 784, 10, 2)}")
  machine = {"device": str(jax.devices()[0]), "processor": platform.processor(), "cpu": cpu_model(),
             "cpu_count": os.cpu_count(), "jax": jax.__version__, "default_jvp_chunk": jac_lib.JVP_CHUNK}
  if args.out:
    Path(args.out).write_text(json.dumps({**machine, "weights": weights, "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
