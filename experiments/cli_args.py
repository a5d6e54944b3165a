"""What every ``jsma-jax`` command shares on its command line: help, data, model, errors.

- :class:`HelpFormatter` shows each option's default, except where the help already says
  what the default is (an option whose default is resolved from the others).
- :func:`data_source` resolves ``--dataset`` and ``--data-dir`` together, so that
  ``--data-dir`` alone selects IDX files.
- :func:`require_folder` and :func:`load_model` check paths before any work starts.
- :class:`UsageError` is a command line that cannot run as given; ``jsma-jax`` prints its
  message as one line (``jsma-jax COMMAND: ...``) and exits with status 2, no traceback.

This module imports only the standard library at import time, so ``--help`` needs the core
install alone.
"""

from __future__ import annotations

import argparse
import os

SHIPPED = "shipped"  # --checkpoint value: the package's default paper LeNet; "shipped:NAME" another by name
SOURCES = ("embedded", "idx", "tfds")
DATASET_HELP = ("where the data comes from: the embedded 5,000 MNIST digits, IDX files or "
                "tensorflow-datasets (default: idx when --data-dir is given, else embedded)")


class UsageError(Exception):
  """A command line that cannot run as given; the message names the option to pass."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """``--help`` with every default, unless the option's help already states its default."""

  def _get_help_string(self, action):
    if "(default" in (action.help or ""):
      return action.help
    return super()._get_help_string(action)


def data_source(dataset: str | None, data_dir: str | None, default: str = "embedded") -> str:
  """The data source of ``--dataset`` and ``--data-dir``: ``--data-dir`` alone means IDX files.

  Args:
    dataset: the ``--dataset`` given, or ``None``.
    data_dir: the ``--data-dir`` given, or ``None``.
    default: the source when neither is given.

  Raises:
    UsageError: ``--dataset embedded`` with a ``--data-dir`` (which it would ignore).
  """
  if dataset is None:
    return "idx" if data_dir is not None else default
  if dataset == "embedded" and data_dir is not None:
    raise UsageError(f"--data-dir {data_dir!r} is not used by --dataset embedded: drop --dataset embedded "
                     "to read the IDX files there, or drop --data-dir")
  return dataset


def require_folder(path: str | None, option: str, what: str) -> None:
  """Raises :class:`UsageError` naming ``option`` unless ``path`` is a folder."""
  if path is None:
    raise UsageError(f"needs {option} FOLDER ({what})")
  if not os.path.isdir(path):
    raise UsageError(f"{option} {path!r} is not a folder: pass {option} FOLDER ({what})")


def load_model(checkpoint: str):
  """``(model, metadata)`` of ``--checkpoint``: a checkpoint folder, ``"shipped"`` (the
  package's default paper LeNet) or ``"shipped:NAME"`` (another shipped LeNet by name)."""
  from jsma_jax.models import load_checkpoint
  from jsma_jax.models import load_paper_lenet

  if checkpoint == SHIPPED:
    return load_paper_lenet()
  if checkpoint.startswith(SHIPPED + ":"):
    try:  # the name is checked in one place: load_paper_lenet
      return load_paper_lenet(checkpoint[len(SHIPPED) + 1:])
    except ValueError as e:
      raise UsageError(f"--checkpoint {checkpoint!r}: {e}") from None
  if not os.path.isfile(os.path.join(checkpoint, "metadata.json")):
    raise UsageError(f"--checkpoint {checkpoint!r} holds no checkpoint (metadata.json): pass a folder "
                     f"written by jsma-jax train, or --checkpoint {SHIPPED} for the package's paper LeNet")
  return load_checkpoint(checkpoint)
