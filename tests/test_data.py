"""Tests for jsma_jax.models.data and jsma_jax.models.tfds_builders (no downloads)."""

import gzip
import importlib.abc
import importlib.util
import os
import sys
import time

import numpy as np
import pytest

from jsma_jax.models import data as data_lib
from jsma_jax.models import load_embedded_mnist, load_fashion_mnist, load_idx, load_mnist, read_idx

MNIST_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
MNIST_DIR = os.environ.get("JSMA_MNIST_DIR", MNIST_DIR)
HAVE_MNIST = os.path.isfile(os.path.join(MNIST_DIR, "train-images-idx3-ubyte.gz"))
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"full MNIST not at {MNIST_DIR}")


def _check_arrays(images, labels, n, num_classes=10):
  assert images.shape == (n, 28, 28, 1) and images.dtype == np.float32
  assert labels.shape == (n,) and labels.dtype == np.int32
  assert images.min() >= 0.0 and images.max() <= 1.0
  assert labels.min() >= 0 and labels.max() < num_classes


def _write_idx(path, array, compress):
  header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
  payload = header + np.ascontiguousarray(array, np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(payload) if compress else payload)


@pytest.fixture(scope="module")
def small_idx_dir(tmp_path_factory):
  """A small MNIST-format folder (embedded digits): 300 train, 100 test; train gzipped."""
  root = tmp_path_factory.mktemp("idx")
  images, labels = data_lib.load_embedded_mnist_uint8()
  order = np.random.default_rng(0).permutation(len(labels))[:400]
  tr, te = order[:300], order[300:]
  _write_idx(root / "train-images-idx3-ubyte.gz", images[tr], True)
  _write_idx(root / "train-labels-idx1-ubyte.gz", labels[tr], True)
  _write_idx(root / "t10k-images-idx3-ubyte", images[te], False)  # uncompressed
  _write_idx(root / "t10k-labels.idx1-ubyte", labels[te], False)  # '.' name variant
  return root, (images[tr], labels[tr]), (images[te], labels[te])


# ----------------------------------------------------------------------------- embedded


def test_embedded_train_digits():
  images, labels = load_embedded_mnist("train")
  _check_arrays(images, labels, 5000)
  np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
  assert images.max() == 1.0  # real digits use the whole range


@pytest.mark.parametrize("split, n", [("train", 5000), ("test", 1000)])
def test_load_mnist_embedded_default(split, n):
  images, labels = load_mnist(split=split)
  _check_arrays(images, labels, n)
  np.testing.assert_array_equal(np.bincount(labels), [n // 10] * 10)
  raw = (data_lib.load_embedded_mnist_uint8()[0] if split == "train"
         else data_lib.load_embedded_mnist_test_uint8()[0])
  np.testing.assert_array_equal(images[..., 0] * 255, raw)


def test_embedded_test_digits_are_first_100_test_digits_per_class():
  """What _data/SOURCE.md states: official test images, the first 100 of each class."""
  data_dir = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
  if not os.path.isdir(data_dir):
    pytest.skip("../shared/data/mnist is not beside the checkout")
  test_images, test_labels = load_idx(data_dir, "test")
  images, labels, index = data_lib.load_embedded_mnist_test_uint8()
  expected = np.concatenate([np.flatnonzero(test_labels == c)[:100] for c in range(10)])
  np.testing.assert_array_equal(index, expected)
  np.testing.assert_array_equal(images, np.round(test_images[expected, ..., 0] * 255).astype(np.uint8))
  np.testing.assert_array_equal(labels, test_labels[expected])


# ---------------------------------------------------------------------------------- IDX


def test_read_idx_gz_and_raw(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  _write_idx(tmp_path / "a.gz", array, True)
  _write_idx(tmp_path / "a", array, False)
  np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), array)
  np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)
  (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
  with pytest.raises(ValueError, match="path"):
    read_idx(tmp_path / "bad")


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist],
                         ids=["mnist", "fashion_mnist"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_idx_source(small_idx_dir, loader, split):
  root, train, test = small_idx_dir
  raw_images, raw_labels = train if split == "train" else test
  images, labels = loader("idx", data_dir=root, split=split)
  _check_arrays(images, labels, len(raw_labels))
  np.testing.assert_array_equal(images[..., 0], raw_images.astype(np.float32) / 255)
  np.testing.assert_array_equal(labels, raw_labels)


@pytest.mark.parametrize(
    "call, error, match",
    [(lambda: load_mnist("idx"), ValueError, "data_dir"),
     (lambda: load_mnist("idx", data_dir="/nonexistent/x"), FileNotFoundError, "data_dir"),
     (lambda: load_mnist("web"), ValueError, "source"),
     (lambda: load_mnist(split="valid"), ValueError, "split"),
     (lambda: load_fashion_mnist("embedded"), ValueError, "embedded")],
    ids=["no-dir", "missing-dir", "bad-source", "bad-split", "no-embedded-fashion"])
def test_loader_errors(call, error, match):
  with pytest.raises(error, match=match):
    call()


def test_idx_missing_file_names_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    load_mnist("idx", data_dir=tmp_path)


@needs_mnist
def test_full_mnist_idx():
  for split, counts in [
      ("train", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
      ("test", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])]:
    images, labels = load_mnist("idx", data_dir=MNIST_DIR, split=split)
    _check_arrays(images, labels, sum(counts))
    np.testing.assert_array_equal(np.bincount(labels), counts)


@needs_mnist
def test_embedded_digits_are_first_500_training_digits_per_class():
  """What _data/SOURCE.md states about where the embedded digits come from."""
  full_images, full_labels = load_mnist("idx", data_dir=MNIST_DIR, split="train")
  images, labels = data_lib.load_embedded_mnist_uint8()
  for c in range(10):
    first = np.flatnonzero(full_labels == c)[:500]
    np.testing.assert_array_equal(full_images[first, ..., 0] * 255,
                                  images[labels == c])


# --------------------------------------------------------------------------------- TFDS


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
    return None


@pytest.fixture
def no_tensorflow(monkeypatch):
  """Runs the test as on a machine without TensorFlow, and checks none was imported.

  Where TensorFlow is not installed (the project's CI) this changes nothing; where it
  is, its import is blocked.
  """
  if "tensorflow" in sys.modules:
    pytest.skip("TensorFlow is already imported in this process")
  if importlib.util.find_spec("tensorflow") is not None:
    monkeypatch.setattr(sys, "meta_path", [_BlockTensorFlow()] + sys.meta_path)
  yield
  assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist],
                         ids=["mnist", "fashion_mnist"])
def test_tfds_prepare_and_read_without_tensorflow(small_idx_dir, tmp_path, loader,
                                                  no_tensorflow):
  root, train, _test = small_idx_dir
  tfds_dir = tmp_path / "tfds"
  images, labels = loader("tfds", data_dir=tfds_dir, idx_dir=root, split="train")
  _check_arrays(images, labels, 300)
  np.testing.assert_array_equal(labels, train[1])  # IDX order restored
  np.testing.assert_array_equal(images[..., 0], train[0].astype(np.float32) / 255)
  name = "mnist_idx" if loader is load_mnist else "fashion_mnist_idx"
  assert list((tfds_dir / name / "1.0.0").glob("*.array_record*"))
  # Already prepared: read back without idx_dir, and equal to the idx source.
  images, labels = loader("tfds", data_dir=tfds_dir, split="test")
  ref_images, ref_labels = loader("idx", data_dir=root, split="test")
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)


def test_tfds_missing_dataset_fails_fast(tmp_path, no_tensorflow):
  start = time.perf_counter()
  with pytest.raises(FileNotFoundError, match="not prepared") as info:
    load_mnist("tfds", data_dir=tmp_path / "empty")
  assert time.perf_counter() - start < 10
  message = str(info.value)
  assert "idx_dir" in message and "download=True" in message
  assert "source='idx'" in message


def test_tfds_bad_idx_dir_fails_before_writing(tmp_path, no_tensorflow):
  with pytest.raises(FileNotFoundError, match="train-images"):
    load_mnist("tfds", data_dir=tmp_path / "tfds", idx_dir=tmp_path)
  assert not list((tmp_path / "tfds").rglob("*.array_record*"))


@needs_mnist
@pytest.mark.slow
def test_full_mnist_tfds_equals_idx(tmp_path, no_tensorflow):
  """The real 70,000 digits through the TFDS builder (about 5 s to prepare)."""
  images, labels = load_mnist("tfds", data_dir=tmp_path, idx_dir=MNIST_DIR, split="test")
  ref_images, ref_labels = load_mnist("idx", data_dir=MNIST_DIR, split="test")
  np.testing.assert_array_equal(images, ref_images)
  np.testing.assert_array_equal(labels, ref_labels)
  images, labels = load_mnist("tfds", data_dir=tmp_path, split="train")
  _check_arrays(images, labels, 60000)
  np.testing.assert_array_equal(
      np.bincount(labels), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


def test_tfds_download_goes_through_download_manager(small_idx_dir, tmp_path,
                                                     monkeypatch, no_tensorflow):
  """download=True asks TFDS's download manager for the four files (faked: no network)."""
  import tensorflow_datasets as tfds
  root, train, _ = small_idx_dir
  requested = {}

  def fake_download(self, url_or_urls):
    requested.update(url_or_urls)
    return {k: data_lib.find_idx_file(root, *k.split("_")) for k in url_or_urls}

  monkeypatch.setattr(tfds.download.DownloadManager, "download", fake_download)
  _images, labels = load_mnist("tfds", data_dir=tmp_path, split="train", download=True)
  np.testing.assert_array_equal(labels, train[1])
  assert sorted(requested) == ["test_images", "test_labels", "train_images",
                               "train_labels"]
  assert requested["train_images"] == (
      "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz")
