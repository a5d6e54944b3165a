"""Train a model with optax: jit-compiled steps, explicit-key shuffling, evaluation.

The loop is functional: the model is split once into its ``GraphDef`` and a nested dict
of weights, each step is a jitted pure function of ``(params, opt_state, x, y)``, and the
weights go back into the model at the end. Batches have one fixed shape (the last
incomplete training batch of an epoch is dropped; evaluation pads and masks), so each
step function compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jsma_jax.models.apply import LogitsFn, as_logits_fn
from jsma_jax.models.lenet import ModelConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Training hyperparameters (recorded in checkpoints).

  Attributes:
    epochs: passes over the training set.
    batch_size: training batch size.
    learning_rate: Adam's (peak) step size.
    schedule: ``"cosine"`` (default: decays the step size to 0 over the run, which
      settles the final weights) or ``"constant"``.
    seed: seeds model initialisation and shuffling when no ``key`` is given.
    eval_batch_size: evaluation batch size.

  Example:
    >>> TrainConfig(epochs=3).schedule, TrainConfig(epochs=3).batch_size
    ('cosine', 128)
    >>> TrainConfig(batch_size=0)
    Traceback (most recent call last):
    ValueError: batch_size must be positive, got 0
  """

  epochs: int = 5
  batch_size: int = 128
  learning_rate: float = 1e-3
  schedule: str = "cosine"
  seed: int = 0
  eval_batch_size: int = 1000

  def __post_init__(self):
    for name in ("epochs", "batch_size", "eval_batch_size"):
      v = getattr(self, name)
      if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
      if v < (0 if name == "epochs" else 1):
        raise ValueError(f"{name} must be positive, got {v}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
    if self.schedule not in SCHEDULES:
      raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


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


SCHEDULES = ("cosine", "constant")


@functools.lru_cache(maxsize=16)
def make_train_step(apply_fn: LogitsFn, learning_rate: float, schedule: str = "constant",
                    total_steps: int = 1) -> tuple[Callable, Any]:
  """Adam and its jitted ``step(params, opt_state, x, y) -> (params, opt_state, loss, acc)``.

  Cached on its arguments: training the same architecture again (another seed, the
  other test) reuses the compiled step.

  Returns:
    ``(step, tx)``: ``tx`` is ``optax.adam`` with a constant step size, or one following
    ``optax.cosine_decay_schedule(learning_rate, total_steps)``.
  """
  if schedule == "cosine":
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, max(total_steps, 1)))
  else:
    tx = optax.adam(learning_rate)

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


def train(model_or_config: nnx.Module | ModelConfig,
          train_data: tuple[np.ndarray, np.ndarray],
          test_data: tuple[np.ndarray, np.ndarray] | None = None, *,
          epochs: int = 5, batch_size: int = 128, learning_rate: float = 1e-3,
          schedule: str = "cosine",
          key: jax.Array | None = None, seed: int = 0, eval_batch_size: int = 1000,
          log_every: int = 100, print_fn: Callable[[str], None] | None = print,
          ) -> tuple[nnx.Module, dict]:
  """Trains a classifier with Adam on softmax cross-entropy.

  Args:
    model_or_config: an ``nnx.Module`` (trained in place and returned) or a
      ``ModelConfig`` (a model is initialised from the key).
    train_data: ``(images [n, H, W, C] float32 in [0, 1], labels [n] int)``.
    test_data: evaluated after every epoch when given.
    epochs, batch_size, learning_rate, schedule, eval_batch_size: see ``TrainConfig``.
    key: PRNG key for initialisation and shuffling; ``jax.random.key(seed)`` if None.
    seed: used only when ``key`` is None.
    log_every: print progress every this many steps (and at each epoch's end).
    print_fn: where progress goes; ``None`` for silence.

  Returns:
    ``(model, history)``; ``history`` has per-epoch lists ``train_loss``,
    ``train_accuracy`` (running, over the epoch), ``test_accuracy`` (if ``test_data``),
    ``epoch_seconds``, and the totals ``train_seconds``, ``steps`` and ``config``.

  Example:
    A LeNet, one epoch over 250 digits (every 16th) in batches of 64, so 3
    steps (a real run takes all of ``load_mnist(split="train")`` and a few epochs):

    >>> x, y = load_mnist(split="train")
    >>> model, history = train(ModelConfig(), (x[::16], y[::16]), epochs=1, batch_size=64, print_fn=None)
    >>> type(model).__name__, history["steps"], len(history["train_loss"])
    ('LeNet', 3, 1)
  """
  config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                       schedule=schedule,
                       seed=seed, eval_batch_size=eval_batch_size)
  _check_data("train_data", train_data)
  if test_data is not None:
    _check_data("test_data", test_data)
  if len(train_data[1]) < batch_size:
    raise ValueError(f"batch_size={batch_size} exceeds the {len(train_data[1])} "
                     "training examples")
  log = print_fn or (lambda s: None)
  key = jax.random.key(seed) if key is None else key
  init_key, shuffle_key = jax.random.split(key)
  if isinstance(model_or_config, ModelConfig):
    model = model_or_config.build(rngs=nnx.Rngs(params=init_key))
  elif isinstance(model_or_config, nnx.Module):
    model = model_or_config
  else:
    raise TypeError("model_or_config must be an nnx.Module or a ModelConfig, got "
                    f"{type(model_or_config).__name__}")

  graphdef, state = nnx.split(model)
  apply_fn, params = LogitsFn(graphdef), nnx.to_pure_dict(state)
  images, labels = train_data
  n = len(labels)
  steps_per_epoch = n // batch_size
  step, tx = make_train_step(apply_fn, float(learning_rate), schedule,
                             epochs * steps_per_epoch)
  opt_state = tx.init(params)
  history = {"train_loss": [], "train_accuracy": [], "test_accuracy": [],
             "epoch_seconds": [], "config": dataclasses.asdict(config)}
  log(f"training {type(model).__name__} on {n} examples: {epochs} epochs x "
      f"{steps_per_epoch} steps of {batch_size}")
  start_all = time.perf_counter()
  for epoch in range(epochs):
    start = time.perf_counter()
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n))
    losses, accs = [], []
    for i in range(steps_per_epoch):
      idx = perm[i * batch_size:(i + 1) * batch_size]
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
    msg = (f"epoch {epoch + 1}/{epochs}: loss {history['train_loss'][-1]:.4f}, "
           f"train acc {history['train_accuracy'][-1]:.4f}")
    if test_data is not None:
      history["test_accuracy"].append(
          evaluate(apply_fn, test_data, params=params, batch_size=eval_batch_size))
      msg += f", test acc {history['test_accuracy'][-1]:.4f}"
    history["epoch_seconds"].append(time.perf_counter() - start)
    log(msg + f" ({history['epoch_seconds'][-1]:.1f} s)")
  history["train_seconds"] = time.perf_counter() - start_all
  history["steps"] = epochs * steps_per_epoch
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
  return model, history
