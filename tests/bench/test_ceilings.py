"""One ceiling per device and precision: every % of peak of a real sweep is within (0, 100]."""

from __future__ import annotations

import copy

import pytest

from vggbench.artifacts.io import write_json_atomic
from vggbench.artifacts.manifest import read_manifest
from vggbench.bench import ceilings as C
from vggbench.bench import sweep


def _ok(results):
    return [r for r in results["rows"] if r.ok]


def test_every_row_of_a_real_sweep_is_within_0_and_100_pct_of_one_ceiling(bench_results):
    ok = _ok(bench_results)
    assert ok
    for row in ok:
        assert 0 < row.pct_of_peak <= 100, row
        assert row.pct_of_peak == pytest.approx(100 * row.gflops_per_s / row.ceiling_gflops_per_s)
    # one ceiling per (device, precision): every row of it shares the number, whatever its backend
    by_key = {}
    for row in ok:
        by_key.setdefault((row.device, C.math_precision(row.precision)), set()).add(row.ceiling_gflops_per_s)
    assert all(len(values) == 1 for values in by_key.values()), by_key
    # the ceiling is at least every GEMM measured through any runtime on that device and precision
    for row in ok:
        same = [r.peak_gflops_per_s for r in ok if r.peak_gflops_per_s and r.device == row.device
                and C.math_precision(r.precision) == C.math_precision(row.precision)]
        assert row.ceiling_gflops_per_s >= max(same)
    listed = {(c["device"], c["precision"]): c for c in bench_results["ceilings"]}
    fp32 = listed[("cpu", "fp32")]
    assert fp32["source"] and fp32["kind"] in ("measured", "theoretical", "row")
    theoretical = bench_results["environment"]["theoretical_peak"]
    if theoretical.get("available"):
        assert fp32["gflops_per_s"] >= theoretical["precisions"]["fp32"]["gflops_per_s"]
        assert any(c["kind"] == "theoretical" for c in fp32["candidates"])


def test_a_row_above_every_gemm_and_formula_becomes_the_named_ceiling(bench_results):
    rows = copy.deepcopy(_ok(bench_results))
    for row in rows:  # GEMMs far slower than the model, and no theoretical peak: the rows are above both
        row.peak_gflops_per_s = row.gflops_per_s / 4
    table = C.apply_ceilings(rows, environment={})
    fastest = max(rows, key=lambda r: r.gflops_per_s if r.precision == "fp32" else 0)
    assert fastest.pct_of_peak == pytest.approx(100.0)
    assert all(0 < r.pct_of_peak <= 100 for r in rows)
    fp32 = next(c for c in table if (c["device"], c["precision"]) == ("cpu", "fp32"))
    assert fp32["kind"] == "row" and "underestimates" in fp32["source"]


def test_training_rows_share_the_inference_ceiling(bench_results, trained_run_dir):
    manifest = read_manifest(trained_run_dir)
    training = sweep.training_row(trained_run_dir, manifest, sweep.run_info(trained_run_dir, manifest))
    assert training["peak_rss_bytes"] > 0  # the last epoch's resident peak, from history.json
    rows = copy.deepcopy(_ok(bench_results))
    training["threads"] = rows[0].threads  # the sweep's cores: the CPU ceiling applies
    C.apply_ceilings(rows, [training], bench_results["environment"])
    assert training["ceiling_gflops_per_s"] == next(r.ceiling_gflops_per_s for r in rows if r.precision == "fp32")
    assert 0 < training["pct_of_peak"] <= 100
    other = dict(training, threads=rows[0].threads + 64)  # other cores than the sweep's: no ceiling
    C.apply_ceilings(rows, [other], bench_results["environment"])
    assert other["pct_of_peak"] is None


def test_previous_release_results_get_the_same_ceilings_on_load(bench_results, tmp_path):
    from vggbench.bench import results as R

    old = copy.deepcopy(bench_results)
    old.pop("ceilings")
    old["rows"] = [row.to_json() for row in old["rows"]]
    for row in old["rows"]:  # the previous release: % of the row's own runtime GEMM, no new fields
        for key in [k for k in row if k.startswith(("ceiling_", "memory_", "load_", "energy_"))]:
            row.pop(key)
        if row.get("peak_gflops_per_s") and row.get("gflops_per_s"):
            row["pct_of_peak"] = 100 * row["gflops_per_s"] / row["peak_gflops_per_s"]
    path = tmp_path / "old.json"
    write_json_atomic(path, old)
    loaded = R.load_results([path])
    for before, after in zip(_ok(bench_results), _ok(loaded)):
        assert after.pct_of_peak == pytest.approx(before.pct_of_peak)
        assert 0 < after.pct_of_peak <= 100
