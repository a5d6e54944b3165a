r"""jsma-jax against the other JSMAs, side by side in one run, on the same work.

Every contender attacks the same model weights, the same sources and the same targets
(each source towards its 9 other classes; theta = +1, gamma = 14.5%, clip [0, 1],
logits). Each contender runs in its own worker process so that its peak memory is its
own; the driver collects attacks/s (median over repeats, compilation and warm-up
excluded and reported apart), success rate, mean L0, peak memory, and the agreement of
jsma-jax's choices with AdverTorch (both implement the paper's pairwise rule; AdverTorch
starts from the paper's all-feature domain, so the compared jsma-jax run does too).

    # once: the environment with torch and the peers (benchmarks/setup_env.sh)
    .venv-bench/bin/python benchmarks/bench_attacks.py \
        --checkpoint runs/models/lenet_tanh_mnist --data-dir ../shared/data/mnist --sources 20

    # the user-model run: every model kind in one run (--model takes a comma-separated list),
    # on the shipped paper LeNet; train the stand-in CIFAR CNN first (cached in runs/bench/
    # per --data-dir) so that its training is not in the run
    .venv-bench/bin/python benchmarks/cifar_cnn.py --data-dir ../shared/data/mnist
    .venv-bench/bin/python benchmarks/bench_attacks.py \
        --model lenet-handtuned,lenet,lenet-lax-nchw,cifar-cnn \
        --checkpoint jsma_jax/models/_data/lenets/theano_tutorial_30ep --data-dir ../shared/data/mnist \
        --sources 30 --cifar-sources 1 \
        --contenders jsma-jax,jsma-jax-rewrite-off,jsma-jax-all-domain,advertorch,torchattacks,art

Model kinds (``--model``, default ``lenet``):

- ``lenet-handtuned``: the checkpoint's weights in ``benchmarks/handtuned_lenet.py``, the
  model-specific fast path (im2col convolutions, one-hot max-pools written by hand, as
  the shipped LeNet once was): the yardstick for the user-written forms. Its
  peer rows, like ``lenet-lax-nchw``'s, are shared with the other LeNet kinds.
- ``lenet``: the checkpoint's ``jsma_jax.models.LeNet`` (plain ``nnx.Conv`` +
  ``nnx.max_pool``, NHWC), what this harness always measured.
- ``lenet-lax-nchw``: the same weights in the raw-lax function of ``tests/user_models.py``
  (``lax.conv_general_dilated`` with NCHW/OIHW dimension numbers, ``lax.reduce_window``
  max-pools, NHWC images transposed to NCHW on entry, (c, h, w) flatten): the code is
  imported from there, not copied. The peers' torch model is the same function of the
  same weights as for ``lenet``, so when another LeNet kind is in the same run its peer
  rows are reused (marked ``shared_with``; their x_adv are re-scored by this kind's model)
  unless ``--rerun-peers``. Every LeNet form's logits are checked against the NNX LeNet's.
- ``cifar-cnn``: ``benchmarks/cifar_cnn.py``, a CIFAR-sized (32x32x3) NNX CNN with strided
  SAME convolutions, BatchNorm in inference mode, ReLU, ``nnx.avg_pool`` and a dense head,
  briefly trained on a **stand-in** for CIFAR-10 (tinted 32x32 MNIST digits: no CIFAR data
  on the machine) and cached under ``runs/bench/``; sources are the first
  ``--cifar-sources`` stand-in test images; the peers attack its PyTorch port
  ``peers.TorchCifarCNN`` (peer batch ``--cifar-peer-batch``, by default on a CPU 1 for
  AdverTorch, which keeps several [B, 3072, 3072] float tensors, about 0.25 GB per example,
  and runs each batch until its slowest example stops; 8 for the others; warm-up on 1
  example). On a CPU the pairwise peers take 10-25 s per attack here: keep
  ``--cifar-sources`` small (1 source = 9 attacks).

Before any attack, for every model kind with peers in the run, a worker computes the
torch port's logits on the sources and 32 uniform-random images and compares them with
the JAX model's; the run stops (exit status 3) if they differ by more than
``--logit-tol`` x max(1, max |logit|). The differences are recorded (``logit_check``).

Contenders: ``jsma-jax`` (default: refill scheduler, pruned exact search),
``jsma-jax-lockstep`` (the straightforward vmapped while_loop with the dense search, for
reference), ``jsma-jax-rewrite-off`` (``rewrite=False``: the model as traced, without
``jsma_jax.rewrite``; its ``x_adv`` are compared with ``jsma-jax``'s; this and lockstep are
timed ``--slow-repeats`` times), ``jsma-jax-all-domain`` (the paper's literal domain, AdverTorch's setting),
``jsma-jax-torch`` and ``jsma-jax-torch-all-domain`` (the bridge: the peers' PyTorch model of
the same weights, ``peers.torch_model``, converted by ``jsma_jax.torch.from_torch`` and
attacked in NCHW; conversion time apart; ``x_adv`` compared with the JAX-native runs' and
AdverTorch's), ``jsma-jax-tf32`` (the model's matmuls and convolutions in TensorFloat32, not true
float32: only differs on GPUs with tensor cores; its choices are compared with
``jsma-jax``'s), ``advertorch``, ``torchattacks``, ``art``. The peers run on CUDA when
torch sees a GPU (batch ``--peer-batch``, default 1,000 there and 32 on a CPU), with TF32
off so that they compute in true float32 like jsma-jax's default.

JSON (``--out``): ``models`` maps each model kind to its ``attacks``, ``sources``,
``contenders`` (one row per contender, and the agreement rows), ``model_meta`` and
``logit_check``; the top-level ``attacks``, ``sources``, ``checkpoint``, ``model_meta`` and
``contenders`` are those of the first model kind of the run (so a ``lenet``-only run
writes what this harness wrote before, plus new fields); ``ratios`` gives, per model
kind, jsma-jax's attacks/s and first call against the hand-tuned LeNet, the peers and
the rewrite-off run (the user-model ratios).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
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
    "jsma-jax-rewrite-off": {"rewrite": False},
    # the bridge: the peers' own PyTorch model converted by jsma_jax.torch (NCHW), same settings
    "jsma-jax-torch": {"bridge": True},
    "jsma-jax-torch-all-domain": {"bridge": True, "initial_domain": "all"},
}
SLOW_CONTENDERS = ("jsma-jax-lockstep", "jsma-jax-rewrite-off")  # timed --slow-repeats times
PEERS = ("advertorch", "torchattacks", "art")
MODEL_KINDS = ("lenet-handtuned", "lenet", "lenet-lax-nchw", "cifar-cnn")  # also the order they run in
LENET_KINDS = ("lenet-handtuned", "lenet", "lenet-lax-nchw")
# cifar-cnn's default peer batches. AdverTorch holds several [B, 3072, 3072] float tensors
# (~0.25 GB per example) and iterates until the slowest example of a batch is done: on the
# 2-core CPU batch 1 ran 1.3-1.4x faster than batch 6 (0.055 vs 0.040 attacks/s on 6
# attacks, load 5) with a fifth of the memory. torchattacks attacks one image at a time
# whatever the batch; ART drops finished examples from its batch.
CIFAR_PEER_BATCH = {"cuda": {"advertorch": 100, "torchattacks": 100, "art": 100},
                    "cpu": {"advertorch": 1, "torchattacks": 8, "art": 8}}
CIFAR_PEER_WARMUP = 1  # examples in the peers' untimed first call (LeNet: peers.py's default, 2)


def machine_info() -> dict:
  """The machine a run measured, recorded with its results (load average at the end)."""
  from jsma_jax.models.checkpoint import cpu_model

  return {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(),
          "python": platform.python_version(), "loadavg_at_end": os.getloadavg()}


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


def _tests_user_models():
  """``tests/user_models.py`` under its own module name (``benchmarks/user_models.py`` shares the name)."""
  name = "jsma_bench_tests_user_models"
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "user_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def _handtuned():
  if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
  import handtuned_lenet

  return handtuned_lenet


def _cifar_cnn():
  if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
  import cifar_cnn

  return cifar_cnn


def jax_model(kind: str, checkpoint: str, weights_path: str | os.PathLike | None = None):
  """``(apply_fn, params)`` of a model kind (``cifar-cnn``: from its ``weights.npz``)."""
  from jsma_jax.models import as_logits_fn, load_checkpoint

  if kind in LENET_KINDS:
    model, _ = load_checkpoint(checkpoint)
    apply_fn, params = as_logits_fn(model)
    if kind == "lenet-lax-nchw":
      user_models = _tests_user_models()
      return user_models.LAX_LENET[model.activation], user_models.lax_params_from_nnx(params)
    if kind == "lenet-handtuned":
      return _handtuned().HANDTUNED_LENET[model.activation], params
    return apply_fn, params
  if kind == "cifar-cnn":
    with np.load(weights_path, allow_pickle=False) as f:
      weights = dict(f)
    return as_logits_fn(_cifar_cnn().from_numpy_weights(weights))
  raise ValueError(f"unknown model kind {kind!r}")


def logits(apply_fn, params, x: np.ndarray) -> np.ndarray:
  import jax
  import jax.numpy as jnp

  f = jax.jit(apply_fn)
  with jax.default_matmul_precision("highest"):
    return np.concatenate([np.asarray(f(params, jnp.asarray(x[i:i + 500]))) for i in range(0, len(x), 500)])


def worker_jax(name: str, kind: str, checkpoint: str, io: Path, x: np.ndarray, t: np.ndarray, repeats: int,
               slots: int | None) -> dict:
  import jax
  import jax.numpy as jnp

  import jsma_jax

  options = dict(JAX_CONTENDERS[name])
  bridge = options.pop("bridge", False)
  convert_seconds = None
  if bridge:  # the peers' torch model through jsma_jax.torch, attacked in its own layout (NCHW)
    start = time.perf_counter()
    apply_fn, params = torch_bridge_model(io / "weights.npz", x.shape[1:])
    convert_seconds = time.perf_counter() - start
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
  else:
    apply_fn, params = jax_model(kind, checkpoint, io / "weights.npz")
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
  x_adv = np.asarray(result.x_adv)
  return {
      "x_adv": np.ascontiguousarray(x_adv.transpose(0, 2, 3, 1)) if bridge else x_adv,
      "torch_bridge_convert_seconds": convert_seconds,
      "seconds": run,
      "seconds_all": times,
      "compile_seconds": max(first - run, 0.0),
      "first_call_seconds": first,
      "peak_memory_mb": stats.get("peak_bytes_in_use", 0) / 2**20 if stats else peak_rss_mb(),
      "memory_kind": "device peak_bytes_in_use" if stats else "process max RSS",
      "iterations_mean": float(jnp.mean(result.iterations)),
      "iterations_max": int(jnp.max(result.iterations)),
      "device": str(device),
      "options": options,
  }


def torch_bridge_model(weights_path: str | os.PathLike, example_shape_nhwc: tuple):
  """``jsma_jax.torch.from_torch`` of the peers' torch model of these weights (``peers.torch_model``)."""
  sys.path.insert(0, str(HERE))
  import peers
  import torch

  from jsma_jax.torch import from_torch

  weights = dict(np.load(weights_path, allow_pickle=False))
  h, w, c = example_shape_nhwc
  return from_torch(peers.torch_model(weights), torch.zeros(1, c, h, w))


def worker_peer(name: str, kind: str, weights_path: str, x: np.ndarray, t: np.ndarray, repeats: int,
                batch: int | None) -> dict:
  sys.path.insert(0, str(HERE))
  import peers
  import torch

  device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda":  # true float32, as jsma-jax's default precision
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
  if not batch:
    batch = CIFAR_PEER_BATCH[device][name] if kind == "cifar-cnn" else (1000 if device == "cuda" else 32)
  extra = {"warmup": CIFAR_PEER_WARMUP} if kind == "cifar-cnn" else {}
  weights = dict(np.load(weights_path, allow_pickle=False))
  run = getattr(peers, f"run_{name}")
  times, out = [], None
  for _ in range(repeats):
    out = run(weights, x, t, device=device, batch_size=batch, **extra)
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
      "warmup_examples": extra.get("warmup", 2),
  }


def worker_check_logits(io: Path) -> dict:
  """The torch port's logits on ``check.npz``'s images against the JAX logits stored there."""
  sys.path.insert(0, str(HERE))
  import peers

  data = np.load(io / "check.npz")
  weights = dict(np.load(io / "weights.npz", allow_pickle=False))
  model = peers.torch_model(weights)
  got = peers.torch_logits(model, data["x"])
  want = data["logits"]
  diff = np.abs(got.astype(np.float64) - want)
  return {"torch_port": type(model).__name__, "images": len(want),
          "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
          "max_abs_logit": float(np.abs(want).max()),
          "argmax_agreement": float(np.mean(got.argmax(1) == want.argmax(1)))}


def score(x_adv: np.ndarray, x: np.ndarray, t: np.ndarray, apply_fn, params) -> dict:
  """Success and L0 judged by the same (JAX) model, in true float32, for every contender."""
  pred = np.argmax(logits(apply_fn, params, x_adv), 1)
  success = pred == t
  l0 = (x_adv.reshape(len(x), -1) != x.reshape(len(x), -1)).sum(1)
  in_bounds = bool(np.all((x_adv >= 0) & (x_adv <= 1)))
  return {
      "success_rate": float(success.mean()),
      "mean_l0_successful": float(l0[success].mean()) if success.any() else float("nan"),
      "mean_l0_share_successful": float(l0[success].mean() / x[0].size) if success.any() else float("nan"),
      "mean_l0_all": float(l0.mean()),
      "in_bounds": in_bounds,
  }


def prepare(kind: str, args, io: Path, with_peers: bool) -> dict:
  """Sources, targets, weights and the logit check of one model kind, in ``io``."""
  from jsma_jax.models import lenet_numpy_weights, load_checkpoint

  io.mkdir(parents=True)
  if kind in LENET_KINDS:
    if not Path(args.checkpoint).is_dir():
      raise SystemExit(f"--checkpoint {args.checkpoint}: no checkpoint there (train one with "
                       "jsma_jax.models.train and save_checkpoint, or pass --checkpoint)")
    model, meta = load_checkpoint(args.checkpoint)
    n_sources = args.sources
    x_src, y_src = load_sources(args.data_dir, n_sources)
    weights = lenet_numpy_weights(model)
    model_meta = {k: meta.get(k) for k in ("config", "dataset", "test_accuracy") if k in meta}
    origin = args.checkpoint
  else:
    cifar_cnn = _cifar_cnn()
    model, meta = cifar_cnn.load_or_train(data_dir=args.data_dir, n_train=args.cifar_train,
                                          epochs=args.cifar_epochs)
    n_sources = args.cifar_sources
    x_src, y_src = cifar_cnn.load_standin("test", n_sources, args.data_dir)
    weights = cifar_cnn.numpy_weights(model)
    model_meta = {k: v for k, v in meta.items() if k != "trained_now"}
    model_meta["standin"] = "tinted 32x32 MNIST digits standing in for CIFAR-10 (benchmarks/cifar_cnn.py)"
    origin = meta["path"]
  x, t = expand(x_src, y_src)
  np.savez(io / "work.npz", x=x, t=t)
  np.savez(io / "weights.npz", **weights)
  apply_fn, params = jax_model(kind, args.checkpoint, io / "weights.npz")

  # the torch port (and, for the other LeNet forms, the NNX LeNet) must compute the same function
  rand = np.random.default_rng(0).uniform(size=(32, *x_src.shape[1:])).astype(np.float32)
  x_check = np.concatenate([x_src, rand]).astype(np.float32)
  want = logits(apply_fn, params, x_check).astype(np.float64)
  check = {"images": f"{len(x_src)} sources + 32 uniform-random images", "tolerance": args.logit_tol}
  failures = []
  if kind in LENET_KINDS and kind != "lenet":
    nnx_fn, nnx_params = jax_model("lenet", args.checkpoint)
    d = float(np.abs(logits(nnx_fn, nnx_params, x_check) - want).max())
    check["max_abs_diff_vs_nnx_lenet"] = d
    if d > args.logit_tol * max(1.0, float(np.abs(want).max())):
      failures.append(f"{kind} vs NNX LeNet: max |diff| {d:.3g}")
  if with_peers:
    np.savez(io / "check.npz", x=x_check, logits=want)
    proc = subprocess.run([sys.executable, __file__, "--worker", "check-logits", "--io", str(io)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
      raise SystemExit(f"{kind}: the torch port's logit check failed to run:\n{proc.stderr[-3000:]}")
    torch_check = json.loads((io / "check.json").read_text())
    check["torch"] = torch_check
    if torch_check["max_abs_diff"] > args.logit_tol * max(1.0, torch_check["max_abs_logit"]):
      failures.append(f"torch port {torch_check['torch_port']} vs JAX: max |diff| "
                      f"{torch_check['max_abs_diff']:.3g} (max |logit| {torch_check['max_abs_logit']:.3g})")
  print(f"[{kind}] {len(x)} attacks ({n_sources} sources x 9 targets), model {origin}; logits: "
        + ", ".join(f"{k} {v:.2e}" for k, v in [("torch vs JAX max |diff|", check.get("torch", {}).get("max_abs_diff")),
                                                  ("vs NNX LeNet", check.get("max_abs_diff_vs_nnx_lenet"))]
                    if v is not None), flush=True)
  if failures:
    print(f"\n*** [{kind}] LOGIT CHECK FAILED (tolerance {args.logit_tol} x max(1, max |logit|)): "
          + "; ".join(failures) + " ***\nThe ports do not compute the same function; not attacking.",
          file=sys.stderr, flush=True)
    raise SystemExit(3)
  return {"kind": kind, "io": io, "x": x, "t": t, "apply_fn": apply_fn, "params": params, "sources": n_sources,
          "origin": origin, "model_meta": model_meta, "logit_check": check,
          "weights_sha": _sha(io / "weights.npz"), "work_sha": _sha(io / "work.npz")}


def _sha(path: Path) -> str:
  import hashlib

  return hashlib.sha256(path.read_bytes()).hexdigest()


def run_model(m: dict, contenders: list[str], args, done: dict) -> dict:
  """All contenders on one prepared model kind; ``done`` holds earlier kinds (peer reuse)."""
  kind, io, x, t = m["kind"], m["io"], m["x"], m["t"]
  peer_batch = args.cifar_peer_batch if kind == "cifar-cnn" and args.cifar_peer_batch else args.peer_batch
  rows = {}
  for name in contenders:
    shared = None
    if name in PEERS and not args.rerun_peers:
      shared = next((k for k, d in done.items() if d["weights_sha"] == m["weights_sha"]
                     and d["work_sha"] == m["work_sha"] and "attacks_per_second" in d["rows"].get(name, {})), None)
    print(f"-- [{kind}] {name} ...", flush=True)
    started = time.perf_counter()
    if shared:  # the same torch model, weights and work: the peer's run would be identical
      row = {k: v for k, v in done[shared]["rows"][name].items()
             if k not in ("success_rate", "mean_l0_successful", "mean_l0_share_successful", "mean_l0_all",
                          "in_bounds", "wall_seconds")}
      row["shared_with"] = shared
      shutil.copy(done[shared]["io"] / f"{name}.x_adv.npy", io / f"{name}.x_adv.npy")
    else:
      repeats = args.slow_repeats if name in SLOW_CONTENDERS else args.repeats
      cmd = [sys.executable, __file__, "--worker", name, "--model", kind, "--io", str(io),
             "--checkpoint", args.checkpoint, "--repeats", str(repeats), "--peer-repeats", str(args.peer_repeats)]
      if args.slots:
        cmd += ["--slots", str(args.slots)]
      if peer_batch:
        cmd += ["--peer-batch", str(peer_batch)]
      proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
      if proc.returncode != 0:
        print(f"   failed:\n{proc.stderr[-2000:]}", flush=True)
        rows[name] = {"error": proc.stderr[-2000:]}
        continue
      row = json.loads((io / f"{name}.json").read_text())
      row["wall_seconds"] = time.perf_counter() - started
    x_adv = np.load(io / f"{name}.x_adv.npy")
    row.update(score(x_adv, x, t, m["apply_fn"], m["params"]))
    row["attacks_per_second"] = len(x) / row["seconds"]
    rows[name] = row
    compile_s = f", compile {row['compile_seconds']:.1f} s" if name in JAX_CONTENDERS else ""
    print(f"   {row['attacks_per_second']:.2f} attacks/s{compile_s}, success {row['success_rate']:.4f}, "
          f"L0 {row['mean_l0_successful']:.1f}, peak {row['peak_memory_mb']:.0f} MB ({row['memory_kind']})"
          + (f" [peer run shared with {shared}: same torch model, weights and work]" if shared else ""), flush=True)

  def ran(n):
    return "attacks_per_second" in rows.get(n, {})

  if ran("advertorch") and ran("jsma-jax-all-domain"):
    a = np.load(io / "advertorch.x_adv.npy").reshape(len(x), -1)
    j = np.load(io / "jsma-jax-all-domain.x_adv.npy").reshape(len(x), -1)
    same = np.all(a == j, axis=1)
    rows["agreement_jsma_jax_all_domain_vs_advertorch"] = {
        "identical_x_adv": float(same.mean()), "examples": len(x),
        "differing_examples": np.flatnonzero(~same)[:20].tolist(),
    }
    print(f"[{kind}] jsma-jax (all-feature domain) and AdverTorch give identical x_adv on {same.mean():.1%} of attacks")
  if ran("jsma-jax") and ran("jsma-jax-rewrite-off"):
    on = np.load(io / "jsma-jax.x_adv.npy").reshape(len(x), -1)
    off = np.load(io / "jsma-jax-rewrite-off.x_adv.npy").reshape(len(x), -1)
    same = np.all(on == off, axis=1)
    rows["agreement_jsma_jax_rewrite_on_vs_off"] = {
        "identical_x_adv": float(same.mean()), "examples": len(x), "differing": int((~same).sum()),
        "differing_examples": np.flatnonzero(~same)[:20].tolist(),
    }
    print(f"[{kind}] jsma-jax with the rewrite (default) and without it give identical x_adv on "
          f"{int(same.sum())}/{len(x)} attacks")
  for bridged, native in (("jsma-jax-torch", "jsma-jax"), ("jsma-jax-torch-all-domain", "jsma-jax-all-domain"),
                         ("jsma-jax-torch-all-domain", "advertorch")):
    if ran(bridged) and ran(native):
      b = np.load(io / f"{bridged}.x_adv.npy").reshape(len(x), -1)
      n = np.load(io / f"{native}.x_adv.npy").reshape(len(x), -1)
      same = np.all(b == n, axis=1)
      rows[f"agreement_{bridged}_vs_{native}".replace("-", "_")] = {
          "identical_x_adv": float(same.mean()), "identical": int(same.sum()), "examples": len(x),
          "differing_examples": np.flatnonzero(~same)[:20].tolist()}
      print(f"[{kind}] {bridged} (torch bridge) and {native} "
            f"give identical x_adv on {int(same.sum())}/{len(x)} attacks")
  if ran("jsma-jax") and ran("jsma-jax-tf32"):
    f32 = np.load(io / "jsma-jax.x_adv.npy").reshape(len(x), -1)
    tf32 = np.load(io / "jsma-jax-tf32.x_adv.npy").reshape(len(x), -1)
    same = np.all(f32 == tf32, axis=1)
    rows["agreement_jsma_jax_tf32_vs_float32"] = {"identical_x_adv": float(same.mean()), "examples": len(x)}
    print(f"[{kind}] jsma-jax in TF32 and in float32 give identical x_adv on {same.mean():.1%} of attacks")
  return rows


def print_table(kind: str, rows: dict, attacks: int) -> None:
  timed_jax = [r for n, r in rows.items() if n.startswith("jsma-jax") and "attacks_per_second" in r]
  base = rows.get("jsma-jax") if "attacks_per_second" in rows.get("jsma-jax", {}) else (
      timed_jax[0] if timed_jax else {})  # the ratio column's reference
  print(f"\n[{kind}] {attacks} attacks")
  print(f"{'contender':24s} {'attacks/s':>10s} {'compile s':>10s} {'success':>8s} {'L0':>6s} {'peak MB':>8s} "
        f"{'jsma-jax is':>12s}")
  for name, row in rows.items():
    if "attacks_per_second" not in row:
      continue
    ratio = (f"{base['attacks_per_second'] / row['attacks_per_second']:11.1f}x" if base
             else f"{'-':>12s}")
    compile_s = f"{row['compile_seconds']:10.1f}" if name in JAX_CONTENDERS else f"{'-':>10s}"
    print(f"{name:24s} {row['attacks_per_second']:10.2f} {compile_s} {row['success_rate']:8.4f} "
          f"{row['mean_l0_successful']:6.1f} {row['peak_memory_mb']:8.0f} {ratio}"
          + ("  (shared)" if row.get("shared_with") else ""))


def user_model_ratios(results: dict) -> dict:
  """jsma-jax (defaults) on each user-written form against the hand-tuned LeNet and the peers.

  The user-model targets: on the plain NNX LeNet and the raw-lax NCHW one, at least 0.9x the
  hand-tuned model's attacks/s, 25x torchattacks', 3x ART's, a first call of at most 12 s,
  and ``x_adv`` identical to the rewrite-off run on at least 99% of the attacks.
  """
  def aps(kind, name):
    return results.get(kind, {}).get("contenders", {}).get(name, {}).get("attacks_per_second")

  out = {}
  for kind in results:
    me = results[kind]["contenders"].get("jsma-jax", {})
    if "attacks_per_second" not in me:
      continue
    line = {"attacks_per_second": me["attacks_per_second"], "first_call_seconds": me.get("first_call_seconds"),
            "compile_seconds": me.get("compile_seconds")}
    refs = [("hand-tuned LeNet", aps("lenet-handtuned", "jsma-jax"))] if kind in ("lenet", "lenet-lax-nchw") else []
    refs += [(p, aps(kind, p)) for p in PEERS] + [("rewrite off", aps(kind, "jsma-jax-rewrite-off"))]
    line["x"] = {name: me["attacks_per_second"] / v for name, v in refs if v}
    agree = results[kind]["contenders"].get("agreement_jsma_jax_rewrite_on_vs_off")
    if agree:
      line["x_adv_differ_rewrite_on_vs_off"] = agree["differing"]
    parts = [f"jsma-jax {me['attacks_per_second']:.1f} attacks/s, first call {me.get('first_call_seconds', 0):.1f} s"]
    parts += [f"{r:.2f}x {name}" for name, r in line["x"].items()]
    if agree:
      parts.append(f"x_adv differ from rewrite off on {agree['differing']}/{agree['examples']}")
    line["summary"] = "; ".join(parts)
    out[kind] = line
  return out


def bridge_ratios(results: dict) -> dict:
  """jsma-jax through the torch bridge against the JAX-native model and the peers, per model kind.

  The bridge's targets on the LeNet (2-core CPU): the bridge at least 0.8x the JAX-native
  model's attacks/s and 25x torchattacks', ``x_adv`` identical on at least 99% of attacks.
  """
  out = {}
  for kind, r in results.items():
    rows = r["contenders"]
    me = rows.get("jsma-jax-torch", {})
    if "attacks_per_second" not in me:
      continue
    refs = [("JAX-native", "jsma-jax"), ("torchattacks", "torchattacks"), ("AdverTorch", "advertorch"), ("ART", "art")]
    line = {"attacks_per_second": me["attacks_per_second"], "first_call_seconds": me.get("first_call_seconds"),
            "convert_seconds": me.get("torch_bridge_convert_seconds"),
            "x": {label: me["attacks_per_second"] / rows[n]["attacks_per_second"]
                  for label, n in refs if "attacks_per_second" in rows.get(n, {})}}
    agree = {k.removeprefix("agreement_"): f"{v['identical']}/{v['examples']}" for k, v in rows.items()
             if k.startswith("agreement_jsma_jax_torch")}
    line["identical_x_adv"] = agree
    line["summary"] = "; ".join(
        [f"bridge {me['attacks_per_second']:.1f} attacks/s, first call {me.get('first_call_seconds', 0):.1f} s "
         f"(+ {me.get('torch_bridge_convert_seconds') or 0:.1f} s conversion)"]
        + [f"{v:.2f}x {label}" for label, v in line["x"].items()] + [f"identical {k}: {v}" for k, v in agree.items()])
    out[kind] = line
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--model", default="lenet",
                      help=f"model kinds, comma-separated, from {','.join(MODEL_KINDS)} (run in that order)")
  parser.add_argument("--checkpoint", default=str(ROOT / "runs/models/lenet_tanh_mnist"),
                      help="LeNet checkpoint (lenet, lenet-lax-nchw)")
  parser.add_argument("--data-dir", default=None, help="MNIST IDX directory (default: the embedded test split)")
  parser.add_argument("--sources", type=int, default=20, help="LeNet sources; each is attacked towards 9 targets")
  parser.add_argument("--cifar-sources", type=int, default=3, help="cifar-cnn sources (stand-in test images), x 9")
  parser.add_argument("--cifar-train", type=int, default=8000, help="cifar-cnn: stand-in training images")
  parser.add_argument("--cifar-epochs", type=int, default=2, help="cifar-cnn: training epochs")
  parser.add_argument("--contenders",
                      default="jsma-jax,jsma-jax-lockstep,jsma-jax-all-domain,advertorch,torchattacks,art")
  parser.add_argument("--cifar-contenders", default=None, help="cifar-cnn's contenders (default: --contenders)")
  parser.add_argument("--repeats", type=int, default=3, help="timed repeats for jsma-jax (peers: --peer-repeats)")
  parser.add_argument("--peer-repeats", type=int, default=1)
  parser.add_argument("--slow-repeats", type=int, default=1,
                      help="timed repeats for jsma-jax-lockstep and jsma-jax-rewrite-off (slow on a CPU)")
  parser.add_argument("--slots", type=int, default=None)
  parser.add_argument("--peer-batch", type=int, default=None, help="peers' batch (default: 1000 on CUDA, 32 on a CPU)")
  parser.add_argument("--cifar-peer-batch", type=int, default=None,
                      help="peers' batch for cifar-cnn (default on a CPU: AdverTorch 1, torchattacks and ART 8; "
                           "on CUDA: 100)")
  parser.add_argument("--rerun-peers", action="store_true",
                      help="run the peers again for lenet-lax-nchw instead of reusing lenet's identical peer runs")
  parser.add_argument("--logit-tol", type=float, default=1e-4,
                      help="largest allowed torch-vs-JAX logit difference, times max(1, max |logit|)")
  parser.add_argument("--out", default=None, help="write the results as JSON here")
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--io", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()

  if args.worker:  # child process: one contender on one model kind, or the logit check
    io = Path(args.io)
    if args.worker == "check-logits":
      (io / "check.json").write_text(json.dumps(worker_check_logits(io)))
      return
    data = np.load(io / "work.npz")
    if args.worker in JAX_CONTENDERS:
      out = worker_jax(args.worker, args.model, args.checkpoint, io, data["x"], data["t"], args.repeats, args.slots)
    else:
      out = worker_peer(args.worker, args.model, str(io / "weights.npz"), data["x"], data["t"], args.peer_repeats,
                        args.peer_batch)
    np.save(io / f"{args.worker}.x_adv.npy", out.pop("x_adv"))
    (io / f"{args.worker}.json").write_text(json.dumps(out))
    return

  kinds = [k.strip() for k in args.model.split(",") if k.strip()]
  unknown = sorted(set(kinds) - set(MODEL_KINDS))
  if unknown or not kinds:
    parser.error(f"--model: unknown kinds {unknown}; choose from {','.join(MODEL_KINDS)}")
  kinds = [k for k in MODEL_KINDS if k in kinds]
  lists = {k: [c.strip() for c in (args.cifar_contenders if k == "cifar-cnn" and args.cifar_contenders
                                   else args.contenders).split(",") if c.strip()] for k in kinds}
  for k, names in lists.items():
    bad = sorted(set(names) - set(JAX_CONTENDERS) - set(PEERS))
    if bad:
      parser.error(f"unknown contenders {bad} (for {k})")

  start_all = time.perf_counter()
  io_root = Path(tempfile.mkdtemp(prefix="jsma-bench-"))
  prepared = [prepare(k, args, io_root / k, any(c in PEERS for c in lists[k])) for k in kinds]  # checks first
  done, results = {}, {}
  for m in prepared:
    rows = run_model(m, lists[m["kind"]], args, done)
    done[m["kind"]] = {"rows": rows, "io": m["io"], "weights_sha": m["weights_sha"], "work_sha": m["work_sha"]}
    results[m["kind"]] = {
        "model": m["kind"], "attacks": len(m["x"]), "sources": m["sources"], "weights": m["origin"],
        "model_meta": m["model_meta"], "logit_check": m["logit_check"], "contenders": rows}
  for kind, r in results.items():
    print_table(kind, r["contenders"], r["attacks"])
  targets = user_model_ratios(results)
  for kind, line in targets.items():
    print(f"[{kind}] {line['summary']}")
  bridge = bridge_ratios(results)
  for kind, line in bridge.items():
    print(f"[{kind}] torch bridge: {line['summary']}")
  total = time.perf_counter() - start_all
  print(f"\ntotal {total:.0f} s, load average at the end {os.getloadavg()}")
  machine = machine_info()
  first = results[kinds[0]]
  summary = {"machine": machine, "attacks": first["attacks"], "sources": first["sources"],
             "checkpoint": args.checkpoint, "model_meta": first["model_meta"], "contenders": first["contenders"],
             "model": kinds[0], "model_kinds": kinds, "models": results, "ratios": targets,
             "torch_bridge_ratios": bridge,
             "total_seconds": total,
             "argv": sys.argv[1:]}
  if args.out:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
  main()
