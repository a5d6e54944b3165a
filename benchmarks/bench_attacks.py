"""jsma-jax against the other JSMAs, side by side in one run, on the same work.

Every contender attacks the same LeNet weights, the same MNIST sources and the
same targets (each source towards its 9 other classes; theta = +1,
gamma = 14.5%, clip [0, 1], logits). Each contender runs in its own worker
process so that its peak memory is its own; the driver collects attacks/s
(median over repeats, compilation and warm-up excluded and reported apart),
success rate, mean L0, peak memory, and the agreement of jsma-jax's choices
with AdverTorch (both implement the paper's pairwise rule; AdverTorch starts
from the paper's all-feature domain, so the compared jsma-jax run does too).

    # once: the environment with torch and the peers (benchmarks/setup_env.sh)
    .venv-bench/bin/python benchmarks/bench_attacks.py \
        --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist --sources 20

Contenders: ``jsma-jax`` (default: refill scheduler, pruned exact search),
``jsma-jax-lockstep`` (the straightforward vmapped while_loop with the dense
search, for reference), ``jsma-jax-all-domain`` (the paper's literal domain,
AdverTorch's setting), ``jsma-jax-tf32`` (the model's matmuls and convolutions
in TensorFloat32, not true float32: only differs on GPUs with tensor cores; its
choices are compared with ``jsma-jax``'s), ``advertorch``, ``torchattacks``,
``art``. The peers run on CUDA when torch sees a GPU (batch ``--peer-batch``,
default 1,000 there and 32 on a CPU), with TF32 off so that they compute in true
float32 like jsma-jax's default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JAX_CONTENDERS = {
    "jsma-jax": {},
    "jsma-jax-lockstep": {"schedule": "lockstep", "candidates": 0},
    "jsma-jax-all-domain": {"initial_domain": "all"},
    "jsma-jax-tf32": {"precision": "tensorfloat32"},
}
PEERS = ("advertorch", "torchattacks", "art")


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_sources(data_dir: str | None, n: int) -> tuple[np.ndarray, np.ndarray]:
  from jsma_jax.models import load_mnist

  if data_dir:
    x, y = load_mnist("idx", data_dir=data_dir, split="test")
  else:
    x, y = load_mnist("embedded", split="test")
  return x[:n], y[:n]


def expand(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  import jsma_jax

  e = jsma_jax.all_other_targets(x, y, 10)
  return np.asarray(e.x), np.asarray(e.targets)


def worker_jax(name: str, checkpoint: str, x: np.ndarray, t: np.ndarray, repeats: int, slots: int | None) -> dict:
  import jax
  import jax.numpy as jnp

  import jsma_jax
  from jsma_jax.models import as_logits_fn, load_checkpoint

  model, _ = load_checkpoint(checkpoint)
  apply_fn, params = as_logits_fn(model)
  options = dict(JAX_CONTENDERS[name])
  if slots is not None and options.get("schedule") != "lockstep":
    options["slots"] = slots
  x, t = jnp.asarray(x), jnp.asarray(t, jnp.int32)
  start = time.perf_counter()
  result = jax.block_until_ready(jsma_jax.jsma(apply_fn, x, t, params=params, **options))
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = jax.block_until_ready(jsma_jax.jsma(apply_fn, x, t, params=params, **options))
    times.append(time.perf_counter() - start)
  run = statistics.median(times)
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  return {
      "x_adv": np.asarray(result.x_adv),
      "seconds": run,
      "seconds_all": times,
      "compile_seconds": max(first - run, 0.0),
      "peak_memory_mb": stats.get("peak_bytes_in_use", 0) / 2**20 if stats else peak_rss_mb(),
      "memory_kind": "device peak_bytes_in_use" if stats else "process max RSS",
      "iterations_mean": float(jnp.mean(result.iterations)),
      "device": str(device),
      "options": options,
  }


def worker_peer(name: str, weights_path: str, x: np.ndarray, t: np.ndarray, repeats: int, batch: int | None) -> dict:
  sys.path.insert(0, str(HERE))
  import peers  # noqa: E402  (torch lives only in the benchmark environment)
  import torch

  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda":  # true float32, as jsma-jax's default precision
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
  batch = batch or (1000 if device == "cuda" else 32)
  weights = dict(np.load(weights_path, allow_pickle=False))
  run = getattr(peers, f"run_{name}")
  times, out = [], None
  for _ in range(repeats):
    out = run(weights, x, t, device=device, batch_size=batch)
    times.append(out["seconds"])
  return {
      "x_adv": np.asarray(out["x_adv"]),
      "seconds": statistics.median(times),
      "seconds_all": times,
      "compile_seconds": 0.0,
      "peak_memory_mb": out["peak_mem_bytes"] / 2**20,
      "memory_kind": out["mem_method"],
      "device": str(out["device"]),
      "options": {k: v for k, v in out.items() if k in ("settings", "batch_size", "torch_threads", "version")},
  }


def score(x_adv: np.ndarray, x: np.ndarray, t: np.ndarray, checkpoint: str) -> dict:
  """Success and L0 judged by the same (JAX) model, in true float32, for every contender."""
  import jax
  import jax.numpy as jnp

  from jsma_jax.models import as_logits_fn, load_checkpoint

  model, _ = load_checkpoint(checkpoint)
  apply_fn, params = as_logits_fn(model)
  with jax.default_matmul_precision("highest"):
    pred = np.concatenate([np.argmax(apply_fn(params, jnp.asarray(x_adv[i : i + 500])), 1) for i in range(0, len(x_adv), 500)])
  success = pred == t
  l0 = (x_adv.reshape(len(x), -1) != x.reshape(len(x), -1)).sum(1)
  in_bounds = bool(np.all((x_adv >= 0) & (x_adv <= 1)))
  return {
      "success_rate": float(success.mean()),
      "mean_l0_successful": float(l0[success].mean()) if success.any() else float("nan"),
      "mean_l0_share_successful": float(l0[success].mean() / x[0].size) if success.any() else float("nan"),
      "in_bounds": in_bounds,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default=str(ROOT / "runs/models/lenet_tanh_mnist"))
  parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: the embedded test split)")
  parser.add_argument("--sources", type=int, default=20, help="sources; each is attacked towards 9 targets")
  parser.add_argument("--contenders", default="jsma-jax,jsma-jax-lockstep,jsma-jax-all-domain,advertorch,torchattacks,art")
  parser.add_argument("--repeats", type=int, default=3, help="timed repeats for jsma-jax (peers: --peer-repeats)")
  parser.add_argument("--peer-repeats", type=int, default=1)
  parser.add_argument("--lockstep-repeats", type=int, default=1,
                      help="timed repeats for jsma-jax-lockstep (the dense reference is slow on a CPU)")
  parser.add_argument("--slots", type=int, default=None)
  parser.add_argument("--peer-batch", type=int, default=None, help="peers' batch (default: 1000 on CUDA, 32 on a CPU)")
  parser.add_argument("--out", default=None, help="write the results as JSON here")
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--io", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:  # child process: one contender
    data = np.load(Path(args.io) / "work.npz")
    if args.worker in JAX_CONTENDERS:
      out = worker_jax(args.worker, args.checkpoint, data["x"], data["t"], args.repeats, args.slots)
    else:
      out = worker_peer(args.worker, str(Path(args.io) / "weights.npz"), data["x"], data["t"], args.peer_repeats,
                        args.peer_batch)
    np.save(Path(args.io) / f"{args.worker}.x_adv.npy", out.pop("x_adv"))
    (Path(args.io) / f"{args.worker}.json").write_text(json.dumps(out))
    return

  from jsma_jax.models import lenet_numpy_weights, load_checkpoint
  from jsma_jax.models.checkpoint import cpu_model

  x_src, y_src = load_sources(args.data_dir, args.sources)
  x, t = expand(x_src, y_src)
  model, meta = load_checkpoint(args.checkpoint)
  io = Path(tempfile.mkdtemp(prefix="jsma-bench-"))
  np.savez(io / "work.npz", x=x, t=t)
  np.savez(io / "weights.npz", **lenet_numpy_weights(model))
  print(f"{len(x)} attacks ({args.sources} sources x 9 targets), model {args.checkpoint}", flush=True)

  rows = {}
  for name in args.contenders.split(","):
    repeats = args.lockstep_repeats if name == "jsma-jax-lockstep" else args.repeats
    cmd = [sys.executable, __file__, "--worker", name, "--io", str(io), "--checkpoint", args.checkpoint,
           "--repeats", str(repeats), "--peer-repeats", str(args.peer_repeats)]
    if args.slots:
      cmd += ["--slots", str(args.slots)]
    if args.peer_batch:
      cmd += ["--peer-batch", str(args.peer_batch)]
    print(f"-- {name} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
      print(f"   failed:\n{proc.stderr[-2000:]}", flush=True)
      rows[name] = {"error": proc.stderr[-2000:]}
      continue
    row = json.loads((io / f"{name}.json").read_text())
    x_adv = np.load(io / f"{name}.x_adv.npy")
    row.update(score(x_adv, x, t, args.checkpoint))
    row["attacks_per_second"] = len(x) / row["seconds"]
    rows[name] = row
    print(f"   {row['attacks_per_second']:.1f} attacks/s, success {row['success_rate']:.4f}, "
          f"L0 {row['mean_l0_successful']:.1f}, peak {row['peak_memory_mb']:.0f} MB ({row['memory_kind']})", flush=True)

  if "advertorch" in rows and "jsma-jax-all-domain" in rows and "error" not in rows["advertorch"]:
    a = np.load(io / "advertorch.x_adv.npy").reshape(len(x), -1)
    j = np.load(io / "jsma-jax-all-domain.x_adv.npy").reshape(len(x), -1)
    same = np.all(a == j, axis=1)
    rows["agreement_jsma_jax_all_domain_vs_advertorch"] = {
        "identical_x_adv": float(same.mean()), "examples": int(len(x)),
        "differing_examples": np.flatnonzero(~same)[:20].tolist(),
    }
    print(f"jsma-jax (all-feature domain) and AdverTorch give identical x_adv on {same.mean():.1%} of attacks")
  if "jsma-jax" in rows and "jsma-jax-tf32" in rows and "error" not in rows["jsma-jax-tf32"]:
    f32 = np.load(io / "jsma-jax.x_adv.npy").reshape(len(x), -1)
    tf32 = np.load(io / "jsma-jax-tf32.x_adv.npy").reshape(len(x), -1)
    same = np.all(f32 == tf32, axis=1)
    rows["agreement_jsma_jax_tf32_vs_float32"] = {"identical_x_adv": float(same.mean()), "examples": int(len(x))}
    print(f"jsma-jax in TF32 and in float32 give identical x_adv on {same.mean():.1%} of attacks")

  timed_jax = [r for n, r in rows.items() if n.startswith("jsma-jax") and "attacks_per_second" in r]
  base = rows.get("jsma-jax") or (timed_jax[0] if timed_jax else {})  # the ratio column's reference
  print(f"\n{'contender':24s} {'attacks/s':>10s} {'success':>8s} {'L0':>6s} {'peak MB':>8s} {'jsma-jax is':>12s}")
  for name, row in rows.items():
    if "attacks_per_second" not in row:
      continue
    ratio = base.get("attacks_per_second", float("nan")) / row["attacks_per_second"]
    print(f"{name:24s} {row['attacks_per_second']:10.1f} {row['success_rate']:8.4f} {row['mean_l0_successful']:6.1f} "
          f"{row['peak_memory_mb']:8.0f} {ratio:11.1f}x")
  machine = {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(),
             "python": platform.python_version(), "loadavg_at_end": os.getloadavg()}
  summary = {"machine": machine, "attacks": len(x), "sources": args.sources, "checkpoint": args.checkpoint,
             "model_meta": {k: meta.get(k) for k in ("config", "dataset", "test_accuracy") if k in meta},
             "contenders": rows}
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
  main()
