"""Rendering only: result rows (plain dicts) into tables, CSV, Markdown and plots.

Every function here takes rows or a results document and returns text or PNG bytes; it measures,
trains and writes nothing (callers write the files, atomically). It imports no stage module.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from tabulate import tabulate

from vggbench.bench.results import MODE_END_TO_END, MODE_SHORT
from vggbench.bench.row import ROW_KEYS, Row
from vggbench.data import TEST_IMAGES
from vggbench.errors import VggbenchError

Column = Tuple[str, Any]


def _compact_github(headers: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A GitHub-style table whose columns are exactly as wide as their widest cell (tabulate pads
    every header by two characters, which a 12-column table cannot spare in 120)."""
    cells = [[str(value) for value in line] for line in body]
    widths = [max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(headers)]

    def line(values) -> str:
        return "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
                     + [line(values) for values in cells])


def format_table(rows: Sequence[Any], columns: Sequence[Column], tablefmt: str = "github") -> str:
    """A table of ``rows``; ``columns`` is ``[(header, key or callable(row)), ...]``, '-' for None.

    Parameters:
        rows: result rows (:class:`~vggbench.bench.row.Row`: a key is a field name) or plain dicts.
        columns: header and how to get each cell.
        tablefmt: a tabulate format.
    """
    body = []
    for row in rows:
        line = []
        for _, getter in columns:
            value = getter(row) if callable(getter) else (
                row.get(getter) if isinstance(row, Mapping) else getattr(row, getter, None))
            line.append("-" if value is None else value)
        body.append(line)
    if tablefmt == "compact-github":
        return _compact_github([header for header, _ in columns], body)
    return tabulate(body, headers=[header for header, _ in columns], tablefmt=tablefmt,
                    floatfmt=".2f", disable_numparse=False)


def models_table(rows: Sequence[Dict], sizes: Iterable[int]) -> str:
    """The zoo table (``vggbench models``): config, parameters and GFLOPs per input size.

    Parameters:
        rows: from :func:`vggbench.workflows.zoo_rows`.
        sizes: the input sizes the rows hold.
    """
    columns: List[Column] = [("model", "model"), ("config", "config")]
    for size in sizes:
        columns += [(f"params @{size}", lambda r, s=size: f"{r[f'params_{s}']:,}"),
                    (f"GFLOPs @{size}", lambda r, s=size: f"{r[f'gflops_{s}']:.3f}")]
    first = rows[0] if rows else {}
    return (format_table(rows, columns) + f"\n\nFLOPs = 2 x multiply-adds of conv and dense layers per image; "
            f"{first.get('in_channels', 1)} input channel(s), {first.get('classes', 10)} classes, "
            f"width ratio {first.get('width_ratio', 1.0):g}.")


def _fmt(value, spec: str):
    return None if value is None else format(value, spec)


def _pct(value):
    return None if value is None else f"{100 * value:.2f}"


def _multi(rows: Sequence[Row], field: str) -> bool:
    return len({getattr(row, field) for row in rows}) > 1


def _precision_label(row: Row) -> str:
    """The precision, marked when `vggbench optimize` flagged the variant for losing accuracy."""
    if row.variant_flagged:
        drop = row.variant_accuracy_drop_points
        return f"{row.precision} FLAGGED" + (f" (-{drop:.2f} pts)" if drop is not None else "")
    return row.precision


def images_per_s_cell(row: Row) -> Optional[str]:
    """``47.0 ±0.6`` (median and half the 95% CI), ``~`` marking a row that did not converge."""
    value = row.images_per_s
    if value is None:
        return None
    low, high = row.images_per_s_ci_low, row.images_per_s_ci_high
    text = f"{value:.1f}"
    if low is not None and high is not None:
        text += f" ±{(high - low) / 2:.1f}"
    return text + (" ~" if row.noisy else "")


def speedup_cell(row: Row) -> Optional[str]:
    """``1.26x [1.20-1.31]``; ``=`` when the CI includes 1.00 (no clear difference)."""
    value = row.speedup_vs_mxnet_hybrid
    if value is None:
        return None
    text = f"{value:.2f}x"
    if row.speedup_ci_low is not None:
        text += f" [{row.speedup_ci_low:.2f}-{row.speedup_ci_high:.2f}]"
        if row.speedup_clear is False:
            text += " ="
    return text


class Footnotes:
    """Numbered notes for long status texts, so tables stay terminal-wide (JSON keeps them whole)."""

    def __init__(self) -> None:
        self._numbers: Dict[str, int] = {}

    def status(self, row: Row) -> str:
        """``ok``, ``ok, noisy`` or ``unavailable [1]`` / ``error [2]`` with the reason as note 1/2."""
        if row.ok:
            return "ok, noisy" if row.noisy else "ok"
        return self.mark(row.status.value, row.reason or row.status.value)

    def mark(self, word: str, reason: str) -> str:
        """``word [N]`` with ``reason`` as note N (one number per distinct reason)."""
        number = self._numbers.setdefault(reason.strip(), len(self._numbers) + 1)
        return f"{word} [{number}]"

    def short_status(self, row: Row) -> str:
        """:meth:`status` in fewer characters: ``ok``, ``noisy``, ``n/a [1]``, ``error [2]``."""
        text = self.status(row)
        return {"ok, noisy": "noisy"}.get(text, text.replace("unavailable", "n/a"))

    def lines(self) -> List[str]:
        """``[1] reason`` lines, in number order."""
        return [f"[{number}] {reason}" for reason, number in self._numbers.items()]


# ``compare``/``bench`` print the default column set, which stays within this many characters;
# ``--columns all`` prints every column, and the JSON/CSV always hold every field.
TERMINAL_WIDTH = 120
COLUMN_SETS = ("default", "all")


def _mib(value) -> Optional[str]:
    """Bytes as MiB: one decimal below 10 MiB, whole MiB above."""
    if value is None:
        return None
    mib = value / 2 ** 20
    return f"{mib:.1f}" if abs(mib) < 10 else f"{mib:.0f}"


def _short_precision(row: Row) -> str:
    """The precision, ``!`` marking a variant `vggbench optimize` flagged for losing accuracy."""
    return row.precision + ("!" if row.variant_flagged else "")


def _short_speedup(row: Row) -> Optional[str]:
    """``1.26x``, ``=`` when its CI includes 1.00 (the interval itself is in ``--columns all``)."""
    value = row.speedup_vs_mxnet_hybrid
    if value is None:
        return None
    return f"{value:.2f}x" + (" =" if row.speedup_clear is False else "")


def _memory_cell(row: Row) -> Optional[str]:
    """Resident memory of the row's worker over its idle self: the peak during the timed rounds."""
    return _mib(row.memory_peak_rss_bytes)


def _short_number(value) -> Optional[str]:
    """Three significant digits or the whole number, never an exponent: 0.31, 48.7, 645, 12346."""
    if value is None:
        return None
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _top1_cell(row: Row) -> Optional[str]:
    """``88.91 (+0.12)``: top-1 % and its difference from MXNet fp32 in points."""
    top1 = _pct(row.top1_accuracy)
    delta = row.accuracy_delta_vs_mxnet_points
    return top1 if top1 is None or delta is None else f"{top1} ({delta:+.2f})"


def _ms(value) -> Optional[str]:
    return None if value is None else f"{1e3 * value:.0f}"


def _energy_cell(row: Row) -> Optional[str]:
    value = row.energy_j_per_image
    return None if value is None else f"{value:.3g}"


def _columns(name: str, footnotes: "Footnotes", with_model: bool) -> List[Column]:
    """The table's columns: ``default`` (what a deployer compares first, within
    :data:`TERMINAL_WIDTH`) or ``all``."""
    model: List[Column] = [("model", "model"), ("size", "input_size"),
                           ("width ÷", lambda r: f"{r.width_ratio:g}")] if with_model else []
    mode = ("mode", lambda r: MODE_SHORT.get(r.mode, r.mode) if r.mode else None)
    if name == "default":  # model, size and mode are the title of each table (see results_table)
        return [
            ("backend", "backend"), ("prec", _short_precision), ("batch", "batch_size"),
            ("images/s ±95%", lambda r: (images_per_s_cell(r) or "").rstrip(" ~") or None), ("x base", _short_speedup),
            ("p99 ms", lambda r: _short_number(r.latency_p99_ms)),
            ("top-1 % (Δ)", _top1_cell),
            ("RSS MiB", _memory_cell), ("file MiB", lambda r: _mib(r.model_file_bytes)),
            ("status", footnotes.short_status),
        ]
    if name != "all":
        raise VggbenchError(f"unknown column set {name!r}; choose from {', '.join(COLUMN_SETS)}")
    return model + [
        ("backend", "backend"), ("precision", _precision_label), ("batch", "batch_size"), mode,
        ("images/s ±95%", images_per_s_cell),
        ("x mxnet-hybrid [95% CI]", speedup_cell),
        ("p50 ms", lambda r: _fmt(r.latency_p50_ms, ".2f")),
        ("p99 ms", lambda r: _fmt(r.latency_p99_ms, ".2f")),
        ("rounds", "rounds"),
        ("% peak", lambda r: _fmt(r.pct_of_peak, ".1f")),
        ("top-1 %", lambda r: _pct(r.top1_accuracy)),
        ("Δ pts", lambda r: _fmt(r.accuracy_delta_vs_mxnet_points, "+.2f")),
        ("lib MiB", lambda r: _mib(r.memory_library_rss_bytes)),
        ("loaded MiB", lambda r: _mib(r.memory_load_rss_bytes)),
        ("peak MiB", _memory_cell),
        ("GPU MiB*", lambda r: _mib(r.gpu_memory_used_bytes)),
        ("file MiB", lambda r: _mib(r.model_file_bytes)),
        ("params MiB", lambda r: _mib(r.parameter_bytes)),
        ("import ms", lambda r: _ms(r.load_library_s)),
        ("load ms", lambda r: _ms(r.load_session_s)),
        ("1st call ms", lambda r: _ms(r.load_first_inference_s)),
        ("J/image", _energy_cell),
        ("status", footnotes.status),
    ]


def results_table(rows: Sequence[Row], tablefmt: str = "github", with_model: Optional[bool] = None,
                  footnotes: Optional[Footnotes] = None, columns: str = "all") -> str:
    """Every row (ok, unavailable and error) with its numbers; reasons as numbered footnotes.

    Parameters:
        rows: result rows.
        tablefmt: a tabulate format.
        with_model: add model/size/width columns (default: when the rows hold several); the
            ``default`` set prints one table per model and size under a title line instead.
        footnotes: collects the status notes (the caller prints ``footnotes.lines()``); None = the
            notes are appended under the table.
        columns: ``all`` (every column) or ``default`` (within :data:`TERMINAL_WIDTH`).
    """
    own_notes = footnotes is None
    footnotes = footnotes or Footnotes()
    if with_model is None:
        with_model = _multi(rows, "model") or _multi(rows, "input_size") or _multi(rows, "width_ratio")
    if columns == "default" and tablefmt == "github":
        tablefmt = "compact-github"
    if columns == "default":  # one table per model, size and mode, each under its title line
        groups: Dict[tuple, List[Row]] = {}
        for row in rows:
            groups.setdefault((row.model, row.input_size, row.width_ratio, row.mode), []).append(row)
        table = "\n\n".join(
            f"{model} at {size}x{size}, width ÷{width:g}, {mode or 'not run (unavailable, or failed before timing)'}:\n"
            + format_table(group, _columns(columns, footnotes, False), tablefmt=tablefmt)
            for (model, size, width, mode), group in groups.items())
    else:
        table = format_table(rows, _columns(columns, footnotes, with_model), tablefmt=tablefmt)
    if own_notes and footnotes.lines():
        table += "\n\n" + "\n".join(footnotes.lines())
    return table


def throughput_pivot(rows: Sequence[Row], tablefmt: str = "github", width: Optional[int] = None) -> str:
    """Side by side: one line per (model, size, mode, batch), one column per backend/precision,
    cells ``images/s ±CI (speedup vs mxnet-hybrid)``; ``=`` marks no clear difference.

    Parameters:
        rows: result rows.
        tablefmt: a tabulate format.
        width: when given, the backend columns are split over as many tables (each repeating the
            key columns) as keep every line within this many characters.
    """
    ok = [r for r in rows if r.ok]
    columns = list(dict.fromkeys(f"{r.backend} {_precision_label(r)}" for r in ok))
    lines: Dict[tuple, Dict[str, str]] = {}
    for row in ok:
        key = (row.model, row.input_size, row.width_ratio, MODE_SHORT.get(row.mode, row.mode),
               row.batch_size)
        speedup = row.speedup_vs_mxnet_hybrid
        cell = images_per_s_cell(row)
        if speedup is not None:
            cell += f" ({speedup:.2f}x{' =' if row.speedup_clear is False else ''})"
        lines.setdefault(key, {})[f"{row.backend} {_precision_label(row)}"] = cell
    def render(chosen: Sequence[str]) -> str:
        headers = ["model", "size", "width ÷", "mode", "batch"] + list(chosen)
        body = [[model, size, f"{ratio:g}", mode, batch] + [cells.get(c, "-") for c in chosen]
                for (model, size, ratio, mode, batch), cells in lines.items()]
        return tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)

    if not width:
        return render(columns)
    tables, chunk = [], []
    for column in columns:
        if chunk and max(len(line) for line in render(chunk + [column]).splitlines()) > width:
            tables.append(render(chunk))
            chunk = []
        chunk.append(column)
    return "\n\n".join(tables + [render(chunk)])


DEFAULT_COLUMNS_NOTE = (
    "x base = speedup vs mxnet-hybrid fp32 ('=' no clear difference); Δ = top-1 points vs MXNet fp32;\n"
    "RSS MiB = the worker's peak resident memory during the timed rounds over its idle self; file MiB = the\n"
    "model file(s) loaded; prec '!' = flagged by optimize for lost accuracy; --columns all adds % peak,\n"
    "load and first-call times, memory parts and energy per image.")


def _peak_notes(results: Dict) -> List[str]:
    """One line per ceiling: the number every % of peak of that device and precision divides by,
    and the kernel or formula that set it."""
    notes, seen = [], set()
    for ceiling in results.get("ceilings") or []:
        key = (ceiling["device"], ceiling["precision"], ceiling["gflops_per_s"], ceiling["source"])
        if key in seen:
            continue
        seen.add(key)
        unit = "GOP/s" if ceiling["precision"] == "int8" else "GFLOP/s"
        notes.append(f"ceiling {ceiling['device']} {ceiling['precision']}: {ceiling['gflops_per_s']:.1f} {unit}, set by "
                     f"{ceiling['source']}; every {ceiling['precision']} row's % peak on {ceiling['device']} divides by it.")
    if notes:
        notes.append("ceiling = the highest of the best GEMM measured through any runtime on that device and "
                     "precision (fastest call, best size) and the theoretical peak at the highest clock shown.")
    return notes


def _resource_notes(rows: Sequence[Row]) -> List[str]:
    """What the memory, size, load-time and energy fields measured, and any reason energy is missing."""
    ok = [r for r in rows if r.ok]
    if not any(r.memory_load_rss_bytes is not None for r in ok):
        return []
    notes = ["memory: each backend x precision runs in a worker process of its own; RSS from /proc "
             "(VmRSS after loading, VmHWM over the timed rounds), minus the same worker's RSS before it imported "
             "its runtime library; parameters = the weights as stored (ONNX initializers, MXNet arrays)."]
    notes.append("load: library import, load_runtime (file checked, session/graph built: ORT optimisation, "
                 "TensorRT engine build or cache) and the first two inferences at the smallest batch, each timed once.")
    reasons = sorted({r.energy_reason for r in ok if r.energy_reason})
    sources = sorted({r.energy_source for r in ok if r.energy_source})
    if sources:
        notes.append(f"energy: joules per image over the timed rounds from {'; '.join(sources)}.")
    if reasons:
        notes.append(f"energy: not measured: {'; '.join(reasons)} (never estimated).")
    if any(r.gpu_memory_note for r in ok):
        notes.append(f"GPU MiB*: {next(r.gpu_memory_note for r in ok if r.gpu_memory_note)}.")
    return notes


def results_notes(results: Dict) -> List[str]:
    """What was timed and how, printed under every table.

    Parameters:
        results: a results document.
    """
    rows, settings, env = results["rows"], results.get("settings", {}), results.get("environment", {})
    modes = list(dict.fromkeys(r.mode for r in rows if r.mode))
    notes = [f"mode {MODE_SHORT.get(m, m)} = {m}" for m in modes]
    notes.append("  e2e times runtime.run(batch): host float32 NCHW in, host logits out, synced; compute times "
                 "runtime.run_staged() after staging the input on the device once, output left there, synced.")
    if settings.get("timing_policy"):
        notes.append(f"timing: {settings['timing_policy']}; time.perf_counter around each synced call.")
    notes.append("images/s = median over rounds of batch x calls / round time, ± half its 95% bootstrap CI; "
                 "~ / 'noisy' = did not converge; speedups from paired rounds, '=' = CI includes 1.00 "
                 "(no clear difference).")
    flops = {(r.model, r.input_size, r.width_ratio): r.gflops_per_image for r in rows
             if r.gflops_per_image is not None}
    for (model, size, width), gflops in flops.items():
        notes.append(f"FLOPs: {model} at {size} (width ÷{width:g}) = {gflops:.3f} GFLOP/image "
                     f"(2 x multiply-adds of conv + dense layers, from the run's manifest).")
    notes += _peak_notes(results)
    notes += _resource_notes(rows)
    accuracy = [r for r in rows if r.accuracy_images]
    if accuracy:
        reference = next((r.accuracy_reference for r in accuracy if r.accuracy_reference), None)
        notes.append(f"top-1: {accuracy[0].accuracy_images} real Fashion-MNIST test images through each backend "
                     f"(same preprocessing); Δ pts vs {reference or 'no MXNet reference in this run'}.")
    if settings.get("accuracy_limit") == 0:
        notes.append("top-1: skipped (--accuracy-limit 0).")
    elif settings.get("accuracy_skipped"):
        notes.append(f"top-1: skipped: {settings['accuracy_skipped']}.")
    builds = {(r.backend, r.precision): (r.runtime or {}).get("session_create_s") for r in rows
              if r.backend == "ort-trt" and (r.runtime or {}).get("session_create_s") is not None}
    for (backend, precision), seconds in builds.items():
        notes.append(f"{backend} {precision}: session creation (TensorRT engine build, or loading it from the "
                     f"run dir's cache) took {seconds:.1f} s, outside every timed round.")
    warnings = list(dict.fromkeys(r.busy_warning for r in rows if r.busy_warning))
    if warnings:
        notes.append(f"WARNING: {len([r for r in rows if r.busy_warning])} row(s) were timed while the "
                     f"machine was busy, e.g. {warnings[0]}.")
    if env:
        versions = env.get("versions", {})
        threads = sorted({r.threads for r in rows if r.threads})
        if settings.get("threads_source"):
            threads = f"{threads} ({settings['threads_source']}, same for every backend)"
        gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
        notes.append(f"machine: {env.get('cpu')} ({env.get('cores')} cores), threads {threads or '-'}, GPU: {gpus}; "
                     + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + f"; {env.get('timestamp')}")
    return notes


def training_table(training: Sequence[Dict], tablefmt: str = "github", columns: str = "all") -> str:
    """Training speed per run (from its history): images/s, GFLOP/s (3x forward), % of peak and the
    resident peak; ``columns="default"`` fits :data:`TERMINAL_WIDTH` (GPU memory only when measured)."""
    table: List[Column] = [
        ("model", "model"), ("size", "input_size"), ("width ÷", lambda r: f"{r['width_ratio']:g}"),
        ("batch", "batch_size"), ("epoch", "epoch"), ("devices", "devices"), ("threads", "threads"),
        ("train images/s", lambda r: _fmt(r.get("train_images_per_s"), ".1f")),
        ("train GFLOP/s", lambda r: _fmt(r.get("train_gflops_per_s"), ".1f")),
        ("% peak", lambda r: _fmt(r.get("pct_of_peak"), ".1f")),
        ("peak RSS MiB", lambda r: _mib(r.get("peak_rss_bytes"))),
        ("GPU MiB*", lambda r: _mib(r.get("gpu_memory_used_bytes")))]
    if columns == "default":
        short = {"train images/s": "images/s", "train GFLOP/s": "GFLOP/s"}
        table = [(short.get(header, header), getter) for header, getter in table
                 if header != "GPU MiB*" or any(r.get("gpu_memory_used_bytes") is not None for r in training)]
        tablefmt = "compact-github" if tablefmt == "github" else tablefmt
    return format_table(training, table, tablefmt=tablefmt)


TRAINING_NOTE = ("training: the last epoch of each run's history.json (images / epoch time, data loading "
                 "included); GFLOP/s = 3 x forward FLOPs x images/s; % peak against the fp32 ceiling of its "
                 "device (only when it trained with the sweep's thread count); peak RSS = the training process's "
                 "resident peak over that epoch (GPU MiB*: NVML whole-GPU memory at its end, unverified).")


def render_results(results: Dict, pivot: bool = False, columns: str = "default") -> str:
    """The table(s), their footnotes, then what was timed.

    Parameters:
        results: a results document.
        pivot: also the side-by-side throughput table first (``compare``).
        columns: ``default`` (tables within :data:`TERMINAL_WIDTH` characters) or ``all``.
    """
    parts = []
    if pivot:
        parts += ["Throughput, images/s ±95% CI (speedup vs mxnet-hybrid fp32, same model/size/batch/mode):",
                  throughput_pivot(results["rows"], width=TERMINAL_WIDTH if columns == "default" else None), ""]
    footnotes = Footnotes()
    parts += [results_table(results["rows"], footnotes=footnotes, columns=columns), ""]
    if columns == "default":
        parts += [DEFAULT_COLUMNS_NOTE, ""]
    if footnotes.lines():
        parts += footnotes.lines() + [""]
    if results.get("training"):
        parts += ["Training (from each run's history):", training_table(results["training"], columns=columns),
                  TRAINING_NOTE, ""]
    parts += results_notes(results)
    if results.get("recommendations"):
        parts += ["", "Recommendation (fastest within the accuracy budget):", recommendation_table(results), ""]
    return "\n".join(parts)


def recommendation_table(results: Dict) -> str:
    """The results' recommendations (``compare``) as a table with its one-line note under it."""
    from vggbench.bench.recommend import recommendation_lines, recommendation_note

    recommendations = results["recommendations"]
    return "\n".join([tabulate(recommendation_lines(recommendations), headers="keys", tablefmt="github",
                                disable_numparse=True), recommendation_note(recommendations)])


def csv_text(rows: Sequence[Row]) -> str:
    """All keys of the rows' JSON form as columns (lists and dicts as JSON text).

    Parameters:
        rows: result rows.
    """
    rows = [row.to_json() for row in rows]
    keys = list(ROW_KEYS) + sorted({key for row in rows for key in row} - set(ROW_KEYS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: json.dumps(row[key]) if isinstance(row.get(key), (dict, list)) else row.get(key)
                         for key in keys})
    return buffer.getvalue()


def markdown_report(results: Dict) -> str:
    """The side-by-side table, every row, footnotes and notes as one Markdown document."""
    footnotes = Footnotes()
    lines = ["# vggbench results", "", "## Throughput side by side", "",
             "images/s ±95% CI (speedup vs mxnet-hybrid fp32, same model/size/batch/mode)", "",
             throughput_pivot(results["rows"]), "", "## All rows", "",
             results_table(results["rows"], footnotes=footnotes), ""]
    lines += [f"{line}  " for line in footnotes.lines()]
    if results.get("training"):
        lines += ["", "## Training", "", training_table(results["training"]), "", TRAINING_NOTE]
    if results.get("recommendations"):
        lines += ["", "## Recommendation", "", recommendation_table(results)]
    lines += ["", "## What was timed", ""]
    lines += [f"- {note.strip()}" for note in results_notes(results)]
    return "\n".join(lines) + "\n"


def throughput_png(rows: Sequence[Row], mode: Optional[str] = None,
                   recommendations: Optional[Sequence[Dict]] = None) -> bytes:
    """Throughput vs batch size with 95% CI error bars, one line per (model,) backend + precision,
    one panel per input size; returns the PNG bytes.

    Parameters:
        rows: result rows.
        mode: which mode to plot (default end-to-end when present).
        recommendations: ``compare``'s recommendations: each recommended point is ringed and
            labelled with its backend and precision.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.ok]
    if not ok:
        raise VggbenchError("nothing to plot: no row was measured (all unavailable or errors)")
    modes = {r.mode for r in ok}
    mode = mode or (MODE_END_TO_END if MODE_END_TO_END in modes else sorted(modes)[0])
    ok = [r for r in ok if r.mode == mode]
    sizes = sorted({r.input_size for r in ok})
    with_model = _multi(ok, "model") or _multi(ok, "width_ratio")
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        lines: Dict[str, List[tuple]] = {}
        for row in ok:
            if row.input_size != size:
                continue
            label = f"{row.backend} {row.precision}"
            if with_model:
                label = f"{row.model} ÷{row.width_ratio:g} " + label
            low = row.images_per_s_ci_low
            high = row.images_per_s_ci_high
            value = row.images_per_s
            lines.setdefault(label, []).append((row.batch_size, value, value - low if low is not None else 0.0,
                                                high - value if high is not None else 0.0))
        batches = sorted({p[0] for points in lines.values() for p in points})
        for label, points in lines.items():
            points.sort()
            ax.errorbar([p[0] for p in points], [p[1] for p in points],
                        yerr=[[p[2] for p in points], [p[3] for p in points]], fmt="o-", capsize=3, label=label)
        for item in recommendations or ():
            if item.get("backend") and item["mode"] == mode and item["input_size"] == size:
                ax.plot([item["batch_size"]], [item["images_per_s"]], "o", markersize=14, markerfacecolor="none",
                        markeredgecolor="black", markeredgewidth=1.5)
                ax.annotate(f"deploy: {item['backend']} {item['precision']}", (item["batch_size"], item["images_per_s"]),
                            textcoords="offset points", xytext=(0, 10), ha="center", fontsize="x-small")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches)
        ax.set_xticklabels([str(b) for b in batches])
        _throughput_axes(ax, "batch size", f"input {size}x{size}", "small")
    return _png(fig, f"Throughput vs batch size ({mode})")


def memory_scatter_png(rows: Sequence[Row], mode: Optional[str] = None) -> bytes:
    """Throughput against memory, one panel per batch size, one point per (model,) backend x
    precision: images/s (median, 95% CI bar) over the worker's peak resident memory during the
    timed rounds above its idle self. Up and left is better: what a memory-bound box can afford.

    Parameters:
        rows: result rows (those without a memory reading are left out).
        mode: which mode to plot (default end-to-end when present).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.ok and r.memory_peak_rss_bytes is not None]
    if not ok:
        raise VggbenchError("nothing to plot against memory: no measured row has a memory reading "
                            "(results written before memory was measured?)")
    modes = {r.mode for r in ok}
    mode = mode or (MODE_END_TO_END if MODE_END_TO_END in modes else sorted(modes)[0])
    ok = [r for r in ok if r.mode == mode]
    batches = sorted({r.batch_size for r in ok})
    with_model = _multi(ok, "model") or _multi(ok, "width_ratio") or _multi(ok, "input_size")
    fig, axes = plt.subplots(1, len(batches), figsize=(5 * len(batches), 4.2), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        for row in (r for r in ok if r.batch_size == batch):
            label = f"{row.backend} {row.precision}"
            if with_model:
                label = f"{row.model} {row.input_size} ÷{row.width_ratio:g} " + label
            value, low, high = row.images_per_s, row.images_per_s_ci_low, row.images_per_s_ci_high
            ax.errorbar([row.memory_peak_rss_bytes / 2 ** 20], [value], fmt="o", capsize=3, label=label,
                        yerr=[[value - low if low is not None else 0.0], [high - value if high is not None else 0.0]])
        _throughput_axes(ax, "peak resident memory over the idle worker (MiB)", f"batch {batch}", "x-small")
    return _png(fig, f"Throughput vs memory ({mode})")


def _throughput_axes(ax, xlabel: str, title: str, legend_size: str) -> None:
    """Labels, grid and legend shared by the throughput plots (y: images/s with its 95% CI)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images/s (median, 95% CI)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=legend_size)


def _png(fig, title: str) -> bytes:
    """The figure under ``title`` as PNG bytes (100 dpi); the figure is closed."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()





def accuracy_curves_png(labels: Dict[str, str], histories: Dict[str, List[Dict]], title: str = "") -> bytes:
    """Test accuracy of several runs on one figure, against epochs (left) and against training
    seconds (right, where the time to an accuracy reads off); returns PNG bytes.

    Parameters:
        labels: run dir -> legend label.
        histories: run dir -> ``[{"epoch", "test_accuracy", "seconds"}, ...]`` (``seconds``: that
            epoch's training time; the right panel sums them).
        title: the figure's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run_dir, label in labels.items():
        points = histories.get(run_dir) or []
        accuracy = [100 * p["test_accuracy"] for p in points]
        by_epoch.plot([p["epoch"] for p in points], accuracy, "o-", markersize=3, label=label)
        elapsed, total = [], 0.0
        for p in points:
            total += float(p.get("seconds") or 0.0)
            elapsed.append(total / 60)
        by_time.plot(elapsed, accuracy, "o-", markersize=3, label=label)
    by_epoch.set(xlabel="epoch", ylabel="test accuracy (%)")
    by_time.set(xlabel="training time (min, evaluation excluded)", ylabel="test accuracy (%)")
    for axes in (by_epoch, by_time):
        axes.grid(True, alpha=0.3)
    by_epoch.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


_STOPPED = {"plateau": "plateau", "max_epochs": "max epochs", "epochs": "fixed epochs"}


def _minutes_cell(seconds: Optional[float]) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f}"


def exercises_markdown(published: Dict[str, Any]) -> str:
    """The exercises' page: one table per exercise (one line per run: recipe, size, cost, accuracy
    at its plateau, epochs, why it stopped, time to the exercise's common accuracy, speed per
    backend), the settings every run shared, and each exercise's plot.

    Parameters:
        published: from :func:`vggbench.workflows.exercises`.
    """
    results = published["results"]
    ok = [r for r in results["rows"] if r.ok]
    backends = list(dict.fromkeys(r.backend for r in ok))
    env = results.get("environment", {})
    bench = results["settings"]
    train = published.get("settings", {})
    cell = (f"batch {', '.join(map(str, bench.get('batch_sizes', [])))}, "
            f"{', '.join(MODE_SHORT.get(m, m) for m in bench.get('modes', []))}, {bench.get('threads')} threads")
    lines = ["# The lesson's exercises, measured", "",
             f"Measured {env.get('timestamp', '?')} on {env.get('cpu', '?')} ({env.get('cores', '?')} cores). "
             f"Every model trained with its own lesson's recipe on the same fixed {train.get('train_limit') or 60000}"
             f"-image training subset, {100 * train.get('holdout', 0):g}% of it held out, until its held-out accuracy "
             f"had not improved by more than {100 * train.get('min_delta', 0):g} points for {train.get('patience')} "
             f"epochs (at most {train.get('max_epochs')} epochs); test accuracy on "
             f"{bench.get('accuracy_limit') or TEST_IMAGES} test images after the last epoch. The runs trained "
             f"for {_total_train_s(published) / 60:.0f} min in all (evaluation excluded: the tables' 'train min'); "
             f"this command's own wall time, {published.get('training_wall_s', 0) / 60:.0f} min, covers only the runs "
             f"it trained or resumed (finished ones are reused). Images/s at {cell} "
             f"(median ±95% CI, ~ = did not reach ±2%). {bench.get('timing_policy', '')}.", ""]
    if published.get("note"):
        lines += [published["note"], ""]
    for exercise in published["exercises"]:
        common = exercise.get("common_accuracy")
        lines += [f"## {exercise['title']}", ""]
        table = []
        for run in exercise["runs"]:
            info = next((m for m in bench["models"] if m["run_dir"] == run["run_dir"]), {})
            row = {"model": run["model"], "recipe": run["recipe"], "size": run["input_size"],
                   "width ÷": f"{run['width_ratio']:g}", "params": f"{info.get('params', 0):,}",
                   "GFLOPs/image": f"{info.get('gflops_per_image', 0):.3f}",
                   "test acc %": _pct(run["test_accuracy"]), "best held-out %": _pct(run.get("best_holdout_accuracy")),
                   "epochs (to plateau)": f"{run['epochs_trained']} ({run.get('best_epoch') or '-'})",
                   "stopped": _STOPPED.get(run.get("stop_reason"), run.get("stop_reason") or "?"),
                   "train min": f"{run['train_seconds'] / 60:.1f}",
                   f"min to {_pct(common) or '-'}%": _minutes_cell(run.get("seconds_to_common"))}
            for backend in backends:
                found = next((r for r in ok if r.run_dir == run["run_dir"] and r.backend == backend), None)
                row[f"{backend} img/s"] = images_per_s_cell(found) if found else "-"
            table.append(row)
        lines += [tabulate(table, headers="keys", tablefmt="github", disable_numparse=True), ""]
        if common is not None:
            lines += [f"Common accuracy {_pct(common)}%: the lowest final test accuracy among the runs that learned "
                      f"(best test accuracy >= 50%); 'min to' is the training time (evaluation excluded) until a run's "
                      f"test accuracy first reached it.", ""]
        lines += [f"![{exercise['name']}: test accuracy against epochs and training time]({exercise['name']}.png)", ""]
    return "\n".join(lines)


def _total_train_s(published: Dict[str, Any]) -> float:
    """Training seconds of every run on the exercises page, each run once."""
    seconds = {run["run_dir"]: run["train_seconds"] for exercise in published["exercises"] for run in exercise["runs"]}
    return float(sum(seconds.values()))


def reproduction_markdown(published: Dict[str, Any]) -> str:
    """The reproduction page: the published test accuracy per epoch beside ours, and the recipe.

    Parameters:
        published: from :func:`vggbench.workflows.reproduce`.
    """
    recipe, source = published["recipe"], published.get("recipe_source") or {}
    theirs = published.get("published_test_accuracy") or []
    rows = []
    for index, ours in enumerate(published["ours"]):
        mine, their = ours["test_accuracy"], theirs[index] if index < len(theirs) else None
        rows.append({"epoch": ours["epoch"], "published test acc %": _pct(their), "ours test acc %": _pct(mine),
                     "gap (points)": None if their is None else f"{100 * (mine - their):+.2f}",
                     "our train images": ours["train_images"], "our test images": ours["test_images"],
                     "our epoch s": f"{ours['seconds']:.0f}"})
    device = published.get("device") or {}
    lines = ["# The published narrow VGG-11 result, reproduced", "",
             f"Source: {source.get('source', '?')}.", "",
             f"Recipe ({source.get('name', '?')}): {recipe['model']} at width 1/{recipe['width_ratio']:g} with a "
             f"{recipe['dense_units']}-wide dense head, {recipe['input_size']}x{recipe['input_size']}, "
             f"{recipe['optimizer']} lr {recipe['lr']:g}, batch {recipe['batch_size']}, init {recipe['init']}, "
             f"{recipe['epochs']} epochs over {recipe.get('train_limit') or 60000} training images. Trained on "
             f"{device.get('cpu', '?')} ({', '.join(device.get('contexts', []))}), "
             f"{(published.get('timestamps') or {}).get('started', '?')}.", "",
             tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True), ""]
    shortened = bool(recipe.get("train_limit")) or len(published["ours"]) < len(theirs)
    if shortened:
        lines += [f"Shortened run: {recipe.get('train_limit') or 60000} training images per epoch and "
                  f"{len(published['ours'])} epoch(s) instead of 60,000 and {len(theirs)}: its accuracy is not "
                  f"comparable with the published one (the gap column compares unequal training); it measures the "
                  f"time per epoch here.", ""]
    elif published["ours"] and theirs:
        mine, their = published["ours"][-1]["test_accuracy"], theirs[len(published["ours"]) - 1]
        total_s = sum(ours["seconds"] for ours in published["ours"])
        lines += [f"After {len(published['ours'])} epochs: ours {_pct(mine)}%, published {_pct(their)}%, a gap of "
                  f"{100 * (mine - their):+.2f} points; training took {total_s / 60:.0f} min here "
                  f"({len(published['ours'])} epochs, evaluation excluded).", ""]
    if published.get("same_as_published"):
        lines += ["## What is the same", ""] + [f"- {item}" for item in published["same_as_published"]] + [""]
    if published.get("unlike_published"):
        lines += ["## What differs (and may explain a gap)", ""] + [
            f"- {item}" for item in published["unlike_published"]] + [""]
    return "\n".join(lines)
