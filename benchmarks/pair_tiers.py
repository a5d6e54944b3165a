"""Which tier of the exact pair search answers, step by step, on real attacks.

The pruned search (:mod:`jsma_jax.pair_search`) answers each step of each
attack from its cheapest tier that can prove its answer: the top-K candidates
with their certificate, else the region search (the features whose per-feature
bound reaches the candidate's score, at most ``region`` of them), else the
dense O(M^2) search. This script replays attacks one step at a time on the host
(a Python loop over jitted batched steps, so it is slow and only for counting)
and records, for every running example at every step: whether the certificate
held, the size of the region, whether it fitted, and (where M is small enough)
whether the tiers' answer equals the dense search's.

Models: the paper's LeNet on MNIST (a checkpoint, every source towards its 9
other classes; the default movable domain and the paper's all-feature domain),
and the small fully-convolutional CNN of ``scaling.py`` (random weights, global
average pooling: a smooth Jacobian, the hard case for the certificate) at
32x32x3, 64x64x3 and 224x224x3.

    python benchmarks/pair_tiers.py --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jsma_jax
from jsma_jax import attack, pair_search, saliency
from jsma_jax.step import initial_states

DENSE_CHECK_MAX_FEATURES = 12_288  # above this the dense check per step is too slow for a CPU


def replay(apply_fn, params, x, targets, *, initial_domain: str, max_iter: int | None, k: int, region: int) -> dict:
  p = attack.prepare(apply_fn, x, targets, params, None, None, dict(
      initial_domain=initial_domain, max_iter=max_iter, candidates=k, region=region, pad_batches=False))
  problem_of = lambda: attack.make_problem(p.logits_fn, p.params, p.x, p.labels, p.theta, p.clip_min, p.clip_max,
                                           p.batch, p.plan)
  m = int(np.prod(p.x.shape[1:]))
  check = m <= DENSE_CHECK_MAX_FEATURES

  @jax.jit
  def one_step(state):
    problem = problem_of()
    # The attack's own step; the tiers are re-derived from the maps it searched, for counting only.
    new, info = jsma_jax.step(problem, state, problem.x, problem.labels)
    a, b, d = info.maps.a[:, 0], info.maps.b[:, 0], info.domain[:, 0]  # the paper's rule: one map, oriented
    cand = jax.vmap(lambda a, b, d: pair_search.candidate_pair(a, b, d, increase=True, k=k))(a, b, d)
    bounds = jax.vmap(lambda a, b, d: pair_search.feature_bounds(a, -b, d, groups=16))(a, b, d)
    floor = cand.choice.score[:, None]
    region_size = jnp.sum((bounds > -jnp.inf) & (bounds >= floor), axis=1)
    if check:
      dense = jax.vmap(lambda a, b, d: saliency.best_pair(a, b, d, increase=True))(a, b, d)
      same = (dense.score == info.choice.score) & (dense.p == info.choice.p) & (dense.q == info.choice.q)
    else:
      same = jnp.ones_like(info.running)
    return new, info.running, cand.certified, region_size, same  # a search is run for every running example

  state = jax.jit(lambda: initial_states(problem_of(), problem_of().x, problem_of().valid))()
  certified, sizes, same = [], [], []
  while bool(jnp.any(state.reason == jsma_jax.StopReason.RUNNING)):
    state, searched, cert, size, ok = jax.block_until_ready(one_step(state))
    searched = np.asarray(searched)
    certified.append(np.asarray(cert)[searched])
    sizes.append(np.asarray(size)[searched])
    same.append(np.asarray(ok)[searched])
  certified, sizes, same = (np.concatenate(v) for v in (certified, sizes, same))
  uncertified = sizes[~certified]
  fitted = uncertified <= region
  return {
      "features": m, "attacks": int(p.x.shape[0]), "k": k, "region": region, "slot_steps": int(certified.size),
      "certified": int(certified.sum()), "region_settled": int(fitted.sum()), "dense": int((~fitted).sum()),
      "region_size_median": float(np.median(uncertified)) if uncertified.size else None,
      "region_size_max": int(uncertified.max()) if uncertified.size else None,
      "dense_checked": bool(check), "disagreements": int((~same).sum()),
      "success_rate": float(np.mean(np.asarray(state.reason) == jsma_jax.StopReason.SUCCESS)),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default="runs/models/lenet_tanh_mnist")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--sources", type=int, default=30)
  parser.add_argument("--sizes", default="32x32x3:8,64x64x3:4,224x224x3:2")
  parser.add_argument("--feature-iterations", type=int, default=20)
  parser.add_argument("--out", default="benchmarks/results/pair_tiers.json")
  args = parser.parse_args()
  from scaling import SIZES, apply_fcn, fcn_params

  from jsma_jax.models import as_logits_fn, load_checkpoint, load_mnist

  rows = []
  model, _ = load_checkpoint(args.checkpoint)
  apply_fn, params = as_logits_fn(model)
  x, y = (load_mnist("idx", data_dir=args.data_dir, split="test")
          if args.data_dir else load_mnist("embedded", split="test"))
  e = jsma_jax.all_other_targets(x[: args.sources], y[: args.sources], 10)
  for domain in ("movable", "all"):
    row = replay(apply_fn, params, e.x, e.targets, initial_domain=domain, max_iter=None,
                 k=64, region=min(1024, 784 // 4))
    rows.append({"model": f"LeNet ({Path(args.checkpoint).name})", "input": "28x28x1", "domain": domain, **row})
    print(rows[-1], flush=True)
  for item in [v for v in args.sizes.split(",") if v]:
    name, batch = item.split(":")
    shape = SIZES[name]
    m = int(np.prod(shape))
    p = fcn_params(shape[-1])
    xs = jnp.asarray(np.random.default_rng(0).uniform(0, 0.5, size=(int(batch),) + shape), jnp.float32)
    ts = ((jnp.argmax(apply_fcn(p, xs), axis=1) + 1) % 10).astype(jnp.int32)
    row = replay(apply_fcn, p, xs, ts, initial_domain="movable", max_iter=args.feature_iterations,
                 k=min(m, 64), region=min(1024, m // 4))
    rows.append({"model": "FCN (random weights, global average pooling)", "input": name, "domain": "movable", **row})
    print(rows[-1], flush=True)
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=2))
  print("\n| model | input | domain | slot-steps | certified (top-K) | "
        "region search | dense | region size median / max | checked vs dense |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    sizes = f"{r['region_size_median']:.0f} / {r['region_size_max']}" if r["region_size_max"] is not None else "-"
    checked = f"{r['disagreements']} differ" if r["dense_checked"] else "not checked"
    print(f"| {r['model']} | {r['input']} | {r['domain']} | {r['slot_steps']:,} | {r['certified']:,} | "
          f"{r['region_settled']:,} | {r['dense']:,} | {sizes} | {checked} |")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
