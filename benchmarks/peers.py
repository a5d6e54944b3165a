"""Peer JSMA implementations, run on jsma-jax's model weights, for the benchmark harness.

Three published JSMAs run here on the same weights, examples and targets as jsma-jax,
attacking a PyTorch port of the JAX model chosen by the weight dict (``torch_model``):
``TorchLeNet`` for ``jsma_jax.models.lenet_numpy_weights`` dicts, ``TorchCifarCNN`` for
``benchmarks/cifar_cnn.numpy_weights`` dicts (``"kind": "cifar-cnn"``; 32x32x3, strided
SAME convolutions padded as XLA pads them, BatchNorm in eval mode, 2x2 average pools).

  run_advertorch    AdverTorch 0.2.3 ``JacobianSaliencyMapAttack`` (pairwise rule, batched)
  run_torchattacks  torchattacks 3.5.1 ``JSMA`` (pairwise rule, one image at a time)
  run_art           ART 1.20.1 ``SaliencyMapMethod`` (target gradient only, not the
                    paper's rule)

All are configured to the paper's MNIST settings (Papernot et al. 2016): theta = +1,
gamma = 14.5%, clip to [0, 1], Jacobians of the logits. How each deviates from the paper
is in ``benchmarks/PEERS.md``. Needs the ``.venv-bench`` environment
(``bash benchmarks/setup_env.sh``).

API (every argument after ``targets`` is keyword-only)::

    weights = jsma_jax.models.lenet_numpy_weights(model)      # or cifar_cnn.numpy_weights(cnn)
    res = run_advertorch(weights, x_nhwc, targets, batch_size=32, device="cpu")
    res["attacks_per_s"], res["success_rate"], res["mean_l0_success"], res["peak_mem_bytes"]

  x_nhwc   float [N, 28, 28, 1] in [0, 1] (any H, W, C the weights fit; [N, 32, 32, 3]
           for the CIFAR-sized CNN)
  targets  int [N] target classes (one attack per row: repeat rows for several targets)

Each ``run_*`` returns a dict: ``name``, ``version``, ``x_adv`` (NHWC float32 numpy),
``success`` (bool [N], ``argmax logits(x_adv) == target`` with the same torch model),
``l0`` (int [N], features changed), ``n``, ``seconds`` (wall time of the timed call, after
an excluded warm-up call on ``warmup`` examples), ``attacks_per_s``, ``success_rate``,
``mean_l0_success``, ``mean_l0_all``, ``max_l0``, ``peak_mem_bytes``, ``mem_method``,
``maxrss_growth_bytes``, ``loadavg``, ``device``, ``batch_size``, ``torch_threads``,
``omp_wait_policy``, ``settings``. ``PEERS`` maps short names to the functions.
Keyword options common to all: ``batch_size``, ``device`` ("cpu", "cuda", ...), ``warmup``
(examples in the untimed first call, default 2), ``threads`` (torch intra-op threads
during the call; None keeps torch's setting), ``theta``, ``gamma``. The model's parameters
are frozen (``requires_grad=False``) so that no peer spends time on weight gradients; the
peers themselves are not modified.

Memory: on CUDA, ``torch.cuda.max_memory_allocated`` above what was allocated at the start.
On CPU (Linux), the peak resident set size above the RSS at the start: the kernel's
high-water mark ``VmHWM`` is reset by writing 5 to ``/proc/self/clear_refs`` and read at
the end (exact, no overhead), after ``gc.collect`` and glibc ``malloc_trim`` so that memory
freed by earlier runs does not hide this run's peak. If clear_refs is not writable, a
thread samples ``/proc/self/statm`` every 2 ms instead. Torch's CPU tensors are not visible
to ``tracemalloc``, and ``ru_maxrss`` is a process-lifetime maximum, so neither measures one
call inside a long process; ``ru_maxrss`` growth is reported too. ``mem_method`` says which.
The 1-minute load average before and after the timed call is recorded (``loadavg``): on
a shared machine, compare rates only between runs with similar load.

Compatibility shims for AdverTorch 0.2.3 with current torch (installed by
``_import_advertorch`` before the first import, nothing else is patched):
  1. ``advertorch/attacks/fast_adaptive_boundary.py`` does ``from torch.autograd.gradcheck
     import zero_gradients``, which torch 2.13 no longer has. We add torch's old
     implementation to ``torch.autograd.gradcheck`` if it is missing. Only FAB uses it.
  2. ``advertorch/functional.py`` does ``from torchvision import transforms`` and builds
     ``ToPILImage()``/``ToTensor()`` at import time; JSMA never uses them. If torchvision
     does not import, a stub ``torchvision`` whose transforms raise when called is put in
     ``sys.modules`` for the import of advertorch and removed right after, so no other
     library ever sees a fake torchvision.
"""

from __future__ import annotations

import collections.abc
import ctypes
import gc
import importlib
import importlib.metadata
import os
import resource
import sys
import threading
import time
import types
from collections.abc import Callable

# libgomp reads OMP_WAIT_POLICY when torch is imported. Its default (threads spin while
# waiting) makes torch 5-10x slower on a CPU shared with other jobs: measured on the 2-core
# machine at load 5-6, AdverTorch took 4-11 s with 2 spinning threads, 0.8-1.3 s with
# PASSIVE, and 0.8-1.3 s with 1 thread. An explicit setting in the environment wins.
_TORCH_IMPORTED_FIRST = "torch" in sys.modules
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

THETA = 1.0
GAMMA = 0.145


class TorchLeNet(nn.Module):
  """jsma-jax's LeNet in PyTorch (NCHW input): conv 20@5x5, pool, conv 50@5x5, pool, 500, N.

  Activation after conv1, conv2 and fc1; max-pool commutes with tanh and ReLU, so the
  order activation/pool does not matter. ``fc1`` takes the NCHW flatten, its weight rows
  permuted from the NHWC order of the weight dict by ``load_numpy_weights``.
  """

  def __init__(self, *, activation: str = "tanh", in_channels: int = 1, num_classes: int = 10,
               fc1_in: int = 800):
    super().__init__()
    if activation not in ("tanh", "relu"):
      raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
    self.activation = activation
    self.num_classes = num_classes
    self.conv1 = nn.Conv2d(in_channels, 20, 5)
    self.conv2 = nn.Conv2d(20, 50, 5)
    self.fc1 = nn.Linear(fc1_in, 500)
    self.fc2 = nn.Linear(500, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    act = torch.tanh if self.activation == "tanh" else F.relu
    x = F.max_pool2d(act(self.conv1(x)), 2)
    x = F.max_pool2d(act(self.conv2(x)), 2)
    x = act(self.fc1(x.flatten(1)))
    return self.fc2(x)


def torch_lenet(weights: dict, *, device: str | torch.device = "cpu") -> TorchLeNet:
  """Builds a ``TorchLeNet`` in eval mode from a ``lenet_numpy_weights`` dict.

  HWIO kernels become OIHW; ``fc1.kernel`` rows (h, w, c) are reordered to (c, h, w).
  """
  required = ["conv1.kernel", "conv1.bias", "conv2.kernel", "conv2.bias", "fc1.kernel",
              "fc1.bias", "fc2.kernel", "fc2.bias", "activation"]
  missing = [k for k in required if k not in weights]
  if missing:
    raise ValueError(f"weights is missing {missing}")
  w = {k: np.asarray(weights[k]) for k in required}
  c2 = w["conv2.kernel"].shape[3]
  rows, hidden = w["fc1.kernel"].shape
  side = round((rows // c2) ** 0.5)
  if side * side * c2 != rows:
    raise ValueError(f"fc1.kernel has {rows} rows, not a square map of {c2} channels")
  model = TorchLeNet(activation=str(w["activation"]), in_channels=w["conv1.kernel"].shape[2],
                     num_classes=w["fc2.kernel"].shape[1], fc1_in=rows)
  fc1 = w["fc1.kernel"].reshape(side, side, c2, hidden).transpose(2, 0, 1, 3).reshape(rows, hidden)
  state = {
      "conv1.weight": w["conv1.kernel"].transpose(3, 2, 0, 1), "conv1.bias": w["conv1.bias"],
      "conv2.weight": w["conv2.kernel"].transpose(3, 2, 0, 1), "conv2.bias": w["conv2.bias"],
      "fc1.weight": fc1.T, "fc1.bias": w["fc1.bias"],
      "fc2.weight": w["fc2.kernel"].T, "fc2.bias": w["fc2.bias"],
  }
  model.load_state_dict({k: torch.tensor(np.ascontiguousarray(v, np.float32))
                         for k, v in state.items()})
  return model.to(device).eval()


def _same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
  """TF/XLA ``SAME`` padding of an NCHW tensor: the odd pixel goes to the end (bottom, right).

  ``lax.padtype_to_pads``: output ``ceil(n / stride)``, total padding
  ``max((out - 1) * stride + kernel - n, 0)``, ``total // 2`` before and the rest after.
  torch's ``padding="same"`` refuses ``stride > 1``, and a symmetric ``padding=1`` would
  shift a stride-2 convolution's grid by one pixel on even inputs.
  """
  pads = []
  for n in (x.shape[3], x.shape[2]):  # F.pad wants (left, right, top, bottom)
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    pads += [total // 2, total - total // 2]
  return F.pad(x, pads) if any(pads) else x


class TorchCifarCNN(nn.Module):
  """``benchmarks/cifar_cnn.CifarCNN`` in PyTorch (NCHW input), BatchNorm in eval mode.

  3x3 convolutions with XLA's SAME padding (stride 1: symmetric ``padding=1``; stride 2:
  explicit ``_same_pad``, the extra pixel at the bottom and right), ``BatchNorm2d`` with
  flax's epsilon and the JAX model's running statistics, ReLU, ``avg_pool2d(2)`` (2x2
  VALID windows: no padding, so no ``count_include_pad`` question), and ``fc1`` on the NCHW
  flatten with its weight rows permuted from the NHWC order by ``torch_cifar_cnn``.
  """

  def __init__(self, *, in_channels: int = 3, widths: tuple[int, int, int] = (16, 32, 64),
               hidden: int = 128, num_classes: int = 10, side: int = 32, eps: float = 1e-5):
    super().__init__()
    c1, c2, c3 = widths
    self.num_classes = num_classes
    self.conv1 = nn.Conv2d(in_channels, c1, 3, stride=1, padding=1)
    self.bn1 = nn.BatchNorm2d(c1, eps=eps)
    self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=0)
    self.bn2 = nn.BatchNorm2d(c2, eps=eps)
    self.conv3 = nn.Conv2d(c2, c3, 3, stride=2, padding=0)
    self.bn3 = nn.BatchNorm2d(c3, eps=eps)
    self.fc1 = nn.Linear(c3 * (side // 8) ** 2, hidden)
    self.fc2 = nn.Linear(hidden, num_classes)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.relu(self.bn2(self.conv2(_same_pad(x, 3, 2))))
    x = F.relu(self.bn3(self.conv3(_same_pad(x, 3, 2))))
    x = F.avg_pool2d(x, 2)
    x = F.relu(self.fc1(x.flatten(1)))
    return self.fc2(x)


def torch_cifar_cnn(weights: dict, *, device: str | torch.device = "cpu") -> TorchCifarCNN:
  """Builds a ``TorchCifarCNN`` in eval mode from a ``cifar_cnn.numpy_weights`` dict.

  HWIO kernels become OIHW; BatchNorm ``scale``/``bias``/``mean``/``var`` become
  ``weight``/``bias``/``running_mean``/``running_var``; ``fc1.kernel`` rows (h, w, c) are
  reordered to (c, h, w).
  """
  w = {k: np.asarray(v) for k, v in weights.items()}
  widths = tuple(int(w[f"conv{i}.kernel"].shape[3]) for i in (1, 2, 3))
  rows, hidden = w["fc1.kernel"].shape
  side4 = round((rows // widths[2]) ** 0.5)
  if side4 * side4 * widths[2] != rows:
    raise ValueError(f"fc1.kernel has {rows} rows, not a square map of {widths[2]} channels")
  model = TorchCifarCNN(in_channels=int(w["conv1.kernel"].shape[2]), widths=widths, hidden=hidden,
                        num_classes=int(w["fc2.bias"].shape[0]), side=side4 * 8,
                        eps=float(w.get("bn_epsilon", 1e-5)))
  state = {}
  for i in (1, 2, 3):
    state[f"conv{i}.weight"] = w[f"conv{i}.kernel"].transpose(3, 2, 0, 1)
    state[f"conv{i}.bias"] = w[f"conv{i}.bias"]
    state[f"bn{i}.weight"] = w[f"bn{i}.scale"]
    state[f"bn{i}.bias"] = w[f"bn{i}.bias"]
    state[f"bn{i}.running_mean"] = w[f"bn{i}.mean"]
    state[f"bn{i}.running_var"] = w[f"bn{i}.var"]
  state["fc1.weight"] = (w["fc1.kernel"].reshape(side4, side4, widths[2], hidden)
                         .transpose(2, 0, 1, 3).reshape(rows, hidden).T)
  state["fc1.bias"] = w["fc1.bias"]
  state["fc2.weight"] = w["fc2.kernel"].T
  state["fc2.bias"] = w["fc2.bias"]
  tensors = {k: torch.tensor(np.ascontiguousarray(v, np.float32)) for k, v in state.items()}
  for i in (1, 2, 3):
    tensors[f"bn{i}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
  model.load_state_dict(tensors)
  return model.to(device).eval()


def weights_kind(weights: dict) -> str:
  """``"cifar-cnn"`` for ``cifar_cnn.numpy_weights`` dicts, ``"lenet"`` otherwise."""
  return str(weights["kind"]) if "kind" in weights else "lenet"


def torch_model(weights: dict, *, device: str | torch.device = "cpu") -> nn.Module:
  """The torch port for a weight dict: ``torch_lenet`` or ``torch_cifar_cnn`` (by ``"kind"``)."""
  kind = weights_kind(weights)
  if kind == "lenet":
    return torch_lenet(weights, device=device)
  if kind == "cifar-cnn":
    return torch_cifar_cnn(weights, device=device)
  raise ValueError(f"unknown weights kind {kind!r}")


def torch_logits(model: nn.Module, x_nhwc: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
  """Logits [N, classes] of NHWC numpy images, on the model's device, no grad."""
  device = next(model.parameters()).device
  out = []
  with torch.no_grad():
    for i in range(0, len(x_nhwc), batch_size):
      xb = torch.from_numpy(np.ascontiguousarray(x_nhwc[i:i + batch_size], np.float32))
      out.append(model(xb.permute(0, 3, 1, 2).to(device)).cpu().numpy())
  return np.concatenate(out)


# ---------------------------------------------------------------- AdverTorch shims

def _zero_gradients(x):
  """torch < 1.9's ``torch.autograd.gradcheck.zero_gradients``."""
  if isinstance(x, torch.Tensor):
    if x.grad is not None:
      x.grad.detach_()
      x.grad.zero_()
  elif isinstance(x, collections.abc.Iterable):
    for elem in x:
      _zero_gradients(elem)


def _torchvision_stub() -> types.ModuleType:
  def unavailable(name):
    class Stub:
      def __init__(self, *args, **kwargs):
        pass

      def __call__(self, *args, **kwargs):
        raise RuntimeError(f"torchvision.transforms.{name} is a jsma-jax benchmark stub")
    Stub.__name__ = name
    return Stub
  tv = types.ModuleType("torchvision")
  tv.transforms = types.ModuleType("torchvision.transforms")
  tv.transforms.ToPILImage = unavailable("ToPILImage")
  tv.transforms.ToTensor = unavailable("ToTensor")
  tv.__jsma_jax_stub__ = True
  return tv


def _import_advertorch():
  """Imports advertorch with the two shims described in the module docstring."""
  if "advertorch" in sys.modules:
    return sys.modules["advertorch"]
  # ``import torch.autograd.gradcheck as m`` would give the function ``gradcheck``, which
  # shadows the module of the same name on ``torch.autograd``.
  gradcheck = importlib.import_module("torch.autograd.gradcheck")
  if not hasattr(gradcheck, "zero_gradients"):
    gradcheck.zero_gradients = _zero_gradients
  stubbed = False
  try:
    import torchvision  # noqa: F401
  except Exception:  # absent, or present but broken (a wheel built for another torch)
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
    stub = _torchvision_stub()
    sys.modules["torchvision"], sys.modules["torchvision.transforms"] = stub, stub.transforms
    stubbed = True
  try:
    import advertorch
    import advertorch.attacks
  finally:
    if stubbed:
      del sys.modules["torchvision"], sys.modules["torchvision.transforms"]
  return advertorch


# ---------------------------------------------------------------- memory

class _PeakMemory:
  """Peak memory of a block above its start: CUDA allocator peak, or peak RSS on CPU.

  CPU, Linux: the kernel's RSS high-water mark ``VmHWM`` is reset to the current RSS by
  writing ``5`` to ``/proc/self/clear_refs``, and read back at the end: exact and free.
  Where that is not allowed, a thread samples ``/proc/self/statm`` every 2 ms (which costs
  the timed code a little on a loaded machine); elsewhere ``ru_maxrss`` growth.
  """

  def __init__(self, device: torch.device):
    self.device = device
    self.peak_bytes, self.maxrss_growth_bytes, self.method = 0, 0, ""
    self._thread = None

  @staticmethod
  def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1])
    raise KeyError(field)

  @staticmethod
  def _rss() -> int:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

  def _sample(self):
    while not self._stop.is_set():
      self._max = max(self._max, self._rss())
      self._stop.wait(0.002)

  def __enter__(self):
    gc.collect()
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)
      torch.cuda.reset_peak_memory_stats(self.device)
      self._base = torch.cuda.memory_allocated(self.device)
      self.method = "torch.cuda.max_memory_allocated above the allocation at start"
      return self
    try:  # return memory freed by earlier runs to the OS, so the baseline is honest
      ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
      pass
    self._maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
      with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
      self._base = self._status_kib("VmRSS") * 1024
      self.method = "peak RSS above RSS at start (VmHWM reset via /proc/self/clear_refs)"
    except (OSError, KeyError):
      if os.path.exists("/proc/self/statm"):
        self._base = self._max = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.method = "peak RSS above RSS at start, /proc/self/statm sampled every 2 ms"
      else:
        self.method = "ru_maxrss growth (process-lifetime maximum: a lower bound)"
    return self

  def __exit__(self, *exc):
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)
      self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
      return False
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    self.maxrss_growth_bytes = maxrss - self._maxrss0
    if self.method.startswith("peak RSS above RSS at start (VmHWM"):
      self.peak_bytes = self._status_kib("VmHWM") * 1024 - self._base
    elif self._thread is not None:
      self._stop.set()
      self._thread.join()
      self.peak_bytes = max(self._max, self._rss()) - self._base
    else:
      self.peak_bytes = self.maxrss_growth_bytes
    return False


# ---------------------------------------------------------------- common runner

AttackFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x NCHW f32, targets i64) -> x_adv NCHW


def _version(dist: str) -> str:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _check_inputs(weights, x_nhwc, targets, batch_size, warmup):
  x = np.asarray(x_nhwc)
  t = np.asarray(targets)
  if x.ndim != 4:
    raise ValueError(f"x_nhwc must be [N, H, W, C], got shape {x.shape}")
  if not np.issubdtype(x.dtype, np.floating) or (x.size and (x.min() < 0 or x.max() > 1)):
    raise ValueError("x_nhwc must be floating point in [0, 1]")
  num_classes = np.asarray(weights["fc2.bias"]).shape[0]
  if t.shape != (x.shape[0],) or not np.issubdtype(t.dtype, np.integer):
    raise ValueError(f"targets must be integers of shape ({x.shape[0]},), got {t.dtype} {t.shape}")
  if t.size and (t.min() < 0 or t.max() >= num_classes):
    raise ValueError(f"targets must lie in [0, {num_classes})")
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
  if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
    raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
  return np.ascontiguousarray(x, np.float32), t.astype(np.int64)


def _run(name: str, dist: str, make: Callable[[nn.Module, torch.device, tuple], AttackFn], weights,
         x_nhwc, targets, *, batch_size, device, warmup, threads, settings) -> dict:
  x, t = _check_inputs(weights, x_nhwc, targets, batch_size, warmup)
  if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                              or threads < 1):
    raise ValueError(f"threads must be a positive int or None, got {threads!r}")
  old_threads = torch.get_num_threads()
  if threads is not None:
    torch.set_num_threads(threads)
  try:
    return _run_timed(name, dist, make, weights, x, t, batch_size=batch_size, device=device,
                      warmup=warmup, settings=settings)
  finally:
    torch.set_num_threads(old_threads)


def _run_timed(name, dist, make, weights, x, t, *, batch_size, device, warmup, settings) -> dict:
  device = torch.device(device)
  model = torch_model(weights, device=device)
  for p in model.parameters():
    p.requires_grad_(False)  # gradients w.r.t. the input only
  x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
  attack = make(model, device, x_nchw.shape[1:])
  if warmup and len(x):
    attack(x_nchw[:warmup], t[:warmup])
  load_before = os.getloadavg()[0]
  with _PeakMemory(device) as mem:
    start = time.perf_counter()
    x_adv = np.asarray(attack(x_nchw, t), np.float32)
    seconds = time.perf_counter() - start
  x_adv = np.ascontiguousarray(x_adv.reshape(x_nchw.shape).transpose(0, 2, 3, 1))
  success = torch_logits(model, x_adv).argmax(axis=1) == t
  l0 = (x_adv != x).reshape(len(x), -1).sum(axis=1)
  return {
      "name": name, "version": _version(dist), "x_adv": x_adv, "success": success, "l0": l0,
      "n": len(x), "seconds": seconds,
      "attacks_per_s": len(x) / seconds if seconds > 0 else float("nan"),
      "success_rate": float(success.mean()) if len(x) else float("nan"),
      "mean_l0_success": float(l0[success].mean()) if success.any() else float("nan"),
      "mean_l0_all": float(l0.mean()) if len(x) else float("nan"),
      "max_l0": int(l0.max()) if len(x) else 0,
      "peak_mem_bytes": int(mem.peak_bytes), "mem_method": mem.method,
      "maxrss_growth_bytes": int(mem.maxrss_growth_bytes),
      "loadavg": [load_before, os.getloadavg()[0]],
      "device": str(device), "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "") + (
          " (set after torch was imported: may not apply)" if _TORCH_IMPORTED_FIRST else ""),
      "settings": settings,
  }


def _chunked(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device,
             batch_size) -> AttackFn:
  def attack(x_nchw, t):
    out = []
    for i in range(0, len(x_nchw), batch_size):
      xb = torch.from_numpy(x_nchw[i:i + batch_size]).to(device)
      tb = torch.from_numpy(t[i:i + batch_size]).to(device)
      out.append(fn(xb, tb).detach().cpu().numpy())
    return np.concatenate(out) if out else x_nchw.copy()
  return attack


# ---------------------------------------------------------------- the peers

def run_advertorch(weights, x_nhwc, targets, *, batch_size: int = 32, device="cpu",
                   warmup: int = 2, threads: int | None = None, theta: float = THETA,
                   gamma: float = GAMMA, comply_cleverhans: bool = False) -> dict:
  """AdverTorch 0.2.3 ``JacobianSaliencyMapAttack.perturb`` on chunks of ``batch_size``.

  Memory grows as batch_size * M^2 (several [B, 784, 784] tensors: ~10 MB per example).
  """
  _import_advertorch()
  from advertorch.attacks import JacobianSaliencyMapAttack

  def make(model, dev, _):
    atk = JacobianSaliencyMapAttack(model, num_classes=model.num_classes, clip_min=0.0,
                                    clip_max=1.0, theta=theta, gamma=gamma,
                                    comply_cleverhans=comply_cleverhans)
    return _chunked(lambda xb, tb: atk.perturb(xb, tb), dev, batch_size)

  settings = {"theta": theta, "gamma": gamma, "clip": [0.0, 1.0], "logits": True,
              "comply_cleverhans": comply_cleverhans}
  return _run("advertorch", "advertorch", make, weights, x_nhwc, targets, batch_size=batch_size,
              device=device, warmup=warmup, threads=threads, settings=settings)


def run_torchattacks(weights, x_nhwc, targets, *, batch_size: int = 32, device="cpu",
                     warmup: int = 2, threads: int | None = None, theta: float = THETA,
                     gamma: float = GAMMA) -> dict:
  """torchattacks 3.5.1 ``JSMA`` in targeted-by-label mode; it loops over images itself.

  ``batch_size`` only sets how many images go to one call; the attack is per image.
  Clipping is hard-coded to [0, 1] in the peer.
  """
  import torchattacks

  def make(model, dev, _):
    atk = torchattacks.JSMA(model, theta=theta, gamma=gamma)
    atk.set_device(dev)
    atk.set_mode_targeted_by_label(quiet=True)
    return _chunked(lambda xb, tb: atk(xb, tb), dev, batch_size)

  settings = {"theta": theta, "gamma": gamma, "clip": [0.0, 1.0], "logits": True,
              "mode": "targeted(label)"}
  return _run("torchattacks", "torchattacks", make, weights, x_nhwc, targets,
              batch_size=batch_size, device=device, warmup=warmup, threads=threads,
              settings=settings)


def run_art(weights, x_nhwc, targets, *, batch_size: int = 32, device="cpu", warmup: int = 2,
            threads: int | None = None, theta: float = THETA, gamma: float = GAMMA) -> dict:
  """ART 1.20.1 ``SaliencyMapMethod`` over a ``PyTorchClassifier`` (logits, clip [0, 1])."""
  from art.attacks.evasion import SaliencyMapMethod
  from art.estimators.classification import PyTorchClassifier

  def make(model, dev, input_shape):
    nb_classes = model.num_classes
    clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(),
                            input_shape=tuple(input_shape), nb_classes=nb_classes,
                            clip_values=(0.0, 1.0), channels_first=True,
                            device_type="gpu" if dev.type == "cuda" else "cpu")
    atk = SaliencyMapMethod(clf, theta=theta, gamma=gamma, batch_size=batch_size, verbose=False)
    return lambda x_nchw, t: atk.generate(x_nchw, y=t)

  settings = {"theta": theta, "gamma": gamma, "clip": [0.0, 1.0], "logits": True}
  return _run("art", "adversarial-robustness-toolbox", make, weights, x_nhwc, targets,
              batch_size=batch_size, device=device, warmup=warmup, threads=threads,
              settings=settings)


PEERS: dict[str, Callable[..., dict]] = {
    "advertorch": run_advertorch,
    "torchattacks": run_torchattacks,
    "art": run_art,
}
