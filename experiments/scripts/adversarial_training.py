"""JSMA inside a training step: adversarial training of the paper's LeNet, compared with a plain one.

Usage::

  python -m experiments.scripts.adversarial_training --out runs/adversarial_training
  python -m experiments.scripts.adversarial_training --dataset idx --data-dir ../shared/data/mnist \\
      --epochs 1 --attack-size 32 --out experiments/results/adversarial_training

Every training step is ONE compiled function (``jax.jit``) of ``(params, opt_state, key,
x, y)``: it splits the key, draws a random target for each of the first ``attack_size``
examples of the batch (:func:`jsma_jax.random_targets`), crafts their JSMA examples with
the step's *current* parameters (:func:`jsma_jax.jsma`, one ``lax.while_loop`` inside
the step), and takes an Adam step on ``(1 - w) * CE(clean batch) + w * CE(adversarial
examples, true labels)``. The attack's output is a constant of the parameters (JSMA has
zero gradients), so the adversarial term trains the model on fixed inputs, as in
Goodfellow et al.'s adversarial training. A plain model is trained the same way (same
initialisation, shuffling, step count and learning-rate schedule) on the clean loss
alone; both are then evaluated for clean test accuracy and for JSMA with the paper's
settings (theta = +1, gamma = 0.145, every other class as target) on the first
``eval_sources`` test digits that both models classify correctly.

OUT receives ``results.json``, ``report.md``, the two checkpoints (``models/``) and the
stage files (``stages/``); a repeated run loads finished stages instead of redoing them.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import jsma_jax

from ..common import stages as stages_lib

# Flax and optax (jsma_jax.models): imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.

PROG = "python -m experiments.scripts.adversarial_training"


@dataclasses.dataclass(frozen=True)
class Config:
  """One adversarial-training comparison (the defaults are the committed full-MNIST run's, on embedded data)."""

  source: str = "embedded"
  data_dir: str | None = None
  train_size: int | None = None
  activation: str = "tanh"
  epochs: int = 1
  max_steps: int | None = None
  batch_size: int = 128
  learning_rate: float = 1e-3
  lr_schedule: str = "cosine"
  attack_size: int = 32
  adversarial_weight: float = 0.5
  train_theta: float = 1.0
  train_gamma: float = 0.145
  train_max_iter: int | None = None
  attack_schedule: str = "lockstep"
  eval_sources: int = 100
  eval_gamma: float = 0.145
  eval_max_iter: int | None = None
  eval_chunk: int = 900
  eval_schedule: str = "refill"
  seed: int = 0
  log_every: int = 25
  out: str = "runs/adversarial_training"


def parser() -> argparse.ArgumentParser:
  """The command line."""
  d = Config()
  p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  a = p.add_argument
  a("--dataset", dest="source", choices=("embedded", "idx"), default=d.source,
    help="MNIST source: the embedded digits (5,000 train / 1,000 test) or the IDX files of --data-dir")
  a("--data-dir", default=d.data_dir, help="folder of the four MNIST IDX files (with --dataset idx), "
    "e.g. ../shared/data/mnist")
  a("--train-size", type=int, default=d.train_size, help="train on this many training digits (a seeded random "
    "subset); all when omitted")
  a("--activation", choices=("tanh", "relu"), default=d.activation, help="the LeNet's activation")
  a("--epochs", type=int, default=d.epochs, help="passes over the training set (both models)")
  a("--max-steps", type=int, default=d.max_steps, help="stop both trainings after this many steps "
    "(the learning-rate schedule spans these steps); all of --epochs when omitted")
  a("--batch-size", type=int, default=d.batch_size, help="training batch size")
  a("--lr", dest="learning_rate", type=float, default=d.learning_rate, help="Adam's peak step size")
  a("--lr-schedule", choices=("cosine", "constant"), default=d.lr_schedule, help="learning-rate schedule")
  a("--attack-size", type=int, default=d.attack_size, help="examples of each batch (its first ones) "
    "attacked inside the training step")
  a("--adversarial-weight", type=float, default=d.adversarial_weight, help="w in the loss "
    "(1 - w) * CE(clean batch) + w * CE(adversarial examples)")
  a("--train-theta", type=float, default=d.train_theta, help="JSMA's theta inside the training step")
  a("--train-gamma", type=float, default=d.train_gamma, help="JSMA's gamma inside the training step")
  a("--train-max-iter", type=int, default=d.train_max_iter, help="JSMA's iteration cap inside the "
    "training step; the one --train-gamma gives when omitted (56 on MNIST at 0.145)")
  a("--attack-schedule", choices=("lockstep", "refill"), default=d.attack_schedule,
    help="jsma's driver inside the training step (results are equal; lockstep suits a small fixed batch)")
  a("--eval-sources", type=int, default=d.eval_sources, help="test digits classified correctly by both "
    "models, each attacked towards its 9 other classes")
  a("--eval-gamma", type=float, default=d.eval_gamma, help="JSMA's gamma in the evaluation (the paper's)")
  a("--eval-max-iter", type=int, default=d.eval_max_iter, help="iteration cap of the evaluation's "
    "attack; the one --eval-gamma gives when omitted")
  a("--eval-chunk", type=int, default=d.eval_chunk, help="attacks per compiled evaluation call")
  a("--eval-schedule", choices=("refill", "lockstep"), default=d.eval_schedule,
    help="jsma's driver in the evaluation (results are equal; refill suits many attacks of uneven length)")
  a("--seed", type=int, default=d.seed, help="seed of initialisation, shuffling, targets and sources")
  a("--log-every", type=int, default=d.log_every, help="print training progress every this many steps")
  a("--out", default=d.out, help="output folder")
  return p


def parse_args(argv=None) -> Config:
  """The configuration of a command line, checked."""
  p = parser()
  config = Config(**vars(p.parse_args(argv)))
  for name in ("epochs", "batch_size", "eval_sources", "eval_chunk", "log_every"):
    if getattr(config, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
  for name in ("train_size", "max_steps", "train_max_iter", "eval_max_iter"):
    if getattr(config, name) is not None and getattr(config, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
  if not 0 <= config.attack_size <= config.batch_size:
    p.error(f"--attack-size must be in [0, --batch-size], got {config.attack_size}")
  if not 0 <= config.adversarial_weight <= 1:
    p.error(f"--adversarial-weight must be in [0, 1], got {config.adversarial_weight}")
  if config.source == "idx" and not config.data_dir:
    p.error("--dataset idx needs --data-dir")
  return config


# --- the training step -------------------------------------------------------------------


class TrainStep(NamedTuple):
  """A compiled training step, its optimiser, and how often its Python body was traced."""

  fn: Callable[..., Any]  # (params, opt_state, key, x [B, ...], y [B]) -> (params, opt_state, key, metrics)
  tx: Any  # the optax transformation (tx.init(params) gives the first opt_state)
  traces: collections.Counter  # traces["step"]: 1 after any number of calls of one shape


@functools.lru_cache(maxsize=8)
def make_train_step(apply_fn, *, num_classes: int, total_steps: int, learning_rate: float = 1e-3,
                    lr_schedule: str = "cosine", attack_size: int = 32, adversarial_weight: float = 0.5,
                    theta: float = 1.0, gamma: float = 0.145, max_iter: int | None = None,
                    attack_schedule: str = "lockstep") -> TrainStep:
  """The jitted step of (JSMA-)adversarial training: attack with the current weights, then one Adam step.

  ``fn(params, opt_state, key, x, y)`` splits ``key`` (the first half is returned, to be
  passed to the next step), draws one random target per attacked example from the
  second, runs :func:`jsma_jax.jsma` on ``x[:attack_size]`` with ``params`` (inside the
  same compiled program) and minimises ``(1 - w) * CE(x, y) + w * CE(x_adv, y[:attack_size])``.
  With ``attack_size = 0`` it is plain training on the clean loss. Cached on its
  arguments (``apply_fn`` hashes by architecture), so asking again for the same step
  returns the same compiled function and trace counter.

  Returns:
    :class:`TrainStep`; ``metrics`` holds ``loss``, ``clean_loss``, ``adv_loss``,
    ``clean_accuracy``, ``adv_accuracy`` (of the pre-step weights on the adversarial
    examples), ``attack_success``, ``attack_l0`` (mean features changed),
    ``attack_iterations`` (scalars), and ``targets`` ``[A]``, ``x_adv`` ``[A, ...]``.
  """
  import optax


  if lr_schedule == "cosine":
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, max(total_steps, 1)))
  else:
    tx = optax.adam(learning_rate)
  w = float(adversarial_weight) if attack_size else 0.0
  traces = collections.Counter()

  def ce(params, x, y):
    logits = apply_fn(params, x)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
            jnp.mean(jnp.argmax(logits, -1) == y))

  @jax.jit
  def step(params, opt_state, key, x, y):
    traces["step"] += 1  # Python side effect: runs once per trace, never per call
    key, target_key = jax.random.split(key)
    xa, ya = x[:attack_size], y[:attack_size]
    zero = jnp.zeros((), jnp.float32)
    if attack_size:
      targets = jsma_jax.random_targets(target_key, ya, num_classes)
      result = jsma_jax.jsma(apply_fn, xa, targets, params=params, theta=theta, gamma=gamma,
                             max_iter=max_iter, schedule=attack_schedule, pad_batches=False)
      x_adv = result.x_adv  # a constant of params (jsma's gradients are zero)
      attack = dict(attack_success=jnp.mean(result.success), attack_l0=jnp.mean(result.n_changed),
                    attack_iterations=jnp.mean(result.iterations))
    else:
      targets, x_adv = ya, xa
      attack = dict(attack_success=zero, attack_l0=zero, attack_iterations=zero)

    def loss_fn(p):
      clean_loss, clean_acc = ce(p, x, y)
      adv_loss, adv_acc = ce(p, x_adv, ya) if attack_size else (zero, zero)
      return (1 - w) * clean_loss + w * adv_loss, (clean_loss, clean_acc, adv_loss, adv_acc)

    (loss, (clean_loss, clean_acc, adv_loss, adv_acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    metrics = dict(loss=loss, clean_loss=clean_loss, clean_accuracy=clean_acc, adv_loss=adv_loss,
                   adv_accuracy=adv_acc, targets=targets, x_adv=x_adv, **attack)
    return optax.apply_updates(params, updates), opt_state, key, metrics

  return TrainStep(step, tx, traces)


SCALARS = ("loss", "clean_loss", "clean_accuracy", "adv_loss", "adv_accuracy", "attack_success",
           "attack_l0", "attack_iterations")


def train_model(config: Config, train_data, *, adversarial: bool, log: Callable[[str], None] = print):
  """Trains one LeNet (adversarially or plainly) as ``config`` says; returns ``(model, history)``."""
  from flax import nnx

  from jsma_jax.models import LeNet, LogitsFn

  images, labels = train_data
  n = len(labels)
  steps_per_epoch = n // config.batch_size
  total = config.epochs * steps_per_epoch
  if config.max_steps is not None:
    total = min(total, config.max_steps)
  init_key, shuffle_key, attack_key = jax.random.split(jax.random.key(config.seed), 3)
  model = LeNet(activation=config.activation, rngs=nnx.Rngs(params=init_key))
  graphdef, state = nnx.split(model)
  apply_fn, params = LogitsFn(graphdef), nnx.to_pure_dict(state)
  step = make_train_step(apply_fn, num_classes=model.num_classes, total_steps=total,
                         learning_rate=config.learning_rate, lr_schedule=config.lr_schedule,
                         attack_size=config.attack_size if adversarial else 0,
                         adversarial_weight=config.adversarial_weight, theta=config.train_theta,
                         gamma=config.train_gamma, max_iter=config.train_max_iter,
                         attack_schedule=config.attack_schedule)
  opt_state, key = step.tx.init(params), attack_key
  name = "adversarial" if adversarial else "plain"
  log(f"[{name}] {total} steps of {config.batch_size} on {n} digits"
      + (f", {config.attack_size} attacked per step" if adversarial else ""))
  history = {k: [] for k in SCALARS}
  start = last = time.perf_counter()
  first_step_seconds, done = None, 0
  for epoch in range(config.epochs):
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
    for i in range(steps_per_epoch):
      if done == total:
        break
      idx = perm[i * config.batch_size:(i + 1) * config.batch_size]
      params, opt_state, key, metrics = step.fn(params, opt_state, key, images[idx], labels[idx])
      metrics = jax.device_get({k: metrics[k] for k in SCALARS})
      for k in SCALARS:
        history[k].append(float(metrics[k]))
      done += 1
      if first_step_seconds is None:
        first_step_seconds = time.perf_counter() - start
      if done % config.log_every == 0 or done == total:
        now = time.perf_counter()
        recent = {k: float(np.mean(history[k][-config.log_every:])) for k in SCALARS}
        log(f"[{name}] step {done}/{total}: loss {recent['loss']:.4f}, clean acc {recent['clean_accuracy']:.3f}"
            + (f", attack success {recent['attack_success']:.3f}, L0 {recent['attack_l0']:.1f}, "
               f"acc on adversarial {recent['adv_accuracy']:.3f}" if adversarial else "")
            + f" ({now - start:.0f} s, {(now - last) / config.log_every:.2f} s/step recently)")
        last = now
  seconds = time.perf_counter() - start
  if step.traces["step"] != 1:  # one compiled step for the whole run
    raise RuntimeError(f"the training step was traced {step.traces['step']} times, expected once")
  history.update(steps=done, train_seconds=seconds, first_step_seconds=first_step_seconds,
                 seconds_per_step_after_first=(seconds - first_step_seconds) / max(done - 1, 1),
                 traces=step.traces["step"])
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
  return model, history


# --- evaluation ------------------------------------------------------------------------


def pick_sources(models, test_data, count: int, seed: int):
  """Indices of the first ``count`` test digits (in a seeded order) that every model classifies correctly."""
  from jsma_jax.models import as_logits_fn

  images, labels = test_data
  order = np.asarray(jax.random.permutation(jax.random.key(seed + 1), len(labels)))
  ok = np.ones(len(labels), bool)
  for model in models:
    apply_fn, params = as_logits_fn(model)
    preds = np.concatenate([np.asarray(jax.jit(apply_fn)(params, images[s:s + 1000]).argmax(-1))
                            for s in range(0, len(labels), 1000)])
    ok &= preds == labels
  chosen = order[ok[order]][:count]
  if len(chosen) < count:
    raise ValueError(f"only {len(chosen)} test digits are classified correctly by both models; "
                     f"lower --eval-sources")
  return chosen


def attack_model(config: Config, model, test_data, sources, name: str) -> dict:
  """JSMA with the paper's settings on ``sources`` x every other class: a summary dict."""
  from jsma_jax.models import as_logits_fn

  apply_fn, params = as_logits_fn(model)
  images, labels = test_data
  expanded = jsma_jax.all_other_targets(images[sources], labels[sources], model.num_classes)
  start = time.perf_counter()
  result = jsma_jax.attack_dataset(apply_fn, np.asarray(expanded.x), np.asarray(expanded.targets), params=params,
                                   chunk_size=config.eval_chunk, description=f"jsma {name}", theta=1.0,
                                   gamma=config.eval_gamma, max_iter=config.eval_max_iter,
                                   schedule=config.eval_schedule)
  seconds = time.perf_counter() - start
  s = jsma_jax.summarize(result)
  return {"attacks": s.n, "successes": s.n_success, "success_rate": s.success_rate,
          "mean_l0_successful": s.mean_l0_successful, "distortion_successful": s.distortion_successful,
          "mean_l0_all": s.mean_l0_all, "mean_iterations": s.mean_iterations, "stop_reasons": s.stop_reasons,
          "seconds": seconds, "attacks_per_second": s.n / seconds}


# --- the run ---------------------------------------------------------------------------


def _environment() -> dict:
  from jsma_jax.models.checkpoint import cpu_model
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "backend": jax.default_backend(),
          "device": str(jax.devices()[0].device_kind), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
          "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _load_data(config: Config):
  from jsma_jax.models import load_mnist
  kwargs = {} if config.source == "embedded" else {"data_dir": config.data_dir}
  train = load_mnist(config.source, split="train", **kwargs)
  test = load_mnist(config.source, split="test", **kwargs)
  if config.train_size is not None and config.train_size < len(train[1]):
    keep = np.sort(np.asarray(jax.random.permutation(jax.random.key(config.seed + 2), len(train[1])))
                   [:config.train_size])
    train = (train[0][keep], train[1][keep])
  if len(train[1]) < config.batch_size:
    raise ValueError(f"batch_size={config.batch_size} exceeds the {len(train[1])} training digits")
  return (np.asarray(train[0], np.float32), np.asarray(train[1], np.int32)), \
         (np.asarray(test[0], np.float32), np.asarray(test[1], np.int32))


TRAIN_FIELDS = ("source", "data_dir", "train_size", "activation", "epochs", "max_steps", "batch_size",
                "learning_rate", "lr_schedule", "attack_size", "adversarial_weight", "train_theta",
                "train_gamma", "train_max_iter", "attack_schedule", "seed")
ATTACK_FIELDS = ("attack_size", "adversarial_weight", "train_theta", "train_gamma", "train_max_iter",
                 "attack_schedule")
EVAL_FIELDS = ("eval_sources", "eval_gamma", "eval_max_iter")


def _curve(values, every: int) -> list[float]:
  """Means over consecutive windows of ``every`` steps."""
  return [sum(values[i:i + every]) / len(values[i:i + every]) for i in range(0, len(values), every)]


def run(config: Config, log: Callable[[str], None] = print) -> dict:
  """Trains both models, evaluates them, and writes ``results.json`` and ``report.md`` to ``config.out``."""
  from jsma_jax.models import evaluate, load_checkpoint, save_checkpoint

  wall_start = time.perf_counter()
  stages = stages_lib.Stages(config.out, log=log)
  train_data, test_data = _load_data(config)
  log(f"MNIST ({config.source}): {len(train_data[1])} train, {len(test_data[1])} test digits")
  train_key = {k: getattr(config, k) for k in TRAIN_FIELDS}
  models, histories, digests = {}, {}, {}
  for name in ("plain", "adversarial"):
    folder = os.path.join(config.out, "models", name)

    def train_stage(name=name, folder=folder):
      model, history = train_model(config, train_data, adversarial=name == "adversarial", log=log)
      save_checkpoint(folder, model, {"run": dataclasses.asdict(config), "variant": name})
      return history, None

    key = dict(train_key, variant=name)
    if name == "plain":  # the attack's settings do not touch the plain model
      key = {k: v for k, v in key.items() if k not in ATTACK_FIELDS}
    histories[name], _ = stages.run(f"train_{name}", key, train_stage, artefacts=[folder])
    models[name], meta = load_checkpoint(folder)
    digests[name] = meta["weights_sha256"]
  accuracy = {name: evaluate(m, test_data) for name, m in models.items()}
  sources = pick_sources(list(models.values()), test_data, config.eval_sources, config.seed)
  eval_key = {**train_key, **{k: getattr(config, k) for k in EVAL_FIELDS}, "sources": sources.tolist()}
  attacks = {name: stages.run(f"attack_{name}", {**eval_key, "variant": name, "weights_sha256": digests[name]},
                              lambda m=m, name=name: (attack_model(config, m, test_data, sources, name), None))[0]
             for name, m in models.items()}
  results = {
      "config": dataclasses.asdict(config),
      "environment": _environment(),
      "command": " ".join([PROG] + sys.argv[1:]),
      "dataset": {"source": config.source, "n_train": len(train_data[1]), "n_test": len(test_data[1])},
      "pinned": {
          "train_step": "one jax.jit of (params, opt_state, key, x, y): key split per step, random targets, "
                        "jsma on the first attack_size examples with the current params, one Adam step",
          "loss": f"{1 - config.adversarial_weight:g} * CE(clean batch of {config.batch_size}) + "
                  f"{config.adversarial_weight:g} * CE(JSMA examples of the first {config.attack_size}, true labels)",
          "train_attack": {"theta": config.train_theta, "gamma": config.train_gamma,
                           "max_iter": config.train_max_iter, "pairwise": True, "targets": "random_targets",
                           "schedule": config.attack_schedule},
          "eval_attack": {"theta": 1.0, "gamma": config.eval_gamma, "max_iter": config.eval_max_iter,
                          "targets": "all_other_targets (9 per source)",
                          "sources": f"first {config.eval_sources} test digits of a seeded order classified "
                                     "correctly by both models"},
      },
      "sources": sources.tolist(),
      "models": {},
      "stages_ran": stages.ran,
      "stages_loaded": stages.loaded,
  }
  for name in models:
    h = histories[name]
    every = max(1, h["steps"] // 20)
    results["models"][name] = {
        "clean_test_accuracy": accuracy[name],
        "jsma": attacks[name],
        "train": {"steps": h["steps"], "train_seconds": h["train_seconds"],
                  "first_step_seconds": h["first_step_seconds"],
                  "seconds_per_step_after_first": h["seconds_per_step_after_first"],
                  "traces": h["traces"], "curve_every": every,
                  **{k: _curve(h[k], every) for k in SCALARS}},
    }
  results["wall_seconds_this_process"] = time.perf_counter() - wall_start
  results["stage_seconds"] = {n: stages.seconds(n) for n in
                              ("train_plain", "train_adversarial", "attack_plain", "attack_adversarial")}
  stages_lib.atomic_write_json(os.path.join(config.out, "results.json"), results)
  stages_lib.atomic_write_bytes(os.path.join(config.out, "report.md"), report(results).encode())
  log(f"wrote {config.out}/results.json and report.md")
  return results


def _f(value, spec: str) -> str:
  """``format(value, spec)``, or "n/a" for a missing value (a mean over no successful attack)."""
  return "n/a" if value is None else format(value, spec)


def report(res: dict) -> str:
  """The short Markdown report of a results dict."""
  c, env, p = res["config"], res["environment"], res["pinned"]
  rows = []
  for name in ("plain", "adversarial"):
    m = res["models"][name]
    j = m["jsma"]
    rows.append(f"| {name} | {m['clean_test_accuracy']:.4f} | "
                f"{_f(j['success_rate'], '.2%')} ({j['successes']}/{j['attacks']}) "
                f"| {_f(j['mean_l0_successful'], '.1f')} ({_f(j['distortion_successful'], '.2%')}) "
                f"| {j['mean_l0_all']:.1f} "
                f"| {j['mean_iterations']:.1f} | {m['train']['train_seconds']:.0f} s "
                f"({m['train']['seconds_per_step_after_first']:.2f} s/step) |")
  adv = res["models"]["adversarial"]["train"]
  lines = [
      "# JSMA inside a training step: adversarial training of LeNet",
      "",
      f"MNIST ({res['dataset']['source']}, {res['dataset']['n_train']} train / {res['dataset']['n_test']} test), "
      f"LeNet ({c['activation']}), Adam {c['learning_rate']:g} ({c['lr_schedule']}), batch {c['batch_size']}, "
      f"{adv['steps']} steps ({c['epochs']} epoch(s)), seed {c['seed']}; both models share initialisation, "
      "shuffling, steps and schedule.",
      "",
      f"- **Training step** (one `jax.jit`, traced {adv['traces']} time(s)): {p['train_step']}.",
      f"- **Loss**: {p['loss']}.",
      f"- **Attack inside the step**: theta {c['train_theta']:+g}, gamma {c['train_gamma']:g}, "
      f"max_iter {c['train_max_iter'] or 'from gamma'}, pairs, random targets, schedule {c['attack_schedule']}.",
      f"- **Evaluation**: JSMA theta +1, gamma {c['eval_gamma']:g}"
      f"{', max_iter ' + str(c['eval_max_iter']) if c['eval_max_iter'] else ''}, every other class as target, "
      f"{p['eval_attack']['sources']} ({c['eval_sources']} x 9 attacks per model).",
      "",
      "| model | clean test acc | JSMA success | mean L0 successful (% of 784) | "
      "mean L0 all | iterations | train time |",
      "|---|---|---|---|---|---|---|",
      *rows,
      "",
      "During adversarial training (means over the last twentieth of the run): attack success "
      f"{adv['attack_success'][-1]:.1%}, L0 {adv['attack_l0'][-1]:.1f} (mean over all attacked), "
      "accuracy on the step's adversarial "
      f"examples {adv['adv_accuracy'][-1]:.1%} (first twentieth: success {adv['attack_success'][0]:.1%}).",
      "",
      f"Machine: {env['cpu']}, {env['cpu_count']} cores (shared with other jobs; load average at start "
      f"{', '.join(f'{v:.1f}' for v in env['load_average_at_start'] or [])}), JAX {env['jax']} "
      f"({env['backend']}). Stage wall times: "
      + ", ".join(f"{k} {v:.0f} s" for k, v in res["stage_seconds"].items()) + ".",
      "",
      f"Command: `{res['command']}`",
      "",
  ]
  return "\n".join(lines)


def main(argv=None) -> dict:
  """Runs the command line ``argv``; returns the results dict."""
  return run(parse_args(argv))


if __name__ == "__main__":
  main()
