"""TFDS builders for MNIST and Fashion-MNIST that need no TensorFlow.

``tfds.load`` and the stock ``mnist`` builder need TensorFlow (the stock builder encodes
its images to PNG with ``tf.image``). ``tfds.data_source`` on ``array_record`` files does
not. The builders here read the standard IDX files, store each image as a raw uint8
tensor (``tfds.features.Tensor`` with BYTES encoding, no PNG), write ``array_record``
and are read back with ``tfds.data_source``; nothing here imports TensorFlow.

Where the IDX files come from, in order:

1. an already-prepared dataset in ``data_dir`` is used as it is;
2. ``idx_dir`` (passed to TFDS as the manual directory) when given;
3. TFDS's download manager, only with ``download=True``. Otherwise an unprepared dataset
   fails fast with ``FileNotFoundError`` saying how to get it; nothing hangs in retries.

Registered TFDS names: ``mnist_idx`` and ``fashion_mnist_idx``.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from jsma_jax.models import idx as idx_lib

_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

_MANUAL = ("Put the four standard IDX files (train-images-idx3-ubyte[.gz], "
           "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
           "t10k-labels-idx1-ubyte[.gz]) in the manual directory.")


class _IdxBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder: IDX files -> {'image': uint8 [28, 28, 1], 'label', 'index'}.

  TFDS shuffles examples when writing; ``index`` (the position in the IDX file) lets the
  loader restore the original order, so the ``"tfds"`` and ``"idx"`` sources agree.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "IDX files stored as raw uint8 tensors in array_record."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL
  URL = ""
  DESCRIPTION = ""
  CITATION = ""
  HOMEPAGE = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.ClassLabel(num_classes=10),
            "index": tfds.features.Scalar(dtype=np.int64),  # position in the IDX file
        }),
        supervised_keys=("image", "label"),
        homepage=self.HOMEPAGE,
        citation=self.CITATION,
    )

  def _split_generators(self, dl_manager):
    try:
      manual = os.fspath(dl_manager.manual_dir)
    except AssertionError:  # no manual directory, or an empty one
      manual = None
    if manual is not None:
      paths = {f"{s}_{p}": idx_lib.find_idx_file(manual, s, p)
               for s in ("train", "test") for p in ("images", "labels")}
    else:
      paths = dl_manager.download({k: self.URL + v for k, v in _FILES.items()})
    return {s: self._generate_examples(paths[f"{s}_images"], paths[f"{s}_labels"])
            for s in ("train", "test")}

  def _generate_examples(self, images_path, labels_path):
    images = idx_lib.read_idx(images_path)
    labels = idx_lib.read_idx(labels_path)
    for i in range(images.shape[0]):
      yield i, {"image": images[i, :, :, None], "label": int(labels[i]), "index": i}


class MnistIdx(_IdxBuilder):
  """MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0) from its IDX files, TensorFlow-free."""

  URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
  DESCRIPTION = "MNIST handwritten digits, 60,000 train / 10,000 test, from IDX files."
  HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
  CITATION = "LeCun, Cortes, Burges. The MNIST database of handwritten digits."


class FashionMnistIdx(_IdxBuilder):
  """Fashion-MNIST (Zalando Research; MIT) from its IDX files, TensorFlow-free."""

  URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
  DESCRIPTION = "Fashion-MNIST article images, 60,000 train / 10,000 test, from IDX files."
  HOMEPAGE = "https://github.com/zalandoresearch/fashion-mnist"
  CITATION = "Xiao, Rasul, Vollgraf. Fashion-MNIST. arXiv:1708.07747, 2017."


BUILDERS = {"mnist": MnistIdx, "fashion_mnist": FashionMnistIdx}


def prepare(dataset: str = "mnist", *, data_dir=None, idx_dir=None,
            download: bool = False) -> tfds.core.DatasetBuilder:
  """Returns the prepared builder of ``dataset``, preparing it first if needed.

  Args:
    dataset: ``"mnist"`` or ``"fashion_mnist"``.
    data_dir: TFDS data folder (default: TFDS's, ``~/tensorflow_datasets``).
    idx_dir: folder of IDX files to prepare from, if the dataset is not prepared.
    download: allow downloading the IDX files if not prepared and no ``idx_dir``.

  Raises:
    FileNotFoundError: the dataset is not prepared, no ``idx_dir`` and not ``download``.
  """
  if dataset not in BUILDERS:
    raise ValueError(f"dataset must be one of {sorted(BUILDERS)}, got {dataset!r}")
  builder = BUILDERS[dataset](data_dir=data_dir, file_format="array_record")
  if builder.is_prepared():
    return builder
  if idx_dir is None and not download:
    raise FileNotFoundError(
        f"TFDS dataset {builder.name!r} is not prepared in "
        f"{os.fspath(builder.data_dir)!r}. Prepare it from local IDX files with "
        f"load_{dataset}('tfds', data_dir=..., idx_dir=DIR_WITH_IDX_FILES), or allow a "
        f"download with download=True (needs network), or use source='idx' "
        f"(or source='embedded' for MNIST).")
  if idx_dir is not None:
    if not os.path.isdir(idx_dir):
      raise FileNotFoundError(f"idx_dir {os.fspath(idx_dir)!r} is not a directory")
    for s in ("train", "test"):
      for p in ("images", "labels"):
        idx_lib.find_idx_file(idx_dir, s, p)  # fail fast, before TFDS starts writing
  config = tfds.download.DownloadConfig(manual_dir=idx_dir, try_download_gcs=False)
  builder.download_and_prepare(download_config=config)
  return builder


def load_tfds(dataset: str = "mnist", *, split: str = "train", data_dir=None,
              idx_dir=None, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Loads a split through ``tfds.data_source`` (array_record; no TensorFlow).

  Examples come back in the order of the IDX files, like ``source="idx"``.

  Returns:
    ``(images, labels)``: float32 ``[n, 28, 28, 1]`` in [0, 1], int32 ``[n]``.
  """
  idx_lib.check_split(split)
  builder = prepare(dataset, data_dir=data_dir, idx_dir=idx_dir, download=download)
  source = tfds.data_source(builder.name, split=split, data_dir=builder.data_dir_root,
                            download=False)
  examples = source.__getitems__(range(len(source)))
  order = np.argsort([e["index"] for e in examples], kind="stable")
  images = np.zeros((len(examples), 28, 28, 1), np.uint8)
  labels = np.zeros((len(examples),), np.int64)
  for row, k in enumerate(order):
    images[row] = examples[k]["image"]
    labels[row] = examples[k]["label"]
  return idx_lib.scale_images(images, labels)
