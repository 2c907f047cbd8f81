"""GPU decisions without a GPU: reasons ordered by cause, GPU numbering, kernels in real CUDA
libraries, files two distributions own.

The facts come from this machine (driver_facts: no driver here), from real ONNX Runtime logs (made
in a child process when onnxruntime-gpu is installed, as in the gpu-nodriver tox env; otherwise the
same log captured from onnxruntime-gpu 1.26.0 on a machine without a driver) and from real files
(ELF libraries, dist-info folders read through importlib.metadata).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from vggbench.bench.worker import worker_env
from vggbench.errors import summarize_error
from vggbench.platform import cuda_code, driver, libraries
from vggbench.platform.gpu import GpuInfo
from vggbench.runtimes import probe

FACTS = driver.driver_facts()
NO_DRIVER = FACTS.libcuda_error is not None
ORT_GPU = "onnxruntime-gpu" in libraries.installed_distributions(["onnxruntime"])
# What a machine with a working CUDA 12.4 driver would report: the later causes only count then.
WITH_DRIVER = driver.DriverFacts(libcuda_error=None, nvidia_smi="/usr/bin/nvidia-smi", cuda_version="12.4")
ORT_126 = {"package": "onnxruntime-gpu", "version": "1.26.0", "cuda_version": "12.8"}
ESC = "\x1b"

# onnxruntime-gpu 1.26.0, Python 3.11, no NVIDIA driver, without preload_dlls: fd 2 as the terminal
# got it (colour codes included); then the TensorRT EP's EP Error block; then CUDA after preload_dlls.
CAPTURED_CUDA_LOG = (
    f"{ESC}[1;31m2026-12-05 12:50:53.964623402 [E:onnxruntime:Default, provider_bridge_ort.cc:2369 "
    "TryGetProviderInfo_CUDA] /onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1962 "
    "onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load "
    "library /tmp/gpuvenv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so with "
    f"error: libcublasLt.so.12: cannot open shared object file: No such file or directory\n{ESC}[m\n")
CAPTURED_TRT_LOG = (
    "*************** EP Error ***************\nEP Error /onnxruntime_src/onnxruntime/python/"
    "onnxruntime_pybind_state.cc:534 void onnxruntime::python::RegisterTensorRTPluginsAsCustomOps("
    "PySessionOptions&, const onnxruntime::ProviderOptions&) Please install TensorRT libraries as mentioned in "
    "the GPU requirements page, make sure they're in the PATH or LD_LIBRARY_PATH, and that your GPU is supported.\n"
    " when using ['TensorrtExecutionProvider', 'CPUExecutionProvider']\nFalling back to ['CPUExecutionProvider'] "
    "and retrying.\n****************************************\n")
CAPTURED_PRELOADED_LOG = (
    "*************** EP Error ***************\nEP Error /onnxruntime_src/onnxruntime/core/providers/cuda/"
    "cuda_call.cc:122 std::conditional_t<THRW, void, onnxruntime::common::Status> onnxruntime::CudaCall(ERRTYPE, "
    "const char*, const char*, SUCCTYPE, const char*, const char*, int) [with ERRTYPE = cudaError; bool THRW = "
    "true; SUCCTYPE = cudaError; std::conditional_t<THRW, void, common::Status> = void] CUDA failure 35: CUDA "
    "driver version is insufficient for CUDA runtime version ; GPU=-1 ; hostname=vm ; file=/onnxruntime_src/"
    "onnxruntime/core/providers/cuda/cuda_execution_provider.cc ; line=336 ; expr=cudaSetDevice(info_.device_id); "
    "\n\n when using ['CUDAExecutionProvider', 'CPUExecutionProvider']\n")

_LOGS_SCRIPT = """
import json, sys
import onnxruntime as ort
from vggbench.runtimes import probe
model = probe.tiny_onnx_model().SerializeToString()
logs = {}
for name, providers in (("cuda", ["CUDAExecutionProvider"]), ("trt", ["TensorrtExecutionProvider"])):
    with probe.captured_native_stderr() as log:
        ort.InferenceSession(model, providers=providers + ["CPUExecutionProvider"])
    logs[name] = log["text"]
ort.preload_dlls()
with probe.captured_native_stderr() as log:
    ort.InferenceSession(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
logs["preloaded"] = log["text"]
with probe.captured_native_stderr() as log:
    ort.InferenceSession(model, providers=["TensorrtExecutionProvider", "CPUExecutionProvider"])
logs["trt_preloaded"] = log["text"]
sys.stdout.write(json.dumps(logs))
"""


@pytest.fixture(scope="module")
def ort_logs():
    """Real logs: made here by onnxruntime-gpu in a fresh process, else the captured ones."""
    if not ORT_GPU:
        return {"cuda": CAPTURED_CUDA_LOG, "trt": CAPTURED_TRT_LOG, "preloaded": CAPTURED_PRELOADED_LOG}
    proc = subprocess.run([sys.executable, "-c", _LOGS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# --- cause 1: no driver -----------------------------------------------------------------------------------------

@pytest.mark.skipif(not NO_DRIVER, reason="this machine has an NVIDIA driver")
def test_no_driver_is_the_first_cause_whatever_the_log_says(ort_logs):
    assert "libcuda.so.1" in FACTS.libcuda_error and FACTS.cuda_version is None
    for text in ort_logs.values():  # a missing cuBLAS, an "insufficient driver": the cause is no driver
        reason = probe.gpu_failure_reason("ort-cuda", text, FACTS, ORT_126, inventory=[])
        assert reason.startswith("no NVIDIA driver on this machine (cannot load libcuda.so.1")
        assert "\n" not in reason and ESC not in reason


def test_nvidia_smi_without_its_library_points_at_the_library_path():
    facts = driver.DriverFacts("libcuda.so.1: cannot open shared object file", "/usr/bin/nvidia-smi", None)
    reason = driver.no_driver_reason(facts, "ort-cuda")
    assert reason.startswith("nvidia-smi is at /usr/bin/nvidia-smi but libcuda.so.1 cannot be loaded")
    assert driver.no_driver_reason(WITH_DRIVER) is None


# --- cause 2: driver too old ----------------------------------------------------------------------------------------

def test_a_cuda_11_driver_is_too_old_for_the_cuda_12_build():
    old = driver.DriverFacts(None, "/usr/bin/nvidia-smi", "11.4")
    reason = probe.gpu_failure_reason("ort-cuda", "", old, ORT_126, inventory=[])
    assert reason.startswith("the NVIDIA driver supports CUDA 11.4, onnxruntime-gpu 1.26.0 is built for CUDA 12.8")
    assert "525.60.13" in reason
    assert driver.driver_too_old_reason(WITH_DRIVER, "12.8", "onnxruntime-gpu 1.26.0") is None
    cu13 = driver.driver_too_old_reason(WITH_DRIVER, "13.0", "onnxruntime-gpu 1.31.1")
    assert "580" in cu13 and "gpu extra's CUDA 12 build" in cu13


def test_cudas_insufficient_driver_error_is_the_driver_cause(ort_logs):
    """With a driver present, CUDA's own error 35 means that driver is too old for the runtime."""
    reason = probe.gpu_failure_reason("ort-cuda", ort_logs["preloaded"], WITH_DRIVER, ORT_126, inventory=[])
    assert reason.startswith("the NVIDIA driver supports CUDA 12.4, onnxruntime-gpu 1.26.0 is built for CUDA 12.8")


# --- cause 3: a library is missing ------------------------------------------------------------------------------------

def test_a_missing_cuda_library_is_named_with_the_command_that_installs_it(ort_logs):
    reason = probe.gpu_failure_reason("ort-cuda", ort_logs["cuda"], WITH_DRIVER, ORT_126, inventory=[])
    assert reason == 'onnxruntime-gpu 1.26.0 needs libcublasLt.so.12, which is not installed: pip install -e ".[gpu]"'


def test_tensorrt_missing_is_named_from_the_loader_not_the_cpp_signature(ort_logs):
    trt = ort_logs["trt"]
    assert probe.ep_error_message(trt).startswith("Please install TensorRT libraries as mentioned")
    reason = probe.gpu_failure_reason("ort-trt", trt, WITH_DRIVER, ORT_126, inventory=[])
    soname = driver.missing_library(trt)  # the loader's own line, when ORT logged it with the block
    if soname:
        assert reason == (f"onnxruntime-gpu 1.26.0 needs {soname}, which is not installed: "
                          f"{driver.install_hint_for_library(soname, '12.8')}")
    else:
        assert reason is None  # the caller then reports the EP Error's message
    if "trt_preloaded" in ort_logs:  # CUDA libraries loaded, TensorRT not installed: libnvinfer is the cause
        reason = probe.gpu_failure_reason("ort-trt", ort_logs["trt_preloaded"], WITH_DRIVER, ORT_126, inventory=[])
        assert reason.startswith("onnxruntime-gpu 1.26.0 needs libnvinfer") and reason.endswith('".[gpu,trt]"')


def test_install_hints_follow_the_builds_cuda():
    assert driver.install_hint_for_library("libnvinfer.so.10", "12.8") == 'pip install -e ".[gpu,trt]"'
    assert driver.install_hint_for_library("libnvinfer.so.10", "13.0") == 'pip install -e ".[gpu-cu13,trt-cu13]"'
    assert driver.install_hint_for_library("libcudnn.so.9", "13.0") == 'pip install -e ".[gpu-cu13]"'
    assert driver.install_hint_for_library("libcudnn.so.8", "11.7") == 'pip install -e ".[mxnet-gpu]"'


def test_the_ep_error_of_a_cuda_failure_is_its_cuda_message(ort_logs):
    assert probe.ep_error_message(ort_logs["preloaded"]) == \
        "CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version"
    assert probe.ep_error_message("2026 [I:onnxruntime:, x.cc:1 f] fine\n") is None


# --- cause 4: no kernel for this GPU -----------------------------------------------------------------------------------

def _elf_with_fatbin(path: Path, entries) -> Path:
    """A minimal ELF64 shared-object file whose ``.nv_fatbin`` holds ``entries`` ``(kind, arch, flags)``:
    the layout nvcc writes (container header, then 64-byte entry headers each followed by its payload)."""
    body = b""
    for kind, arch, flags in entries:
        payload = bytes(24)
        header = struct.pack("<HHIQIIHHIIIQQQ", kind, 0x0101, 64, len(payload), len(payload), 0, arch % 10,
                             arch // 10, arch, 0, 0, flags, 0, len(payload))
        body += header + payload
    fatbin = struct.pack("<IHHQ", cuda_code.FATBIN_MAGIC, 1, 16, len(body)) + body
    names = b"\0.shstrtab\0.nv_fatbin\0"
    data_at = 64
    names_at = data_at + len(fatbin)
    sections_at = names_at + len(names)
    elf = bytearray(b"\x7fELF\x02\x01\x01" + bytes(9))
    elf += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, sections_at, 0, 64, 0, 0, 64, 3, 1)
    elf += fatbin + names
    elf += bytes(64)  # the null section
    elf += struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)
    elf += struct.pack("<IIQQQQIIQQ", 11, 1, 2, 0, data_at, len(fatbin), 0, 0, 8, 0)
    path.write_bytes(bytes(elf))
    return path


def test_fatbin_headers_give_sass_and_ptx_with_the_architecture_specific_flag(tmp_path):
    library = _elf_with_fatbin(tmp_path / "libkernels.so", [
        (cuda_code.ENTRY_ELF, 60, 0x2011), (cuda_code.ENTRY_ELF, 86, 0x2011),
        (cuda_code.ENTRY_ELF, 90, 0x2011 | cuda_code.FLAG_ARCH_SPECIFIC), (cuda_code.ENTRY_PTX, 90, 0x2011)])
    code = cuda_code.read_cuda_code(library)
    assert code.sass == ("sm_60", "sm_86", "sm_90a") and code.ptx == ("compute_90",) and code.entries == 4
    assert cuda_code.kernel_for(code, (6, 1)) == "sm_60"  # same major, newer minor
    assert cuda_code.kernel_for(code, (8, 9)) == "sm_86"
    assert cuda_code.kernel_for(code, (9, 0)) == "sm_90a"
    assert cuda_code.kernel_for(code, (12, 0)).startswith("compute_90 (PTX")  # newer: only the PTX
    assert cuda_code.kernel_for(code, (5, 2)) is None and cuda_code.kernel_for(code, (7, 0)) is None
    reason = probe.gpu_failure_reason("ort-cuda", "", WITH_DRIVER, ORT_126,
                                      inventory=[GpuInfo(0, "Quadro M6000", "5.2", "535.54", 12288)],
                                      cuda_code=code)
    assert reason.startswith("onnxruntime-gpu 1.26.0's CUDA provider has no kernel for Quadro M6000 "
                             "(compute capability 5.2): it holds SASS for sm_60, sm_86, sm_90a and compute_90")
    assert probe.gpu_failure_reason("ort-cuda", "", WITH_DRIVER, ORT_126,
                                    inventory=[GpuInfo(0, "NVIDIA H100", "9.0", "550", 81559)], cuda_code=code) is None


def test_a_cpu_library_holds_no_gpu_code():
    cpu_library = Path(sys.executable).resolve()
    with pytest.raises(cuda_code.NotACudaLibrary, match="no .nv_fatbin section"):
        cuda_code.read_cuda_code(cpu_library)
    with pytest.raises(cuda_code.NotACudaLibrary, match="not a 64-bit"):
        cuda_code.read_cuda_code(Path(__file__))


@pytest.mark.skipif(not ORT_GPU, reason="onnxruntime-gpu is not installed (the gpu-nodriver tox env installs it)")
def test_the_installed_cuda_provider_matches_the_support_matrix_page():
    code = probe.provider_cuda_code()
    assert code is not None and code.sass and all(label.startswith("sm_") for label in code.sass)
    tools = Path(__file__).resolve().parents[2] / "tools" / "gpu_support_matrix.py"
    page = tools.parents[1] / "docs" / "gpus.md"
    proc = subprocess.run([sys.executable, str(tools), "--check", str(page), "--require-build"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- cause 5 and colour codes ---------------------------------------------------------------------------------------

def test_colour_codes_never_reach_a_reason():
    assert summarize_error(CAPTURED_CUDA_LOG).count(ESC) == 0
    assert ESC not in probe.first_error_line(CAPTURED_CUDA_LOG)
    assert "libcublasLt.so.12: cannot open shared object file" in probe.first_error_line(CAPTURED_CUDA_LOG)


# --- numbering: CUDA_DEVICE_ORDER -------------------------------------------------------------------------------------

def test_every_process_that_may_start_cuda_numbers_gpus_by_pci_bus(monkeypatch):
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    assert worker_env(2)["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    code = ("import os; from vggbench.platform import mxnet as m\n"
            "try:\n    m.import_mxnet()\nexcept Exception:\n    pass\n"
            "print(os.environ['CUDA_DEVICE_ORDER'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, CUDA_DEVICE_ORDER="FASTEST_FIRST"))
    assert proc.stdout.strip().splitlines()[-1] == "PCI_BUS_ID", proc.stderr


# --- files two distributions own ----------------------------------------------------------------------------------------

def _dist_info(site: Path, name: str, files) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    rows = [f"{path},sha256=x,{size}" for path, size in files] + [f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    for path, size in files:  # real files: the importlib_metadata backport lists only files that exist
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(b"x" * size)


def test_installed_records_that_share_a_file_are_found(tmp_path):
    _dist_info(tmp_path, "nvidia-curand-cu11", [("nvidia/__init__.py", 0), ("nvidia/curand/lib/libcurand.so.10", 9)])
    _dist_info(tmp_path, "nvidia-curand-cu12", [("nvidia/__init__.py", 0), ("nvidia/curand/lib/libcurand.so.10", 7)])
    _dist_info(tmp_path, "nvidia-cublas-cu12", [("nvidia/cublas/lib/libcublas.so.12", 5)])
    clashes = libraries.installed_file_clashes(metadata.distributions(path=[str(tmp_path)]))
    assert clashes == {str(tmp_path / "nvidia/curand/lib/libcurand.so.10"): ["nvidia-curand-cu11", "nvidia-curand-cu12"]}
    from vggbench.doctor import file_clash_notes

    (note,) = file_clash_notes(clashes)
    assert note.startswith("nvidia-curand-cu11 and nvidia-curand-cu12 install the same 1 file(s)") and "two venvs" in note


def test_this_environment_has_no_file_owned_twice():
    """Every extra installs a consistent set (tools/check_extras.py checks the wheels before install)."""
    assert libraries.installed_file_clashes() == {}
