"""One small runner per backend behind one interface.

``load_runtime(backend, run_dir, ...)`` returns a :class:`~vggbench.runtimes.base.Runtime`:
``run(batch)`` is end-to-end (host numpy in, host numpy out, synced); ``stage(batch)`` +
``run_staged()`` is compute only (input already on the device, output left there, synced).
``unavailable_reason(backend, ...)`` says why a backend cannot run here (``None`` when it can),
so a sweep can show a row "unavailable: <reason>" instead of inventing a number.
A runner's options cross this boundary as one typed object that validated itself
(:class:`~vggbench.runtimes.ort_session.OrtOptions` for ONNX Runtime), never as loose keywords.
"""

from __future__ import annotations

import collections.abc
import numbers
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple

from vggbench.errors import VggbenchError
from vggbench.platform.devices import Device
from vggbench.runtimes.backends import BACKENDS, unknown_backend_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime

if TYPE_CHECKING:
    from vggbench.runtimes.ort_session import OrtOptions

MXNET_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.family == "mxnet")
GPU_BACKENDS = tuple(name for name, spec in BACKENDS.items() if spec.device_kind == "gpu")


def check_backend_name(backend: str) -> None:
    """Raise a one-line VggbenchError unless ``backend`` is a key of :data:`vggbench.runtimes.backends.BACKENDS`."""
    reason = unknown_backend_reason(backend)
    if reason:
        raise VggbenchError(reason)


def backend_device(backend: str, gpu_index: int = 0) -> Device:
    """The device ``backend`` runs on: the CPU, or GPU ``gpu_index`` for a GPU backend."""
    return Device.of_kind(BACKENDS[backend].device_kind, gpu_index)


def _device(backend: str, device: Optional[str]) -> str:
    """``device``, or the backend's own kind when None: ``cpu``, or ``gpu`` (GPU 0)."""
    return device or BACKENDS[backend].device_kind


def _gpu_index(backend: str, device: Optional[str]) -> int:
    """The GPU index of ``device`` for a GPU backend (0 for a CPU backend or the default device)."""
    target = Device.parse(_device(backend, device))
    return target.index if target.is_gpu else 0


def unavailable_reason(backend: str, precision: str = "fp32", device: Optional[str] = None) -> Optional[str]:
    """Why ``backend`` (a key of :data:`vggbench.runtimes.backends.BACKENDS`) cannot run ``precision`` on
    ``device`` (cpu, gpu, gpu:N; None: the backend's kind) here, or None when it can."""
    check_backend_name(backend)
    device = _device(backend, device)
    if backend in MXNET_BACKENDS:
        from vggbench.runtimes import mxnet_runtime

        return mxnet_runtime.unavailable_reason(precision, device, backend)
    if BACKENDS[backend].family == "openvino":
        from vggbench.runtimes import openvino_runtime

        return openvino_runtime.unavailable_reason(precision)
    from vggbench.runtimes import ort_runtime

    return ort_runtime.unavailable_reason(backend, precision, _gpu_index(backend, device))


def _checked_batch_sizes(batch_sizes: Sequence[int]) -> Tuple[int, ...]:
    """``batch_sizes`` as a tuple of ints; a one-line VggbenchError unless each is a whole number >= 1."""
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, collections.abc.Iterable):
        raise VggbenchError(f"batch_sizes must be a list of whole numbers >= 1, got {batch_sizes!r}")
    values = tuple(batch_sizes)
    if any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1 for b in values):
        raise VggbenchError(f"batch_sizes must be whole numbers >= 1, got {list(values)!r}")
    return tuple(int(b) for b in values)


def _check_options_type(backend: str, options: Any, expected: Optional[type]) -> None:
    """A one-line VggbenchError unless ``options`` is an ``expected`` (None: the backend takes none)."""
    if expected is None:
        if options is not None:
            raise VggbenchError(f"backend {backend} takes no runtime options (options=None), "
                                f"got {type(options).__name__}")
    elif options is not None and not isinstance(options, expected):
        raise VggbenchError(f"backend {backend} takes options of type {expected.__name__} "
                            f"({expected.__name__}.from_dict reads the JSON form), got {type(options).__name__}")


def load_runtime(backend: str, run_dir, precision: str = "fp32", device: Optional[str] = None,
                 threads: Optional[int] = None, *, batch_sizes: Sequence[int] = (),
                 options: Optional["OrtOptions"] = None) -> Runtime:
    """Load the run dir's model for ``backend``; raises BackendUnavailable with the reason.

    The runner options are one typed, self-validating object (not loose keywords), so a misspelt or
    misplaced option is refused here, in one line, before any file is read or session built.

    Parameters:
        backend: a key of :data:`vggbench.runtimes.backends.BACKENDS`.
        run_dir: a run dir; every file loaded is checked against the manifest's sha256 first.
        precision: which ONNX file (``fp32``, ``opt``, ``int8``, ``fp16``); MXNet runs fp32 only.
        device: ``cpu``, ``gpu`` or ``gpu:N`` (MXNet runners); None: the backend's kind.
        threads: CPU threads (ONNX Runtime's intra-op threads; recorded for MXNet).
        batch_sizes: every batch size the runtime will see, prepared at load, outside any timing:
            ``ort-trt``'s shape profile (empty: the runner's default profile), ``openvino``'s
            static-shape compiles (others compile on first use); the other backends ignore them.
            Each must be a whole number >= 1.
        options: the runner options: an :class:`~vggbench.runtimes.ort_session.OrtOptions` for the
            ONNX Runtime backends (None: its defaults); the MXNet and OpenVINO runners have none (their
            settings are fixed on purpose), so anything but None is refused for them.
    """
    check_backend_name(backend)
    family = BACKENDS[backend].family
    batch_sizes = _checked_batch_sizes(batch_sizes)
    if family != "ort":
        _check_options_type(backend, options, None)
    if backend in MXNET_BACKENDS:
        from vggbench.runtimes.mxnet_runtime import MXNetRuntime

        return MXNetRuntime(run_dir, hybrid=BACKENDS[backend].hybrid, precision=precision,
                            device=_device(backend, device), threads=threads)
    if family == "openvino":
        from vggbench.runtimes.openvino_runtime import OpenVINORuntime

        return OpenVINORuntime(run_dir, precision=precision, threads=threads, batch_sizes=batch_sizes)
    from vggbench.runtimes.ort_runtime import ORTRuntime
    from vggbench.runtimes.ort_session import OrtOptions

    _check_options_type(backend, options, OrtOptions)
    keywords = (options or OrtOptions()).to_dict()
    if batch_sizes:
        keywords["batch_sizes"] = batch_sizes
    return ORTRuntime(run_dir, backend=backend, precision=precision, threads=threads,
                      device_id=_gpu_index(backend, device), **keywords)


__all__ = ["BACKENDS", "GPU_BACKENDS", "MXNET_BACKENDS", "BackendUnavailable", "Runtime",
           "backend_device", "check_backend_name", "load_runtime", "unavailable_reason"]
