"""The peers' JSMA on m_scaling.py's detector as M grows: where it stops, and why.

AdverTorch 0.2.3's ``JacobianSaliencyMapAttack`` (the peer closest to the paper) searches
pairs by building ``M x M`` tensors per example (``alpha = a_p + a_q`` and ``beta`` over all
pairs, then their product and masks). On ``m_scaling.py``'s detector (M -> 200 -> 200 -> 2,
ReLU, the same weights and sparse apps, recreated in torch) this runs it towards the benign
class (targeted, theta = +1 on [0, 1], the budget of 20 changed features: gamma = 20 / M),
one app at a time, each size in its own process with its address space capped
(``--memory-gib``, default 16 of this machine's 24, so that a failure is the peer's own
allocation error and not the machine's). For each M: the time of one attack, or the
error it stopped with. jsma-jax's rows for the same M are in ``m_scaling.json``.

Usage::

    python benchmarks/m_scaling_peers.py                 # M = 1,000 .. 545,333 (a few minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
SIZES = (1_000, 10_000, 30_000, 100_000, 545_333)


def one(m: int) -> dict:
  """AdverTorch's JSMA on the first app of ``m_scaling.problem(m)``, in this process."""
  import m_scaling
  import torch
  from peers import _import_advertorch

  params, x = m_scaling.problem(m)
  net = torch.nn.Sequential(torch.nn.Linear(m, m_scaling.HIDDEN), torch.nn.ReLU(),
                            torch.nn.Linear(m_scaling.HIDDEN, m_scaling.HIDDEN), torch.nn.ReLU(),
                            torch.nn.Linear(m_scaling.HIDDEN, 2)).eval()
  with torch.no_grad():
    for layer, (w, b) in zip((net[0], net[2], net[4]), (("w1", "b1"), ("w2", "b2"), ("w3", "b3"))):
      layer.weight.copy_(torch.from_numpy(params[w].T.copy()))
      layer.bias.copy_(torch.from_numpy(params[b]))
  net.num_classes = 2
  _import_advertorch()
  from advertorch.attacks import JacobianSaliencyMapAttack

  xt = torch.from_numpy(x[:1])
  logits = net(xt).detach().numpy()
  assert logits.argmax(-1)[0] == 1, "the app must start malicious"
  atk = JacobianSaliencyMapAttack(net, num_classes=2, clip_min=0.0, clip_max=1.0, theta=1.0,
                                  gamma=m_scaling.CHANGES / m)
  torch.set_num_threads(os.cpu_count() or 1)
  t0 = time.perf_counter()
  adv = atk.perturb(xt, torch.tensor([0]))
  seconds = time.perf_counter() - t0
  changed = int((adv != xt).sum())
  return {"m": m, "ok": True, "seconds": seconds, "changed": changed,
          "evaded": bool(net(adv).argmax(-1)[0] == 0)}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
  p.add_argument("--memory-gib", type=float, default=16.0)
  p.add_argument("--timeout", type=float, default=600.0)
  p.add_argument("--out", default=str(HERE / "results" / "m_scaling_peers.json"))
  p.add_argument("--one", type=int, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  sys.path.insert(0, str(HERE))
  if args.one:
    print(json.dumps(one(args.one)))
    return
  cap = int(args.memory_gib * 2**30)
  limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
  rows = []
  for m in args.sizes:
    cmd = [sys.executable, __file__, "--one", str(m)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    try:
      out = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=limit, timeout=args.timeout)
      wall = time.perf_counter() - t0
      if out.returncode == 0:
        row = json.loads(out.stdout.strip().splitlines()[-1])
      else:
        last = [line for line in out.stderr.strip().splitlines() if line.strip()][-1:]
        row = {"m": m, "ok": False, "error": last[0] if last else f"exit {out.returncode}", "seconds": wall}
    except subprocess.TimeoutExpired:
      row = {"m": m, "ok": False, "error": f"no result within {args.timeout:.0f} s", "seconds": args.timeout}
    row["pair_matrix_gib"] = 4 * m * m / 2**30
    rows.append(row)
    print(json.dumps(row), flush=True)
  sys.path.insert(0, str(HERE))
  from bench_attacks import machine_info

  record = {"benchmark": "m_scaling_peers", "peer": "advertorch 0.2.3 JacobianSaliencyMapAttack",
            "memory_cap_gib": args.memory_gib, "machine": machine_info(), "rows": rows}
  pathlib.Path(args.out).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
  main()
