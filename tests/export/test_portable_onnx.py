"""Portable ONNX files: opset 15 / IR 8, only the opset imports nodes use, a named batch dimension."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import make_untrained_run_dir
from onnx import TensorProto, helper

from vggbench import VggbenchError, artifacts
from vggbench.export import onnx as export
from vggbench.export.variants import optimize_run_dir
from vggbench.runtimes.ort_runtime import make_session

INPUT_SIZE = 32  # the smallest input all five of VGG's pooling stages accept: keeps the test fast
FILES = ("model.onnx", "model.opt.onnx", "model.int8.onnx", "model.fp16.onnx")


@pytest.fixture(scope="module")
def portable_run_dir(tmp_path_factory, data_dir):
    """vgg11_bn (batch norm: the op whose opset changed most), exported and optimized for real."""
    run_dir = make_untrained_run_dir(tmp_path_factory.mktemp("portable") / "vgg11_bn-32", model="vgg11_bn",
                                     input_size=INPUT_SIZE, width_ratio=16)
    optimize_run_dir(run_dir, accuracy_limit=64, calib_images=32, data_dir=str(data_dir), progress=False,
                     log=lambda message: None)
    return run_dir


def _dims(value):
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in value.type.tensor_type.shape.dim]


@pytest.mark.slow  # the shared fixture exports and optimizes a real model (~10 s)
@pytest.mark.parametrize("name", FILES)
def test_every_file_declares_opset_15_ir_8_and_only_domains_its_nodes_use(portable_run_dir, name):
    model = onnx.load(str(portable_run_dir / name))
    assert model.ir_version == export.PORTABLE_IR_VERSION == 8
    declared = {imp.domain: imp.version for imp in model.opset_import}
    assert declared[""] == export.PORTABLE_OPSET == 15
    assert set(declared) == {""} | {node.domain for node in model.graph.node}
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


@pytest.mark.slow  # the shared fixture exports and optimizes a real model (~10 s)
@pytest.mark.parametrize("name", FILES)
def test_batch_dimension_is_named_on_input_and_output(portable_run_dir, name):
    model = onnx.load(str(portable_run_dir / name))
    assert _dims(model.graph.input[0]) == ["batch", 1, INPUT_SIZE, INPUT_SIZE]
    assert _dims(model.graph.output[0]) == ["batch", 10]
    session = make_session(portable_run_dir / name)
    assert session.get_outputs()[0].shape == ["batch", 10]
    x = np.random.RandomState(0).uniform(size=(3, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    assert session.run(None, {export.INPUT_NAME: x})[0].shape == (3, 10)


@pytest.mark.slow  # the shared fixture exports and optimizes a real model (~10 s)
def test_manifest_records_opset_and_ir_of_every_file(portable_run_dir):
    manifest = artifacts.read_manifest(portable_run_dir)
    entries = {"fp32": manifest["onnx"], **{p: v["onnx"] for p, v in manifest["variants"].items()}}
    assert sorted(entries) == ["fp16", "fp32", "int8", "opt"]
    for precision, entry in entries.items():
        assert (entry["opset"], entry["ir_version"]) == (15, 8), precision
        model = onnx.load(str(portable_run_dir / (manifest["variants"][precision]["file"]
                                                  if precision != "fp32" else export.ONNX_FILE)))
        assert entry["opset_imports"] == {(i.domain or "ai.onnx"): i.version for i in model.opset_import}
    # what mx.onnx declared before the stamp: the installed onnx's newest opset, not what the graph needs
    assert manifest["onnx"]["declared_before"]["ai.onnx"] >= 15


@pytest.mark.slow  # the shared fixture exports and optimizes a real model (~10 s)
def test_onnx_reference_evaluator_agrees_with_onnx_runtime_at_opset_15(portable_run_dir):
    """The onnx reference implementation reads every node with opset-15 semantics: same logits."""
    from onnx.reference import ReferenceEvaluator

    path = portable_run_dir / export.ONNX_FILE
    x = np.random.RandomState(1).uniform(size=(2, 1, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    reference = ReferenceEvaluator(onnx.load(str(path))).run(None, {export.INPUT_NAME: x})[0]
    runtime = make_session(path).run(None, {export.INPUT_NAME: x})[0]
    assert np.max(np.abs(reference - runtime)) < 1e-4


# --- make_portable on hand-built graphs: the refusals and the domain pruning -------------------------

def _model(nodes, opset_imports, inputs, outputs, ir_version=10):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=opset_imports, ir_version=ir_version)


def _value(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def test_unused_domains_are_dropped_and_used_ones_kept():
    model = _model([helper.make_node("Relu", ["x"], ["h"]),
                    helper.make_node("FusedGemm", ["h", "h"], ["y"], domain="com.microsoft")],
                   [helper.make_opsetid("", 23), helper.make_opsetid("ai.onnx.ml", 5),
                    helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("org.pytorch.aten", 1)],
                   [_value("x", [None, 4])], [_value("y", [None, None])])
    info = export.make_portable(model)
    assert {i.domain: i.version for i in model.opset_import} == {"": 15, "com.microsoft": 1}
    assert info["dropped_opset_imports"] == ["ai.onnx.ml", "org.pytorch.aten"]
    assert info["declared_before"] == {"ir_version": 10, "ai.onnx": 23, "ai.onnx.ml": 5, "com.microsoft": 1,
                                       "org.pytorch.aten": 1}
    assert model.ir_version == 8
    # no shape inference through a com.microsoft op: the batch dim is still named from the contract
    assert _dims(model.graph.input[0]) == ["batch", 4] and _dims(model.graph.output[0])[0] == "batch"


def test_output_dims_are_filled_from_shape_inference():
    model = _model([helper.make_node("Flatten", ["x"], ["y"])], [helper.make_opsetid("", 23)],
                   [_value("x", [None, 2, 3])], [_value("y", [None, None])])
    export.make_portable(model)
    assert _dims(model.graph.output[0]) == ["batch", 6]
    export.check_onnx(model)


def test_an_op_newer_than_the_target_opset_is_refused():
    model = _model([helper.make_node("Gelu", ["x"], ["y"])], [helper.make_opsetid("", 20)],
                   [_value("x", [None, 4])], [_value("y", [None, 4])])
    with pytest.raises(VggbenchError, match="Gelu does not exist at opset"):
        export.make_portable(model)


def test_stamping_up_over_a_changed_op_is_refused():
    """Split's sizes moved from an attribute to an input in opset 13: an opset-11 graph cannot be relabelled."""
    model = _model([helper.make_node("Split", ["x"], ["a", "b"], axis=1)], [helper.make_opsetid("", 11)],
                   [_value("x", [None, 4])], [_value("a", [None, 2]), _value("b", [None, 2])], ir_version=6)
    with pytest.raises(VggbenchError, match="Split changed between opset 11 and 15"):
        export.make_portable(model)
