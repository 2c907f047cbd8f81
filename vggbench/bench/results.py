"""Results documents: schema, modes, speedups, accuracy deltas, JSON I/O of the rows.

A results document is ``{"schema", "environment", "settings", "rows"}``; in memory every row is a
:class:`Row`, in JSON an object with the keys of :data:`ROW_KEYS` (``None`` where a value does not
apply), the previous release's form (:meth:`Row.to_json`, :meth:`Row.from_json`). Rows keep their raw
per-round throughputs (``round_images_per_s``), so every median, confidence interval and paired
speedup can be rebuilt from the JSON alone (``vggbench compare --from``).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vggbench.artifacts.io import write_json_atomic
from vggbench.bench.row import OPTIONAL_ROW_KEYS, ROW_KEYS, Row, Status, parse_status, status_text
from vggbench.data import TEST_IMAGES
from vggbench.errors import EXIT_MEASUREMENT_FAILED, EXIT_OK, VggbenchError
from vggbench.runtimes.backends import BASELINE_BACKEND, MXNET_REFERENCE_BACKENDS

SCHEMA = "vggbench.results/2"
READABLE_SCHEMAS = ("vggbench.results/1", SCHEMA)
MAX_RESULTS_BYTES = 256 << 20  # a results file larger than this is not one we wrote

MODE_END_TO_END = "end-to-end (host numpy in/out)"
MODE_COMPUTE_ONLY = "compute-only (input pre-staged on device)"
MODES = {"end-to-end": MODE_END_TO_END, "compute-only": MODE_COMPUTE_ONLY}
MODE_SHORT = {MODE_END_TO_END: "e2e", MODE_COMPUTE_ONLY: "compute"}

__all__ = ["MODES", "MODE_COMPUTE_ONLY", "MODE_END_TO_END", "MODE_SHORT", "OPTIONAL_ROW_KEYS", "READABLE_SCHEMAS",
           "ROW_KEYS", "Row", "SCHEMA", "Status", "add_accuracy_deltas", "add_speedups", "exit_code",
           "filter_rows", "load_results", "new_row", "parse_status", "status_text", "summary_line", "write_results"]


def new_row(info: Dict[str, Any], backend: str, device: str, precision: str, status: Status = Status.OK,
            reason: Optional[str] = None, batch_size: Optional[int] = None, mode: Optional[str] = None) -> Row:
    """A row with the run's model facts filled in.

    Parameters:
        info: the run dir's facts (``bench.run_info``): model, input_size, width_ratio,
            gflops_per_image, run_dir, variant_gates.
        backend, device, precision: what the row measured.
        status, reason: its :class:`Status` and why (None for ok).
        batch_size, mode: the timed cell (None for rows about a whole backend/precision).
    """
    row = Row(model=info["model"], input_size=info["input_size"], width_ratio=info["width_ratio"], backend=backend,
              device=device, precision=precision, batch_size=batch_size, mode=mode, status=status, reason=reason,
              gflops_per_image=info.get("gflops_per_image"), run_dir=info["run_dir"])
    gate = info.get("variant_gates", {}).get(precision)
    if gate:
        row.update(variant_flagged=gate["flagged"], variant_accuracy_drop_points=gate["accuracy_drop_points"])
    return row


def add_accuracy_deltas(rows: List[Row], run_infos: Dict[str, Dict[str, Any]],
                        full_test_set: bool) -> None:
    """Fill ``accuracy_delta_vs_mxnet_points`` against MXNet fp32 on the same images (this sweep),
    or the manifest's MXNet test accuracy when no MXNet backend ran and the full test set was used.

    Parameters:
        rows: the sweep's rows (changed in place).
        run_infos: run dir -> its facts (``manifest_test_accuracy``, ``manifest_test_images``).
        full_test_set: whether the accuracy pass used all 10,000 test images.
    """
    for run_dir, info in run_infos.items():
        own = [r for r in rows if r.run_dir == run_dir]
        reference, label = None, None
        for backend in MXNET_REFERENCE_BACKENDS:
            found = [r.top1_accuracy for r in own if r.backend == backend and r.precision == "fp32"
                     and r.top1_accuracy is not None]
            if found:
                reference, label = found[0], f"{backend} fp32, same images"
                break
        if reference is None and full_test_set and info.get("manifest_test_accuracy") is not None \
                and (info.get("manifest_test_images") or 0) >= TEST_IMAGES:
            reference, label = info["manifest_test_accuracy"], "manifest test_accuracy (MXNet, full test set)"
        for row in own:
            if reference is not None and row.top1_accuracy is not None:
                row.accuracy_delta_vs_mxnet_points = 100.0 * (row.top1_accuracy - reference)
                row.accuracy_reference = label


def _cell_key(row: Row) -> tuple:
    return (row.run_dir, row.model, row.input_size, row.width_ratio, row.batch_size, row.mode)


def add_speedups(rows: List[Row], seed: int = 0) -> None:
    """``speedup_vs_mxnet_hybrid`` with its 95% CI, over the :data:`~vggbench.runtimes.backends.BASELINE_BACKEND`
    (``mxnet-hybrid``, which the field is named after) fp32 row of the same run dir, batch size and mode.

    When both rows carry interleaved rounds (round i of each timed in the same cycle, A B A B ...),
    the speedup is the median of the per-round ratios and its CI a bootstrap over those pairs
    (:func:`vggbench.bench.stats.summarize_speedup`), so machine drift lands on both sides; otherwise
    (rows from older files) it is the ratio of the medians, without CI.
    ``speedup_clear`` is False when the CI includes 1.00 ("no clear difference").

    Parameters:
        rows: rows to fill in place.
        seed: seed of the bootstrap resampling.
    """
    from vggbench.bench import stats

    base = {_cell_key(r): r for r in rows
            if r.backend == BASELINE_BACKEND and r.precision == "fp32" and r.ok}
    for row in rows:
        reference = base.get(_cell_key(row))
        if not row.ok or not reference or not reference.images_per_s:
            continue
        mine, theirs = row.round_images_per_s or [], reference.round_images_per_s or []
        if row is reference:
            row.update(speedup_vs_mxnet_hybrid=1.0, speedup_ci_low=None, speedup_ci_high=None, speedup_pairs=None,
                       speedup_clear=None)
        elif mine and theirs:
            fields = stats.summarize_speedup(mine, theirs, rng=np.random.default_rng(seed))
            row.update(speedup_vs_mxnet_hybrid=fields.pop("speedup"), **fields)
        else:
            row.update(speedup_vs_mxnet_hybrid=row.images_per_s / reference.images_per_s,
                       speedup_ci_low=None, speedup_ci_high=None, speedup_pairs=None, speedup_clear=None)


def exit_code(rows: Sequence[Row]) -> int:
    """The CLI's exit code for a finished sweep: 3 when any row failed while measuring, else 0.

    Unavailable rows of a default sweep are not failures (a backend this machine lacks); an
    explicitly requested unavailable backend is refused before measuring (exit 1).
    """
    return EXIT_MEASUREMENT_FAILED if any(r.status is Status.ERROR for r in rows) else EXIT_OK


def summary_line(rows: Sequence[Row]) -> str:
    """``N row(s) ok, best X img/s; error, unavailable row(s)`` for a progress line."""
    ok = [r for r in rows if r.ok]
    other = sorted({r.status.value for r in rows if not r.ok})
    best = max((r.images_per_s for r in ok), default=None)
    noisy = sum(1 for r in ok if r.noisy)
    text = f"{len(ok)} row(s) ok" + (f", best {best:.1f} img/s" if best else "")
    text += f", {noisy} noisy" if noisy else ""
    return text + (f"; {', '.join(other)} row(s)" if other else "")


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(path, results: Dict[str, Any]) -> None:
    """Write the results document atomically (``{"schema", "environment", "settings", "rows"}``;
    the rows as :meth:`Row.to_json`, a non-finite number as null).

    Parameters:
        path: the JSON file to write (its folder must exist).
        results: the document from ``bench.sweep`` or :func:`load_results`.
    """
    rows = [{key: _finite_or_none(value) for key, value in row.to_json().items()} for row in results["rows"]]
    write_json_atomic(path, dict(results, rows=rows))


# The row fields a report formats, by type (a newer writer's extra keys are left alone).
_ROW_TEXT = ("device", "precision", "mode", "noisy_reason", "stop_reason", "peak_kernel", "ceiling_source",
             "memory_peak_method", "gpu_memory_note", "energy_source", "energy_reason", "accuracy_reference",
             "busy_warning", "run_dir")
_ROW_COUNTS = ("input_size", "batch_size", "rounds", "calls", "warmup", "accuracy_images", "speedup_pairs", "threads",
               "load_inference_batch_size")
_ROW_FLAGS = ("noisy", "speedup_clear", "variant_flagged")
_ROW_OBJECTS = ("context", "runtime")
MAX_RESULT_ROWS = 1_000_000
MAX_ROUNDS_PER_ROW = 1_000_000


def _row_schema() -> Dict[str, Any]:
    from vggbench.artifacts.reader import Field, finite

    text, count = Field((str, type(None))), Field((int, type(None)), check=finite(0), wanted=">= 0")
    schema: Dict[str, Any] = {key: Field((str,), required=True) for key in ("model", "backend", "status")}
    schema.update({key: text for key in _ROW_TEXT})
    schema.update({key: count for key in _ROW_COUNTS})
    schema.update({key: Field((bool, type(None))) for key in _ROW_FLAGS})
    schema.update({key: Field((dict, type(None))) for key in _ROW_OBJECTS})
    schema["round_images_per_s"] = Field(
        (list, type(None)), check=lambda v: v is None or (len(v) <= MAX_ROUNDS_PER_ROW and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)),
        wanted=f"a list of at most {MAX_ROUNDS_PER_ROW} finite numbers")
    number = Field((int, float, type(None)), check=finite(), wanted="a finite number")
    schema.update({key: number for key in ROW_KEYS if key not in schema})
    return schema


def _read_results_file(path) -> Dict[str, Any]:
    """One results file, bounded and typed (:mod:`vggbench.artifacts.reader`): every row field a
    report formats has its type, or the file is refused in one line naming the row and key."""
    from vggbench.artifacts.reader import check_fields, check_list, read_json

    fix = "write it with `vggbench bench --json`"
    doc = read_json(path, MAX_RESULTS_BYTES, "results file", fix=fix)
    if not isinstance(doc, dict) or doc.get("schema") not in READABLE_SCHEMAS or not isinstance(doc.get("rows"), list):
        raise VggbenchError(f"{path}: not a vggbench results file (schema {SCHEMA!r} expected, "
                            f"got {doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r})")
    check_fields(doc, {"environment": ((dict,), False, None, ""), "settings": ((dict,), False, None, ""),
                       "training": ((list, type(None)), False, None, "")}, str(path), "", fix)
    check_list(doc["rows"], str(path), "'rows'", MAX_RESULT_ROWS, fix)
    schema = _row_schema()
    for index, row in enumerate(doc["rows"]):
        if not isinstance(row, dict):
            raise VggbenchError(f"{path}: row {index} is not a result row (needs model, backend and status)")
        check_fields(row, schema, str(path), f"'rows'[{index}].", fix)
    number = ((int, float, type(None)), False, lambda v: v is None or math.isfinite(v), "a finite number")
    training_schema = {key: number for key in ("train_images_per_s", "train_gflops_per_s", "pct_of_peak",
                                                "epoch", "threads", "batch_size")}
    training_schema.update({"model": ((str,), True, None, ""), "input_size": ((int,), True, None, ""),
                            "width_ratio": ((int, float), True, math.isfinite, "a finite number")})
    for index, row in enumerate(doc.get("training") or []):
        check_fields(row, training_schema, str(path), f"'training'[{index}].", fix)
    _check_environment(doc.get("environment") or {}, str(path), fix)
    return doc


def _check_environment(environment: Dict[str, Any], source: str, fix: str) -> None:
    """The environment fields the report and the ceilings read, typed (see :func:`_read_results_file`)."""
    from vggbench.artifacts.reader import check_fields

    optional = {"cpu": ((str, type(None)), False, None, ""), "cores": ((int, type(None)), False, None, ""),
                "gpus": ((list,), False, lambda v: all(isinstance(g, dict) and {"name", "driver"} <= set(g) for g in v),
                         "a list of objects with name and driver"),
                "cpu_flags": ((list,), False, None, "")}
    optional.update({key: ((dict, type(None)), False, None, "") for key in (
        "versions", "thread_env", "load_average_before", "load_average_after", "theoretical_peak",
        "gpu_theoretical_peak")})
    check_fields(environment, optional, source, "'environment'.", fix)
    number = ((int, float, type(None)), False, lambda v: v is None or math.isfinite(v), "a finite number")
    for key in ("theoretical_peak", "gpu_theoretical_peak"):
        peak = environment.get(key) or {}
        check_fields(peak, {"available": ((bool, type(None)), False, None, ""), "fp32_gflops": number,
                            "int8_gops": number, "precisions": ((dict, type(None)), False, None, ""),
                            "device": ((str, type(None)), False, None, "")}, source, f"'environment'.{key!r}.", fix)
        for precision, entry in (peak.get("precisions") or {}).items():
            check_fields(entry, {"gflops_per_s": number, "formula": ((str, type(None)), True, None, "")}, source,
                         f"'environment'.{key!r}.'precisions'[{precision!r}].", fix)


def load_results(paths: Sequence) -> Dict[str, Any]:
    """Read saved results files (``compare --from``) into one results document.

    Parameters:
        paths: results JSON files written by ``vggbench bench/compare --json``.
    """
    if not paths:
        raise VggbenchError("--from needs at least one results JSON file (written by `vggbench bench --json`)")
    from vggbench.bench.ceilings import apply_ceilings

    rows, environments, settings, training, ceilings = [], [], [], [], []
    for path in paths:
        doc = _read_results_file(path)
        file_rows = [Row.from_json(dict(row, source=str(path))) for row in doc["rows"]]
        if all(row.speedup_vs_mxnet_hybrid is None for row in file_rows):
            add_speedups(file_rows)
        file_training = [dict(row, source=str(path)) for row in doc.get("training") or [] if isinstance(row, dict)]
        # Every file's % of peak against its own machine's ceilings (files of the previous release
        # measured each row against its own runtime's GEMM).
        ceilings += apply_ceilings(file_rows, file_training, doc.get("environment", {}))
        rows += file_rows
        training += file_training
        environments.append(doc.get("environment", {}))
        settings.append(doc.get("settings", {}))
    merged_settings = dict(settings[0]) if len(settings) == 1 else {"from_settings": settings}
    merged_settings["from"] = [str(p) for p in paths]
    return {"schema": SCHEMA, "environment": environments[0], "environments": environments,
            "settings": merged_settings, "rows": rows, "training": training, "ceilings": ceilings}


def filter_rows(rows: Sequence[Row], models=None, sizes=None, backends=None) -> List[Row]:
    """The rows whose model, input size and backend are among the given ones (None = any)."""
    return [r for r in rows if (not models or r.model in models) and (not sizes or r.input_size in sizes)
            and (not backends or r.backend in backends)]
