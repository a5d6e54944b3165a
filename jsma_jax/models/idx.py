"""MNIST-format IDX files: finding them in a folder, reading them, scaling the images.

The file format shared by the ``"idx"`` source of :mod:`jsma_jax.models.data` and the
TFDS builders of :mod:`jsma_jax.models.tfds_builders`; both import it, and it imports
neither (so the two loaders do not import each other).
"""

from __future__ import annotations

import gzip
import os

import numpy as np

SPLITS = ("train", "test")

# Accepted file names of each (split, part): the standard '-' form and the '.' form
# found inside some archives, each gzipped or not.
_IDX_STEMS = {
    ("train", "images"): ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    ("train", "labels"): ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    ("test", "images"): ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    ("test", "labels"): ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def check_split(split, allowed=SPLITS) -> None:
  """Raises ``ValueError`` naming ``split`` unless it is one of ``allowed``."""
  if split not in allowed:
    raise ValueError(f"split must be one of {allowed}, got {split!r}")


def scale_images(images_u8: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images ``[n, 28, 28(, 1)]`` and labels as float32 ``[n, 28, 28, 1]`` in [0, 1] and int32."""
  images = (images_u8.astype(np.float32) / np.float32(255.0)).reshape(-1, 28, 28, 1)
  return images, labels.astype(np.int32)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one IDX file (gzipped or not; detected from its first bytes) as uint8.

  Args:
    path: an IDX file with unsigned-byte data (type code 0x08), e.g.
      ``train-images-idx3-ubyte.gz``.

  Returns:
    a uint8 array with the shape in the file's header, e.g. ``[60000, 28, 28]``.

  Example:
    An IDX file of two blank 28x28 images, written here:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "t10k-images-idx3-ubyte")
    >>> with open(path, "wb") as f:  # magic 0x00000803 (uint8, 3 dims), then the dims, then the bytes
    ...   _ = f.write(bytes([0, 0, 8, 3]) + np.array([2, 28, 28], ">u4").tobytes() + bytes(2 * 28 * 28))
    >>> read_idx(path).shape, read_idx(path).dtype
    ((2, 28, 28), dtype('uint8'))
  """
  with open(path, "rb") as f:
    data = f.read()
  if data[:2] == b"\x1f\x8b":
    data = gzip.decompress(data)
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"path {os.fspath(path)!r} is not an unsigned-byte IDX file")
  ndim = data[3]
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
  offset = 4 + 4 * ndim
  if len(data) - offset != int(np.prod(shape)):
    raise ValueError(f"path {os.fspath(path)!r}: header says {shape} but holds "
                     f"{len(data) - offset} bytes")
  return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


def find_idx_file(data_dir: str | os.PathLike, split: str, part: str) -> str:
  """Path of the IDX file for ``split`` ("train"/"test") and ``part`` ("images"/"labels").

  Raises:
    FileNotFoundError: naming the directory and the file names looked for.
  """
  check_split(split)
  if part not in ("images", "labels"):
    raise ValueError(f"part must be 'images' or 'labels', got {part!r}")
  stems = _IDX_STEMS[(split, part)]
  for stem in stems:
    for name in (stem + ".gz", stem):
      path = os.path.join(data_dir, name)
      if os.path.isfile(path):
        return path
  raise FileNotFoundError(
      f"no {split} {part} IDX file in data_dir={os.fspath(data_dir)!r}: looked for "
      f"{', '.join(s + '[.gz]' for s in stems)}")
