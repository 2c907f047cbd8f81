"""When to stop training: at a plateau of held-out accuracy, with a maximum number of epochs.

Held-out accuracy is measured on a fixed part of the training subset that the model never trains
on (:func:`split_holdout`), so the test set plays no part in the decision. The rule reads only the
history of held-out accuracies, so a resumed run decides exactly as an unbroken one would.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from vggbench.errors import VggbenchError

STOP_PLATEAU, STOP_MAX_EPOCHS, STOP_EPOCHS = "plateau", "max_epochs", "epochs"
# A model has started learning once its best held-out accuracy reaches this (twice chance for the
# 10 classes). Before that no plateau is declared: a slow starter (LeNet's sigmoids, a plain deep
# VGG) sitting at chance has not plateaued, it has not begun; it trains on, at most to the maximum.
STARTED_ACCURACY = 0.2
# ... and once its training loss has fallen clearly below the cross-entropy of a uniform guess,
# ln(classes): held-out accuracy alone can wander above 20% while the network still outputs nearly
# uniform probabilities and its loss has barely moved (docs/exercises.md: AlexNet at its lesson's rate).
STARTED_LOSS_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """Where a run stands: ``best_accuracy`` (held-out, fraction) first reached at ``best_epoch``
    (1-based; 0 before any epoch) and ``epochs_since_best`` epochs without an improvement of more
    than ``min_delta`` since; ``started`` (:func:`has_started`); ``reached`` when no improvement has
    lasted ``patience`` epochs and the model has started."""

    best_accuracy: float
    best_epoch: int
    epochs_since_best: int
    reached: bool
    started: bool = True


def has_started(best_accuracy: float, train_losses: Sequence[Optional[float]] = (), classes: int = 10) -> bool:
    """Whether a model has begun to learn: its best held-out accuracy is at least
    :data:`STARTED_ACCURACY` and (when ``train_losses``, per epoch, are known) its lowest training
    loss is at most :data:`STARTED_LOSS_FRACTION` of ln(``classes``), a uniform guess's loss."""
    if not best_accuracy >= STARTED_ACCURACY:
        return False
    losses = [float(loss) for loss in train_losses if loss is not None and math.isfinite(loss)]
    return not losses or min(losses) <= STARTED_LOSS_FRACTION * math.log(max(classes, 2))


def plateau_state(accuracies: Sequence[float], patience: int, min_delta: float,
                  train_losses: Sequence[Optional[float]] = (), classes: int = 10) -> PlateauState:
    """The plateau state after the held-out ``accuracies`` of epochs 1, 2, ...

    An epoch improves when its accuracy beats the best so far by more than ``min_delta``; small
    gains do not move the best, so a slow creep still counts as a plateau. Reached when the last
    ``patience`` epochs held no improvement and the model has started (:func:`has_started`, from
    the best accuracy and the ``train_losses`` of the same epochs, ``classes`` classes).
    """
    if patience < 1:
        raise VggbenchError(f"--patience must be >= 1, got {patience}")
    best, best_epoch = float("-inf"), 0
    for epoch, accuracy in enumerate(accuracies, 1):
        if accuracy > best + min_delta:
            best, best_epoch = float(accuracy), epoch
    since = len(accuracies) - best_epoch
    started = bool(best_epoch) and has_started(best, train_losses, classes)
    return PlateauState(best if best_epoch else float("nan"), best_epoch, since,
                        started and since >= patience, started)


def stop_reason(accuracies: Sequence[float], epochs_done: int, max_epochs: int, until_plateau: bool,
                patience: int, min_delta: float, train_losses: Sequence[Optional[float]] = (),
                classes: int = 10) -> Optional[str]:
    """Why training stops after ``epochs_done`` epochs, or None to go on.

    ``accuracies``: held-out accuracy per epoch (used with ``until_plateau``); ``max_epochs``: the
    bound (the fixed epoch count without ``until_plateau``); ``train_losses``, ``classes``: see
    :func:`has_started`.
    """
    if until_plateau and plateau_state(accuracies[:epochs_done], patience, min_delta, train_losses[:epochs_done],
                                       classes).reached:
        return STOP_PLATEAU
    if epochs_done >= max_epochs:
        return STOP_MAX_EPOCHS if until_plateau else STOP_EPOCHS
    return None


def describe_stop(summary: Dict[str, Any]) -> str:
    """One line saying why a run stopped (from :func:`stop_summary`)."""
    reason = summary["reason"]
    if reason == STOP_PLATEAU:
        return (f"stopped at a plateau after {summary['epochs_trained']} epochs: held-out accuracy did not improve by "
                f"more than {summary['min_delta']:g} for {summary['patience']} epochs (best "
                f"{summary['best_holdout_accuracy']:.4f} at epoch {summary['best_epoch']})")
    if reason == STOP_MAX_EPOCHS:
        never = summary.get("best_holdout_accuracy", 1.0) < STARTED_ACCURACY or summary.get("started") is False
        return (f"stopped at the maximum of {summary['epochs_trained']} epochs before a plateau ("
                + ("it never left chance; " if never else "") + f"best held-out "
                f"{summary['best_holdout_accuracy']:.4f} at epoch {summary['best_epoch']})")
    return f"trained the fixed {summary['epochs_trained']} epochs"


def stop_summary(history: Sequence[Dict[str, Any]], reason: str, until_plateau: bool, patience: int,
                 min_delta: float, max_epochs: int, classes: int = 10) -> Dict[str, Any]:
    """What history.json and the manifest record about how training ended."""
    rows = [row for row in history if row.get("holdout_accuracy") is not None]
    accuracies = [row["holdout_accuracy"] for row in rows]
    summary: Dict[str, Any] = {"reason": reason, "epochs_trained": len(history), "until_plateau": until_plateau,
                               "max_epochs": max_epochs}
    if until_plateau:
        state = plateau_state(accuracies, patience, min_delta, [row.get("train_loss") for row in rows], classes)
        summary.update(patience=patience, min_delta=min_delta, best_epoch=state.best_epoch,
                       best_holdout_accuracy=state.best_accuracy, started=state.started)
    summary["line"] = describe_stop(summary)
    return summary


def split_holdout(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int
                  ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """``(train, holdout)``: a fixed-``seed`` random ``fraction`` of the examples held out.

    At least one example lands on each side; a fraction of 0 holds nothing out.
    """
    if not 0 <= fraction < 1:
        raise VggbenchError(f"--holdout must be in [0, 1), got {fraction}; 0.1 holds out a tenth of the training images")
    count = int(round(fraction * len(labels)))
    if fraction and not 1 <= count < len(labels):
        raise VggbenchError(f"--holdout {fraction:g} of {len(labels)} training images leaves one side empty; "
                            f"train on more images (--train-limit)")
    order = np.random.RandomState(seed + 7919).permutation(len(labels))
    held, kept = np.sort(order[:count]), np.sort(order[count:])
    return (images[kept], labels[kept]), (images[held], labels[held])


def time_to_accuracy(history: Sequence[Dict[str, Any]], target: float, key: str = "test_accuracy"
                     ) -> Optional[float]:
    """Training seconds (summed over epochs, evaluation excluded) until the first epoch whose
    ``key`` accuracy reaches ``target``; None when no epoch does."""
    seconds = 0.0
    for row in history:
        seconds += float(row["seconds"])
        if row.get(key) is not None and row[key] >= target:
            return seconds
    return None
