"""The one backend vocabulary and the one table of backend x precision.

Every name a user types after ``--backends`` is a key of :data:`BACKENDS`; the runners
(:mod:`vggbench.runtimes`), the sweep (:mod:`vggbench.bench.sweep`), ``optimize`` and ``doctor`` all read
this table, so which precision runs where is said once. Pure data: this module imports nothing
from the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Backend:
    """One benchmark backend.

    Parameters:
        name: what the user types (``ort-cuda``).
        family: ``mxnet``, ``ort`` or ``openvino`` (which runner loads it).
        device_kind: ``cpu`` or ``gpu``.
        hybrid: MXNet only: hybridized (static graph) rather than imperative Gluon.
        provider: ONNX Runtime only: the execution provider that must really run it.
        precisions: the precisions this backend can run (see :data:`PRECISIONS`).
        default_precisions: what a default sweep runs on it (when the run dir has the file).
    """

    name: str
    family: str
    device_kind: str
    hybrid: bool = False
    provider: Optional[str] = None
    precisions: Tuple[str, ...] = ("fp32",)
    default_precisions: Tuple[str, ...] = ("fp32",)


# precision -> which ONNX file of the run dir it runs (keys of artifacts.ONNX_VARIANT_FILES) and
# what it means. tf32 is the fp32 file with TensorFloat-32 math allowed on the GPU (fp32 rows run
# with TF32 off, so "fp32" means fp32).
PRECISIONS: Dict[str, Tuple[str, str]] = {
    "fp32": ("fp32", "float32 weights and math"),
    "tf32": ("fp32", "float32 file, TensorFloat-32 matmul/conv math allowed (GPU)"),
    "opt": ("opt", "ONNX Runtime's offline-optimized float32 graph (CPU provider)"),
    "int8": ("int8", "static QDQ int8 (uint8 activations, int8 weights)"),
    "fp16": ("fp16", "float16 inside, float32 in/out (GPU)"),
    "bf16": ("fp32", "float32 file, bfloat16 math (CPUs with AMX or AVX512-BF16 units)"),
}

BACKENDS: Dict[str, Backend] = {b.name: b for b in (
    Backend("mxnet", "mxnet", "cpu", default_precisions=("fp32", "bf16")),
    Backend("mxnet-hybrid", "mxnet", "cpu", hybrid=True, precisions=("fp32", "bf16"),
            default_precisions=("fp32", "bf16")),
    Backend("ort-cpu", "ort", "cpu", provider="CPUExecutionProvider",
            precisions=("fp32", "opt", "int8"), default_precisions=("fp32", "opt", "int8", "bf16")),
    Backend("openvino", "openvino", "cpu", precisions=("fp32", "bf16", "int8"),
            default_precisions=("fp32", "bf16", "int8")),
    Backend("mxnet-gpu", "mxnet", "gpu"),
    Backend("mxnet-hybrid-gpu", "mxnet", "gpu", hybrid=True),
    Backend("ort-cuda", "ort", "gpu", provider="CUDAExecutionProvider",
            precisions=("fp32", "tf32", "fp16"), default_precisions=("fp32", "fp16")),
    Backend("ort-trt", "ort", "gpu", provider="TensorrtExecutionProvider",
            precisions=("fp32", "tf32", "fp16"), default_precisions=("fp32", "fp16")),
)}

FAMILY_NAMES = {"mxnet": "MXNet", "ort": "ONNX Runtime", "openvino": "OpenVINO"}
# The row every speedup is measured against, and the MXNet rows accuracy deltas use (best first).
BASELINE_BACKEND = "mxnet-hybrid"
MXNET_REFERENCE_BACKENDS = ("mxnet-hybrid", "mxnet", "mxnet-hybrid-gpu", "mxnet-gpu")
# Which backend each `vggbench optimize` variant is built for (its accuracy is measured on the CPU).
VARIANT_TARGET = {"opt": "ort-cpu", "int8": "ort-cpu", "fp16": "ort-cuda"}
# Why a backend family has no bf16 row (the footnote of its "unavailable" bf16 row).
BF16_UNSUPPORTED = {
    "ort": "ONNX Runtime's CPU provider has no x86 bfloat16 kernels (it would cast back to fp32): "
           "use openvino bf16",
    "mxnet": "bf16 needs MXNet's AMP graph conversion, which works on the hybridized graph only: see mxnet-hybrid bf16",
    "gpu": "no bf16 row on GPUs yet (fp16 is the GPU half-precision row)",
}


def unknown_backend_reason(backend: str, family: Optional[str] = None) -> Optional[str]:
    """Why ``backend`` is not a backend name (of ``family``, e.g. ``ort``, when given), or None: the one
    backend-name check (:func:`vggbench.runtimes.check_backend_name` raises it)."""
    names = [name for name, spec in BACKENDS.items() if family is None or spec.family == family]
    if backend in names:
        return None
    what = "backend" if family is None else f"{FAMILY_NAMES.get(family, family)} backend"
    return f"unknown {what} {backend!r}; choose from: {', '.join(names)}"


def unsupported_reason(backend: str, precision: str) -> Optional[str]:
    """Why ``backend`` cannot run ``precision`` by design (None when it can).

    Parameters:
        backend: a key of :data:`BACKENDS`.
        precision: a key of :data:`PRECISIONS`.
    """
    spec = BACKENDS[backend]
    if precision in spec.precisions:
        return None
    if precision == "bf16":
        return BF16_UNSUPPORTED.get(spec.family if spec.device_kind == "cpu" else "gpu")
    if spec.family == "mxnet":
        return (f"the MXNet runners run fp32 only, plus bf16 on mxnet-hybrid ({precision} variants are ONNX files: "
                f"use ort-cpu/openvino/ort-cuda)")
    if precision == "fp16":
        return "fp16 model is for GPUs: the CPU provider has few fp16 kernels and would mostly cast back"
    if precision == "tf32":
        return "tf32 is GPU math (TensorFloat-32); on a CPU it would be the fp32 row again"
    return f"{precision} is a CPU variant (built for {VARIANT_TARGET.get(precision, 'ort-cpu')}), not run on {backend}"
