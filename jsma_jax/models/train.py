"""Train a model with optax: jit-compiled steps, explicit-key shuffling, evaluation.

The loop is functional: the model is split once into its ``GraphDef`` and a nested dict
of weights, each step is a jitted pure function of ``(params, opt_state, x, y)``, and the
weights go back into the model at the end. Batches have one fixed shape (the last
incomplete training batch of an epoch is dropped; evaluation pads and masks), so each
step function compiles once.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jsma_jax import rewrite as rewrite_lib
from jsma_jax.models import train_state
from jsma_jax.models.apply import LogitsFn, as_logits_fn
from jsma_jax.models.lenet import ModelConfig, config_of
from jsma_jax.models.recipe import PRESETS, Recipe, holdout_split, initialise, preset


def _check_data(name, data):
  if not (isinstance(data, tuple) and len(data) == 2):
    raise TypeError(f"{name} must be a tuple (images, labels)")
  images, labels = data
  if np.ndim(images) != 4 or np.ndim(labels) != 1 or len(images) != len(labels):
    raise ValueError(f"{name} must be (images [n, H, W, C], labels [n]); got shapes "
                     f"{np.shape(images)} and {np.shape(labels)}")


def _loss(apply_fn, params, x, y):
  logits = apply_fn(params, x)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss, jnp.mean(jnp.argmax(logits, -1) == y)


def make_optimizer(recipe: Recipe, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optax optimiser of a recipe: its optimiser, step size and schedule.

  Args:
    recipe: the :class:`~jsma_jax.models.Recipe`.
    steps_per_epoch: training steps per epoch (schedules count steps).

  Returns:
    ``optax.sgd`` (``"sgd"``; with ``momentum`` for ``"momentum"``) or ``optax.adam``,
    whose step size is constant, ``optax.cosine_decay_schedule`` over the whole run, or
    ``optax.exponential_decay`` in stairs of ``step_epochs`` epochs.

  Example:
    >>> tx = make_optimizer(preset("theano_tutorial"), steps_per_epoch=100)
    >>> params = {"w": jnp.ones(2)}
    >>> updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    >>> updates["w"].tolist()  # plain SGD at 0.1
    [-0.10000000149011612, -0.10000000149011612]
  """
  total = max(recipe.epochs * steps_per_epoch, 1)
  lr = recipe.learning_rate
  if recipe.schedule == "cosine":
    lr = optax.cosine_decay_schedule(lr, total)
  elif recipe.schedule == "step":
    lr = optax.exponential_decay(lr, transition_steps=recipe.step_epochs * steps_per_epoch,
                                 decay_rate=recipe.step_factor, staircase=True)
  if recipe.optimizer == "adam":
    return optax.adam(lr)
  return optax.sgd(lr, momentum=recipe.momentum if recipe.optimizer == "momentum" else None)


@functools.lru_cache(maxsize=16)
def make_train_step(apply_fn: LogitsFn, recipe: Recipe, steps_per_epoch: int) -> tuple[Callable, Any]:
  """The recipe's optimiser and its jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss, acc)``.

  Cached on its arguments: training the same architecture with the same recipe again
  reuses the compiled step.

  Returns:
    ``(step, tx)`` with ``tx = make_optimizer(recipe, steps_per_epoch)``.
  """
  tx = make_optimizer(recipe, steps_per_epoch)

  @jax.jit
  def step(params, opt_state, x, y):
    grad_fn = jax.value_and_grad(lambda p: _loss(apply_fn, p, x, y), has_aux=True)
    (loss, acc), grads = grad_fn(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, acc

  return step, tx


@functools.partial(jax.jit, static_argnums=0)
def _count_correct(apply_fn, params, x, y, valid):
  return jnp.sum((jnp.argmax(apply_fn(params, x), -1) == y) & valid)


def evaluate(model_or_fn: Any, data: tuple[np.ndarray, np.ndarray], *, params=None,
             batch_size: int = 1000) -> float:
  """Top-1 accuracy of a model (or of ``apply_fn`` with ``params``) on ``(images, labels)``.

  Args:
    model_or_fn: an ``nnx.Module`` (run in inference mode), or ``apply_fn(params, x)``.
    data: ``(images [n, H, W, C], labels [n])``.
    params: the weights, required with an ``apply_fn``.
    batch_size: examples per call (the last batch is padded and masked).

  Returns:
    accuracy in [0, 1] as a Python float (0.0 on an empty set).

  Example:
    >>> x, y = load_mnist(split="test")
    >>> apply_fn, params = as_logits_fn(LeNet(rngs=nnx.Rngs(0)))  # untrained
    >>> accuracy = evaluate(apply_fn, (x[::10], y[::10]), params=params, batch_size=64)
    >>> 0.0 <= accuracy <= 1.0
    True
  """
  _check_data("data", data)
  if isinstance(model_or_fn, nnx.Module):
    apply_fn, params = as_logits_fn(model_or_fn)
  elif params is None:
    raise ValueError("params is required when model_or_fn is an apply_fn")
  else:
    apply_fn = model_or_fn
  images, labels = data
  n = len(labels)
  if n == 0:
    return 0.0
  b = min(batch_size, n)
  correct = 0
  for start in range(0, n, b):
    x = np.asarray(images[start:start + b], np.float32)
    y = np.asarray(labels[start:start + b], np.int32)
    valid = np.ones(b, bool)
    if len(y) < b:  # pad the last batch to the compiled shape, mask the padding
      pad = b - len(y)
      valid[len(y):] = False
      x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(pad, y.dtype)])
    correct += int(_count_correct(apply_fn, params, x, y, valid))
  return correct / n


def _resolve(model_or_recipe, overrides) -> tuple[Recipe, nnx.Module | None]:
  if isinstance(model_or_recipe, str):
    return preset(model_or_recipe).replace(**overrides), None
  if isinstance(model_or_recipe, Recipe):
    return model_or_recipe.replace(**overrides), None
  if isinstance(model_or_recipe, ModelConfig):
    return Recipe(model=model_or_recipe).replace(**overrides), None
  if isinstance(model_or_recipe, nnx.Module):
    if "activation" in overrides or "model" in overrides:
      raise ValueError("activation/model cannot be overridden when a module is given: "
                       "the module is what is trained")
    recipe = Recipe().replace(**overrides)
    try:
      recipe = recipe.replace(model=config_of(model_or_recipe))
    except TypeError:
      pass  # an unregistered architecture: the record keeps its type name instead
    return recipe, model_or_recipe
  raise TypeError("model_or_recipe must be an nnx.Module, a ModelConfig, a Recipe or the name "
                  f"of a preset {sorted(PRESETS)}, got {type(model_or_recipe).__name__}")


def train(model_or_recipe: nnx.Module | ModelConfig | Recipe | str,
          train_data: tuple[np.ndarray, np.ndarray],
          test_data: tuple[np.ndarray, np.ndarray] | None = None, *,
          key: jax.Array | None = None, rewrite: bool | None = None,
          log_every: int = 100, print_fn: Callable[[str], None] | None = print,
          checkpoint_dir: str | os.PathLike | None = None,
          on_epoch: Callable[[int, dict, dict], None] | None = None,
          **overrides: Any) -> tuple[nnx.Module, dict]:
  """Trains a classifier on softmax cross-entropy, following a :class:`Recipe`.

  Args:
    model_or_recipe: a :class:`Recipe` or a preset's name (``"theano_tutorial"``,
      ``"adam_cosine"``, ...): its model is built and initialised by its ``init``; a
      ``ModelConfig``: the default recipe for that model; or an ``nnx.Module``, trained
      in place with the default recipe (re-initialised only if ``init`` is not
      ``"default"`` or ``zero_output`` is set).
    train_data: ``(images [n, H, W, C] float32 in [0, 1], labels [n] int)``: all the
      training images; ``split="holdout"`` trains on the first five sixths and reports
      accuracy on the last sixth every epoch (:func:`holdout_split`).
    test_data: evaluated after every epoch when given.
    key: PRNG key for initialisation and shuffling; ``jax.random.key(recipe.seed)`` if None.
    rewrite: differentiate the model through :func:`jsma_jax.rewrite.loop_friendly`
      (convolutions as patch matmuls: the same function to float32 rounding, 1.4-1.8x
      faster training steps on XLA:CPU). ``None``: where the attack turns it on (CPU).
    log_every: print progress every this many steps (and at each epoch's end).
    print_fn: where progress goes; ``None`` for silence.
    checkpoint_dir: a folder where the run's state (weights, optimiser state, epochs
      done, history, and what the run depends on: recipe, key, data) is written after
      every epoch (:mod:`jsma_jax.models.train_state`). If it already holds the state of
      this same run, training continues from there, and ends with the weights and
      history of an uninterrupted run, bit for bit (timings aside); the state of another
      recipe, key, data or starting weights is refused with a ``TrainStateError`` (a
      ``ValueError``) naming what differs.
    on_epoch: called after every epoch this sitting runs as ``on_epoch(epochs_done,
      params, history)`` (the weights as a nested dict of arrays, the history so far),
      before the state is written to ``checkpoint_dir``: a snapshot saved there is never
      skipped by a resumed run. With a constant step size, the weights after ``k`` epochs
      of an ``n``-epoch run are those of a ``k``-epoch run of the same recipe, bit for
      bit (shuffles depend on the epoch's index only), so one run gives both.
    **overrides: recipe fields to change (``epochs=3``, ``batch_size=64``,
      ``activation="relu"``, ...), validated by :class:`Recipe`.

  Returns:
    ``(model, history)``; ``history`` has per-epoch lists ``train_loss``,
    ``train_accuracy`` (running, over the epoch), ``validation_accuracy`` (with
    ``split="holdout"``), ``test_accuracy`` (with ``test_data``), ``epoch_seconds``, and
    ``recipe`` (``Recipe.to_dict()``), ``n_train``, ``n_validation``, ``train_seconds``
    (summed over the sittings of a resumed run) and ``steps``.

  Example:
    A LeNet, one epoch over 313 digits (every 16th) in batches of 64, so 4
    steps (a real run takes all of ``load_mnist(split="train")`` and a few epochs):

    >>> x, y = load_mnist(split="train")
    >>> model, history = train(ModelConfig(), (x[::16], y[::16]), epochs=1, batch_size=64, print_fn=None)
    >>> type(model).__name__, history["steps"], len(history["train_loss"])
    ('LeNet', 4, 1)
  """
  recipe, model = _resolve(model_or_recipe, overrides)
  _check_data("train_data", train_data)
  if test_data is not None:
    _check_data("test_data", test_data)
  images, labels = train_data
  validation = None
  if recipe.split == "holdout":
    train_idx, val_idx = holdout_split(len(labels))
    validation = (images[val_idx], labels[val_idx])
    images, labels = images[train_idx], labels[train_idx]
  n = len(labels)
  if n < recipe.batch_size:
    raise ValueError(f"batch_size={recipe.batch_size} exceeds the {n} training examples")
  log = print_fn or (lambda s: None)
  key = jax.random.key(recipe.seed) if key is None else key
  init_key, shuffle_key = jax.random.split(key)
  if model is None:
    model = recipe.model.build(rngs=nnx.Rngs(params=init_key))
  if recipe.init != "default" or recipe.zero_output:
    initialise(model, recipe.init, jax.random.fold_in(init_key, 1),
               zero_output=recipe.zero_output, pool_area=recipe.pool_area)

  graphdef, state = nnx.split(model)
  apply_fn, params = LogitsFn(graphdef), nnx.to_pure_dict(state)
  if rewrite is None:
    rewrite = rewrite_lib.enabled_by_default(jax.default_backend())
  train_fn = rewrite_lib.loop_friendly(apply_fn) if rewrite else apply_fn
  steps_per_epoch = n // recipe.batch_size
  step, tx = make_train_step(train_fn, recipe, steps_per_epoch)
  opt_state = tx.init(params)
  history = {"train_loss": [], "train_accuracy": [], "validation_accuracy": [],
             "test_accuracy": [], "epoch_seconds": [], "recipe": recipe.to_dict(),
             "model_type": type(model).__name__, "n_train": n,
             "n_validation": 0 if validation is None else len(validation[1])}
  first_epoch, ident = 0, None
  if checkpoint_dir is not None:
    checkpoint_dir = os.fspath(checkpoint_dir)
    ident = train_state.identity(recipe.to_dict(), type(model).__name__, key, rewrite,
                                 train_data, test_data, params)
    resumed = train_state.load(checkpoint_dir, ident, params, opt_state)
    if resumed is not None:
      first_epoch, params, opt_state, history = resumed
      params, opt_state = jax.tree.map(jnp.asarray, (params, opt_state))
      log(f"resuming from {os.path.join(checkpoint_dir, train_state.STATE_FILE)}: "
          f"{first_epoch} of {recipe.epochs} epochs done")
  log(f"training {type(model).__name__} ({recipe.name}: {recipe.describe()}) on {n} examples: "
      f"{recipe.epochs} epochs x {steps_per_epoch} steps of {recipe.batch_size}")
  start_all = time.perf_counter()
  for epoch in range(first_epoch, recipe.epochs):
    start = time.perf_counter()
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
    losses, accs = [], []
    for i in range(steps_per_epoch):
      idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
      x = np.asarray(images[idx], np.float32)
      y = np.asarray(labels[idx], np.int32)
      params, opt_state, loss, acc = step(params, opt_state, x, y)
      losses.append(loss)
      accs.append(acc)
      if log_every and (i + 1) % log_every == 0:
        log(f"  epoch {epoch + 1} step {i + 1}/{steps_per_epoch} "
            f"loss {float(np.mean(jax.device_get(losses[-log_every:]))):.4f}")
    history["train_loss"].append(float(np.mean(jax.device_get(losses))))
    history["train_accuracy"].append(float(np.mean(jax.device_get(accs))))
    if not np.isfinite(history["train_loss"][-1]):
      raise FloatingPointError(f"recipe {recipe.name!r}: the training loss is not finite at "
                               f"epoch {epoch + 1}; lower learning_rate "
                               f"(now {recipe.learning_rate})")
    msg = (f"epoch {epoch + 1}/{recipe.epochs}: loss {history['train_loss'][-1]:.4f}, "
           f"train acc {history['train_accuracy'][-1]:.4f}")
    if validation is not None:
      history["validation_accuracy"].append(
          evaluate(apply_fn, validation, params=params, batch_size=recipe.eval_batch_size))
      msg += f", validation acc {history['validation_accuracy'][-1]:.4f}"
    if test_data is not None:
      history["test_accuracy"].append(
          evaluate(apply_fn, test_data, params=params, batch_size=recipe.eval_batch_size))
      msg += f", test acc {history['test_accuracy'][-1]:.4f}"
    history["epoch_seconds"].append(time.perf_counter() - start)
    if on_epoch is not None:
      on_epoch(epoch + 1, params, history)
    if checkpoint_dir is not None:
      train_state.save(checkpoint_dir, ident, epoch + 1, params, opt_state, history)
    log(msg + f" ({history['epoch_seconds'][-1]:.1f} s)")
  history["train_seconds"] = (time.perf_counter() - start_all if first_epoch == 0
                              else sum(history["epoch_seconds"]))  # over every sitting
  history["steps"] = recipe.epochs * steps_per_epoch
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
  return model, history
