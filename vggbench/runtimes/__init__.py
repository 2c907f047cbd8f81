"""One small runner per backend behind one interface.

``load_runtime(backend, run_dir, ...)`` returns a :class:`~vggbench.runtimes.base.Runtime`:
``run(batch)`` is end-to-end (host numpy in, host numpy out, synced); ``stage(batch)`` +
``run_staged()`` is compute only (input already on the device, output left there, synced).
``unavailable_reason(backend, ...)`` says why a backend cannot run here (``None`` when it can),
so a sweep can show a row "unavailable: <reason>" instead of inventing a number.
"""

from __future__ import annotations

from typing import Optional

from vggbench.errors import VggbenchError
from vggbench.platform.devices import Device
from vggbench.runtimes.backends import BACKENDS, unknown_backend_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime

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


def load_runtime(backend: str, run_dir, precision: str = "fp32", device: Optional[str] = None,
                 threads: Optional[int] = None, **options) -> Runtime:
    """Load the run dir's model for ``backend``; raises BackendUnavailable with the reason.

    Parameters:
        backend: a key of :data:`vggbench.runtimes.backends.BACKENDS`.
        run_dir: a run dir; every file loaded is checked against the manifest's sha256 first.
        precision: which ONNX file (``fp32``, ``opt``, ``int8``, ``fp16``); MXNet runs fp32 only.
        device: ``cpu``, ``gpu`` or ``gpu:N`` (MXNet runners); None: the backend's kind.
        threads: CPU threads (ONNX Runtime's intra-op threads; recorded for MXNet).
        options: ONNX Runtime runner options (:class:`~vggbench.runtimes.ort_runtime.ORTRuntime`);
            OpenVINO reads only ``batch_sizes`` (the static shapes it compiles at load).
    """
    check_backend_name(backend)
    if backend in MXNET_BACKENDS:
        from vggbench.runtimes.mxnet_runtime import MXNetRuntime

        return MXNetRuntime(run_dir, hybrid=BACKENDS[backend].hybrid, precision=precision,
                            device=_device(backend, device), threads=threads)
    if BACKENDS[backend].family == "openvino":
        from vggbench.runtimes.openvino_runtime import OpenVINORuntime

        return OpenVINORuntime(run_dir, precision=precision, threads=threads,
                               batch_sizes=options.get("batch_sizes", ()))
    from vggbench.runtimes.ort_runtime import ORTRuntime

    options.setdefault("device_id", _gpu_index(backend, device))
    return ORTRuntime(run_dir, backend=backend, precision=precision, threads=threads, **options)


__all__ = ["BACKENDS", "GPU_BACKENDS", "MXNET_BACKENDS", "BackendUnavailable", "Runtime",
           "backend_device", "check_backend_name", "load_runtime", "unavailable_reason"]
