"""Progress from inside the compiled attack: the iteration reached, for long attacks.

The attack is one compiled program: a long one (a large input at the default budget, say
tens of thousands of pair iterations) says nothing until it returns. With
``EngineOptions(progress_every=k)`` every ``k``-th iteration of the loop sends the host
the furthest iteration any example in flight has reached and how many are still running
(a ``jax.debug.callback``, which does not change a result); the functions registered with
:func:`listening` receive them. :func:`jsma_jax.attack_dataset` does this for its progress
bar when the budget is long. Off by default: the loop then holds no host callback.

:func:`bar` is the progress bar of a batched attack (``attack_dataset``, the ``jsma-jax``
commands): it says ``compiling`` until the first chunk is counted, so that the minute a
first compile can take does not read as a bar stuck at 0%.

Example:
  >>> w = jnp.array([[1., -1.], [-1., 1.], [.5, 0.], [0., .5]])
  >>> f = lambda x: x.reshape(x.shape[0], -1) @ w
  >>> seen = []
  >>> with listening(lambda iteration, running: seen.append(iteration)):
  ...   result = jsma_jax.jsma(f, jnp.zeros((1, 4)), jnp.array([1]), max_iter=2, progress_every=1)
  ...   jax.effects_barrier()  # callbacks run asynchronously: wait for them
  >>> seen
  [1]
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_LOCK = threading.Lock()
_LISTENERS: list[Callable[[int, int], None]] = []  # a list, not a context variable: callbacks run on XLA's threads


@contextlib.contextmanager
def listening(listener: Callable[[int, int], None]) -> Iterator[None]:
  """Calls ``listener(iteration, running)`` for each progress report of attacks run inside the block."""
  with _LOCK:
    _LISTENERS.append(listener)
  try:
    yield
  finally:
    with _LOCK:
      _LISTENERS.remove(listener)


def report(iteration, running) -> None:
  """The host side of the callback: hands the numbers to every listener."""
  with _LOCK:
    listeners = list(_LISTENERS)
  for listener in listeners:
    listener(int(iteration), int(running))


COMPILING = "compiling (the first chunk waits for it)"  # the bar's note until its first count


def bar(total: int, description: str, **options: Any) -> Any:
  """A ``tqdm`` bar of ``total`` attacks that says ``compiling`` until its first count; ``None``
  without tqdm (a dependency of the package, so only where it was removed).

  The first ``update`` clears the note (the caller's ``set_postfix`` then shows its own);
  ``options`` go to ``tqdm`` (``file=``, ``disable=``, ...).
  """
  try:
    from tqdm.auto import tqdm
  except ImportError:
    return None

  class Bar(tqdm):
    def update(self, n=1):
      if self.postfix == COMPILING:  # counted: compiled
        self.set_postfix_str("", refresh=False)
      return super().update(n)

  shown = Bar(total=total, desc=description, unit="attack", **options)
  shown.set_postfix_str(COMPILING)
  return shown
