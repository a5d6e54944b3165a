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

DENSE_CHECK_MAX_FEATURES = 12_288  # above this the dense check per step is too slow for a CPU


def replay(apply_fn, params, x, targets, *, initial_domain: str, max_iter: int | None, k: int, region: int) -> dict:
  config, x, targets, (theta, lo, hi) = attack.make_config(
      apply_fn, params, x, targets, theta=1.0, gamma=0.145, clip_min=0.0, clip_max=1.0, pairwise=True,
      jacobian="auto", probabilities=False, initial_domain=initial_domain, max_iter=max_iter, rule=None,
      record_trace=False, candidates=k, region=region,
  )
  shape = x.shape[1:]
  m = int(np.prod(shape))
  f = lambda v: apply_fn(params, v.reshape((1,) + shape))[0]
  theta, lo, hi = (jnp.asarray(v, x.dtype) for v in (theta, lo, hi))
  x0 = x.reshape(x.shape[0], -1)
  check = m <= DENSE_CHECK_MAX_FEATURES

  @jax.jit
  def one_step(state):
    outputs, a, b = jax.vmap(lambda v, t: attack.derivatives(f, config, v, t))(state.x, targets)
    cand = jax.vmap(lambda a, b, d: pair_search.candidate_pair(a, b, d, increase=True, k=k))(a, b, state.domain)
    bounds = jax.vmap(lambda a, b, d: pair_search.feature_bounds(a, -b, d, groups=16))(a, b, state.domain)
    floor = cand.choice.score[:, None]
    region_size = jnp.sum((bounds > -jnp.inf) & (bounds >= floor), axis=1)
    running = state.reason == attack.StopReason.RUNNING
    choice = pair_search.best_pairs(a, b, state.domain, increase=True, k=k, chunk=8, active=running, region=region)
    if check:
      dense = jax.vmap(lambda a, b, d: saliency.best_pair(a, b, d, increase=True))(a, b, state.domain)
      same = (dense.score == choice.score) & (dense.p == choice.p) & (dense.q == choice.q)
    else:
      same = jnp.ones_like(running)
    new = jax.vmap(lambda s, o, c, v, t: attack.advance(config, s, o, c, v, t, theta, lo, hi))(
        state, outputs, choice, x0, targets
    )
    return new, running, cand.certified, region_size, same  # a search is run for every running example

  state = jax.vmap(lambda v: attack.initial_state(v, config, lo, hi))(x0)
  certified, sizes, same = [], [], []
  while bool(jnp.any(state.reason == attack.StopReason.RUNNING)):
    state, searched, cert, size, ok = jax.block_until_ready(one_step(state))
    searched = np.asarray(searched)
    certified.append(np.asarray(cert)[searched])
    sizes.append(np.asarray(size)[searched])
    same.append(np.asarray(ok)[searched])
  certified, sizes, same = (np.concatenate(v) for v in (certified, sizes, same))
  uncertified = sizes[~certified]
  fitted = uncertified <= region
  return {
      "features": m, "attacks": int(x.shape[0]), "k": k, "region": region, "slot_steps": int(certified.size),
      "certified": int(certified.sum()), "region_settled": int(fitted.sum()), "dense": int((~fitted).sum()),
      "region_size_median": float(np.median(uncertified)) if uncertified.size else None,
      "region_size_max": int(uncertified.max()) if uncertified.size else None,
      "dense_checked": bool(check), "disagreements": int((~same).sum()),
      "success_rate": float(np.mean(np.asarray(state.reason) == attack.StopReason.REACHED_TARGET)),
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
  x, y = load_mnist("idx", data_dir=args.data_dir, split="test") if args.data_dir else load_mnist("embedded", split="test")
  e = jsma_jax.all_other_targets(x[: args.sources], y[: args.sources], 10)
  for domain in ("movable", "all"):
    row = replay(apply_fn, params, e.x, e.targets, initial_domain=domain, max_iter=None,
                 k=attack.default_candidates(784), region=attack.default_region(784))
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
                 k=attack.default_candidates(m), region=attack.default_region(m))
    rows.append({"model": "FCN (random weights, global average pooling)", "input": name, "domain": "movable", **row})
    print(rows[-1], flush=True)
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps({"device": str(jax.devices()[0]), "rows": rows}, indent=2))
  print(f"\n| model | input | domain | slot-steps | certified (top-K) | region search | dense | region size median / max | checked vs dense |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    sizes = f"{r['region_size_median']:.0f} / {r['region_size_max']}" if r["region_size_max"] is not None else "-"
    checked = f"{r['disagreements']} differ" if r["dense_checked"] else "not checked"
    print(f"| {r['model']} | {r['input']} | {r['domain']} | {r['slot_steps']:,} | {r['certified']:,} | "
          f"{r['region_settled']:,} | {r['dense']:,} | {sizes} | {checked} |")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
