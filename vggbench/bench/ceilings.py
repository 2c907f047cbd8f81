"""One ceiling per device and precision, so every row's % of peak is against the same number.

A row's own runtime's GEMM is not a ceiling: MXNet's ``nd.dot`` can be slower than MXNet's own
convolutions, and a measured GEMM can beat a theoretical peak computed at a nominal clock when the
core boosts. So for each (device, math precision) the ceiling is the highest of:

- the best GEMM measured in the sweep through *any* runtime on that device and precision
  (``peak_gflops_per_s``/``peak_kernel`` of its rows, and any ``peaks`` entries of the document);
- the theoretical peak at the highest clock the machine shows (the environment's
  ``theoretical_peak`` for the CPU, ``gpu_theoretical_peak`` for the GPU);
- as a last resort, the fastest row itself, named as such: a row above both says the clock or
  unit model underestimates this machine, and 100% is then the honest figure, not 170%.

Every inference row and every training row gets ``pct_of_peak`` = its GFLOP/s (GOP/s for int8)
over that one ceiling, so no row passes 100% and rows of different backends compare directly.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from vggbench.bench.row import Row

# Which arithmetic a row's precision runs: ``opt`` is the fp32 graph optimised offline.
MATH_PRECISION = {"fp32": "fp32", "opt": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16", "int8": "int8"}
CEILING_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "int8")

Key = Tuple[str, str]


def math_precision(precision: Optional[str]) -> Optional[str]:
    """The arithmetic a row's precision runs (``opt`` -> ``fp32``); unknown names pass through."""
    return MATH_PRECISION.get(precision, precision) if precision else None


def device_kind(device: Optional[str]) -> str:
    """``cpu`` or the GPU's name as rows write it (``gpu:0``; a training's ``gpu(0)`` too)."""
    text = str(device or "cpu")
    if "gpu" not in text:
        return "cpu"
    digits = "".join(ch for ch in text.split(",")[0] if ch.isdigit())
    return f"gpu:{digits or 0}"


def _candidate(gflops: float, kind: str, source: str) -> Dict[str, Any]:
    return {"gflops_per_s": float(gflops), "kind": kind, "source": source}


def ceilings(rows: Sequence[Row], environment: Optional[Dict[str, Any]] = None,
             peaks: Sequence[Dict[str, Any]] = ()) -> Dict[Key, Dict[str, Any]]:
    """The ceiling of every (device, math precision) the rows ran.

    Parameters:
        rows: result rows (``device``, ``precision``, ``peak_gflops_per_s``, ``peak_kernel``,
            ``backend``, ``gflops_per_s``).
        environment: the results' environment (``theoretical_peak``: CPU, with ``precisions`` or the
            older ``fp32_gflops``/``int8_gops`` keys; ``gpu_theoretical_peak``: the GPU's, see
            :mod:`vggbench.platform.gpu_peaks`).
        peaks: more measured GEMMs: ``{"device", "precision", "gflops_per_s", "kernel"}`` each.

    Returns ``{(device, precision): {"device", "precision", "gflops_per_s", "kind", "source",
    "candidates"}}`` where ``kind`` is ``measured``, ``theoretical`` or ``row`` and ``source`` names
    the kernel or the formula that set it.
    """
    found: Dict[Key, List[Dict[str, Any]]] = {}
    wanted = {(device_kind(r.device), math_precision(r.precision)) for r in rows
              if r.precision}
    for row in rows:
        if row.peak_gflops_per_s:
            key = (device_kind(row.device), math_precision(row.precision))
            source = f"measured GEMM: {row.peak_kernel or '?'} via {row.backend}"
            found.setdefault(key, []).append(_candidate(row.peak_gflops_per_s, "measured", source))
    for peak in peaks:
        if peak.get("gflops_per_s"):
            key = (device_kind(peak.get("device")), math_precision(peak.get("precision")))
            source = f"measured GEMM: {peak.get('kernel') or '?'}"
            found.setdefault(key, []).append(_candidate(peak["gflops_per_s"], "measured", source))
    gpu = (environment or {}).get("gpu_theoretical_peak") or {}
    if gpu.get("available"):
        for precision, entry in gpu["precisions"].items():
            found.setdefault((device_kind(gpu["device"]), precision), []).append(
                _candidate(entry["gflops_per_s"], "theoretical", f"theoretical: {entry['formula']}"))
    theoretical = (environment or {}).get("theoretical_peak") or {}
    if theoretical.get("available"):
        per_precision = dict(theoretical.get("precisions") or {})
        if not per_precision:  # results written before per-precision peaks
            per_precision["fp32"] = {"gflops_per_s": theoretical.get("fp32_gflops"),
                                     "formula": theoretical.get("fp32_formula")}
            if theoretical.get("int8_gops"):
                per_precision["int8"] = {"gflops_per_s": theoretical["int8_gops"],
                                         "formula": theoretical.get("int8_formula")}
        for precision, entry in per_precision.items():
            if entry.get("gflops_per_s"):
                source = (f"theoretical: {entry.get('formula')}; clock from {theoretical.get('clock_source')}")
                found.setdefault(("cpu", precision), []).append(
                    _candidate(entry["gflops_per_s"], "theoretical", source))
    fastest: Dict[Key, Row] = {}
    for row in rows:
        key = (device_kind(row.device), math_precision(row.precision))
        if row.gflops_per_s and key in wanted and row.gflops_per_s > (fastest[key].gflops_per_s if key in fastest else 0):
            fastest[key] = row
    for key, row in fastest.items():
        if row.gflops_per_s > max((c["gflops_per_s"] for c in found.get(key, [])), default=0.0):
            found.setdefault(key, []).append(_candidate(
                row.gflops_per_s, "row",
                f"the fastest row ({row.backend} {row.precision} batch {row.batch_size}): "
                f"above every measured GEMM and the theoretical peak, so the clock or unit model "
                f"underestimates this machine"))
    result = {}
    for (device, precision), candidates in found.items():
        if (device, precision) not in wanted:
            continue  # no row ran this precision on this device
        best_per_source: Dict[str, Dict[str, Any]] = {}
        for candidate in candidates:  # one entry per kernel or formula: its best
            if candidate["gflops_per_s"] > best_per_source.get(candidate["source"], {}).get("gflops_per_s", 0):
                best_per_source[candidate["source"]] = candidate
        candidates = sorted(best_per_source.values(), key=lambda c: -c["gflops_per_s"])
        best = candidates[0]
        result[(device, precision)] = dict(best, device=device, precision=precision, candidates=candidates)
    return result


def apply_ceilings(rows: List[Row], training: Sequence[Dict[str, Any]] = (),
                   environment: Optional[Dict[str, Any]] = None,
                   peaks: Sequence[Dict[str, Any]] = ()) -> List[Dict[str, Any]]:
    """Set ``ceiling_gflops_per_s``, ``ceiling_source`` and ``pct_of_peak`` of every inference row
    and every training row against the one ceiling of its device and precision; returns the
    ceilings as a list (for the results document and the footer).

    Training rows (``devices``, ``train_gflops_per_s``) use the fp32 ceiling of their device, and
    only when they trained with the sweep's CPU thread count (the ceiling is for those cores).

    Parameters:
        rows: inference rows (changed in place).
        training: training rows (changed in place).
        environment, peaks: see :func:`ceilings`.
    """
    sweep_threads = {r.threads for r in rows if r.threads and device_kind(r.device) == "cpu"}

    def same_cores(trained: Dict[str, Any]) -> bool:
        return device_kind(trained.get("devices")) != "cpu" or not sweep_threads or trained.get("threads") in sweep_threads

    comparable = [t for t in training if same_cores(t)]
    table = ceilings(list(rows) + [_training_as_row(t) for t in comparable], environment, peaks)
    for row in rows:
        ceiling = table.get((device_kind(row.device), math_precision(row.precision)))
        ceiling = ceiling if row.gflops_per_s else None  # a row that measured nothing has no % of peak
        row.ceiling_gflops_per_s = ceiling["gflops_per_s"] if ceiling else None
        row.ceiling_source = ceiling["source"] if ceiling else None
        row.pct_of_peak = (100.0 * (row.gflops_per_s / ceiling["gflops_per_s"])
                           if ceiling and row.gflops_per_s else None)
    for trained in training:
        ceiling = table.get((device_kind(trained.get("devices")), "fp32"))
        usable = bool(ceiling and trained.get("train_gflops_per_s") and same_cores(trained))
        trained["ceiling_gflops_per_s"] = ceiling["gflops_per_s"] if usable else None
        trained["ceiling_source"] = ceiling["source"] if usable else None
        trained["pct_of_peak"] = 100.0 * (trained["train_gflops_per_s"] / ceiling["gflops_per_s"]) if usable else None
    return [dict(value) for _, value in sorted(table.items())]


def _training_as_row(training: Dict[str, Any]) -> Row:
    """A training row as the inference row a ceiling can be taken from (its fp32 GFLOP/s)."""
    return Row(model=training.get("model"), input_size=training.get("input_size"),
               width_ratio=training.get("width_ratio"), backend="training", device=device_kind(training.get("devices")),
               precision="fp32", gflops_per_s=training.get("train_gflops_per_s"), batch_size=training.get("batch_size"))
