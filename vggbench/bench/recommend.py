"""The deployment answer: per run dir, batch size and mode, the fastest backend x precision whose
top-1 on the real test set stays within an accuracy budget of fp32.

A faster row that loses more than the budget is never recommended; it is listed as rejected with
its drop, so the reader sees what the guard cost. Rows that overlap the winner's 95% CI of
images/s are named as ties ("="): the data cannot tell them apart. Speedups of the winner over
ONNX Runtime fp32 and over mxnet-hybrid fp32 come from their paired rounds (same cycle, A B A B),
as every other speedup.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vggbench.bench.results import MODE_SHORT
from vggbench.bench.row import Row
from vggbench.errors import VggbenchError

DEFAULT_MAX_ACCURACY_DROP_POINTS = 0.5
# The rows the winner's speedup is reported against (backend, precision).
SPEEDUP_REFERENCES = {"ort_fp32": ("ort-cpu", "fp32"), "mxnet_hybrid": ("mxnet-hybrid", "fp32")}
# Whose fp32 top-1 is the accuracy reference, best first (same images in one sweep; fp32 rows agree
# to a few logits' rounding, so any of them serves).
FP32_REFERENCE_BACKENDS = ("mxnet-hybrid", "ort-cpu", "openvino", "mxnet", "mxnet-hybrid-gpu", "mxnet-gpu",
                           "ort-cuda", "ort-trt")


def check_max_accuracy_drop(points: float) -> float:
    """``points`` as a float, or a one-line error when it is negative or not finite."""
    value = float(points)
    if not np.isfinite(value) or value < 0:
        raise VggbenchError(f"--max-accuracy-drop must be >= 0 percentage points, got {points!r}")
    return value


def _cell_key(row: Row) -> tuple:
    return (row.run_dir, row.model, row.input_size, row.width_ratio, row.batch_size, row.mode)


def _fp32_reference(rows: Sequence[Row]) -> Optional[Row]:
    """The fp32 row with a top-1 accuracy, by :data:`FP32_REFERENCE_BACKENDS` order (None: none)."""
    measured = [r for r in rows if r.precision == "fp32" and r.top1_accuracy is not None]
    order = {name: i for i, name in enumerate(FP32_REFERENCE_BACKENDS)}
    measured.sort(key=lambda r: order.get(r.backend, len(order)))
    return measured[0] if measured else None


def _paired_speedup(row: Row, reference: Optional[Row], seed: int) -> Optional[Dict[str, Any]]:
    """The winner's speedup over ``reference`` from paired rounds (ratio of medians when a side
    has no rounds), or None when the reference row did not run."""
    from vggbench.bench import stats

    if not reference or not reference.images_per_s:
        return None
    if reference is row:
        return {"speedup": 1.0, "ci_low": None, "ci_high": None, "pairs": None, "clear": None}
    mine, theirs = row.round_images_per_s or [], reference.round_images_per_s or []
    if mine and theirs:
        fields = stats.summarize_speedup(mine, theirs, rng=np.random.default_rng(seed))
        return {"speedup": fields["speedup"], "ci_low": fields["speedup_ci_low"],
                "ci_high": fields["speedup_ci_high"], "pairs": fields["speedup_pairs"],
                "clear": fields["speedup_clear"]}
    return {"speedup": row.images_per_s / reference.images_per_s, "ci_low": None, "ci_high": None,
            "pairs": None, "clear": None}


def _overlaps(a: Row, b: Row) -> bool:
    """Whether the 95% CIs of images/s of two rows overlap (a row without a CI is its median)."""
    a_low, a_high = a.images_per_s_ci_low, a.images_per_s_ci_high
    b_low, b_high = b.images_per_s_ci_low, b.images_per_s_ci_high
    a_low = a.images_per_s if a_low is None else a_low
    a_high = a.images_per_s if a_high is None else a_high
    b_low = b.images_per_s if b_low is None else b_low
    b_high = b.images_per_s if b_high is None else b_high
    return a_low <= b_high and b_low <= a_high


def _name(row: Row) -> str:
    return f"{row.backend} {row.precision}"


def recommend(rows: Sequence[Row], max_accuracy_drop_points: float = DEFAULT_MAX_ACCURACY_DROP_POINTS,
              seed: int = 0) -> List[Dict[str, Any]]:
    """One recommendation per (run dir, model, size, width, batch size, mode) that has timed rows.

    Parameters:
        rows: result rows (ok rows need ``images_per_s``; the accuracy guard needs ``top1_accuracy``
            from the sweep's accuracy pass on the real test set).
        max_accuracy_drop_points: how many percentage points of top-1 below the fp32 reference a
            row may lose and still be recommended.
        seed: seed of the bootstrap behind the paired speedups.

    Each item has the cell (``run_dir``, ``model``, ``input_size``, ``width_ratio``, ``batch_size``,
    ``mode``), ``backend`` and ``precision`` of the winner (None with ``reason`` when nothing
    qualifies), ``images_per_s`` and its CI, ``top1_accuracy``, ``accuracy_drop_points`` (vs the
    ``reference_accuracy`` of ``reference``), ``speedup_vs_ort_fp32`` and
    ``speedup_vs_mxnet_hybrid`` (``{"speedup", "ci_low", "ci_high", "pairs", "clear"}`` or None),
    ``ties`` (rows within the budget whose CI overlaps the winner's) and ``rejected_faster`` (rows
    faster than the winner that lost more than the budget).
    """
    budget = check_max_accuracy_drop(max_accuracy_drop_points)
    cells: Dict[tuple, List[Row]] = {}
    for row in rows:
        if row.ok and row.images_per_s and row.batch_size is not None:
            cells.setdefault(_cell_key(row), []).append(row)
    by_run: Dict[Any, List[Row]] = {}
    for row in rows:
        if row.ok:
            by_run.setdefault(row.run_dir, []).append(row)
    out = []
    for key, timed in cells.items():
        run_dir, model, size, width, batch_size, mode = key
        item: Dict[str, Any] = {"run_dir": run_dir, "model": model, "input_size": size, "width_ratio": width,
                                "batch_size": batch_size, "mode": mode, "max_accuracy_drop_points": budget,
                                "backend": None, "precision": None, "reason": None, "ties": [],
                                "rejected_faster": []}
        reference = _fp32_reference(timed) or _fp32_reference(by_run.get(run_dir, []))
        if reference is None:
            item["reason"] = ("no fp32 row with a test-set accuracy: the accuracy guard needs the accuracy pass "
                              "(--accuracy-limit not 0) and an fp32 row")
            out.append(item)
            continue
        item.update(reference=_name(reference), reference_accuracy=reference.top1_accuracy)

        def drop(row: Row) -> Optional[float]:
            if row.top1_accuracy is None:
                return None
            return 100.0 * (reference.top1_accuracy - row.top1_accuracy)

        ranked = sorted(timed, key=lambda r: r.images_per_s, reverse=True)
        eligible = [r for r in ranked if drop(r) is not None and drop(r) <= budget + 1e-9]
        if not eligible:
            item["reason"] = f"no timed row has a top-1 within {budget:g} points of {_name(reference)}"
            out.append(item)
            continue
        best = eligible[0]
        references = {name: next((r for r in timed if (r.backend, r.precision) == wanted), None)
                      for name, wanted in SPEEDUP_REFERENCES.items()}
        item.update(backend=best.backend, precision=best.precision, images_per_s=best.images_per_s,
                    images_per_s_ci_low=best.images_per_s_ci_low,
                    images_per_s_ci_high=best.images_per_s_ci_high,
                    top1_accuracy=best.top1_accuracy, accuracy_drop_points=drop(best),
                    speedup_vs_ort_fp32=_paired_speedup(best, references["ort_fp32"], seed),
                    speedup_vs_mxnet_hybrid=_paired_speedup(best, references["mxnet_hybrid"], seed),
                    ties=[_name(r) for r in eligible[1:] if _overlaps(best, r)],
                    rejected_faster=[{"backend": r.backend, "precision": r.precision,
                                      "images_per_s": r.images_per_s, "accuracy_drop_points": drop(r)}
                                     for r in ranked if r.images_per_s > best.images_per_s and r not in eligible])
        out.append(item)
    out.sort(key=lambda i: (str(i["run_dir"]), i["model"], i["input_size"], i["width_ratio"], i["batch_size"],
                            str(i["mode"])))
    return out


def _speedup_text(speedup: Optional[Dict[str, Any]]) -> str:
    if not speedup:
        return "-"
    text = f"{speedup['speedup']:.2f}x"
    if speedup.get("ci_low") is not None:
        text += f" [{speedup['ci_low']:.2f}-{speedup['ci_high']:.2f}]"
    return text + (" =" if speedup.get("clear") is False else "")


def recommendation_lines(recommendations: Sequence[Dict[str, Any]]) -> List[Dict[str, str]]:
    """The recommendations as table rows of text (for the terminal and Markdown renderings)."""
    table = []
    for item in recommendations:
        label = f"{item['model']} {item['input_size']}" + (f" ÷{item['width_ratio']:g}" if item["width_ratio"] != 1
                                                           else "")
        cell = {"model": label, "batch": str(item["batch_size"]), "mode": MODE_SHORT.get(item["mode"], item["mode"])}
        if item["backend"] is None:
            table.append(dict(cell, **{"deploy": "-", "images/s ±95%": "-", "x ort-cpu fp32": "-",
                                       "x mxnet-hybrid": "-", "top-1 % (Δ pts)": "-", "ties (=)": "-",
                                       "faster but over budget": item["reason"]}))
            continue
        low, high = item.get("images_per_s_ci_low"), item.get("images_per_s_ci_high")
        value = f"{item['images_per_s']:.1f}"
        if low is not None and high is not None:
            value += f" ±{(high - low) / 2:.1f}"
        rejected = ", ".join(f"{r['backend']} {r['precision']} ({r['images_per_s']:.0f} img/s, "
                             + (f"-{r['accuracy_drop_points']:.2f} pts" if r["accuracy_drop_points"] is not None
                                else "no accuracy") + ")" for r in item["rejected_faster"])
        table.append(dict(cell, **{
            "deploy": f"{item['backend']} {item['precision']}", "images/s ±95%": value,
            "x ort-cpu fp32": _speedup_text(item["speedup_vs_ort_fp32"]),
            "x mxnet-hybrid": _speedup_text(item["speedup_vs_mxnet_hybrid"]),
            "top-1 % (Δ pts)": f"{100 * item['top1_accuracy']:.2f} ({0.0 - item['accuracy_drop_points'] + 0.0:+.2f})",
            "ties (=)": ", ".join(f"= {t}" for t in item["ties"]) or "-",
            "faster but over budget": rejected or "-"}))
    return table


def recommendation_note(recommendations: Sequence[Dict[str, Any]]) -> str:
    """How the recommendation was chosen, in one line."""
    budget = recommendations[0]["max_accuracy_drop_points"] if recommendations else DEFAULT_MAX_ACCURACY_DROP_POINTS
    reference = next((i.get("reference") for i in recommendations if i.get("reference")), "fp32")
    return (f"deploy = the fastest backend x precision (median images/s) whose top-1 on the real test set is within "
            f"{budget:g} points of {reference} (--max-accuracy-drop); '=' rows overlap its 95% CI (no clear "
            f"difference); speedups from paired rounds [95% CI], '=' after a speedup = CI includes 1.00.")
