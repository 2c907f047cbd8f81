"""The backend runners: real MXNet and ONNX Runtime on a real exported run dir."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from helpers import tampered_copy

from vggbench import runtimes
from vggbench.errors import VggbenchError
from vggbench.platform.environment import gpus
from vggbench.runtimes import BackendUnavailable, load_runtime, ort_runtime, unavailable_reason

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
def test_compute_only_path_computes_what_run_computes(untrained_run_dir, test_batch, cpu_logits, backend):
    with load_runtime(backend, untrained_run_dir) as runtime:
        runtime.stage(test_batch)
        assert runtime.run_staged() is None  # output stays on the device
        first = runtime.staged_output()
        runtime.run_staged()  # again on the same staged input: same result
        np.testing.assert_allclose(runtime.staged_output(), first, rtol=0, atol=1e-6)
        scale = max(1.0, float(np.abs(cpu_logits[backend]).max()))
        np.testing.assert_allclose(first, cpu_logits[backend], rtol=0, atol=1e-5 * scale)
        assert (first.argmax(1) == cpu_logits[backend].argmax(1)).all()
        # end-to-end still works after staging, with another batch size
        np.testing.assert_allclose(runtime.run(test_batch[:3]), cpu_logits[backend][:3], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_info_records_what_was_used(untrained_run_dir, backend):
    with load_runtime(backend, untrained_run_dir, threads=1) as runtime:
        info = runtime.info()
    assert info["backend"] == backend and info["precision"] == "fp32" and info["device"] == "cpu"
    assert info["threads"] == (1 if backend == "ort-cpu" else info["threads"]) and info["threads"] >= 1
    if backend == "ort-cpu":
        assert info["providers"][0] == "CPUExecutionProvider" and info["model_file"] == "model.onnx"


@pytest.mark.skipif(bool(gpus()), reason="this machine has a GPU")
def test_gpu_backends_are_unavailable_here_with_a_reason(untrained_run_dir):
    from vggbench.platform.driver import driver_facts, no_driver_reason

    no_driver = no_driver_reason(driver_facts()) is not None  # then that is the first cause, for every GPU backend
    for backend in runtimes.GPU_BACKENDS:  # the backend's own device kind: a GPU
        reason = unavailable_reason(backend)
        if no_driver:
            assert reason and reason.startswith("no NVIDIA driver"), reason
        else:
            assert reason and ("onnxruntime" in reason if backend.startswith("ort") else "CUDA" in reason)
        with pytest.raises(BackendUnavailable, match="no NVIDIA driver" if no_driver else "ExecutionProvider|CUDA"):
            load_runtime(backend, untrained_run_dir)
    for backend in runtimes.MXNET_BACKENDS:  # the CPU runners asked for a GPU device
        assert ("no NVIDIA driver" if no_driver else "CUDA") in unavailable_reason(backend, device="gpu")
        with pytest.raises(BackendUnavailable):
            load_runtime(backend, untrained_run_dir, device="gpu:0")


def test_precision_combinations_that_cannot_run():
    assert "fp32 only" in unavailable_reason("mxnet-hybrid", "int8")
    assert "GPU" in unavailable_reason("ort-cpu", "fp16")
    assert "no x86 bfloat16 kernels" in unavailable_reason("ort-cpu", "bf16")
    assert "unknown precision" in unavailable_reason("ort-cpu", "int4")
    assert unavailable_reason("ort-cpu", "int8") is None
    with pytest.raises(VggbenchError, match="unknown backend"):
        unavailable_reason("tvm")


def test_missing_variant_and_tampered_file_are_refused(untrained_run_dir, tmp_path):

    with pytest.raises(VggbenchError, match="lists no 'model.int8.onnx'"):
        load_runtime("ort-cpu", untrained_run_dir, precision="int8")
    copy = tampered_copy(untrained_run_dir, tmp_path, "model.onnx")
    with pytest.raises(VggbenchError, match="does not match the manifest"):
        load_runtime("ort-cpu", copy)


# --- the one ONNX Runtime session factory --------------------------------------------------------

def test_make_session_takes_a_path_bytes_or_a_model_and_they_agree(untrained_run_dir, test_batch):
    import onnx

    path = untrained_run_dir / "model.onnx"
    outputs = []
    for model in (path, str(path), path.read_bytes(), onnx.load(str(path))):
        predict = ort_runtime.session_predictor(ort_runtime.make_session(model))
        outputs.append(predict(test_batch))
    for logits in outputs[1:]:
        np.testing.assert_array_equal(logits, outputs[0])
    assert outputs[0].shape == (12, 10)


def test_make_session_applies_its_options(untrained_run_dir, tmp_path):
    path = untrained_run_dir / "model.onnx"
    one = ort_runtime.make_session(path, threads=1, graph_optimization="basic")
    assert one.get_session_options().intra_op_num_threads == 1
    assert one.get_session_options().graph_optimization_level.name == "ORT_ENABLE_BASIC"
    assert ort_runtime.make_session(path).get_session_options().intra_op_num_threads == 0  # ORT decides
    optimized = tmp_path / "model.opt.onnx"
    ort_runtime.make_session(path, optimized_model_path=optimized)
    assert optimized.stat().st_size > 0
    with pytest.raises(VggbenchError, match="unknown graph optimization 'max'"):
        ort_runtime.make_session(path, graph_optimization="max")
    with pytest.raises(VggbenchError, match="unknown ONNX Runtime backend 'ort-rocm'"):
        ort_runtime.make_session(path, backend="ort-rocm")


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="this onnxruntime has CUDA: nothing falls back")
@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider' is not in available")
def test_a_gpu_session_that_falls_back_to_the_cpu_is_refused(untrained_run_dir):
    """Asking this CPU-only onnxruntime for CUDA: ORT quietly runs on the CPU; the factory refuses."""
    with pytest.raises(BackendUnavailable, match="fell back to CPUExecutionProvider instead of CUDAExecutionProvider"):
        ort_runtime.make_session(untrained_run_dir / "model.onnx", backend="ort-cuda",
                                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_provider_options_for_each_backend(tmp_path):
    assert ort_runtime.provider_options("ort-cpu") == ["CPUExecutionProvider"]
    cuda = ort_runtime.provider_options("ort-cuda", device_id=1, gpu_mem_limit=2 ** 30)
    assert cuda == [("CUDAExecutionProvider", {"device_id": "1", "use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE",
                                               "cudnn_conv_use_max_workspace": "1", "gpu_mem_limit": str(2 ** 30)})]
    assert ort_runtime.provider_options("ort-cuda", precision="tf32")[0][1]["use_tf32"] == "1"
    trt = ort_runtime.provider_options("ort-trt", precision="fp16", tensorrt={
        "cache_dir": tmp_path / "cache", "input_name": "data", "input_shape_chw": (1, 96, 96), "batch_sizes": [1, 16, 64]})
    assert [name for name, _ in trt] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    options = trt[0][1]
    assert options["trt_fp16_enable"] == "1" and options["trt_engine_cache_enable"] == "1"
    assert options["trt_profile_min_shapes"] == "data:1x1x96x96" and options["trt_profile_max_shapes"] == "data:64x1x96x96"
    assert options["trt_engine_cache_path"].startswith(str(tmp_path / "cache"))
    assert trt[1][1]["use_tf32"] == "0"  # the CUDA fallback of an fp16/fp32 TensorRT row runs no TF32 either
    with pytest.raises(VggbenchError, match="cudnn_conv_algo_search 'FAST'"):
        ort_runtime.provider_options("ort-cuda", cudnn_conv_algo_search="FAST")


def test_a_fallen_back_session_is_typed_for_callers_that_explain_it(untrained_run_dir):
    with pytest.raises(ort_runtime.ProviderFallback) as caught:
        ort_runtime.make_session(untrained_run_dir / "model.onnx", backend="ort-cuda",
                                 providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert (caught.value.got, caught.value.wanted) == ("CPUExecutionProvider", "CUDAExecutionProvider")
    session = ort_runtime.make_session(untrained_run_dir / "model.onnx", backend="ort-cuda", check_provider=False,
                                       providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert session.get_providers()[0] == "CPUExecutionProvider"


def test_ort_options_round_trip_through_their_json_form():
    options = ort_runtime.OrtOptions("basic", "HEURISTIC", False, 2 ** 30)
    as_json = options.to_dict()
    assert as_json == {"graph_optimization": "basic", "cudnn_conv_algo_search": "HEURISTIC",
                       "cudnn_conv_use_max_workspace": False, "gpu_mem_limit": 2 ** 30}
    assert ort_runtime.OrtOptions.from_dict(as_json) == options
    assert ort_runtime.OrtOptions.from_dict(None) == ort_runtime.OrtOptions() == ort_runtime.OrtOptions.from_dict({})
    assert list(ort_runtime.OrtOptions().to_dict()) == ["graph_optimization", "cudnn_conv_algo_search",
                                                        "cudnn_conv_use_max_workspace", "gpu_mem_limit"]


@pytest.mark.parametrize("values, message", [
    ({"graph_optimization": "max"}, "unknown graph optimization 'max'"),
    ({"cudnn_conv_algo_search": "FAST"}, "cudnn_conv_algo_search 'FAST'"),
    ({"cudnn_conv_use_max_workspace": "yes"}, "must be true or false"),
    ({"gpu_mem_limit": 0}, "positive number of bytes"), ({"gpu_mem_limit": 1.5}, "positive number of bytes"),
    ({"threads": 4}, "unknown ONNX Runtime option")])
def test_ort_options_refuse_bad_values_in_one_line(values, message):
    with pytest.raises(VggbenchError, match=message):
        ort_runtime.OrtOptions.from_dict(values)


def test_the_options_reach_the_session(untrained_run_dir):
    options = ort_runtime.OrtOptions(graph_optimization="basic")
    with load_runtime("ort-cpu", untrained_run_dir, threads=1, batch_sizes=[2, 4], options=options) as runtime:
        assert runtime.info()["graph_optimization"] == "basic"
    with load_runtime("ort-cpu", untrained_run_dir, threads=1) as runtime:  # None: OrtOptions' defaults
        assert runtime.info()["graph_optimization"] == ort_runtime.OrtOptions().graph_optimization == "all"


def test_openvino_compiles_the_batch_sizes_it_is_given_at_load(untrained_run_dir):
    pytest.importorskip("openvino")
    with load_runtime("openvino", untrained_run_dir, threads=1, batch_sizes=(4, np.int64(2), 4)) as runtime:
        assert runtime.info()["static_batch_sizes"] == [2, 4]


@pytest.mark.parametrize("backend, options, message", [
    ("ort-cpu", {"graph_optimization": "basic"},
     "backend ort-cpu takes options of type OrtOptions (OrtOptions.from_dict reads the JSON form), got dict"),
    ("mxnet-hybrid", ort_runtime.OrtOptions(),
     "backend mxnet-hybrid takes no runtime options (options=None), got OrtOptions"),
    ("openvino", ort_runtime.OrtOptions(), "backend openvino takes no runtime options (options=None), got OrtOptions")])
def test_options_of_the_wrong_type_are_refused_before_loading(tmp_path, backend, options, message):
    """``tmp_path`` is no run dir: the refusal comes before anything is read."""
    with pytest.raises(VggbenchError) as caught:
        load_runtime(backend, tmp_path, options=options)
    assert str(caught.value) == message


def test_the_loose_keyword_form_is_gone(tmp_path):
    with pytest.raises(TypeError, match="graph_optimization"):
        load_runtime("ort-cpu", tmp_path, graph_optimization="basic")


@pytest.mark.parametrize("batch_sizes, message", [
    ([0], "batch_sizes must be whole numbers >= 1, got [0]"),
    ((8, -1), "batch_sizes must be whole numbers >= 1, got [8, -1]"),
    ([True], "batch_sizes must be whole numbers >= 1, got [True]"),
    ([1.5], "batch_sizes must be whole numbers >= 1, got [1.5]"),
    ("8", "batch_sizes must be a list of whole numbers >= 1, got '8'"),
    (8, "batch_sizes must be a list of whole numbers >= 1, got 8")])
def test_bad_batch_sizes_are_refused_in_one_line_before_loading(tmp_path, batch_sizes, message):
    with pytest.raises(VggbenchError) as caught:
        load_runtime("openvino", tmp_path, batch_sizes=batch_sizes)
    assert str(caught.value) == message


# --- ort-trt: one engine build at a time per run dir ------------------------------------------------

@pytest.mark.parametrize("backend", ["ort-trt", "ort-cpu"])
def test_only_an_ort_trt_session_is_created_under_the_tensorrt_cache_lock(untrained_run_dir, tmp_path, monkeypatch,
                                                                         backend):
    """The GPU parts are faked (no GPU here); the session is a real CPU one, created while the fake
    checks who holds ``cache/tensorrt``'s lock."""
    import shutil

    from vggbench import artifacts
    from vggbench.platform import libraries
    from vggbench.runtimes import providers

    run_dir = shutil.copytree(untrained_run_dir, tmp_path / "run")
    tensorrt_cache = run_dir / artifacts.CACHE_DIR / "tensorrt"
    real_make_session = ort_runtime.make_session
    holders = []

    def fake_make_session(model_path, backend, threads=None, graph_optimization="all", providers=None):
        holders.append(artifacts.read_lock_holder(tensorrt_cache))
        return real_make_session(model_path, "ort-cpu", threads=threads, graph_optimization=graph_optimization)

    monkeypatch.setattr(ort_runtime, "unavailable_reason", lambda *args, **kwargs: None)
    monkeypatch.setattr(ort_runtime, "provider_options", lambda *args, **kwargs: ["CPUExecutionProvider"])
    monkeypatch.setattr(providers, "preload_ort_cuda", lambda tensorrt=False: {})
    monkeypatch.setattr(libraries, "gpu_versions", lambda: {})
    monkeypatch.setattr(ort_runtime, "make_session", fake_make_session)
    runtime = ort_runtime.ORTRuntime(run_dir, backend=backend, threads=1)
    runtime.close()
    if backend == "ort-trt":
        assert holders[0]["pid"] == os.getpid() and holders[0]["purpose"] == "vggbench ort-trt fp32"
        assert tensorrt_cache.is_dir()
    else:
        assert holders == [None] and not tensorrt_cache.exists()  # ort-cpu writes no cache, takes no lock
    assert artifacts.read_lock_holder(tensorrt_cache) is None  # released once the session exists


def test_the_tensorrt_build_waits_for_another_holder_of_the_cache(tmp_path, monkeypatch):
    """The lock ORTRuntime holds for ort-trt is the cache folder's, bounded by TENSORRT_BUILD_WAIT_S."""
    from vggbench import artifacts

    cache_dir = tmp_path / "cache"
    monkeypatch.setattr(ort_runtime, "TENSORRT_BUILD_WAIT_S", 0.3)
    with artifacts.cache_lock(cache_dir / "tensorrt", "vggbench ort-trt fp16", timeout_s=0):
        with pytest.raises(VggbenchError, match=r"building TensorRT engines there after 0\.3 s"):
            with ort_runtime.tensorrt_build_lock("ort-trt", "fp32", {"cache_dir": str(cache_dir)}):
                pass  # a second lock of the same file, even in this process, waits for the first
    with ort_runtime.tensorrt_build_lock("ort-cpu", "fp32", None):
        assert not (cache_dir / ".tensorrt.lock").exists()
