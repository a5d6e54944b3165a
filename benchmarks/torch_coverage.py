r"""Which torchvision classifiers ``jsma_jax.torch.from_torch`` converts, and a short attack on each.

For every model of ``torchvision.models.list_models(module=torchvision.models)``, built as a
user builds it (random weights, eval mode, BatchNorm with random running statistics; a weight
matrix torchvision initialises to zero, ViT's head, gets random values too, else its logits
would be 0 for every input):

* ``converts``: ``from_torch(model, x)`` returns (its own check included: the logits of
  one example within float32 tolerance of torch's); else the first line of its error;
* ``logit_rel_diff``: max |JAX logits - torch logits| / max(1, max |torch logits|) on a
  batch of two (vmapped, jitted);
* ``attack_ran``: ``jsma_jax.jsma`` on the two examples towards a class other than the
  predicted one, ``max_iter`` iterations (default 2), completes with finite results and the
  second call repeats the first's ``x_adv``; by default only on one model per kind of
  building block (:data:`ATTACKED`; ``--attack all`` for every model), as a first call
  costs minutes on the shared machine;
* ``convert_s``: the conversion (export, decomposition, translation, check);
  ``attack_first_s``: the attack's first call (trace, compile, run); ``attack_second_s``:
  the same call again (the cached program).

Input size: 64x64, or the smallest a model takes (inception_v3: 75; maxvit_t: 224, its
partition grid needs 224/32 = 7; ViTs are built with ``image_size=64``, ``vit_h_14`` 56).
torchvision 0.28 (the index holds only its CUDA build) is installed beside torch's CPU build
with ``pip install --no-deps torchvision==0.28.0``; its compiled ops do not load, so the two
op schemas its Python code registers fakes for (``torchvision::nms``, ``qnms``) are defined
first; the classification models are pure Python.

Resumable: results go to ``--out`` (JSON, one entry per model, written after each model);
a model already there is skipped unless ``--redo``. ``--markdown`` writes the table, with
the rows of the ``--merge`` runs' JSON completing this run's. The committed table came from
two runs side by side, the conversions of every model and the attacks of :data:`ATTACKED`:

    nohup .venv/bin/python benchmarks/torch_coverage.py --attack none \
        --out benchmarks/results/torch_coverage.json --merge benchmarks/results/torch_coverage_attacks.json \
        --markdown benchmarks/results/torch_coverage.md > /tmp/torch_coverage.log 2>&1 &
    nohup .venv/bin/python benchmarks/torch_coverage.py --only-attacked \
        --out benchmarks/results/torch_coverage_attacks.json > /tmp/torch_coverage_attacks.log 2>&1 &
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import traceback
import warnings
from pathlib import Path

import numpy as np


def _import_torchvision():
  import torch

  try:
    import torchvision
  except RuntimeError:  # the CUDA build's C++ ops: define the schemas its fake registrations need
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _import_torchvision.lib = lib  # keep the definitions alive
    import torchvision
  import torchvision

  return torchvision


# Attacked by default (``--attack some``): one model per kind of building block (fire modules,
# channel split and shuffle, squeeze-excitation with hard-swish, residual blocks, MBConv,
# channels-last LayerNorm, attention, shifted windows). On the shared 2-core machine an
# attack's first call (tracing and compiling the loop) takes minutes per model.
ATTACKED = ("squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v3_small", "resnet18", "efficientnet_b0",
            "convnext_tiny", "vit_b_32", "swin_t")


# One model of each family, run first (``--family-first``), so that a run stopped early covers them all.
FAMILY_FIRST = ("alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
                "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf",
                "regnet_y_400mf", "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t",
                "swin_v2_t", "vgg11", "vit_b_32", "wide_resnet50_2")


def build(name: str):
  """``(model in eval mode, input side)``: random weights, BatchNorm statistics random too."""
  import torch

  torchvision = _import_torchvision()
  kwargs, side = {}, 64
  if name.startswith("vit_"):
    side = 56 if name.endswith("_14") else 64
    kwargs["image_size"] = side
  elif name.startswith("maxvit"):
    side = 224
  elif name.startswith("inception"):
    side = 75
  torch.manual_seed(0)
  model = torchvision.models.get_model(name, weights=None, **kwargs)
  gen = torch.Generator().manual_seed(1)
  with torch.no_grad():
    for t in model.parameters():  # a zero-initialised weight matrix (ViT's head): random too, or the
      if t.ndim >= 2 and not t.any():  # logits would be 0 whatever the input, and the check empty
        t.copy_(torch.randn(t.shape, generator=gen) * 0.02)
    for key, t in model.state_dict().items():
      if key.endswith("running_mean"):
        t.copy_(torch.rand(t.shape, generator=gen) * 0.2 - 0.1)
      elif key.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
  return model.eval(), side


def measure(name: str, max_iter: int, attack: bool) -> dict:
  import jax
  import jax.numpy as jnp
  import torch

  import jsma_jax
  from jsma_jax.torch import from_torch

  model, side = build(name)
  row = {"model": name, "input": [3, side, side],
         "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}
  x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(2))
  start = time.perf_counter()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      apply_fn, params = from_torch(model, x)
  except Exception as error:  # the refusal is the result
    row.update(converts=False, error=f"{type(error).__name__}: {error}", convert_s=time.perf_counter() - start)
    return row
  row.update(converts=True, convert_s=round(time.perf_counter() - start, 2))
  with torch.no_grad():
    want = model(x).numpy()
  # example by example: the program from_torch compiled for its check serves both
  forward = jax.jit(apply_fn)
  got = np.concatenate([np.asarray(forward(params, jnp.asarray(x[i:i + 1].numpy()))) for i in range(len(x))])
  row["logit_rel_diff"] = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
  if not attack:
    return row
  predicted = want.argmax(1)
  targets = (predicted + 1 + np.arange(2)) % want.shape[1]
  try:
    start = time.perf_counter()
    result = jsma_jax.jsma(apply_fn, x.numpy(), targets, params=params, max_iter=max_iter)
    jax.block_until_ready(result.x_adv)
    row["attack_first_s"] = round(time.perf_counter() - start, 2)
    start = time.perf_counter()
    again = jsma_jax.jsma(apply_fn, x.numpy(), targets, params=params, max_iter=max_iter)
    jax.block_until_ready(again.x_adv)
    row["attack_second_s"] = round(time.perf_counter() - start, 2)
    x_adv = np.asarray(result.x_adv)
    row["attack_ran"] = bool(np.isfinite(x_adv).all() and np.array_equal(x_adv, np.asarray(again.x_adv)))
    row["features_changed"] = [int(n) for n in np.asarray(result.n_changed)]
  except Exception as error:
    row.update(attack_ran=False, attack_error=f"{type(error).__name__}: {str(error)[:500]}")
    traceback.print_exc()
  return row


def machine() -> dict:
  info = {"platform": platform.platform(), "python": platform.python_version()}
  try:
    cpu = Path("/proc/cpuinfo").read_text().splitlines()
    for key in ("model name", "cpu family", "model"):
      info[key] = next(line.split(":", 1)[1].strip() for line in cpu if line.split(":")[0].strip() == key)
  except (OSError, StopIteration):
    pass
  info["cores"] = os.cpu_count()
  import jax
  import torch

  info.update(jax=jax.__version__, torch=torch.__version__, torchvision=_import_torchvision().__version__)
  return info


def torchvision_models():
  return _import_torchvision().models


def markdown(results: dict, others: list[dict] = ()) -> str:
  merged = {name: dict(row) for name, row in results["models"].items()}
  for other in others:  # a row of another run (conversion and attack) replaces this run's
    for name, row in other["models"].items():
      merged.setdefault(name, {}).update(row)
  rows = sorted(merged.values(), key=lambda r: r["model"])
  ok = [r for r in rows if r.get("converts")]
  ran = [r for r in ok if r.get("attack_ran")]
  m = results["machine"]
  lines = [
      "# torchvision classifiers through `jsma_jax.torch.from_torch`",
      "",
      f"Machine: {m.get('model name')} (cpu family {m.get('cpu family')}, model {m.get('model')}), {m.get('cores')} "
      f"cores shared with other engineers' jobs; load average during the run {results.get('load', '?')}. "
      f"torch {m.get('torch')}, torchvision {m.get('torchvision')}, jax {m.get('jax')}. Random weights, eval mode, "
      f"BatchNorm with random running statistics; batch of 2; attack `max_iter={results['max_iter']}` "
      "towards a class other than the predicted one. Times in seconds, wall clock, on a shared machine: "
      "compare them with care.",
      "",
      f"**{len(ok)} of {len(rows)} convert; the attack ran on {len(ran)}.** "
      "Logit difference: max |JAX - torch| / max(1, max |torch|) on the batch.",
      "",
      "| model | input | params (M) | converts | logit diff | attack ran | convert s | attack 1st s | attack 2nd s |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    diff = f"{r['logit_rel_diff']:.1e}" if "logit_rel_diff" in r else ""
    ran_text = "yes" if r.get("attack_ran") else ("no" if "attack_ran" in r else "not tried")
    lines.append(f"| {r['model']} | {'x'.join(map(str, r['input']))} | {r['params_m']} | "
                 f"{'yes' if r.get('converts') else 'no'} | {diff} | {ran_text} | {r.get('convert_s', '')} | "
                 f"{r.get('attack_first_s', '')} | {r.get('attack_second_s', '')} |")
  failed = [r for r in rows if not r.get("converts") or r.get("attack_ran") is False]
  if failed:
    lines += ["", "## Not converted or not attacked", ""]
    for r in failed:
      lines.append(f"- `{r['model']}`: {(r.get('error') or r.get('attack_error') or '')[:800]}")
  missing = sorted(set(results.get("not_run") or []) - set(merged))
  if missing:
    lines += ["", f"Not run (the run stopped before them): {', '.join(missing)}."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="benchmarks/results/torch_coverage.json")
  parser.add_argument("--markdown", default=None)
  parser.add_argument("--max-iter", type=int, default=2)
  parser.add_argument("--models", nargs="*", default=None, help="default: every classification model")
  parser.add_argument("--redo", action="store_true")
  parser.add_argument("--attack", choices=("some", "all", "none"), default="some",
                      help="attack every model, those of ATTACKED, or none")
  parser.add_argument("--in-order", action="store_true", help="run --models in the order given")
  parser.add_argument("--family-first", action="store_true", help="the models of FAMILY_FIRST first, then by size")
  parser.add_argument("--only-attacked", action="store_true", help="run only the models of ATTACKED")
  parser.add_argument("--merge", nargs="*", default=(),
                      help="other runs' JSON (e.g. the attacks run apart): their rows complete this run's in the table")
  parser.add_argument("--table-only", action="store_true", help="write --markdown from the JSON, run nothing")
  args = parser.parse_args()
  if args.table_only:
    results = json.loads(Path(args.out).read_text())
    every = _import_torchvision().models.list_models(module=torchvision_models())
    results["not_run"] = [n for n in every if n not in results["models"]]
    Path(args.markdown).write_text(markdown(results, [json.loads(Path(p).read_text()) for p in args.merge]))
    return
  torchvision = _import_torchvision()
  names = args.models or torchvision.models.list_models(module=torchvision.models)
  if args.attack == "some" and args.only_attacked:
    names = [n for n in names if n in ATTACKED]
  out = Path(args.out)
  results = json.loads(out.read_text()) if out.exists() else {"models": {}}
  results.update(machine=machine(), max_iter=args.max_iter)
  loads = results.setdefault("loads", [])
  others = lambda: [json.loads(Path(p).read_text()) for p in args.merge if Path(p).exists()]
  # smallest first, so that a run stopped early has the most models
  sizes = {n: torchvision.models.get_model_weights(n).DEFAULT.meta["num_params"] for n in names}
  first = FAMILY_FIRST if args.family_first else ()
  order = names if args.in_order else sorted(names, key=lambda n: (n not in first, sizes[n]))
  for name in order:
    if name in results["models"] and not args.redo:
      continue
    print(f"{time.strftime('%H:%M:%S')} {name} ...", flush=True)
    row = measure(name, args.max_iter, args.attack == "all" or (args.attack == "some" and name in ATTACKED))
    row["load_after"] = os.getloadavg()[0]
    loads.append(row["load_after"])
    print(json.dumps(row), flush=True)
    results["models"][name] = row
    results["not_run"] = [n for n in names if n not in results["models"]]
    results["load"] = f"{min(loads):.1f} to {max(loads):.1f} (1-minute, after each model)"
    out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
      Path(args.markdown).write_text(markdown(results, others()))
    import jax
    jax.clear_caches()
    gc.collect()
  if args.markdown:
    Path(args.markdown).write_text(markdown(results, others()))


if __name__ == "__main__":
  main()
