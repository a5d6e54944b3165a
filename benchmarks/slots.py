"""Attacks/s and first-call time against the refill scheduler's slot count (CPU default).

Each (slots, batch) runs in a fresh process, so its first call pays the whole trace and
compilation as a user's does: the shipped paper LeNet (plain ``nnx.Conv`` +
``nnx.max_pool``, through the library's rewrite), the first ``sources`` embedded test
digits x their 9 other classes, the paper's settings; median of ``--repeats`` timed
calls after the first. ``slots`` >= 128 also compiles the scheduler's narrower tail phase
(``jsma_jax.refill.phase_widths``).

    python benchmarks/slots.py --slots 16,64,256 --sources 30,300 \\
        --out benchmarks/results/slots_cpu.json

``--study-row`` runs what ``jsma-jax reproduce`` runs for its reproduction row instead
(all features in the initial domain, 150 pair iterations for the budget sweep up to 300
pixels, the L0 trace recorded), so its numbers are those of the study's stages.

``--cpu-devices 1,2`` also varies how many XLA CPU devices the process splits the CPU into
(``JAX_NUM_CPU_DEVICES``); the attack runs over all of them (``jsma_jax.jsma_local``),
``slots`` per device, as the study's stages do.

    python benchmarks/slots.py --study-row --cpu-devices 1,2 --slots 16 --sources 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# the reproduction row of ``jsma-jax reproduce``: the paper's domain, the sweep's largest budget
# (300 pixels = 150 pair iterations) and the trace it reads the smaller budgets from
STUDY_ROW = {"initial_domain": "all", "max_iter": 150, "record_trace": True}


def one(slots: int, sources: int, repeats: int, study_row: bool = False) -> dict:
  import jax
  import jax.numpy as jnp

  import jsma_jax
  from jsma_jax.models import as_logits_fn, load_mnist, load_paper_lenet
  from jsma_jax.refill import phase_widths

  model, _ = load_paper_lenet()
  f, p = as_logits_fn(model)
  x, y = load_mnist("embedded", split="test")
  e = jsma_jax.all_other_targets(x[:sources], y[:sources], 10)
  xs, ts = jnp.asarray(e.x), jnp.asarray(e.targets, jnp.int32)
  options = STUDY_ROW if study_row else {}
  call = lambda: jax.block_until_ready(jsma_jax.jsma_local(f, xs, ts, params=p, slots=slots, **options))
  start = time.perf_counter()
  result = call()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = call()
    times.append(time.perf_counter() - start)
  run = statistics.median(times)
  return {"slots": slots, "cpu_devices": jax.local_device_count(), "attacks": len(ts), "study_row": study_row,
          "phases": phase_widths(min(slots, len(ts))),
          "first_call_seconds": first, "seconds": run, "seconds_all": times,
          "attacks_per_second": len(ts) / run, "success_rate": float(result.success.mean())}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--slots", default="16,64,256", help="slot counts, comma-separated")
  parser.add_argument("--sources", default="30,300", help="sources (x 9 targets each), comma-separated")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--study-row", action="store_true",
                      help="the reproduction row's settings (domain all, 150 iterations, trace)")
  parser.add_argument("--cpu-devices", default="1", help="XLA CPU devices of each run, comma-separated")
  parser.add_argument("--out", default=None)
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    slots, sources = (int(v) for v in args.worker.split(","))
    print(json.dumps(one(slots, sources, args.repeats, args.study_row)))
    return
  rows = []
  grid = [(sources, devices, slots) for sources in (int(v) for v in args.sources.split(","))
          for devices in (int(v) for v in args.cpu_devices.split(","))
          for slots in (int(v) for v in args.slots.split(","))]
  for sources, devices, slots in grid:
    proc = subprocess.run([sys.executable, __file__, "--worker", f"{slots},{sources}", "--repeats",
                           str(args.repeats)] + (["--study-row"] if args.study_row else []),
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_NUM_CPU_DEVICES": str(devices)})
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    rows.append(row)
    print(f"devices {row['cpu_devices']}  slots {row['slots']:4d}  attacks {row['attacks']:5d}  "
          f"phases {row['phases']}  first call "
          f"{row['first_call_seconds']:6.2f} s  run {row['seconds']:6.2f} s  {row['attacks_per_second']:7.1f}/s",
          flush=True)
  sys.path.insert(0, str(HERE))
  from bench_attacks import machine_info

  out = {"machine": machine_info(), "rows": rows, "argv": sys.argv[1:]}
  if args.out:
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
  main()
