"""The backend runners: real MXNet and ONNX Runtime on a real exported run dir."""

from __future__ import annotations

import numpy as np
import pytest

from vggbench import runtimes
from vggbench.errors import VggbenchError
from vggbench.runtimes import BackendUnavailable, load_runtime, unavailable_reason

CPU_BACKENDS = ("mxnet", "mxnet-hybrid", "ort-cpu")


@pytest.fixture(scope="module")
def test_batch(data_dir):
    """Eight real test images, preprocessed as in training, plus random inputs."""
    from vggbench import data

    images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    real = data.preprocess(images[:8], 96)
    noise = np.random.RandomState(0).uniform(0, 1, (4, 1, 96, 96)).astype(np.float32)
    return np.concatenate([real, noise])


@pytest.fixture(scope="module")
def cpu_logits(untrained_run_dir, test_batch):
    logits = {}
    for backend in CPU_BACKENDS:
        with load_runtime(backend, untrained_run_dir) as runtime:
            logits[backend] = runtime.run(test_batch)
    return logits


@pytest.mark.parametrize("backend", CPU_BACKENDS[1:])
def test_runners_agree_on_outputs(cpu_logits, backend):
    reference = cpu_logits["mxnet"]
    assert cpu_logits[backend].shape == reference.shape == (12, 10)
    assert cpu_logits[backend].dtype == np.float32
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(cpu_logits[backend], reference, rtol=0, atol=1e-4 * scale)
    assert (cpu_logits[backend].argmax(1) == reference.argmax(1)).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_compute_only_path_runs_and_matches(untrained_run_dir, test_batch, cpu_logits, backend):
    with load_runtime(backend, untrained_run_dir) as runtime:
        runtime.stage(test_batch)
        assert runtime.run_staged() is None  # output stays on the device
        runtime.run_staged()
        if hasattr(runtime, "staged_output"):
            np.testing.assert_allclose(runtime.staged_output(), cpu_logits[backend], atol=1e-5)
        # end-to-end still works after staging, with another batch size
        assert runtime.run(test_batch[:3]).shape == (3, 10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_info_records_what_was_used(untrained_run_dir, backend):
    with load_runtime(backend, untrained_run_dir, threads=1) as runtime:
        info = runtime.info()
    assert info["backend"] == backend and info["precision"] == "fp32" and info["device"] == "cpu"
    assert info["threads"] == (1 if backend == "ort-cpu" else info["threads"]) and info["threads"] >= 1
    if backend == "ort-cpu":
        assert info["providers"][0] == "CPUExecutionProvider" and info["model_file"] == "model.onnx"


def test_gpu_backends_are_unavailable_here_with_a_reason(untrained_run_dir):
    for backend in runtimes.GPU_BACKENDS:
        reason = unavailable_reason(backend)
        assert reason and "onnxruntime" in reason
        with pytest.raises(BackendUnavailable, match="no .*ExecutionProvider"):
            load_runtime(backend, untrained_run_dir)
    for backend in runtimes.MXNET_BACKENDS:
        assert "CUDA" in unavailable_reason(backend, device="gpu")
        with pytest.raises(BackendUnavailable):
            load_runtime(backend, untrained_run_dir, device="gpu:0")


def test_precision_combinations_that_cannot_run():
    assert "fp32 only" in unavailable_reason("mxnet-hybrid", "int8")
    assert "GPU" in unavailable_reason("ort-cpu", "fp16")
    assert "unknown precision" in unavailable_reason("ort-cpu", "bf16")
    assert unavailable_reason("ort-cpu", "int8") is None
    with pytest.raises(VggbenchError, match="unknown backend"):
        unavailable_reason("tvm")


def test_missing_variant_and_tampered_file_are_refused(untrained_run_dir, tmp_path):
    import shutil

    with pytest.raises(VggbenchError, match="lists no 'model.int8.onnx'"):
        load_runtime("ort-cpu", untrained_run_dir, precision="int8")
    copy = tmp_path / "copy"
    shutil.copytree(untrained_run_dir, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(VggbenchError, match="does not match the manifest"):
        load_runtime("ort-cpu", copy)
