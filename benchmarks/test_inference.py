"""Inference per backend: end-to-end ``Runtime.run`` (host batch in, host logits out, synced).

For each case the four variants run back to back (the session-scoped ``run_dir`` groups them),
so the ratios the gate checks compare numbers taken seconds apart under the same load.
"""

from __future__ import annotations

import pytest

VARIANTS = [("mxnet", "fp32"), ("mxnet-hybrid", "fp32"), ("ort-cpu", "fp32"), ("ort-cpu", "int8")]


@pytest.mark.benchmark(min_rounds=10)
@pytest.mark.parametrize("backend,precision", VARIANTS, ids=[f"{b}-{p}" for b, p in VARIANTS])
def test_inference(benchmark, request, suite, case, run_dir, batch, backend, precision):
    from vggbench.runtimes import load_runtime

    if precision == "int8":
        run_dir = request.getfixturevalue("int8_run_dir")
    runtime = load_runtime(backend, run_dir, precision=precision, threads=suite.threads)
    benchmark.group = f"inference {case.id} batch {suite.batch_size}"
    benchmark.extra_info.update(suite.info(case, kind="inference", backend=backend, precision=precision,
                                           images_per_round=suite.batch_size))
    try:
        logits = benchmark(runtime.run, batch)
    finally:
        runtime.close()
    assert logits.shape == (suite.batch_size, 10)
