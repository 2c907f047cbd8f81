"""Results tables, files and plot; `vggbench compare` over run dirs and over saved results."""

from __future__ import annotations

import copy
import csv
import json
import shutil

import pytest

from conftest import QUICK_BENCH, make_untrained_run_dir
from vggbench import bench, report
from vggbench.cli import main
from vggbench.errors import VggbenchError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUIET = dict(QUICK_BENCH, log=lambda message: None)


@pytest.fixture
def results_file(bench_results, tmp_path):
    path = tmp_path / "results" / "vgg11-96.json"
    bench.write_results(path, bench_results)
    return path


def _two_sizes(bench_results):
    """The real rows plus a copy relabelled as input size 224, for multi-panel/multi-size output."""
    results = copy.deepcopy(bench_results)
    extra = copy.deepcopy(results["rows"])
    for row in extra:
        row["input_size"], row["run_dir"] = 224, row["run_dir"].replace("-96", "-224")
        if row["images_per_s"]:
            row["images_per_s"] /= 5
    results["rows"] += extra
    return results


def test_results_table_shows_every_row_and_what_was_timed(bench_results, capsys):
    report.print_results(bench_results)
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(bench_results["rows"])
    header = table[0]
    for column in ("backend", "precision", "batch", "mode", "images/s", "x mxnet-hybrid", "p50 ms", "p90 ms",
                   "p99 ms", "GFLOP/s", "% peak", "top-1 %", "Δ pts vs MXNet", "status"):
        assert column in header
    assert sum("unavailable: onnxruntime" in line for line in table) == 2
    assert sum("unavailable: this mxnet build has no CUDA" in line for line in table) == 2
    assert "mode e2e = end-to-end (host numpy in/out)" in out
    assert "mode compute = compute-only (input pre-staged on device)" in out
    assert "exactly 3 timed call(s)" in out and "GFLOP/image" in out and "peak ort-cpu" in out
    assert "64 real Fashion-MNIST test images" in out and "machine:" in out


def test_pivot_puts_backends_side_by_side_with_speedups(bench_results):
    pivot = report.throughput_pivot(bench_results["rows"]).splitlines()
    header = pivot[0]
    for column in ("mxnet fp32", "mxnet-hybrid fp32", "ort-cpu fp32", "ort-cpu opt"):
        assert column in header
    assert "ort-cuda" not in header  # unavailable: listed as rows in the detail table instead
    assert len(pivot) == 2 + 2 * 2  # (e2e, compute) x batch (1, 4)
    assert all("(1.00x)" in line for line in pivot[2:])  # the mxnet-hybrid cell of each line


def test_csv_markdown_and_plot_files(bench_results, tmp_path):
    csv_path, md_path, png_path = tmp_path / "r.csv", tmp_path / "r.md", tmp_path / "plots" / "r.png"
    report.write_csv(csv_path, bench_results["rows"])
    with open(csv_path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(bench_results["rows"])
    assert list(rows[0])[:len(bench.ROW_KEYS)] == list(bench.ROW_KEYS)
    assert json.loads(rows[0]["runtime"])["backend"] == rows[0]["backend"]
    assert float(rows[0]["images_per_s"]) == pytest.approx(bench_results["rows"][0]["images_per_s"])

    report.write_markdown(md_path, bench_results)
    markdown = md_path.read_text()
    assert markdown.startswith("# vggbench results") and "| mxnet-hybrid fp32" in markdown
    assert "- mode e2e = end-to-end (host numpy in/out)" in markdown

    report.plot_throughput(_two_sizes(bench_results)["rows"], png_path)
    assert png_path.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    height, width = matplotlib.image.imread(str(png_path)).shape[:2]
    assert width > 1.5 * height  # two panels side by side: 96 and 224
    assert not [p for p in png_path.parent.iterdir() if p.name != "r.png"]  # no temp file left


def test_plot_without_measured_rows_is_a_user_error(bench_results, tmp_path):
    unavailable = [r for r in bench_results["rows"] if r["status"] != "ok"]
    with pytest.raises(VggbenchError, match="nothing to plot"):
        report.plot_throughput(unavailable, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_json_round_trip_through_compare_from(bench_results, results_file, tmp_path, capsys):
    loaded = report.load_results([results_file])
    assert loaded["rows"] == [dict(r, source=str(results_file)) for r in bench_results["rows"]]
    assert loaded["environment"] == bench_results["environment"]

    out = tmp_path / "out"
    code = main(["compare", "--from", str(results_file), "--json", str(out / "merged.json"), "--csv",
                 str(out / "c.csv"), "--markdown", str(out / "c.md"), "--plot", str(out / "c.png")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Throughput, images/s" in printed.out and "| ort-cpu" in printed.out
    assert "wrote plot:" in printed.out and "mode e2e = end-to-end" in printed.out
    merged = json.loads((out / "merged.json").read_text())
    assert merged["schema"] == "vggbench.results/1"
    assert [r["images_per_s"] for r in merged["rows"]] == [r["images_per_s"] for r in bench_results["rows"]]
    assert (out / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "c.csv").read_text().count("\n") == 1 + len(bench_results["rows"])
    assert "## Throughput side by side" in (out / "c.md").read_text()


def test_compare_from_several_files_and_filters(bench_results, results_file, tmp_path, capsys):
    other = tmp_path / "results" / "vgg11-224.json"
    two = _two_sizes(bench_results)
    two["rows"] = [r for r in two["rows"] if r["input_size"] == 224]
    bench.write_results(other, two)
    results = report.compare(from_files=[results_file, other], backends=["ort-cpu", "mxnet-hybrid"])
    assert {r["input_size"] for r in results["rows"]} == {96, 224}
    assert {r["backend"] for r in results["rows"]} == {"ort-cpu", "mxnet-hybrid"}
    assert len(results["environments"]) == 2
    only_224 = report.compare(from_files=[results_file, other], sizes=[224], out=open("/dev/null", "w"))
    assert {r["input_size"] for r in only_224["rows"]} == {224}
    with pytest.raises(VggbenchError, match="no rows"):
        report.compare(from_files=[results_file], models=["vgg16"])


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"), ('{"rows": []}', "not a vggbench results file"),
    ("[1, 2]", "not a vggbench results file")])
def test_bad_results_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VggbenchError, match=message):
        report.load_results([path])
    with pytest.raises(VggbenchError, match="cannot read"):
        report.load_results([tmp_path / "missing.json"])


def test_compare_without_runs_names_the_train_export_command(tmp_path, capsys):
    with pytest.raises(VggbenchError, match=r"`vggbench train-export vgg11 --size 96 --out .*empty`"):
        report.compare(runs_dir=tmp_path / "empty", **QUIET)
    code = main(["compare", "--runs-dir", str(tmp_path / "empty"), "--models", "vgg16", "--sizes", "224"])
    err = capsys.readouterr().err
    assert code == 1 and f"`vggbench train-export vgg16 --size 224 --out {tmp_path / 'empty'}`" in err
    assert report.train_export_command("vgg11", 224) == "vggbench train-export vgg11 --size 224"
    assert report.train_export_command("vgg11", 96, "runs", 8) == \
        "vggbench train-export vgg11 --size 96 --width-ratio 8"


def test_compare_benches_the_runs_it_finds_and_reports_missing_ones(bench_run_dir, data_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(bench_run_dir, runs / "vgg11-96")
    results = report.compare(runs_dir=runs, models=["vgg11"], sizes=[96, 224], backends=["mxnet-hybrid", "ort-cpu"],
                             data_dir=str(data_dir), **dict(QUIET, batch_sizes=[2], modes=["end-to-end"]))
    out = capsys.readouterr().out
    assert f"no run for vgg11 at 224: make it with `vggbench train-export vgg11 --size 224 --out {runs}`" in out
    assert results["settings"]["missing_runs"] and results["settings"]["run_dirs"] == [str(runs / "vgg11-96")]
    speedups = {(r["backend"], r["precision"]): r["speedup_vs_mxnet_hybrid"] for r in results["rows"]}
    assert speedups[("mxnet-hybrid", "fp32")] == 1.0 and speedups[("ort-cpu", "fp32")] > 0
    assert "ort-cpu fp32" in out.split("\n\n")[0]  # the side-by-side table comes first


def test_compare_train_makes_the_missing_run_with_train_export(tmp_path, data_dir, monkeypatch, capsys):
    """--train calls vggbench.train.train_export for a missing model/size (here a fast stand-in that
    writes a real untrained run dir; the real training is tested in test_train.py)."""
    from vggbench import train

    calls = []

    def fake_train_export(model, *, input_size, out, **options):
        calls.append(dict(model=model, input_size=input_size, out=out, **options))
        return make_untrained_run_dir(tmp_path / out / f"{model}-{input_size}", model, input_size, width_ratio=32)

    monkeypatch.setattr(train, "train_export", fake_train_export)
    monkeypatch.chdir(tmp_path)
    results = report.compare(models=["vgg11"], sizes=[64], width_ratio=32, train=True, backends=["ort-cpu"],
                             train_options={"epochs": 1}, data_dir=str(data_dir),
                             **dict(QUIET, batch_sizes=[1], modes=["end-to-end"], accuracy_limit=0))
    assert calls == [dict(model="vgg11", input_size=64, out="runs", epochs=1, width_ratio=32)]
    assert [(r["model"], r["input_size"], r["status"]) for r in results["rows"]] == [("vgg11", 64, "ok")]
    assert "no run for" not in capsys.readouterr().out


def test_a_variant_flagged_by_optimize_is_marked_in_the_tables(bench_run_dir):
    from vggbench import artifacts

    manifest = artifacts.read_manifest(bench_run_dir)
    manifest["variants"] = {"opt": {"flagged": True, "accuracy_drop_points": 1.5}}
    info = bench.run_info(bench_run_dir, manifest)
    record = {"kind": "timing", "precision": "opt", "batch_size": 16, "mode": bench.MODES["end-to-end"],
              "images_per_s": 100.0, "latency_p50_ms": 1.0, "latency_p90_ms": 1.1, "latency_p99_ms": 1.2,
              "latency_mean_ms": 1.0, "latency_min_ms": 0.9, "iterations": 5, "timed_s": 0.8, "warmup": 2,
              "runtime": {"threads": 1}}
    rows = bench.rows_from_records([record], info, "ort-cpu", "cpu", ["opt"])
    assert rows[0]["variant_flagged"] is True and rows[0]["variant_accuracy_drop_points"] == 1.5
    assert "opt FLAGGED (-1.50 pts)" in report.results_table(rows)
    assert "ort-cpu opt FLAGGED" in report.throughput_pivot(rows)
