"""The exported artifacts of a real trained run: a clean ONNX graph, dynamic batch, parity."""

from __future__ import annotations

import json
import shutil
import warnings

import mxnet as mx
import numpy as np
import onnx
import pytest

from vggbench import VggbenchError, artifacts, data, export, train


@pytest.fixture(scope="module")
def onnx_model(trained_run_dir):
    return onnx.load(str(trained_run_dir / export.ONNX_FILE))


@pytest.fixture(scope="module")
def test_images(data_dir, trained_run):
    """The same fixed-seed test subset the run was evaluated on."""
    images, labels = data.load_fashion_mnist(str(data_dir), train=False)
    return data.subset(images, labels, trained_run.recipe["test_limit"], seed=trained_run.recipe["seed"])


def test_weights_are_initializers_not_graph_inputs(onnx_model):
    assert [inp.name for inp in onnx_model.graph.input] == [export.INPUT_NAME]
    assert len(onnx_model.graph.initializer) > 0


def test_onnx_passes_the_full_checker_and_shape_inference(onnx_model):
    onnx.checker.check_model(onnx_model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(onnx_model, check_type=True, strict_mode=True)
    output_dims = inferred.graph.output[0].type.tensor_type.shape.dim
    assert output_dims[1].dim_value == 10


def test_batch_dimension_is_dynamic(onnx_model, trained_run_dir):
    batch_dim = onnx_model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch_dim.HasField("dim_value"), "batch dimension is fixed"
    session = export.onnx_session(trained_run_dir / export.ONNX_FILE)
    for batch in (1, 5):
        x = np.random.RandomState(batch).uniform(size=(batch, 1, 96, 96)).astype(np.float32)
        assert session.run(None, {export.INPUT_NAME: x})[0].shape == (batch, 10)


def test_mxnet_export_and_onnx_agree_on_test_images(trained_run_dir, test_images):
    """Independent of the run's own gate: reload both files, compare logits on 64 test images."""
    images, _ = test_images
    x = data.preprocess(images[:64], 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock.imports(str(trained_run_dir / export.SYMBOL_FILE), [export.INPUT_NAME],
                                             str(trained_run_dir / export.PARAMS_FILE))
    mxnet_logits = block(mx.nd.array(x)).asnumpy()
    onnx_logits = export.onnx_session(trained_run_dir / export.ONNX_FILE).run(None, {export.INPUT_NAME: x})[0]
    result = export.parity(mxnet_logits, onnx_logits)
    export.check_parity(result)
    assert result["n"] == 64 and result["top1_agreement"] == 1.0


def test_onnx_reproduces_the_manifest_test_accuracy(trained_run_dir, test_images):
    images, labels = test_images
    manifest = artifacts.read_manifest(trained_run_dir)
    session = export.onnx_session(trained_run_dir / export.ONNX_FILE)
    correct = sum(int((session.run(None, {export.INPUT_NAME: x})[0].argmax(1) == y).sum())
                  for x, y in data.iter_batches(images, labels, 96, 128))
    assert manifest["test_images"] == len(labels)
    assert abs(correct / len(labels) - manifest["test_accuracy"]) <= 1 / len(labels)


def test_parity_gate_of_an_untrained_plain_vgg(untrained_run_dir, data_dir):
    """The non-batch-norm export path (vgg11) passes the same gate train-export applies."""
    images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    result = train.exported_parity(untrained_run_dir, images[:32], 96)
    export.check_parity(result)
    assert result["n"] == 32


def test_parity_numbers():
    a = np.array([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    b = a + np.array([[0.0, 0.5], [0.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    result = export.parity(a, b)
    assert result == {"max_abs_diff": 2.0, "top1_agreement": pytest.approx(2 / 3), "n": 3}


@pytest.mark.parametrize("result", [
    {"max_abs_diff": 2e-3, "top1_agreement": 1.0, "n": 8},
    {"max_abs_diff": 1e-6, "top1_agreement": 0.99, "n": 100},
    {"max_abs_diff": float("nan"), "top1_agreement": 1.0, "n": 8},
])
def test_parity_gate_rejects_disagreement_and_nan(result):
    with pytest.raises(VggbenchError, match="disagrees"):
        export.check_parity(result)


def test_a_tampered_artifact_fails_its_sha256_check(trained_run_dir, tmp_path):
    for name in (artifacts.MANIFEST_NAME, train.HISTORY_FILE):
        shutil.copy(trained_run_dir / name, tmp_path / name)
    manifest = artifacts.read_manifest(tmp_path)
    artifacts.verify_file(tmp_path, manifest, train.HISTORY_FILE)
    history = json.loads((tmp_path / train.HISTORY_FILE).read_text())
    history["epochs"][-1]["test_accuracy"] = 0.99
    (tmp_path / train.HISTORY_FILE).write_text(json.dumps(history))
    with pytest.raises(VggbenchError, match="does not match the manifest"):
        artifacts.verify_file(tmp_path, manifest, train.HISTORY_FILE)
