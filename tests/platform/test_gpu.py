"""vggbench.platform: every GPU decision, tested with the facts a GPU machine reports.

No GPU here: nvidia-smi is a real executable script printing captured output, the nvidia-* wheel
layout is a tree of real files, ONNX Runtime runs real sessions on its CPU provider, and
assertions that depend on "no GPU here" skip on a machine that has one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from vggbench.errors import VggbenchError
from vggbench.platform import driver, gpu, libraries
from vggbench.runtimes import probe, providers

HAS_GPU = bool(gpu.gpu_inventory())
ORT_HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()


def loadable(soname: str) -> bool:
    """Whether the system loader finds ``soname`` (this machine has a CUDA 13 toolkit, no GPU)."""
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


CUDA11_ON_LIBRARY_PATH = loadable("libcudart.so.11.0")

# `nvidia-smi --query-gpu=index,uuid,compute_cap,driver_version,memory.total,name
#  --format=csv,noheader,nounits` on a two-GPU box (format as nvidia-smi prints it: ", " between values).
TWO_GPUS = ("0, GPU-5e6c7d8a-1b2c-3d4e-5f60-718293a4b5c6, 9.0, 550.54.15, 143771, NVIDIA H200\n"
            "1, GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9, 8.0, 550.54.15, 81920, NVIDIA A100-SXM4-80GB\n")
H200 = gpu.GpuInfo(0, "NVIDIA H200", "9.0", "550.54.15", 143771, "GPU-5e6c7d8a")
A100 = gpu.GpuInfo(1, "NVIDIA A100-SXM4-80GB", "8.0", "550.54.15", 81920, "GPU-0a1b2c3d")
RTX4090 = gpu.GpuInfo(0, "NVIDIA GeForce RTX 4090", "8.9", "550.54.15", 24564, "GPU-11112222")


def fake_nvidia_smi(tmp_path: Path, body: str) -> str:
    """A real executable standing in for nvidia-smi (``body`` is its shell code)."""
    script = tmp_path / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    script.chmod(0o755)
    return str(script)


# --- inventory -------------------------------------------------------------------------------------------

def test_parse_nvidia_smi_reads_every_field():
    first, second = gpu.parse_nvidia_smi_csv(TWO_GPUS)
    assert first == gpu.GpuInfo(0, "NVIDIA H200", "9.0", "550.54.15", 143771,
                                "GPU-5e6c7d8a-1b2c-3d4e-5f60-718293a4b5c6")
    assert second.name == "NVIDIA A100-SXM4-80GB" and second.compute_capability == "8.0"
    assert second.as_dict()["memory_total_mib"] == 81920


def test_parse_nvidia_smi_tolerates_units_na_commas_and_junk_lines():
    text = ("WARNING: infoROM is corrupted at gpu 0000:00:04.0\n"
            "0, [N/A], [N/A], 470.82.01, 15109 MiB, Tesla T4, rev A\n\n")
    [row] = gpu.parse_nvidia_smi_csv(text)
    assert row == gpu.GpuInfo(0, "Tesla T4, rev A", None, "470.82.01", 15109, None)


def test_gpu_inventory_runs_nvidia_smi_with_the_documented_query(tmp_path):
    log = tmp_path / "args"
    smi = fake_nvidia_smi(tmp_path, f"""\
        echo "$@" > {log}
        printf '{TWO_GPUS}'
        """)
    assert [g.name for g in gpu.gpu_inventory(smi)] == ["NVIDIA H200", "NVIDIA A100-SXM4-80GB"]
    assert log.read_text().split() == gpu.nvidia_smi_command("x")[1:]
    assert "--query-gpu=index,uuid,compute_cap,driver_version,memory.total,name" in log.read_text()


def test_a_driver_without_compute_cap_is_queried_again_without_it(tmp_path):
    smi = fake_nvidia_smi(tmp_path, """\
        case "$1" in *compute_cap*) echo 'Field "compute_cap" is not a valid field to query.'; exit 2;; esac
        echo "0, GPU-aaaa, 450.80.02, 32510, Tesla V100-SXM2-32GB"
        """)
    [row] = gpu.gpu_inventory(smi)
    assert row.name == "Tesla V100-SXM2-32GB" and row.compute_capability is None and row.driver_version == "450.80.02"


def test_no_or_failing_nvidia_smi_means_no_gpus(tmp_path):
    assert gpu.gpu_inventory(str(tmp_path / "absent")) == []
    assert gpu.gpu_inventory(fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed'; exit 9\n")) == []


def test_cuda_visible_devices_renumbers_like_cuda():
    inventory = gpu.parse_nvidia_smi_csv(TWO_GPUS)
    assert gpu.visible_gpus(inventory, None) == inventory
    assert [g.name for g in gpu.visible_gpus(inventory, "1")] == ["NVIDIA A100-SXM4-80GB"]
    assert [g.index for g in gpu.visible_gpus(inventory, "1,0")] == [1, 0]
    assert [g.index for g in gpu.visible_gpus(inventory, "GPU-0a1b,0")] == [1, 0]
    assert [g.index for g in gpu.visible_gpus(inventory, "0,7,1")] == [0]  # CUDA stops at an invalid entry
    assert gpu.visible_gpus(inventory, "") == []
    assert gpu.visible_gpus(inventory, "MIG-4b1c2d3e-0000-1111-2222-333344445555") == []  # unknown, not wrong


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_this_machine_has_no_gpu_and_versions_say_so():
    versions = libraries.gpu_versions()
    assert versions["gpus"] == [] and versions["gpu_name"] is None and versions["cuda_driver_api"] is None
    assert versions["onnxruntime"]["version"] == ort.__version__
    assert versions["onnxruntime"]["available_providers"] == ort.get_available_providers()


# --- MXNet on a GPU and --ctx --------------------------------------------------------------------------------

@pytest.mark.parametrize("capability, runs", [
    ("5.0", True), ("5.2", True), ("6.1", True), ("7.0", True), ("7.5", True), ("8.0", True), ("8.6", True),
    ("8.9", True), ("9.0", False), ("10.0", False), ("12.0", False), ("3.7", False), (None, None), ("[N/A]", None),
])
def test_mxnet_cu117_kernels_run_on_maxwell_to_ada_only(capability, runs):
    assert gpu.mxnet_cu117_runs_on(capability) is runs


def test_mxnet_gpu_reasons_name_the_gpu_and_the_cause():
    reason = gpu.mxnet_gpu_unavailable_reason("9.0", "NVIDIA H200")
    assert "NVIDIA H200" in reason and "sm_90" in reason and "sm_50-sm_86" in reason and "ort-cuda" in reason
    assert "no newer" not in gpu.mxnet_gpu_unavailable_reason("3.7", "Tesla K80")
    assert gpu.mxnet_gpu_unavailable_reason("8.9", "NVIDIA GeForce RTX 4090") is None
    assert gpu.mxnet_gpu_unavailable_reason(None) is None
    assert "CPU build" in gpu.mxnet_gpu_unavailable_reason("8.0", mxnet_has_cuda=False)


def test_ctx_auto_trains_on_a_gpu_mxnet_can_use():
    assert gpu.resolve_mxnet_context("auto", 1, [RTX4090])[0] == [0]
    assert gpu.resolve_mxnet_context("auto", 2, [])[0] == [0]  # compute capability unknown: MXNet decides


def test_ctx_auto_falls_back_to_cpu_on_hopper_and_says_why():
    indices, note = gpu.resolve_mxnet_context("auto", 1, [H200])
    assert indices == [] and "training on CPU" in note and "NVIDIA H200" in note and "sm_90" in note
    indices, note = gpu.resolve_mxnet_context("auto", 0, [H200], mxnet_has_cuda=False)
    assert indices == [] and "CPU build" in note
    assert gpu.resolve_mxnet_context("AUTO", 0) == ([], "--ctx auto: MXNet sees no GPU, training on CPU")


def test_ctx_gpu_on_hopper_is_a_one_line_error_naming_the_cause():
    with pytest.raises(VggbenchError) as err:
        gpu.resolve_mxnet_context("gpu", 1, [H200])
    message = str(err.value)
    assert "\n" not in message and "gpu:0" in message and "NVIDIA H200" in message and "--ctx cpu" in message
    with pytest.raises(VggbenchError, match="gpu:1: .*NVIDIA H200"):
        gpu.resolve_mxnet_context("gpu:0,gpu:1", 2, [A100, H200])


@pytest.mark.parametrize("spec, count, inventory, expected", [
    ("cpu", 2, [A100], []), ("gpu", 1, [A100], [0]), ("gpu:1,gpu:0", 2, [A100, RTX4090], [1, 0]),
])
def test_ctx_explicit_lists(spec, count, inventory, expected):
    assert gpu.resolve_mxnet_context(spec, count, inventory)[0] == expected


@pytest.mark.parametrize("spec, count, message", [
    ("gpu", 0, "sees no GPU.*--ctx cpu"), ("gpu:2", 2, "no gpu:2"), ("gpu:0,gpu:0", 2, "twice"),
    ("cuda", 1, "cannot read"),
])
def test_ctx_errors(spec, count, message):
    with pytest.raises(VggbenchError, match=message):
        gpu.resolve_mxnet_context(spec, count, [A100, A100])


# --- libraries: resolution on a real file tree, loading with the real loader --------------------------------

def make_nvidia_tree(root: Path, skip=()) -> Path:
    """site-packages/nvidia/<component>/lib/<soname> as the nvidia-*-cu11 wheels lay it out
    (listed from the wheels the mxnet-gpu extra pins), as empty real files."""
    for library in libraries.CUDA11_LIBRARIES_FOR_MXNET:
        if library.soname not in skip:
            path = root / "nvidia" / library.component / "lib" / library.soname
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    (root / "nvidia" / "cublas" / "include").mkdir(exist_ok=True)
    return root


def test_cuda11_libraries_resolve_from_site_packages_in_dependency_order(tmp_path):
    site = make_nvidia_tree(tmp_path / "site")
    found, missing = libraries.resolve_cuda11_for_mxnet([site])
    assert missing == [] and [p.name for p in found] == [lib.soname for lib in libraries.CUDA11_LIBRARIES_FOR_MXNET]
    names = [p.name for p in found]
    assert names.index("libcublasLt.so.11") < names.index("libcublas.so.11") < names.index("libcusolver.so.11")
    assert names.index("libcudnn_ops_infer.so.8") < names.index("libcudnn_cnn_infer.so.8") \
        < names.index("libcudnn.so.8")
    assert found[0] == site / "nvidia" / "cuda_runtime" / "lib" / "libcudart.so.11.0"
    assert set(libraries.nvidia_library_dirs([site])) == {lib.component for lib in libraries.CUDA11_LIBRARIES_FOR_MXNET}


def test_the_libraries_mxnet_cu117_links_are_all_required():
    required = {lib.soname for lib in libraries.CUDA11_LIBRARIES_FOR_MXNET if lib.required}
    assert {"libcudnn.so.8", "libcublas.so.11", "libcudart.so.11.0", "libnccl.so.2", "libcufft.so.10",
            "libcusolver.so.11", "libcusparse.so.11", "libcurand.so.10", "libnvrtc.so.11.2",
            "libnvToolsExt.so.1"} <= required


def test_missing_required_and_optional_libraries(tmp_path):
    site = make_nvidia_tree(tmp_path / "site", skip=("libcudnn.so.8", "libcudnn_adv_train.so.8"))
    found, missing = libraries.resolve_cuda11_for_mxnet([site])
    assert [lib.soname for lib in missing] == ["libcudnn.so.8"]
    assert "libcudnn_adv_train.so.8" not in {p.name for p in found}  # optional: left out, not missing


def test_first_site_packages_wins(tmp_path):
    first, second = make_nvidia_tree(tmp_path / "a"), make_nvidia_tree(tmp_path / "b")
    found, _ = libraries.resolve_cuda11_for_mxnet([first, second])
    assert all(first in path.parents for path in found)


def test_preloading_reports_a_library_that_cannot_load_in_one_line(tmp_path):
    site = make_nvidia_tree(tmp_path / "site")  # empty files: the real loader rejects them
    with pytest.raises(VggbenchError) as err:
        libraries.preload_cuda11_for_mxnet([site])
    message = str(err.value)
    assert "\n" not in message and "libcudart.so.11.0" in message and "nvidia-cuda-runtime-cu11" in message
    assert ".[mxnet-gpu]" in message


@pytest.mark.skipif(CUDA11_ON_LIBRARY_PATH, reason="a CUDA 11 runtime is on the library path")
def test_preloading_without_the_wheels_looks_on_the_library_path_and_says_what_is_missing(tmp_path):
    with pytest.raises(VggbenchError, match="needs libcudart.so.11.0 .* nor on the library path"):
        libraries.preload_cuda11_for_mxnet([tmp_path])


def test_load_library_loads_a_real_library_globally_and_it_shows_in_the_process_maps():
    path = ctypes.util.find_library("z")
    assert path, "libz is needed by this test"
    assert libraries.load_library(path) == path
    assert any(os.path.basename(p).startswith("libz.so") for p in libraries.mapped_libraries())


def test_mapped_libraries_of_this_process_include_onnxruntime():
    assert any("onnxruntime_pybind11_state" in path for path in libraries.mapped_libraries())


def test_cuda_libraries_are_picked_from_maps_text():
    maps = ("7f00-7f01 r-xp 00000000 fd:01 123 /venv/nvidia/cudnn/lib/libcudnn.so.9\n"
            "7f01-7f02 r--p 00000000 fd:01 123 /venv/nvidia/cudnn/lib/libcudnn.so.9\n"
            "7f02-7f03 r-xp 00000000 fd:01 124 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            "7f03-7f04 rw-p 00000000 00:00 0 \n"
            "7f04-7f05 r-xp 00000000 fd:01 125 /venv/tensorrt_libs/libnvinfer.so.10\n")
    assert libraries.loaded_cuda_libraries(maps) == ["/venv/nvidia/cudnn/lib/libcudnn.so.9",
                                               "/venv/tensorrt_libs/libnvinfer.so.10"]


def test_tensorrt_preload(tmp_path):
    if libraries.tensorrt_library_dir() is None:
        assert libraries.preload_tensorrt() == []  # no tensorrt_libs package: nothing to load
    (tmp_path / "libnvinfer.so.10").write_bytes(b"not a library")
    with pytest.raises(VggbenchError, match="cannot load .*libnvinfer.so.10"):
        libraries.preload_tensorrt(tmp_path)


def test_a_gpu_mxnet_without_its_libraries_is_a_one_line_import_error(tmp_path):
    """The _mxnet hook: with a mxnet-cu117 distribution installed (its dist-info here) and no CUDA
    11 libraries, importing mxnet is a one-line VggbenchError naming the first cause: no driver
    (libmxnet.so links libcuda.so.1) where there is none, else the missing library."""
    info = tmp_path / "mxnet_cu117-1.9.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet-cu117\nVersion: 1.9.1\n")
    code = ("import sys\nfrom vggbench.platform.mxnet import import_mxnet\nfrom vggbench.errors import VggbenchError\n"
            "try:\n    import_mxnet()\nexcept VggbenchError as err:\n    print(err); sys.exit(1)\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if CUDA11_ON_LIBRARY_PATH:
        pytest.skip("a CUDA 11 runtime is on the library path")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("\n") == 1
    if driver.driver_facts().libcuda_error:  # no driver: that cause first, with the CPU build's recipe
        assert "mxnet-cu117 (MXNet's CUDA build) links libcuda.so.1" in proc.stdout
        assert '.venv-cpu/bin/pip install -e ".[cpu]"' in proc.stdout
    else:
        assert "mxnet-cu117 needs libcudart.so.11.0" in proc.stdout


def test_installed_mxnet_here_is_one_build():
    builds = libraries.mxnet_distributions()
    assert len(builds) == 1 and libraries.mxnet_is_gpu_build() == next(iter(builds)).startswith("mxnet-cu")


# --- options ------------------------------------------------------------------------------------------------

def test_cuda_options_keep_tf32_off_unless_the_precision_is_tf32():
    fp32 = providers.cuda_provider_options(1, tf32=providers.tf32_for_precision("fp32"))
    assert fp32 == {"device_id": "1", "use_tf32": "0", "cudnn_conv_algo_search": "EXHAUSTIVE",
                    "cudnn_conv_use_max_workspace": "1"}
    assert providers.cuda_provider_options(tf32=providers.tf32_for_precision("tf32"))["use_tf32"] == "1"
    assert providers.cuda_provider_options(conv_algo_search="HEURISTIC", conv_use_max_workspace=False,
                                     gpu_mem_limit_bytes=2 << 30)["gpu_mem_limit"] == str(2 << 30)
    with pytest.raises(VggbenchError, match="not one of EXHAUSTIVE"):
        providers.cuda_provider_options(conv_algo_search="FASTEST")
    with pytest.raises(VggbenchError, match=">= 0"):
        providers.cuda_provider_options(-1)


def test_tf32_environment_is_per_process():
    assert providers.tf32_environment("fp32") == providers.tf32_environment("fp16") == {"NVIDIA_TF32_OVERRIDE": "0"}
    assert providers.tf32_environment("tf32") == {}


@pytest.mark.parametrize("precision, capability, fragment", [
    ("tf32", "7.5", "TF32 needs compute capability 8.0"), ("tf32", "8.0", None), ("fp16", "5.2", "5.3"),
    ("fp16", "7.0", None), ("fp32", "3.7", None), ("tf32", None, None),
])
def test_hardware_precision_reasons(precision, capability, fragment):
    reason = providers.gpu_precision_unavailable_reason(precision, capability, "the GPU")
    assert reason is None if fragment is None else fragment in reason


def test_tensorrt_options_cache_engines_and_build_one_explicit_profile(tmp_path):
    options = providers.tensorrt_provider_options(0, tmp_path / "cache", "data", (1, 96, 96), [64, 1, 16, 64])
    assert options["trt_profile_min_shapes"] == "data:1x1x96x96"
    assert options["trt_profile_opt_shapes"] == options["trt_profile_max_shapes"] == "data:64x1x96x96"
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "1"
    assert options["trt_fp16_enable"] == "0" and options["device_id"] == "0"
    engines, timing = Path(options["trt_engine_cache_path"]), Path(options["trt_timing_cache_path"])
    assert engines.is_dir() and timing.is_dir() and (tmp_path / "cache" / "tensorrt") in engines.parents
    fp16 = providers.tensorrt_provider_options(1, tmp_path / "cache", "data", (1, 224, 224), [1, 64], "fp16",
                                         opt_batch_size=1)
    assert fp16["trt_fp16_enable"] == "1" and fp16["trt_profile_opt_shapes"] == "data:1x1x224x224"
    tf32 = providers.tensorrt_provider_options(0, tmp_path / "cache", "data", (1, 96, 96), [1], "tf32")
    # engines are per precision (ORT's engine names mark fp16 but not TF32); the timing cache is shared
    assert len({options["trt_engine_cache_path"], fp16["trt_engine_cache_path"], tf32["trt_engine_cache_path"]}) == 3
    assert fp16["trt_timing_cache_path"] == options["trt_timing_cache_path"]
    assert f"ort{ort.__version__}" in engines.name


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_name="in:put"), "cannot be written"), (dict(input_shape_chw=(96, 96)), "channels, height, width"),
    (dict(batch_sizes=[]), ">= 1"), (dict(batch_sizes=[0, 4]), ">= 1"), (dict(opt_batch_size=128), "outside"),
    (dict(precision="int8"), "ort-trt runs fp32, tf32, fp16"),
])
def test_tensorrt_options_refuse_what_tensorrt_would_reject_later(tmp_path, kwargs, message):
    args = dict(device_id=0, cache_dir=tmp_path, input_name="data", input_shape_chw=(1, 96, 96), batch_sizes=[1, 64])
    with pytest.raises(VggbenchError, match=message):
        providers.tensorrt_provider_options(**dict(args, **kwargs))


# --- honest ONNX Runtime probe -----------------------------------------------------------------------------------

def test_the_tiny_model_matches_its_numpy_reference_on_the_cpu_provider():
    weights = probe.tiny_weights()
    session = ort.InferenceSession(probe.tiny_onnx_model(weights).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": weights["x"]})[0]
    expected = probe.tiny_reference(weights["x"], weights["conv"], weights["dense"])
    assert logits.shape == (2, 10) and probe.relative_error(logits, expected) < 1e-5
    assert probe.relative_error(logits + 1.0, expected) > 0.1 and probe.relative_error(logits[:1], expected) == np.inf


def test_ort_cpu_probe_runs_a_real_session():
    assert probe.probe_ort_backend("ort-cpu") is None


@pytest.mark.skipif(ORT_HAS_CUDA, reason="this onnxruntime has the CUDA provider")
@pytest.mark.parametrize("backend, provider", [("ort-cuda", "CUDAExecutionProvider"),
                                               ("ort-trt", "TensorrtExecutionProvider")])
def test_gpu_probes_say_why_they_are_unavailable_here(backend, provider):
    reason = probe.probe_ort_backend(backend)
    assert f"onnxruntime {ort.__version__} (package onnxruntime, CPU build) has no {provider}" in reason
    assert "\n" not in reason
    if driver.driver_facts().libcuda_error:  # no driver: that cause first, whatever the package
        assert reason.startswith("no NVIDIA driver on this machine") or reason.startswith("nvidia-smi is at")
    else:
        assert reason.startswith(f"onnxruntime {ort.__version__}") and ".[gpu" in reason


def test_probe_refuses_unknown_backends():
    with pytest.raises(VggbenchError, match="unknown ONNX Runtime backend"):
        probe.probe_ort_backend("mxnet")


def test_profile_shows_where_nodes_ran(tmp_path):
    """What decides "fell back": ONNX Runtime's own profile of a real run, here on the CPU provider."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "probe")
    weights = probe.tiny_weights()
    session = ort.InferenceSession(probe.tiny_onnx_model(weights).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"x": weights["x"]})
    nodes = probe.profiled_node_providers(session.end_profiling())
    assert ("MatMul", "CPUExecutionProvider") in nodes
    assert probe.fallback_reason(nodes, "CPUExecutionProvider") is None
    reason = probe.fallback_reason(nodes, "CUDAExecutionProvider")
    assert reason.startswith("nodes ran off CUDAExecutionProvider: ") and "MatMul on CPUExecutionProvider" in reason
    assert probe.fallback_reason([("MemcpyToHost", "CUDAExecutionProvider")], "CUDAExecutionProvider") == \
        "no compute node ran on CUDAExecutionProvider"


def test_native_stderr_of_onnx_runtime_is_captured():
    options = ort.SessionOptions()
    options.log_severity_level = 0  # verbose: ONNX Runtime's C++ logger writes to file descriptor 2
    with probe.captured_native_stderr() as log:
        ort.InferenceSession(probe.tiny_onnx_model().SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert ":onnxruntime:" in log["text"]


def test_the_first_error_of_a_real_onnx_runtime_log_is_the_reason():
    # Captured from ONNX Runtime 1.21.1 without cuBLAS 12 (bytedance/LatentSync#225) and 1.17's warning
    # that follows it (PaddlePaddle/PaddleNLP#8195).
    log = ("2025-04-25 13:50:56.628631617 [E:onnxruntime:Default, provider_bridge_ort.cc:2036 TryGetProviderInfo_CUDA] "
           "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1695 onnxruntime::Provider& "
           "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
           "libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: "
           "No such file or directory\n\n"
           "2024-03-27 06:33:23.219759101 [W:onnxruntime:Default, onnxruntime_pybind_state.cc:861 "
           "CreateExecutionProviderInstance] Failed to create CUDAExecutionProvider. Please reference "
           "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements"
           "to ensure all dependencies are met.\n")
    reason = probe.first_error_line(log)
    assert "libcublasLt.so.12: cannot open shared object file" in reason and "provider_bridge" not in reason
    assert probe.first_error_line(log.split("\n\n")[1]).startswith("Failed to create CUDAExecutionProvider")
    assert probe.first_error_line("2025-01-01 [I:onnxruntime:, inference_session.cc:1 Init] ok\n") is None


# --- versions --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("formatter, value, text", [
    (libraries.format_cuda_version, 12040, "12.4"), (libraries.format_cuda_version, 11070, "11.7"),
    (libraries.format_cuda_version, 13000, "13.0"), (libraries.format_cudnn_version, 90100, "9.1.0"),
    (libraries.format_cudnn_version, 8500, "8.5.0"), (libraries.format_cudnn_version, 8906, "8.9.6"),
    (libraries.format_tensorrt_version, 100900, "10.9.0"), (libraries.format_tensorrt_version, 8601, "8.6.1"),
])
def test_library_version_numbers(formatter, value, text):
    assert formatter(value) == text


def test_a_loaded_cuda_runtime_reports_its_own_version():
    """cudaRuntimeGetVersion needs no GPU: asked of a real CUDA runtime when the machine has one."""
    candidates = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
    soname = next((name for name in candidates if loadable(name)), None)
    if soname is None:
        pytest.skip("no CUDA runtime library on this machine")
    libraries.load_library(soname)
    versions = {os.path.basename(path): version for path, version in libraries.loaded_library_versions().items()}
    major = soname.split(".so.")[1].split(".")[0]
    assert versions[soname].split(".")[0] == major and versions[soname].count(".") == 1


def test_gpu_versions_record_the_stack():
    versions = libraries.gpu_versions([H200])
    assert versions["gpu_name"] == "NVIDIA H200" and versions["compute_capability"] == "9.0"
    assert versions["driver"] == "550.54.15" and versions["gpus"][0]["memory_total_mib"] == 143771
    for key in ("cuda_driver_api", "onnxruntime", "mxnet", "nvidia_wheels", "loaded_libraries"):
        assert key in versions
    assert versions["onnxruntime"]["build_info"] == ort.get_build_info()
