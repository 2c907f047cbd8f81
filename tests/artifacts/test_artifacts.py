"""Run dir contract: atomic writes, manifest checks, sha256 verification."""

from __future__ import annotations

import json

import pytest

from vggbench import VggbenchError, artifacts


def test_atomic_path_leaves_nothing_behind_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as temp:
            temp.write_bytes(b"half a model")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_only_when_complete(tmp_path):
    target = tmp_path / "history.json"
    artifacts.write_json_atomic(target, {"epoch": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target) as temp:
            temp.write_text("{broken")
            raise RuntimeError
    assert json.loads(target.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_manifest_round_trip_and_tamper_detection(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"weights")
    manifest = {"model": "vgg11", "input_size": 96, "files": {}}
    artifacts.record_file(manifest, tmp_path, "model.onnx")
    artifacts.write_manifest(tmp_path, manifest)
    loaded = artifacts.verify_all(tmp_path)
    assert loaded["manifest_version"] == artifacts.MANIFEST_VERSION
    (tmp_path / "model.onnx").write_bytes(b"weightz")
    with pytest.raises(VggbenchError, match="sha256 .* does not match"):
        artifacts.verify_file(tmp_path, loaded, "model.onnx")
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(VggbenchError, match="missing"):
        artifacts.verify_file(tmp_path, loaded, "model.onnx")
    with pytest.raises(VggbenchError, match="lists no 'model.int8.onnx'"):
        artifacts.verify_file(tmp_path, loaded, "model.int8.onnx")


@pytest.mark.parametrize("content, message", [
    (None, "no manifest.json"),
    ("{not json", "not valid JSON"),
    ('{"manifest_version": 99}', "manifest_version 99"),
    ('{"manifest_version": 1, "model": "vgg11"}', "missing key 'input_size'"),
])
def test_bad_manifests_are_clear_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(VggbenchError, match=message):
        artifacts.read_manifest(tmp_path)
