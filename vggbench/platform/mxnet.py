"""The one place that imports mxnet: threads first, compat shims, one-line errors.

Every other module gets mxnet with ``mx = import_mxnet()`` (a test in tests/platform/test_mxnet.py walks
the package and fails on any other ``import mxnet``). Before the first import this module:

- sets MXNet's CPU thread count (:func:`resolve_threads`: ``threads``, else ``$OMP_NUM_THREADS``,
  else the physical cores) in ``OMP_NUM_THREADS``, because MXNet reads it once, at import; left
  alone, MXNet takes *half* the processors on x86 (one thread on a 2-vCPU machine; the measured
  cost is in docs/methodology.md).
  ``MXNET_OMP_MAX_THREADS``, which MXNet would let override it, is removed so the recorded count is
  the real one. ``MXNET_CPU_WORKER_NTHREADS`` (engine workers, default 1) is left alone: each
  operator already runs on all OpenMP threads, and more workers would oversubscribe the cores;
- restores the numpy aliases MXNet 1.9.1 still uses (:data:`NUMPY_ALIASES`: ``np.bool``,
  ``np.int``; removed in numpy 1.24) when, and only when, they are missing;
- runs :func:`_before_import` (the spot for preloading CUDA libraries of a GPU build).

After the import it gives ``mx.onnx`` the two ``onnx.mapping`` tables it reads
(``TENSOR_TYPE_TO_NP_TYPE``, ``NP_TYPE_TO_TENSOR_TYPE``) when the installed onnx no longer has
them (onnx >= 1.19), built from ``onnx.helper``'s dtype functions. A failed import (no mxnet
wheel, a CUDA library missing for a GPU build) is a one-line :class:`VggbenchError`.

Asking for a different thread count once mxnet is imported cannot take effect (MXNet sized its
OpenMP pool at import): :func:`import_mxnet` warns (``RuntimeWarning``) and keeps the count in
effect, which :func:`mxnet_threads` reports, so what is recorded stays true.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import types
import warnings
from typing import Any, Dict, List, Optional, Tuple

from vggbench.errors import VggbenchError, summarize_error

# The numpy aliases removed in numpy 1.24 that MXNet 1.9.1's Python code uses (found by grepping
# the installed package for np./_np./onp.<alias>: ``bool = onp.bool`` in mxnet/numpy/utils.py runs
# at import; ``np.int`` and ``np.bool`` in test_utils and the numpy front end run later). The
# values are what the aliases were: the builtins.
NUMPY_ALIASES: Dict[str, type] = {"bool": bool, "int": int}

_state: Dict[str, Any] = {"threads": None, "threads_source": None, "onnx_checked": False}


def check_threads(threads: int) -> int:
    """An explicit ``--threads`` count as an int; a one-line VggbenchError below 1. Checks only:
    the cap to this machine's CPUs is :func:`resolve_threads`'s, at run time."""
    if int(threads) < 1:
        raise VggbenchError(f"--threads must be >= 1, got {threads}")
    return int(threads)


def resolve_threads(threads: Optional[int] = None) -> Tuple[int, str]:
    """The CPU thread count to run with, and where it came from.

    Parameters:
        threads: an explicit count (``--threads``); ``None`` means ``$OMP_NUM_THREADS`` when it is a
            positive integer, else the physical cores.

    Returns ``(threads, source)`` with source one of ``"--threads"``, ``"OMP_NUM_THREADS"``,
    ``"physical cores"``.
    """
    if threads is not None:
        return _capped_threads(check_threads(threads), "--threads"), "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return _capped_threads(int(env), "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    from vggbench.platform.cpu import physical_cores

    return physical_cores(), "physical cores"


def max_threads() -> int:
    """The most CPU threads worth asking for here: the logical CPUs this process may run on.

    More threads than that only oversubscribe the cores; thousands make OpenMP and ONNX Runtime
    spend minutes creating threads and hang on a signal.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _capped_threads(threads: int, source: str) -> int:
    """``threads`` capped to :func:`max_threads`, with a warning line saying so."""
    most = max_threads()
    if threads <= most:
        return threads
    from vggbench.messages import say

    say(f"warning: {source} {threads} is more than the {most} logical CPU(s) this process can run on; using {most}")
    return most


def restore_numpy_aliases(numpy_module) -> List[str]:
    """Put back the removed numpy aliases MXNet needs; return the names that were set.

    Parameters:
        numpy_module: the numpy module (or any module-like object standing in for it).

    An alias that still resolves (numpy < 1.24 serves it with a deprecation warning; numpy 2 has
    ``np.bool`` again as ``np.bool_``) is left exactly as it is; no other attribute is touched.
    """
    restored = []
    for name, value in NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy 1.20-1.26 warn on the lookup itself
            present = hasattr(numpy_module, name)
        if not present:
            setattr(numpy_module, name, value)
            restored.append(name)
    return restored


def onnx_mapping_tables(helper) -> Tuple[Dict[int, Any], Dict[Any, int]]:
    """``onnx.mapping``'s ``TENSOR_TYPE_TO_NP_TYPE`` and ``NP_TYPE_TO_TENSOR_TYPE``, from ``helper``.

    Parameters:
        helper: the ``onnx.helper`` module (``get_all_tensor_dtypes``, ``tensor_dtype_to_np_dtype``,
            ``np_dtype_to_tensor_dtype``).

    The reverse table keeps only the numpy dtypes that map back to the same tensor type (as
    onnx.mapping did: float32 means FLOAT, never BFLOAT16).
    """
    to_numpy = {}
    for tensor_type in helper.get_all_tensor_dtypes():
        try:
            to_numpy[int(tensor_type)] = helper.tensor_dtype_to_np_dtype(tensor_type)
        except (KeyError, ValueError, TypeError):  # a type this onnx/numpy pair cannot represent
            continue
    to_tensor = {}
    for tensor_type, np_dtype in to_numpy.items():
        try:
            if int(helper.np_dtype_to_tensor_dtype(np_dtype)) == tensor_type:
                to_tensor[np_dtype] = tensor_type
        except (KeyError, ValueError, TypeError):
            continue
    return to_numpy, to_tensor


def ensure_onnx_mapping(onnx_module) -> bool:
    """Give ``onnx_module`` a ``mapping`` submodule with the two tables ``mx.onnx`` reads.

    Parameters:
        onnx_module: the imported ``onnx`` package (or a stand-in with a ``helper`` attribute).

    Returns True when the shim was installed, False when the installed onnx has its own
    ``mapping`` (onnx < 1.19), which is then left untouched.
    """
    name = f"{onnx_module.__name__}.mapping"
    if getattr(onnx_module, "mapping", None) is not None:
        return False
    try:
        onnx_module.mapping = importlib.import_module(name)
        return False
    except ImportError:
        pass
    mapping = types.ModuleType(name, "onnx.mapping's dtype tables, rebuilt from onnx.helper by vggbench.platform.mxnet "
                                     "for mx.onnx (onnx >= 1.19 removed the module)")
    mapping.TENSOR_TYPE_TO_NP_TYPE, mapping.NP_TYPE_TO_TENSOR_TYPE = onnx_mapping_tables(onnx_module.helper)
    mapping.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = mapping
    onnx_module.mapping = mapping
    return True


def _before_import() -> None:
    """Runs once before mxnet's first import attempt: the spot to preload native libraries
    (e.g. the CUDA 11 libraries a GPU build links against). Nothing to do for the CPU build."""
    from vggbench.platform import driver, libraries

    driver.use_pci_bus_order()  # before CUDA starts: gpu(N) is nvidia-smi's GPU N
    gpu_builds = [name for name in libraries.mxnet_distributions() if name.startswith("mxnet-cu")]
    if gpu_builds:
        # no driver first: libmxnet.so links libcuda.so.1, so no CUDA 11 library could help then
        reason = driver.mxnet_gpu_build_without_driver(gpu_builds[0], driver.driver_facts())
        if reason:
            raise MXNetUnavailable(f"cannot import mxnet: {reason}")
        libraries.preload_cuda11_for_mxnet()  # mxnet-cu117 bundles none of the CUDA 11 / cuDNN 8 libraries it links


class MXNetUnavailable(VggbenchError):
    """mxnet cannot be imported here (not installed, a GPU build without its libraries): the one
    type callers catch to carry on without MXNet."""


def _import_error(err: BaseException) -> VggbenchError:
    detail = f"{type(err).__name__}: {summarize_error(err)}"
    if isinstance(err, ModuleNotFoundError) and err.name == "mxnet":
        fix = 'install it with pip install -e ".[cpu]" (mxnet 1.9.1 wheels exist for Linux and macOS x86_64)'
    elif isinstance(err, OSError):
        fix = ("a native library it links is missing (a GPU build needs the CUDA 11 libraries): "
               'install the CPU build with pip install -e ".[cpu]" or run vggbench doctor')
    else:
        import numpy

        fix = (f"numpy {numpy.__version__} may not suit mxnet 1.9.1 (it needs numpy<2): "
               f'reinstall with pip install -e ".[cpu]"')
    return MXNetUnavailable(f"cannot import mxnet ({detail[:300]}); {fix}")


def import_mxnet(threads: Optional[int] = None):
    """The ``mxnet`` module, imported with the thread count and compat shims set up first.

    Parameters:
        threads: MXNet's CPU (OpenMP) threads; ``None``: ``$OMP_NUM_THREADS``, else the physical
            cores (:func:`resolve_threads`). Only the first import can set it; a later call asking
            for another count warns and changes nothing (see :func:`mxnet_threads`).

    Raises VggbenchError (one line) when mxnet cannot be imported.
    """
    if "mxnet" not in sys.modules:
        count, source = resolve_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(count)
        os.environ.pop("MXNET_OMP_MAX_THREADS", None)
        import numpy

        restore_numpy_aliases(numpy)
        try:
            _before_import()
            import mxnet  # noqa: F401  (the only mxnet import in vggbench)
        except (ImportError, OSError, AttributeError) as err:
            raise _import_error(err) from None
        _state.update(threads=count, threads_source=source)
    elif _state["threads"] is None:  # imported before vggbench asked: record what it runs with
        _state.update(zip(("threads", "threads_source"), threads_from_environment()))
    if threads is not None and int(threads) != _state["threads"]:
        warnings.warn(f"mxnet already runs with {_state['threads']} threads ({_state['threads_source']}); "
                      f"{threads} can only take effect in a new process", RuntimeWarning, stacklevel=2)
    if not _state["onnx_checked"]:
        try:
            import onnx
        except ImportError:
            pass  # mx.onnx cannot export then anyway; onnx is a dependency of vggbench
        else:
            ensure_onnx_mapping(onnx)
        _state["onnx_checked"] = True
    return sys.modules["mxnet"]


def threads_from_environment() -> Tuple[int, str]:
    """The OpenMP thread count MXNet uses when it is imported with the current environment, and
    why (src/engine/openmp.cc): ``MXNET_OMP_MAX_THREADS``, else ``OMP_NUM_THREADS``, else *half*
    the processors on x86 (it assumes hyper-threading: 1 thread on a 2-vCPU VM without it)."""
    for name in ("MXNET_OMP_MAX_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    import platform

    procs = os.cpu_count() or 1
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
    return (max(1, procs // 2) if x86 else procs), "mxnet default"


def mxnet_threads() -> Optional[int]:
    """MXNet's CPU thread count in this process (None until :func:`import_mxnet` has run)."""
    return _state["threads"]


def mxnet_threads_source() -> Optional[str]:
    """Where :func:`mxnet_threads` came from: ``--threads``, ``OMP_NUM_THREADS``, ``physical cores``,
    ``MXNET_OMP_MAX_THREADS`` or ``mxnet default`` (mxnet imported before vggbench asked)."""
    return _state["threads_source"]


def mxnet_cuda_facts() -> Tuple[bool, int, Optional[str]]:
    """What this mxnet says about GPUs: ``(has_cuda, gpu_count, count_error)``.

    ``has_cuda`` is False for the CPU build; ``gpu_count`` is ``mx.context.num_gpus()`` (0 for the
    CPU build, or when a CUDA build cannot count: then ``count_error`` is the one-line reason).
    The decision built on these facts is :func:`vggbench.platform.gpu.mxnet_device_unavailable_reason`.
    """
    mx = import_mxnet()
    has_cuda = bool(mx.runtime.Features().is_enabled("CUDA"))
    if not has_cuda:
        return False, 0, None
    try:
        return True, int(mx.context.num_gpus()), None
    except mx.base.MXNetError as err:  # a CUDA build without a usable driver
        return True, 0, f"MXNet cannot count GPUs: {summarize_error(err)}"


def import_mxnet_amp():
    """``mxnet.contrib.amp`` (MXNet's automatic mixed precision), imported after :func:`import_mxnet`
    has set the threads and shims (``mxnet.contrib`` does not import it by itself)."""
    import_mxnet()
    from mxnet.contrib import amp

    return amp
