"""Hybridize, export to MXNet symbol/params and to ONNX, clean the ONNX graph, count the model,
check parity.

The raw ``mx.onnx.export_model`` output lists every weight both as an initializer and as a graph
input. ONNX Runtime must then treat the weights as overridable inputs and cannot fold constants
(slower on CPU: docs/methodology.md), so :func:`remove_initializer_inputs` drops them. Every
file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from vggbench import data, models
from vggbench.artifacts.io import atomic_path
from vggbench.artifacts.layout import (  # noqa: F401 (re-exported)
    INPUT_NAME,
    ONNX_IR_VERSION,
    ONNX_OPSET,
    ONNX_VARIANT_FILES,
    PARAMS_FILE,
    SYMBOL_FILE,
)
from vggbench.errors import VggbenchError, summarize_error
from vggbench.metrics import compare_logits, predict_in_batches
from vggbench.platform.mxnet import import_mxnet
from vggbench.runtimes.mxnet_runtime import load_exported  # noqa: F401 (part of this stage's surface)

ONNX_FILE = ONNX_VARIANT_FILES["fp32"]
# Parity tolerances: fp32 MXNet vs ONNX Runtime on the same images.
PARITY_MAX_ABS_DIFF = 1e-3
PARITY_MIN_TOP1_AGREEMENT = 0.999


def export_mxnet(net, run_dir: Path, input_size: int, in_channels: int = 1) -> Tuple[Path, Path]:
    """Hybridize ``net`` and export ``model-symbol.json`` + ``model-0000.params`` into ``run_dir``.

    ``net``: an initialised Gluon HybridBlock (on the CPU); ``input_size`` and ``in_channels``
    give the one dummy batch that fixes the graph's shapes. Returns the two paths.
    """
    mx = import_mxnet()

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1, in_channels, input_size, input_size))).wait_to_read()
    staging = Path(tempfile.mkdtemp(prefix=".export.", dir=run_dir))
    try:
        net.export(str(staging / "model"), epoch=0)
        for name in (SYMBOL_FILE, PARAMS_FILE):
            os.replace(staging / name, run_dir / name)
    except Exception as err:  # noqa: BLE001 - a full disk is one line; anything else keeps its traceback
        from vggbench.artifacts.io import storage_problem

        problem = storage_problem(err, run_dir, (staging, staging / SYMBOL_FILE, staging / PARAMS_FILE))
        if problem is None:
            raise
        raise VggbenchError(f"cannot write the MXNet export into {run_dir}: {problem}; free space or choose a "
                            f"writable --out, then run again (--resume keeps the training)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return run_dir / SYMBOL_FILE, run_dir / PARAMS_FILE


def remove_initializer_inputs(model) -> int:
    """Drop graph inputs of the ONNX ``model`` that are really weights (initializers), in place;
    return how many were removed."""
    initializers = {init.name for init in model.graph.initializer}
    keep = [inp for inp in model.graph.input if inp.name not in initializers]
    removed = len(model.graph.input) - len(keep)
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return removed


def check_onnx(model) -> None:
    """Full ``onnx.checker`` pass plus strict shape inference of the ONNX ``model``; raises
    VggbenchError on failure."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise VggbenchError(f"exported ONNX model fails onnx.checker: {summarize_error(err)}") from None


# --- portable ONNX: what the graph needs, not the installed onnx's defaults ------------------------
# mx.onnx stamps the installed onnx's newest opset and IR version (23 and 11 with onnx 1.18), which
# ONNX Runtime 1.16/1.18, converters and older TensorRT parsers refuse, while every node comes from
# MXNet's opset-12/13 translators. Opset 15 is the lowest whose op semantics match every node of
# every variant (QDQ per-channel needs >= 13; BatchNormalization 15 is 9's inference semantics);
# IR 8 is the version that goes with it (onnx 1.10).
PORTABLE_OPSET = ONNX_OPSET
PORTABLE_IR_VERSION = ONNX_IR_VERSION
BATCH_DIM = "batch"
_DEFAULT_DOMAIN = ("", "ai.onnx")


def _name_batch_dim(value) -> None:
    dims = value.type.tensor_type.shape.dim
    if dims and not dims[0].HasField("dim_value"):
        dims[0].dim_param = BATCH_DIM


def make_portable(model, opset: int = PORTABLE_OPSET, ir_version: int = PORTABLE_IR_VERSION) -> Dict[str, Any]:
    """Stamp ``opset``/``ir_version``, drop unused opset imports, name the batch dim; in place.

    Parameters:
        model: an ``onnx.ModelProto`` whose default-domain nodes were written for opset <= ``opset``
            semantics (MXNet's translators; tools that keep the opset they are given).
        opset: the default-domain (ai.onnx) opset to declare.
        ir_version: the IR version to declare.

    Opset imports of other domains are kept at their version when a node uses them (ORT's fused
    ``com.microsoft`` ops) and dropped otherwise. The first dimension of every graph input and
    output that is not a fixed size becomes ``batch`` (vggbench models are batch-major: images in,
    logits ``[batch, classes]`` out); other unknown output dims are filled from shape inference.
    Raises VggbenchError when a node's op does not exist at ``opset`` or would change meaning
    (declared opset below ``opset`` with a newer definition in between). Returns what was written:
    ``opset``, ``ir_version``, ``opset_imports``, ``dropped_opset_imports``, ``declared_before``.
    """
    from onnx import defs, helper, shape_inference

    declared = {("" if imp.domain in _DEFAULT_DOMAIN else imp.domain): int(imp.version) for imp in model.opset_import}
    used = {"" if node.domain in _DEFAULT_DOMAIN else node.domain
            for graph_nodes in [model.graph.node] + [function.node for function in model.functions]
            for node in graph_nodes}
    old = declared.get("", opset)
    for op_type in sorted({node.op_type for node in model.graph.node if node.domain in _DEFAULT_DOMAIN}):
        try:
            new_since = defs.get_schema(op_type, opset, "").since_version
            changed = old < opset and defs.get_schema(op_type, old, "").since_version != new_since
        except defs.SchemaError:
            raise VggbenchError(f"ONNX op {op_type} does not exist at opset {old} or {opset}; "
                                f"the model cannot be stamped portable") from None
        if changed:
            raise VggbenchError(f"ONNX op {op_type} changed between opset {old} and {opset} (since {new_since}); "
                                f"convert the model with onnx.version_converter instead of stamping it")
    keep = sorted((domain, version) for domain, version in declared.items() if domain and domain in used)
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in keep])
    before = {"ir_version": int(model.ir_version), **{(d or "ai.onnx"): v for d, v in sorted(declared.items())}}
    model.ir_version = ir_version

    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers:
            _name_batch_dim(value)
    inferred = shape_inference.infer_shapes(model)
    for output, guess in zip(model.graph.output, inferred.graph.output):
        tensor, guessed = output.type.tensor_type, guess.type.tensor_type
        if not tensor.HasField("shape") and guessed.HasField("shape"):
            tensor.shape.CopyFrom(guessed.shape)
        elif len(tensor.shape.dim) == len(guessed.shape.dim):
            for dim, guessed_dim in zip(tensor.shape.dim, guessed.shape.dim):
                if not dim.HasField("dim_value") and guessed_dim.HasField("dim_value"):
                    dim.dim_value = guessed_dim.dim_value
        _name_batch_dim(output)
    return {"opset": opset, "ir_version": ir_version,
            "opset_imports": {(imp.domain or "ai.onnx"): int(imp.version) for imp in model.opset_import},
            "dropped_opset_imports": sorted(d or "ai.onnx" for d in declared if d not in used),
            "declared_before": before}


def make_portable_file(path: Path) -> Dict[str, Any]:
    """:func:`make_portable` on the ONNX file at ``path`` (rewritten in place after
    :func:`check_onnx` passes on the stamped model); returns make_portable's summary."""
    import onnx

    model = onnx.load(str(path))
    info = make_portable(model)
    check_onnx(model)
    onnx.save(model, str(path))
    return info


def export_onnx(run_dir: Path, input_size: int, in_channels: int = 1) -> Dict[str, Any]:
    """Convert the exported MXNet files in ``run_dir`` to ``model.onnx`` with a dynamic batch dim.

    ``input_size`` and ``in_channels`` are the exported graph's. Returns the manifest's ``onnx``
    entry: :func:`make_portable`'s summary (opset, ir_version, opset_imports, ...), how many
    initializer inputs were removed, node count.
    """
    mx = import_mxnet()
    import onnx

    run_dir = Path(run_dir)
    with atomic_path(run_dir / ONNX_FILE) as raw_path:
        mx.onnx.export_model(str(run_dir / SYMBOL_FILE), str(run_dir / PARAMS_FILE),
                             in_shapes=[(1, in_channels, input_size, input_size)], in_types=np.float32,
                             onnx_file_path=str(raw_path), dynamic=True,
                             dynamic_input_shapes=[(None, in_channels, input_size, input_size)])
        model = onnx.load(str(raw_path))
        removed = remove_initializer_inputs(model)
        portable = make_portable(model)  # opset 15 / IR 8, batch dim named: see PORTABLE_OPSET
        check_onnx(model)
        onnx.save(model, str(raw_path))
    return {**portable, "initializer_inputs_removed": removed, "nodes": len(model.graph.node)}


def exported_model_stats(run_dir: Path, input_size: int, in_channels: int = 1) -> Dict[str, Any]:
    """Trainable parameters and forward FLOPs per image counted on the exported ``model-symbol.json``
    in ``run_dir`` for ``in_channels`` x ``input_size`` x ``input_size`` inputs: the manifest's
    ``model_stats`` entry (read back with :func:`vggbench.models.model_stats_from_manifest`)."""
    mx = import_mxnet()

    stats = models.graph_stats(mx.sym.load(str(Path(run_dir) / SYMBOL_FILE)),
                               (1, in_channels, input_size, input_size))
    return {"params": stats["params"], "flops_per_image": stats["flops"], "counted_on": SYMBOL_FILE,
            "flops": "2 x multiply-adds of every Convolution and FullyConnected layer"}




def exported_parity(run_dir: Path, images: np.ndarray, input_size: int, batch_size: int = 32,
                    threads: Optional[int] = None) -> Dict[str, Any]:
    """Run the *exported* MXNet files (hybridized, CPU) and ``model.onnx`` in ONNX Runtime (CPU) on
    the same images and compare their logits (:func:`vggbench.metrics.compare_logits`: max |diff|,
    top-1 agreement, n).

    Parameters:
        run_dir: holds the exported ``model-symbol.json``, ``model-0000.params`` and ``model.onnx``.
        images: uint8 Fashion-MNIST images, preprocessed to ``input_size`` here like training's.
        input_size: the exported model's.
        batch_size: images per call.
        threads: ONNX Runtime's intra-op threads (None: its default).

    Loading the files back, rather than reusing the net in memory, checks what is shipped. nan/inf
    logits raise a VggbenchError (parity would mean nothing).
    """
    from vggbench.runtimes.ort_session import make_session, session_predictor

    mx = import_mxnet()

    run_dir = Path(run_dir)
    block = load_exported(run_dir / SYMBOL_FILE, run_dir / PARAMS_FILE)
    prepare = lambda raw: data.preprocess(raw, input_size)  # noqa: E731
    mxnet_logits = predict_in_batches(lambda x: block(mx.nd.array(x)).asnumpy(), images, batch_size, prepare)
    onnx_predict = session_predictor(make_session(run_dir / ONNX_FILE, threads=threads))
    onnx_logits = predict_in_batches(onnx_predict, images, batch_size, prepare)
    if not (np.isfinite(mxnet_logits).all() and np.isfinite(onnx_logits).all()):
        raise VggbenchError("the exported model outputs nan/inf logits on test images, so parity means "
                            "nothing; the weights diverged: train again with a lower --lr")
    return compare_logits(mxnet_logits, onnx_logits)


def check_parity(result: Dict[str, Any], max_abs_diff: float = PARITY_MAX_ABS_DIFF,
                 min_top1_agreement: float = PARITY_MIN_TOP1_AGREEMENT) -> None:
    """Raise a VggbenchError when :func:`exported_parity`'s ``result`` is outside the tolerances:
    ``max_abs_diff`` (largest |logit difference|) and ``min_top1_agreement`` (fraction)."""
    # Written as "not within" so a NaN difference fails the gate instead of slipping through.
    if not (result["max_abs_diff"] <= max_abs_diff and result["top1_agreement"] >= min_top1_agreement):
        raise VggbenchError(
            f"ONNX Runtime disagrees with MXNet on {result['n']} test images: max |logit diff| "
            f"{result['max_abs_diff']:.2e} (limit {max_abs_diff:.0e}), top-1 agreement "
            f"{result['top1_agreement']:.4f} (limit {min_top1_agreement}); the export is not trustworthy")
