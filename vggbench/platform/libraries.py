"""Installed distributions and native CUDA/TensorRT libraries: where they are, preloading them, their versions.

``mxnet-cu117`` links CUDA 11.7 / cuDNN 8 / NCCL 2 libraries that the ``nvidia-*-cu11`` wheels
install under ``site-packages/nvidia/<part>/lib``; :func:`preload_cuda11_for_mxnet` loads them
(``RTLD_GLOBAL``, dependency order) before mxnet is imported. Resolution is separate from loading,
so it is tested on a tree of real files. :func:`gpu_versions` reports driver, CUDA, cuDNN and
TensorRT versions for every result.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from vggbench.errors import VggbenchError, summarize_error
from vggbench.platform.gpu import MXNET_GPU_DISTRIBUTION, GpuInfo, visible_inventory

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


def installed_file_clashes(distributions: Optional[Iterable[Any]] = None) -> Dict[str, List[str]]:
    """``{path: [distribution, ...]}`` for every installed file that the RECORDs of two or more
    distributions list: the one installed last overwrote the others' copy, and uninstalling any of
    them deletes it (``nvidia-curand-cu11`` and ``-cu12`` both own ``nvidia/curand/lib/libcurand.so.10``).

    Parameters:
        distributions: ``importlib.metadata`` distributions (default: every one on ``sys.path``).

    Left out: ``.dist-info`` folders, bytecode caches, files that every owner records as empty (the
    ``nvidia/__init__.py`` of a namespace package), and distributions vendored inside another
    package (setuptools puts ``setuptools/_vendor`` on ``sys.path``; its copies are setuptools'
    own files, not a second install). The same distribution found twice on ``sys.path`` (a user site
    and a venv) counts once.
    """
    owners: Dict[str, Dict[str, Optional[int]]] = {}
    seen = set()
    for dist in metadata.distributions() if distributions is None else distributions:
        name = (dist.metadata["Name"] or "?").lower().replace("_", "-")
        root = str(dist.locate_file(""))
        if (name, root) in seen or "_vendor" in Path(root).parts:
            continue
        seen.add((name, root))
        for entry in dist.files or ():
            text = str(entry)
            if ".dist-info/" in text or "__pycache__/" in text or text.startswith(".."):
                continue
            path = os.path.normpath(os.path.join(root, text))
            owners.setdefault(path, {})[name] = entry.size
    clashes = {}
    for path, by_name in sorted(owners.items()):
        if len(by_name) > 1 and set(by_name.values()) != {0}:
            clashes[path] = sorted(by_name)
    return clashes


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
        call.argtypes, call.restype = [], ctypes.c_int  # cudnnGetVersion: size_t; getInferLibVersion: int32_t
        if function == "cudnnGetVersion":
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


def _ort_version_tag() -> str:
    try:
        import onnxruntime as ort

        version = ort.__version__
    except ImportError:
        version = "none"
    libs = [v for name, v in installed_distributions(["tensorrt"]).items() if name.endswith("-libs")]
    return f"ort{version}-trt{libs[0] if libs else 'system'}"
