"""Self-check of benchmarks/peers.py: the torch LeNet loads the weight format, every peer runs.

Needs only NumPy weights in the ``jsma_jax.models.lenet_numpy_weights`` format, made here:

1. Random NumPy weights: the torch LeNet's logits equal a plain NumPy forward pass of the
   spec (NHWC, VALID convs, 2x2 max-pools, NHWC flatten), for tanh and ReLU.
2. If ``jsma_jax.models`` is importable: a Flax ``LeNet`` exported with
   ``lenet_numpy_weights`` gives the same logits in torch (skipped otherwise).
3. A LeNet trained for one short epoch in torch (cached under runs/bench/), exported to
   the NumPy format and loaded back, so the attacks run against a real classifier.
4. Each peer on ``--digits`` real MNIST test digits x ``--targets`` targets each: success,
   L0, time, attacks/s, peak memory; how often flat pixel 0 changed (the (0, 0) pair bug).
5. Each peer with theta = -1 on a few attacks: no pixel may increase.
6. The pairwise peers' pair choice on hand-built Jacobians: no admissible pair, and
   decreasing mode (shows the (0, 0) pair bug and torchattacks' decreasing-mode bug).

Run from the repo root:  .venv-bench/bin/python benchmarks/check_peers.py
"""

from __future__ import annotations

import argparse
import gzip
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import numpy as np
import peers
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
MNIST = pathlib.Path("/work/shared/data/mnist")


def read_idx(path: pathlib.Path) -> np.ndarray:
  """An IDX file (gzip or raw) as a uint8 array: [N] labels or [N, rows, cols] images."""
  raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
  magic = int.from_bytes(raw[:4], "big")
  ndim = magic & 0xFF
  if magic >> 8 != 0x08:
    raise ValueError(f"{path}: not a uint8 IDX file (magic {magic:#x})")
  shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(split: str):
  prefix = "t10k" if split == "test" else "train"
  x = read_idx(MNIST / f"{prefix}-images-idx3-ubyte.gz").astype(np.float32)[..., None] / 255.0
  y = read_idx(MNIST / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
  return x, y


def random_weights(seed: int, activation: str, num_classes: int = 10) -> dict:
  """LeCun-normal kernels and small random biases, in the lenet_numpy_weights format."""
  rng = np.random.default_rng(seed)
  shapes = {"conv1": (5, 5, 1, 20), "conv2": (5, 5, 20, 50), "fc1": (800, 500),
            "fc2": (500, num_classes)}
  w = {}
  for name, shape in shapes.items():
    fan_in = int(np.prod(shape[:-1]))
    w[f"{name}.kernel"] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    w[f"{name}.bias"] = (0.1 * rng.standard_normal(shape[-1])).astype(np.float32)
  w["activation"] = np.array(activation)
  return w


def numpy_logits(w: dict, x: np.ndarray) -> np.ndarray:
  """The spec, written directly: NHWC input, HWIO kernels, NHWC flatten (float64)."""
  act = np.tanh if str(w["activation"]) == "tanh" else (lambda v: np.maximum(v, 0))

  def conv(x, k, b):  # VALID cross-correlation
    win = np.lib.stride_tricks.sliding_window_view(x, k.shape[:2], axis=(1, 2))  # N,H',W',C,kh,kw
    return np.einsum("nhwcij,ijco->nhwo", win, k) + b

  def pool(x):
    n, h, w_, c = x.shape
    return x[:, :h // 2 * 2, :w_ // 2 * 2].reshape(n, h // 2, 2, w_ // 2, 2, c).max(axis=(2, 4))

  x = x.astype(np.float64)
  x = pool(act(conv(x, w["conv1.kernel"], w["conv1.bias"])))
  x = pool(act(conv(x, w["conv2.kernel"], w["conv2.bias"])))
  x = act(x.reshape(len(x), -1) @ w["fc1.kernel"] + w["fc1.bias"])
  return x @ w["fc2.kernel"] + w["fc2.bias"]


def numpy_weights_from_torch(model: peers.TorchLeNet) -> dict:
  """Inverse of peers.torch_lenet: OIHW -> HWIO, fc1 rows (c, h, w) -> (h, w, c)."""
  sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
  c2, rows = sd["conv2.weight"].shape[0], sd["fc1.weight"].shape[1]
  side = round((rows // c2) ** 0.5)
  fc1 = sd["fc1.weight"].T.reshape(c2, side, side, -1).transpose(1, 2, 0, 3).reshape(rows, -1)
  return {"conv1.kernel": sd["conv1.weight"].transpose(2, 3, 1, 0), "conv1.bias": sd["conv1.bias"],
          "conv2.kernel": sd["conv2.weight"].transpose(2, 3, 1, 0), "conv2.bias": sd["conv2.bias"],
          "fc1.kernel": np.ascontiguousarray(fc1), "fc1.bias": sd["fc1.bias"],
          "fc2.kernel": np.ascontiguousarray(sd["fc2.weight"].T), "fc2.bias": sd["fc2.bias"],
          "activation": np.array(model.activation)}


def check_layout(x: np.ndarray) -> None:
  for activation in ("tanh", "relu"):
    w = random_weights(0, activation)
    got = peers.torch_logits(peers.torch_lenet(w), x)
    want = numpy_logits(w, x)
    err = float(np.abs(got - want).max())
    print(f"  torch vs NumPy spec ({activation}): max |logit diff| = {err:.2e}")
    assert err < 1e-4 * max(1.0, float(np.abs(want).max())), err
    back = numpy_weights_from_torch(peers.torch_lenet(w))
    assert all(np.array_equal(np.asarray(back[k]), np.asarray(w[k])) for k in w), "round trip"
  try:
    from flax import nnx

    from jsma_jax.models import LeNet, lenet_numpy_weights
  except ImportError as e:
    print(f"  Flax LeNet parity: skipped ({e})")
    return
  for activation in ("tanh", "relu"):
    model = LeNet(activation=activation, rngs=nnx.Rngs(1))
    want = np.asarray(model(x))
    got = peers.torch_logits(peers.torch_lenet(lenet_numpy_weights(model)), x)
    err = float(np.abs(got - want).max())
    print(f"  torch vs Flax LeNet ({activation}): max |logit diff| = {err:.2e}")
    assert err < 1e-4 * max(1.0, float(np.abs(want).max())), err


def trained_weights(activation: str, n_train: int, seed: int, cache: pathlib.Path) -> dict:
  """One epoch of Adam on the first n_train training images; cached as .npz."""
  path = cache / f"check_lenet_{activation}_{n_train}_{seed}.npz"
  if path.exists():
    print(f"  cached: {path.relative_to(ROOT)}")
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  x, y = load_mnist("train")
  torch.manual_seed(seed)
  model = peers.torch_lenet(random_weights(seed, activation)).train()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  xt = torch.from_numpy(x[:n_train]).permute(0, 3, 1, 2)
  yt = torch.from_numpy(y[:n_train])
  start = time.perf_counter()
  for idx in torch.randperm(n_train).split(64):
    opt.zero_grad()
    F.cross_entropy(model(xt[idx]), yt[idx]).backward()
    opt.step()
  w = numpy_weights_from_torch(model.eval())
  print(f"  trained {n_train} images, 1 epoch, {time.perf_counter() - start:.1f} s")
  cache.mkdir(parents=True, exist_ok=True)
  np.savez(path, **w)
  return w


def check_pair_choice() -> None:
  """The peers' pair selection on hand-built Jacobians (2 classes, 6 features, target 0).

  (a) increasing, no admissible pair (a_i = -1, b_i = +1): the paper stops; (b) decreasing
  with admissible pairs (a = -(1..6), b = +1): the paper picks (4, 5), the largest
  |alpha| * beta.
  """
  import torchattacks
  peers._import_advertorch()
  from advertorch.attacks import JacobianSaliencyMapAttack

  m = 6
  cases = {"(a) increasing, none admissible": (-np.ones(m), np.ones(m), True),
           "(b) decreasing, (4, 5) best": (-np.arange(1.0, m + 1), np.ones(m), False)}
  dummy = torch.nn.Linear(m, 2)
  for label, (a, b, increasing) in cases.items():
    jac = torch.tensor(np.stack([a, b]), dtype=torch.float32)
    theta = 1.0 if increasing else -1.0
    ta = torchattacks.JSMA(dummy, theta=theta)
    p, q = ta.saliency_map(jac, torch.tensor([0]), increasing, torch.ones(m, dtype=torch.bool), m)
    line = f"  {label:34s} torchattacks ({int(p)}, {int(q)})"
    for cc in (False, True):
      adv = JacobianSaliencyMapAttack(dummy, 2, theta=theta, comply_cleverhans=cc)
      p1, p2, valid = adv._saliency_map(torch.ones(1, m, dtype=torch.int32), jac[:1], jac[1:],
                                        torch.tensor([0]))
      name = "advertorch(cleverhans)" if cc else "advertorch"
      line += f"  {name} ({int(p1)}, {int(p2)}) valid={bool(valid)}"
    print(line)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--activation", choices=["tanh", "relu"], default="tanh")
  ap.add_argument("--digits", type=int, default=10, help="test digits to attack")
  ap.add_argument("--targets", type=int, default=3, help="targets per digit (of the 9 others)")
  ap.add_argument("--batch-size", type=int, default=10)
  ap.add_argument("--train-images", type=int, default=20000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
  ap.add_argument("--peers", default="advertorch,torchattacks,art")
  ap.add_argument("--cache", type=pathlib.Path, default=ROOT / "runs" / "bench")
  args = ap.parse_args(argv)
  names = args.peers.split(",")
  unknown = [n for n in names if n not in peers.PEERS]
  if unknown:
    ap.error(f"unknown peers {unknown}; choose from {sorted(peers.PEERS)}")

  print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}")
  x_test, y_test = load_mnist("test")
  print("1-2. weight layout")
  check_layout(x_test[:8])

  print("3. LeNet for the attacks")
  w = trained_weights(args.activation, args.train_images, args.seed, args.cache)
  model = peers.torch_lenet(w)
  pred = peers.torch_logits(model, x_test[:2000]).argmax(1)
  print(f"  test accuracy (first 2000): {np.mean(pred == y_test[:2000]):.4f}")

  # Correctly classified digits; targets spread over the 9 other classes.
  idx = np.flatnonzero(pred == y_test[:2000])[:args.digits]
  offsets = 1 + (np.arange(args.targets) * 9 // max(args.targets, 1)) % 9
  src = np.repeat(idx, len(offsets))
  tgt = (y_test[src] + np.tile(offsets, len(idx))) % 10
  x = x_test[src]
  print(f"4. peers: {len(idx)} digits x {len(offsets)} targets = {len(x)} attacks, "
        f"theta=+1, gamma=0.145, batch_size={args.batch_size}")
  header = (f"  {'peer':13s} {'version':8s} {'success':>8s} {'L0 succ':>8s} {'L0 max':>6s} "
            f"{'px0':>4s} {'seconds':>8s} {'att/s':>7s} {'peak MB':>8s}")
  print(header)
  for name in names:
    r = peers.PEERS[name](w, x, tgt, batch_size=args.batch_size, device="cpu",
                          threads=args.threads)
    px0 = int(np.sum(r["x_adv"].reshape(len(x), -1)[:, 0] != x.reshape(len(x), -1)[:, 0]))
    print(f"  {name:13s} {r['version']:8s} {r['success_rate']:8.3f} {r['mean_l0_success']:8.1f} "
          f"{r['max_l0']:6d} {px0:4d} {r['seconds']:8.2f} {r['attacks_per_s']:7.2f} "
          f"{r['peak_mem_bytes'] / 2**20:8.1f}", flush=True)
    assert r["x_adv"].shape == x.shape and r["x_adv"].min() >= 0 and r["x_adv"].max() <= 1
  print(f"  memory: {r['mem_method']}; OMP_WAIT_POLICY={r['omp_wait_policy']}; "
        f"torch threads {r['torch_threads']}; load average {os.getloadavg()[0]:.1f}")

  print("5. decreasing mode (theta=-1): no pixel may increase")
  xd, td = x[:3], tgt[:3]
  for name in names:
    r = peers.PEERS[name](w, xd, td, batch_size=args.batch_size, device="cpu", warmup=0,
                          threads=args.threads, theta=-1.0)
    up = int(np.sum(r["x_adv"] > xd))
    down = int(np.sum(r["x_adv"] < xd))
    print(f"  {name:13s} pixels raised {up:3d}, lowered {down:3d}, success {r['success_rate']:.2f}")
    assert up == 0, f"{name} raised pixels in decreasing mode"
  print("6. pair choice on hand-built Jacobians (reads peer internals)")
  check_pair_choice()
  print("all checks passed")
  return 0


if __name__ == "__main__":
  sys.exit(main())
