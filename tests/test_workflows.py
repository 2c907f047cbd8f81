"""Multi-stage orchestration: train-export --optimize and the lesson's exercises, for real on tiny runs."""

from __future__ import annotations

import json

import pytest

from vggbench import workflows

TINY = dict(max_epochs=1, train_limit=128, test_limit=64)


@pytest.mark.slow
def test_exercises_train_bench_and_publish(tmp_path, data_dir):
    out = tmp_path / "exercises"
    published = workflows.exercises(out, data_dir=str(data_dir), progress=False, only=["baselines"], rounds=2,
                                   iters=1, peak_sizes=[64], log=lambda message: None, **TINY)
    assert [e["name"] for e in published["exercises"]] == ["baselines"]
    models = {info["model"] for info in published["results"]["settings"]["models"]}
    assert models == {"lenet", "alexnet", "vgg11"}
    rows = [r for r in published["results"]["rows"] if r.ok]
    assert {(r.model, r.backend) for r in rows} == {(m, b) for m in models for b in ("mxnet-hybrid", "ort-cpu")}
    for history in published["histories"].values():
        assert len(history) == 1 and 0 <= history[0]["test_accuracy"] <= 1
    markdown = (out / "exercises.md").read_text()
    assert "LeNet vs AlexNet vs VGG-11" in markdown and "| lenet" in markdown and "ort-cpu img/s" in markdown
    assert (out / "baselines.png").read_bytes()[:4] == b"\x89PNG"
    runs = published["exercises"][0]["runs"]
    assert [(r["recipe"], r["stop_reason"], r["epochs_trained"]) for r in runs] == [
        ("lenet", "max_epochs", 1), ("alexnet", "max_epochs", 1), ("vgg", "max_epochs", 1)]
    saved = json.loads((out / "exercises.json").read_text())
    assert saved["exercises"][0]["name"] == "baselines" and saved["histories"]
    # a second call with the same recipe reuses the finished runs instead of training again
    said = []
    workflows.exercises(out, data_dir=str(data_dir), progress=False, only=["baselines"], rounds=2, iters=1,
                       peak_sizes=[64], log=said.append, **TINY)
    assert sum(line.startswith("exercises:  reuse") for line in said) == 3
    assert not any(line.startswith("exercises: [") for line in said)  # nothing trained again


def test_unknown_exercise_is_a_user_error(tmp_path):
    from vggbench.errors import VggbenchError

    with pytest.raises(VggbenchError, match="unknown exercise 'width'"):
        workflows.exercises(tmp_path, only=["width"])
