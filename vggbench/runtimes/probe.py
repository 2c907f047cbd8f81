"""Honest availability: a tiny real model run on a provider and checked.

``get_available_providers()`` lists CUDA and TensorRT with no GPU present, so :func:`probe_ort_backend`
creates a session on a tiny model, checks in ONNX Runtime's own profile that the compute nodes ran
on the provider, and compares one inference with numpy.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.artifacts.layout import ONNX_IR_VERSION, ONNX_OPSET
from vggbench.errors import strip_ansi, summarize_error
from vggbench.platform.driver import (
    driver_facts,
    driver_too_old_reason,
    missing_library_reason,
    no_driver_reason,
    no_kernel_reason,
)
from vggbench.platform.gpu import visible_inventory
from vggbench.platform.libraries import ort_build
from vggbench.runtimes.backends import BACKENDS
from vggbench.runtimes.ort_session import check_ort_backend_name, make_session, provider_options
from vggbench.runtimes.providers import preload_ort_cuda

# --- a tiny real model, for probes and smoke runs ---------------------------------------------------------

TINY_INPUT_SHAPE = (2, 1, 8, 8)  # N, C, H, W
TINY_CHANNELS = 4
TINY_CLASSES = 10
TINY_OPSET, TINY_IR_VERSION = ONNX_OPSET, ONNX_IR_VERSION


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
    """Capture what native code writes to file descriptor 2 (ONNX Runtime's logger) and what
    Python code prints (ONNX Runtime's ``EP Error`` block) into ``result["text"]``, colour codes
    removed, so a provider that failed to load can be reported with its own words."""
    result = {"text": ""}
    sys.stderr.flush()
    saved = os.dup(2)
    printed = io.StringIO()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(printed):
                yield result
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            result["text"] = strip_ansi(sink.read().decode(errors="replace") + printed.getvalue())


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


def ep_error_message(log_text: str) -> Optional[str]:
    """The message of ONNX Runtime's ``EP Error`` block (printed when a provider cannot be created
    and the session falls back), without the C++ source location and function signature:
    ``CUDA failure 35: CUDA driver version is insufficient for CUDA runtime version``,
    ``Please install TensorRT libraries as mentioned in the GPU requirements page, ...``."""
    text = strip_ansi(log_text or "")
    start = text.find("EP Error ")
    if start < 0:
        return None
    body = text[start + len("EP Error "):]
    body = body.split(" when using [", 1)[0].strip()
    cuda = re.search(r"CUDA failure \d+: [^;\n]+", body)
    if cuda:
        return cuda.group(0).strip()
    locations = list(re.finditer(r"\S+\.(?:cc|cpp|h):\d+ ", body))
    rest = body[locations[-1].end():] if locations else body
    rest = _skip_signature(rest)
    return summarize_error(rest) or None


def _skip_signature(text: str) -> str:
    """``text`` without a leading C++ function signature (balanced parentheses, then an optional
    ``[with ...]`` block): what follows it is the message."""
    paren = text.find("(")
    if paren < 0 or ". " in text[:paren]:
        return text
    depth, at = 0, paren
    for at in range(paren, len(text)):
        depth += {"(": 1, ")": -1}.get(text[at], 0)
        if depth == 0:
            break
    rest = text[at + 1:].lstrip()
    if rest.startswith("[with "):
        depth = 0
        for at, char in enumerate(rest):
            depth += {"[": 1, "]": -1}.get(char, 0)
            if depth == 0:
                rest = rest[at + 1:].lstrip()
                break
    return rest


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


def provider_cuda_code(ort_module: Any = None):
    """The SASS/PTX of this onnxruntime's CUDA provider library
    (:func:`vggbench.platform.cuda_code.read_cuda_code`), or None when there is none."""
    from vggbench.platform.cuda_code import NotACudaLibrary, read_cuda_code

    try:
        import onnxruntime

        library = Path((ort_module or onnxruntime).__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
        return read_cuda_code(library) if library.is_file() else None
    except (ImportError, OSError, NotACudaLibrary):
        return None


def gpu_failure_reason(backend: str, failure_text: str, facts: Any, build: Dict[str, Any],
                       device_id: int = 0, inventory: Optional[Sequence[Any]] = None,
                       cuda_code: Any = "read") -> Optional[str]:
    """Why a GPU session failed or fell back, by the first cause that holds (the order of
    :mod:`vggbench.platform.driver`): no driver, driver too old, a missing library (from the loader
    message in ``failure_text``), no kernel for the GPU; None when none of those explains it (the
    caller then reports the runtime's own text).

    Parameters:
        backend: ``ort-cuda`` or ``ort-trt``.
        failure_text: ONNX Runtime's log and ``EP Error`` text (colour codes are removed).
        facts: :func:`vggbench.platform.driver.driver_facts`.
        build: :func:`vggbench.platform.libraries.ort_build`.
        device_id: the GPU, in CUDA's numbering.
        inventory: the GPUs in CUDA's numbering (default: :func:`visible_inventory`).
        cuda_code: the provider library's code (default: :func:`provider_cuda_code`).
    """
    name = f"{build.get('package') or 'onnxruntime-gpu'} {build.get('version')}"
    reason = (no_driver_reason(facts, backend)
              or driver_too_old_reason(facts, build.get("cuda_version"), name, failure_text)
              or missing_library_reason(failure_text, name, build.get("cuda_version")))
    if reason:
        return reason
    gpus = list(visible_inventory() if inventory is None else inventory)
    if device_id < len(gpus):
        code = provider_cuda_code() if cuda_code == "read" else cuda_code
        return no_kernel_reason(code, gpus[device_id].compute_capability, gpus[device_id].name,
                                f"{name}'s CUDA provider")
    return None


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
    check_ort_backend_name(backend)
    try:
        import onnxruntime  # noqa: F401 - its absence is the reason
    except ImportError as err:
        return f"cannot import onnxruntime ({err}); install the cpu or gpu extra"
    provider = BACKENDS[backend].provider
    build = ort_build()
    facts = driver_facts() if backend != "ort-cpu" else None
    in_build = provider in build["available_providers"]
    kind = f"CUDA {build['cuda_version']}" if build["cuda_version"] else "CPU"
    package = f"onnxruntime {build['version']} (package {build.get('package') or 'onnxruntime'}, {kind} build)"
    no_driver = facts and no_driver_reason(facts, backend)
    if no_driver:  # cause 1 first: no package change can fix it
        return no_driver + ("" if in_build else f"; {package} has no {provider} either")
    if not in_build:
        extra = {"ort-cuda": 'install the gpu extra: pip install -e ".[gpu]"',
                 "ort-trt": 'install the gpu and trt extras: pip install -e ".[gpu,trt]"'}.get(backend, "")
        return f"{package} has no {provider}; {extra}"
    build_name = f"{build.get('package') or 'onnxruntime-gpu'} {build['version']}"
    too_old = facts and driver_too_old_reason(facts, build["cuda_version"], build_name)
    if too_old:
        return too_old
    preload = preload_ort_cuda(tensorrt=backend == "ort-trt") if backend != "ort-cpu" else {"messages": []}
    weights = tiny_weights()
    expected = tiny_reference(weights["x"], weights["conv"], weights["dense"])
    with tempfile.TemporaryDirectory(prefix="vggbench-probe.") as scratch:
        try:
            with captured_native_stderr() as log:
                session = make_session(tiny_onnx_model(weights), backend, providers=provider_options(backend, device_id),
                                       log_severity_level=2, profile_prefix=os.path.join(scratch, "probe"),
                                       check_provider=False)
                got_provider = session.get_providers()[0]
                if got_provider == provider:
                    logits = session.run(None, {"x": weights["x"]})[0]
                    profile = session.end_profiling()
        except Exception as err:  # noqa: BLE001 - any failure is the reason
            return gpu_failure_reason(backend, f"{log['text']}\n{err}", facts, build, device_id) or \
                f"{provider} failed: {summarize_error(err)}"
        if got_provider != provider:
            text = "\n".join([log["text"]] + list(preload["messages"]))
            return gpu_failure_reason(backend, text, facts, build, device_id) or (
                f"onnxruntime fell back to {got_provider} instead of {provider}: "
                + (ep_error_message(text) or first_error_line(text) or "GPU or its libraries not usable here"))
        reason = fallback_reason(profiled_node_providers(profile), provider)
        if reason:
            return gpu_failure_reason(backend, "", facts, build, device_id) or reason
    error = relative_error(logits, expected)
    if not error <= tolerance:
        return f"{provider} ran but computed a wrong result (relative error {error:.3g} > {tolerance:g})"
    return None
