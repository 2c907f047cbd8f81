"""Training to a plateau of held-out accuracy: the rule, the split, and real short trainings."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from vggbench import train
from vggbench.errors import VggbenchError
from vggbench.train import plateau
from vggbench.train import run as train_run

# A narrow batch-norm VGG-11 at 32 px on the 2,000 real training images of tests/data: it leaves
# chance in its first epoch (so a plateau can be declared) and trains in seconds.
MODEL = "vgg11_bn"
QUICK = dict(input_size=32, width_ratio=16, dense_units=256, train_limit=2000, test_limit=200, parity_images=32,
             progress=False)


@pytest.mark.parametrize("accuracies, patience, delta, best_epoch, since, reached", [
    ([], 2, 0.0, 0, 0, False),
    ([0.5, 0.6, 0.7], 2, 0.0, 3, 0, False),
    ([0.5, 0.7, 0.69, 0.7], 2, 0.0, 2, 2, True),
    ([0.5, 0.7, 0.705, 0.709], 2, 0.01, 2, 2, True),  # creeping gains below the delta are a plateau
    ([0.5, 0.7, 0.72, 0.70], 2, 0.01, 3, 1, False),
])
def test_plateau_state(accuracies, patience, delta, best_epoch, since, reached):
    state = plateau.plateau_state(accuracies, patience, delta)
    assert (state.best_epoch, state.epochs_since_best, state.reached) == (best_epoch, since, reached)


def test_stop_reasons():
    assert plateau.stop_reason([0.5, 0.5, 0.5], 3, 10, True, 2, 0.0) == plateau.STOP_PLATEAU
    assert plateau.stop_reason([0.5, 0.6], 2, 2, True, 2, 0.0) == plateau.STOP_MAX_EPOCHS
    assert plateau.stop_reason([0.5, 0.5, 0.5], 3, 5, False, 1, 0.0) is None  # fixed epochs ignore plateaus
    assert plateau.stop_reason([], 5, 5, False, 1, 0.0) == plateau.STOP_EPOCHS
    with pytest.raises(VggbenchError, match="--patience"):
        plateau.plateau_state([0.1], 0, 0.0)


def test_holdout_split_is_disjoint_fixed_and_sized():
    images, labels = np.arange(100).reshape(100, 1, 1), np.arange(100)
    (train_x, train_y), (held_x, held_y) = plateau.split_holdout(images, labels, 0.1, seed=3)
    assert len(held_y) == 10 and len(train_y) == 90 and not set(held_y) & set(train_y)
    again = plateau.split_holdout(images, labels, 0.1, seed=3)[1][1]
    assert list(again) == list(held_y) and list(plateau.split_holdout(images, labels, 0.1, seed=4)[1][1]) != list(held_y)
    assert len(plateau.split_holdout(images, labels, 0.0, seed=3)[1][1]) == 0
    with pytest.raises(VggbenchError, match="--holdout"):
        plateau.split_holdout(images[:3], labels[:3], 0.1, seed=0)


def test_time_to_accuracy_sums_training_seconds_until_reached():
    history = [{"seconds": 10, "test_accuracy": 0.5}, {"seconds": 12, "test_accuracy": 0.8},
               {"seconds": 11, "test_accuracy": 0.85}]
    assert plateau.time_to_accuracy(history, 0.8) == 22
    assert plateau.time_to_accuracy(history, 0.9) is None


def test_training_stops_at_a_plateau_and_records_why(tmp_path, data_dir):
    said = []
    run_dir = train.train_export(MODEL, until_plateau=True, patience=1, min_delta=0.5, epochs=4,
                                 data_dir=str(data_dir), out=str(tmp_path), log=said.append, **QUICK)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    history = json.loads((run_dir / "history.json").read_text())
    # it leaves chance in epoch 1, and no epoch can beat that by 0.5: a plateau after epoch 2, not 4
    assert manifest["epochs_trained"] == 2 and len(history["epochs"]) == 2
    assert manifest["stop"]["reason"] == "plateau" and manifest["stop"]["best_epoch"] == 1
    assert history["stop"] == manifest["stop"] and "stopped at a plateau after 2 epochs" in manifest["stop"]["line"]
    assert manifest["recipe"]["holdout"] == 0.1 and manifest["recipe"]["until_plateau"]
    assert manifest["recipe_source"]["name"] == "vgg" and said[0].startswith("recipe vgg:")
    for row in history["epochs"]:
        assert row["holdout_images"] == 200 and row["train_images"] == 1800 and 0 <= row["holdout_accuracy"] <= 1
    assert manifest["stop"]["best_holdout_accuracy"] == history["epochs"][0]["holdout_accuracy"]


def test_training_without_a_plateau_stops_at_the_maximum(tmp_path, data_dir):
    run_dir = train.train_export(MODEL, until_plateau=True, patience=3, min_delta=0.0, epochs=2,
                                 data_dir=str(data_dir), out=str(tmp_path), log=lambda line: None, **QUICK)
    stop = json.loads((run_dir / "manifest.json").read_text())["stop"]
    assert (stop["reason"], stop["epochs_trained"], stop["max_epochs"]) == ("max_epochs", 2, 2)


def test_an_interrupted_plateau_run_resumes_and_decides_as_an_unbroken_one(tmp_path, data_dir, monkeypatch):
    options = dict(until_plateau=True, patience=1, min_delta=0.5, epochs=4, data_dir=str(data_dir),
                   log=lambda line: None, **QUICK)
    unbroken = train.train_export(MODEL, out=str(tmp_path / "a"), **options)
    real_train_epoch = train_run.train_epoch

    def interrupted_in_epoch_2(*args, **kwargs):
        if inspect.signature(real_train_epoch).bind(*args, **kwargs).arguments["epoch"] == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(train_run, "train_epoch", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.train_export(MODEL, out=str(tmp_path / "b"), **options)
    monkeypatch.setattr(train_run, "train_epoch", real_train_epoch)
    resumed = train.train_export(MODEL, out=str(tmp_path / "b"), resume=True, **options)
    first, second = (json.loads((d / "history.json").read_text()) for d in (unbroken, resumed))
    assert first["stop"]["reason"] == second["stop"]["reason"] == "plateau"
    assert len(first["epochs"]) == len(second["epochs"]) == 2
    assert second["epochs"][0]["holdout_accuracy"] == first["epochs"][0]["holdout_accuracy"]


def test_plateau_needs_a_holdout_and_resume_keeps_the_same_one(tmp_path, data_dir):
    with pytest.raises(VggbenchError, match="--until-plateau needs held-out images"):
        train.train_export(MODEL, until_plateau=True, holdout=0.0, data_dir=str(data_dir), out=str(tmp_path), **QUICK)
    run_dir = train.train_export(MODEL, holdout=0.1, epochs=1, data_dir=str(data_dir), out=str(tmp_path),
                                 log=lambda line: None, **QUICK)
    (run_dir / "manifest.json").unlink()  # as if interrupted during the export
    with pytest.raises(VggbenchError, match="holdout 0.1, this run asks for 0.2"):
        train.train_export(MODEL, holdout=0.2, epochs=2, resume=True, data_dir=str(data_dir), out=str(tmp_path),
                           **QUICK)


def test_a_model_at_chance_has_not_plateaued_it_has_not_started():
    at_chance = [0.10, 0.12, 0.09, 0.11, 0.10]
    assert not plateau.plateau_state(at_chance, 2, 0.002).reached
    assert plateau.stop_reason(at_chance, 5, 5, True, 2, 0.002) == plateau.STOP_MAX_EPOCHS
    line = plateau.stop_summary([{"holdout_accuracy": a} for a in at_chance], "max_epochs", True, 2, 0.002, 5)["line"]
    assert "it never left chance" in line
    assert plateau.plateau_state([0.1, 0.3, 0.3, 0.3], 2, 0.002).reached  # started, then flat


# AlexNet with its lesson's rate (lr 0.01) in the default exercises run on 2026-12-05: its held-out
# accuracy wandered up to 31% while its training loss stayed within 1% of ln 10 = 2.303.
ALEXNET_HOLDOUT = [0.118, 0.183, 0.314, 0.301, 0.229, 0.206]
ALEXNET_LOSSES = [2.3016, 2.3000, 2.2980, 2.2950, 2.2898, 2.2796]


def test_a_loss_still_at_chance_is_not_a_plateau_even_when_accuracy_wandered_above_20_pct():
    assert plateau.plateau_state(ALEXNET_HOLDOUT, 3, 0.002).reached  # accuracy alone would stop it
    state = plateau.plateau_state(ALEXNET_HOLDOUT, 3, 0.002, ALEXNET_LOSSES, classes=10)
    assert not state.reached and not state.started and state.epochs_since_best == 3
    assert plateau.stop_reason(ALEXNET_HOLDOUT, 6, 15, True, 3, 0.002, ALEXNET_LOSSES, 10) is None
    history = [{"holdout_accuracy": a, "train_loss": loss} for a, loss in zip(ALEXNET_HOLDOUT, ALEXNET_LOSSES)]
    summary = plateau.stop_summary(history, plateau.STOP_MAX_EPOCHS, True, 3, 0.002, 6, classes=10)
    assert summary["started"] is False and "it never left chance" in summary["line"]


def test_once_the_loss_falls_below_chance_a_flat_accuracy_is_a_plateau():
    losses = ALEXNET_LOSSES[:3] + [1.9, 1.2, 1.1]  # 0.9 x ln 10 = 2.07: started by epoch 4
    assert plateau.has_started(0.314, losses, 10) and not plateau.has_started(0.314, ALEXNET_LOSSES, 10)
    assert plateau.plateau_state(ALEXNET_HOLDOUT, 3, 0.002, losses, 10).reached
    assert plateau.stop_reason(ALEXNET_HOLDOUT, 6, 15, True, 3, 0.002, losses, 10) == plateau.STOP_PLATEAU
    assert plateau.has_started(0.5, [None, float("nan")], 10)  # no usable loss: accuracy decides
    assert not plateau.has_started(0.15, [0.3], 10)  # below 20%: not started, whatever the loss
