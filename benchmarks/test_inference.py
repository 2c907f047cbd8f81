"""Inference per backend: end-to-end ``Runtime.run`` (host batch in, host logits out, synced).

For each case the four variants run back to back (the session-scoped ``run_dir`` groups them,
and the INT8 file is made before the first of them), so the ratios the gate checks compare
numbers taken seconds apart under the same load. Two seconds of rounds per benchmark (after
warm-up) average over the load swings of a shared machine.
"""

from __future__ import annotations

import pytest

VARIANTS = [("mxnet", "fp32"), ("mxnet-hybrid", "fp32"), ("ort-cpu", "fp32"), ("ort-cpu", "int8")]


@pytest.mark.benchmark(min_rounds=10, max_time=2.0)
@pytest.mark.parametrize("backend,precision", VARIANTS, ids=[f"{b}-{p}" for b, p in VARIANTS])
def test_inference(benchmark, suite, case, run_dir, int8_skip_reason, batch, backend, precision):
    from vggbench.runtimes import load_runtime

    if precision == "int8" and int8_skip_reason:
        pytest.skip(int8_skip_reason)
    runtime = load_runtime(backend, run_dir, precision=precision, threads=suite.threads)
    benchmark.group = f"inference {case.id} batch {suite.batch_size}"
    benchmark.extra_info.update(suite.info(case, kind="inference", backend=backend, precision=precision,
                                           images_per_round=suite.batch_size))
    try:
        logits = benchmark(runtime.run, batch)
    finally:
        runtime.close()
    assert logits.shape == (suite.batch_size, 10)
