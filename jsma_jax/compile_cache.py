"""A persistent compilation cache: compile an attack once per machine, not once per process.

JAX can keep the programs it compiles in a folder and read them back in a later
process (its *persistent compilation cache*); a second process then pays for the
trace of the attack but not for its compilation, which is most of a first call's
time. :func:`enable` turns it on for the rest of the process, in a per-user folder:

- the root is ``$JSMA_JAX_COMPILE_CACHE`` when that names a folder, else
  ``$XDG_CACHE_HOME/jsma-jax``, else ``~/.cache/jsma-jax``;
- inside it, one sub-folder per combination of versions,
  ``jax-<v>_jaxlib-<v>_jsma-jax-<v>``. JAX's own key for an entry already hashes the
  program, the compile options, the backend and the jax version, so an entry is
  only ever found for the very same program; the versioned folder is a second,
  visible guard (an upgrade starts a new folder and never reads the old one's
  entries), and makes an old version's entries easy to delete.

``JSMA_JAX_COMPILE_CACHE=0`` (or ``off``, ``false``, ``no``) turns it off: :func:`enable`
then does nothing. The ``jsma-jax`` commands call :func:`enable` at start
(``--no-compile-cache`` turns it off for one run). A cache folder the user has already
given JAX (``jax.config.update("jax_compilation_cache_dir", ...)`` or
``JAX_COMPILATION_CACHE_DIR``) is left as it is.

JAX treats the cache as trusted code: keep it in a folder only you can write (the
default is under your home folder and is created with mode 0700).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache as _jax_cache

from jsma_jax import _version

ENV = "JSMA_JAX_COMPILE_CACHE"
OFF = ("0", "off", "false", "no")


def versions() -> dict[str, str]:
  """The versions that name a cache sub-folder: ``{"jax": ..., "jaxlib": ..., "jsma-jax": ...}``."""
  import jaxlib

  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "jsma-jax": _version.__version__}


def default_root() -> Path:
  """The per-user root of the cache (before the versioned sub-folder); see the module's docstring."""
  chosen = os.environ.get(ENV, "").strip()
  if chosen and chosen.lower() not in OFF:
    return Path(chosen).expanduser()
  xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
  return (Path(xdg) if xdg else Path.home() / ".cache") / "jsma-jax"


def folder(root: str | os.PathLike | None = None) -> Path:
  """The versioned cache folder under ``root`` (default :func:`default_root`); nothing is created.

  Example:
    >>> folder("/tmp/c").name.startswith("jax-")
    True
  """
  v = versions()
  name = f"jax-{v['jax']}_jaxlib-{v['jaxlib']}_jsma-jax-{v['jsma-jax']}"
  return Path(default_root() if root is None else root).expanduser() / name


def disabled_by_env() -> bool:
  """True when ``$JSMA_JAX_COMPILE_CACHE`` turns the cache off (``0``, ``off``, ``false``, ``no``)."""
  return os.environ.get(ENV, "").strip().lower() in OFF


def enable(root: str | os.PathLike | None = None, *, min_compile_seconds: float = 0.0) -> Path | None:
  """Turn on JAX's persistent compilation cache for this process, in a per-user, versioned folder.

  Call it once, early (before the first attack, so that its compilation is stored); it
  changes JAX's process-wide settings, so every program compiled afterwards is cached,
  the user's own included.

  Args:
    root: the cache's root folder; default :func:`default_root`
      (``$JSMA_JAX_COMPILE_CACHE``, ``$XDG_CACHE_HOME/jsma-jax`` or ``~/.cache/jsma-jax``).
      The entries go in its sub-folder named by the versions (:func:`folder`).
    min_compile_seconds: programs that compile faster than this are not stored. JAX's
      default (1 s) skips the attack's small programs (the model checks run before the
      attack, a small model's attack), each of which a new process would compile again;
      the default here, 0, stores everything.

  Returns:
    the folder in use (an existing one the user gave JAX is kept and returned), or None
    when ``$JSMA_JAX_COMPILE_CACHE`` turns the cache off.

  Raises:
    ValueError: ``min_compile_seconds`` is negative or not a number.

  Example:
    >>> import tempfile
    >>> path = enable(tempfile.mkdtemp())  # doctest: +SKIP
  """
  if isinstance(min_compile_seconds, bool) or not isinstance(min_compile_seconds, (int, float)) \
      or not min_compile_seconds >= 0:
    raise ValueError(f"min_compile_seconds must be a number >= 0 (seconds), got {min_compile_seconds!r}")
  if disabled_by_env():
    return None
  current = jax.config.jax_compilation_cache_dir
  if current:  # chosen by the user (or by an earlier enable): keep it
    path = Path(current)
  else:
    path = folder(root)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _jax_cache.set_cache_dir(str(path))
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
  return path


def disable() -> None:
  """Turn the persistent compilation cache off for the rest of this process (entries on disk are kept)."""
  jax.config.update("jax_enable_compilation_cache", False)
  _jax_cache.reset_cache()
