r"""The PyTorch bridge against the JAX-native model, timed in turns in one process.

``bench_attacks.py`` runs every contender in its own process, one after another, which
is what peak memory needs; on a shared machine the load can change between two such
runs. This script measures the one ratio that matters -- jsma-jax through
``jsma_jax.torch`` against the JAX-native model of the same weights -- with the two
timed in alternation (native, bridge, native, bridge, ...) in one process, on the same
sources and targets, after both are compiled; it reports the median of each and the
median of the per-pair ratios (and, with ``--torchattacks N``, torchattacks timed on N
attacks in the same turns, for the ratio to the peer under the same load), the conversion and
first-call times, and whether
``x_adv`` is identical.

    PYTHONPATH=. .venv-bench/bin/python benchmarks/bench_torch_bridge.py \
        --checkpoint jsma_jax/models/_data/lenets/theano_tutorial_30ep --data-dir ../shared/data/mnist \
        --sources 30 --cifar-sources 3 --pairs 5 --torchattacks 18 \
        --out benchmarks/results/torch_bridge_interleaved.json

Models: ``lenet`` (the checkpoint; its torch twin ``peers.TorchLeNet``) and ``cifar-cnn``
(``benchmarks/cifar_cnn.py``'s stand-in CNN, trained and cached first; its torch twin
``peers.TorchCifarCNN``). The side-by-side run with the peers is ``bench_attacks.py``
with the contenders ``jsma-jax-torch`` and ``jsma-jax-torch-all-domain``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_attacks  # noqa: E402


def _timed(fn) -> tuple[float, object]:
  start = time.perf_counter()
  out = fn()
  return time.perf_counter() - start, out


def measure(kind: str, apply_fn, params, weights_path: Path, x: np.ndarray, t: np.ndarray, pairs: int,
            options: dict, torchattacks: int = 0) -> dict:
  """Native and bridge attacks of ``x`` (NHWC) towards ``t``: first calls, then ``pairs`` timed turns.

  With ``torchattacks > 0`` each turn also times torchattacks on the first that many
  attacks (it attacks one image at a time, so its rate does not depend on how many).
  """
  import jax
  import jax.numpy as jnp

  import jsma_jax

  convert, (bridge_fn, bridge_params) = _timed(lambda: bench_attacks.torch_bridge_model(weights_path, x.shape[1:]))
  xn, xb, tj = jnp.asarray(x), jnp.asarray(x.transpose(0, 3, 1, 2)), jnp.asarray(t, jnp.int32)
  run_native = lambda: jax.block_until_ready(jsma_jax.jsma(apply_fn, xn, tj, params=params, **options))
  run_bridge = lambda: jax.block_until_ready(jsma_jax.jsma(bridge_fn, xb, tj, params=bridge_params, **options))
  first_native, native = _timed(run_native)
  first_bridge, bridge = _timed(run_bridge)
  times = {"native": [], "bridge": []}
  peer_rates = []
  if torchattacks:
    import peers  # benchmarks/ is on sys.path; imports torch

    weights = dict(np.load(weights_path, allow_pickle=False))
  for _ in range(pairs):
    times["native"].append(_timed(run_native)[0])
    times["bridge"].append(_timed(run_bridge)[0])
    if torchattacks:
      peer_rates.append(peers.run_torchattacks(weights, x[:torchattacks], t[:torchattacks])["attacks_per_s"])
  same = np.all(np.asarray(bridge.x_adv).transpose(0, 2, 3, 1) == np.asarray(native.x_adv), axis=(1, 2, 3))
  med = {k: statistics.median(v) for k, v in times.items()}
  ratios = [n / b for n, b in zip(times["native"], times["bridge"])]
  row = {
      "model": kind, "attacks": len(x), "options": options,
      "native_attacks_per_second": len(x) / med["native"], "bridge_attacks_per_second": len(x) / med["bridge"],
      "bridge_over_native_median_of_pairs": statistics.median(ratios), "pair_ratios": ratios,
      "seconds": times, "first_call_seconds": {"native": first_native, "bridge": first_bridge},
      "bridge_convert_seconds": convert,
      "identical_x_adv": int(same.sum()), "differing_examples": np.flatnonzero(~same)[:20].tolist(),
      "success_rate": {"native": float(np.mean(native.success)), "bridge": float(np.mean(bridge.success))},
      "loadavg_at_end": os.getloadavg(),
  }
  if torchattacks:
    bridge_rates = [len(x) / b for b in times["bridge"]]
    row["torchattacks"] = {"attacks_per_turn": torchattacks, "attacks_per_second": peer_rates,
                           "bridge_over_torchattacks_median_of_turns": statistics.median(
                               [b / p for b, p in zip(bridge_rates, peer_rates)])}
  print(f"[{kind}{' ' + str(options) if options else ''}] {len(x)} attacks: native "
        f"{row['native_attacks_per_second']:.1f}/s, bridge {row['bridge_attacks_per_second']:.1f}/s, bridge/native "
        f"{row['bridge_over_native_median_of_pairs']:.2f}x (median of {pairs} pairs); first call "
        f"{first_native:.1f} s / {first_bridge:.1f} s (+ {convert:.1f} s conversion); identical x_adv "
        f"{row['identical_x_adv']}/{len(x)}; load {os.getloadavg()[0]:.1f}"
        + (f"; bridge/torchattacks {row['torchattacks']['bridge_over_torchattacks_median_of_turns']:.1f}x "
           f"(torchattacks {statistics.median(peer_rates):.2f}/s)" if torchattacks else ""), flush=True)
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint",
                      default=str(bench_attacks.ROOT / "jsma_jax/models/_data/lenets/theano_tutorial_30ep"))
  parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: the embedded test split)")
  parser.add_argument("--sources", type=int, default=30, help="LeNet sources, each towards its 9 other classes")
  parser.add_argument("--cifar-sources", type=int, default=3, help="cifar-cnn sources (0: skip the CNN)")
  parser.add_argument("--pairs", type=int, default=5, help="timed (native, bridge) turns per model")
  parser.add_argument("--torchattacks", type=int, default=0,
                      help="LeNet: also time torchattacks on this many attacks in every turn (0: not)")
  parser.add_argument("--all-domain", action="store_true", help="also with initial_domain='all' (AdverTorch's)")
  parser.add_argument("--out", default=None, help="write the results as JSON here")
  args = parser.parse_args()

  from jsma_jax.models import lenet_numpy_weights, load_checkpoint

  io = Path(tempfile.mkdtemp(prefix="jsma-bridge-"))
  rows = []
  model, _ = load_checkpoint(args.checkpoint)
  np.savez(io / "lenet.npz", **lenet_numpy_weights(model))
  x, t = bench_attacks.expand(*bench_attacks.load_sources(args.data_dir, args.sources))
  apply_fn, params = bench_attacks.jax_model("lenet", args.checkpoint)
  for options in ({}, {"initial_domain": "all"}) if args.all_domain else ({},):
    rows.append(measure("lenet", apply_fn, params, io / "lenet.npz", x, t, args.pairs, options,
                        args.torchattacks if not options else 0))
  if args.cifar_sources:
    import cifar_cnn  # benchmarks/ is on sys.path
    cnn, _ = cifar_cnn.load_or_train(data_dir=args.data_dir)
    np.savez(io / "cifar.npz", **cifar_cnn.numpy_weights(cnn))
    x, t = bench_attacks.expand(*cifar_cnn.load_standin("test", args.cifar_sources, args.data_dir))
    apply_fn, params = bench_attacks.jax_model("cifar-cnn", args.checkpoint, io / "cifar.npz")
    rows.append(measure("cifar-cnn", apply_fn, params, io / "cifar.npz", x, t, args.pairs, {}))
  summary = {"machine": bench_attacks.machine_info(), "rows": rows, "argv": sys.argv[1:]}
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
  main()
