"""The default compare table within 120 characters, --columns all, the throughput-vs-memory plot."""

from __future__ import annotations

import copy
import json

from vggbench import workflows
from vggbench.bench import report
from vggbench.bench.results import Status
from vggbench.cli import main


def _widest(rows):
    """The sweep's real rows with the widest values each default cell can take: the longest backend
    name, a flagged variant, four-digit throughputs, a two-digit footnote, both modes, two models."""
    rows = copy.deepcopy(rows)
    wide = []
    for row in rows:
        if row.ok:
            row.update(backend="mxnet-hybrid-gpu", variant_flagged=True, images_per_s=1234.5,
                       images_per_s_ci_low=1111.1, images_per_s_ci_high=1357.9, speedup_vs_mxnet_hybrid=12.34,
                       speedup_clear=False, latency_p99_ms=1234.56, top1_accuracy=0.8891,
                       accuracy_delta_vs_mxnet_points=-12.34, memory_peak_rss_bytes=12345 * 2 ** 20,
                       model_file_bytes=54321 * 2 ** 20)
        other = row.copy(model="vgg16_bn", input_size=224)
        wide += [row, other]
    for number in range(12):  # a two-digit footnote number
        wide.append(rows[0].copy(status=Status.ERROR, reason=f"failure number {number}", mode=None))
    return wide


def test_default_table_fits_120_characters_and_keeps_what_a_deployer_compares(bench_results):
    results = dict(bench_results, rows=_widest(bench_results["rows"]))
    text = report.render_results(results, pivot=True)
    tables = [line for line in text.splitlines() if line.startswith("|")]
    assert tables and max(len(line) for line in tables) <= report.TERMINAL_WIDTH
    header = next(line for line in tables if "backend" in line and "prec" in line)
    for column in ("images/s ±95%", "x base", "p99 ms", "top-1 % (Δ)", "RSS MiB", "file MiB", "status"):
        assert column in header
    assert "vgg16_bn at 224x224" in text and "error [12]" in text
    for line in report.DEFAULT_COLUMNS_NOTE.splitlines():
        assert len(line) <= report.TERMINAL_WIDTH


def test_all_columns_show_every_measurement(bench_results):
    text = report.results_table(bench_results["rows"], columns="all")
    for column in ("% peak", "lib MiB", "loaded MiB", "peak MiB", "GPU MiB*", "file MiB", "params MiB",
                   "import ms", "load ms", "1st call ms", "J/image", "x mxnet-hybrid [95% CI]"):
        assert column in text.splitlines()[0]


def test_plot_writes_the_memory_scatter_beside_the_bars(bench_results, tmp_path):
    plot = tmp_path / "throughput.png"
    lines = workflows.write_outputs(bench_results, plot_path=plot)
    scatter = tmp_path / "throughput-memory.png"
    assert scatter.read_bytes().startswith(b"\x89PNG") and plot.read_bytes().startswith(b"\x89PNG")
    assert any(str(scatter) in line for line in lines)


def test_cli_from_an_older_results_file_and_columns_all(bench_results, tmp_path, capsys):
    old = copy.deepcopy(bench_results)
    old["rows"] = [row.to_json() for row in old["rows"]]
    for row in old["rows"]:  # a results file of the previous release: none of the new fields
        for key in [k for k in row if k.startswith(("memory_", "load_", "energy_", "ceiling_", "gpu_memory"))
                    or k in ("model_file_bytes", "parameter_bytes", "parameter_count")]:
            row.pop(key)
    old.pop("ceilings")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert main(["compare", "--from", str(path), "--columns", "all"]) == 0
    out = capsys.readouterr().out
    assert "% peak" in out and "ceiling cpu fp32: " in out
    assert main(["compare", "--from", str(path), "--plot", str(tmp_path / "p.png")]) == 0
    assert not (tmp_path / "p-memory.png").exists()  # no memory readings in that file: no scatter
