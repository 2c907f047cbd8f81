"""The recommendation on real rows: a real sweep (ONNX Runtime, OpenVINO, MXNet, every CPU precision)
of a real trained run dir with its real int8 file, accuracy from the real test images."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vggbench.bench import recommend as REC
from vggbench.bench import report
from vggbench.bench import results as R
from vggbench.errors import VggbenchError


@pytest.fixture(scope="module")
def real_results(int8_run_dir, data_dir):
    from vggbench.bench.sweep import sweep

    results = sweep([str(int8_run_dir)], backends=["mxnet-hybrid", "ort-cpu", "openvino"], batch_sizes=[4],
                    modes=["compute-only"], warmup=1, rounds=4, iters=2, accuracy_limit=256, peak_sizes=[128],
                    data_dir=str(data_dir), log=lambda message: None)
    ok = [r for r in results["rows"] if r.ok]
    assert {(r.backend, r.precision) for r in ok} >= {("ort-cpu", "fp32"), ("ort-cpu", "int8"),
                                                            ("openvino", "fp32"), ("openvino", "int8"),
                                                            ("mxnet-hybrid", "fp32")}
    return results


def _ok(rows):
    return [r for r in rows if r.ok]


def test_the_winner_is_the_fastest_row_within_the_budget(real_results):
    rows = real_results["rows"]
    [item] = REC.recommend(rows)  # one cell: batch 4, compute-only
    ok = _ok(rows)
    reference = next(r for r in ok if (r.backend, r.precision) == ("mxnet-hybrid", "fp32"))
    assert item["reference"] == "mxnet-hybrid fp32" and item["reference_accuracy"] == reference.top1_accuracy
    within = [r for r in ok if 100 * (reference.top1_accuracy - r.top1_accuracy) <= 0.5 + 1e-9]
    best = max(within, key=lambda r: r.images_per_s)
    assert (item["backend"], item["precision"]) == (best.backend, best.precision)
    assert item["images_per_s"] == best.images_per_s and item["batch_size"] == 4
    assert item["images_per_s_ci_low"] <= item["images_per_s"] <= item["images_per_s_ci_high"]
    assert item["accuracy_drop_points"] <= 0.5
    for name, wanted in (("speedup_vs_ort_fp32", ("ort-cpu", "fp32")),
                         ("speedup_vs_mxnet_hybrid", ("mxnet-hybrid", "fp32"))):
        base = next(r for r in ok if (r.backend, r.precision) == wanted)
        speedup = item[name]
        if base is best:
            assert speedup["speedup"] == 1.0
        else:
            assert speedup["pairs"] == 4 and speedup["ci_low"] <= speedup["speedup"] <= speedup["ci_high"]
            ratios = np.asarray(best.round_images_per_s) / np.asarray(base.round_images_per_s)
            assert speedup["speedup"] == pytest.approx(float(np.median(ratios)))
    for name in item["ties"]:  # every tie is within the budget and overlaps the winner's CI
        tie = next(r for r in within if f"{r.backend} {r.precision}" == name)
        assert tie.images_per_s_ci_high >= item["images_per_s_ci_low"]


def test_a_faster_row_over_the_budget_is_never_recommended(real_results):
    rows = copy.deepcopy(real_results["rows"])
    ok = _ok(rows)
    fastest = max(ok, key=lambda r: r.images_per_s)
    reference = next(r for r in ok if (r.backend, r.precision) == ("mxnet-hybrid", "fp32"))
    if fastest is reference:
        pytest.skip("mxnet-hybrid fp32 (the accuracy reference) was the fastest row")
    for row in rows:  # the fastest backend x precision loses 2 points of top-1
        if (row.backend, row.precision) == (fastest.backend, fastest.precision):
            row.top1_accuracy = reference.top1_accuracy - 0.02
    [item] = REC.recommend(rows, max_accuracy_drop_points=0.5)
    assert (item["backend"], item["precision"]) != (fastest.backend, fastest.precision)
    assert item["images_per_s"] == max(r.images_per_s for r in ok if r is not fastest)
    rejected = item["rejected_faster"]
    assert [(r["backend"], r["precision"]) for r in rejected] == [(fastest.backend, fastest.precision)]
    assert rejected[0]["accuracy_drop_points"] == pytest.approx(2.0)
    assert f"{fastest.backend} {fastest.precision}" not in item["ties"]
    # a budget of 2 points lets it back in
    [loose] = REC.recommend(rows, max_accuracy_drop_points=2.0)
    assert (loose["backend"], loose["precision"]) == (fastest.backend, fastest.precision)


def test_no_accuracy_pass_means_no_recommendation(real_results):
    rows = copy.deepcopy(real_results["rows"])
    for row in rows:
        row.top1_accuracy = None
    [item] = REC.recommend(rows)
    assert item["backend"] is None and "accuracy pass" in item["reason"]
    with pytest.raises(VggbenchError, match="max-accuracy-drop"):
        REC.recommend(rows, max_accuracy_drop_points=-1)


def test_compare_writes_the_recommendation_everywhere(real_results, tmp_path):
    from vggbench.workflows import compare, write_outputs

    saved = tmp_path / "results.json"
    R.write_results(saved, real_results)
    results = compare(from_files=[str(saved)], max_accuracy_drop_points=0.5)
    [item] = results["recommendations"]
    assert results["settings"]["max_accuracy_drop_points"] == 0.5
    deploy = f"{item['backend']} {item['precision']}"
    text = report.render_results(results, pivot=True)
    assert "Recommendation (fastest within the accuracy budget)" in text and deploy in text.split("Recommendation")[-1]
    paths = {k: tmp_path / f"out.{k}" for k in ("json", "md", "png")}
    write_outputs(results, paths["json"], None, paths["md"], paths["png"])
    assert R.load_results([paths["json"]])["rows"] and "recommendations" in paths["json"].read_text()
    markdown = paths["md"].read_text()
    assert "## Recommendation" in markdown and deploy in markdown.split("## Recommendation")[1]
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
