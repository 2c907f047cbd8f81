"""ONNX Runtime runners: ``ort-cpu``, ``ort-cuda`` (IOBinding) and ``ort-trt`` (TensorRT EP).

Sessions come from :func:`vggbench.runtimes.ort_session.make_session` (re-exported here), which
refuses a session that fell back to another provider than the backend's.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Any, ContextManager, Dict, Optional, Sequence

import numpy as np

from vggbench.artifacts.layout import CACHE_DIR, INPUT_NAME, ONNX_VARIANT_FILES
from vggbench.artifacts.locks import cache_lock
from vggbench.artifacts.manifest import read_manifest, verify_file
from vggbench.runtimes.backends import PRECISIONS, unsupported_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime
from vggbench.runtimes.ort_session import (  # noqa: F401 - re-exported: the runner's callers import them here
    GRAPH_OPTIMIZATION_LEVELS,
    PROVIDERS,
    OrtOptions,
    ProviderFallback,
    make_session,
    provider_options,
    session_predictor,
)
from vggbench.runtimes.providers import tensorrt_cache_root


def unavailable_reason(backend: str, precision: str = "fp32", device_id: int = 0) -> Optional[str]:
    """Why ``backend`` (``ort-cpu``/``ort-cuda``/``ort-trt``) cannot run the ``precision`` file here,
    or None when it can.

    A GPU backend counts as available only when a tiny real session ran on its provider and gave
    the right answer (:func:`vggbench.runtimes.probe.probe_ort_backend`): ``get_available_providers()`` lists
    CUDA and TensorRT in every onnxruntime-gpu build, GPU or not.

    Parameters:
        backend: an ONNX Runtime backend name.
        precision: a key of :data:`vggbench.runtimes.backends.PRECISIONS`.
        device_id: the GPU index (GPU backends only).
    """
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}"
    reason = unsupported_reason(backend, precision)
    if reason or backend == "ort-cpu":
        return reason
    return _probe(backend, device_id)


@functools.lru_cache(maxsize=None)
def _probe(backend: str, device_id: int) -> Optional[str]:
    from vggbench.runtimes.probe import probe_ort_backend

    return probe_ort_backend(backend, device_id)


# How long an ort-trt session waits for another process building engines in the same run dir's cache
# (a large engine with an fp16 and an fp32 build before it); a worker's own step timeout applies above it.
TENSORRT_BUILD_WAIT_S = 30 * 60


def tensorrt_build_lock(backend: str, precision: str, tensorrt: Optional[Dict[str, Any]]) -> ContextManager[Any]:
    """The lock to hold while creating a session of ``backend``: for ``ort-trt``, the run dir's
    ``cache/tensorrt`` folder (:func:`vggbench.artifacts.locks.cache_lock`), since creating the
    session builds and writes engines and the timing cache there, and two processes (two benches on
    one run dir, the fp32 and fp16 workers of one sweep) must not write or read them half-written;
    the second then loads what the first built. Other backends write nothing: no lock.

    Parameters:
        backend: an ONNX Runtime backend name.
        precision: the session's precision, recorded for a waiting process's message.
        tensorrt: the ``tensorrt`` settings given to :func:`provider_options` (its ``cache_dir``).
    """
    if backend != "ort-trt":
        return contextlib.nullcontext()
    from vggbench.messages import say

    return cache_lock(tensorrt_cache_root(tensorrt["cache_dir"]), f"vggbench {backend} {precision}",
                      TENSORRT_BUILD_WAIT_S, work="building TensorRT engines", log=say)


class ORTRuntime(Runtime):
    """The run dir's ONNX file for ``precision`` in an ONNX Runtime session on ``backend``.

    Parameters:
        run_dir: a run dir; the file is checked against the manifest's sha256 first.
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``.
        precision: a key of :data:`vggbench.runtimes.backends.PRECISIONS` (which ONNX file it runs).
        threads: intra-op threads; None lets ONNX Runtime choose.
        device_id, cudnn_conv_algo_search, gpu_mem_limit, cudnn_conv_use_max_workspace: GPU
            provider options (see :func:`provider_options`).
        graph_optimization: ``all``, ``extended``, ``basic`` or ``none`` (see :func:`make_session`).
        batch_sizes: ``ort-trt``: every batch size the session will see (its shape profile); the
            engine and timing caches go in the run dir's ``cache/`` folder. Creating the session
            builds the engine: its time is recorded as ``session_create_s``, outside any timing;
            one session of a run dir builds at a time (:func:`tensorrt_build_lock`).
    """

    def __init__(self, run_dir, backend: str = "ort-cpu", precision: str = "fp32",
                 threads: Optional[int] = None, device_id: int = 0,
                 cudnn_conv_algo_search: str = "EXHAUSTIVE", gpu_mem_limit: Optional[int] = None,
                 cudnn_conv_use_max_workspace: bool = True, graph_optimization: str = "all",
                 batch_sizes: Sequence[int] = (1, 16, 64)):
        reason = unavailable_reason(backend, precision, device_id)
        if reason:
            raise BackendUnavailable(reason)
        self.backend, self.precision = backend, precision
        self.device = "cpu" if backend == "ort-cpu" else f"cuda:{device_id}"
        self._device_id = device_id
        manifest = read_manifest(run_dir)
        model_path = verify_file(run_dir, manifest, ONNX_VARIANT_FILES[PRECISIONS[precision][0]])
        self.threads = threads or os.cpu_count()
        tensorrt = None
        if backend == "ort-trt":
            size, channels = int(manifest["input_size"]), int(manifest.get("in_channels", 1))
            tensorrt = {"cache_dir": os.path.join(str(run_dir), CACHE_DIR), "input_name": INPUT_NAME,
                        "input_shape_chw": (channels, size, size), "batch_sizes": sorted(set(batch_sizes))}
        self.providers = provider_options(backend, device_id, cudnn_conv_algo_search, gpu_mem_limit,
                                          cudnn_conv_use_max_workspace, precision, tensorrt)
        gpu_libraries = None
        if backend != "ort-cpu":
            from vggbench.runtimes.providers import preload_ort_cuda

            gpu_libraries = preload_ort_cuda(tensorrt=backend == "ort-trt")
        with tensorrt_build_lock(backend, precision, tensorrt):
            started = time.perf_counter()  # after any wait: the build, not another process's
            self._session = make_session(model_path, backend, threads=threads,
                                         graph_optimization=graph_optimization, providers=self.providers)
            session_create_s = time.perf_counter() - started
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._options = {"providers": self._session.get_providers(), "graph_optimization": graph_optimization,
                         "model_file": model_path.name, "session_create_s": session_create_s}
        if backend != "ort-cpu":
            from vggbench.platform.libraries import gpu_versions

            self._options.update(provider_options=self.providers, gpu_libraries=gpu_libraries,
                                 gpu_versions=gpu_versions())
        self._binding = None

    @property
    def _device_type(self) -> str:
        return "cpu" if self.backend == "ort-cpu" else "cuda"

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self._session.run([self._output], {self._input: batch})[0]

    def stage(self, batch: np.ndarray) -> None:
        """Put the input on the device once and bind the output there too (IOBinding)."""
        import onnxruntime as ort

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self._staged_input = ort.OrtValue.ortvalue_from_numpy(batch, self._device_type, self._device_id)
        self._binding = self._session.io_binding()
        self._binding.bind_ortvalue_input(self._input, self._staged_input)
        self._binding.bind_output(self._output, self._device_type, self._device_id)

    def run_staged(self) -> None:
        self._session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()

    def staged_output(self) -> np.ndarray:
        """Copy the last staged result to the host (for checking, not for timing)."""
        return self._binding.copy_outputs_to_cpu()[0]

    def info(self) -> Dict[str, Any]:
        import onnxruntime as ort

        info = super().info()
        info.update(self._options, threads=self.threads, onnxruntime=ort.__version__)
        return info

    def close(self) -> None:
        self._binding = self._session = None
