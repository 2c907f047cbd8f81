"""Honest availability: a tiny real model run on a provider and checked.

``get_available_providers()`` lists CUDA and TensorRT with no GPU present, so :func:`probe_ort_backend`
creates a session on a tiny model, checks in ONNX Runtime's own profile that the compute nodes ran
on the provider, and compares one inference with numpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.errors import VggbenchError, summarize_error
from vggbench.platform.libraries import ort_build
from vggbench.runtimes.backends import BACKENDS
from vggbench.runtimes.providers import cuda_provider_options, preload_ort_cuda

# --- a tiny real model, for probes and smoke runs ---------------------------------------------------------

TINY_INPUT_SHAPE = (2, 1, 8, 8)  # N, C, H, W
TINY_CHANNELS = 4
TINY_CLASSES = 10
TINY_OPSET, TINY_IR_VERSION = 15, 8  # loadable by ONNX Runtime 1.16 and later


def tiny_weights(seed: int = 0) -> Dict[str, np.ndarray]:
    """Weights and one input batch of the tiny net: Conv 3x3 (pad 1) -> Relu -> Flatten -> MatMul."""
    rng = np.random.RandomState(seed)
    n, c, h, w = TINY_INPUT_SHAPE
    return {"x": rng.uniform(-1, 1, TINY_INPUT_SHAPE).astype(np.float32),
            "conv": rng.uniform(-0.5, 0.5, (TINY_CHANNELS, c, 3, 3)).astype(np.float32),
            "dense": rng.uniform(-0.2, 0.2, (TINY_CHANNELS * h * w, TINY_CLASSES)).astype(np.float32)}


def tiny_reference(x: np.ndarray, conv: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """The tiny net in float64 numpy: what every backend must compute (within its precision)."""
    n, c, h, w = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, conv.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nchw,oc->nohw", padded[:, :, dy:dy + h, dx:dx + w], conv[:, :, dy, dx])
    return np.maximum(out, 0).reshape(n, -1) @ dense.astype(np.float64)


def tiny_onnx_model(weights: Optional[Dict[str, np.ndarray]] = None):
    """The tiny net as an ONNX model (opset 15, IR 8, fixed input ``x`` of :data:`TINY_INPUT_SHAPE`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = weights or tiny_weights()
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"], axis=1),
         helper.make_node("MatMul", ["f", "dense_w"], ["y"])],
        "vggbench_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(TINY_INPUT_SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [TINY_INPUT_SHAPE[0], TINY_CLASSES])],
        initializer=[numpy_helper.from_array(weights["conv"], "conv_w"),
                     numpy_helper.from_array(weights["dense"], "dense_w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TINY_OPSET)])
    model.ir_version = TINY_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| over max(1, max |expected|): one number for "is this the same result"."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# --- honest ONNX Runtime probe -------------------------------------------------------------------------------

# Nodes that move or reshape data: a provider may leave them to another one without the model
# having fallen back.
_NON_COMPUTE_OPS = ("MemcpyFromHost", "MemcpyToHost", "Flatten", "Reshape", "Cast", "ReorderInput",
                    "ReorderOutput", "Identity")


@contextlib.contextmanager
def captured_native_stderr():
    """Capture what native code writes to file descriptor 2 (ONNX Runtime's logger) into
    ``result["text"]``, so a provider that failed to load can be reported with its own words."""
    result = {"text": ""}
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield result
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            result["text"] = sink.read().decode(errors="replace")


def first_error_line(log_text: str) -> Optional[str]:
    """The first error/warning line of an ONNX Runtime log, without its ``[E:onnxruntime:...]``
    prefix (e.g. ``Failed to load library libonnxruntime_providers_cuda.so with error: ...``)."""
    for line in log_text.splitlines():
        if re.search(r"\[[EW]:onnxruntime|error|failed", line, re.IGNORECASE):
            text = re.sub(r"^.*?\[[EWIV]:onnxruntime:[^\]]*\]\s*", "", line).strip()
            status = text.find("[ONNXRuntimeError]")  # "<source location> [ONNXRuntimeError] : 1 : FAIL : ..."
            text = summarize_error(text[status:] if status >= 0 else text)
            if text:
                return text
    return None


def profiled_node_providers(profile_path: Any) -> List[Tuple[str, str]]:
    """``(op, provider)`` of every node ONNX Runtime ran, from its profiling JSON file."""
    events = json.loads(Path(profile_path).read_text())
    return [(event["args"].get("op_name", ""), event["args"].get("provider", ""))
            for event in events if event.get("cat") == "Node" and "provider" in event.get("args", {})]


def fallback_reason(node_providers: Sequence[Tuple[str, str]], provider: str) -> Optional[str]:
    """Why a profiled run does not count as running on ``provider``: a compute node ran elsewhere,
    or nothing ran on it; None when every compute node ran there."""
    compute = [(op, where) for op, where in node_providers if op not in _NON_COMPUTE_OPS]
    elsewhere = sorted({f"{op} on {where}" for op, where in compute if where != provider})
    if elsewhere:
        return f"nodes ran off {provider}: {', '.join(elsewhere)}"
    if not compute:
        return f"no compute node ran on {provider}"
    return None


def _probe_providers(backend: str, device_id: int) -> List[Any]:
    if backend == "ort-cpu":
        return ["CPUExecutionProvider"]
    providers: List[Any] = [("CUDAExecutionProvider", cuda_provider_options(device_id))]
    if backend == "ort-trt":
        providers.insert(0, ("TensorrtExecutionProvider", {"device_id": str(int(device_id)),
                                                            "trt_engine_cache_enable": "0"}))
    return providers


def probe_ort_backend(backend: str, device_id: int = 0, tolerance: float = 1e-2) -> Optional[str]:
    """None when ``backend`` really runs here, else the reason in one line.

    Parameters:
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``.
        device_id: the GPU, in CUDA's numbering.
        tolerance: largest :func:`relative_error` accepted against numpy (a "does it compute the
            right thing" check: 1e-2 admits TF32, not garbage).

    The provider must be in the build, the libraries must load (:func:`preload_ort_cuda` first),
    the session must get the provider first, ONNX Runtime's own profile must show every compute
    node of the tiny model on it, and one inference must match numpy.
    """
    ort_backends = [name for name, spec in BACKENDS.items() if spec.family == "ort"]
    if backend not in ort_backends:
        raise VggbenchError(f"unknown ONNX Runtime backend {backend!r}; choose from {', '.join(ort_backends)}")
    try:
        import onnxruntime as ort
    except ImportError as err:
        return f"cannot import onnxruntime ({err}); install the cpu or gpu extra"
    provider = BACKENDS[backend].provider
    build = ort_build()
    if provider not in build["available_providers"]:
        extra = {"ort-cuda": "install the gpu extra (onnxruntime-gpu) on a machine with an NVIDIA GPU",
                 "ort-trt": "install the gpu and trt extras (onnxruntime-gpu + TensorRT 10)"}.get(backend, "")
        kind = f"CUDA {build['cuda_version']}" if build["cuda_version"] else "CPU"
        return (f"onnxruntime {build['version']} (package {build.get('package') or 'onnxruntime'}, {kind} build) "
                f"has no {provider}; {extra}")
    preload = preload_ort_cuda(tensorrt=backend == "ort-trt") if backend != "ort-cpu" else {"messages": []}
    weights = tiny_weights()
    expected = tiny_reference(weights["x"], weights["conv"], weights["dense"])
    with tempfile.TemporaryDirectory(prefix="vggbench-probe.") as scratch:
        options = ort.SessionOptions()
        options.log_severity_level = 2
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(scratch, "probe")
        try:
            with captured_native_stderr() as log:
                session = ort.InferenceSession(tiny_onnx_model(weights).SerializeToString(), options,
                                               providers=_probe_providers(backend, device_id))
                got_provider = session.get_providers()[0]
                if got_provider == provider:
                    logits = session.run(None, {"x": weights["x"]})[0]
                    profile = session.end_profiling()
        except Exception as err:  # noqa: BLE001 - any failure is the reason
            return f"{provider} failed: {summarize_error(err)}"
        if got_provider != provider:
            cause = first_error_line(log["text"]) or next(iter(preload["messages"]), None)
            return (f"onnxruntime fell back to {got_provider} instead of {provider}"
                    + (f": {cause}" if cause else " (GPU or its libraries not usable here)"))
        reason = fallback_reason(profiled_node_providers(profile), provider)
        if reason:
            return reason
    error = relative_error(logits, expected)
    if not error <= tolerance:
        return f"{provider} ran but computed a wrong result (relative error {error:.3g} > {tolerance:g})"
    return None
