"""Overlap in training (issue 14 item 2): the loader's prefetch modes never change what is trained,
``train_epoch`` waits on the device once per batch (plus once per curve point) and still stops a
non-finite loss before the optimizer step, and the prefetch thread never outlives its pass.

Real MXNet, real Fashion-MNIST subsets, tiny models (LeNet; vgg11_bn at width 1/32, 32x32).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vggbench import VggbenchError, data, train
from vggbench.platform.mxnet import import_mxnet

mx = import_mxnet()


class RecordingLoader:
    """Passes a loader's batches through unchanged and keeps a host copy of each."""

    def __init__(self, loader):
        self.loader, self.batches = loader, []

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            self.batches.append((x.asnumpy(), y.asnumpy()))
            yield x, y


def _weights(net) -> list:
    """Every parameter of ``net`` in order, batch-norm running statistics included, on the host
    (Gluon numbers layer names per process, so two nets of one recipe differ only in names)."""
    return [param.data().asnumpy() for param in net.collect_params().values()]


def _train_one_epoch(recipe: "train.Recipe", images, labels, prefetch: str):
    net = train.build_network(recipe, [mx.cpu()])
    trainer = train.build_trainer(net, recipe)
    loader = RecordingLoader(data.data_loader(images, labels, recipe.input_size, recipe.batch_size, shuffle=True,
                                              seed=train.epoch_seed(recipe.seed, 1), prefetch=prefetch))
    stats = train.train_epoch(net, trainer, recipe.make_loss(), loader, [mx.cpu()], 1, 1, recipe.lr,
                              progress=False, record_every=2)
    return loader.batches, _weights(net), stats


def test_every_prefetch_mode_trains_the_same_batches_into_the_same_weights(data_dir):
    """vgg11_bn has dropout (MXNet's RNG) and batch norm (running statistics): a prefetch thread
    must disturb neither, nor the seeded shuffle, which stays Gluon's RandomSampler order."""
    recipe = train.Recipe("vgg11_bn", input_size=32, width_ratio=32, batch_size=16, seed=5)
    images, labels = data.load_split(str(data_dir), True, 48, seed=0)  # 3 batches
    runs = {mode: _train_one_epoch(recipe, images, labels, mode) for mode in data.PREFETCH_MODES}

    np.random.seed(train.epoch_seed(recipe.seed, 1))
    order = np.arange(len(labels))
    np.random.shuffle(order)
    expected = [order[start:start + 16] for start in range(0, len(order), 16)]
    for batches, weights, stats in runs.values():
        assert [len(y) for _, y in batches] == [16] * 3
        for (x, y), index in zip(batches, expected):
            np.testing.assert_array_equal(y, labels[index])
            np.testing.assert_array_equal(x, data.preprocess(images[index], 32))
        assert stats["train_images"] == 48 and len(stats["steps"]) == 2
    reference_weights, reference_stats = runs["sync"][1], runs["sync"][2]
    for mode in ("engine", "thread"):
        weights, stats = runs[mode][1], runs[mode][2]
        assert len(weights) == len(reference_weights) == 54
        for index, (value, reference) in enumerate(zip(weights, reference_weights)):
            np.testing.assert_allclose(value, reference, rtol=1e-6, atol=1e-7, err_msg=f"{mode}: parameter {index}")
        assert stats["train_accuracy"] == reference_stats["train_accuracy"]
        assert stats["train_loss"] == pytest.approx(reference_stats["train_loss"], rel=1e-6)
        assert [s["accuracy"] for s in stats["steps"]] == [s["accuracy"] for s in reference_stats["steps"]]
    first = train.build_network(recipe, [mx.cpu()])
    moved = sum(not np.allclose(value, reference) for value, reference in zip(_weights(first), reference_weights))
    assert moved > len(reference_weights) // 2, "the epoch trained: most parameters moved"


def _lenet_batches(data_dir, sizes):
    """Consecutive real training batches of the given sizes, preprocessed to 32x32 NDArrays."""
    images, labels = data.load_split(str(data_dir), True, sum(sizes), seed=1)
    batches, start = [], 0
    for size in sizes:
        batches.append((data.preprocess_nd(images[start:start + size], 32),
                        mx.nd.array(labels[start:start + size].astype(np.int32))))
        start += size
    return batches


def test_accuracy_counted_on_the_device_matches_the_predictions_and_is_read_once_per_curve_point(
        data_dir, monkeypatch):
    """With learning rate 0 the weights stay put, so LeNet's (no dropout, no batch norm) outputs
    after the epoch are the ones the epoch counted: recount them on the host and compare."""
    recipe = train.Recipe("lenet", input_size=32, batch_size=16, seed=2)
    batches = _lenet_batches(data_dir, [16, 16, 16, 16, 9])
    net = train.build_network(recipe, [mx.cpu()])
    frozen = mx.gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.0})
    reads = []
    real_asnumpy = mx.nd.NDArray.asnumpy

    def counted_asnumpy(array):
        reads.append(array.shape)
        return real_asnumpy(array)

    with monkeypatch.context() as patch:
        patch.setattr(mx.nd.NDArray, "asnumpy", counted_asnumpy)
        stats = train.train_epoch(net, frozen, recipe.make_loss(), batches, [mx.cpu()], 1, 1, 0.0,
                                  progress=False, record_every=2)
    # one loss sum per batch (5) + one correct count per curve point (after batches 2, 4 and 5)
    assert len(reads) == 5 + 3

    correct = [int((net(x).argmax(axis=1).asnumpy() == y.asnumpy()).sum()) for x, y in batches]
    losses = [float(recipe.make_loss()(net(x), y).sum().asscalar()) for x, y in batches]
    assert stats["train_accuracy"] == sum(correct) / 73
    assert [s["accuracy"] for s in stats["steps"]] == [sum(correct[0:2]) / 32, sum(correct[2:4]) / 32,
                                                       correct[4] / 9]
    assert [s["epoch"] for s in stats["steps"]] == [0.4, 0.8, 1.0]
    assert stats["train_loss"] == pytest.approx(sum(losses) / 73, rel=1e-5)
    assert stats["steps"][0]["loss"] == pytest.approx(sum(losses[:2]) / 32, rel=1e-5)


def test_a_non_finite_loss_stops_the_run_before_its_optimizer_step(data_dir):
    """Batch 2 holds a NaN pixel: the weights after the error are those after batch 1 alone."""
    recipe = train.Recipe("lenet", input_size=32, batch_size=16, lr=0.05, seed=4)
    batches = _lenet_batches(data_dir, [16, 16, 16])
    poisoned = batches[1][0].copy()
    poisoned[3, 0, 7, 7] = float("nan")
    batches[1] = (poisoned, batches[1][1])

    after_one = train.build_network(recipe, [mx.cpu()])
    train.train_epoch(after_one, train.build_trainer(after_one, recipe), recipe.make_loss(), batches[:1],
                      [mx.cpu()], 1, 1, recipe.lr, progress=False)
    net = train.build_network(recipe, [mx.cpu()])
    with pytest.raises(VggbenchError) as caught:
        train.train_epoch(net, train.build_trainer(net, recipe), recipe.make_loss(), batches, [mx.cpu()], 1, 1,
                          recipe.lr, progress=False)
    assert str(caught.value) == "loss became nan at epoch 1 batch 2; lower --lr (now 0.05)"
    for index, (value, expected) in enumerate(zip(_weights(net), _weights(after_one))):
        assert np.isfinite(value).all(), index
        np.testing.assert_array_equal(value, expected, err_msg=f"parameter {index}")


def _prefetch_threads() -> list:
    return [thread for thread in threading.enumerate() if thread.name == "vggbench-prefetch"]


def test_prefetch_stays_a_bounded_distance_ahead_and_stops_with_its_consumer():
    drawn = []

    def endless():
        while True:
            drawn.append(len(drawn))
            yield drawn[-1]

    items = data.prefetched(endless(), depth_items=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.3)  # time for the producer to run ahead as far as it may
    # taken 3, at most 2 queued and 1 more drawn and waiting for room
    assert 3 <= len(drawn) <= 6
    assert len(_prefetch_threads()) == 1
    items.close()
    assert _prefetch_threads() == []


def test_an_error_while_prefetching_is_raised_at_the_batch_it_replaced():
    def failing():
        yield "first"
        yield "second"
        raise OSError("disk gone")

    items = data.prefetched(failing(), depth_items=1)
    assert next(items) == "first" and next(items) == "second"
    with pytest.raises(OSError, match="disk gone"):
        next(items)
    assert _prefetch_threads() == []


def test_an_epoch_interrupted_mid_way_stops_its_prefetch_thread(data_dir):
    """Ctrl-C during batch 3 of 10 (raised from the loss): no thread is left drawing batches."""
    recipe = train.Recipe("lenet", input_size=32, batch_size=16, seed=4)
    images, labels = data.load_split(str(data_dir), True, 160, seed=0)
    net = train.build_network(recipe, [mx.cpu()])
    loader = data.data_loader(images, labels, 32, 16, shuffle=True, seed=1, prefetch="thread")
    loss_fn, calls = recipe.make_loss(), []

    def interrupted_loss(output, label):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return loss_fn(output, label)

    with pytest.raises(KeyboardInterrupt):
        train.train_epoch(net, train.build_trainer(net, recipe), interrupted_loss, loader, [mx.cpu()], 1, 1,
                          recipe.lr, progress=False)
    assert _prefetch_threads() == []


def test_an_unknown_prefetch_mode_is_a_one_line_error():
    images = np.zeros((4, 28, 28), np.uint8)
    with pytest.raises(VggbenchError, match=r"^unknown prefetch mode 'async'; use one of sync, engine, thread$"):
        data.data_loader(images, np.zeros(4, np.int64), 32, 2, shuffle=False, prefetch="async")
