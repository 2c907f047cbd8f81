"""ONNX Runtime runners: ``ort-cpu``, ``ort-cuda`` (IOBinding) and ``ort-trt`` (TensorRT EP).

ONNX Runtime silently falls back to the CPU when a GPU provider cannot start (missing CUDA
libraries, no device), so after creating a GPU session we check which provider it really got
and refuse to report a CPU number under a GPU name.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from vggbench.artifacts import ONNX_VARIANT_FILES, read_manifest, verify_file
from vggbench.runtimes.base import BackendUnavailable, Runtime

PROVIDERS = {"ort-cpu": "CPUExecutionProvider", "ort-cuda": "CUDAExecutionProvider",
             "ort-trt": "TensorrtExecutionProvider"}
CUDNN_CONV_ALGO_SEARCH = ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")


def unavailable_reason(backend: str, precision: str = "fp32") -> Optional[str]:
    import onnxruntime as ort

    if precision not in ONNX_VARIANT_FILES:
        return f"unknown precision {precision!r}; choose from {', '.join(ONNX_VARIANT_FILES)}"
    provider = PROVIDERS[backend]
    if provider not in ort.get_available_providers():
        hint = {"ort-cuda": "install the gpu extra (onnxruntime-gpu) on a machine with an NVIDIA GPU",
                "ort-trt": "needs onnxruntime-gpu built with TensorRT and TensorRT libraries"}.get(backend, "")
        return f"onnxruntime {ort.__version__} has no {provider} here ({hint})"
    if backend == "ort-cpu" and precision == "fp16":
        return "fp16 model is for GPUs: the CPU provider has few fp16 kernels and would mostly cast back"
    return None


def _provider_options(backend: str, device_id: int, cudnn_conv_algo_search: str,
                      gpu_mem_limit: Optional[int], cudnn_conv_use_max_workspace: bool,
                      trt_fp16: bool):
    if backend == "ort-cpu":
        return [PROVIDERS[backend]]
    if cudnn_conv_algo_search not in CUDNN_CONV_ALGO_SEARCH:
        raise BackendUnavailable(f"cudnn_conv_algo_search {cudnn_conv_algo_search!r} is not one of "
                                 f"{', '.join(CUDNN_CONV_ALGO_SEARCH)}")
    cuda = {"device_id": device_id, "cudnn_conv_algo_search": cudnn_conv_algo_search,
            "cudnn_conv_use_max_workspace": "1" if cudnn_conv_use_max_workspace else "0"}
    if gpu_mem_limit:
        cuda["gpu_mem_limit"] = int(gpu_mem_limit)
    providers = [("CUDAExecutionProvider", cuda)]
    if backend == "ort-trt":
        providers.insert(0, ("TensorrtExecutionProvider",
                             {"device_id": device_id, "trt_fp16_enable": trt_fp16}))
    return providers


class ORTRuntime(Runtime):
    def __init__(self, run_dir, backend: str = "ort-cpu", precision: str = "fp32",
                 threads: Optional[int] = None, device_id: int = 0,
                 cudnn_conv_algo_search: str = "EXHAUSTIVE", gpu_mem_limit: Optional[int] = None,
                 cudnn_conv_use_max_workspace: bool = True, graph_optimization: str = "all"):
        reason = unavailable_reason(backend, precision)
        if reason:
            raise BackendUnavailable(reason)
        import onnxruntime as ort

        self.backend, self.precision = backend, precision
        self.device = "cpu" if backend == "ort-cpu" else f"cuda:{device_id}"
        self._device_id = device_id
        manifest = read_manifest(run_dir)
        model_path = verify_file(run_dir, manifest, ONNX_VARIANT_FILES[precision])
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[graph_optimization]
        options.intra_op_num_threads = threads or 0
        options.log_severity_level = 3
        self.threads = threads or os.cpu_count()
        providers = _provider_options(backend, device_id, cudnn_conv_algo_search, gpu_mem_limit,
                                      cudnn_conv_use_max_workspace, precision == "fp16")
        self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        got = self._session.get_providers()[0]
        if got != PROVIDERS[backend]:
            raise BackendUnavailable(f"onnxruntime fell back to {got} instead of {PROVIDERS[backend]} "
                                     f"(GPU or its libraries not usable here)")
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self._options = {"providers": self._session.get_providers(), "graph_optimization": graph_optimization,
                         "model_file": model_path.name}
        if backend != "ort-cpu":
            self._options.update(cudnn_conv_algo_search=cudnn_conv_algo_search,
                                 cudnn_conv_use_max_workspace=cudnn_conv_use_max_workspace,
                                 gpu_mem_limit=gpu_mem_limit)
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
