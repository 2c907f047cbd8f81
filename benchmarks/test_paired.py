"""Paired-round speedups: the sweep's interleaved rounds (A B A B ...) on each case, for the gate.

pytest-benchmark times each backend in its own benchmark, seconds apart; on a shared machine the
load moves between them. Here ``vggbench.bench.sweep`` times mxnet-hybrid, ort-cpu fp32 and
ort-cpu int8 in alternating rounds of the same cell, so round i of every backend saw the same
machine; ``benchmarks/gate.py`` forms each ratio from those pairs (median of the per-pair ratios,
bootstrap 95% CI: :func:`vggbench.bench.stats.summarize_speedup`) and prefers it to the ratio of the
separate benchmarks' medians. The benchmark's own time is the whole sweep (one round).
"""

from __future__ import annotations

import pytest

PAIRED_ROUNDS = 12


def test_paired_speedups(benchmark, suite, case, run_dir, int8_skip_reason, data_dir):
    from vggbench.bench.sweep import sweep

    precisions = ["fp32"] if int8_skip_reason else ["fp32", "int8"]

    def run():
        return sweep([str(run_dir)], backends=["mxnet-hybrid", "ort-cpu"], precisions=precisions,
                     batch_sizes=[suite.batch_size], modes=["end-to-end"], rounds=PAIRED_ROUNDS,
                     threads=suite.threads, accuracy_limit=0, peak_sizes=[64], data_dir=str(data_dir),
                     log=lambda message: None)

    benchmark.group = f"paired {case.id} batch {suite.batch_size}"
    results = benchmark.pedantic(run, rounds=1, iterations=1)
    rows = [row for row in results["rows"] if row["status"] == "ok"]
    if {(r["backend"], r["precision"]) for r in rows} != {("mxnet-hybrid", "fp32")} | {
            ("ort-cpu", p) for p in precisions}:
        pytest.fail("paired sweep rows failed: " + "; ".join(r["status"] for r in results["rows"]))
    benchmark.extra_info.update(suite.info(case, kind="paired", paired_rows=[
        {"backend": r["backend"], "precision": r["precision"], "round_images_per_s": r["round_images_per_s"],
         "images_per_s": r["images_per_s"], "rounds": r["rounds"]} for r in rows]))
