r"""What a user waits for: the first call, cold and with a warm compilation cache, beside the steady call.

Every number comes from a fresh Python process (a worker of this script), because a
first call is a property of a process. For each model kind, four workers run in turn:

- ``cold``: the cache off; the first ``jsma`` call (trace + compile + run) and the
  median of ``--repeats`` later calls (the steady call).
- ``compile``: the cache off; ``jsma_jax.lower`` (validation + trace + lowering) and
  ``.compile()`` timed apart, the size of the program (characters of StableHLO, count
  of ``stablehlo.while`` loops, of convolutions and of dot products: the model's code
  repeated in the program shows there), and the compile of the model's own derivatives
  (the forward pass and two VJP rows per example, vmapped over the batch: the work of one
  attack iteration, without the engine), lowered and compiled the same way.
- ``fill``: the cache on, in a new empty folder (``jsma_jax.enable_compile_cache``);
  its first call stores the programs.
- ``warm``: the cache on, the same folder: a second process's first call and its steady
  call (for a jsma_jax without ``enable_compile_cache``, one from before the cache existed, there
  is no cache: its second process compiles again, and that is what is recorded).

``--baseline DIR`` runs every worker also with another jsma_jax first on the path,
interleaved with this checkout's (same models, same machine, same moment), e.g.::

    git archive e2fdac0 jsma_jax | tar -x -C /tmp/base   # the commit before the compile cache
    python benchmarks/first_call.py --models lenet,mlp --baseline /tmp/base --out results.json

Model kinds (``--models``, comma-separated):

- ``lenet``: the shipped paper LeNet (``jsma_jax.models.load_paper_lenet``, Flax NNX),
  30 embedded MNIST test digits x their 9 other classes = 270 attacks (the first-call row).
- ``lax-lenet``: the same weights as a raw ``lax`` function (``tests/user_models.py``,
  NCHW convolutions, ``reduce_window`` max-pools), the same 270 attacks.
- ``torch-lenet``: the same weights as a PyTorch module (``benchmarks/peers.torch_lenet``)
  through ``jsma_jax.torch.from_torch`` (its conversion is timed apart), the same 270
  attacks in NCHW. Needs torch.
- ``mlp``: a plain Flax NNX MLP on 30 features (30-64-64-10, tanh, seeded random
  weights), 8 examples (the small-model row: attack compile / derivatives compile).
- ``cifar-cnn``: the CIFAR-sized NNX CNN of ``benchmarks/cifar_cnn.py`` (seeded random
  weights: compile and first-call times do not depend on training), 1 image x 9 targets.

    python benchmarks/first_call.py --models lenet,mlp --repeats 3 --out benchmarks/results/first_call.json

The machine (CPU model, family, model number, core count) and the load average before
and after each worker are recorded: on a shared machine compare ratios taken in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
KINDS = ("lenet", "lax-lenet", "torch-lenet", "mlp", "cifar-cnn")
MODES = ("cold", "compile", "fill", "warm")


# ---------------------------------------------------------------- the models (built inside a worker)

def _lenet_sources():
  import jax.numpy as jnp

  import jsma_jax
  from jsma_jax.models import load_embedded_mnist

  x, y = load_embedded_mnist("test")
  idx = [i for c in range(10) for i in [j for j in range(len(y)) if y[j] == c][:3]]  # 3 digits per class
  b = jsma_jax.all_other_targets(jnp.asarray(x[idx]), jnp.asarray(y[idx]), 10)
  return b.x, b.targets


def build(kind: str) -> dict:
  """``{"apply_fn", "params", "x", "targets", "convert_s"}`` of a model kind."""
  import jax
  import jax.numpy as jnp

  if kind in ("lenet", "lax-lenet", "torch-lenet"):
    from jsma_jax.models import as_logits_fn, lenet_numpy_weights, load_paper_lenet

    model, _ = load_paper_lenet()
    apply_fn, params = as_logits_fn(model)
    x, t = _lenet_sources()
    if kind == "lax-lenet":
      sys.path.insert(0, str(ROOT / "tests"))
      import user_models

      return dict(apply_fn=user_models.LAX_LENET[model.activation], params=user_models.lax_params_from_nnx(params),
                  x=x, targets=t, convert_s=None)
    if kind == "torch-lenet":
      sys.path.insert(0, str(HERE))
      import peers
      import torch

      from jsma_jax.torch import from_torch

      start = time.perf_counter()
      apply_fn, params = from_torch(peers.torch_lenet(lenet_numpy_weights(model)), torch.zeros(1, 1, 28, 28))
      convert = time.perf_counter() - start
      return dict(apply_fn=apply_fn, params=params, x=jnp.transpose(x, (0, 3, 1, 2)), targets=t, convert_s=convert)
    return dict(apply_fn=apply_fn, params=params, x=x, targets=t, convert_s=None)
  if kind == "mlp":
    from flax import nnx

    from jsma_jax.models import as_logits_fn

    class MLP(nnx.Module):
      def __init__(self, rngs):
        self.l1, self.l2, self.l3 = (nnx.Linear(a, b, rngs=rngs) for a, b in ((30, 64), (64, 64), (64, 10)))

      def __call__(self, x):
        return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))

    apply_fn, params = as_logits_fn(MLP(nnx.Rngs(0)))
    x = jax.random.uniform(jax.random.key(1), (8, 30))
    labels = jnp.argmax(apply_fn(params, x), axis=1)
    return dict(apply_fn=apply_fn, params=params, x=x, targets=(labels + 1) % 10, convert_s=None)
  if kind == "cifar-cnn":
    from flax import nnx

    sys.path.insert(0, str(HERE))
    import cifar_cnn

    from jsma_jax.models import as_logits_fn

    apply_fn, params = as_logits_fn(cifar_cnn.CifarCNN(rngs=nnx.Rngs(0)))
    x1 = jax.random.uniform(jax.random.key(1), (1, 32, 32, 3))
    label = int(jnp.argmax(apply_fn(params, x1), axis=1)[0])
    t = jnp.array([c for c in range(10) if c != label], jnp.int32)
    return dict(apply_fn=apply_fn, params=params, x=jnp.repeat(x1, 9, axis=0), targets=t, convert_s=None)
  raise ValueError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def derivatives(apply_fn):
  """The model's work in one attack iteration: logits and two VJP rows (target, sum of the others) per example."""
  import jax

  def one(params, x, t):
    logits, vjp = jax.vjp(lambda v: apply_fn(params, v[None])[0], x)
    e = jax.nn.one_hot(t, logits.shape[0], dtype=logits.dtype)
    return logits, vjp(e)[0], vjp(1 - e)[0]

  return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))


# ---------------------------------------------------------------- a worker: one fresh process

def worker(kind: str, mode: str, cache: str | None, repeats: int) -> dict:
  start = time.perf_counter()
  import jax
  import numpy as np

  import jsma_jax

  cached = hasattr(jsma_jax, "enable_compile_cache")  # False for a version before the cache: no cache to enable
  if cache is not None and cached:
    jsma_jax.enable_compile_cache(cache)
  m = build(kind)
  f, params, x, t = m["apply_fn"], m["params"], m["x"], m["targets"]
  out = {"kind": kind, "mode": mode, "library": jsma_jax.__file__, "cache_available": cached,
         "setup_s": time.perf_counter() - start, "convert_s": m["convert_s"],
         "attacks": int(x.shape[0]), "device": str(jax.devices()[0]), "num_devices": jax.device_count()}
  if mode == "compile":
    jax.block_until_ready(jax.jit(lambda v: v + 1)(np.float32(0)))  # the backend up before any timing
    d = derivatives(f)
    s = time.perf_counter()
    lowered = d.lower(params, x, t)
    out["derivatives_lower_s"] = time.perf_counter() - s
    s = time.perf_counter()
    lowered.compile()
    out["derivatives_compile_s"] = time.perf_counter() - s
    out["derivatives_hlo_chars"] = len(lowered.as_text())
    s = time.perf_counter()
    lowered = jsma_jax.lower(f, x, t, params=params)
    out["lower_s"] = time.perf_counter() - s
    s = time.perf_counter()
    lowered.compile()
    out["compile_s"] = time.perf_counter() - s
    text = lowered.as_text()
    out["hlo_chars"] = len(text)
    out["while_loops"] = text.count("stablehlo.while")
    out["convolutions"] = text.count("stablehlo.convolution")
    out["dot_generals"] = text.count("stablehlo.dot_general")
    out["derivatives_convolutions"] = d.lower(params, x, t).as_text().count("stablehlo.convolution")
    return out
  s = time.perf_counter()
  result = jax.block_until_ready(jsma_jax.jsma(f, x, t, params=params))
  out["first_call_s"] = time.perf_counter() - s
  out["process_to_result_s"] = time.perf_counter() - start
  if mode == "fill":
    return out
  times = []
  for _ in range(repeats):
    s = time.perf_counter()
    again = jax.block_until_ready(jsma_jax.jsma(f, x, t, params=params))
    times.append(time.perf_counter() - s)
  out["steady_s"] = statistics.median(times)
  out["steady_all_s"] = times
  out["success_rate"] = float(np.mean(result.success))
  out["same_as_steady"] = bool(np.array_equal(np.asarray(result.x_adv), np.asarray(again.x_adv)))
  out["x_adv_sum"] = float(np.asarray(result.x_adv, np.float64).sum())
  return out


# ---------------------------------------------------------------- the driver

def machine() -> dict:
  info = {}
  try:
    with open("/proc/cpuinfo") as fh:
      for line in fh:
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "cpu family", "model") and key not in info:
          info[key] = value.strip()
  except OSError:
    pass
  import jax

  return {"cpu": info, "cores": os.cpu_count(), "jax": jax.__version__, "shared_machine": True}


def run_worker(kind: str, mode: str, cache: str | None, repeats: int, library: str | None = None) -> dict:
  env = {k: v for k, v in os.environ.items() if k != "JSMA_JAX_COMPILE_CACHE"}
  if library:  # another jsma_jax first on the path (e.g. a `git archive` of an older commit)
    env["PYTHONPATH"] = os.pathsep.join([library] + [p for p in [env.get("PYTHONPATH")] if p])
  before = os.getloadavg()
  done = subprocess.run([sys.executable, __file__, "--worker", kind, mode, cache or "", str(repeats)],
                        capture_output=True, text=True, env=env, cwd=ROOT)
  if done.returncode != 0:
    raise RuntimeError(f"worker {kind}/{mode} failed:\n{done.stderr[-4000:]}")
  out = json.loads(done.stdout.strip().splitlines()[-1])
  out["loadavg_before"], out["loadavg_after"] = before, os.getloadavg()
  return out


def summary(rows: dict) -> dict:
  if set(rows) != set(MODES):  # a run of some modes only (--modes): no ratios across them
    return {}
  cold, comp, warm = rows["cold"], rows["compile"], rows["warm"]
  return {
      "first_call_cold_s": cold["first_call_s"], "steady_s": cold["steady_s"],
      "cold_over_steady": cold["first_call_s"] / cold["steady_s"],
      "first_call_warm_cache_s": warm["first_call_s"], "warm_steady_s": warm["steady_s"],
      "warm_over_steady": warm["first_call_s"] / warm["steady_s"],
      "lower_s": comp["lower_s"], "compile_s": comp["compile_s"],
      "derivatives_compile_s": comp["derivatives_compile_s"],
      "compile_over_derivatives": comp["compile_s"] / comp["derivatives_compile_s"],
      "hlo_chars": comp["hlo_chars"], "while_loops": comp["while_loops"],
      "convolutions": comp["convolutions"], "derivatives_convolutions": comp["derivatives_convolutions"],
      "x_adv_same_cold_and_warm": cold["x_adv_sum"] == warm["x_adv_sum"],
  }


def table(record: dict) -> str:
  """The Markdown table of a results file: one row per model kind and library."""
  head = ("| model | jsma_jax | attacks | first call, cold (s) | steady call (s) | cold / steady | "
          "first call, 2nd process (s) | 2nd process / steady | lower (s) | compile (s) | derivatives compile (s) | "
          "compile / derivatives | StableHLO chars | while loops | load avg (1 min) |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for kind, by_lib in record["models"].items():
    for name, entry in by_lib.items():
      s, w = entry["summary"], entry["workers"]
      if not s:  # a run of some modes only
        continue
      loads = [v["loadavg_before"][0] for v in w.values()]
      lines.append(
          f"| {kind} | {name} | {w['cold']['attacks']} | {s['first_call_cold_s']:.2f} | {s['steady_s']:.3f} | "
          f"{s['cold_over_steady']:.1f}x | {s['first_call_warm_cache_s']:.2f} | {s['warm_over_steady']:.1f}x | "
          f"{s['lower_s']:.2f} | {s['compile_s']:.2f} | {s['derivatives_compile_s']:.2f} | "
          f"{s['compile_over_derivatives']:.1f}x | {s['hlo_chars']:,} | {s['while_loops']} | "
          f"{min(loads):.1f}-{max(loads):.1f} |")
  return "\n".join(lines)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default="lenet,mlp", help=f"comma-separated, of {','.join(KINDS)}")
  parser.add_argument("--repeats", type=int, default=3, help="steady calls per worker (median)")
  parser.add_argument("--out", default=None, help="write the results (JSON) here")
  parser.add_argument("--baseline", default=None,
                      help="a folder holding another jsma_jax (e.g. `git archive BASE jsma_jax | tar -x -C DIR`): "
                           "its workers run interleaved with this checkout's, as 'baseline'")
  parser.add_argument("--table", default=None, metavar="RESULTS_JSON",
                      help="print the Markdown table of a results file")
  parser.add_argument("--modes", default=",".join(MODES),
                      help=f"comma-separated, of {','.join(MODES)} (fill before warm)")
  args = parser.parse_args(argv)
  if args.table:
    print(table(json.loads(Path(args.table).read_text())))
    return
  kinds = [k for k in args.models.split(",") if k]
  bad = [k for k in kinds if k not in KINDS]
  if bad:
    parser.error(f"--models: unknown kind(s) {bad}; expected some of {list(KINDS)}")
  record = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "models": {}}
  libraries = {"current": None, **({"baseline": str(Path(args.baseline).resolve())} if args.baseline else {})}
  record["baseline"] = libraries.get("baseline")
  for kind in kinds:
    rows = {name: {} for name in libraries}
    with tempfile.TemporaryDirectory(prefix="jsma-first-call-") as tmp:
      for mode in [m for m in MODES if m in args.modes.split(",")]:
        for name, library in libraries.items():  # interleaved: the machine's load falls on both alike
          cache = os.path.join(tmp, name) if mode in ("fill", "warm") else None
          rows[name][mode] = run_worker(kind, mode, cache, args.repeats, library)
          print(kind, name, mode, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[name][mode].items()
                                   if k.endswith("_s") or k in ("hlo_chars", "while_loops", "loadavg_before")},
                flush=True)
    record["models"][kind] = {name: {"summary": summary(r), "workers": r} for name, r in rows.items()}
    for name in libraries:
      print(kind, name, json.dumps(record["models"][kind][name]["summary"], indent=1), flush=True)
    if args.out:  # after every model, so that a long run keeps what it measured
      Path(args.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
  if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    kind, mode, cache, repeats = sys.argv[2], sys.argv[3], sys.argv[4] or None, int(sys.argv[5])
    print(json.dumps(worker(kind, mode, cache, repeats)))
  else:
    main()
