"""The factorial zoo's attacks, choice, analysis and report (see :mod:`.factorial`)."""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jsma_jax import metrics

from ..common.environment import environment
from ..common.sources import SPLITS, seeded_sources
from ..common.stages import Stages, atomic_write_bytes, atomic_write_json
from ..common.stats import format_p, percent, sign_test_p
from .factorial import DISTORTION_WEIGHT, PAPER_VALIDATION, cell_name, cells, choice_distance
from .zoo_report import ModelMeasures, Outcome, RecipeRow, attack_sources, figure, model_measures

# Flax (jsma_jax.models): imported inside the functions that use them (heavy, the
# [experiments] extra), so that importing this module, and its command's --help, need the core only.

SETS = ("validation", "test")


class Effect(NamedTuple):
  """One effect of the 2^k design on success, at one theta.

  Attributes:
    factors: the factors whose product this contrast is (one: a main effect).
    estimate: the mean over the high level minus the mean over the low level of the
      contrast (a two-factor interaction is half the difference between one factor's
      effect at the other's high and low levels), in success rate.
    n_pos, n_neg: attacks whose own contrast is positive / negative.
    p: exact two-sided sign test of ``n_pos`` against ``n_neg``.
  """

  factors: tuple[str, ...]
  estimate: float
  n_pos: int
  n_neg: int
  p: float

  @property
  def name(self) -> str:
    return " x ".join(self.factors)


def contrast_signs(cells: list[tuple[int, ...]], subset: tuple[int, ...]) -> np.ndarray:
  """+1 or -1 per cell: the product over the factors in ``subset`` of (+1 at level 1, -1 at 0)."""
  return np.array([np.prod([1 if c[j] else -1 for j in subset]) for c in cells], np.int64)


def effects(outcomes: dict[tuple[int, ...], np.ndarray], names: tuple[str, ...]) -> list[Effect]:
  """Every main effect and interaction of a full 2^k design on paired binary outcomes.

  Args:
    outcomes: per cell (a tuple of k levels, 0 or 1), the success of the same attacks
      (bool ``[n]``, attack ``i`` the same source and target in every cell).
    names: the k factors' names.

  Returns:
    the ``2^k - 1`` effects, main effects first. Each attack's own contrast is
    ``sum_cells sign(cell) y_i(cell)`` (an integer); the effect is its mean over attacks
    divided by ``2^(k-1)``, and the sign test asks whether positive and negative
    contrasts are equally likely, which they are when the factors do not matter.
  """
  cells = sorted(outcomes)
  k = len(names)
  if len(cells) != 2 ** k or any(len(c) != k for c in cells):
    raise ValueError(f"a full 2^{k} design needs {2 ** k} cells of {k} levels, got {len(cells)}")
  y = np.stack([np.asarray(outcomes[c], np.int64) for c in cells])  # [cells, attacks]
  out = []
  for r in range(1, k + 1):
    for subset in itertools.combinations(range(k), r):
      per_attack = contrast_signs(cells, subset) @ y
      out.append(Effect(tuple(names[j] for j in subset), float(per_attack.mean() / 2 ** (k - 1)),
                        int((per_attack > 0).sum()), int((per_attack < 0).sum()),
                        sign_test_p(int((per_attack > 0).sum()), int((per_attack < 0).sum()))))
  return out


class Paired(NamedTuple):
  """Two models on the same attacks: success of ``a`` minus ``b`` and an exact sign test.

  Attributes:
    a, b: the models' names.
    what: what the comparison asks.
    set_name: ``"validation"`` or ``"test"``.
    theta: the attacks' direction.
    difference: success rate of ``a`` minus that of ``b``.
    a_only, b_only: attacks that succeed against one model and not the other.
    p: exact two-sided sign test of ``a_only`` against ``b_only`` (McNemar's exact test).
  """

  a: str
  b: str
  what: str
  set_name: str
  theta: float
  difference: float
  a_only: int
  b_only: int
  p: float


def paired(a: str, b: str, what: str, set_name: str, theta: float, success_a: np.ndarray,
           success_b: np.ndarray) -> Paired:
  """:class:`Paired` of two models' successes on the same attacks (bool ``[n]`` each)."""
  sa, sb = np.asarray(success_a, bool), np.asarray(success_b, bool)
  if sa.shape != sb.shape:
    raise ValueError(f"paired outcomes must cover the same attacks, got {sa.shape} and {sb.shape}")
  a_only, b_only = int((sa & ~sb).sum()), int((~sa & sb).sum())
  return Paired(a, b, what, set_name, float(theta), float(sa.mean() - sb.mean()), a_only, b_only,
                sign_test_p(a_only, b_only))


# Comparisons beside the design, run when both models are in the run ("chosen": the choice).
COMPARISONS = (("modern_tanh", "modern_relu", "the activation, under the modern recipe"),
               ("chosen", "modern_tanh", "the chosen recipe against the modern one (tanh)"),
               ("chosen", "theano_tutorial_30ep", "the chosen recipe against the tutorial's 30 epochs"),
               ("chosen", "theano_tutorial_200ep", "the chosen recipe against the tutorial's full 200 epochs"),
               ("theano_tutorial_100ep", "theano_tutorial_30ep", "the tutorial's recipe, 100 epochs against 30"),
               ("theano_tutorial_200ep", "theano_tutorial_100ep", "the tutorial's recipe, 200 epochs against 100"))


def contrast(values: dict[tuple[int, ...], float], subset: tuple[int, ...]) -> float:
  """The same effect on a per-model number (accuracy, margin, distortion)."""
  cells = sorted(values)
  k = len(cells[0])
  return float(contrast_signs(cells, subset) @ np.array([values[c] for c in cells], np.float64) / 2 ** (k - 1))


def validation_pool(train_set):
  """The validation images: the last 10,000 of MNIST's training set (the 50k/10k split)."""
  from jsma_jax.models.recipe import holdout_split

  _, val_idx = holdout_split(len(train_set[1]))
  return train_set[0][val_idx], train_set[1][val_idx]


def sources(set_name: str, n_pool: int, n: int, seed: int) -> np.ndarray:
  """The first ``n`` of the seeded permutation of a set that the reproduction study uses
  for it (``experiments.study.inputs.source_indices``), so the sources are the study's too."""
  return seeded_sources(n_pool, n, seed, SPLITS.index(set_name))


def _attack(stages, config, cand, weights: str, apply_fn, params, pool, set_name: str, theta: float,
            names: list[str]) -> Outcome:
  """One model's attacks on one set at ``theta``; their stage names are added to ``names``."""
  idx = sources(set_name, len(pool[1]), config.n_sources, config.seed)
  chunks = [idx[lo:lo + config.chunk_sources] for lo in range(0, len(idx), config.chunk_sources)]
  names += [f"{set_name}_{cand.name}_theta{theta:+g}_c{c:02d}" for c in range(len(chunks))]
  names = names[-len(chunks):]
  return attack_sources(stages, names, {"recipe": cand.recipe.to_dict(), "weights": weights, "set": set_name},
                        apply_fn, params, pool, chunks, theta=theta, gamma=config.gamma,
                        batch_size=config.batch_size, description=f"{set_name} {cand.name} theta={theta:+g}")


def rows_of(outcomes: dict[float, Outcome]) -> dict:
  """A model's rows on one set: success and distortion (over successes) per theta."""
  row = {}
  for theta, o in outcomes.items():
    row[f"success{theta:+g}"] = float(o.success.mean())
    row[f"distortion{theta:+g}"] = metrics.mean_distortion(o.n_changed, 784, o.success)
  return row


def choose(models, validation_rows: dict[str, dict]) -> dict:
  """The pre-registered choice: the eligible model nearest the paper on validation."""
  eligible = [m.name for m in models if m.held_out_validation]
  distances = {name: choice_distance(validation_rows[name]) for name in eligible}
  chosen = min(eligible, key=lambda name: distances[name])  # min keeps the first of a tie
  return {"rule": "smallest |success(+1) - 97.19| + |success(-1) - 64.7| + "
                  f"{DISTORTION_WEIGHT:g} |distortion(+1) - 4.01| (percentage points) on validation sources, "
                  "among models trained without the validation images",
          "paper_validation": PAPER_VALIDATION, "distances": distances, "chosen": chosen,
          "excluded": [m.name for m in models if not m.held_out_validation]}


def run(config, models, train_set, test_set, log: Callable[[str], None], factors) -> dict:
  """Validation attacks, the choice, test attacks, analysis and report; ``factors``: the
  design (``factorial.FACTORS``) whose cells are among ``models``."""
  # flax (jsma_jax.models): loaded by the run, not by importing the report
  from jsma_jax.models import as_logits_fn, load_checkpoint

  stages = Stages(config.out, log)
  pools = {"validation": validation_pool(train_set), "test": test_set}
  loaded, measures, weights = {}, {}, {}
  for m in models:
    model, meta = load_checkpoint(m.path)
    loaded[m.name] = as_logits_fn(model)
    weights[m.name] = meta["weights_sha256"]  # a retrained model at the same path is attacked again
    got, _ = stages.run(f"measures_{m.name}", {"recipe": m.recipe.to_dict(), "weights": weights[m.name]},
                        lambda fn=loaded[m.name]: (model_measures(fn[0], fn[1], test_set)._asdict(), None))
    measures[m.name] = ModelMeasures(**got)
  outcomes = {s: {m.name: {} for m in models} for s in SETS}
  attack_names: list[str] = []
  for set_name in SETS:
    if set_name == "test":
      # the choice is made on validation alone, and written before any test attack runs
      choice, _ = stages.run("choice", {"validation": {m.name: rows_of(outcomes["validation"][m.name])
                                                       for m in models}},
                             lambda: (choose(models, {m.name: rows_of(outcomes["validation"][m.name])
                                                      for m in models}), None))
      atomic_write_json(os.path.join(config.out, "choice.json"), choice)
      log(f"chosen on validation: {choice['chosen']} (distance {choice['distances'][choice['chosen']]:.2f})")
      if config.stage == "validation":
        break
    for theta in config.thetas:
      for m in models:
        o = _attack(stages, config, m, weights[m.name], *loaded[m.name], pools[set_name], set_name, theta,
                    attack_names)
        outcomes[set_name][m.name][theta] = o
        log(f"{set_name} {m.name} theta={theta:+g}: success {o.success.mean():.4f}, "
            f"distortion {metrics.mean_distortion(o.n_changed, 784, o.success):.4f}")
  if config.stage == "validation":
    return {"stage": config.stage, "choice": choice}
  names = tuple(f.name for f in factors)

  analysis = {}
  for theta in config.thetas:
    for set_name in SETS:
      design = {c: outcomes[set_name][cell_name(c, factors)][theta].success for c in cells(factors)}
      analysis[f"{set_name}/theta{theta:+g}"] = [e._asdict() | {"name": e.name} for e in effects(design, names)]
  per_model = {}
  for c in cells(factors):
    n = cell_name(c, factors)
    per_model[c] = {"test_accuracy": measures[n].test_accuracy, "mean_margin": measures[n].mean_margin,
                    **{f"distortion{t:+g}": rows_of(outcomes["test"][n])[f"distortion{t:+g}"] for t in config.thetas}}
  other_effects = {}
  for r in range(1, len(names) + 1):
    for subset in itertools.combinations(range(len(names)), r):
      label = " x ".join(names[j] for j in subset)
      other_effects[label] = {q: contrast({c: per_model[c][q] for c in cells(factors)}, subset)
                              for q in per_model[cells(factors)[0]]}
  comparisons = []
  for a, b, what in COMPARISONS:
    a = choice["chosen"] if a == "chosen" else a
    if a in outcomes["test"] and b in outcomes["test"]:
      comparisons += [paired(a, b, what, set_name, theta, outcomes[set_name][a][theta].success,
                             outcomes[set_name][b][theta].success)._asdict()
                      for set_name in SETS for theta in config.thetas]
  table = []
  for m in models:
    entry = {"model": m.name, "description": m.recipe.describe(), "held_out_validation": m.held_out_validation,
             **measures[m.name]._asdict(), "validation_accuracy": m.info.get("validation_accuracy"),
             "train_seconds": m.info.get("train_seconds")}
    for set_name in SETS:
      entry[set_name] = rows_of(outcomes[set_name][m.name])
    table.append(entry)
  results = {"config": dataclasses.asdict(config), "factors": [f._asdict() for f in factors], "table": table,
             "effects_on_success": analysis, "effects_on_model_measures": other_effects,
             "choice": choice, "comparisons": comparisons, "n_attacks_per_theta": int(config.n_sources * 9),
             "wall_seconds": {"training": float(sum(m.info.get("train_seconds") or 0 for m in models if not m.read)),
                              "attacks": float(sum(stages.seconds(n) for n in attack_names))},
             "read_not_trained": [m.name for m in models if m.read],
             "environment": environment()}
  atomic_write_json(os.path.join(config.out, "results.json"), results)
  rows = [RecipeRow(m.name, m.recipe.describe(), measures[m.name], m.info.get("validation_accuracy"),
                    m.info.get("train_seconds") or 0.0, outcomes["test"][m.name]) for m in models]
  figure(rows, os.path.join(config.out, "factorial.png"))
  atomic_write_bytes(os.path.join(config.out, "report.md"), render(config, results).encode())
  log(f"wrote {config.out}/results.json, report.md and factorial.png")
  return results


def render(config, results: dict) -> str:
  """``report.md`` of ``results`` (its design: ``results["factors"]``)."""
  env = results["environment"]
  n = results["n_attacks_per_theta"]
  lines = [
      "# Factorial zoo: training choices, alone and together",
      "",
      "Every model is the paper's LeNet (conv 20@5x5, pool, conv 50@5x5, pool, dense 500, dense 10) trained "
      "on MNIST; each is attacked with the paper's settings (pairs, logits Jacobian, all features in the "
      f"initial domain, gamma = {config.gamma:.1%}) on the same {config.n_sources} validation and "
      f"{config.n_sources} test sources x 9 targets ({n} attacks per set and theta). Success: argmax = "
      "target; distortion: the share of the 784 pixels changed, over successful attacks. Margin: mean over "
      "the 10,000 test images of the top logit minus the runner-up; confidence: mean largest softmax "
      "probability.",
      "",
      "## The design",
      "",
      "A full 2^4 factorial on tanh LeNets trained on the first 50,000 training images (seed 0, constant "
      "step size); every other choice is the Theano tutorial's:",
      "",
      "| factor | level 0 | level 1 |",
      "|---|---|---|",
  ]
  for f in results["factors"]:
    lines.append(f"| {f['name']} | {f['levels'][0]} | {f['levels'][1]} |")
  lines += ["", "The short length of each cell is the long run's weights after its epochs (exact: a constant "
            "rate and per-epoch shuffles make them a shorter run's, bit for bit). Beside the design: "
            + ("the recipe most users would write today (`modern_*`: PyTorch init, Adam 1e-3, batch 128, "
               "10 epochs on all 60,000 images, so it saw the validation images) and " if config.modern else "")
            + "the Theano tutorial's recipe (`theano_tutorial_*`: 30 epochs, the LeNet shipped by that name beside "
              "the chosen one, and longer runs)"
            + ("." if config.modern else "; the modern recipe is not in this run (`--no-modern`)."), "",
            "## Models", "",
            "| model | how | test acc | margin | confidence | val success +1 | val dist +1 | val success -1 | "
            "test success +1 | test dist +1 | test success -1 | test dist -1 |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for t in results["table"]:
    v, s = t["validation"], t["test"]
    lines.append(f"| {t['model']} | {t['description']} | {percent(t['test_accuracy'])} | {t['mean_margin']:.2f} | "
                 f"{t['mean_confidence']:.4f} | {percent(v.get('success+1'))} | {percent(v.get('distortion+1'))} | "
                 f"{percent(v.get('success-1'))} | {percent(s.get('success+1'))} | {percent(s.get('distortion+1'))} | "
                 f"{percent(s.get('success-1'))} | {percent(s.get('distortion-1'))} |")
  lines += ["", "Paper (Papernot et al. 2016): 97.10% success, 4.02% distortion (theta = +1, test); "
            "97.19% on validation (unconfirmed per-set figure); 64.7% success (theta = -1).", "",
            "![factorial](factorial.png)", "",
            "## Effects on success (test sources)", "",
            "Each effect is the mean success over the cells at the high level of its contrast minus the mean "
            "over the low level (a two-factor interaction: half the difference between one factor's effect at "
            "the other's two levels), in percentage points. p: exact two-sided sign test on the attacks' own "
            "contrasts (the same source and target in every cell), counts n+ / n- beside it.", "",
            "| effect | theta +1 | n+ / n- | p | theta -1 | n+ / n- | p |", "|---|---|---|---|---|---|---|"]
  plus = results["effects_on_success"].get("test/theta+1", [])
  minus = {e["name"]: e for e in results["effects_on_success"].get("test/theta-1", [])}
  for e in plus:
    m = minus.get(e["name"])
    right = (f"{100 * m['estimate']:+.2f} | {m['n_pos']} / {m['n_neg']} | {format_p(m['p'])}" if m else "- | - | -")
    lines.append(f"| {e['name']} | {100 * e['estimate']:+.2f} | {e['n_pos']} / {e['n_neg']} | {format_p(e['p'])} | "
                 f"{right} |")
  lines += ["", "The same on the validation sources is in results.json (`effects_on_success`).", "",
            "## Effects on the models", "",
            "The same contrasts on each cell's test accuracy, mean margin and distortion (no test: one "
            "number per model).", "",
            "| effect | test accuracy | margin | distortion +1 | distortion -1 |", "|---|---|---|---|---|"]
  for label, q in results["effects_on_model_measures"].items():
    if label.count(" x ") <= 1:
      lines.append(f"| {label} | {100 * q['test_accuracy']:+.2f} | {q['mean_margin']:+.2f} | "
                   f"{100 * q.get('distortion+1', float('nan')):+.2f} | "
                   f"{100 * q.get('distortion-1', float('nan')):+.2f} |")
  if results.get("comparisons"):
    lines += ["", "## Models beside the design, paired", "",
              "Success of the first model minus the second's on the same attacks, in percentage points; "
              "a only / b only: attacks that succeed against one and not the other; p: exact two-sided "
              "sign test on them.", "",
              "| a | b | what | set | theta | a - b | a only / b only | p |", "|---|---|---|---|---|---|---|---|"]
    for q in results["comparisons"]:
      lines.append(f"| {q['a']} | {q['b']} | {q['what']} | {q['set_name']} | {q['theta']:+g} | "
                   f"{100 * q['difference']:+.2f} | {q['a_only']} / {q['b_only']} | {format_p(q['p'])} |")
  c = results["choice"]
  lines += ["", "## The choice (made on validation, before any test attack)", "",
            f"Rule, written before the run: {c['rule']}. Not eligible: {', '.join(c['excluded']) or 'none'}.", "",
            "| model | distance |", "|---|---|"]
  for name, d in sorted(c["distances"].items(), key=lambda kv: kv[1]):
    lines.append(f"| {name}{' (chosen)' if name == c['chosen'] else ''} | {d:.2f} |")
  wall = results["wall_seconds"]
  trained = "the design" + (" and the modern recipes" if config.modern else "") + (
      f" and the tutorial's {config.tutorial_epochs} epochs" if config.tutorial_epochs else "")
  read = results.get("read_not_trained") or []
  lines += ["", f"Wall time, as the stages recorded it: training {wall['training'] / 60:.1f} min ({trained}), "
            f"attacks {wall['attacks'] / 60:.1f} min."
            + (f" Read from committed checkpoints, not trained by this run: {', '.join(read)}." if read else ""), "",
            f"Machine: {env['processor']} ({env['cpu_count']} CPUs), JAX {env['jax']} on {env['backend']}. "
            f"Command: `jsma-jax factorial --data-dir {config.data_dir} --out {config.out} --sources "
            f"{config.n_sources} --chunk-sources {config.chunk_sources} --batch-size {config.batch_size}"
            f"{'' if config.modern else ' --no-modern'}"
            f"{f' --tutorial-epochs {config.tutorial_epochs}' if config.tutorial_epochs else ''}`.", ""]
  return "\n".join(lines)
