"""vggbench.metrics: the one accuracy loop and the one logits comparison (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from vggbench import metrics


def _one_hot(labels, classes: int = 10) -> np.ndarray:
    return np.eye(classes, dtype=np.float32)[np.asarray(labels)]


def test_predict_in_batches_feeds_every_image_once_in_order():
    images = np.arange(23, dtype=np.uint8).reshape(23, 1)
    calls, seen = [], []

    def predict(batch):
        calls.append(batch.copy())
        return _one_hot(batch[:, 0].astype(int) % 10)

    logits = metrics.predict_in_batches(predict, images, batch_size=5, prepare=lambda raw: raw.astype(np.float32) * 2,
                                        on_batch=seen.append)
    assert [len(c) for c in calls] == [5, 5, 5, 5, 3] and seen == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(calls)[:, 0], 2 * np.arange(23))  # prepared, in order
    assert logits.dtype == np.float32 and logits.shape == (23, 10)
    np.testing.assert_array_equal(logits.argmax(1), (2 * np.arange(23)) % 10)


def test_top1_accuracy_counts_argmax_hits():
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1], dtype=np.int32)
    images = labels.reshape(-1, 1).astype(np.float32)
    always_three = lambda batch: np.tile(_one_hot([3]), (len(batch), 1))  # noqa: E731
    assert metrics.top1_accuracy(always_three, images, labels, batch_size=5) == pytest.approx(1 / 12)
    perfect = lambda batch: _one_hot(batch[:, 0].astype(int))  # noqa: E731
    assert metrics.top1_accuracy(perfect, images, labels, batch_size=7) == 1.0
    assert metrics.accuracy_from_logits(_one_hot([1, 2, 2]), np.array([1, 2, 3])) == pytest.approx(2 / 3)


def test_compare_logits_without_labels():
    a = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    b = a + np.array([[0.0, 0.5], [0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    assert metrics.compare_logits(a, b) == {"max_abs_diff": 2.0, "top1_agreement": pytest.approx(2 / 3), "n": 3}


def test_compare_logits_with_labels_reports_both_accuracies_and_the_drop():
    labels = np.arange(100) % 10
    reference = _one_hot(labels)
    candidate = reference.copy()
    candidate[:2] = np.roll(candidate[:2], 1, axis=1)  # two images now wrong: -2 points
    result = metrics.compare_logits(reference, candidate, labels=labels)
    assert result["reference_accuracy"] == 1.0 and result["candidate_accuracy"] == 0.98
    assert result["accuracy_drop_points"] == 2.0  # exactly, from the counts
    assert result["top1_agreement"] == 0.98 and result["max_abs_diff"] == 1.0 and result["n"] == 100


def test_a_nan_logit_makes_the_difference_nan_so_a_gate_fails():
    a = np.zeros((2, 3), dtype=np.float32)
    b = a.copy()
    b[1, 2] = np.nan
    diff = metrics.compare_logits(a, b)["max_abs_diff"]
    assert not diff <= 1.0


def test_mismatched_inputs_are_bugs_not_silent_numbers():
    with pytest.raises(ValueError, match="shapes"):
        metrics.compare_logits(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels"):
        metrics.accuracy_from_logits(np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="batch_size"):
        metrics.predict_in_batches(lambda b: b, np.zeros((2, 3)), batch_size=0)
