"""Paired-round speedups: the sweep's interleaved rounds (A B A B ...) on each case, for the gate.

pytest-benchmark times each backend in its own benchmark, seconds apart; on a shared machine the
load moves between them. Here ``vggbench.bench.sweep`` times mxnet-hybrid, ort-cpu fp32 and
int8, and openvino fp32, int8 and (where the CPU has bf16 units) bf16 in alternating rounds of the
same cell, at the suite's batch size and at 64, so round i of every backend saw the same machine;
``benchmarks/gate.py`` forms each ratio from those pairs (median of the per-pair ratios, bootstrap
95% CI: :func:`vggbench.bench.stats.summarize_speedup`) and prefers it to the ratio of the separate
benchmarks' medians. The benchmark's own time is the whole sweep (one round).
"""

from __future__ import annotations

import pytest

PAIRED_ROUNDS = 12
# The batch size the bf16 floor is stated at (besides the suite's own): where AMX tiles fill up.
LARGE_BATCH = 64


def cpu_units() -> dict:
    """Whether this CPU has AMX bf16 / int8 tiles: the gate's OpenVINO floors apply only there."""
    from vggbench.platform.cpu import cpu_flag_set

    flags = cpu_flag_set()
    return {"cpu_amx_bf16": "amx_bf16" in flags, "cpu_amx_int8": "amx_int8" in flags}


def test_paired_speedups(benchmark, suite, case, run_dir, int8_skip_reason, data_dir):
    from vggbench.bench.sweep import sweep
    from vggbench.platform.cpu import bf16_unavailable_reason

    precisions = ["fp32"] if int8_skip_reason else ["fp32", "int8"]
    if bf16_unavailable_reason() is None:
        precisions.append("bf16")
    batch_sizes = sorted({suite.batch_size, LARGE_BATCH})

    def run():
        return sweep([str(run_dir)], backends=["mxnet-hybrid", "ort-cpu", "openvino"], precisions=precisions,
                     batch_sizes=batch_sizes, modes=["end-to-end"], rounds=PAIRED_ROUNDS,
                     threads=suite.threads, accuracy_limit=0, peak_sizes=[64], data_dir=str(data_dir),
                     log=lambda message: None)

    benchmark.group = f"paired {case.id} batch {', '.join(map(str, batch_sizes))}"
    results = benchmark.pedantic(run, rounds=1, iterations=1)
    rows = [row for row in results["rows"] if row.ok]
    expected = {("mxnet-hybrid", "fp32")} | {("ort-cpu", p) for p in precisions if p != "bf16"} | {
        ("openvino", p) for p in precisions} | ({("mxnet-hybrid", "bf16")} if "bf16" in precisions else set())
    if {(r.backend, r.precision) for r in rows} != expected:
        pytest.fail("paired sweep rows failed: " + "; ".join(r.status_text for r in results["rows"]))
    rows.sort(key=lambda r: r.batch_size != suite.batch_size)  # the suite's batch first: the fp32 floors use it
    benchmark.extra_info.update(suite.info(case, kind="paired", **cpu_units(), paired_rows=[
        {"backend": r.backend, "precision": r.precision, "batch_size": r.batch_size,
         "round_images_per_s": r.round_images_per_s, "images_per_s": r.images_per_s, "rounds": r.rounds}
        for r in rows]))
