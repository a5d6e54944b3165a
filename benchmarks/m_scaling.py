"""Exact JSMA against the number of features M, up to a million: per-iteration time and peak memory.

Grosse et al. (ESORICS 2017) attack a feed-forward malware detector over DREBIN's
545,333 binary features, 545,333 -> 200 -> 200 -> 2, adding features only, with a
budget of a few tens of changes. This runs that setting on synthetic sparse apps
(50 features set per app, random ReLU weights biased towards "malicious"):
non-targeted rule away from the malicious class, theta = +1 on [0, 1], mask
``x == 0`` (additions only), ``max_changes = 20``, pairs and single features, for
M = 10^3 .. 10^6. Each M runs in its own process so its peak RSS is its own.

The attack's working memory is ``O(S x M)`` for ``S`` examples in flight (the
compiled program's temporary buffers are reported from XLA's memory analysis);
every peer's pairwise search builds an ``M x M`` pair matrix per example, whose
size is computed here (4 bytes a pair).

Usage::

    python benchmarks/m_scaling.py                       # the table (a few minutes on 2 cores)
    python benchmarks/m_scaling.py --sizes 1000 545333    # some sizes only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SIZES = (1_000, 10_000, 100_000, 545_333, 1_000_000)
HIDDEN, EXAMPLES, ONES, CHANGES = 200, 4, 50, 20


def detector(params, x):
  """Feed-forward M -> 200 -> 200 -> 2 (ReLU); class 1 is "malicious"."""
  import jax

  h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params["w1"] + params["b1"])
  h = jax.nn.relu(h @ params["w2"] + params["b2"])
  return h @ params["w3"] + params["b3"]


def problem(m: int, seed: int = 0):
  """Random detector weights and sparse binary apps (``ONES`` features set), all classified malicious."""
  rng = np.random.default_rng(seed)
  f32 = lambda v: np.asarray(v, np.float32)
  params = {
      "w1": f32(rng.standard_normal((m, HIDDEN)) * np.sqrt(2.0 / ONES)), "b1": f32(np.full(HIDDEN, 0.1)),
      "w2": f32(rng.standard_normal((HIDDEN, HIDDEN)) * np.sqrt(2.0 / HIDDEN)), "b2": f32(np.zeros(HIDDEN)),
      "w3": f32(rng.standard_normal((HIDDEN, 2)) * np.sqrt(1.0 / HIDDEN)), "b3": f32([0.0, 0.0]),
  }
  x = np.zeros((EXAMPLES, m), np.float32)
  for i in range(EXAMPLES):
    x[i, rng.choice(m, ONES, replace=False)] = 1.0
  z = np.asarray(detector(params, x))
  params["b3"] = f32([0.0, max(0.0, float(np.max(z[:, 0] - z[:, 1]))) + 2.0])  # every app starts malicious
  return params, x


def one(m: int, pairwise: bool, repeats: int) -> dict:
  """One size in this process: compile apart, then the median wall time of ``repeats`` attacks."""
  import jax
  from bench_attacks import peak_rss_mb

  import jsma_jax
  from jsma_jax.family import untargeted_rule

  params, x = problem(m)
  labels = np.ones(EXAMPLES, np.int32)
  kw = dict(params=params, rule=untargeted_rule(), theta=1.0, clip_min=0.0, clip_max=1.0, mask=x == 0,
            max_changes=CHANGES, pairwise=pairwise, pad_batches=False)
  t0 = time.perf_counter()
  compiled = jsma_jax.lower(detector, x, labels, **kw).compile()
  compile_s = time.perf_counter() - t0
  memory = compiled.memory_analysis()
  result = jax.block_until_ready(jsma_jax.jsma(detector, x, labels, **kw))  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    result = jax.block_until_ready(jsma_jax.jsma(detector, x, labels, **kw))
    times.append(time.perf_counter() - t0)
  iterations = int(np.asarray(result.iterations).max())  # the refill loop's steps: at least the longest attack
  x_adv = np.asarray(result.x_adv)
  assert np.all(x_adv >= x) and np.all(np.asarray(result.n_changed) <= CHANGES)
  return {
      "m": m, "pairwise": pairwise, "examples": EXAMPLES, "compile_s": compile_s,
      "attack_s_median": float(np.median(times)), "iterations_max": iterations,
      "iterations_total": int(np.asarray(result.iterations).sum()),
      "per_iteration_s": float(np.median(times)) / max(1, iterations),
      "success": np.asarray(result.success).tolist(), "n_changed": np.asarray(result.n_changed).tolist(),
      "temp_mb": getattr(memory, "temp_size_in_bytes", 0) / 2**20,
      "argument_mb": getattr(memory, "argument_size_in_bytes", 0) / 2**20,
      "peak_rss_mb": peak_rss_mb(),
      "weights_mb": sum(v.nbytes for v in params.values()) / 2**20,
      "peer_pair_matrix_gb_per_example": 4 * m * m / 2**30,
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default=str(HERE / "results" / "m_scaling.json"))
  p.add_argument("--one", type=int, help=argparse.SUPPRESS)
  p.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  sys.path.insert(0, str(HERE))
  if args.one:
    print(json.dumps(one(args.one, not args.single, args.repeats)))
    return
  rows = []
  for m in args.sizes:
    for pairwise in (True, False):
      cmd = [sys.executable, __file__, "--one", str(m),
             "--repeats", str(args.repeats)] + ([] if pairwise else ["--single"])
      out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
          [str(HERE.parent), os.environ.get("PYTHONPATH", "")])})
      if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"M = {m} failed")
      row = json.loads(out.stdout.strip().splitlines()[-1])
      rows.append(row)
      print(f"M={m:>9,} {'pairs ' if pairwise else 'single'} {row['per_iteration_s'] * 1e3:9.1f} ms/iter "
            f"temp {row['temp_mb']:8.1f} MiB  peak RSS {row['peak_rss_mb']:8.1f} MiB  "
            f"peer M x M {row['peer_pair_matrix_gb_per_example']:10.3f} GiB/example", flush=True)
  from bench_attacks import machine_info

  record = {"benchmark": "m_scaling", "hidden": HIDDEN, "ones_per_app": ONES, "max_changes": CHANGES,
            "machine": machine_info(), "rows": rows}
  pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  pathlib.Path(args.out).write_text(json.dumps(record, indent=1))
  print(table(record))


def table(record: dict) -> str:
  lines = ["| M | search | ms / iteration | iterations (max) | XLA temp MiB | peak RSS MiB | weights MiB | "
           "a peer's M x M pair matrix per example |", "|---|---|---|---|---|---|---|---|"]
  for r in record["rows"]:
    peer = r["peer_pair_matrix_gb_per_example"]
    lines.append(f"| {r['m']:,} | {'pairs' if r['pairwise'] else 'single'} | {r['per_iteration_s'] * 1e3:.1f} | "
                 f"{r['iterations_max']} | {r['temp_mb']:.1f} | {r['peak_rss_mb']:.0f} | {r['weights_mb']:.0f} | "
                 f"{peer * 1024:.1f} MiB |" if peer < 1 else f"| {r['m']:,} | "
                 f"{'pairs' if r['pairwise'] else 'single'} | "
                 f"{r['per_iteration_s'] * 1e3:.1f} | {r['iterations_max']} | {r['temp_mb']:.1f} | "
                 f"{r['peak_rss_mb']:.0f} | {r['weights_mb']:.0f} | {peer:,.0f} GiB |")
  return "\n".join(lines)


if __name__ == "__main__":
  main()
