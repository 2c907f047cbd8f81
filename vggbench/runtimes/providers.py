"""ONNX Runtime's CUDA and TensorRT execution providers: preloading, and options that mean what they say.

TF32 is off unless the precision is ``tf32`` (``use_tf32=0`` and ``NVIDIA_TF32_OVERRIDE=0``, read
once per process, so fp32 and tf32 rows run in separate workers); TensorRT gets engine and timing
caches under the run dir's cache folder and one explicit min/opt/max shape profile.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from vggbench.errors import VggbenchError
from vggbench.platform.driver import use_pci_bus_order
from vggbench.platform.gpu import parse_compute_capability
from vggbench.platform.libraries import _ort_version_tag, loaded_cuda_libraries, ort_build, preload_tensorrt
from vggbench.runtimes.backends import BACKENDS

# --- ONNX Runtime ---------------------------------------------------------------------------------------

CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
TF32_OVERRIDE_VAR = "NVIDIA_TF32_OVERRIDE"




def preload_ort_cuda(tensorrt: bool = False) -> Dict[str, Any]:
    """Load the CUDA 12/13 + cuDNN 9 libraries of the ``gpu`` extra (``onnxruntime.preload_dlls``,
    ORT >= 1.21) and, with ``tensorrt``, TensorRT 10's from ``tensorrt_libs``, before a GPU session.

    Parameters:
        tensorrt: also load TensorRT (for ``ort-trt``).

    Returns ``{"preload_dlls": what happened, "messages": what it printed (failures), "tensorrt":
    the TensorRT libraries loaded, "loaded": the CUDA-stack libraries now in the process}``.
    Never raises for a missing library: the session's own check reports it.
    """
    import onnxruntime as ort

    use_pci_bus_order()  # before CUDA starts in this process: device_id N is nvidia-smi's GPU N
    report: Dict[str, Any] = {"messages": [], "tensorrt": []}
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        report["preload_dlls"] = (f"not in onnxruntime {ort.__version__} (added in 1.21): CUDA libraries "
                                  f"must be on the library path")
    elif not ort_build()["cuda_version"]:
        report["preload_dlls"] = "skipped: this onnxruntime is a CPU build"
    else:
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                preload(cuda=True, cudnn=True, msvc=False)
            report["preload_dlls"] = "ran"
        except Exception as err:  # noqa: BLE001 - reported; the session check decides
            report["preload_dlls"] = f"failed: {type(err).__name__}: {err}"
        report["messages"] = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
    if tensorrt:
        try:
            report["tensorrt"] = preload_tensorrt()
        except VggbenchError as err:
            report["messages"].append(str(err))
    report["loaded"] = loaded_cuda_libraries()
    return report


def cuda_provider_options(device_id: int = 0, tf32: bool = False, conv_algo_search: str = "EXHAUSTIVE",
                          conv_use_max_workspace: bool = True,
                          gpu_mem_limit_bytes: Optional[int] = None) -> Dict[str, str]:
    """Options for ONNX Runtime's ``CUDAExecutionProvider``.

    Parameters:
        device_id: the GPU, in CUDA's numbering.
        tf32: allow TF32 tensor cores for float32 MatMul/Conv (``use_tf32``). ONNX Runtime's default
            is on, which makes an "fp32" row really TF32: off unless the precision is ``tf32``
            (:func:`tf32_for_precision`).
        conv_algo_search: cuDNN's algorithm search, one of :data:`CUDNN_CONV_ALGO_SEARCH`.
        conv_use_max_workspace: let cuDNN choose algorithms that need a large workspace.
        gpu_mem_limit_bytes: the CUDA arena's limit; None or 0 for none.
    """
    if conv_algo_search not in CUDNN_CONV_ALGO_SEARCH:
        raise VggbenchError(f"cudnn_conv_algo_search {conv_algo_search!r} is not one of "
                            f"{', '.join(CUDNN_CONV_ALGO_SEARCH)}")
    if int(device_id) < 0:
        raise VggbenchError(f"GPU device id must be >= 0, got {device_id}")
    options = {"device_id": str(int(device_id)), "use_tf32": "1" if tf32 else "0",
               "cudnn_conv_algo_search": conv_algo_search,
               "cudnn_conv_use_max_workspace": "1" if conv_use_max_workspace else "0"}
    if gpu_mem_limit_bytes:
        options["gpu_mem_limit"] = str(int(gpu_mem_limit_bytes))
    return options


def tf32_for_precision(precision: str) -> bool:
    """TF32 is allowed only in rows whose precision says so (``tf32``); fp32 means IEEE fp32."""
    return precision == "tf32"


def tf32_environment(precision: str) -> Dict[str, str]:
    """Environment for a GPU worker process running ``precision``.

    ``NVIDIA_TF32_OVERRIDE=0`` makes cuBLAS and cuDNN (MXNet's convolutions and GEMMs, ONNX
    Runtime's CUDA kernels) and, per NVIDIA's TensorRT guide, TensorRT's engine builder use no TF32:
    ONNX Runtime's TensorRT EP has no option of its own to clear TensorRT's default-on TF32 flag.
    It is read once per process, so fp32 and tf32 rows must run in different processes.
    ``tf32`` rows get ``{}`` (the libraries' defaults: TF32 on Ampere and newer).
    """
    return {} if tf32_for_precision(precision) else {TF32_OVERRIDE_VAR: "0"}


def gpu_precision_unavailable_reason(precision: str, compute_capability: Any,
                                     gpu_name: str = "this GPU") -> Optional[str]:
    """Why a GPU of ``compute_capability`` cannot run ``precision`` (hardware only; which backend
    runs which precision is :func:`vggbench.runtimes.backends.unsupported_reason`), or None.

    Parameters:
        precision: ``fp32``, ``tf32``, ``fp16``, ...
        compute_capability: e.g. ``"8.6"``; None (unknown) is no reason.
        gpu_name: for the message.
    """
    cc = parse_compute_capability(compute_capability)
    if cc is None:
        return None
    if precision == "tf32" and cc < (8, 0):
        return f"TF32 needs compute capability 8.0 or newer (Ampere); {gpu_name} is {cc[0]}.{cc[1]}"
    if precision == "fp16" and cc < (5, 3):
        return f"fp16 arithmetic needs compute capability 5.3 or newer; {gpu_name} is {cc[0]}.{cc[1]}"
    return None




def tensorrt_cache_root(cache_dir: Any) -> Path:
    """The folder holding every TensorRT engine and timing cache under a run dir's cache folder
    ``cache_dir`` (what :func:`tensorrt_cache_dirs` fills, and what one lock guards)."""
    return Path(cache_dir) / "tensorrt"


def tensorrt_cache_dirs(cache_dir: Any, precision: str) -> Tuple[Path, Path]:
    """``(engine cache, timing cache)`` folders under a run dir's cache folder, created.

    Parameters:
        cache_dir: the run dir's cache folder.
        precision: the row's precision: engines are per precision (ONNX Runtime's engine file
            name marks fp16 but not TF32 on/off) and per ONNX Runtime + TensorRT version (an engine
            is tied to the TensorRT that built it). The timing cache (per layer and GPU) is shared.
    """
    base = tensorrt_cache_root(cache_dir)
    engines, timing = base / f"engines-{precision}-{_ort_version_tag()}", base / "timing"
    engines.mkdir(parents=True, exist_ok=True)
    timing.mkdir(parents=True, exist_ok=True)
    return engines, timing


def trt_profile_shapes(input_name: str, input_shape_chw: Sequence[int], batch_sizes: Sequence[int],
                       opt_batch_size: Optional[int] = None) -> Dict[str, str]:
    """One explicit TensorRT optimization profile covering ``batch_sizes``.

    Parameters:
        input_name: the model's input (``data`` in vggbench's exports).
        input_shape_chw: ``(channels, height, width)``.
        batch_sizes: every batch size the session will see, timed runs and accuracy passes alike
            (a batch outside [min, max] fails at run time).
        opt_batch_size: the size TensorRT tunes its kernels for; default the largest.

    Returns the ``trt_profile_min_shapes``/``opt``/``max`` options (``data:1x1x96x96``).
    """
    if not input_name or ":" in input_name or "," in input_name:
        raise VggbenchError(f"input name {input_name!r} cannot be written into a TensorRT profile")
    shape = [int(dim) for dim in input_shape_chw]
    if len(shape) != 3 or min(shape) < 1:
        raise VggbenchError(f"input shape must be (channels, height, width) > 0, got {tuple(input_shape_chw)}")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise VggbenchError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    opt = sizes[-1] if opt_batch_size is None else int(opt_batch_size)
    if not sizes[0] <= opt <= sizes[-1]:
        raise VggbenchError(f"opt batch size {opt} is outside the profile's range {sizes[0]}..{sizes[-1]}")

    def dims(batch: int) -> str:
        return f"{input_name}:{'x'.join(str(d) for d in [batch] + shape)}"

    return {"trt_profile_min_shapes": dims(sizes[0]), "trt_profile_opt_shapes": dims(opt),
            "trt_profile_max_shapes": dims(sizes[-1])}


def tensorrt_provider_options(device_id: int, cache_dir: Any, input_name: str, input_shape_chw: Sequence[int],
                              batch_sizes: Sequence[int], precision: str = "fp32",
                              opt_batch_size: Optional[int] = None,
                              max_workspace_bytes: Optional[int] = None) -> Dict[str, str]:
    """Options for ONNX Runtime's ``TensorrtExecutionProvider`` that build each engine once.

    Parameters:
        device_id: the GPU, in CUDA's numbering.
        cache_dir: the run dir's cache folder: engines and the timing cache go under
            ``cache_dir/tensorrt`` (:func:`tensorrt_cache_dirs`), so a second session (next
            precision, next sweep) loads the engine instead of rebuilding it during warm-up.
        input_name, input_shape_chw, batch_sizes, opt_batch_size: the explicit profile
            (:func:`trt_profile_shapes`): with it the engine is built when the session is created,
            so session creation time is the engine build time, outside the timed loop.
        precision: ``fp32``, ``tf32`` or ``fp16`` (``trt_fp16_enable``; for the fp16 ONNX file).
            TF32 is switched by the process environment (:func:`tf32_environment`).
        max_workspace_bytes: TensorRT's workspace limit; None keeps ONNX Runtime's default.
    """
    allowed = BACKENDS["ort-trt"].precisions
    if precision not in allowed:
        raise VggbenchError(f"ort-trt runs {', '.join(allowed)}, not {precision!r}")
    if int(device_id) < 0:
        raise VggbenchError(f"GPU device id must be >= 0, got {device_id}")
    profile = trt_profile_shapes(input_name, input_shape_chw, batch_sizes, opt_batch_size)
    engines, timing = tensorrt_cache_dirs(cache_dir, precision)
    options = {"device_id": str(int(device_id)), "trt_fp16_enable": "1" if precision == "fp16" else "0",
               "trt_engine_cache_enable": "1", "trt_engine_cache_path": str(engines),
               "trt_timing_cache_enable": "1", "trt_timing_cache_path": str(timing), **profile}
    if max_workspace_bytes:
        options["trt_max_workspace_size"] = str(int(max_workspace_bytes))
    return options
