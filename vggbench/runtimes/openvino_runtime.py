"""OpenVINO runner (``openvino``, CPU plugin): the run dir's own ONNX files, compiled by OpenVINO.

OpenVINO's CPU plugin silently runs float32 models in bfloat16 on CPUs with AVX512-BF16 or AMX
(its default ``INFERENCE_PRECISION_HINT`` there is ``bf16``), so an unforced "fp32" row would time
bf16 math. Every compile here therefore sets the hint explicitly (``f32`` for the fp32 and int8
rows, ``bf16`` for the bf16 row) and reads back what the compiled model reports: the hint and, per
convolution / fully connected layer, the precision and kernel it really executes in. A bf16 row
whose compiled model does not report bf16 is refused, never timed under the wrong name.

Each batch size gets its own static-shape compile (the ONNX input's batch dim is dynamic): the
CPU plugin picks kernels per shape, and static shapes are what a deployment compiles. Compiles
happen outside any timing (at load for the sweep's batch sizes, on first use for others).
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

from vggbench.artifacts.layout import ONNX_VARIANT_FILES
from vggbench.artifacts.manifest import read_manifest, verify_file
from vggbench.errors import VggbenchError
from vggbench.platform.cpu import bf16_unavailable_reason
from vggbench.runtimes.backends import PRECISIONS, unsupported_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime

# vggbench precision -> OpenVINO INFERENCE_PRECISION_HINT. int8 runs the QDQ file with the hint at
# f32: the quantized convolutions execute in int8 (u8 x i8) either way, the rest stays float32 as in
# the ONNX Runtime int8 row.
INFERENCE_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# Layers whose precision decides the speed: what the row reports as "executes in".
COMPUTE_LAYER_TYPES = ("Convolution", "FullyConnected", "MatMul")
# Static-shape compiles kept per precision (the sweep's batch sizes plus the accuracy pass's).
MAX_COMPILED_SHAPES = 6


def openvino_version() -> Optional[str]:
    """The installed OpenVINO distribution's version, e.g. ``2026.4.1`` (None when not installed)."""
    from importlib import metadata

    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def unavailable_reason(precision: str = "fp32", flags: Optional[Iterable[str]] = None) -> Optional[str]:
    """Why the ``openvino`` backend cannot run ``precision`` here, or None when it can.

    Parameters:
        precision: a key of :data:`vggbench.runtimes.backends.PRECISIONS`.
        flags: the CPU's flags; None reads this machine's.
    """
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}"
    reason = unsupported_reason("openvino", precision)
    if reason:
        return reason
    if openvino_version() is None:
        return "openvino is not installed (pip install openvino)"
    if precision == "bf16":
        return bf16_unavailable_reason(flags)
    return None


def compile_config(precision_hint: str, threads: Optional[int]) -> Dict[str, Any]:
    """The CPU plugin options every vggbench compile uses.

    One stream and the latency hint put every thread on one inference at a time, as the other
    backends run; the precision hint is always explicit (see the module docstring).

    Parameters:
        precision_hint: ``f32`` or ``bf16``.
        threads: inference threads; None or 0 lets OpenVINO choose.
    """
    config: Dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision_hint, "PERFORMANCE_HINT": "LATENCY",
                              "NUM_STREAMS": 1}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def compile_model(model, precision_hint: str = "f32", threads: Optional[int] = None, core=None):
    """The one place vggbench compiles an OpenVINO model (CPU plugin).

    Parameters:
        model: an ``openvino.Model`` or a model file path.
        precision_hint: ``f32`` or ``bf16`` (always set: see the module docstring).
        threads: inference threads; None lets OpenVINO choose.
        core: an ``openvino.Core`` to reuse (None makes one).
    """
    import openvino as ov

    if precision_hint not in ("f32", "bf16"):
        raise VggbenchError(f"unknown OpenVINO precision hint {precision_hint!r}; choose from f32, bf16")
    core = core or ov.Core()
    if isinstance(model, (str, os.PathLike)):
        model = core.read_model(str(model))
    return core.compile_model(model, "CPU", compile_config(precision_hint, threads))


def compiled_precision(compiled) -> str:
    """The inference precision the compiled model reports (``f32``, ``bf16``, ...)."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return value.to_string() if hasattr(value, "to_string") else str(value)


def executed_layers(compiled) -> Dict[str, Any]:
    """What the compute layers of ``compiled`` really execute in, from its runtime graph.

    Returns ``layer_precisions`` (runtime precision -> count of convolution / fully connected
    layers, e.g. ``{"u8": 11}`` for int8 kernels) and ``layer_kernels`` (the CPU primitives picked,
    e.g. ``brgconv_avx512_amx_bf16``).
    """
    precisions: Dict[str, int] = collections.Counter()
    kernels: List[str] = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) not in COMPUTE_LAYER_TYPES:
            continue
        precisions[info["runtimePrecision"].astype(str)] += 1
        kernel = info["primitiveType"].astype(str) if "primitiveType" in info else "?"
        if kernel not in kernels:
            kernels.append(kernel)
    return {"layer_precisions": dict(precisions), "layer_kernels": kernels}


class _Shape:
    """One static-batch compile: the compiled model, the infer request ``run`` uses, and the one
    the compute-only path binds its staged input to.

    Two requests, because ``request.infer({0: batch})`` copies into the request's current input
    tensor: on a request whose input is bound to a staged host array, ``run`` would overwrite the
    staged input, or write into freed memory once that array is gone. The staged request keeps its
    array and tensor alive (``staged``) for as long as it is bound.
    """

    def __init__(self, compiled, compile_s: float):
        self.compiled, self.compile_s = compiled, compile_s
        self.request = compiled.create_infer_request()
        self.staged_request = compiled.create_infer_request()
        self.staged = None


class OpenVINORuntime(Runtime):
    """The run dir's ONNX file for ``precision`` compiled by OpenVINO for the CPU.

    Parameters:
        run_dir: a run dir; the file is checked against the manifest's sha256 first.
        precision: ``fp32`` (model.onnx, f32 forced), ``bf16`` (model.onnx, bf16 hint) or ``int8``
            (model.int8.onnx).
        threads: inference threads; None lets OpenVINO choose.
        batch_sizes: batch sizes to compile now (outside any timing); others compile on first use.
    """

    backend = "openvino"
    device = "cpu"

    def __init__(self, run_dir, precision: str = "fp32", threads: Optional[int] = None,
                 batch_sizes: Sequence[int] = ()):
        reason = unavailable_reason(precision)
        if reason:
            raise BackendUnavailable(reason)
        import openvino as ov

        self.precision, self.threads = precision, threads or os.cpu_count()
        self._threads_option = threads
        self.hint = INFERENCE_PRECISION_HINTS[precision]
        manifest = read_manifest(run_dir)
        self._path = verify_file(run_dir, manifest, ONNX_VARIANT_FILES[PRECISIONS[precision][0]])
        self._core = ov.Core()
        started = time.perf_counter()
        self._model = self._core.read_model(str(self._path))
        self._read_s = time.perf_counter() - started
        self._input_shape = list(self._model.inputs[0].get_partial_shape())
        self._shapes: "collections.OrderedDict[int, _Shape]" = collections.OrderedDict()
        self._pinned = {int(b) for b in batch_sizes}
        first = self._shape(min(self._pinned) if self._pinned else 1)
        for batch_size in sorted(self._pinned):
            self._shape(batch_size)
        self.reported_precision = compiled_precision(first.compiled)
        self._layers = executed_layers(first.compiled)
        if self.reported_precision != self.hint:
            raise BackendUnavailable(f"OpenVINO compiled {self._path.name} in {self.reported_precision}, "
                                     f"not the {self.hint} asked for")
        self._staged: Optional[_Shape] = None

    def _shape(self, batch_size: int) -> _Shape:
        """The compile for ``batch_size`` (made on first use; the least recently used unpinned
        one is dropped beyond :data:`MAX_COMPILED_SHAPES`)."""
        shape = self._shapes.get(batch_size)
        if shape is not None:
            self._shapes.move_to_end(batch_size)
            return shape
        import openvino as ov

        model = self._model.clone()
        dims = [batch_size] + [d.get_length() for d in self._input_shape[1:]]
        model.reshape({0: ov.PartialShape(dims)})
        started = time.perf_counter()
        compiled = compile_model(model, self.hint, self._threads_option, self._core)
        shape = self._shapes[batch_size] = _Shape(compiled, time.perf_counter() - started)
        while len(self._shapes) > MAX_COMPILED_SHAPES:
            evict = next((b for b in self._shapes if b not in self._pinned), None)
            if evict is None:
                break
            del self._shapes[evict]
        return shape

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        request = self._shape(len(batch)).request
        request.infer({0: batch})
        return request.get_output_tensor(0).data.copy()

    def stage(self, batch: np.ndarray) -> None:
        """Bind the input once (shared with a host copy the runtime keeps: the CPU plugin reads it
        in place) to the compile's staged request."""
        import openvino as ov

        array = np.array(batch, dtype=np.float32, order="C", copy=True)
        shape = self._shape(len(array))
        tensor = ov.Tensor(array, shared_memory=True)
        shape.staged_request.set_input_tensor(0, tensor)
        shape.staged = (array, tensor)  # alive while bound
        self._staged = shape

    def run_staged(self) -> None:
        self._staged.staged_request.infer()

    def staged_output(self) -> np.ndarray:
        return self._staged.staged_request.get_output_tensor(0).data.copy()

    def info(self) -> Dict[str, Any]:
        info = super().info()
        first = next(iter(self._shapes.values()))
        config = first.compiled
        info.update(openvino=openvino_version(), model_file=self._path.name, threads=self.threads,
                    precision_hint=self.hint, compiled_precision=self.reported_precision,
                    inference_num_threads=int(config.get_property("INFERENCE_NUM_THREADS")),
                    num_streams=int(config.get_property("NUM_STREAMS")),
                    cpu_pinning=bool(config.get_property("ENABLE_CPU_PINNING")),
                    static_batch_sizes=sorted(self._shapes), read_model_s=self._read_s,
                    compile_s={str(b): s.compile_s for b, s in self._shapes.items()}, **self._layers)
        return info

    def close(self) -> None:
        self._staged = None
        self._shapes.clear()
        self._model = self._core = None
