"""Multi-stage orchestration: train-export --optimize and the lesson's exercises, for real on tiny runs."""

from __future__ import annotations

import json

import pytest

from vggbench import workflows
from vggbench.errors import VggbenchError

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
    total_min = sum(run["train_seconds"] for run in published["exercises"][0]["runs"]) / 60
    assert f"The runs trained for {total_min:.0f} min in all" in markdown
    assert (out / "baselines.png").read_bytes()[:4] == b"\x89PNG"
    runs = published["exercises"][0]["runs"]
    assert [(r["recipe"], r["stop_reason"], r["epochs_trained"]) for r in runs] == [
        ("lenet", "max_epochs", 1), ("alexnet", "max_epochs", 1), ("vgg", "max_epochs", 1)]
    saved = json.loads((out / "exercises.json").read_text())
    assert saved["exercises"][0]["name"] == "baselines" and saved["histories"]
    assert saved["settings"]["models"] and saved["exercise_settings"]["max_epochs"] == 1  # both kept
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


def test_reproduce_a_shortened_published_run_and_reuse_it(tmp_path, data_dir):
    """The d2l PyTorch VGG-11 recipe, shortened to a few images: the page says it is not comparable,
    lists what is the same and what differs, and a second call reuses the finished run."""
    out = tmp_path / "reproduction"
    said = []
    published = workflows.reproduce(out, train_limit=96, epochs=1, test_limit=64, data_dir=str(data_dir),
                                    progress=False, log=said.append)
    assert [row["epoch"] for row in published["ours"]] == [1] and published["ours"][0]["train_images"] == 96
    assert published["published_test_accuracy"] == [0.859, 0.902, 0.908, 0.914, 0.918]
    page = (out / "reproduction.md").read_text()
    assert "Shortened run: 96 training images per epoch and 1 epoch(s)" in page and "After 1 epochs" not in page
    assert "## What is the same" in page and "5.7_vgg.ipynb" in page and "| 85.90 " in page
    assert json.loads((out / "reproduction.json").read_text())["recipe"]["optimizer"] == "adam"
    said.clear()
    workflows.reproduce(out, train_limit=96, epochs=1, test_limit=64, data_dir=str(data_dir), progress=False,
                        log=said.append)
    assert any(line.startswith("reproduce: reuse ") for line in said)


def test_the_reproduction_page_of_a_full_run_states_the_gap():
    from vggbench.bench import report
    from vggbench.train.recipes import get_recipe

    named = get_recipe("d2lzh-pytorch-vgg11")
    ours = [{"epoch": n, "test_accuracy": acc, "seconds": 600.0, "train_images": 60000, "test_images": 10000}
            for n, acc in enumerate((0.8808, 0.90, 0.91, 0.912, 0.9151), 1)]
    page = report.reproduction_markdown({
        "recipe": {"model": "vgg11", "width_ratio": 8.0, "dense_units": 512, "input_size": 224, "optimizer": "adam",
                   "lr": 0.001, "batch_size": 64, "init": "torch", "epochs": 5, "train_limit": None},
        "recipe_source": {"name": named.name, "source": named.source}, "ours": ours,
        "published_test_accuracy": list(named.published_test_accuracy),
        "same_as_published": list(named.same_as_published), "unlike_published": list(named.unlike_published)})
    assert "After 5 epochs: ours 91.51%, published 91.80%, a gap of -0.29 points; training took 50 min" in page
    assert "| +2.18 " in page and "Shortened" not in page and "## What differs (and may explain a gap)" in page


def test_models_picks_a_model_or_one_recipe_of_it(tmp_path, data_dir):
    plan = workflows.exercises(tmp_path / "x", only=["depth"], models=["vgg16:vgg-he-warmup", "vgg11"],
                               estimate_only=True, data_dir=str(data_dir), train_limit=256, test_limit=64,
                               log=lambda line: None)["plan"]
    assert [p["entry"] for p in plan] == [("vgg11", 96, 8.0, "vgg"), ("vgg16", 96, 8.0, "vgg-he-warmup")]
    with pytest.raises(VggbenchError, match="leaves no exercise model; choose from .*vgg16:vgg-he-warmup"):
        workflows.exercises(tmp_path / "x", models=["vgg16:adam"], estimate_only=True, log=lambda line: None)
