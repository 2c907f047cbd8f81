"""Logits in, numbers out: the one accuracy loop and the one logits comparison.

numpy only, so every stage can use it: training evaluates the net in memory, export compares
MXNet with ONNX Runtime, optimize compares each variant with fp32, bench measures each backend.
A model is given as ``predict``: a function from one host batch to its host logits.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
Prepare = Callable[[np.ndarray], np.ndarray]


def predict_in_batches(predict: Predict, images: np.ndarray, batch_size: int, prepare: Optional[Prepare] = None,
                       on_batch: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """The logits ``[N, classes]`` (float32) of ``predict`` over ``images``, ``batch_size`` at a time.

    Parameters:
        predict: host batch -> host logits (a runtime's ``run``, an ONNX Runtime session, a net).
        images: N images in any sliceable array (a memory map works: one batch is read at a time).
        batch_size: images per call.
        prepare: turns each slice into the model's input (e.g. resizes uint8 images); None passes
            the slice as it is.
        on_batch: called with each batch's image count after it ran (progress bars).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(images) == 0:
        raise ValueError("no images to predict")
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        if prepare is not None:
            batch = prepare(batch)
        outputs.append(np.asarray(predict(np.ascontiguousarray(batch)), dtype=np.float32))
        if on_batch is not None:
            on_batch(len(batch))
    return np.concatenate(outputs)


def top1_accuracy(predict: Predict, images: np.ndarray, labels: np.ndarray, batch_size: int,
                  prepare: Optional[Prepare] = None) -> float:
    """Fraction of ``labels`` that ``predict`` gets right (top-1) on ``images``.

    Parameters:
        predict, images, batch_size, prepare: as for :func:`predict_in_batches`.
        labels: the N true class indices.
    """
    return accuracy_from_logits(predict_in_batches(predict, images, batch_size, prepare), labels)


def accuracy_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``labels`` (N class indices) whose row of ``logits`` ``[N, classes]`` peaks at it."""
    return _correct(logits, labels) / len(labels)


def _correct(logits: np.ndarray, labels: np.ndarray) -> int:
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logit rows for {len(labels)} labels")
    return int(np.sum(np.asarray(logits).argmax(axis=1) == np.asarray(labels)))


def compare_logits(reference: np.ndarray, candidate: np.ndarray,
                   labels: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """How far ``candidate``'s logits are from ``reference``'s on the same N images.

    Parameters:
        reference: ``[N, classes]`` logits of the model taken as right (MXNet, the fp32 file).
        candidate: ``[N, classes]`` logits of the model under test (ONNX Runtime, a variant).
        labels: the N true class indices, to add both accuracies; None skips them.

    Returns ``max_abs_diff`` (the largest |logit difference|; NaN when either side has a NaN, so a
    ``<=`` gate fails), ``top1_agreement`` (fraction of images with the same argmax) and ``n``.
    With ``labels`` also ``reference_accuracy``, ``candidate_accuracy`` and
    ``accuracy_drop_points`` (reference minus candidate in percentage points, from the counts, so
    that a drop of exactly a threshold is not pushed over it by rounding).
    """
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise ValueError(f"logits of different shapes: {reference.shape} and {candidate.shape}")
    result: Dict[str, Any] = {
        "max_abs_diff": float(np.max(np.abs(candidate.astype(np.float64) - reference))),
        "top1_agreement": float(np.mean(candidate.argmax(1) == reference.argmax(1))),
        "n": int(len(reference))}
    if labels is not None:
        reference_correct, candidate_correct = _correct(reference, labels), _correct(candidate, labels)
        result.update(reference_accuracy=reference_correct / len(labels),
                      candidate_accuracy=candidate_correct / len(labels),
                      accuracy_drop_points=round(100.0 * (reference_correct - candidate_correct) / len(labels), 6))
    return result
