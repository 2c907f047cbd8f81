"""The NVIDIA driver and what a CUDA build needs from it: facts, GPU numbering, and ordered reasons.

Why a GPU backend cannot run is reported by its first cause, in this order (each later check is
only meaningful when the earlier ones pass, and each fix is a different command):

1. no NVIDIA driver: ``libcuda.so.1`` cannot be loaded (and no ``nvidia-smi``);
2. the driver is too old for the CUDA version the build was made with;
3. a library the build links is missing (named, from the loader's own message);
4. the build has no kernel for the GPU's compute capability (:mod:`vggbench.platform.cuda_code`);
5. otherwise: the runtime's own error text, one line, colour codes removed.

Each ``*_reason`` function is a pure function of facts a test can build from real objects on a
machine without a GPU; :func:`driver_facts` gathers them.

GPU numbering: CUDA numbers GPUs fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, while
``nvidia-smi`` (whose compute capabilities vggbench checks ``gpu:N`` against) uses PCI bus order.
:func:`use_pci_bus_order` sets the variable before CUDA starts in a process (the CLI, every worker
and launched process, the mxnet import, the ONNX Runtime GPU preload), so both mean the same GPU.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any, Dict, MutableMapping, Optional

from vggbench.errors import strip_ansi, summarize_error

CUDA_DEVICE_ORDER_VAR = "CUDA_DEVICE_ORDER"
PCI_BUS_ID = "PCI_BUS_ID"
LIBCUDA = "libcuda.so.1"
# The oldest Linux driver for each CUDA major version (CUDA's release notes, "minor version
# compatibility": any 12.x runtime runs on a 12.0-capable driver).
MIN_DRIVER_FOR_CUDA = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+?\.so(?:\.\d+)*): cannot open shared object file")
_INSUFFICIENT_DRIVER = ("CUDA driver version is insufficient", "cudaErrorInsufficientDriver")


def use_pci_bus_order(environ: Optional[MutableMapping[str, str]] = None) -> MutableMapping[str, str]:
    """Set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` in ``environ`` (default ``os.environ``) and return it.

    CUDA reads the variable once, when it initializes in a process: call this before mxnet is
    imported or an ONNX Runtime GPU session is made, and pass the result to child processes. Any
    other value is replaced: vggbench's ``gpu:N`` is nvidia-smi's GPU N (after
    ``CUDA_VISIBLE_DEVICES``), which only PCI bus order guarantees.
    """
    environ = os.environ if environ is None else environ
    environ[CUDA_DEVICE_ORDER_VAR] = PCI_BUS_ID
    return environ


@dataclass(frozen=True)
class DriverFacts:
    """What this machine says about its NVIDIA driver, gathered without a GPU call."""

    libcuda_error: Optional[str]  # None: libcuda.so.1 loaded; else the loader's message
    nvidia_smi: Optional[str]  # its path, None when not on PATH
    cuda_version: Optional[str]  # what the driver supports (cuDriverGetVersion), e.g. "12.4"

    def as_dict(self) -> Dict[str, Any]:
        return {"libcuda_error": self.libcuda_error, "nvidia_smi": self.nvidia_smi,
                "cuda_driver_version": self.cuda_version}


def driver_facts() -> DriverFacts:
    """Load ``libcuda.so.1`` (the driver's user-space library) and ask it for its CUDA version;
    look for ``nvidia-smi`` on PATH. Never raises."""
    smi = shutil.which("nvidia-smi")
    try:
        library = ctypes.CDLL(LIBCUDA)
    except OSError as err:
        return DriverFacts(summarize_error(err), smi, None)
    version = ctypes.c_int(0)
    try:
        function = library.cuDriverGetVersion
        function.argtypes, function.restype = [ctypes.POINTER(ctypes.c_int)], ctypes.c_int
        ok = function(ctypes.byref(version)) == 0
    except AttributeError:
        ok = False
    cuda = f"{version.value // 1000}.{(version.value % 1000) // 10}" if ok and version.value else None
    return DriverFacts(None, smi, cuda)


def no_driver_reason(facts: DriverFacts, needs: str = "this backend") -> Optional[str]:
    """Cause 1: why there is no usable NVIDIA driver here, or None when ``libcuda.so.1`` loads."""
    if facts.libcuda_error is None:
        return None
    if facts.nvidia_smi is None:
        return (f"no NVIDIA driver on this machine (cannot load {LIBCUDA}, no nvidia-smi on PATH): {needs} "
                f"needs an NVIDIA GPU and its driver (nvidia-smi must list the GPU); here only CPU backends run")
    return (f"nvidia-smi is at {facts.nvidia_smi} but {LIBCUDA} cannot be loaded ({facts.libcuda_error}): the "
            f"driver's library is not on the library path (in a container: start it with --gpus all through "
            f"the NVIDIA Container Toolkit)")


def mxnet_gpu_build_without_driver(distribution: str, facts: DriverFacts) -> Optional[str]:
    """Why the CUDA build ``distribution`` of mxnet (``mxnet-cu117``) cannot even be imported here,
    or None when ``libcuda.so.1`` loads. ``libmxnet.so`` links the driver's library, so without a
    driver neither the GPU nor the CPU code of that build can run: the CPU build is the way, in
    a venv of its own (both builds install the same ``mxnet/`` folder)."""
    if facts.libcuda_error is None:
        return None
    return (f"{distribution} (MXNet's CUDA build) links {LIBCUDA} and this machine has no NVIDIA driver "
            f"({facts.libcuda_error}), so it cannot be imported, not even for the CPU; for the CPU build use a "
            f'separate venv: python3 -m venv .venv-cpu && .venv-cpu/bin/pip install -e ".[cpu]" (not in this '
            f"venv: both builds install mxnet/)")


def cuda_major(version: Any) -> Optional[int]:
    """``"12.8"`` -> 12; None for an empty or unreadable version."""
    match = re.match(r"^\s*(\d+)", str(version or ""))
    return int(match.group(1)) if match else None


def driver_too_old_reason(facts: DriverFacts, build_cuda: Any, build: str,
                          failure_text: str = "") -> Optional[str]:
    """Cause 2: the driver supports an older CUDA major version than ``build`` was made with.

    Parameters:
        facts: :func:`driver_facts`.
        build_cuda: the CUDA version of the build (``"12.8"``; ORT's ``cuda_version``).
        build: the build's name for the message (``"onnxruntime-gpu 1.26.0"``).
        failure_text: the runtime's error, if any: CUDA's "driver version is insufficient"
            is this cause even when the versions could not be compared.
    """
    needed, have = cuda_major(build_cuda), cuda_major(facts.cuda_version)
    too_old = (needed is not None and have is not None and have < needed) or \
        any(marker in failure_text for marker in _INSUFFICIENT_DRIVER)
    if facts.libcuda_error is not None or not too_old:
        return None
    minimum = MIN_DRIVER_FOR_CUDA.get(needed or -1)
    return (f"the NVIDIA driver supports CUDA {facts.cuda_version or 'older than the build'}, {build} is built for "
            f"CUDA {build_cuda}: update the driver" + (f" to {minimum} or newer" if minimum else "")
            + (" (or use the gpu extra's CUDA 12 build)" if needed and needed >= 13 else ""))


def missing_library(text: str) -> Optional[str]:
    """The soname a loader message says it could not open (``libcublasLt.so.12``), or None."""
    match = _MISSING_LIBRARY.search(strip_ansi(text or ""))
    return match.group(1) if match else None


def install_hint_for_library(soname: str, build_cuda: Any = None) -> str:
    """The command that installs ``soname`` for a build made with CUDA ``build_cuda``: the extra
    whose nvidia-* (or tensorrt) wheels ship it."""
    major = cuda_major(build_cuda)
    if soname.startswith(("libnvinfer", "libnvonnxparser")):
        return 'pip install -e ".[gpu-cu13,trt-cu13]"' if major == 13 else 'pip install -e ".[gpu,trt]"'
    return {13: 'pip install -e ".[gpu-cu13]"', 12: 'pip install -e ".[gpu]"'}.get(
        major, 'pip install -e ".[mxnet-gpu]"')


def missing_library_reason(failure_text: str, build: str, build_cuda: Any = None) -> Optional[str]:
    """Cause 3: ``build`` could not load a library; names it and the install command."""
    soname = missing_library(failure_text)
    if soname is None or soname == LIBCUDA:
        return None
    return f"{build} needs {soname}, which is not installed: {install_hint_for_library(soname, build_cuda)}"


def no_kernel_reason(code: Any, compute_capability: Any, gpu_name: str, build: str) -> Optional[str]:
    """Cause 4: ``code`` (a :class:`vggbench.platform.cuda_code.CudaCode`) has nothing that runs on
    a GPU of ``compute_capability`` (``"5.2"``); None when it has, or when either is unknown."""
    from vggbench.platform.cuda_code import kernel_for
    from vggbench.platform.gpu import parse_compute_capability

    cc = parse_compute_capability(compute_capability)
    if code is None or cc is None or kernel_for(code, cc) is not None:
        return None
    held = ", ".join(code.sass) or "no SASS"
    ptx = ", ".join(code.ptx) or "no PTX"
    return (f"{build} has no kernel for {gpu_name} (compute capability {cc[0]}.{cc[1]}): it holds SASS for {held} "
            f"and {ptx}")
