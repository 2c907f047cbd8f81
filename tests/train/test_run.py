"""vggbench train-export: a real tiny training run, resume, the manifest, the recipe, several
devices, and clear user errors.

The expensive part (train 2 epochs with an interruption + resume, export, parity) happens once in
the session fixture ``trained_run`` (tests/conftest.py); the error tests fail before any training.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY_RECIPE, TINY_RUN_NAME

from vggbench import VggbenchError, artifacts, data, train
from vggbench.cli import main
from vggbench.data import ALL_FILES
from vggbench.export import onnx as export
from vggbench.platform.mxnet import import_mxnet, mxnet_threads

mx = import_mxnet()

CHANCE = 0.1


# --- the real run ----------------------------------------------------------------------------------

def test_loss_goes_down_and_accuracy_beats_chance_on_held_out_images(trained_run):
    history = json.loads((trained_run.run_dir / train.HISTORY_FILE).read_text())
    epochs = history["epochs"]
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert epochs[1]["train_loss"] < epochs[0]["train_loss"]
    steps = history["steps"]
    assert steps[-1]["loss"] < steps[0]["loss"]
    # Test images are never trained on: 256 held-out images, chance is 0.1.
    assert epochs[-1]["test_images"] == 256
    assert epochs[-1]["test_accuracy"] > 2 * CHANCE


def test_interrupted_run_keeps_its_checkpoint_but_writes_no_manifest(trained_run):
    interrupted = trained_run.interrupted
    assert artifacts.MANIFEST_NAME not in interrupted["files"]
    assert not any(name.startswith(".") for name in interrupted["files"]), "temporary files left behind"
    assert interrupted["files"] == [train.CHECKPOINT_DIR]
    assert interrupted["checkpoint"]["epoch"] == 1


def test_resume_continues_from_the_last_checkpoint(trained_run):
    before = trained_run.interrupted["checkpoint"]
    history = json.loads((trained_run.run_dir / train.HISTORY_FILE).read_text())
    # Epoch 1 is the checkpoint's, not retrained; epoch 2 was trained after resuming.
    assert history["epochs"][0] == before["history"][0]
    assert len(history["epochs"]) == 2
    after = train.read_checkpoint(trained_run.run_dir)
    assert after["epoch"] == 2
    checkpoint_files = sorted(p.name for p in (trained_run.run_dir / train.CHECKPOINT_DIR).iterdir())
    assert checkpoint_files == ["epoch-0002.params", "epoch-0002.states", train.CHECKPOINT_INDEX]


def test_manifest_records_the_run_and_its_sha256s_match_the_files(trained_run):
    run_dir = trained_run.run_dir
    manifest = artifacts.verify_all(run_dir)  # raises on any sha256 mismatch
    for name, digest in manifest["files"].items():
        assert artifacts.sha256_file(run_dir / name) == digest
    assert set(manifest["files"]) == set(train.RUN_FILES)
    recipe = trained_run.recipe
    assert manifest["model"] == "vgg11_bn" and manifest["config"] == "A+BN"
    assert manifest["input_size"] == 96 and manifest["width_ratio"] == 32
    assert manifest["classes"] == 10 and len(manifest["class_names"]) == 10
    assert {k: manifest["recipe"][k] for k in ("epochs", "lr", "batch_size", "seed")} == \
        {k: recipe[k] for k in ("epochs", "lr", "batch_size", "seed")}
    assert 0 <= manifest["test_accuracy"] <= 1 and manifest["test_images"] == 256
    assert manifest["parity"]["n"] == 256
    assert manifest["parity"]["max_abs_diff"] <= manifest["parity"]["tolerance"]["max_abs_diff"]
    assert manifest["parity"]["top1_agreement"] >= manifest["parity"]["tolerance"]["min_top1_agreement"]
    assert {"mxnet", "onnx", "onnxruntime", "numpy", "python"} <= set(manifest["versions"])
    assert manifest["device"]["contexts"] == ["cpu(0)"]
    assert manifest["threads"]["mxnet"] == mxnet_threads() >= 1 and manifest["threads"]["onnxruntime"] >= 1
    assert manifest["timestamps"]["started"] <= manifest["timestamps"]["finished"]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.slow
def test_a_resumed_run_ends_where_an_uninterrupted_one_does(trained_run, data_dir, tmp_path):
    """The session's run was interrupted in epoch 2 and resumed in a new call; train the same
    recipe straight through and compare the exported weights and the history."""
    straight = train.train_export(data_dir=str(data_dir), out=str(tmp_path), progress=False, log=lambda line: None,
                                  **TINY_RECIPE)
    resumed = trained_run.run_dir
    weights = [mx.nd.load(str(run_dir / export.PARAMS_FILE)) for run_dir in (straight, resumed)]
    assert len(weights[0]) == len(weights[1]) > 0
    for (name_a, a), (name_b, b) in zip(*(w.items() for w in weights)):  # names carry per-process counters
        assert name_a.rsplit("_", 1)[-1] == name_b.rsplit("_", 1)[-1] and a.shape == b.shape
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-4, atol=1e-6, err_msg=name_a)
    histories = [json.loads((run_dir / train.HISTORY_FILE).read_text()) for run_dir in (straight, resumed)]
    assert len(histories[0]["epochs"]) == len(histories[1]["epochs"]) == 2
    for row_a, row_b in zip(histories[0]["epochs"], histories[1]["epochs"]):
        for key in ("epoch", "train_images", "test_images", "train_accuracy", "test_accuracy"):
            assert row_a[key] == row_b[key], key
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-5)
    assert [s["loss"] for s in histories[0]["steps"]] == pytest.approx([s["loss"] for s in histories[1]["steps"]],
                                                                       rel=1e-5)


def test_training_curves_are_a_png(trained_run):
    assert (trained_run.run_dir / train.CURVES_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_finished_run_is_not_overwritten_without_force(trained_run, data_dir):
    run_dir = trained_run.run_dir
    before = artifacts.manifest_path(run_dir).read_bytes()
    with pytest.raises(VggbenchError, match="already holds a finished run.*--force"):
        train.train_export(data_dir=str(data_dir), out=str(run_dir.parent), **trained_run.recipe)
    assert artifacts.manifest_path(run_dir).read_bytes() == before


@pytest.mark.parametrize("change, flag", [({"width_ratio": 16}, "--width-ratio"), ({"lr": 0.1}, "--lr"),
                                          ({"epochs": 1}, "at least 2")])
def test_resume_refuses_a_different_recipe(trained_run, data_dir, change, flag):
    recipe = {**trained_run.recipe, **change}
    with pytest.raises(VggbenchError, match=flag):
        train.train_export(data_dir=str(data_dir), out=str(trained_run.run_dir.parent), name=trained_run.run_dir.name,
                           resume=True, **recipe)
    artifacts.verify_all(trained_run.run_dir)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, data_dir):
    with pytest.raises(VggbenchError, match="no checkpoint.*without --resume"):
        train.train_export("vgg11", width_ratio=32, data_dir=str(data_dir), out=str(tmp_path), resume=True)
    assert list(tmp_path.iterdir()) == []


# --- user errors leave no run dir behind -----------------------------------------------------------

def _cli(capsys, *argv) -> tuple:
    code = main(["train-export", *argv])
    captured = capsys.readouterr()
    return code, captured.err.strip()


def test_unknown_model_is_one_clear_line_and_no_run_dir(tmp_path, capsys):
    code, err = _cli(capsys, "vgg12", "--out", str(tmp_path))
    assert code == 1
    assert err.count("\n") == 0 and "unknown model 'vgg12'" in err and "vgg11" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_data_is_a_clear_error_and_no_run_dir(tmp_path):
    empty, out = tmp_path / "no-data", tmp_path / "runs"
    with pytest.raises(VggbenchError, match=r"--data-dir .*(missing|does not exist)"):
        train.train_export("vgg11", width_ratio=32, epochs=1, data_dir=str(empty), out=str(out))
    assert not out.exists()


def _copy_data(data_dir: Path, target: Path) -> Path:
    target.mkdir()
    for name in ALL_FILES:
        shutil.copy(data_dir / name, target / name)
    return target


@pytest.mark.parametrize("damage, message", [
    ("truncate_gzip", "not a readable gzip file"),
    ("truncate_idx", "truncated or corrupt"),
])
def test_corrupt_data_is_a_clear_error_and_no_run_dir(tmp_path, data_dir, damage, message):
    copy, out = _copy_data(data_dir, tmp_path / "data"), tmp_path / "runs"
    target = copy / "t10k-images-idx3-ubyte.gz"
    raw = target.read_bytes()
    if damage == "truncate_gzip":
        target.write_bytes(raw[: len(raw) // 2])
    else:
        target.write_bytes(gzip.compress(gzip.decompress(raw)[:-1000], compresslevel=1))
    with pytest.raises(VggbenchError, match=message):
        train.train_export("vgg11", width_ratio=32, epochs=1, data_dir=str(copy), out=str(out))
    assert not out.exists()


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="this machine has a GPU")
def test_asking_for_a_gpu_without_one_is_a_clear_error_and_no_run_dir(tmp_path, capsys, data_dir):
    code, err = _cli(capsys, "vgg11", "--ctx", "gpu", "--out", str(tmp_path), "--data-dir", str(data_dir))
    assert code == 1 and "no GPU" in err and "--ctx cpu" in err and err.count("\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_loss_stops_the_run_with_a_clear_message(tmp_path, data_dir):
    # the loss guard (per batch) or the weights guard (per epoch) stops it, whichever sees it first
    stopped = r"(loss became (nan|inf) at epoch 1 batch \d+|weights became nan/inf at epoch 1 \(\w+\))"
    with pytest.raises(VggbenchError, match=stopped + r"; lower --lr \(now 1000\)"):
        train.train_export("vgg11", width_ratio=32, epochs=1, lr=1000, train_limit=256, test_limit=64,
                           data_dir=str(data_dir), out=str(tmp_path), progress=False)
    assert list(tmp_path.iterdir()) == [], "a run that failed before its first checkpoint leaves nothing"


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 16}, "too small"),
    ({"width_ratio": 0}, "width-ratio"),
    ({"epochs": 0}, "--epochs"),
    ({"lr": float("nan")}, "--lr"),
    ({"seed": -1}, "--seed"),
    ({"ctx": "tpu"}, "--ctx"),
    ({"optimizer": "adamw"}, "unknown optimizer 'adamw'.*sgd, adam"),
    ({"init": "zeros"}, "unknown init 'zeros'.*xavier"),
    ({"loss": "hinge"}, "unknown loss 'hinge'.*softmax_cross_entropy"),
])
def test_bad_arguments_are_clear_errors_and_no_run_dir(tmp_path, data_dir, kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        train.train_export("vgg11", data_dir=str(data_dir), out=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- devices ---------------------------------------------------------------------------------------

def test_ctx_auto_falls_back_to_cpu_and_says_so():
    contexts, note = train.resolve_contexts("auto", num_gpus=0)
    assert contexts == [mx.cpu()] and "training on CPU" in note


def test_ctx_auto_picks_a_gpu_when_there_is_one():
    contexts, _ = train.resolve_contexts("auto", num_gpus=2, inventory=[])
    assert contexts == [mx.gpu(0)]


def test_ctx_on_a_gpu_this_mxnet_cannot_use():
    """A GPU that this mxnet cannot compute on (here: the CPU build; on a GPU build, Hopper and
    newer, see tests/platform/test_gpu.py): auto trains on the CPU and says why; an explicit GPU is a
    one-line error naming the cause."""
    from vggbench.platform.gpu import GpuInfo

    hopper = [GpuInfo(index=0, name="NVIDIA H200", compute_capability="9.0", driver_version="580.65",
                      memory_total_mib=143771)]
    if mx.runtime.Features().is_enabled("CUDA"):
        pytest.skip("this mxnet is a GPU build; tests/platform/test_gpu.py covers the Hopper decision")
    contexts, note = train.resolve_contexts("auto", num_gpus=1, inventory=hopper)
    assert contexts == [mx.cpu()] and "training on CPU: this mxnet is the CPU build" in note
    with pytest.raises(VggbenchError, match="CPU build"):
        train.resolve_contexts("gpu", num_gpus=1, inventory=hopper)


def test_ctx_lists_several_cpus_for_the_split_path():
    contexts, note = train.resolve_contexts("cpu:0,cpu:1")
    assert contexts == [mx.cpu(0), mx.cpu(1)] and "cpu(0), cpu(1)" in note
    with pytest.raises(VggbenchError, match="distinct cpu:N"):
        train.resolve_contexts("cpu:0,cpu:0")


def test_ctx_lists_several_gpus():
    contexts, _ = train.resolve_contexts("gpu:0,gpu:1", num_gpus=2, inventory=[])
    assert contexts == [mx.gpu(0), mx.gpu(1)]


@pytest.mark.parametrize("spec, gpus, message", [
    ("gpu", 0, "sees no GPU"),
    ("gpu:0,gpu:1", 0, "sees no GPU"),
    ("gpu:2", 2, "no gpu:2"),
    ("gpu:0,gpu:0", 2, "twice"),
    ("cuda", 1, "cannot read"),
])
def test_ctx_errors(spec, gpus, message):
    with pytest.raises(VggbenchError, match=message):
        train.resolve_contexts(spec, num_gpus=gpus, inventory=[])


def _lenet_batch(data_dir, batch_size: int = 16):
    images, labels = data.load_split(str(data_dir), True, batch_size, seed=0)
    return [(mx.nd.array(data.preprocess(images, 32)), mx.nd.array(labels))]


def test_a_batch_split_over_two_contexts_gives_the_single_context_update(data_dir):
    """cpu(0) + cpu(1): each gets half the batch, gradients are summed, the update is one device's.

    LeNet has neither dropout nor batch norm, whose per-device randomness/statistics would differ.
    """
    recipe = train.Recipe("lenet", input_size=32, batch_size=16, lr=0.5, seed=3)
    batch = _lenet_batch(data_dir)
    before, after, stats = {}, {}, {}
    for contexts in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        key = len(contexts)
        net = train.build_network(recipe, contexts)
        params = list(net.collect_params().values())
        before[key] = [p.data(contexts[0]).asnumpy() for p in params]
        stats[key] = train.train_epoch(net, train.build_trainer(net, recipe), recipe.make_loss(), batch, contexts,
                                       1, 1, recipe.lr, progress=False)
        after[key] = [[p.data(ctx).asnumpy() for ctx in contexts] for p in params]
    for start_one, start_two in zip(before[1], before[2]):
        np.testing.assert_array_equal(start_one, start_two)  # same seed, same initial weights
    moved = 0
    for start, (one,), (two_on_cpu0, two_on_cpu1) in zip(before[1], after[1], after[2]):
        np.testing.assert_array_equal(two_on_cpu0, two_on_cpu1)  # the devices stay in sync
        np.testing.assert_allclose(two_on_cpu0, one, rtol=1e-5, atol=1e-6)
        moved += not np.allclose(one, start)
    assert moved == len(before[1])  # every parameter was updated
    assert stats[2]["train_loss"] == pytest.approx(stats[1]["train_loss"], rel=1e-5)
    assert stats[2]["train_images"] == stats[1]["train_images"] == 16


def _one_step(recipe: "train.Recipe"):
    """One real step of ``build_trainer`` on a Dense layer: weight before, its gradient, weight after."""
    autograd, gluon = mx.autograd, mx.gluon

    layer = gluon.nn.Dense(3, in_units=4)
    layer.initialize(mx.init.Uniform(0.5))
    trainer = train.build_trainer(layer, recipe)
    x = mx.nd.array(np.arange(8, dtype=np.float32).reshape(2, 4) / 8)
    with autograd.record():
        loss = recipe.make_loss()(layer(x), mx.nd.array([0, 2]))
    loss.backward()
    before, grad = layer.weight.data().asnumpy(), layer.weight.grad().asnumpy()
    trainer.step(2)
    return before, grad, layer.weight.data().asnumpy()


def test_the_recipe_builds_the_optimizer_it_names():
    before, grad, after = _one_step(train.Recipe("vgg11", lr=0.1, optimizer="sgd"))
    np.testing.assert_allclose(after, before - 0.1 * grad / 2, rtol=1e-5, atol=1e-7)  # plain SGD, mean over 2
    before, grad, after = _one_step(train.Recipe("vgg11", lr=0.1, optimizer="adam"))
    np.testing.assert_allclose(after, before - 0.1 * np.sign(grad), rtol=1e-3, atol=1e-5)  # Adam's first step


def test_the_recipe_initializes_with_the_initializer_it_names():
    fan = 4096  # the head's second Dense layer, 4096 x 4096: (fan_in + fan_out) / 2
    weights = {}
    for init in train.INITIALIZERS:
        net = train.build_network(train.Recipe("vgg11", width_ratio=32, init=init), [mx.cpu()])
        dense = [p for p in net.collect_params().values() if len(p.shape) == 2 and p.shape[1] == fan][0]
        weights[init] = dense.data().asnumpy()
    xavier, msra = weights["xavier"], weights["msra"]
    assert np.abs(xavier).max() <= math.sqrt(3 / fan)  # Glorot uniform: bounded
    assert xavier.std() == pytest.approx(math.sqrt(1 / fan), rel=0.02)
    assert msra.std() == pytest.approx(math.sqrt(2 / (1 + 0.25 ** 2) / fan), rel=0.02)  # He, PReLU slope 0.25
    assert np.abs(msra).max() > math.sqrt(3 / fan)  # Gaussian tails


def test_the_recipe_builds_the_loss_it_names():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    labels = np.array([0, 2])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = train.Recipe("vgg11").make_loss()(mx.nd.array(logits), mx.nd.array(labels)).asnumpy()
    np.testing.assert_allclose(loss, -log_softmax[np.arange(2), labels], rtol=1e-4)


def test_run_names_carry_the_width_ratio_unless_it_is_one(trained_run):
    assert trained_run.run_dir.name == TINY_RUN_NAME == "vgg11_bn-w32-96"
    assert artifacts.default_run_name("vgg11", 96) == artifacts.default_run_name("vgg11", 96, 1.0) == "vgg11-96"
    assert artifacts.default_run_name("vgg11", 224, 8) == "vgg11-w8-224"
    assert artifacts.default_run_name("vgg11", 96, 2.5) == "vgg11-w2.5-96"
