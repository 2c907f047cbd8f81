"""TrainJob: a train-export run as one checked value; run_train runs it, train_export is its keyword form.

Every user mistake fails when the job is made, before anything is written; the job resolves the
recipe exactly as train_export's keywords always did; one tiny real run goes through run_train.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from vggbench import VggbenchError, artifacts, train
from vggbench.train import ParityGate, TrainJob, run_train
from vggbench.train import run as train_run
from vggbench.train.recipes import recipe_for_model, resolve_recipe


@pytest.mark.parametrize("model, job_kwargs, message", [
    ("vgg12", {}, "unknown model 'vgg12'"),
    ("vgg11", {"recipe_name": "nope"}, "unknown recipe 'nope'; choose one of: lenet"),
    ("vgg11", {"overrides": {"lrr": 0.1}}, r"unknown recipe override\(s\) lrr; choose from input_size"),
    ("vgg11", {"overrides": {"input_size": 16}}, "--size 16 is too small"),
    ("vgg11", {"overrides": {"epochs": 0}}, "--epochs must be in 1..100000, got 0"),
    ("vgg11", {"overrides": {"optimizer": "adamw"}}, "unknown optimizer 'adamw'.*sgd, adam"),
    ("vgg11", {"overrides": {"until_plateau": True, "holdout": 0.0}}, "--until-plateau needs held-out images"),
    ("vgg11", {"test_limit": 0}, "--test-limit must be >= 1, got 0"),
    ("vgg11", {"parity": ParityGate(images=0)}, "--parity-images must be >= 1, got 0"),
    ("vgg11", {"threads": 0}, "--threads must be >= 1, got 0"),
    ("vgg11", {"name": "../x"}, "--name '../x' is not a plain folder name"),
    ("vgg11", {"kvstore": "nccl"}, "--kvstore 'nccl' is not a KVStore type vggbench runs"),
    ("vgg11", {"kvstore": "DIST_SYNC", "overrides": {"holdout": 0.1}},
     "--kvstore dist_sync: --until-plateau, --holdout and warm-up recipes run on one machine only"),
    ("vgg11", {"resume": True, "force": True}, "--resume and --force contradict each other: --resume continues "
                                               "the run in .*vgg11-96, --force starts it over; pick one"),
])
def test_each_mistake_is_one_line_when_the_job_is_made_and_nothing_is_written(tmp_path, model, job_kwargs, message):
    out = tmp_path / "runs"
    with pytest.raises(VggbenchError, match=message) as err:
        TrainJob(model, out=str(out), **job_kwargs)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"test_limit": 0}, "--test-limit must be >= 1, got 0"),
    ({"parity_images": 0}, "--parity-images must be >= 1, got 0"),
    ({"threads": 0}, "--threads must be >= 1, got 0"),
    ({"kvstore": "nccl"}, "is not a KVStore type"),
    ({"kvstore": "dist_sync", "until_plateau": True}, "run on one machine only"),
    ({"resume": True, "force": True}, "--resume and --force contradict each other"),
])
def test_train_export_refuses_the_same_mistakes_before_any_run_dir(tmp_path, data_dir, kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        train.train_export("vgg11", data_dir=str(data_dir), out=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []


def _recipe_as_train_export_resolved_it(model, recipe=None, seed=0, train_limit=None, loss="softmax_cross_entropy",
                                        until_plateau=False, patience=3, min_delta=0.002, **explicit):
    """train_export's own recipe resolution before TrainJob existed, and its default run name."""
    resolved, named = resolve_recipe(model, recipe, seed=seed, train_limit=train_limit, loss=loss,
                                     until_plateau=until_plateau, patience=patience, min_delta=min_delta, **explicit)
    name = artifacts.default_run_name(model, resolved.input_size, resolved.width_ratio) + (
        f"-{resolved.preset}" if resolved.preset != recipe_for_model(model) else "")
    return resolved, named, name


@pytest.mark.parametrize("model, keywords", [
    ("lenet", {}),
    ("alexnet", {"epochs": 1, "batch_size": 32}),
    ("vgg11_bn", {"width_ratio": 8, "epochs": 2, "train_limit": 40000, "seed": 7}),
    ("vgg16", {"recipe": "vgg-he-warmup", "lr": 0.01, "input_size": 224}),
    ("vgg11", {"recipe": "d2lzh-pytorch-vgg11"}),
    ("vgg11", {"until_plateau": True, "patience": 2, "min_delta": 0.01, "epochs": 30}),
    ("vgg13", {"optimizer": "adam", "init": "torch", "dense_units": 512, "holdout": 0.2, "warmup_epochs": 0.5}),
])
def test_the_job_resolves_the_recipe_and_run_dir_train_export_always_did(tmp_path, model, keywords):
    recipe_name = keywords.pop("recipe", None)
    expected, named, name = _recipe_as_train_export_resolved_it(model, recipe_name, **keywords)
    job = TrainJob(model, recipe_name=recipe_name, overrides=keywords, out=str(tmp_path))
    assert job.recipe == expected and job.recipe_source == named
    assert job.run_dir == tmp_path / name
    assert list(tmp_path.iterdir()) == []


def test_train_export_builds_the_job_and_hands_it_to_run_train(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_run, "run_train", lambda job, progress, log: calls.append((job, progress, log)))

    def log(line):
        return None

    train.train_export("vgg11", width_ratio=8, epochs=2, lr=None, seed=3, test_limit=64, out=str(tmp_path),
                       name="try", kvstore="LOCAL", parity_images=16, progress=False, log=log)
    expected = TrainJob("vgg11", overrides={"width_ratio": 8, "epochs": 2, "seed": 3, "loss": "softmax_cross_entropy",
                                            "until_plateau": False, "patience": 3, "min_delta": 0.002},
                        out=str(tmp_path), name="try", test_limit=64, kvstore="local", parity=ParityGate(images=16))
    assert calls == [(expected, False, log)]
    assert calls[0][0].run_dir == tmp_path / "try"


def test_the_job_is_frozen_and_normalised(tmp_path):
    job = TrainJob("lenet", overrides={"lr": None, "epochs": 1, "batch_size": 32}, out=str(tmp_path), kvstore="Local")
    assert job.overrides == (("batch_size", 32), ("epochs", 1))  # None dropped, sorted
    assert job.kvstore == "local" and not job.is_distributed
    assert job == TrainJob("lenet", overrides=(("epochs", 1), ("batch_size", 32)), out=str(tmp_path), kvstore="local")
    assert hash(job) == hash(dataclasses.replace(job))
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.resume = True  # type: ignore[misc]
    wider = dataclasses.replace(job, overrides={"width_ratio": 4})  # derived fields follow the new values
    assert wider.recipe.width_ratio == 4.0 and wider.recipe.epochs == 5 and wider.run_dir == tmp_path / "lenet-w4-96"


def test_run_train_trains_and_writes_the_jobs_run_dir(tmp_path, data_dir):
    """The tiny settings of test_plateau.py's runs, on 256 images for one epoch: a few seconds."""
    job = TrainJob("vgg11_bn", overrides={"input_size": 32, "width_ratio": 16, "dense_units": 256, "epochs": 1,
                                          "train_limit": 256},
                   out=str(tmp_path), data_dir=str(data_dir), test_limit=64, parity=ParityGate(images=16))
    said = []
    run_dir = run_train(job, progress=False, log=said.append)
    assert run_dir == job.run_dir == tmp_path / "vgg11_bn-w16-32"
    manifest = artifacts.verify_all(run_dir)
    assert manifest["recipe"] == job.recipe.asdict()
    assert manifest["recipe_source"]["name"] == "vgg" and said[0].startswith("recipe vgg:")
    assert (manifest["epochs_trained"], manifest["train_images"], manifest["test_images"]) == (1, 256, 64)
    gate = job.parity
    assert manifest["parity"]["n"] == 16 and manifest["parity"]["tolerance"] == {
        "max_abs_diff": gate.max_abs_diff, "min_top1_agreement": gate.min_top1_agreement}
    assert json.loads((run_dir / artifacts.HISTORY_FILE).read_text())["recipe"] == job.recipe.asdict()
