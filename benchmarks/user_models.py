"""User-written models with and without ``jsma_jax.rewrite.loop_friendly``.

The same LeNet weights written three ways: the shipped ``jsma_jax.models.LeNet`` (until
commit 1a01fc8 with hand-written ``conv_im2col`` and one-hot max-pool, since then plain
``nnx.Conv`` and ``nnx.max_pool`` itself), a plain Flax NNX LeNet (``nnx.Conv``,
``nnx.max_pool``) and a raw ``lax.conv_general_dilated`` function in NCHW/OIHW with
``lax.reduce_window`` max-pools (``tests/user_models.py``). Each attacks the same 270
pairs (30 embedded MNIST test digits, 3 per class, x their 9 other classes; theta = +1,
gamma = 14.5%); the user-written ones run with the rewrite off and on. Reported:
attacks/s (median of ``--repeats`` runs after the first call, round robin over the
contenders so that other processes' load hits all alike), the first call's time
(compile plus one run), and how many attacks' ``x_adv`` differ between rewrite on and
off. Weights: ``--checkpoint`` (default ``runs/models/lenet_relu_mnist``) when it exists,
else a fixed-seed random ReLU LeNet.

    python benchmarks/user_models.py [--checkpoint DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

import user_models  # noqa: E402

import jsma_jax  # noqa: E402
from jsma_jax.models import LeNet, as_logits_fn, load_checkpoint, load_mnist  # noqa: E402
from jsma_jax.models.checkpoint import cpu_model  # noqa: E402


def sources(per_class: int) -> tuple[jax.Array, jax.Array]:
  """``per_class`` embedded test digits of each class, expanded to all other targets."""
  x, y = load_mnist("embedded", split="test")
  pick = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
  e = jsma_jax.all_other_targets(x[pick], y[pick], 10)
  return jnp.asarray(e.x), jnp.asarray(e.targets, jnp.int32)


def models(checkpoint: str) -> tuple[dict, str]:
  """``{name: (apply_fn, params)}`` computing one function, and where the weights came from."""
  if os.path.isdir(checkpoint):
    shipped, meta = load_checkpoint(checkpoint)
    origin = f"{checkpoint} (test accuracy {meta.get('test_accuracy')})"
  else:
    shipped, origin = LeNet(activation="relu", rngs=nnx.Rngs(0)), "random ReLU LeNet, seed 0"
  act = getattr(shipped, "activation", "relu")
  shipped_fn, params = as_logits_fn(shipped)
  nnx_fn, _ = user_models.nnx_lenet(act)
  lax_fn = user_models.LAX_LENET[act]
  lax_params = user_models.lax_params_from_nnx(params)
  return {  # jsma rewrites every model on the CPU by default (rewrite="auto"); "off" asks it not to
      "shipped LeNet": (shipped_fn, params, {}),
      "NNX LeNet, rewrite off": (nnx_fn, params, {"rewrite": False}),
      "NNX LeNet, rewrite on": (nnx_fn, params, {"rewrite": True}),
      "raw-lax NCHW LeNet, rewrite off": (lax_fn, lax_params, {"rewrite": False}),
      "raw-lax NCHW LeNet, rewrite on": (lax_fn, lax_params, {"rewrite": True}),
  }, f"{origin}, activation {act}"


def attack(apply_fn, params, x, t, options):
  return jax.block_until_ready(jsma_jax.jsma(apply_fn, x, t, params=params, **options))


def timed(fn, *args) -> tuple[float, object]:
  start = time.perf_counter()
  out = fn(*args)
  return time.perf_counter() - start, out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkpoint", default=str(ROOT / "runs/models/lenet_relu_mnist"))
  parser.add_argument("--per-class", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--out", default=str(HERE / "results/user_models_cpu.json"))
  parser.add_argument("--note", default="", help="recorded as is, e.g. which code was measured")
  args = parser.parse_args()
  load_start = os.getloadavg()
  x, t = sources(args.per_class)
  table, origin = models(args.checkpoint)
  rows = {}
  for name, (fn, params, options) in table.items():  # first calls: compile + one run
    first, result = timed(attack, fn, params, x, t, options)
    rows[name] = {"first_call_s": first, "seconds": [],
                  "success_rate": float(jnp.mean(result.success)),
                  "iterations_mean": float(jnp.mean(result.iterations)),
                  "x_adv": np.asarray(result.x_adv)}
    print(f"{name}: first call {first:.1f} s", flush=True)
  for _ in range(args.repeats):  # round robin, so that the other users' load hits all alike
    for name, (fn, params, options) in table.items():
      rows[name]["seconds"].append(timed(attack, fn, params, x, t, options)[0])
  for name, row in rows.items():
    row["attacks_per_s"] = x.shape[0] / statistics.median(row["seconds"])
    print(f"{name}: {row['attacks_per_s']:.1f} attacks/s", flush=True)
  base = rows["shipped LeNet"]
  for name, row in rows.items():
    row["speed_vs_shipped"] = row["attacks_per_s"] / base["attacks_per_s"]
    row["x_adv_differ_from_shipped"] = int(np.sum(np.any(row["x_adv"] != base["x_adv"], axis=(1, 2, 3))))
    off = rows.get(name.replace("rewrite on", "rewrite off"))
    if "rewrite on" in name:
      row["x_adv_differ_from_rewrite_off"] = int(np.sum(np.any(row["x_adv"] != off["x_adv"], axis=(1, 2, 3))))
  print(f"\n{x.shape[0]} attacks; weights: {origin}; load {os.getloadavg()}")
  print("| model as written | attacks/s | x shipped | first call s | x_adv differ (on vs off) |")
  print("|---|---|---|---|---|")
  for name, row in rows.items():
    print(f"| {name} | {row['attacks_per_s']:.1f} | {row['speed_vs_shipped']:.2f} | "
          f"{row['first_call_s']:.1f} | {row.get('x_adv_differ_from_rewrite_off', '-')} |")
  record = {
      "attacks": int(x.shape[0]), "weights": origin, "note": args.note,
      "date": time.strftime("%Y-%m-%d %H:%M"), "options": {"theta": 1.0, "gamma": 0.145},
      "machine": {"processor": platform.processor(), "cpu_model": cpu_model(),
                  "cpu_count": os.cpu_count(),
                  "platform": platform.platform(), "loadavg_start": load_start,
                  "loadavg_end": os.getloadavg(),
                  "jax": jax.__version__, "backend": jax.default_backend()},
      "rows": {name: {k: v for k, v in row.items() if k != "x_adv"} for name, row in rows.items()},
  }
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
