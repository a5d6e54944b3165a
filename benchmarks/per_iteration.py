"""Cost of one attack iteration, part by part: each Jacobian mode and each pair search.

Measures, on the paper's LeNet and real MNIST digits, per example and
iteration: the forward derivative rows in the modes ``reduced`` (one forward
pass, two VJPs), ``jacrev`` (ten VJPs) and ``jacfwd`` (784 JVPs), and the pair
search dense (all M^2 pairs, fused) and pruned (top-K candidates with the
AM-GM certificate; its certification rate is reported). Compilation is timed
apart; times are medians over repeats after a warm-up call.

    python benchmarks/per_iteration.py --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist
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
  parser.add_argument("--fwd-batch", type=int, default=16, help="jacfwd is ~M/2 times dearer: a smaller batch")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()

  from jsma_jax.models import as_logits_fn, load_checkpoint, load_mnist

  model, _ = load_checkpoint(args.checkpoint)
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
  for mode in ("reduced", "jacrev", "jacfwd"):
    batch = args.fwd_batch if mode == "jacfwd" else args.batch
    fn = jax.jit(jax.vmap(lambda v, t, mode=mode: jac_lib.rows_one(f, v, lambda o: rule.cotangents(o, t), mode)))
    run, compile_s = timed(fn, flat[:batch], tb[:batch], repeats=args.repeats)
    rows[f"jacobian/{mode}"] = {"ms_per_example": 1e3 * run / batch, "compile_s": compile_s, "batch": batch}
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
    print(f"{name:26s} {row['ms_per_example']:9.3f} ms per example and iteration (compile {row['compile_s']:.1f} s{extra})")
  print(f"auto picks: {jac_lib.resolve_mode('auto', 784, 10, 2)}")
  if args.out:
    Path(args.out).write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
