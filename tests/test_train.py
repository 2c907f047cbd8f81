"""vggbench train-export: a real tiny training run, resume, the manifest, and clear user errors.

The expensive part (train 2 epochs with an interruption + resume, export, parity) happens once in
the session fixture ``trained_run`` (tests/conftest.py); the error tests fail before any training.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import mxnet as mx
import pytest

from vggbench import VggbenchError, artifacts, export, train
from vggbench.cli import build_parser, main
from vggbench.data import ALL_FILES

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
    assert manifest["timestamps"]["started"] <= manifest["timestamps"]["finished"]
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


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
        train.train_export(data_dir=str(data_dir), out=str(trained_run.run_dir.parent), resume=True, **recipe)
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
    with pytest.raises(VggbenchError, match="missing.*--data-dir"):
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
    with pytest.raises(VggbenchError, match=r"loss became (nan|inf) at epoch 1 batch \d+; lower --lr \(now 1000\)"):
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
])
def test_bad_arguments_are_clear_errors_and_no_run_dir(tmp_path, data_dir, kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        train.train_export("vgg11", data_dir=str(data_dir), out=str(tmp_path), **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- devices ---------------------------------------------------------------------------------------

def test_ctx_auto_falls_back_to_cpu_and_says_so():
    contexts, note = train.resolve_contexts("auto", num_gpus=0)
    assert contexts == [mx.cpu()] and "no GPU" in note and "CPU" in note


def test_ctx_auto_picks_a_gpu_when_there_is_one():
    contexts, _ = train.resolve_contexts("auto", num_gpus=2)
    assert contexts == [mx.gpu(0)]


def test_ctx_lists_several_gpus():
    contexts, _ = train.resolve_contexts("gpu:0,gpu:1", num_gpus=2)
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
        train.resolve_contexts(spec, num_gpus=gpus)


def test_the_recipe_defaults_follow_the_lesson():
    recipe = train.Recipe("vgg11")
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.init, recipe.input_size, recipe.loss) == \
        ("sgd", 0.05, 64, "xavier", 96, "softmax_cross_entropy")
    args = build_parser().parse_args(["train-export", "vgg11"])
    assert (args.lr, args.batch_size, args.size, args.ctx, args.out) == (0.05, 64, 96, "auto", "runs")


def test_export_constants_name_the_run_files():
    assert set(train.RUN_FILES) == {"model.onnx", "model-symbol.json", "model-0000.params", "history.json",
                                    "training.png"}
    assert export.ONNX_FILE in train.RUN_FILES
