"""The ``jsma-jax`` command: ``jsma-jax reproduce | train | attack | family | zoo | factorial [options]``.

``jsma-jax --version`` prints the installed version (from the package's metadata).

Each command is a module of :mod:`.commands` with its own ``main(argv)`` and ``--help``;
the module is imported only when its command runs, so ``jsma-jax --help`` works with the
core install alone.
"""

from __future__ import annotations

import importlib
import os
import sys

from .common.cli_args import UsageError

COMMANDS = {
    "reproduce": ("commands.reproduce", "reproduce Papernot et al. (EuroS&P 2016): the study, figures and report"),
    "train": ("commands.train", "train the paper's LeNet on MNIST and save a checkpoint"),
    "attack": ("commands.attack", "attack a checkpoint on a dataset and write results.json and report.md"),
    "family": ("commands.family", "compare the JSMA family on one model: table, curve, report"),
    "zoo": ("commands.zoo", "train LeNets by several recipes, attack each, report what moves success"),
    "factorial": ("commands.factorial", "a 2^4 factorial zoo: main effects and interactions, "
                                        "the pre-registered choice"),
}
# what a missing module needs, as a user installs it: from the checkout (the package is not on PyPI)
EXTRAS = {"flax": "experiments", "optax": "experiments", "matplotlib": "experiments",
          "tensorflow_datasets": "experiments", "array_record": "experiments", "torch": "torch"}


NO_CACHE = "--no-compile-cache"  # accepted by every command
CACHE_ENV = "JSMA_JAX_COMPILE_CACHE"


def install_line(extra: str) -> str:
  """The install line of an extra, run in the checkout of jsma-jax."""
  return f'pip install ".[{extra}]" (in the jsma-jax checkout)'


def version() -> str:
  """The installed version of jsma-jax (its package metadata, read once by ``jsma_jax``)."""
  import jsma_jax

  if jsma_jax.__version__ == "0+unknown":
    return "unknown (jsma-jax is not installed: run from a checkout without pip install)"
  return jsma_jax.__version__


def _usage() -> str:
  lines = ["usage: jsma-jax {" + ",".join(COMMANDS) + "} [options] | --version", "",
           "The experiments of jsma-jax (each command has its own --help):", ""]
  lines += [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
  lines += ["", "Every command keeps its compiled attacks in a per-user cache folder for the next run",
            f"(jsma_jax.compile_cache); {NO_CACHE} (or {CACHE_ENV}=0) turns that off."]
  return "\n".join(lines)


def main(argv=None) -> int:
  """Runs ``jsma-jax COMMAND ...``; returns the exit status."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_usage())
    return 0 if argv else 2
  if argv[0] == "--version":
    print(f"jsma-jax {version()}")
    return 0
  if argv[0] not in COMMANDS:
    print(_usage(), file=sys.stderr)
    print(f"\njsma-jax: unknown command {argv[0]!r}", file=sys.stderr)
    return 2
  return run(argv[0], argv[1:])


def one_cpu_device_per_core() -> int | None:
  """Splits the CPU into one XLA device per core, unless the user chose; returns the count set, or None.

  The stages attack over every device of the process (``jsma_jax.jsma_local``,
  ``attack_dataset``): on a 2-core CPU two single-core devices ran the paper's row
  1.21-1.29x faster than one device using both cores (``docs/performance.md``). Left alone: a count
  the user chose (``JAX_NUM_CPU_DEVICES``, or ``--xla_force_host_platform_device_count``
  in ``XLA_FLAGS``), and a process whose JAX has already started (a command run from
  Python after JAX work: its devices are fixed by then). Accelerators are unaffected.
  """
  if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    return None
  import jax

  from jsma_jax.options import cpu_cores

  cores = cpu_cores()
  try:
    jax.config.update("jax_num_cpu_devices", cores)
  except RuntimeError:  # JAX's backends are up already
    return None
  return cores


def run(command: str, argv) -> int:
  """Runs one command; a :class:`UsageError` or a missing extra is one line on stderr."""
  cache = NO_CACHE not in argv
  argv = [a for a in argv if a != NO_CACHE]
  if "-h" not in argv and "--help" not in argv:
    one_cpu_device_per_core()
    if cache:  # compile once per machine, not once per run
      from jsma_jax import compile_cache

      compile_cache.enable()
  try:  # the import too: a command's module may need an extra that is not installed
    module = importlib.import_module(f".{COMMANDS[command][0]}", __package__)
    module.main(list(argv))
  except UsageError as e:
    print(f"jsma-jax {command}: {e}", file=sys.stderr)
    return 2
  except ModuleNotFoundError as e:
    top = (e.name or "").split(".")[0]
    if top in EXTRAS:
      print(f"jsma-jax {command}: needs {e.name}, which is not installed: {install_line(EXTRAS[top])}",
            file=sys.stderr)
      return 1
    raise
  except Exception as e:
    if not isinstance(e, _explained_errors()):
      raise
    print(f"jsma-jax {command}: error: {e}", file=sys.stderr)
    return 2  # a user's error (a checkpoint, an --out, a training state): exit 2, as for a bad flag
  return 0


def _explained_errors() -> tuple[type, ...]:
  """Errors whose message names the cause and the fix: one line, not a traceback.

  Imported only once a command has failed (so ``--help`` needs the core alone): a
  checkpoint that cannot be loaded, an output folder that cannot be written, a training
  state of another run.
  """
  try:  # without flax, none of these was raised
    from jsma_jax.models import CheckpointError
    from jsma_jax.models.train_state import TrainStateError

    from .common.stages import OutputFolderError
  except ImportError:
    return ()
  return (CheckpointError, OutputFolderError, TrainStateError)


if __name__ == "__main__":
  sys.exit(main())
