"""Writes that an interruption cannot half-do: one file, or one whole folder, at a time.

- :func:`atomic_write_bytes`: the bytes go to a temporary file in the same folder, are
  flushed to disk (``fsync``), and ``os.replace`` puts them in place: a reader sees the
  old file or the new one, never a mixture.
- :func:`replace_folder`: a folder of several files (a checkpoint) is written whole to a
  sibling ``.<name>.new-XXXX``, then swapped in: the old folder is renamed aside to
  ``.<name>.old-XXXX``, the new one renamed in, the old one removed. Between the two
  renames no folder has the name; :func:`recover_folder` (run by every reader of such a
  folder, and by the next write) finishes the swap, so an interruption at any point
  leaves either the old folder or the new one, complete, under its name.
- :func:`sha256_file`: the digest that records tie one file to another.

Concurrent writers of the same folder are not supported (the second may remove the
first one's unfinished ``.new-`` folder and fail); readers and one writer are.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable

NEW, OLD = ".new-", ".old-"


def fsync_folder(path: str) -> None:
  """Flushes a folder's entries (renames, new files) to disk, where the OS allows it."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass  # some file systems (and Windows) cannot fsync a folder
  finally:
    os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` via a temporary file in the same folder, ``fsync`` and ``os.replace``.

  Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> atomic_write_bytes(path, b"one"); atomic_write_bytes(path, b"two")
    >>> open(path, "rb").read(), sorted(os.listdir(os.path.dirname(path)))
    (b'two', ['a.txt'])
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  fsync_folder(folder)


def sha256_file(path: str | os.PathLike) -> str:
  """The SHA-256 of a file's bytes, as 64 hex digits."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _siblings(path: str, kind: str) -> dict[str, str]:
  """``{suffix: sibling path}`` of the ``.<name><kind>XXXX`` folders next to ``path``."""
  parent, name = os.path.split(path)
  prefix = f".{name}{kind}"
  try:
    entries = os.listdir(parent or ".")
  except OSError:
    return {}
  return {e[len(prefix):]: os.path.join(parent, e) for e in entries if e.startswith(prefix)}


def recover_folder(path: str | os.PathLike) -> None:
  """Finishes a :func:`replace_folder` that was interrupted: afterwards ``path`` holds the
  old or the new folder, complete, and no ``.old-`` sibling is left.

  A no-op (one ``listdir`` of the parent) when nothing was interrupted.
  """
  path = os.path.abspath(os.fspath(path))
  olds = _siblings(path, OLD)
  if not olds:
    return
  news = _siblings(path, NEW)
  for suffix, old in sorted(olds.items()):
    if not os.path.exists(path):
      # the old folder was renamed aside; the new one was complete before that rename
      source = news.get(suffix, old)
      try:
        os.rename(source, path)
      except FileNotFoundError:  # another reader finished this swap first
        pass
    if os.path.exists(old):
      shutil.rmtree(old, ignore_errors=True)
  fsync_folder(os.path.dirname(path))


def _link_or_copy(src: str, dst: str) -> None:
  try:
    os.link(src, dst)
  except OSError:
    shutil.copy2(src, dst)


def replace_folder(path: str | os.PathLike, write: Callable[[str], None], *,
                   own: tuple[str, ...] = ()) -> str:
  """Writes a folder whole and swaps it in for ``path``; see the module docstring.

  Args:
    path: the folder to create or replace.
    write: ``write(folder)`` fills a fresh empty folder with the new files.
    own: names of entries that belong to the folder's format: an old entry with such a
      name that ``write`` did not write is dropped (a stale file of the old version must
      not sit beside the new one); every other old entry (a report beside a checkpoint)
      is kept, hard-linked into the new folder before the swap.

  Returns:
    ``path``, as a string.
  """
  path = os.path.abspath(os.fspath(path))
  parent, name = os.path.split(path)
  os.makedirs(parent, exist_ok=True)
  recover_folder(path)
  if os.path.lexists(path) and not os.path.isdir(path):
    raise FileExistsError(f"path {path!r} exists and is not a folder; remove it or choose another path")
  for stale in _siblings(path, NEW).values():  # unfinished writes of interrupted runs
    shutil.rmtree(stale, ignore_errors=True)
  new = tempfile.mkdtemp(dir=parent, prefix=f".{name}{NEW}")
  old = os.path.join(parent, f".{name}{OLD}{os.path.basename(new)[len(f'.{name}{NEW}'):]}")
  try:
    os.chmod(new, 0o755)  # mkdtemp makes 0700 folders
    write(new)
    if os.path.isdir(path):
      for entry in os.listdir(path):
        if entry in own or os.path.lexists(os.path.join(new, entry)):
          continue
        src, dst = os.path.join(path, entry), os.path.join(new, entry)
        if os.path.islink(src):
          os.symlink(os.readlink(src), dst)
        elif os.path.isdir(src):
          shutil.copytree(src, dst, copy_function=_link_or_copy, symlinks=True)
        else:
          _link_or_copy(src, dst)
    for root, _, files in os.walk(new):
      for f in files:
        if not os.path.islink(os.path.join(root, f)):
          with open(os.path.join(root, f), "rb") as handle:
            os.fsync(handle.fileno())
      fsync_folder(root)
  except BaseException:
    shutil.rmtree(new, ignore_errors=True)
    raise
  if os.path.isdir(path):
    os.rename(path, old)
    try:
      os.rename(new, path)
    except FileNotFoundError:
      if not os.path.isdir(path):  # else a reader's recover_folder finished the swap for us
        raise
    fsync_folder(parent)
    if os.path.exists(old):
      shutil.rmtree(old)
  else:
    os.rename(new, path)
  fsync_folder(parent)
  return path
