"""ONNX Runtime runners: ``ort-cpu``, ``ort-cuda`` (IOBinding) and ``ort-trt`` (TensorRT EP).

ONNX Runtime silently falls back to the CPU when a GPU provider cannot start (missing CUDA
libraries, no device), so after creating a GPU session we check which provider it really got
and refuse to report a CPU number under a GPU name.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from vggbench.artifacts.layout import CACHE_DIR, INPUT_NAME, ONNX_VARIANT_FILES
from vggbench.artifacts.manifest import read_manifest, verify_file
from vggbench.errors import VggbenchError
from vggbench.runtimes.backends import BACKENDS, PRECISIONS, unsupported_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime

PROVIDERS = {name: spec.provider for name, spec in BACKENDS.items() if spec.family == "ort"}
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")
GRAPH_OPTIMIZATION_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                             "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}


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


def provider_options(backend: str, device_id: int = 0, cudnn_conv_algo_search: str = "EXHAUSTIVE",
                     gpu_mem_limit: Optional[int] = None, cudnn_conv_use_max_workspace: bool = True,
                     precision: str = "fp32", tensorrt: Optional[Dict[str, Any]] = None
                     ) -> List[Union[str, Tuple[str, Dict[str, Any]]]]:
    """The ``providers`` list for an ONNX Runtime session on ``backend``.

    Parameters:
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``.
        device_id: the GPU index (GPU backends only).
        cudnn_conv_algo_search: cuDNN convolution algorithm search (CUDA provider option).
        gpu_mem_limit: the CUDA arena's limit in bytes; None or 0 means no limit.
        cudnn_conv_use_max_workspace: let cuDNN pick algorithms that need a large workspace.
        precision: ``fp32`` runs with TF32 off (``use_tf32=0``), ``tf32`` with it on, ``fp16``
            lets TensorRT build float16 kernels.
        tensorrt: ``ort-trt`` only: ``cache_dir``, ``input_name``, ``input_shape_chw`` and
            ``batch_sizes`` for the engine/timing caches and the explicit shape profile
            (:func:`vggbench.runtimes.providers.tensorrt_provider_options`); None = TensorRT's defaults.

    ``ort-trt`` lists the CUDA provider after TensorRT for the ops TensorRT cannot take.
    """
    if backend == "ort-cpu":
        return [PROVIDERS[backend]]
    from vggbench.runtimes import providers as provider_options

    cuda = provider_options.cuda_provider_options(device_id, tf32=provider_options.tf32_for_precision(precision),
                                     conv_algo_search=cudnn_conv_algo_search,
                                     conv_use_max_workspace=cudnn_conv_use_max_workspace,
                                     gpu_mem_limit_bytes=gpu_mem_limit)
    providers: List[Union[str, Tuple[str, Dict[str, Any]]]] = [("CUDAExecutionProvider", cuda)]
    if backend == "ort-trt":
        if tensorrt:
            trt = provider_options.tensorrt_provider_options(device_id, precision=precision, **tensorrt)
        else:
            trt = {"device_id": str(device_id), "trt_fp16_enable": "1" if precision == "fp16" else "0"}
        providers.insert(0, ("TensorrtExecutionProvider", trt))
    return providers


def make_session(model: Union[str, os.PathLike, bytes, Any], backend: str = "ort-cpu",
                 threads: Optional[int] = None, graph_optimization: str = "all",
                 providers: Optional[Sequence[Any]] = None, log_severity_level: int = 3,
                 optimized_model_path: Optional[Union[str, os.PathLike]] = None):
    """The one place vggbench creates an ``onnxruntime.InferenceSession``.

    Parameters:
        model: an ONNX file path, the serialized model (bytes) or an ``onnx.ModelProto``.
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``: the provider the session must really
            get. ONNX Runtime quietly falls back to the CPU when a GPU provider cannot start; that
            raises :class:`BackendUnavailable` here instead of timing the CPU under a GPU name.
        threads: intra-op threads; None or 0 lets ONNX Runtime choose (one per physical core).
        graph_optimization: ``all`` (default), ``extended``, ``basic`` or ``none``.
        providers: the providers list; None means :func:`provider_options` of ``backend``.
        log_severity_level: ONNX Runtime's log level (3: errors only).
        optimized_model_path: when given, ONNX Runtime also writes the optimized graph there
            (offline optimization).
    """
    import onnxruntime as ort

    if backend not in PROVIDERS:
        raise VggbenchError(f"unknown ONNX Runtime backend {backend!r}; choose from {', '.join(PROVIDERS)}")
    if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
        raise VggbenchError(f"unknown graph optimization {graph_optimization!r}; choose from "
                            f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               GRAPH_OPTIMIZATION_LEVELS[graph_optimization])
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = log_severity_level
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    session = ort.InferenceSession(model, options,
                                   providers=list(providers) if providers is not None else provider_options(backend))
    got = session.get_providers()[0]
    if got != PROVIDERS[backend]:
        raise BackendUnavailable(f"onnxruntime fell back to {got} instead of {PROVIDERS[backend]} "
                                 f"(GPU or its libraries not usable here)")
    return session


def session_predictor(session) -> Callable[[np.ndarray], np.ndarray]:
    """``session`` (one input, logits first output) as a function host batch -> host logits."""
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return predict


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
            builds the engine: its time is recorded as ``session_create_s``, outside any timing.
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
        started = time.perf_counter()
        self._session = make_session(model_path, backend, threads=threads, graph_optimization=graph_optimization,
                                     providers=self.providers)
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
