"""The exported artifacts of a real trained run: a clean ONNX graph, dynamic batch, parity."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from vggbench import VggbenchError, artifacts, data, metrics, models, train
from vggbench.export import onnx as export
from vggbench.platform.mxnet import import_mxnet
from vggbench.runtimes.ort_runtime import make_session, session_predictor

mx = import_mxnet()


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
    predict = session_predictor(make_session(trained_run_dir / export.ONNX_FILE))
    for batch in (1, 5):
        x = np.random.RandomState(batch).uniform(size=(batch, 1, 96, 96)).astype(np.float32)
        assert predict(x).shape == (batch, 10)


def test_mxnet_export_and_onnx_agree_on_test_images(trained_run_dir, test_images):
    """Independent of the run's own gate: reload both files, compare logits on 64 test images."""
    images, _ = test_images
    x = data.preprocess(images[:64], 96)
    block = export.load_exported(trained_run_dir / export.SYMBOL_FILE, trained_run_dir / export.PARAMS_FILE)
    mxnet_logits = block(mx.nd.array(x)).asnumpy()
    onnx_logits = session_predictor(make_session(trained_run_dir / export.ONNX_FILE))(x)
    result = metrics.compare_logits(mxnet_logits, onnx_logits)
    export.check_parity(result)
    assert result["n"] == 64 and result["top1_agreement"] == 1.0


def test_onnx_reproduces_the_manifest_test_accuracy(trained_run_dir, test_images):
    images, labels = test_images
    manifest = artifacts.read_manifest(trained_run_dir)
    accuracy = metrics.top1_accuracy(session_predictor(make_session(trained_run_dir / export.ONNX_FILE)), images,
                                     labels, batch_size=128, prepare=lambda raw: data.preprocess(raw, 96))
    assert manifest["test_images"] == len(labels)
    assert abs(accuracy - manifest["test_accuracy"]) <= 1 / len(labels)


def test_the_manifest_counts_the_exported_graph(trained_run_dir, trained_run):
    """Parameters and FLOPs written at export equal the model code's count, and bench reads them back."""
    manifest = artifacts.read_manifest(trained_run_dir)
    recipe = trained_run.recipe
    expected = models.model_stats(recipe["model"], recipe["input_size"], width_ratio=recipe["width_ratio"])
    assert manifest["model_stats"]["params"] == expected["params"] > 0
    assert manifest["model_stats"]["flops_per_image"] == expected["flops_per_image"] > 0
    assert models.model_stats_from_manifest(manifest)["source"] == "manifest"


def test_parity_gate_of_an_untrained_plain_vgg(untrained_run_dir, data_dir):
    """The non-batch-norm export path (vgg11) passes the same gate train-export applies."""
    images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    result = export.exported_parity(untrained_run_dir, images[:40], 96, batch_size=16)  # a last partial batch too
    export.check_parity(result)
    assert result["n"] == 40


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
