"""The OpenVINO runner: real OpenVINO on a real trained run dir, against real ONNX Runtime.

OpenVINO's CPU plugin runs float32 models in bf16 by default on CPUs with bf16 units, so the fp32
row must force f32 and prove it from the compiled model; the bf16 row must report what the compiled
model reports; the int8 row runs the run dir's own QDQ file.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tampered_copy

from vggbench.platform.cpu import bf16_unavailable_reason
from vggbench.runtimes import BackendUnavailable, load_runtime, unavailable_reason
from vggbench.runtimes import openvino_runtime as ov_runtime

ov = pytest.importorskip("openvino")
HAS_BF16 = bf16_unavailable_reason() is None
NEEDS_BF16 = pytest.mark.skipif(not HAS_BF16, reason="this CPU has no amx_bf16/avx512_bf16")


@pytest.fixture(scope="module")
def images(data_dir):
    """24 real test images, preprocessed as in training."""
    from vggbench import data

    test_images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    return data.preprocess(test_images[:24], 96)


@pytest.fixture(scope="module")
def ort_logits(int8_run_dir, images):
    logits = {}
    for precision in ("fp32", "int8"):
        with load_runtime("ort-cpu", int8_run_dir, precision=precision, threads=1) as runtime:
            logits[precision] = runtime.run(images)
    return logits


def test_fp32_row_forces_f32_and_matches_onnx_runtime(int8_run_dir, images, ort_logits):
    with load_runtime("openvino", int8_run_dir, precision="fp32", threads=1, batch_sizes=[24]) as runtime:
        info = runtime.info()
        logits = runtime.run(images)
        compiled = runtime._shape(24).compiled
        assert ov_runtime.compiled_precision(compiled) == "f32"
    assert info["precision_hint"] == info["compiled_precision"] == "f32"
    assert set(info["layer_precisions"]) == {"f32"} and sum(info["layer_precisions"].values()) >= 8
    assert info["inference_num_threads"] == 1 and info["num_streams"] == 1
    assert info["openvino"] == ov_runtime.openvino_version() and info["model_file"] == "model.onnx"
    reference = ort_logits["fp32"]
    assert logits.shape == reference.shape == (24, 10) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-4 * max(1.0, float(np.abs(reference).max())))
    assert (logits.argmax(1) == reference.argmax(1)).all()


@NEEDS_BF16
def test_the_precision_hint_trap_is_real_here(int8_run_dir):
    """Unforced, OpenVINO compiles the float32 file in bf16 on this CPU: why fp32 forces f32."""
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(int8_run_dir / "model.onnx")), "CPU")
    assert ov_runtime.compiled_precision(compiled) == "bf16"
    assert "bf16" in ov_runtime.executed_layers(compiled)["layer_precisions"]


@NEEDS_BF16
def test_bf16_row_reports_what_the_compiled_model_reports(int8_run_dir, images, ort_logits):
    with load_runtime("openvino", int8_run_dir, precision="bf16", threads=1, batch_sizes=[24]) as runtime:
        info = runtime.info()
        logits = runtime.run(images)
        reported = ov_runtime.compiled_precision(runtime._shape(24).compiled)
    assert info["compiled_precision"] == reported == "bf16"
    assert set(info["layer_precisions"]) == {"bf16"}
    assert any("bf16" in kernel for kernel in info["layer_kernels"])
    reference = ort_logits["fp32"]
    difference = float(np.abs(logits - reference).max())
    assert 0 < difference < 0.05 * max(1.0, float(np.abs(reference).max()))  # bf16 math: close, not equal
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9


def test_bf16_is_unavailable_with_a_reason_without_bf16_units():
    reason = ov_runtime.unavailable_reason("bf16", flags=["avx2", "fma", "avx512f", "avx512_vnni"])
    assert reason.startswith("this CPU has no bfloat16 units") and "amx_bf16" in reason
    assert ov_runtime.unavailable_reason("bf16", flags=["avx512_bf16"]) is None
    assert ov_runtime.unavailable_reason("bf16", flags=["amx_bf16"]) is None
    assert ov_runtime.unavailable_reason("fp32", flags=[]) is None
    assert unavailable_reason("openvino", "bf16") == bf16_unavailable_reason()


def test_int8_row_runs_the_qdq_file_in_int8(int8_run_dir, images, ort_logits):
    with load_runtime("openvino", int8_run_dir, precision="int8", threads=1, batch_sizes=[24]) as runtime:
        info = runtime.info()
        logits = runtime.run(images)
    assert info["model_file"] == "model.int8.onnx" and info["compiled_precision"] == "f32"
    assert set(info["layer_precisions"]) == {"u8"}  # every conv / dense layer: uint8 x int8 kernels
    reference = ort_logits["int8"]  # same file through ONNX Runtime
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(logits, reference, rtol=0, atol=0.05 * scale)
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9


def test_compute_only_path_and_static_shapes(int8_run_dir, images):
    with load_runtime("openvino", int8_run_dir, precision="fp32", threads=1, batch_sizes=[1, 8]) as runtime:
        assert runtime.info()["static_batch_sizes"] == [1, 8]
        runtime.stage(images[:8])
        assert runtime.run_staged() is None
        staged = runtime.staged_output()
        runtime.run_staged()
        np.testing.assert_array_equal(runtime.staged_output(), staged)
        np.testing.assert_allclose(staged, runtime.run(images[:8]), rtol=0, atol=1e-6)
        # run() on the same batch size neither overwrites the staged input nor writes into freed
        # memory (it did once: heap corruption, SIGABRT in the accuracy pass after the compute cells)
        import gc

        gc.collect()
        for start in (8, 16):
            runtime.run(images[start:start + 8])
        runtime.run_staged()
        np.testing.assert_array_equal(runtime.staged_output(), staged)
        for size in (3, 5, 7, 9, 11, 13):  # other sizes compile on first use; the pinned ones stay
            assert runtime.run(images[:size]).shape == (size, 10)
        shapes = runtime.info()["static_batch_sizes"]
        assert {1, 8} <= set(shapes) and len(shapes) == ov_runtime.MAX_COMPILED_SHAPES


def test_precisions_it_does_not_run_and_tampered_files(int8_run_dir, tmp_path):

    from vggbench.errors import VggbenchError

    assert "ort-cpu" in unavailable_reason("openvino", "opt")
    assert "GPU" in unavailable_reason("openvino", "fp16")
    with pytest.raises(BackendUnavailable):
        load_runtime("openvino", int8_run_dir, precision="fp16")
    copy = tampered_copy(int8_run_dir, tmp_path, "model.int8.onnx")
    with pytest.raises(VggbenchError, match="does not match the manifest"):
        load_runtime("openvino", copy, precision="int8")


def test_compile_model_refuses_an_unknown_hint(int8_run_dir):
    from vggbench.errors import VggbenchError

    with pytest.raises(VggbenchError, match="precision hint"):
        ov_runtime.compile_model(str(int8_run_dir / "model.onnx"), "f16")
