"""Data loading throughput: reading + validating the IDX files, and the training loader's resize."""

from __future__ import annotations

import pytest

LOADER_IMAGES = 512
LOADER_BATCH_SIZE = 64
LOADER_SIZES = (96, 224)


@pytest.mark.benchmark(min_rounds=5)
def test_read_idx(benchmark, suite, data_dir):
    from vggbench.data import load_fashion_mnist

    benchmark.group = "data loading"
    images, labels = load_fashion_mnist(str(data_dir), False)  # the test split of tests/data: 1,000 images
    benchmark.extra_info.update(suite.info(kind="data", input_size=28, batch_size=None,
                                           images_per_round=len(labels)))
    timed_images, timed_labels = benchmark(load_fashion_mnist, str(data_dir), False)
    assert timed_images.shape == images.shape == (len(labels), 28, 28) and timed_labels.shape == (len(labels),)


@pytest.mark.benchmark(min_rounds=5)
@pytest.mark.parametrize("input_size", LOADER_SIZES, ids=lambda size: f"{size}px")
def test_data_loader(benchmark, suite, input_size, test_images):
    from vggbench.data import data_loader
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()

    images, labels = test_images
    images, labels = images[:LOADER_IMAGES], labels[:LOADER_IMAGES]

    def one_pass():
        seen = 0
        for x, _ in data_loader(images, labels, input_size, LOADER_BATCH_SIZE, shuffle=True, seed=0):
            seen += x.shape[0]
        mx.nd.waitall()
        return seen

    benchmark.group = "data loading"
    benchmark.extra_info.update(suite.info(kind="data", input_size=input_size, batch_size=LOADER_BATCH_SIZE,
                                           images_per_round=LOADER_IMAGES))
    assert benchmark(one_pass) == LOADER_IMAGES
