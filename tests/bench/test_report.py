"""Rendering (tables with CIs and footnotes, CSV, Markdown, plot) and `vggbench compare` over run dirs,
saved results, and with --train."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil

import pytest
from helpers import QUICK_BENCH

from vggbench import workflows
from vggbench.bench import report
from vggbench.bench import results as R
from vggbench.cli import main
from vggbench.errors import VggbenchError
from vggbench.platform.gpu import gpu_inventory

# Tests that count on this machine having no GPU (CI, the dev box) skip on a GPU machine.
NO_GPU = pytest.mark.skipif(bool(gpu_inventory()), reason="this machine has a GPU")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUIET = dict(QUICK_BENCH, log=lambda message: None)


@pytest.fixture
def results_file(bench_results, tmp_path):
    path = tmp_path / "results" / "vgg11-96.json"
    path.parent.mkdir()
    R.write_results(path, bench_results)
    return path


def _two_sizes(bench_results):
    """The real rows plus a copy relabelled as input size 224, for multi-panel/multi-size output."""
    results = copy.deepcopy(bench_results)
    extra = copy.deepcopy(results["rows"])
    for row in extra:
        row.input_size, row.run_dir = 224, row.run_dir.replace("-96", "-224")
        if row.images_per_s:
            row.images_per_s /= 5
            row.images_per_s_ci_low /= 5
            row.images_per_s_ci_high /= 5
    results["rows"] += extra
    return results


@NO_GPU
def test_all_columns_table_footnotes_the_reasons(bench_results):
    text = report.render_results(bench_results, columns="all")
    table = text.split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(bench_results["rows"])
    header = table[0]
    for column in ("backend", "precision", "batch", "mode", "images/s ±95%", "x mxnet-hybrid [95% CI]", "p50 ms",
                   "p99 ms", "rounds", "% peak", "top-1 %", "Δ pts", "loaded MiB", "peak MiB", "file MiB",
                   "params MiB", "load ms", "1st call ms", "J/image", "status"):
        assert column in header
    reasons = {r.reason for r in bench_results["rows"] if not r.ok}
    assert not any(reason in line for line in table for reason in reasons)  # they live in footnotes
    footnotes = [line for line in text.splitlines() if line.startswith("[")]
    assert {line.split("] ", 1)[1] for line in footnotes} == reasons
    assert sum("unavailable [" in line for line in table) == sum(
        r.status_text.startswith("unavailable") for r in bench_results["rows"])
    assert "mode e2e = end-to-end (host numpy in/out)" in text
    assert "exactly 3 round(s) per row" in text and "GFLOP/image" in text and "ceiling cpu fp32: " in text
    assert "64 real Fashion-MNIST test images" in text and "machine:" in text


def test_cells_show_the_interval_and_mark_noisy_and_unclear_rows():
    row = R.Row(model="vgg11", input_size=96, width_ratio=1.0, backend="ort-cpu", images_per_s=47.04,
                images_per_s_ci_low=46.4, images_per_s_ci_high=47.6, noisy=False, speedup_vs_mxnet_hybrid=1.26,
                speedup_ci_low=1.2, speedup_ci_high=1.31, speedup_clear=True)
    assert report.images_per_s_cell(row) == "47.0 ±0.6"
    assert report.speedup_cell(row) == "1.26x [1.20-1.31]"
    row.update(noisy=True, speedup_ci_low=0.97, speedup_clear=False)
    assert report.images_per_s_cell(row) == "47.0 ±0.6 ~"
    assert report.speedup_cell(row).endswith(" =")


@NO_GPU
def test_pivot_puts_backends_side_by_side_with_speedups(bench_results):
    pivot = report.throughput_pivot(bench_results["rows"]).splitlines()
    header = pivot[0]
    for column in ("mxnet fp32", "mxnet-hybrid fp32", "ort-cpu fp32", "ort-cpu opt"):
        assert column in header
    assert "ort-cuda" not in header  # unavailable: listed as rows in the detail table instead
    assert len(pivot) == 2 + 2 * 2  # (e2e, compute) x batch (1, 4)
    assert all("(1.00x)" in line for line in pivot[2:])  # the mxnet-hybrid cell of each line


def test_csv_markdown_and_plot(bench_results):
    rows = list(csv.DictReader(io.StringIO(report.csv_text(bench_results["rows"]))))
    assert len(rows) == len(bench_results["rows"])
    assert list(rows[0])[:len(R.ROW_KEYS)] == list(R.ROW_KEYS)
    ok = [r for r in rows if r["status"] == "ok"]
    assert json.loads(ok[0]["round_images_per_s"]) and json.loads(ok[0]["runtime"])["backend"] == ok[0]["backend"]

    markdown = report.markdown_report(bench_results)
    assert markdown.startswith("# vggbench results") and "| mxnet-hybrid fp32" in markdown
    assert "- mode e2e = end-to-end (host numpy in/out)" in markdown and "[1] " in markdown

    png = report.throughput_png(_two_sizes(bench_results)["rows"])
    assert png[:8] == PNG_MAGIC
    import matplotlib.image

    height, width = matplotlib.image.imread(io.BytesIO(png)).shape[:2]
    assert width > 1.5 * height  # two panels side by side: 96 and 224


def test_plot_without_measured_rows_is_a_user_error(bench_results):
    unavailable = [r for r in bench_results["rows"] if not r.ok]
    with pytest.raises(VggbenchError, match="nothing to plot"):
        report.throughput_png(unavailable)


def test_json_round_trip_through_compare_from(bench_results, results_file, tmp_path, capsys):
    loaded = R.load_results([results_file])
    assert [r.images_per_s for r in loaded["rows"]] == [r.images_per_s for r in bench_results["rows"]]
    assert [r.speedup_ci_low for r in loaded["rows"]] == [r.speedup_ci_low for r in bench_results["rows"]]
    assert loaded["environment"] == bench_results["environment"]

    out = tmp_path / "out"
    out.mkdir()
    code = main(["compare", "--from", str(results_file), "--json", str(out / "merged.json"), "--csv",
                 str(out / "c.csv"), "--markdown", str(out / "c.md"), "--plot", str(out / "c.png")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "Throughput, images/s" in printed.out and "| ort-cpu" in printed.out
    assert "wrote plot:" in printed.out and "mode e2e = end-to-end" in printed.out
    merged = json.loads((out / "merged.json").read_text())
    assert merged["schema"] == R.SCHEMA
    assert [r["images_per_s"] for r in merged["rows"]] == [r.images_per_s for r in bench_results["rows"]]
    assert (out / "c.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "c.csv").read_text().count("\n") == 1 + len(bench_results["rows"])
    assert "## Throughput side by side" in (out / "c.md").read_text()
    assert (out / "c-memory.png").read_bytes()[:8] == PNG_MAGIC  # throughput vs memory, beside the bars
    assert sorted(p.name for p in out.iterdir()) == ["c-memory.png", "c.csv", "c.md", "c.png", "merged.json"]


def test_compare_from_several_files_and_filters(bench_results, results_file, tmp_path):
    other = tmp_path / "results" / "vgg11-224.json"
    two = _two_sizes(bench_results)
    two["rows"] = [r for r in two["rows"] if r.input_size == 224]
    R.write_results(other, two)
    results = workflows.compare(from_files=[results_file, other], backends=["ort-cpu", "mxnet-hybrid"])
    assert {r.input_size for r in results["rows"]} == {96, 224}
    assert {r.backend for r in results["rows"]} == {"ort-cpu", "mxnet-hybrid"}
    assert len(results["environments"]) == 2
    only_224 = workflows.compare(from_files=[results_file, other], sizes=[224])
    assert {r.input_size for r in only_224["rows"]} == {224}
    with pytest.raises(VggbenchError, match="no rows"):
        workflows.compare(from_files=[results_file], models=["vgg16"])


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"), ('{"rows": []}', "not a vggbench results file"),
    ("[1, 2]", "not a vggbench results file"),
    ('{"schema": "vggbench.results/2", "rows": [1]}', "row 0 is not a result row")])
def test_bad_results_files_are_user_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VggbenchError, match=message):
        R.load_results([path])
    with pytest.raises(VggbenchError, match="cannot read"):
        R.load_results([tmp_path / "missing.json"])


def test_compare_without_runs_names_the_train_export_command(tmp_path, capsys):
    with pytest.raises(VggbenchError, match=r"`vggbench train-export vgg11 --size 96 --out .*empty`"):
        workflows.compare(runs_dir=tmp_path / "empty", **QUIET)
    code = main(["compare", "--runs-dir", str(tmp_path / "empty"), "--models", "vgg16", "--sizes", "224"])
    err = capsys.readouterr().err
    assert code == 1 and f"`vggbench train-export vgg16 --size 224 --out {tmp_path / 'empty'}`" in err
    assert workflows.train_export_command("vgg11", 224) == "vggbench train-export vgg11 --size 224"
    assert workflows.train_export_command("vgg11", 96, "runs", 8) == \
        "vggbench train-export vgg11 --size 96 --width-ratio 8"


def test_compare_benches_the_runs_it_finds_and_reports_missing_ones(bench_run_dir, data_dir, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(bench_run_dir, runs / "vgg11-96")
    said = []
    results = workflows.compare(runs_dir=runs, models=["vgg11"], sizes=[96, 224], backends=["mxnet-hybrid", "ort-cpu"],
                               data_dir=str(data_dir), say=said.append,
                               **dict(QUIET, batch_sizes=[2], modes=["end-to-end"]))
    assert said == [f"no run for vgg11 at 224: make it with `vggbench train-export vgg11 --size 224 --out {runs}` "
                    f"(or add --train)"]
    assert results["settings"]["missing_runs"] == said and results["settings"]["run_dirs"] == [str(runs / "vgg11-96")]
    speedups = {(r.backend, r.precision): r.speedup_vs_mxnet_hybrid for r in results["rows"]}
    assert speedups[("mxnet-hybrid", "fp32")] == 1.0 and speedups[("ort-cpu", "fp32")] > 0


@pytest.mark.slow
def test_compare_train_really_trains_the_missing_run(tmp_path, data_dir):
    """`compare --train` on a tiny real training run: the run dir is made by train-export and benched."""
    results = workflows.compare(
        models=["vgg11"], sizes=[64], width_ratio=32, train=True, backends=["ort-cpu"], runs_dir=tmp_path / "runs",
        train_options={"epochs": 1, "train_limit": 256, "test_limit": 128, "parity_images": 64,
                       "data_dir": str(data_dir), "progress": False},
        data_dir=str(data_dir), **dict(QUIET, batch_sizes=[1], modes=["end-to-end"], accuracy_limit=0))
    [row] = [r for r in results["rows"] if r.precision == "fp32"]  # besides ort-cpu's bf16 "unavailable" row
    assert (row.model, row.input_size, row.width_ratio, row.status_text) == ("vgg11", 64, 32, "ok")
    assert row.run_dir == str(tmp_path / "runs" / "vgg11-w32-64")
    manifest = json.loads((tmp_path / "runs" / "vgg11-w32-64" / "manifest.json").read_text())
    assert manifest["trained"] is True and manifest["width_ratio"] == 32


def test_a_variant_flagged_by_optimize_is_marked_in_the_tables(bench_run_dir):
    from vggbench import artifacts
    from vggbench.bench import sweep

    manifest = artifacts.read_manifest(bench_run_dir)
    manifest["variants"] = {"opt": {"flagged": True, "accuracy_drop_points": 1.5}}
    info = sweep.run_info(bench_run_dir, manifest)
    row = R.new_row(info, "ort-cpu", "cpu", "opt", batch_size=16, mode=R.MODE_END_TO_END)
    row.update(images_per_s=100.0, images_per_s_ci_low=99.0, images_per_s_ci_high=101.0)
    assert row.variant_flagged is True and row.variant_accuracy_drop_points == 1.5
    assert "opt FLAGGED (-1.50 pts)" in report.results_table([row])
    assert "ort-cpu opt FLAGGED" in report.throughput_pivot([row])


def test_compare_shows_training_speed_from_the_runs_history(trained_run_dir, data_dir):
    results = workflows.compare([str(trained_run_dir)], backends=["mxnet-hybrid"], data_dir=str(data_dir),
                               **dict(QUIET, batch_sizes=[2], modes=["end-to-end"], accuracy_limit=0))
    [training] = results["training"]
    history = json.loads((trained_run_dir / "history.json").read_text())["epochs"]
    assert training["train_images_per_s"] == history[-1]["images_per_s"] > 0
    info = results["settings"]["models"][0]
    assert training["train_gflops_per_s"] == pytest.approx(3 * info["gflops_per_image"] * history[-1]["images_per_s"])
    assert training["devices"] == "cpu(0)" and training["batch_size"] == 64
    text = report.render_results(results)
    assert "Training (from each run's history):" in text and "| images/s" in text and "peak RSS MiB" in text
    assert training["peak_rss_bytes"] > 0 and 0 < training["pct_of_peak"] <= 100
    assert "## Training" in report.markdown_report(results)
