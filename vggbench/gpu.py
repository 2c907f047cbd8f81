"""GPU facts and decisions: what is installed, what can run, and with which options.

Everything here is written against the real interfaces (``nvidia-smi --query-gpu``, ONNX Runtime's
CUDA/TensorRT provider options, ``onnxruntime.preload_dlls``, the ``nvidia-*`` wheels' layout in
site-packages) and split so that each decision is a pure function of facts that a test can build
on a machine without a GPU:

- **Inventory**: :func:`gpu_inventory` runs ``nvidia-smi`` (none -> ``[]``);
  :func:`parse_nvidia_smi_csv` reads its output; :func:`visible_gpus` applies
  ``CUDA_VISIBLE_DEVICES`` so index *i* is what CUDA calls device *i*.
- **MXNet on a GPU**: ``mxnet-cu117`` carries kernels for sm_50/60/70/80/86 and no PTX, so it runs on
  compute capability 5.x-8.9 and never on Hopper (9.0) or newer
  (:func:`mxnet_gpu_unavailable_reason`). :func:`resolve_mxnet_context` turns ``--ctx`` into GPU
  indices: ``auto`` falls back to the CPU with a sentence saying why, ``gpu`` there is a one-line
  error naming the cause.
- **Libraries**: ``mxnet-cu117`` links CUDA 11.7 / cuDNN 8 / NCCL 2 libraries it does not bundle;
  the ``mxnet-gpu`` extra installs them as ``nvidia-*-cu11`` wheels (``site-packages/nvidia/<part>/lib``)
  and :func:`preload_cuda11_for_mxnet` loads them (``RTLD_GLOBAL``, dependency order) before mxnet
  is imported. Resolution (:func:`resolve_cuda11_for_mxnet`) is separate from loading, so it is
  tested on a tree of real files. :func:`preload_ort_cuda` does the same for ONNX Runtime
  (``onnxruntime.preload_dlls()``, plus TensorRT from the ``tensorrt_libs`` package).
- **Honest availability**: :func:`probe_ort_backend` creates a session on a tiny real model, checks
  from ONNX Runtime's own profile that the compute nodes ran on the provider, and compares one
  inference with numpy. ``get_available_providers()`` alone lists CUDA and TensorRT with no GPU.
- **Options that mean what they say**: :func:`cuda_provider_options` turns TF32 off unless the
  precision is ``tf32``; :func:`tf32_environment` does the same for cuBLAS/cuDNN/TensorRT through
  ``NVIDIA_TF32_OVERRIDE=0`` (read once per process: fp32 and tf32 rows need separate processes);
  :func:`tensorrt_provider_options` gives TensorRT engine and timing caches under the run dir's
  cache folder and one explicit min/opt/max profile from the batch sizes to be run.
- **Versions**: :func:`gpu_versions` (driver, CUDA, cuDNN, TensorRT, ORT build, GPU name and
  compute capability) for every result.

Nothing in this module has run on a GPU yet (this project's machine has none); what a GPU would
decide is tested with the facts a GPU machine reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.backends import BACKENDS
from vggbench.errors import VggbenchError, summarize_error

# --- inventory: nvidia-smi -----------------------------------------------------------------------------

# ``name`` last: the one field that could hold a comma.
NVIDIA_SMI_FIELDS = ("index", "uuid", "compute_cap", "driver_version", "memory.total", "name")
_NOT_AVAILABLE = ("", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` reports it (PCI bus order, before ``CUDA_VISIBLE_DEVICES``)."""

    index: int
    name: str
    compute_capability: Optional[str]  # "9.0"; None when the driver cannot report it (< 510)
    driver_version: Optional[str]
    memory_total_mib: Optional[int]
    uuid: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _value(text: str) -> Optional[str]:
    text = text.strip()
    return None if text in _NOT_AVAILABLE else text


def parse_nvidia_smi_csv(text: str, fields: Sequence[str] = NVIDIA_SMI_FIELDS) -> List[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` output.

    Parameters:
        text: the command's stdout, one line per GPU, values separated by ``", "``.
        fields: the queried fields in order; ``name`` must be last (it is re-joined if it holds a
            comma). ``memory.total`` may carry a `` MiB`` unit (output without ``nounits``).

    Lines with too few values (a warning line, a blank line) are skipped.
    """
    if fields[-1] != "name":
        raise ValueError("the name field must be queried last")
    rows = []
    for number, line in enumerate(text.splitlines()):
        parts = line.split(",", len(fields) - 1)
        if len(parts) != len(fields):
            continue
        values = dict(zip(fields, parts))
        memory = _value(values.get("memory.total", ""))
        match = re.match(r"^(\d+)", memory or "")
        index = _value(values.get("index", ""))
        rows.append(GpuInfo(
            index=int(index) if index and index.isdigit() else number,
            name=values["name"].strip(),
            compute_capability=_value(values.get("compute_cap", "")),
            driver_version=_value(values.get("driver_version", "")),
            memory_total_mib=int(match.group(1)) if match else None,
            uuid=_value(values.get("uuid", ""))))
    return rows


def nvidia_smi_command(executable: str = "nvidia-smi", fields: Sequence[str] = NVIDIA_SMI_FIELDS) -> List[str]:
    """The ``nvidia-smi`` query :func:`gpu_inventory` runs (``executable``: its path)."""
    return [executable, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def gpu_inventory(nvidia_smi: Optional[str] = None, timeout_s: float = 20.0) -> List[GpuInfo]:
    """The NVIDIA GPUs of this machine; ``[]`` when there is no ``nvidia-smi`` or it fails.

    Parameters:
        nvidia_smi: the ``nvidia-smi`` executable; None looks it up on ``PATH``.
        timeout_s: how long the query may take.

    Drivers older than 510 cannot report ``compute_cap``: the query is then repeated without it
    and ``compute_capability`` is None.
    """
    executable = nvidia_smi or shutil.which("nvidia-smi")
    if not executable:
        return []
    fields = NVIDIA_SMI_FIELDS
    for attempt in range(2):
        try:
            proc = subprocess.run(nvidia_smi_command(executable, fields), capture_output=True, text=True,
                                  timeout=timeout_s)
        except (OSError, subprocess.SubprocessError):
            return []
        if proc.returncode == 0:
            return parse_nvidia_smi_csv(proc.stdout, fields)
        if attempt == 0 and "compute_cap" in proc.stdout + proc.stderr:
            fields = tuple(field for field in fields if field != "compute_cap")
            continue
        return []
    return []


def visible_gpus(inventory: Sequence[GpuInfo], cuda_visible_devices: Optional[str] = None) -> List[GpuInfo]:
    """``inventory`` in CUDA's numbering: what ``gpu(i)`` / ``device_id=i`` means in this process.

    Parameters:
        inventory: :func:`gpu_inventory`'s list.
        cuda_visible_devices: the ``CUDA_VISIBLE_DEVICES`` value (None or unset: all GPUs, in
            nvidia-smi's order, which is CUDA's too unless ``CUDA_DEVICE_ORDER`` says otherwise).
            Entries are indices or UUID prefixes (``GPU-5e6c``); as in CUDA, the list ends at the
            first entry that names no GPU. MIG instances (``MIG-...``) cannot be matched to a GPU
            here: the result is then ``[]`` (unknown), never a wrong GPU.
    """
    if cuda_visible_devices is None:
        return list(inventory)
    visible = []
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if entry.isdigit():
            found = [gpu for gpu in inventory if gpu.index == int(entry)]
        elif entry.startswith("GPU-"):
            found = [gpu for gpu in inventory if gpu.uuid and gpu.uuid.startswith(entry)]
        elif entry.startswith("MIG-"):
            return []
        else:
            found = []
        if len(found) != 1 or found[0] in visible:
            break
        visible.append(found[0])
    return visible


def visible_inventory() -> List[GpuInfo]:
    """This process's GPUs in CUDA's numbering (:func:`gpu_inventory` + :func:`visible_gpus`)."""
    return visible_gpus(gpu_inventory(), os.environ.get("CUDA_VISIBLE_DEVICES"))


def parse_compute_capability(value: Any) -> Optional[Tuple[int, int]]:
    """``"8.6"`` (or ``8.6``, ``(8, 6)``) -> ``(8, 6)``; None when unknown or unreadable."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    match = re.match(r"^\s*(\d+)\.(\d+)\s*$", str(value))
    return (int(match.group(1)), int(match.group(2))) if match else None


# --- MXNet on a GPU ------------------------------------------------------------------------------------

MXNET_GPU_DISTRIBUTION = "mxnet-cu117"
# mxnet-cu117 1.9.1's libmxnet.so holds SASS for these and no PTX. A cubin runs on its own major
# version with an equal or higher minor (sm_86 code runs on 8.9), never on another major.
MXNET_CU117_ARCHITECTURES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))


def mxnet_cu117_runs_on(compute_capability: Any) -> Optional[bool]:
    """Whether mxnet-cu117's kernels run on ``compute_capability`` (``"9.0"``); None if unknown."""
    cc = parse_compute_capability(compute_capability)
    if cc is None:
        return None
    return any(cc[0] == major and cc[1] >= minor for major, minor in MXNET_CU117_ARCHITECTURES)


def mxnet_gpu_unavailable_reason(compute_capability: Any, gpu_name: str = "this GPU",
                                 mxnet_has_cuda: bool = True) -> Optional[str]:
    """Why MXNet cannot compute on this GPU, or None when it can (as far as facts tell).

    Parameters:
        compute_capability: the GPU's, e.g. ``"9.0"``; None (unknown) is not a reason: the
            caller's kernel launch decides then.
        gpu_name: the GPU's name, for the message.
        mxnet_has_cuda: False for the CPU build of mxnet (``mx.runtime.Features()['CUDA']``).
    """
    if not mxnet_has_cuda:
        return ("this mxnet is the CPU build (no CUDA); for MXNet on the GPU install the mxnet-gpu extra "
                "(mxnet-cu117 + CUDA 11 libraries) on a Maxwell-to-Ada GPU")
    if mxnet_cu117_runs_on(compute_capability) is False:
        cc = parse_compute_capability(compute_capability)
        newer = cc > MXNET_CU117_ARCHITECTURES[-1]
        return (f"{MXNET_GPU_DISTRIBUTION} has no kernels for {gpu_name} (compute capability {cc[0]}.{cc[1]}, "
                f"sm_{cc[0]}{cc[1]}): it was built for sm_50-sm_86 without PTX"
                + ("; no newer MXNet wheel exists, use ort-cuda/ort-trt on this GPU" if newer else ""))
    return None


def _parse_ctx(spec: str) -> Optional[List[int]]:
    """``--ctx`` -> None for ``auto``, ``[]`` for ``cpu``, else the GPU indices."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return None
    if spec == "cpu":
        return []
    indices: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        if part == "gpu":
            index = 0
        elif part.startswith("gpu:") and part[4:].isdigit():
            index = int(part[4:])
        else:
            raise VggbenchError(f"--ctx {spec!r}: cannot read {part!r}; use auto, cpu, gpu or a list like gpu:0,gpu:1")
        if index in indices:
            raise VggbenchError(f"--ctx {spec!r} lists gpu:{index} twice")
        indices.append(index)
    return indices


def resolve_mxnet_context(spec: str, mxnet_gpu_count: int, inventory: Sequence[GpuInfo] = (),
                          mxnet_has_cuda: bool = True) -> Tuple[List[int], str]:
    """Turn ``--ctx`` into the GPU indices MXNet should train on (``[]`` = CPU) plus a sentence.

    Parameters:
        spec: ``auto``, ``cpu``, ``gpu``, ``gpu:N`` or a list ``gpu:0,gpu:1``.
        mxnet_gpu_count: what MXNet counts (``mx.context.num_gpus()``; 0 for the CPU build).
        inventory: the GPUs in CUDA's numbering (:func:`visible_inventory`), for their compute
            capability; empty when unknown.
        mxnet_has_cuda: False for the CPU build of mxnet.

    ``auto`` uses gpu(0) only when MXNet can compute there and says otherwise why it trains on the
    CPU (e.g. on Hopper). An explicit GPU that MXNet cannot use is a one-line VggbenchError naming
    the cause.
    """
    indices = _parse_ctx(spec)
    label = (spec or "auto").strip().lower()
    by_index = dict(enumerate(inventory))
    if indices is None:
        if mxnet_gpu_count < 1:
            cause = "this mxnet is the CPU build" if not mxnet_has_cuda else "MXNet sees no GPU"
            return [], f"--ctx auto: {cause}, training on CPU"
        gpu = by_index.get(0)
        reason = gpu and mxnet_gpu_unavailable_reason(gpu.compute_capability, gpu.name, mxnet_has_cuda)
        if reason:
            return [], f"--ctx auto: training on CPU: {reason}"
        return [0], f"--ctx auto: MXNet sees {mxnet_gpu_count} GPU(s), training on gpu(0)"
    if not indices:
        return [], "--ctx cpu: training on CPU"
    if mxnet_gpu_count < 1:
        cause = "this mxnet is the CPU build" if not mxnet_has_cuda else "CPU-only mxnet build or no CUDA device"
        raise VggbenchError(f"--ctx {label}: MXNet sees no GPU ({cause}); use --ctx cpu, or install the "
                            f"mxnet-gpu extra (mxnet-cu117) on a machine with a Maxwell-to-Ada GPU")
    missing = [index for index in indices if index >= mxnet_gpu_count]
    if missing:
        raise VggbenchError(f"--ctx {label}: MXNet sees {mxnet_gpu_count} GPU(s) (gpu:0..gpu:{mxnet_gpu_count - 1}), "
                            f"there is no gpu:{missing[0]}")
    for index in indices:
        gpu = by_index.get(index)
        reason = gpu and mxnet_gpu_unavailable_reason(gpu.compute_capability, gpu.name, mxnet_has_cuda)
        if reason:
            raise VggbenchError(f"--ctx {label}: gpu:{index}: {reason}; train with --ctx cpu")
    return indices, f"--ctx {label}: training on {', '.join(f'gpu({i})' for i in indices)}"


# --- installed distributions -----------------------------------------------------------------------------

def installed_distributions(prefixes: Sequence[str]) -> Dict[str, str]:
    """``{distribution name: version}`` of every installed distribution whose name starts with
    one of ``prefixes`` (case-insensitive, ``_`` read as ``-``)."""
    found: Dict[str, str] = {}
    wanted = tuple(prefix.lower() for prefix in prefixes)
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(wanted):
            found.setdefault(name, dist.version)
    return dict(sorted(found.items()))


def mxnet_distributions() -> Dict[str, str]:
    """The installed mxnet distributions: ``{"mxnet": "1.9.1"}`` (CPU) or ``{"mxnet-cu117": ...}``.
    Two at once share one ``mxnet/`` folder, whichever was installed last wins: doctor says so."""
    return {name: version for name, version in installed_distributions(["mxnet"]).items()
            if name == "mxnet" or re.match(r"^mxnet-(cu\d+|native|mkl)", name)}


def mxnet_is_gpu_build() -> bool:
    """Whether the installed mxnet is a CUDA build (a ``mxnet-cu*`` distribution), without importing it."""
    return any(name.startswith("mxnet-cu") for name in mxnet_distributions())


# --- native libraries ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NativeLibrary:
    """One shared library a GPU build needs: ``site-packages/nvidia/<component>/lib/<soname>``."""

    component: str
    soname: str
    required: bool = True
    package: str = ""


# What mxnet-cu117's libmxnet.so links (checked in the wheels the mxnet-gpu extra pins), in an
# order where each library's own dependencies come first: libcublas needs libcublasLt, libcusolver
# needs both, cuDNN's parts need cuBLAS and each other. cuDNN 8 opens its parts by soname on first
# use: loading them here (when present) makes that lookup find them already in the process.
CUDA11_LIBRARIES_FOR_MXNET: Tuple[NativeLibrary, ...] = (
    NativeLibrary("cuda_runtime", "libcudart.so.11.0", package="nvidia-cuda-runtime-cu11"),
    NativeLibrary("cuda_nvrtc", "libnvrtc.so.11.2", package="nvidia-cuda-nvrtc-cu11"),
    NativeLibrary("nvtx", "libnvToolsExt.so.1", package="nvidia-nvtx-cu11"),
    NativeLibrary("cublas", "libcublasLt.so.11", package="nvidia-cublas-cu11"),
    NativeLibrary("cublas", "libcublas.so.11", package="nvidia-cublas-cu11"),
    NativeLibrary("cufft", "libcufft.so.10", package="nvidia-cufft-cu11"),
    NativeLibrary("curand", "libcurand.so.10", package="nvidia-curand-cu11"),
    NativeLibrary("cusparse", "libcusparse.so.11", package="nvidia-cusparse-cu11"),
    NativeLibrary("cusolver", "libcusolver.so.11", package="nvidia-cusolver-cu11"),
    NativeLibrary("cudnn", "libcudnn_ops_infer.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn_ops_train.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn_cnn_infer.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn_cnn_train.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn_adv_infer.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn_adv_train.so.8", required=False, package="nvidia-cudnn-cu11"),
    NativeLibrary("cudnn", "libcudnn.so.8", package="nvidia-cudnn-cu11"),
    NativeLibrary("nccl", "libnccl.so.2", package="nvidia-nccl-cu11"),
)
# What ONNX Runtime's TensorRT EP (1.22-1.31) links from TensorRT 10; the tensorrt-cu1x-libs wheels
# put them flat in site-packages/tensorrt_libs/.
TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10")
# Substrings that mark a CUDA-stack library in /proc/self/maps.
CUDA_LIBRARY_KEYWORDS = ("libcuda.so", "libcudart", "libcublas", "libcudnn", "libcufft", "libcurand",
                         "libcusolver", "libcusparse", "libnvrtc", "libnccl", "libnvToolsExt", "libnvinfer",
                         "libnvonnxparser", "libnvJitLink", "libonnxruntime_providers")

_preloaded: Dict[str, List[str]] = {}


def _search_path(site_packages: Optional[Iterable[Any]]) -> List[Path]:
    if site_packages is None:
        site_packages = [entry for entry in sys.path if entry]
    return [Path(entry) for entry in site_packages]


def nvidia_library_dirs(site_packages: Optional[Iterable[Any]] = None) -> Dict[str, Path]:
    """``{component: site-packages/nvidia/<component>/lib}`` for every nvidia-* wheel found.

    Parameters:
        site_packages: folders to look in, first match wins; None means ``sys.path`` (the venv's
            site-packages, the user site, PYTHONPATH).
    """
    dirs: Dict[str, Path] = {}
    for root in _search_path(site_packages):
        nvidia = root / "nvidia"
        if not nvidia.is_dir():
            continue
        for lib in sorted(nvidia.glob("*/lib")):
            if lib.is_dir():
                dirs.setdefault(lib.parent.name, lib)
    return dirs


def resolve_libraries(libraries: Sequence[NativeLibrary],
                      site_packages: Optional[Iterable[Any]] = None) -> Tuple[List[Path], List[NativeLibrary]]:
    """Where each of ``libraries`` is in the nvidia-* wheels, in load order, and the required ones
    that are not there (optional ones that are missing are left out).

    Parameters:
        libraries: what to find, in dependency order (e.g. :data:`CUDA11_LIBRARIES_FOR_MXNET`).
        site_packages: as for :func:`nvidia_library_dirs`.
    """
    dirs = nvidia_library_dirs(site_packages)
    found, missing = [], []
    for library in libraries:
        path = dirs.get(library.component, Path("/nonexistent")) / library.soname
        if path.is_file():
            found.append(path)
        elif library.required:
            missing.append(library)
    return found, missing


def resolve_cuda11_for_mxnet(site_packages: Optional[Iterable[Any]] = None) -> Tuple[List[Path], List[NativeLibrary]]:
    """:func:`resolve_libraries` for mxnet-cu117's CUDA 11 libraries (:data:`CUDA11_LIBRARIES_FOR_MXNET`)."""
    return resolve_libraries(CUDA11_LIBRARIES_FOR_MXNET, site_packages)


def load_library(path_or_soname: Any) -> str:
    """``dlopen`` one library with ``RTLD_GLOBAL`` (its symbols serve libraries loaded later);
    a path loads that file, a bare soname goes through the system search (``LD_LIBRARY_PATH``,
    ldconfig). Returns what was loaded; raises VggbenchError with the loader's message."""
    name = str(path_or_soname)
    try:
        ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        raise VggbenchError(f"cannot load {name}: {summarize_error(err)}") from None
    return name


def preload_cuda11_for_mxnet(site_packages: Optional[Iterable[Any]] = None) -> List[str]:
    """Load the CUDA 11.7 / cuDNN 8 / NCCL 2 libraries mxnet-cu117 links, before mxnet is imported.

    Parameters:
        site_packages: folders holding ``nvidia/<component>/lib`` (None: ``sys.path``).

    Each library comes from the nvidia-*-cu11 wheels when there, else from the system search path
    (a CUDA 11 toolkit on ``LD_LIBRARY_PATH`` works too). Returns what was loaded, in order (once
    per process: later calls return the first result). A required library found nowhere is a
    one-line VggbenchError naming it and the extra that installs it.
    """
    if "mxnet" in _preloaded:
        return list(_preloaded["mxnet"])
    found, _ = resolve_cuda11_for_mxnet(site_packages)
    by_name = {path.name: path for path in found}
    loaded = []
    for library in CUDA11_LIBRARIES_FOR_MXNET:
        if library.soname not in by_name and not library.required:
            continue
        try:
            loaded.append(load_library(by_name.get(library.soname, library.soname)))
        except VggbenchError as err:
            where = "site-packages/nvidia/" + library.component + "/lib"
            raise VggbenchError(f"{MXNET_GPU_DISTRIBUTION} needs {library.soname} (from {library.package}), found "
                                f"neither in {where} nor on the library path ({err}); install the CUDA 11 "
                                f"libraries with pip install -e \".[mxnet-gpu]\"") from None
    _preloaded["mxnet"] = loaded
    return list(loaded)


def mapped_libraries(maps_text: Optional[str] = None) -> List[str]:
    """Paths of the shared libraries mapped into this process (``/proc/self/maps``), in first-seen
    order; ``maps_text`` parses a given maps text instead. Empty off Linux."""
    if maps_text is None:
        try:
            maps_text = Path("/proc/self/maps").read_text()
        except OSError:
            return []
    seen: Dict[str, None] = {}
    for line in maps_text.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].startswith("/") and ".so" in parts[5]:
            seen.setdefault(parts[5].strip(), None)
    return list(seen)


def loaded_cuda_libraries(maps_text: Optional[str] = None) -> List[str]:
    """The CUDA-stack libraries (:data:`CUDA_LIBRARY_KEYWORDS`) mapped into this process."""
    return [path for path in mapped_libraries(maps_text)
            if any(keyword in os.path.basename(path) for keyword in CUDA_LIBRARY_KEYWORDS)]


def tensorrt_library_dir() -> Optional[Path]:
    """The ``tensorrt_libs`` package folder (tensorrt-cu12-libs / tensorrt-cu13-libs), found
    without importing it; None when not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("tensorrt_libs")
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def preload_tensorrt(library_dir: Optional[Path] = None) -> List[str]:
    """Load TensorRT 10's libraries (:data:`TENSORRT_LIBRARIES` present in ``library_dir``, default
    :func:`tensorrt_library_dir`) so the TensorRT EP finds them; ``[]`` when the package is absent
    (system TensorRT on the library path still works then). Raises VggbenchError if one fails."""
    library_dir = library_dir or tensorrt_library_dir()
    if library_dir is None:
        return []
    # The builder opens its resource library (libnvinfer_builder_resource.so.10.x.y) by name when it
    # builds an engine: loaded here, that lookup finds it in the process.
    names = list(TENSORRT_LIBRARIES) + sorted(p.name for p in library_dir.glob("libnvinfer_builder_resource*.so*"))
    return [load_library(library_dir / name) for name in names if (library_dir / name).is_file()]


# --- ONNX Runtime ---------------------------------------------------------------------------------------

CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
TF32_OVERRIDE_VAR = "NVIDIA_TF32_OVERRIDE"


def ort_build() -> Dict[str, Any]:
    """Which ONNX Runtime this is: version, package (``onnxruntime`` or ``onnxruntime-gpu``), the
    CUDA version it was built with ('' for CPU builds), ``get_build_info()`` and its providers."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        return {"version": None, "error": f"cannot import onnxruntime ({err})"}
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        info = None
    cuda = getattr(ort, "cuda_version", None)
    if cuda is None:
        cuda = getattr(info, "cuda_version", "")
    package = getattr(info, "package_name", None) or getattr(ort, "package_name", None)
    return {"version": ort.__version__, "package": package,
            "cuda_version": cuda or "",
            "build_info": ort.get_build_info() if hasattr(ort, "get_build_info") else None,
            "available_providers": list(ort.get_available_providers())}


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
    runs which precision is :func:`vggbench.backends.unsupported_reason`), or None.

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


def _ort_version_tag() -> str:
    try:
        import onnxruntime as ort

        version = ort.__version__
    except ImportError:
        version = "none"
    libs = [v for name, v in installed_distributions(["tensorrt"]).items() if name.endswith("-libs")]
    return f"ort{version}-trt{libs[0] if libs else 'system'}"


def tensorrt_cache_dirs(cache_dir: Any, precision: str) -> Tuple[Path, Path]:
    """``(engine cache, timing cache)`` folders under a run dir's cache folder, created.

    Parameters:
        cache_dir: the run dir's cache folder.
        precision: the row's precision: engines are per precision (ONNX Runtime's engine file
            name marks fp16 but not TF32 on/off) and per ONNX Runtime + TensorRT version (an engine
            is tied to the TensorRT that built it). The timing cache (per layer and GPU) is shared.
    """
    base = Path(cache_dir) / "tensorrt"
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


# --- a tiny real model, for probes and smoke runs ---------------------------------------------------------

TINY_INPUT_SHAPE = (2, 1, 8, 8)  # N, C, H, W
TINY_CHANNELS = 4
TINY_CLASSES = 10
TINY_OPSET, TINY_IR_VERSION = 15, 8  # loadable by ONNX Runtime 1.16 and later


def tiny_weights(seed: int = 0) -> Dict[str, np.ndarray]:
    """Weights and one input batch of the tiny net: Conv 3x3 (pad 1) -> Relu -> Flatten -> MatMul."""
    rng = np.random.RandomState(seed)
    n, c, h, w = TINY_INPUT_SHAPE
    return {"x": rng.uniform(-1, 1, TINY_INPUT_SHAPE).astype(np.float32),
            "conv": rng.uniform(-0.5, 0.5, (TINY_CHANNELS, c, 3, 3)).astype(np.float32),
            "dense": rng.uniform(-0.2, 0.2, (TINY_CHANNELS * h * w, TINY_CLASSES)).astype(np.float32)}


def tiny_reference(x: np.ndarray, conv: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The tiny net in float64 numpy: what every backend must compute (within its precision)."""
    n, c, h, w = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, conv.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, dy:dy + h, dx:dx + w], conv[:, :, dy, dx])
    return np.maximum(out, 0).reshape(n, -1) @ dense.astype(np.float64)


def tiny_onnx_model(weights: Optional[Dict[str, np.ndarray]] = None):
    """The tiny net as an ONNX model (opset 15, IR 8, fixed input ``x`` of :data:`TINY_INPUT_SHAPE`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = weights or tiny_weights()
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "dense_w"], ["y"])],
        "vggbench_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(TINY_INPUT_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [TINY_INPUT_SHAPE[0], TINY_CLASSES])],
        initializer=[numpy_helper.from_array(weights["conv"], "conv_w"),
                     numpy_helper.from_array(weights["dense"], "dense_w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TINY_OPSET)])
    model.ir_version = TINY_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| over max(1, max |expected|): one number for "is this the same result"."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# --- honest ONNX Runtime probe -------------------------------------------------------------------------------

# Nodes that move or reshape data: a provider may leave them to another one without the model
# having fallen back.
_NON_COMPUTE_OPS = ("MemcpyFromHost", "MemcpyToHost", "Flatten", "Reshape", "Cast", "ReorderInput",
                    "ReorderOutput", "Identity")


@contextlib.contextmanager
def captured_native_stderr():
    """Capture what native code writes to file descriptor 2 (ONNX Runtime's logger) into
    ``result["text"]``, so a provider that failed to load can be reported with its own words."""
    result = {"text": ""}
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield result
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            result["text"] = sink.read().decode(errors="replace")


def first_error_line(log_text: str) -> Optional[str]:
    """The first error/warning line of an ONNX Runtime log, without its ``[E:onnxruntime:...]``
    prefix (e.g. ``Failed to load library libonnxruntime_providers_cuda.so with error: ...``)."""
    for line in log_text.splitlines():
        if re.search(r"\[[EW]:onnxruntime|error|failed", line, re.IGNORECASE):
            text = re.sub(r"^.*?\[[EWIV]:onnxruntime:[^\]]*\]\s*", "", line).strip()
            status = text.find("[ONNXRuntimeError]")  # "<source location> [ONNXRuntimeError] : 1 : FAIL : ..."
            text = summarize_error(text[status:] if status >= 0 else text)
            if text:
                return text
    return None


def profiled_node_providers(profile_path: Any) -> List[Tuple[str, str]]:
    """``(op, provider)`` of every node ONNX Runtime ran, from its profiling JSON file."""
    events = json.loads(Path(profile_path).read_text())
    return [(event["args"].get("op_name", ""), event["args"].get("provider", ""))
            for event in events if event.get("cat") == "Node" and "provider" in event.get("args", {})]


def fallback_reason(node_providers: Sequence[Tuple[str, str]], provider: str) -> Optional[str]:
    """Why a profiled run does not count as running on ``provider``: a compute node ran elsewhere,
    or nothing ran on it; None when every compute node ran there."""
    compute = [(op, where) for op, where in node_providers if op not in _NON_COMPUTE_OPS]
    elsewhere = sorted({f"{op} on {where}" for op, where in compute if where != provider})
    if elsewhere:
        return f"nodes ran off {provider}: {', '.join(elsewhere)}"
    if not compute:
        return f"no compute node ran on {provider}"
    return None


def _probe_providers(backend: str, device_id: int) -> List[Any]:
    if backend == "ort-cpu":
        return ["CPUExecutionProvider"]
    providers: List[Any] = [("CUDAExecutionProvider", cuda_provider_options(device_id))]
    if backend == "ort-trt":
        providers.insert(0, ("TensorrtExecutionProvider", {"device_id": str(int(device_id)),
                                                            "trt_engine_cache_enable": "0"}))
    return providers


def probe_ort_backend(backend: str, device_id: int = 0, tolerance: float = 1e-2) -> Optional[str]:
    """None when ``backend`` really runs here, else the reason in one line.

    Parameters:
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``.
        device_id: the GPU, in CUDA's numbering.
        tolerance: largest :func:`relative_error` accepted against numpy (a "does it compute the
            right thing" check: 1e-2 admits TF32, not garbage).

    The provider must be in the build, the libraries must load (:func:`preload_ort_cuda` first),
    the session must get the provider first, ONNX Runtime's own profile must show every compute
    node of the tiny model on it, and one inference must match numpy.
    """
    ort_backends = [name for name, spec in BACKENDS.items() if spec.family == "ort"]
    if backend not in ort_backends:
        raise VggbenchError(f"unknown ONNX Runtime backend {backend!r}; choose from {', '.join(ort_backends)}")
    try:
        import onnxruntime as ort
    except ImportError as err:
        return f"cannot import onnxruntime ({err}); install the cpu or gpu extra"
    provider = BACKENDS[backend].provider
    build = ort_build()
    if provider not in build["available_providers"]:
        extra = {"ort-cuda": "install the gpu extra (onnxruntime-gpu) on a machine with an NVIDIA GPU",
                 "ort-trt": "install the gpu and trt extras (onnxruntime-gpu + TensorRT 10)"}.get(backend, "")
        kind = f"CUDA {build['cuda_version']}" if build["cuda_version"] else "CPU"
        return (f"onnxruntime {build['version']} (package {build.get('package') or 'onnxruntime'}, {kind} build) "
                f"has no {provider}; {extra}")
    preload = preload_ort_cuda(tensorrt=backend == "ort-trt") if backend != "ort-cpu" else {"messages": []}
    weights = tiny_weights()
    expected = tiny_reference(weights["x"], weights["conv"], weights["dense"])
    with tempfile.TemporaryDirectory(prefix="vggbench-probe.") as scratch:
        options = ort.SessionOptions()
        options.log_severity_level = 2
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(scratch, "probe")
        try:
            with captured_native_stderr() as log:
                session = ort.InferenceSession(tiny_onnx_model(weights).SerializeToString(), options,
                                               providers=_probe_providers(backend, device_id))
                got_provider = session.get_providers()[0]
                if got_provider == provider:
                    logits = session.run(None, {"x": weights["x"]})[0]
                    profile = session.end_profiling()
        except Exception as err:  # noqa: BLE001 - any failure is the reason
            return f"{provider} failed: {summarize_error(err)}"
        if got_provider != provider:
            cause = first_error_line(log["text"]) or next(iter(preload["messages"]), None)
            return (f"onnxruntime fell back to {got_provider} instead of {provider}"
                    + (f": {cause}" if cause else " (GPU or its libraries not usable here)"))
        reason = fallback_reason(profiled_node_providers(profile), provider)
        if reason:
            return reason
    error = relative_error(logits, expected)
    if not error <= tolerance:
        return f"{provider} ran but computed a wrong result (relative error {error:.3g} > {tolerance:g})"
    return None


# --- versions for every result ---------------------------------------------------------------------------------

def format_cuda_version(value: int) -> str:
    """``cudaRuntimeGetVersion``/``cuDriverGetVersion`` integers: 12040 -> ``12.4``."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def format_cudnn_version(value: int) -> str:
    """``cudnnGetVersion()``: 90100 -> ``9.1.0`` (cuDNN 9: M*10000+m*100+p), 8500 -> ``8.5.0``."""
    if value >= 90000:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


def format_tensorrt_version(value: int) -> str:
    """``getInferLibVersion()``: 100900 -> ``10.9.0`` (TensorRT 10+), 8601 -> ``8.6.1``."""
    if value >= 100000:
        return f"{value // 10000}.{(value % 10000) // 100}.{value % 100}"
    return f"{value // 1000}.{(value % 1000) // 100}.{value % 100}"


_VERSION_CALLS: Tuple[Tuple[str, str, bool, Callable[[int], str]], ...] = (
    # (library name contains, function, takes an int* out-parameter, formatter)
    ("libcudart.so", "cudaRuntimeGetVersion", True, format_cuda_version),
    ("libcudnn.so", "cudnnGetVersion", False, format_cudnn_version),
    ("libnvinfer.so", "getInferLibVersion", False, format_tensorrt_version),
)


def _library_version(path: str, function: str, out_parameter: bool) -> Optional[int]:
    try:
        library = ctypes.CDLL(path)  # already in the process: dlopen only counts a reference
        call = getattr(library, function)
        if out_parameter:
            value = ctypes.c_int(0)
            return value.value if call(ctypes.byref(value)) == 0 else None
        call.restype = ctypes.c_size_t
        return int(call())
    except (OSError, AttributeError):
        return None


def loaded_library_versions(maps_text: Optional[str] = None) -> Dict[str, str]:
    """``{library path: version}`` of the CUDA runtime, cuDNN and TensorRT libraries this process
    has loaded (after a session or mxnet's import: what really ran), asked through their own
    version functions. Loads nothing new."""
    versions = {}
    for path in loaded_cuda_libraries(maps_text):
        for marker, function, out_parameter, formatter in _VERSION_CALLS:
            if marker in os.path.basename(path):
                value = _library_version(path, function, out_parameter)
                if value:
                    versions[path] = formatter(value)
    return versions


def cuda_driver_version() -> Optional[str]:
    """The CUDA version the driver supports (``cuDriverGetVersion`` from ``libcuda.so.1``), e.g.
    ``12.4``; None without an NVIDIA driver."""
    try:
        library = ctypes.CDLL("libcuda.so.1")
        value = ctypes.c_int(0)
        return format_cuda_version(value.value) if library.cuDriverGetVersion(ctypes.byref(value)) == 0 else None
    except (OSError, AttributeError):
        return None


def gpu_versions(inventory: Optional[Sequence[GpuInfo]] = None) -> Dict[str, Any]:
    """The GPU software stack for a result: GPU name, compute capability and driver of each GPU,
    the CUDA version the driver supports, ONNX Runtime's build (package, CUDA it was built with,
    build info), the installed CUDA/cuDNN/TensorRT wheels, and the versions the loaded libraries
    report (:func:`loaded_library_versions`; call after creating the session to record what ran).

    Parameters:
        inventory: the GPUs (default: :func:`visible_inventory`).

    Never raises; on a machine without a GPU the GPU entries are empty or None.
    """
    gpus = list(visible_inventory() if inventory is None else inventory)
    first = gpus[0] if gpus else None
    return {
        "gpus": [gpu.as_dict() for gpu in gpus],
        "gpu_name": first.name if first else None,
        "compute_capability": first.compute_capability if first else None,
        "driver": first.driver_version if first else None,
        "cuda_driver_api": cuda_driver_version(),
        "onnxruntime": ort_build(),
        "mxnet": mxnet_distributions(),
        "nvidia_wheels": installed_distributions(["nvidia-", "tensorrt"]),
        "loaded_libraries": loaded_library_versions(),
    }

