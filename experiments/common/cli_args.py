"""What every ``jsma-jax`` command shares on its command line: help, data, model, errors.

- :class:`HelpFormatter` shows each option's default, except where the help already says
  what the default is (an option whose default is resolved from the others).
- :func:`data_source` resolves ``--dataset`` and ``--data-dir`` together, so that
  ``--data-dir`` alone selects IDX files.
- :func:`require_folder` and :func:`load_model` check paths before any work starts.
- :class:`UsageError` is a command line that cannot run as given; ``jsma-jax`` prints its
  message as one line (``jsma-jax COMMAND: ...``) and exits with status 2, no traceback.
  :class:`Parser` raises it for what argparse refuses (an unknown flag, a value of the
  wrong type or range: :func:`count`, :func:`natural`); :func:`configuration` and
  :func:`check_attack_options` for what a configuration or the library's own checks refuse,
  with the flag in place of the Python name (:func:`in_flags`); :func:`load_data` for data
  that is not where the flags say.

This module imports only the standard library at import time, so ``--help`` needs the core
install alone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re

# The library (JAX, and flax through jsma_jax.models) is imported inside the functions that
# use it: cli imports this module for every command line, --help and --version included.

SHIPPED = "shipped"  # --checkpoint value: the package's default paper LeNet; "shipped:NAME" another by name
SOURCES = ("embedded", "idx", "tfds")
DATASET_HELP = ("where the data comes from: the embedded 5,000 MNIST digits, IDX files or "
                "tensorflow-datasets (default: idx when --data-dir is given, else embedded)")


class UsageError(Exception):
  """A command line that cannot run as given; the message names the option to pass."""


class Parser(argparse.ArgumentParser):
  """An ``ArgumentParser`` whose errors are a :class:`UsageError` (one line, exit status 2
  through ``jsma-jax``), not argparse's usage text and ``SystemExit``."""

  def error(self, message):
    raise UsageError(f"{message} (see {self.prog} --help)")


def count(text: str) -> int:
  """An ``argparse`` type: a whole number >= 1 (sources, batch sizes, epochs)."""
  return _whole(text, 1)


def natural(text: str) -> int:
  """An ``argparse`` type: a whole number >= 0 (seeds, counts that may be zero)."""
  return _whole(text, 0)


def _whole(text: str, minimum: int) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
  if value < minimum:
    raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
  return value


def in_flags(parser: argparse.ArgumentParser, message: str, flags: dict | None = None) -> str:
  """``message`` with each option's Python name (its ``dest``) written as its flag.

  A name is replaced where a message names an argument: at its start or before ``must``,
  ``and``, ``=``, ``,`` or ``:`` (``"n_sources and batch_size must be >= 1"`` becomes
  ``"--sources and --batch-size must be >= 1"``), so that other words are left alone.
  ``flags`` adds names that are not a ``dest`` (``{"theta": "--thetas"}``).
  """
  flags = {**{a.dest: a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"},
           **(flags or {})}
  for dest in sorted(flags, key=len, reverse=True):
    message = re.sub(rf"(?<![\w-]){re.escape(dest)}(?=\s+must\b|\s+and\b|\s*=|,|:)", flags[dest], message)
  return message


def configuration(parser: argparse.ArgumentParser, make, args: dict, flags: dict | None = None):
  """``make(**args)``; its ``ValueError`` or ``TypeError`` becomes a :class:`UsageError` naming
  flags (``flags`` as for :func:`in_flags`)."""
  try:
    return make(**args)
  except (TypeError, ValueError) as e:
    raise UsageError(in_flags(parser, str(e), flags)) from None


def check_attack_options(parser: argparse.ArgumentParser, flags: dict | None = None, **options) -> None:
  """Checks ``jsma`` options given on the command line by the library's own checks
  (``jsma_jax.AttackOptions``: the one home of what ``theta``, ``gamma``, ``max_iter``,
  ... may be), before any data is read or anything compiles.

  Raises:
    UsageError: the library's message, with the flag in place of the option's name
      (``--gamma must lie in (0, 1] ...``).
  """
  from jsma_jax import AttackOptions

  configuration(parser, AttackOptions, options, flags)


@contextlib.contextmanager
def flag_error(flag: str, value):
  """Inside the block, a ``ValueError`` or ``TypeError`` (a file the flag names that cannot be
  used: its message says why and how to fix it) becomes a :class:`UsageError` naming the flag."""
  try:
    yield
  except (TypeError, ValueError) as e:
    raise UsageError(f"{flag} {value!r}: {e}") from None


def load_data(name: str, source: str, split: str, data_dir: str | None = None, *,
              idx_dir: str | None = None, download: bool = False, prepare_flags: bool = False):
  """``(x, y)`` of ``jsma_jax.models.load_dataset``; data that is not there is a :class:`UsageError`.

  Args:
    name, source, split, data_dir: as ``--name``, ``--dataset``, ``--split``, ``--data-dir``.
    idx_dir, download: ``tfds`` only, as ``--idx-dir`` and ``--download`` (``jsma-jax train``).
    prepare_flags: the command has ``--idx-dir`` and ``--download``: its fix names them.

  Raises:
    UsageError: the files are not in ``--data-dir`` (or not valid IDX files), the TFDS
      dataset is not prepared, or ``--name`` has no embedded digits; the message names
      the flags that fix it.
  """
  from jsma_jax.models import load_dataset

  if source == "embedded" and name != "mnist":
    raise UsageError(f"--name {name}: only MNIST has embedded digits: pass --data-dir FOLDER of its IDX files "
                     "(or --dataset tfds)")
  kwargs = {} if source == "embedded" else {"data_dir": data_dir}
  if source == "tfds" and (idx_dir is not None or download):
    kwargs.update(idx_dir=idx_dir, download=download)
  absl = logging.getLogger("absl")  # tensorflow-datasets' notes on a folder it cannot use: the error below says it
  level = absl.level
  try:
    if source == "tfds":
      absl.setLevel(logging.ERROR)
    return load_dataset(name, source, split=split, **kwargs)
  except (FileNotFoundError, ValueError) as e:
    if source == "tfds" and "not prepared" in str(e):
      where = repr(data_dir) if data_dir is not None else "TFDS's default folder (~/tensorflow_datasets)"
      prepare = ("prepare it from IDX files with --idx-dir FOLDER (or allow a download with --download), "
                 if prepare_flags else "")
      raise UsageError(f"--dataset tfds: {name} is not prepared in {where}: {prepare}pass --data-dir FOLDER "
                       "of a prepared TFDS folder, or read the IDX files themselves with --dataset idx "
                       "--data-dir FOLDER" + (", or drop --dataset for the embedded digits" if name == "mnist"
                                              else "")) from None
    if source == "idx":
      raise UsageError(f"--data-dir {data_dir!r}: {str(e).replace(f'in data_dir={data_dir!r}', 'there')}; "
                       "pass --data-dir FOLDER holding the four IDX files of the set") from None
    raise UsageError(f"--dataset {source}: {e}") from None
  finally:
    absl.setLevel(level)


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
  from jsma_jax.models import load_checkpoint, load_paper_lenet

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
