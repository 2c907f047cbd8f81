"""The one place vggbench makes ONNX Runtime sessions: providers lists, session options, and the
runner options (:class:`OrtOptions`) that reach them.

ONNX Runtime silently falls back to the CPU when a GPU provider cannot start (missing CUDA
libraries, no device): :func:`make_session` checks which provider a session really got and raises
:class:`ProviderFallback` instead of letting a CPU number run under a GPU name.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from vggbench.errors import VggbenchError
from vggbench.runtimes.backends import BACKENDS, unknown_backend_reason
from vggbench.runtimes.base import BackendUnavailable
from vggbench.runtimes.providers import CUDNN_CONV_ALGO_SEARCH


def check_ort_backend_name(backend: str) -> None:
    """A one-line VggbenchError unless ``backend`` is an ONNX Runtime backend (``ort-cpu``, ...)."""
    reason = unknown_backend_reason(backend, "ort")
    if reason:
        raise VggbenchError(reason)


class ProviderFallback(BackendUnavailable):
    """ONNX Runtime gave the session another provider than the backend's (``got``, ``wanted``)."""

    def __init__(self, got: str, wanted: str):
        super().__init__(f"onnxruntime fell back to {got} instead of {wanted} (GPU or its libraries not usable here)")
        self.got, self.wanted = got, wanted


PROVIDERS = {name: spec.provider for name, spec in BACKENDS.items() if spec.family == "ort"}
GRAPH_OPTIMIZATION_LEVELS = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED",
                             "basic": "ORT_ENABLE_BASIC", "none": "ORT_DISABLE_ALL"}


@dataclasses.dataclass(frozen=True)
class OrtOptions:
    """The ONNX Runtime runner options a sweep passes to every ORT session (``--graph-optimization``,
    ``--cudnn-conv-algo-search``, ``--no-cudnn-max-workspace``, ``--gpu-mem-limit``). Validates
    itself; crosses the worker boundary as :meth:`to_dict` (the results' ``settings.runtime_options``,
    whose ``gpu_mem_limit`` key is in bytes) and back with :meth:`from_dict`.

    Attributes:
        graph_optimization: ``all``, ``extended``, ``basic`` or ``none``.
        cudnn_conv_algo_search: ``EXHAUSTIVE``, ``HEURISTIC`` or ``DEFAULT`` (GPU providers).
        cudnn_conv_use_max_workspace: let cuDNN pick algorithms that need a large workspace.
        gpu_mem_limit_bytes: the CUDA arena's limit; None for none.
    """

    graph_optimization: str = "all"
    cudnn_conv_algo_search: str = "EXHAUSTIVE"
    cudnn_conv_use_max_workspace: bool = True
    gpu_mem_limit_bytes: Optional[int] = None

    def __post_init__(self) -> None:
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise VggbenchError(f"unknown graph optimization {self.graph_optimization!r}; choose from "
                                f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}")
        if self.cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCH:
            raise VggbenchError(f"cudnn_conv_algo_search {self.cudnn_conv_algo_search!r} is not one of "
                                f"{', '.join(CUDNN_CONV_ALGO_SEARCH)}")
        if not isinstance(self.cudnn_conv_use_max_workspace, bool):
            raise VggbenchError(f"cudnn_conv_use_max_workspace must be true or false, got "
                                f"{self.cudnn_conv_use_max_workspace!r}")
        limit = self.gpu_mem_limit_bytes
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise VggbenchError(f"gpu_mem_limit must be a positive number of bytes, got {limit!r}")

    def to_dict(self) -> Dict[str, Any]:
        """The JSON form, also :class:`ORTRuntime`'s keyword arguments."""
        return {"graph_optimization": self.graph_optimization, "cudnn_conv_algo_search": self.cudnn_conv_algo_search,
                "cudnn_conv_use_max_workspace": self.cudnn_conv_use_max_workspace,
                "gpu_mem_limit": self.gpu_mem_limit_bytes}

    @classmethod
    def from_dict(cls, values: Optional[Dict[str, Any]]) -> "OrtOptions":
        """The options from their JSON form (missing keys: defaults); an unknown key is a VggbenchError."""
        values = dict(values or {})
        if "gpu_mem_limit" in values:
            values["gpu_mem_limit_bytes"] = values.pop("gpu_mem_limit")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise VggbenchError(f"unknown ONNX Runtime option(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known - {'gpu_mem_limit_bytes'} | {'gpu_mem_limit'}))}")
        return cls(**values)


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
                 optimized_model_path: Optional[Union[str, os.PathLike]] = None,
                 profile_prefix: Optional[str] = None, check_provider: bool = True):
    """The one place vggbench creates an ``onnxruntime.InferenceSession``.

    Parameters:
        model: an ONNX file path, the serialized model (bytes) or an ``onnx.ModelProto``.
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``: the provider the session must really
            get. ONNX Runtime quietly falls back to the CPU when a GPU provider cannot start; that
            raises :class:`ProviderFallback` here instead of timing the CPU under a GPU name.
        threads: intra-op threads; None or 0 lets ONNX Runtime choose (one per physical core).
        graph_optimization: ``all`` (default), ``extended``, ``basic`` or ``none``.
        providers: the providers list; None means :func:`provider_options` of ``backend``.
        log_severity_level: ONNX Runtime's log level (3: errors only).
        optimized_model_path: when given, ONNX Runtime also writes the optimized graph there
            (offline optimization).
        profile_prefix: when given, ONNX Runtime profiles the session into files with this prefix
            (the probe reads which provider ran each node).
        check_provider: False returns a fallen-back session too, for a caller that explains the
            fallback itself (:func:`vggbench.runtimes.probe.probe_ort_backend`).
    """
    import onnxruntime as ort

    check_ort_backend_name(backend)
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
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    session = ort.InferenceSession(model, options,
                                   providers=list(providers) if providers is not None else provider_options(backend))
    got = session.get_providers()[0]
    if check_provider and got != PROVIDERS[backend]:
        raise ProviderFallback(got, PROVIDERS[backend])
    return session


def session_predictor(session) -> Callable[[np.ndarray], np.ndarray]:
    """``session`` (one input, logits first output) as a function host batch -> host logits."""
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run([output_name], {input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    return predict
