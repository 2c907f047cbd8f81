"""Deployment variants (vggbench/export/variants.py): real ONNX Runtime, real Fashion-MNIST, a real trained run.

One optimize run over a copy of the session's tiny trained run dir (``trained_run_dir``) serves most
tests; it calibrates on 64 training images and measures on 256 test images to stay fast.
"""

from __future__ import annotations

import shutil
import traceback
import types

import numpy as np
import pytest

from vggbench import artifacts, data, metrics, models
from vggbench.artifacts.layout import ONNX_VARIANT_FILES
from vggbench.cli import main
from vggbench.errors import VggbenchError
from vggbench.export import variants as export_variants
from vggbench.runtimes import BackendUnavailable, load_runtime
from vggbench.runtimes.ort_runtime import make_session

CALIB_IMAGES = 64
ACCURACY_LIMIT = 256
ENTRY_KEYS = {"file", "sha256", "size_bytes", "for", "test_accuracy", "n_test", "fp32_test_accuracy",
              "accuracy_drop_points", "max_accuracy_drop_points", "flagged", "top1_agreement", "max_abs_diff",
              "measured_with", "source", "build", "build_seconds", "created"}
CALIBRATION_KEYS = {"n_images", "split", "seed", "method", "per_channel", "batch_size"}


@pytest.fixture(scope="module")
def optimized(trained_run_dir, data_dir, tmp_path_factory):
    """A copy of the trained run dir after ``optimize_run_dir`` (all three variants): the
    ``train-export --optimize`` pipeline. Also every ``data.load_fashion_mnist`` call made
    meanwhile: (train flag, the names of the functions on the stack)."""
    run_dir = tmp_path_factory.mktemp("optimize") / trained_run_dir.name
    shutil.copytree(trained_run_dir, run_dir)
    calls = []
    real_load = data.load_fashion_mnist

    def spy(data_dir=None, train=True):
        calls.append((train, {frame.name for frame in traceback.extract_stack()}))
        return real_load(data_dir, train=train)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_fashion_mnist", spy)
        variants = export_variants.optimize_run_dir(run_dir, calib_images=CALIB_IMAGES, data_dir=str(data_dir),
                                             accuracy_limit=ACCURACY_LIMIT, progress=False, log=lambda line: None)
    return types.SimpleNamespace(run_dir=run_dir, variants=variants, calls=calls)


def test_every_variant_is_written_hashed_and_described(optimized):
    manifest = artifacts.read_manifest(optimized.run_dir)
    assert set(optimized.variants) == {"opt", "int8", "fp16"} == set(manifest["variants"])
    for precision, entry in manifest["variants"].items():
        name = ONNX_VARIANT_FILES[precision]
        path = optimized.run_dir / name
        assert ENTRY_KEYS <= set(entry), f"{precision}: missing {ENTRY_KEYS - set(entry)}"
        assert entry["file"] == name
        assert entry["sha256"] == manifest["files"][name] == artifacts.sha256_file(path)
        assert entry["size_bytes"] == path.stat().st_size > 0
        assert entry["n_test"] == ACCURACY_LIMIT
        assert 0.0 <= entry["test_accuracy"] <= 1.0 and 0.0 <= entry["top1_agreement"] <= 1.0
        assert entry["accuracy_drop_points"] == pytest.approx(
            100 * (entry["fp32_test_accuracy"] - entry["test_accuracy"]), abs=1e-3)
        assert entry["max_accuracy_drop_points"] == export_variants.DEFAULT_MAX_ACCURACY_DROP_POINTS
        assert entry["flagged"] is (entry["accuracy_drop_points"] > entry["max_accuracy_drop_points"])
        assert entry["source"] == {"file": "model.onnx", "sha256": manifest["files"]["model.onnx"]}
        assert entry["accuracy_threads"] >= 1
    assert {p: e["for"] for p, e in manifest["variants"].items()} == {"opt": "ort-cpu", "int8": "ort-cpu",
                                                                      "fp16": "ort-cuda"}
    calibration = manifest["variants"]["int8"]["calibration"]
    assert CALIBRATION_KEYS <= set(calibration)
    assert calibration["split"] == "train" and calibration["n_images"] == CALIB_IMAGES
    assert calibration["method"] == export_variants.DEFAULT_CALIB_METHOD and calibration["per_channel"] is True
    assert manifest["variants"]["int8"]["build"]["format"] == "QDQ"
    artifacts.verify_all(optimized.run_dir, manifest)  # every listed file, old and new, still matches


def test_variants_track_the_fp32_model(optimized):
    variants = optimized.variants
    # The trained model beats chance clearly, so agreement numbers mean something.
    assert variants["opt"]["fp32_test_accuracy"] > 0.2
    assert variants["opt"]["top1_agreement"] == 1.0 and variants["opt"]["max_abs_diff"] < 1e-3
    assert variants["fp16"]["top1_agreement"] >= 0.98 and variants["fp16"]["max_abs_diff"] < 0.1
    assert variants["int8"]["top1_agreement"] >= 0.9
    assert variants["int8"]["size_bytes"] < 0.3 * variants["opt"]["size_bytes"]
    assert variants["fp16"]["size_bytes"] < 0.55 * variants["opt"]["size_bytes"]
    assert not variants["opt"]["flagged"]


@pytest.mark.parametrize("precision", ["fp32", "opt", "int8"])
def test_cpu_variants_load_and_run_in_the_ort_runner(optimized, data_dir, precision):
    images, labels = data.load_fashion_mnist(str(data_dir), train=False)
    batch = data.preprocess(images[:8], 96)
    with load_runtime("ort-cpu", optimized.run_dir, precision=precision) as runtime:
        logits = runtime.run(batch)
        assert runtime.info()["model_file"] == ONNX_VARIANT_FILES[precision]
    assert logits.shape == (8, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()


def test_fp16_variant_is_for_gpus_but_runs_for_its_accuracy(optimized, data_dir):
    with pytest.raises(BackendUnavailable, match="GPU"):
        load_runtime("ort-cpu", optimized.run_dir, precision="fp16")
    manifest = artifacts.read_manifest(optimized.run_dir)
    path = artifacts.verify_file(optimized.run_dir, manifest, ONNX_VARIANT_FILES["fp16"])
    session = make_session(path)
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    logits = session.run(None, {session.get_inputs()[0].name: data.preprocess(images[:4], 96)})[0]
    assert logits.shape == (4, 10) and logits.dtype == np.float32


def test_calibration_reads_the_training_split_only(optimized):
    calibration_reads = [train for train, stack in optimized.calls if "calibration_batches" in stack]
    assert calibration_reads == [True]
    test_reads = [stack for train, stack in optimized.calls if not train]
    assert len(test_reads) == 1 and "optimize_run_dir" in test_reads[0]  # the accuracy pass, once


def test_calibration_works_with_unreadable_test_files(data_dir, tmp_path):
    """Calibration alone, on a data dir whose test files are garbage: it never opens them."""
    for train_file in data.FILES[True]:
        (tmp_path / train_file).symlink_to(data_dir / train_file)
    for test_file in data.FILES[False]:
        (tmp_path / test_file).write_bytes(b"not the test split")
    batches = export_variants.calibration_batches(48, n_images=40, seed=3, data_dir=str(tmp_path), batch_size=16)
    assert [b.shape for b in batches] == [(16, 1, 48, 48), (16, 1, 48, 48), (8, 1, 48, 48)]
    train_images, train_labels = data.load_fashion_mnist(str(data_dir), train=True)
    expected, _ = data.subset(train_images, train_labels, 40, seed=3)
    np.testing.assert_array_equal(np.concatenate(batches), data.preprocess(expected, 48))


def test_a_corrupt_variant_is_refused_by_its_sha256(optimized, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(optimized.run_dir, run_dir)
    path = run_dir / ONNX_VARIANT_FILES["int8"]
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    with pytest.raises(VggbenchError, match=r"model\.int8\.onnx: sha256 .* does not match"):
        load_runtime("ort-cpu", run_dir, precision="int8")
    load_runtime("ort-cpu", run_dir, precision="opt").close()  # the others are still fine


def test_a_variant_that_loses_accuracy_is_flagged_by_the_cli(optimized, data_dir, tmp_path, monkeypatch, capsys):
    """A real but broken fp16 file (last layer negated: argmax becomes argmin) through the CLI."""
    import onnx
    from onnx import numpy_helper

    run_dir = tmp_path / "run"
    shutil.copytree(optimized.run_dir, run_dir)
    real_convert = export_variants.convert_fp16

    def broken_convert(src, dst):
        settings = real_convert(src, dst)
        model = onnx.load(str(dst))
        last = [node for node in model.graph.node if node.op_type == "Gemm"][-1]
        for init in model.graph.initializer:
            if init.name in last.input[1:]:
                init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
        onnx.save(model, str(dst))
        return settings

    monkeypatch.setattr(export_variants, "convert_fp16", broken_convert)
    code = main(["optimize", str(run_dir), "--fp16", "--accuracy-limit", "64", "--max-accuracy-drop", "2",
                 "--data-dir", str(data_dir), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0  # flagged is a finding, not a failure
    entry = artifacts.read_manifest(run_dir)["variants"]["fp16"]
    assert entry["flagged"] is True and entry["max_accuracy_drop_points"] == 2.0
    assert entry["accuracy_drop_points"] > 2.0 and entry["top1_agreement"] < 0.5
    assert "warning: fp16 variant model.fp16.onnx loses" in err
    fp16_row = [line for line in out.splitlines() if line.startswith("fp16")]
    assert fp16_row and "FLAGGED" in fp16_row[0]
    assert "int8" in out  # the table lists the variants built earlier too
    assert artifacts.read_manifest(run_dir)["variants"]["int8"] == optimized.variants["int8"]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["optimize", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("vggbench optimize: error:") and "manifest.json" in err and "\n" not in err


def test_a_tampered_fp32_model_is_refused_before_any_work(optimized, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(optimized.run_dir, run_dir)
    with open(run_dir / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(VggbenchError, match=r"model\.onnx: sha256"):
        export_variants.optimize_run_dir(run_dir, int8=False, fp16=False, progress=False, log=lambda line: None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(calib_images=0), "calib-images"),
    (dict(max_accuracy_drop_points=-1), "threshold"),
    (dict(accuracy_limit=0), "accuracy_limit"),
    (dict(calib_method="kl"), "calibration method"),
    (dict(seed=-1), "--seed must be in 0.."),
    (dict(opt=False, int8=False, fp16=False), "nothing to do"),
])
def test_bad_arguments_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        export_variants.optimize_run_dir(tmp_path, progress=False, **kwargs)


def test_the_gate_flags_only_drops_beyond_the_threshold():
    labels = np.arange(100) % 10
    reference = np.eye(10, dtype=np.float32)[labels]
    candidate = reference.copy()
    candidate[:2] = np.roll(candidate[:2], 1, axis=1)  # two images now wrong: -2 points
    measured = metrics.compare_logits(reference, candidate, labels=labels)
    source = {"file": "model.onnx", "sha256": "0" * 64}
    for threshold, flagged in ((1.0, True), (2.0, False), (2.5, False)):
        entry = export_variants._variant_entry("int8", "model.int8.onnx", __file__, measured, threshold, source, 0.0, {})
        assert entry["flagged"] is flagged and entry["accuracy_drop_points"] == pytest.approx(2.0)
        assert entry["test_accuracy"] == 0.98 and entry["fp32_test_accuracy"] == 1.0 and entry["n_test"] == 100
        assert entry["top1_agreement"] == 0.98 and entry["max_abs_diff"] == 1.0


def test_train_export_then_optimize_leaves_a_whole_run_dir(trained_run_dir, optimized, data_dir):
    """``train-export --optimize``: what train-export recorded survives optimize's manifest updates,
    every file still matches, and every CPU precision runs and agrees with the fp32 model."""
    before, after = artifacts.read_manifest(trained_run_dir), artifacts.verify_all(optimized.run_dir)
    for key in set(before) - {"files"}:
        assert after[key] == before[key], key
    assert set(after["files"]) == set(before["files"]) | {ONNX_VARIANT_FILES[p] for p in export_variants.VARIANTS}
    assert models.model_stats_from_manifest(after)["source"] == "manifest"
    images, _ = data.load_split(str(data_dir), False, 32, seed=1)
    x = data.preprocess(images, after["input_size"])
    with load_runtime("ort-cpu", optimized.run_dir) as fp32:
        reference = fp32.run(x)
    for precision in ("opt", "int8"):
        with load_runtime("ort-cpu", optimized.run_dir, precision=precision) as runtime:
            assert metrics.compare_logits(reference, runtime.run(x))["top1_agreement"] >= 0.9, precision
