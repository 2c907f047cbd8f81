"""Hybridize, export to MXNet symbol/params and to ONNX, clean the ONNX graph, check parity.

The raw ``mx.onnx.export_model`` output lists every weight both as an initializer and as a graph
input. ONNX Runtime must then treat the weights as overridable inputs and cannot fold constants
(measured here: ~1.25x slower on CPU for VGG-11 at 96), so :func:`remove_initializer_inputs`
drops them. Every file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from vggbench.artifacts import atomic_path
from vggbench.errors import VggbenchError

SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
ONNX_FILE = "model.onnx"
INPUT_NAME = "data"
# Parity tolerances: fp32 MXNet vs ONNX Runtime on the same images.
PARITY_MAX_ABS_DIFF = 1e-3
PARITY_MIN_TOP1_AGREEMENT = 0.999


def export_mxnet(net, run_dir: Path, input_size: int, in_channels: int = 1) -> Tuple[Path, Path]:
    """Hybridize ``net`` and export ``model-symbol.json`` + ``model-0000.params`` into ``run_dir``."""
    import mxnet as mx

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, in_channels, input_size, input_size))).wait_to_read()
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=run_dir))
    try:
        net.export(str(staging / "model"), epoch=0)
        for name in (SYMBOL_FILE, PARAMS_FILE):
            os.replace(staging / name, run_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir / SYMBOL_FILE, run_dir / PARAMS_FILE


def remove_initializer_inputs(model) -> int:
    """Drop graph inputs that are really weights (initializers); return how many were removed."""
    initializers = {init.name for init in model.graph.initializer}
    keep = [inp for inp in model.graph.input if inp.name not in initializers]
    removed = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return removed


def check_onnx(model) -> None:
    """Full ``onnx.checker`` pass plus strict shape inference; raises VggbenchError on failure."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise VggbenchError(f"exported ONNX model fails onnx.checker: {str(err).splitlines()[0]}") from None


def export_onnx(run_dir: Path, input_size: int, in_channels: int = 1) -> Dict[str, int]:
    """Convert the exported MXNet files in ``run_dir`` to ``model.onnx`` with a dynamic batch dim."""
    import mxnet as mx
    import onnx

    run_dir = Path(run_dir)
    with atomic_path(run_dir / ONNX_FILE) as raw_path:
        mx.onnx.export_model(str(run_dir / SYMBOL_FILE), str(run_dir / PARAMS_FILE),
                             in_shapes=[(1, in_channels, input_size, input_size)], in_types=np.float32,
                             onnx_file_path=str(raw_path), dynamic=True,
                             dynamic_input_shapes=[(None, in_channels, input_size, input_size)])
        model = onnx.load(str(raw_path))
        removed = remove_initializer_inputs(model)
        check_onnx(model)
        onnx.save(model, str(raw_path))
    return {"opset": int(model.opset_import[0].version), "initializer_inputs_removed": removed,
            "nodes": len(model.graph.node)}


def onnx_session(onnx_path: Path, threads: int = 0):
    """A CPU ONNX Runtime session with all graph optimisations (for parity and accuracy checks)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def parity(mxnet_logits: np.ndarray, onnx_logits: np.ndarray) -> Dict[str, float]:
    """Max absolute logit difference and top-1 agreement between two runtimes' outputs."""
    return {"max_abs_diff": float(np.max(np.abs(mxnet_logits - onnx_logits))),
            "top1_agreement": float(np.mean(mxnet_logits.argmax(1) == onnx_logits.argmax(1))),
            "n": int(len(mxnet_logits))}


def check_parity(result: Dict[str, float], max_abs_diff: float = PARITY_MAX_ABS_DIFF,
                 min_top1_agreement: float = PARITY_MIN_TOP1_AGREEMENT) -> None:
    # Written as "not within" so a NaN difference fails the gate instead of slipping through.
    if not (result["max_abs_diff"] <= max_abs_diff and result["top1_agreement"] >= min_top1_agreement):
        raise VggbenchError(
            f"ONNX Runtime disagrees with MXNet on {result['n']} test images: max |logit diff| "
            f"{result['max_abs_diff']:.2e} (limit {max_abs_diff:.0e}), top-1 agreement "
            f"{result['top1_agreement']:.4f} (limit {min_top1_agreement}); the export is not trustworthy")
