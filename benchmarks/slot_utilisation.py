"""How much of the refill scheduler's work is useful, from a study's own iteration counts.

The refill schedule keeps ``slots`` attacks in flight: every step of its loop runs the
attack step on all slots, and a slot whose attack stopped takes the next attack of the
call. At the end of a call the slots empty one by one while the longest attacks finish,
and those empty slots still cost a step. This replays that schedule on the iteration
counts that a ``jsma-jax reproduce`` run recorded (its stage files), for several slot
counts and call sizes, and prints the useful share of the slot-steps (an attack of ``k``
iterations occupies its slot for ``max(k, 1)`` steps). No model runs: the counts are
exact, the cost model (a step costs the same whatever the occupancy) is the scheduler's;
from 128 slots on the scheduler adds a narrower tail phase, which this replay leaves out.

    python benchmarks/slot_utilisation.py runs/paper_chosen/stages --slots 8,16,32,64,128 \\
        --calls 900,4500
"""

from __future__ import annotations

import argparse
import glob
import heapq
import os

import numpy as np


def steps(iterations: np.ndarray, slots: int) -> int:
  """Loop steps of one call: slots refilled in order, each attack taking ``max(k, 1)`` steps."""
  free_at = [0] * min(slots, len(iterations))
  for k in iterations:
    heapq.heappush(free_at, heapq.heappop(free_at) + max(int(k), 1))
  return max(free_at)


def utilisation(iterations: np.ndarray, slots: int, call: int) -> float:
  """Useful share of the slot-steps over consecutive calls of ``call`` attacks."""
  useful = spent = 0
  for start in range(0, len(iterations), call):
    part = iterations[start:start + call]
    useful += int(np.maximum(part, 1).sum())
    spent += steps(part, slots) * min(slots, len(part))
  return useful / spent


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("stages", help="a study's stages folder (attack_*_paper_test_c*.npz files)")
  p.add_argument("--pattern", default="attack_*_paper_test_c*.npz")
  p.add_argument("--slots", default="8,16,32,64,128")
  p.add_argument("--calls", default="900,4500", help="attacks per call, comma-separated")
  args = p.parse_args()
  files = sorted(glob.glob(os.path.join(args.stages, args.pattern)))
  if not files:
    raise SystemExit(f"no stage files match {args.pattern} in {args.stages}")
  its = np.concatenate([np.load(f)["iterations"].astype(np.int64) for f in files])
  print(f"{len(its)} attacks from {len(files)} stage files: mean {its.mean():.1f} iterations, "
        f"median {np.median(its):.0f}, 99th percentile {np.percentile(its, 99):.0f}, max {its.max()}")
  for call in (int(v) for v in args.calls.split(",")):
    row = ", ".join(f"{s} slots {utilisation(its, s, call):.1%}" for s in (int(v) for v in args.slots.split(",")))
    print(f"{call} attacks per call: {row}")


if __name__ == "__main__":
  main()
