"""The data layer on the real Fashion-MNIST files, and the IDX reader against broken input."""

from __future__ import annotations

import gzip
import shutil
import socket

import numpy as np
import pytest
from helpers import SUBSET_TEST_IMAGES, SUBSET_TRAIN_IMAGES
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vggbench import VggbenchError, data, download


def test_the_committed_subset_loads_with_its_documented_properties(data_dir):
    """tests/data/README.md: the first 200 training and 100 test images of each class, in order."""
    train_x, train_y = data.load_fashion_mnist(str(data_dir), train=True)
    test_x, test_y = data.load_fashion_mnist(str(data_dir), train=False)
    assert train_x.shape == (SUBSET_TRAIN_IMAGES, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (SUBSET_TEST_IMAGES, 28, 28) and test_y.shape == (SUBSET_TEST_IMAGES,)
    assert np.bincount(train_y).tolist() == [200] * 10
    assert np.bincount(test_y).tolist() == [100] * 10
    # The cut keeps the original order, so the subset starts with the full set's first images.
    assert train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert train_x.mean() == pytest.approx(73.0444, abs=1e-4)
    assert test_x.mean() == pytest.approx(72.6709, abs=1e-4)


def test_the_committed_subset_is_the_full_sets_first_images_of_each_class(data_dir, full_data):
    """What tools/cut_test_subset.py promises, checked against the published files themselves."""
    for train, per_class in ((True, 200), (False, 100)):
        full_x, full_y = data.load_fashion_mnist(str(full_data), train=train)
        sub_x, sub_y = data.load_fashion_mnist(str(data_dir), train=train)
        keep = np.sort(np.concatenate([np.flatnonzero(full_y == label)[:per_class] for label in range(10)]))
        assert np.array_equal(sub_y, full_y[keep]) and np.array_equal(sub_x, full_x[keep])


def test_the_full_training_and_test_sets_load_with_their_documented_properties(full_data):
    train_x, train_y = data.load_fashion_mnist(str(full_data), train=True)
    test_x, test_y = data.load_fashion_mnist(str(full_data), train=False)
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    assert np.bincount(train_y).tolist() == [6000] * 10
    assert np.bincount(test_y).tolist() == [1000] * 10
    assert train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert test_y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert train_x.mean() == pytest.approx(72.9404, abs=1e-4)
    assert test_x.mean() == pytest.approx(73.1466, abs=1e-4)


@pytest.mark.parametrize("size", [96, 224])
def test_preprocessing_resizes_to_nchw_floats_in_unit_range(data_dir, size):
    images, labels = data.load_fashion_mnist(str(data_dir), train=False)
    batches = list(data.iter_batches(images[:10], labels[:10], size, batch_size=4))
    assert [x.shape for x, _ in batches] == [(4, 1, size, size), (4, 1, size, size), (2, 1, size, size)]
    x = np.concatenate([b[0] for b in batches])
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # Bilinear resizing keeps the image: its mean brightness barely moves.
    assert x.mean() == pytest.approx(images[:10].mean() / 255.0, abs=0.01)


def test_loader_shuffles_reproducibly_and_keeps_labels_with_images(data_dir):
    images, labels = data.load_fashion_mnist(str(data_dir), train=False)
    images, labels = images[:64], labels[:64]
    first = [(x.asnumpy(), y.asnumpy()) for x, y in data.data_loader(images, labels, 96, 16, True, seed=3)]
    again = [(x.asnumpy(), y.asnumpy()) for x, y in data.data_loader(images, labels, 96, 16, True, seed=3)]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again))
    drawn = np.concatenate([y for _, y in first])
    assert sorted(drawn.tolist()) == sorted(labels.tolist()) and drawn.tolist() != labels.tolist()
    # Each drawn image is the resized version of the image with that label.
    reference = {data.preprocess(images[i:i + 1], 96).tobytes(): labels[i] for i in range(64)}
    x, y = first[0]
    assert all(reference[x[i:i + 1].tobytes()] == y[i] for i in range(len(y)))


def test_subset_is_fixed_by_the_seed_and_bounded(data_dir):
    images, labels = data.load_fashion_mnist(str(data_dir), train=False)
    a = data.subset(images, labels, 500, seed=1)
    b = data.subset(images, labels, 500, seed=1)
    c = data.subset(images, labels, 500, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    assert len(a[1]) == 500 and len(np.unique(a[1])) == 10
    assert data.subset(images, labels, None)[0] is images


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(1, 6))))
def test_idx_round_trip_of_random_images(images):
    assert np.array_equal(data.parse_idx(data.encode_idx(images), data.IMAGES_MAGIC), images)


@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.integers(0, 50)))
def test_idx_round_trip_of_random_labels(labels):
    assert np.array_equal(data.parse_idx(data.encode_idx(labels), data.LABELS_MAGIC), labels)


def _copy_data(data_dir, tmp_path):
    target = tmp_path / "fmnist"
    shutil.copytree(data_dir, target)
    return target


def test_truncated_file_names_the_file_and_the_problem(data_dir, tmp_path):
    target = _copy_data(data_dir, tmp_path)
    labels = target / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(VggbenchError, match=rf"t10k-labels-idx1-ubyte.gz: {len(raw) - 100} bytes.*truncated"):
        data.load_fashion_mnist(str(target), train=False)


def test_corrupt_gzip_and_swapped_files_are_named(data_dir, tmp_path):
    target = _copy_data(data_dir, tmp_path)
    images = target / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:5000])
    with pytest.raises(VggbenchError, match="t10k-images-idx3-ubyte.gz: not a readable gzip"):
        data.load_fashion_mnist(str(target), train=False)
    shutil.copy(target / "t10k-labels-idx1-ubyte.gz", images)
    with pytest.raises(VggbenchError, match="magic number is 2049, expected 2051"):
        data.load_fashion_mnist(str(target), train=False)


def test_mismatched_counts_are_rejected(data_dir, tmp_path):
    target = _copy_data(data_dir, tmp_path)
    shutil.copy(target / "train-labels-idx1-ubyte.gz", target / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(VggbenchError, match=f"{SUBSET_TEST_IMAGES} images but .* {SUBSET_TRAIN_IMAGES} labels"):
        data.load_fashion_mnist(str(target), train=False)


def test_missing_files_name_each_missing_file_once(tmp_path):
    with pytest.raises(VggbenchError) as err:
        data.ensure_data(str(tmp_path), download=False)
    message = str(err.value)
    assert "\n" not in message and "--data-dir" in message and data.DATA_ENV_VAR in message
    assert message.startswith(f"none of the Fashion-MNIST files are in {tmp_path}")
    assert [message.count(name) for name in data.ALL_FILES] == [1, 1, 1, 1]
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(VggbenchError) as err:
        data.ensure_data(str(tmp_path), download=False)
    message = str(err.value)
    assert [message.count(name) for name in data.ALL_FILES] == [0, 1, 1, 1]
    assert "1 of the 4 are there" in message


def test_an_offline_download_attempt_is_one_line_and_leaves_nothing(tmp_path):
    """Zalando's and Gluon's URLs swapped for closed loopback ports (the test never downloads, online
    or not): the error names both sources and how to use a copy; no file or folder is left."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        ports = first.getsockname()[1], second.getsockname()[1]
    sources = [download.mirror_of_originals(f"http://127.0.0.1:{ports[0]}/fashion"),
               download.gluon_mirror(f"http://127.0.0.1:{ports[1]}/")]
    with pytest.raises(VggbenchError) as err:
        data.ensure_data(str(tmp_path), sources=sources, progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"cannot download {data.ALL_FILES[0]} (and 3 more after it)")
    assert f"127.0.0.1:{ports[0]}/fashion" in message and f"127.0.0.1:{ports[1]}/gluon/dataset/fashion-mnist" in message
    assert "--data-dir" in message and data.DATA_ENV_VAR in message
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_data_dir_is_an_error_and_is_not_created(tmp_path, monkeypatch):
    typo = tmp_path / "fashon-mnist"
    with pytest.raises(VggbenchError, match=f"--data-dir {typo} does not exist"):
        data.ensure_data(str(typo))
    monkeypatch.setenv(data.DATA_ENV_VAR, str(typo))
    with pytest.raises(VggbenchError, match=f"{data.DATA_ENV_VAR} {typo} does not exist"):
        data.load_fashion_mnist(None)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(VggbenchError, match="is a file, not a folder"):
        data.ensure_data(str(tmp_path / "a-file"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "env"))
    assert data.resolve_data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert data.resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv(data.DATA_ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data.resolve_data_dir(None) == tmp_path / "cache" / "vggbench" / "fashion-mnist"
