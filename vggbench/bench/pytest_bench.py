"""Read pytest-benchmark JSON (``--benchmark-json``): rows, the bench table, and the ratio gate.

The suite in ``benchmarks/`` stores what each benchmark measured in ``extra_info`` (``kind``,
``model``, ``width_ratio``, ``input_size``, ``backend``, ``precision``, ``batch_size``,
``threads``, ``images_per_round``). This module turns a saved file into the same plain-dict rows
the rest of vggbench prints with :func:`vggbench.bench.report.format_table`, and checks *ratios* between
benchmarks of the same run against floors.

Why ratios: on a shared or throttled machine every absolute time moves with the load, but two
backends timed one after the other on the same model move together, so "ort-cpu is at least
1.2x faster than mxnet-hybrid" stays true where "ort-cpu takes under 30 ms" does not. Absolute
comparison stays available through pytest-benchmark itself (``--benchmark-compare``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from vggbench.errors import VggbenchError

STATS = ("median", "min", "mean")
# The settings that must be equal for two benchmarks to be compared (besides the selectors).
DEFAULT_MATCH = ("kind", "model", "width_ratio", "input_size", "batch_size", "threads")
INFO_KEYS = ("kind", "model", "width_ratio", "input_size", "backend", "precision", "batch_size",
             "threads", "images_per_round")


# --- reading ---------------------------------------------------------------------------------------

# A pytest-benchmark file of the benchmarks/ suite is a few MB (every round's time is in it).
MAX_BENCHMARK_JSON_BYTES = 256 << 20


def read_benchmark_json(path) -> Dict[str, Any]:
    """Load one ``--benchmark-json`` file, with a one-line error for anything else."""
    from vggbench.artifacts.reader import read_json

    path = Path(path)
    document = read_json(path, MAX_BENCHMARK_JSON_BYTES, "pytest-benchmark file",
                         fix=f"write it with `pytest benchmarks --benchmark-json={path}`")
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise VggbenchError(f"{path}: not a pytest-benchmark file (no 'benchmarks' list); "
                            f"pass the file written by --benchmark-json or --benchmark-autosave")
    return document


def benchmark_rows(document: Mapping[str, Any], source: str = "") -> List[Dict[str, Any]]:
    """One flat row per benchmark: name, extra_info fields, times in seconds, rounds, warmup."""
    rows = []
    for bench in document["benchmarks"]:
        stats = bench.get("stats") or {}
        info = bench.get("extra_info") or {}
        if "median" not in stats:
            raise VggbenchError(f"{source or 'results'}: benchmark {bench.get('name')!r} has no stats; "
                                f"the file is truncated or not from pytest-benchmark")
        row: Dict[str, Any] = {"name": bench.get("name"), "fullname": bench.get("fullname"),
                               "group": bench.get("group"), "file": source}
        row.update({key: info.get(key) for key in INFO_KEYS})
        row.update({key: value for key, value in info.items() if key not in row})
        for key in ("median", "min", "mean", "max", "stddev", "iqr"):
            row[f"{key}_s"] = stats.get(key)
        row["rounds"] = stats.get("rounds")
        row["warmup"] = bool((bench.get("options") or {}).get("warmup"))
        images = row.get("images_per_round")
        row["images_per_s"] = images / stats["median"] if images and stats["median"] else None
        paired = row.pop("paired_rows", None)
        rows.append(row)
        for entry in paired or ():  # one row per backend of an interleaved sweep (benchmarks/test_paired.py)
            rows.append(dict(row, name=f"{row['name']}[{entry['backend']}-{entry['precision']}]", **entry,
                             median_s=None, min_s=None, mean_s=None, paired=True))
    return rows


def load_rows(paths: Iterable) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for path in paths:
        rows.extend(benchmark_rows(read_benchmark_json(path), str(path)))
    return rows


# --- the table -------------------------------------------------------------------------------------

def _ms(key: str):
    return lambda row: None if row.get(key) is None else round(row[key] * 1e3, 2)


def table_columns(with_file: bool = False) -> List[Tuple[str, Any]]:
    columns: List[Tuple[str, Any]] = [("file", "file")] if with_file else []
    return columns + [
        ("name", "name"), ("model", lambda r: _model_label(r)), ("size", "input_size"),
        ("backend", "backend"), ("precision", "precision"), ("batch", "batch_size"),
        ("median ms", _ms("median_s")), ("IQR ms", _ms("iqr_s")), ("min ms", _ms("min_s")),
        ("images/s", lambda r: None if r.get("images_per_s") is None else f"{r['images_per_s']:.1f}"),
        ("rounds", "rounds"),
    ]


def _model_label(row: Mapping[str, Any]) -> Optional[str]:
    model, width = row.get("model"), row.get("width_ratio")
    if model is None:
        return None
    return f"{model}/{width:g}" if width not in (None, 1, 1.0) else model


def bench_table(paths: Sequence, json_path: Optional[str] = None, tablefmt: str = "github",
                out=None) -> List[Dict[str, Any]]:
    """Print saved pytest-benchmark results in vggbench's table style (``vggbench bench-table``)."""
    from vggbench.bench.report import format_table

    out = out or sys.stdout
    if not paths:
        raise VggbenchError("give at least one pytest-benchmark JSON file")
    rows = load_rows(paths)
    if json_path == "-":
        json.dump(rows, out, indent=2)
        out.write("\n")
        return rows
    print(format_table(rows, table_columns(with_file=len(paths) > 1), tablefmt=tablefmt), file=out)
    cold = sorted({row["name"] for row in rows if not row["warmup"]})
    print(f"\nmedian/IQR/min per round; images/s = images per round / median; model/N = width ratio N. "
          f"{len(rows)} benchmark(s) from {len(paths)} file(s).", file=out)
    if cold:
        print(f"note: run without warm-up (--benchmark-warmup=on): {', '.join(cold)}", file=out)
    if json_path:
        from vggbench.artifacts.io import write_json_atomic

        write_json_atomic(json_path, rows)
    return rows


# --- the ratio gate --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RatioFloor:
    """``baseline time / faster time >= floor`` for every matching pair in one results file.

    ``faster`` and ``baseline`` select benchmarks by ``extra_info`` fields; two selected
    benchmarks form a pair when they agree on every field in ``match``. ``required`` floors fail
    when no pair is found; the others (e.g. INT8, which needs ``vggbench.export.variants``) are skipped.
    ``floor=None`` only reports the ratio (status ``info``): for ratios too noisy to gate.
    """

    name: str
    faster: Mapping[str, Any]
    baseline: Mapping[str, Any]
    floor: Optional[float]
    why: str
    required: bool = True
    match: Tuple[str, ...] = DEFAULT_MATCH


def _selector_label(selector: Mapping[str, Any]) -> str:
    return " ".join(str(value) for value in selector.values())


def _selected(row: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    return all(row.get(key) == value for key, value in selector.items())


def ratio_checks(rows: Sequence[Mapping[str, Any]], floors: Sequence[RatioFloor],
                 stat: str = "median") -> List[Dict[str, Any]]:
    """One check per (floor, pair of benchmarks): ratio, floor and status pass/FAIL/skipped."""
    if stat not in STATS:
        raise VggbenchError(f"unknown statistic {stat!r}; choose from {', '.join(STATS)}")
    checks = []
    for floor in floors:
        paired = paired_check(rows, floor)
        if paired:
            checks.append(paired)
            continue
        fast = [row for row in rows if _selected(row, floor.faster)]
        slow = [row for row in rows if _selected(row, floor.baseline)]
        found = False
        for fast_row in fast:
            key = tuple(fast_row.get(field) for field in floor.match) + (fast_row.get("file"),)
            partners = [row for row in slow
                        if tuple(row.get(field) for field in floor.match) + (row.get("file"),) == key]
            if len(partners) > 1:
                raise VggbenchError(f"ratio {floor.name!r}: {fast_row['name']} matches {len(partners)} baselines "
                                    f"({', '.join(r['name'] for r in partners)}); add a field to its match")
            if not partners:
                continue
            found = True
            base_row = partners[0]
            fast_s, base_s = fast_row[f"{stat}_s"], base_row[f"{stat}_s"]
            ratio = base_s / fast_s if fast_s else float("inf")
            checks.append({"ratio": floor.name, "faster": fast_row["name"], "baseline": base_row["name"],
                           "model": _model_label(fast_row), "input_size": fast_row.get("input_size"),
                           "batch_size": fast_row.get("batch_size"), "threads": fast_row.get("threads"),
                           "stat": stat, "faster_ms": fast_s * 1e3, "baseline_ms": base_s * 1e3,
                           "value": ratio, "floor": floor.floor,
                           "status": _unpaired_status(ratio, floor.floor, fast_row, base_row)})
        if not found:
            if not fast or not slow:
                missing = _selector_label(floor.faster if not fast else floor.baseline)
                reason = f"no {missing} benchmark in the results"
                if not floor.required:
                    reason += " (optional; pytest's skip reasons say why it did not run)"
            else:
                reason = (f"no {_selector_label(floor.faster)} and {_selector_label(floor.baseline)} "
                          f"benchmarks agree on {', '.join(floor.match)}")
            checks.append({"ratio": floor.name, "floor": floor.floor, "stat": stat,
                           "status": "FAIL" if floor.required and floor.floor is not None else "skipped",
                           "reason": reason})
    return checks


def _unpaired_status(ratio: float, floor: Optional[float], fast_row: Mapping[str, Any],
                     base_row: Mapping[str, Any]) -> str:
    """pass / FAIL for two separately timed benchmarks; under the floor while either ran on a busy
    machine (its ``machine_busy`` extra_info) is ``unclear (machine busy)``: a neighbour holding a
    core decides such a ratio, not the code."""
    if floor is None:
        return "info"
    if ratio >= floor:
        return "pass"
    return "unclear (machine busy)" if fast_row.get("machine_busy") or base_row.get("machine_busy") else "FAIL"


def paired_check(rows: Sequence[Mapping[str, Any]], floor: RatioFloor) -> Optional[Dict[str, Any]]:
    """The floor checked on interleaved rounds (``kind=paired`` rows), or None when there are none.

    The ratio is the median of the per-round ratios of the two rows and its bootstrap 95% CI
    (:func:`vggbench.bench.stats.summarize_speedup`), the same statistics ``vggbench compare`` prints.
    FAIL when the whole interval lies under the floor (clearly slower); a median under the floor
    whose interval reaches it is ``pass (unclear)``, not a failure: the noise cannot tell.

    Parameters:
        rows: rows from :func:`benchmark_rows`.
        floor: the floor; its selectors are applied with ``kind`` replaced by ``paired``.
    """
    from vggbench.bench.stats import summarize_speedup

    def pick(selector):
        wanted = dict(selector, kind="paired")
        return [row for row in rows if row.get("paired") and _selected(row, wanted)]

    for fast_row in pick(floor.faster):
        key = tuple(fast_row.get(field) for field in floor.match) + (fast_row.get("file"),)
        partners = [row for row in pick(floor.baseline)
                    if tuple(row.get(field) for field in floor.match) + (row.get("file"),) == key]
        if not partners:
            continue
        base_row = partners[0]
        speedup = summarize_speedup(fast_row["round_images_per_s"], base_row["round_images_per_s"])
        value, low, high = speedup["speedup"], speedup["speedup_ci_low"], speedup["speedup_ci_high"]
        if floor.floor is None:
            status = "info"
        elif high is not None and high < floor.floor:
            status = "FAIL"
        else:
            status = "pass" if value >= floor.floor else "pass (unclear)"
        return {"ratio": floor.name, "faster": fast_row["name"], "baseline": base_row["name"],
                "model": _model_label(fast_row), "input_size": fast_row.get("input_size"),
                "batch_size": fast_row.get("batch_size"), "threads": fast_row.get("threads"),
                "stat": f"paired rounds ({speedup['speedup_pairs']})", "value": value, "ci_low": low,
                "ci_high": high, "floor": floor.floor, "status": status}
    return None


def gate_table(checks: Sequence[Mapping[str, Any]], tablefmt: str = "github") -> str:
    from vggbench.bench.report import format_table

    columns = [("ratio", "ratio"), ("model", "model"), ("size", "input_size"), ("batch", "batch_size"),
               ("threads", "threads"),
               ("faster ms", lambda c: None if "faster_ms" not in c else f"{c['faster_ms']:.2f}"),
               ("baseline ms", lambda c: None if "baseline_ms" not in c else f"{c['baseline_ms']:.2f}"),
               ("x faster", lambda c: None if "value" not in c else f"{c['value']:.2f}x"),
               ("95% CI", lambda c: None if c.get("ci_low") is None else f"{c['ci_low']:.2f}-{c['ci_high']:.2f}"),
               ("floor", lambda c: None if c["floor"] is None else f"{c['floor']:.2f}x"), ("result", "status")]
    return format_table(checks, columns, tablefmt=tablefmt)


def failure_lines(checks: Sequence[Mapping[str, Any]]) -> List[str]:
    lines = []
    for check in checks:
        if check["status"] != "FAIL":
            continue
        if "ci_high" in check:
            lines.append(f"FAIL {check['ratio']}: {check['model']} @{check['input_size']} batch "
                         f"{check['batch_size']}: {check['value']:.2f}x, 95% CI {check['ci_low']:.2f}-"
                         f"{check['ci_high']:.2f}x, all under the floor {check['floor']:.2f}x ({check['stat']})")
        elif "value" in check:
            lines.append(f"FAIL {check['ratio']}: {check['model']} @{check['input_size']} batch "
                         f"{check['batch_size']}: {check['value']:.2f}x < floor {check['floor']:.2f}x "
                         f"({check['faster']} {check['faster_ms']:.2f} ms vs {check['baseline']} "
                         f"{check['baseline_ms']:.2f} ms, {check['stat']})")
        else:
            lines.append(f"FAIL {check['ratio']}: {check['reason']}")
    return lines


def run_gate(paths: Sequence, floors: Sequence[RatioFloor], stat: str = "median",
             out=None) -> int:
    """Print the ratio table and one line per failure; return the exit code (0 pass, 1 fail)."""
    out = out or sys.stdout
    checks, cold = [], []
    for path in paths:
        rows = load_rows([path])
        if not rows:
            raise VggbenchError(f"{path}: holds no benchmarks; did `pytest benchmarks` run anything?")
        checks.extend(ratio_checks(rows, floors, stat))
        cold += [row["name"] for row in rows if not row["warmup"]]
    print(gate_table(checks), file=out)
    if cold:
        print(f"note: {len(cold)} benchmark(s) ran without warm-up (use --benchmark-warmup=on): "
              f"{', '.join(cold)}", file=out)
    for check in checks:
        if check["status"] == "skipped":
            print(f"skipped {check['ratio']}: {check['reason']}", file=out)
        elif check["status"] == "unclear (machine busy)":
            print(f"unclear {check['ratio']}: {check['value']:.2f}x < floor {check['floor']:.2f}x, measured while "
                  f"another process held CPU time; not judged (rerun on a quiet machine)", file=out)
    failures = failure_lines(checks)
    for line in failures:
        print(line, file=out)
    passed = sum(check["status"].startswith("pass") for check in checks)
    print(f"ratio gate: {passed} passed, {len(failures)} failed, "
          f"{sum(c['status'].startswith('unclear') for c in checks)} unclear (busy machine), "
          f"{sum(c['status'] == 'skipped' for c in checks)} skipped, "
          f"{sum(c['status'] == 'info' for c in checks)} reported without a floor ({stat} times)", file=out)
    return 1 if failures else 0
