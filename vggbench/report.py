"""Tables, files and plots: turn result rows (plain dicts) into what people read."""

from __future__ import annotations

import json
import sys
from typing import Dict, Iterable, List, Optional, Sequence

from tabulate import tabulate

from vggbench.artifacts import write_json_atomic


def format_table(rows: Sequence[Dict], columns: Sequence[tuple], tablefmt: str = "github") -> str:
    """``columns`` is ``[(header, key or callable(row)), ...]``; missing values print as '-'."""
    body = []
    for row in rows:
        line = []
        for _, getter in columns:
            value = getter(row) if callable(getter) else row.get(getter)
            line.append("-" if value is None else value)
        body.append(line)
    return tabulate(body, headers=[header for header, _ in columns], tablefmt=tablefmt,
                    floatfmt=".2f", disable_numparse=False)


def models_rows(sizes: Iterable[int] = (96, 224), width_ratio: float = 1.0, classes: int = 10,
                in_channels: int = 1) -> List[Dict]:
    from vggbench.models import MODEL_NAMES, model_stats

    rows = []
    for name in MODEL_NAMES:
        per_size = [model_stats(name, size, classes, in_channels, width_ratio) for size in sizes]
        row = {"model": name, "config": per_size[0]["config"], "width_ratio": width_ratio,
               "classes": classes, "in_channels": in_channels}
        for stats in per_size:
            row[f"params_{stats['input_size']}"] = stats["params"]
            row[f"gflops_{stats['input_size']}"] = stats["gflops"]
        rows.append(row)
    return rows


def models_table(sizes=(96, 224), width_ratio=1.0, classes=10, in_channels=1,
                 json_path: Optional[str] = None, out=None) -> List[Dict]:
    """Print the zoo (params depend on input size through the first Dense layer)."""
    out = out or sys.stdout
    rows = models_rows(sizes, width_ratio, classes, in_channels)
    if json_path == "-":
        json.dump(rows, out, indent=2)
        out.write("\n")
        return rows
    columns = [("model", "model"), ("config", "config")]
    for size in sizes:
        columns += [(f"params @{size}", lambda r, s=size: f"{r[f'params_{s}']:,}"),
                    (f"GFLOPs @{size}", lambda r, s=size: f"{r[f'gflops_{s}']:.3f}")]
    print(format_table(rows, columns), file=out)
    print(f"\nFLOPs = 2 x multiply-adds of conv and dense layers per image; {in_channels} input channel(s), "
          f"{classes} classes, width ratio {width_ratio:g}.", file=out)
    if json_path:
        write_json_atomic(json_path, rows)
    return rows


# --- benchmark results: tables, files, plot, compare ----------------------------------------------

RESULTS_SCHEMA = "vggbench.results/1"
CSV_NESTED_KEYS = ("runtime",)


def _fmt(value, spec: str):
    return None if value is None else format(value, spec)


def _pct(value):
    return None if value is None else f"{100 * value:.2f}"


def _mode_short(mode):
    from vggbench.bench import MODE_SHORT

    return MODE_SHORT.get(mode, mode)


def _multi(rows: Sequence[Dict], key: str) -> bool:
    return len({row.get(key) for row in rows}) > 1


def _precision_label(row: Dict) -> str:
    """The precision, marked when `vggbench optimize` flagged the variant for losing accuracy."""
    if row.get("variant_flagged"):
        drop = row.get("variant_accuracy_drop_points")
        return f"{row['precision']} FLAGGED" + (f" (-{drop:.2f} pts)" if drop is not None else "")
    return row["precision"]


def results_table(rows: Sequence[Dict], tablefmt: str = "github", with_model: Optional[bool] = None) -> str:
    """Every row (ok, unavailable and error) with its numbers; status last, in full."""
    if with_model is None:
        with_model = _multi(rows, "model") or _multi(rows, "input_size") or _multi(rows, "width_ratio")
    columns: List[tuple] = []
    if with_model:
        columns += [("model", "model"), ("size", "input_size"), ("width ÷", lambda r: f"{r['width_ratio']:g}")]
    columns += [
        ("backend", "backend"), ("precision", _precision_label), ("batch", "batch_size"),
        ("mode", lambda r: _mode_short(r["mode"]) if r.get("mode") else None),
        ("images/s", lambda r: _fmt(r.get("images_per_s"), ".1f")),
        ("x mxnet-hybrid", lambda r: _fmt(r.get("speedup_vs_mxnet_hybrid"), ".2f")),
        ("p50 ms", lambda r: _fmt(r.get("latency_p50_ms"), ".2f")),
        ("p90 ms", lambda r: _fmt(r.get("latency_p90_ms"), ".2f")),
        ("p99 ms", lambda r: _fmt(r.get("latency_p99_ms"), ".2f")),
        ("GFLOP/s", lambda r: _fmt(r.get("gflops_per_s"), ".1f")),
        ("% peak", lambda r: _fmt(r.get("pct_of_peak"), ".1f")),
        ("top-1 %", lambda r: _pct(r.get("top1_accuracy"))),
        ("Δ pts vs MXNet", lambda r: _fmt(r.get("accuracy_delta_vs_mxnet_points"), "+.2f")),
        ("status", "status"),
    ]
    return format_table(rows, columns, tablefmt=tablefmt)


def throughput_pivot(rows: Sequence[Dict], tablefmt: str = "github") -> str:
    """Side by side: one line per (model, size, mode, batch), one column per backend/precision,
    cells ``images/s (speedup vs mxnet-hybrid)``."""
    ok = [r for r in rows if r.get("status") == "ok"]
    columns = list(dict.fromkeys(f"{r['backend']} {_precision_label(r)}" for r in ok))
    lines: Dict[tuple, Dict[str, str]] = {}
    for row in ok:
        key = (row["model"], row["input_size"], row["width_ratio"], _mode_short(row["mode"]), row["batch_size"])
        speedup = row.get("speedup_vs_mxnet_hybrid")
        cell = f"{row['images_per_s']:.1f}" + (f" ({speedup:.2f}x)" if speedup is not None else "")
        lines.setdefault(key, {})[f"{row['backend']} {_precision_label(row)}"] = cell
    headers = ["model", "size", "width ÷", "mode", "batch"] + columns
    body = [[model, size, f"{width:g}", mode, batch] + [cells.get(c, "-") for c in columns]
            for (model, size, width, mode, batch), cells in lines.items()]
    return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)


def results_notes(results: Dict) -> List[str]:
    """What was timed and how, printed under every table."""
    from vggbench.bench import MODE_SHORT

    rows, settings, env = results["rows"], results.get("settings", {}), results.get("environment", {})
    modes = list(dict.fromkeys(r["mode"] for r in rows if r.get("mode")))
    notes = [f"mode {MODE_SHORT.get(m, m)} = {m}" for m in modes]
    notes.append("  e2e times runtime.run(batch): host float32 NCHW in, host logits out, synced; compute times "
                 "runtime.run_staged() after staging the input on the device once, output left there, synced.")
    if settings.get("timing_policy"):
        notes.append(f"timing: {settings['timing_policy']} per row; time.perf_counter around each synced call; "
                     f"p50/p90/p99 over the calls; images/s = batch x calls / loop time.")
    flops = {(r["model"], r["input_size"], r["width_ratio"]): r["gflops_per_image"] for r in rows
             if r.get("gflops_per_image") is not None}
    for (model, size, width), gflops in flops.items():
        notes.append(f"FLOPs: {model} at {size} (width ÷{width:g}) = {gflops:.3f} GFLOP/image "
                     f"(2 x multiply-adds of conv + dense layers); GFLOP/s = that x images/s.")
    peaks = {(r["backend"], r.get("peak_kernel")): r.get("peak_gflops_per_s") for r in rows
             if r.get("peak_gflops_per_s") is not None}
    for (backend, kernel), peak in peaks.items():
        notes.append(f"peak {backend}: {kernel}: {peak:.1f} GFLOP/s (fastest call, same worker process); "
                     f"% peak = row GFLOP/s / this.")
    if any(r.get("precision") == "int8" and r.get("pct_of_peak") is not None for r in rows):
        notes.append("int8 rows are measured against the fp32 GEMM peak (same FLOP count), so they can exceed 100%.")
    accuracy = [r for r in rows if r.get("accuracy_images")]
    if accuracy:
        reference = next((r["accuracy_reference"] for r in accuracy if r.get("accuracy_reference")), None)
        notes.append(f"top-1: {accuracy[0]['accuracy_images']} real Fashion-MNIST test images through each backend "
                     f"(same preprocessing); Δ pts vs {reference or 'no MXNet reference in this run'}.")
    if settings.get("accuracy_limit") == 0:
        notes.append("top-1: skipped (--accuracy-limit 0).")
    if env:
        versions = env.get("versions", {})
        threads = sorted({r.get("threads") for r in rows if r.get("threads")})
        if settings.get("threads_source"):
            threads = f"{threads} ({settings['threads_source']}, same for every backend)"
        gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
        notes.append(f"machine: {env.get('cpu')} ({env.get('cores')} cores), threads {threads or '-'}, GPU: {gpus}; "
                     + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + f"; {env.get('timestamp')}")
    return notes


def print_results(results: Dict, out=None, pivot: bool = False) -> None:
    """The table(s), then what was timed."""
    out = out or sys.stdout
    if pivot:
        print("Throughput, images/s (speedup vs mxnet-hybrid fp32, same model/size/batch/mode):", file=out)
        print(throughput_pivot(results["rows"]), file=out)
        print(file=out)
    print(results_table(results["rows"]), file=out)
    print(file=out)
    for note in results_notes(results):
        print(note, file=out)


def write_csv(path, rows: Sequence[Dict]) -> None:
    """All row keys as columns (nested runtime info as JSON text); written atomically."""
    import csv
    import io

    from vggbench.artifacts import write_bytes_atomic
    from vggbench.bench import ROW_KEYS

    keys = list(ROW_KEYS) + sorted({key for row in rows for key in row} - set(ROW_KEYS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: json.dumps(row[key]) if isinstance(row.get(key), (dict, list)) else row.get(key)
                         for key in keys})
    write_bytes_atomic(path, buffer.getvalue().encode())


def markdown_report(results: Dict) -> str:
    lines = ["# vggbench results", "", "## Throughput side by side", "",
             "images/s (speedup vs mxnet-hybrid fp32, same model/size/batch/mode)", "",
             throughput_pivot(results["rows"]), "", "## All rows", "", results_table(results["rows"]), "",
             "## What was timed", ""]
    lines += [f"- {note.strip()}" for note in results_notes(results)]
    return "\n".join(lines) + "\n"


def write_markdown(path, results: Dict) -> None:
    from vggbench.artifacts import write_bytes_atomic

    write_bytes_atomic(path, markdown_report(results).encode())


def plot_throughput(rows: Sequence[Dict], path, mode: Optional[str] = None) -> None:
    """Throughput vs batch size, one line per (model,) backend + precision, one panel per input size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vggbench.artifacts import atomic_path
    from vggbench.bench import MODE_END_TO_END
    from vggbench.errors import VggbenchError

    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        raise VggbenchError("nothing to plot: no row was measured (all unavailable or errors)")
    modes = {r["mode"] for r in ok}
    mode = mode or (MODE_END_TO_END if MODE_END_TO_END in modes else sorted(modes)[0])
    ok = [r for r in ok if r["mode"] == mode]
    sizes = sorted({r["input_size"] for r in ok})
    with_model = _multi(ok, "model") or _multi(ok, "width_ratio")
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        lines: Dict[str, List[tuple]] = {}
        for row in ok:
            if row["input_size"] != size:
                continue
            label = f"{row['backend']} {row['precision']}"
            if with_model:
                label = f"{row['model']} ÷{row['width_ratio']:g} " + label
            lines.setdefault(label, []).append((row["batch_size"], row["images_per_s"]))
        batches = sorted({b for points in lines.values() for b, _ in points})
        for label, points in lines.items():
            points.sort()
            ax.plot([b for b, _ in points], [v for _, v in points], "o-", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s")
        ax.set_title(f"input {size}x{size}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"Throughput vs batch size ({mode})")
    fig.tight_layout()
    with atomic_path(path) as temp:
        fig.savefig(temp, format="png", dpi=100)
    plt.close(fig)


def load_results(paths: Sequence) -> Dict:
    """Read saved results files (``compare --from``) into one results document."""
    from vggbench.bench import add_speedups
    from vggbench.errors import VggbenchError

    if not paths:
        raise VggbenchError("--from needs at least one results JSON file (written by `vggbench bench --json`)")
    rows, environments, settings = [], [], []
    for path in paths:
        try:
            with open(path) as handle:
                doc = json.load(handle)
        except OSError as err:
            raise VggbenchError(f"{path}: cannot read results file ({err.strerror})") from None
        except ValueError as err:
            raise VggbenchError(f"{path}: not valid JSON ({err}); write it with `vggbench bench --json`") from None
        if not isinstance(doc, dict) or doc.get("schema") != RESULTS_SCHEMA or not isinstance(doc.get("rows"), list):
            raise VggbenchError(f"{path}: not a vggbench results file (schema {RESULTS_SCHEMA!r} expected, "
                                f"got {doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r})")
        file_rows = [dict(row, source=str(path)) for row in doc["rows"]]
        if all(row.get("speedup_vs_mxnet_hybrid") is None for row in file_rows):
            add_speedups(file_rows)
        rows += file_rows
        environments.append(doc.get("environment", {}))
        settings.append(doc.get("settings", {}))
    merged_settings = dict(settings[0]) if len(settings) == 1 else {"from_settings": settings}
    merged_settings["from"] = [str(p) for p in paths]
    return {"schema": RESULTS_SCHEMA, "environment": environments[0], "environments": environments,
            "settings": merged_settings, "rows": rows}


def filter_rows(rows: Sequence[Dict], models=None, sizes=None, backends=None) -> List[Dict]:
    return [r for r in rows if (not models or r["model"] in models) and (not sizes or r["input_size"] in sizes)
            and (not backends or r["backend"] in backends)]


def train_export_command(model: str, size: int, runs_dir: str = "runs", width_ratio: Optional[float] = None) -> str:
    """The exact command that makes the missing run dir ``runs_dir/model-size``."""
    command = f"vggbench train-export {model} --size {size}"
    if width_ratio is not None and width_ratio != 1.0:
        command += f" --width-ratio {width_ratio:g}"
    if str(runs_dir) != "runs":
        command += f" --out {runs_dir}"
    return command


def find_run_dirs(runs_dir="runs") -> List[str]:
    """Run dirs (folders holding manifest.json) directly under ``runs_dir``, sorted."""
    from pathlib import Path

    from vggbench.artifacts import MANIFEST_NAME

    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [str(p.parent) for p in sorted(root.glob(f"*/{MANIFEST_NAME}"))]


def compare(run_dirs: Optional[Sequence] = None, models: Optional[Sequence[str]] = None,
            sizes: Optional[Sequence[int]] = None, backends: Optional[Sequence[str]] = None,
            runs_dir="runs", width_ratio: Optional[float] = None, train: bool = False,
            train_options: Optional[Dict] = None, from_files: Optional[Sequence] = None,
            json_path=None, csv_path=None, markdown_path=None, plot_path=None, out=None,
            log=None, **bench_options) -> Dict:
    """``vggbench compare``: one side-by-side table across models, sizes and backends.

    With ``from_files`` the rows come from saved results; otherwise the run dirs (given, or all in
    ``runs_dir``) matching ``models``/``sizes``/``width_ratio`` are benchmarked with
    :func:`vggbench.bench.sweep`. A requested model/size with no run dir is trained with
    ``train=True`` (``vggbench.train.train_export``), else its exact train-export command is printed.
    """
    from vggbench import bench
    from vggbench.artifacts import read_manifest
    from vggbench.errors import VggbenchError
    from vggbench.models import check_model_name

    out = out or sys.stdout
    for model in models or ():
        check_model_name(model)
    if from_files:
        if run_dirs or train:
            raise VggbenchError("--from rebuilds tables from saved results; do not also give run dirs or --train")
        results = load_results(from_files)
        results["rows"] = filter_rows(results["rows"], models, sizes, backends)
        if not results["rows"]:
            raise VggbenchError(f"no rows in {', '.join(map(str, from_files))} match the "
                                f"--models/--sizes/--backends filter")
    else:
        explicit = bool(run_dirs)
        candidates = [str(d) for d in run_dirs] if explicit else find_run_dirs(runs_dir)
        chosen, have = [], set()
        for run_dir in candidates:
            manifest = read_manifest(run_dir)
            if models and manifest["model"] not in models:
                continue
            if sizes and manifest["input_size"] not in sizes:
                continue
            if width_ratio is not None and manifest.get("width_ratio", 1.0) != width_ratio:
                continue
            chosen.append(run_dir)
            have.add((manifest["model"], manifest["input_size"]))
        wanted = []
        if models or sizes:
            for model in models or sorted({m for m, _ in have}):
                for size in sizes or (96, 224):
                    if (model, size) not in have:
                        wanted.append((model, size))
        suggestions = []
        for model, size in wanted:
            if train:
                from vggbench.train import train_export

                options = dict(train_options or {})
                if width_ratio is not None:
                    options["width_ratio"] = width_ratio
                chosen.append(str(train_export(model, input_size=size, out=str(runs_dir), **options)))
            else:
                suggestions.append(f"no run for {model} at {size}: make it with `"
                                   f"{train_export_command(model, size, runs_dir, width_ratio)}` (or add --train)")
        for line in suggestions:
            print(line, file=out)
        if not chosen:
            hint = "; ".join(suggestions) or (
                f"make one with `{train_export_command('vgg11', 96, runs_dir, width_ratio)}`")
            where = "the given run dirs" if explicit else f"{runs_dir}/"
            raise VggbenchError(f"nothing to compare: no run dir in {where} matches; {hint}")
        kwargs = dict(bench_options)
        if log is not None:
            kwargs["log"] = log
        results = bench.sweep(chosen, backends=backends, **kwargs)
        results["settings"]["missing_runs"] = suggestions
    if json_path:
        bench.write_results(json_path, results)
    print_results(results, out=out, pivot=True)
    if csv_path:
        write_csv(csv_path, results["rows"])
    if markdown_path:
        write_markdown(markdown_path, results)
    if plot_path:
        plot_throughput(results["rows"], plot_path)
    for label, path in (("results JSON", json_path), ("CSV", csv_path), ("Markdown", markdown_path),
                        ("plot", plot_path)):
        if path:
            print(f"wrote {label}: {path}", file=out)
    return results
