"""The timing method, the peak GEMM, the accuracy pass and the worker-per-backend sweep.

Real MXNet and ONNX Runtime on a real (tiny, untrained) exported run dir and the real test images;
no assertion on speed (that is the benchmarks suite's job), only on sanity and completeness.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import QUICK_BENCH
from vggbench import bench
from vggbench.cli import main
from vggbench.errors import VggbenchError

CPU = ("mxnet", "mxnet-hybrid", "ort-cpu")
GPU = ("mxnet-gpu", "mxnet-hybrid-gpu", "ort-cuda", "ort-trt")
QUIET = dict(QUICK_BENCH, log=lambda message: None)


# --- the timing method ---------------------------------------------------------------------------------

def _check_stats(stats, batch_size):
    assert stats["images_per_s"] > 0 and stats["timed_s"] > 0 and stats["iterations"] >= 1
    assert 0 < stats["latency_min_ms"] <= stats["latency_p50_ms"] <= stats["latency_p90_ms"] \
        <= stats["latency_p99_ms"]
    # images/s is batch x calls over the loop's wall time, which covers the calls themselves
    assert stats["images_per_s"] <= batch_size * 1e3 / stats["latency_mean_ms"] * 1.0001


def test_fixed_count_runs_exactly_that_many_calls_after_warmup():
    calls = []
    stats = bench.time_callable(lambda: calls.append(time.sleep(0.001)), batch_size=8, warmup=3, iters=7)
    assert len(calls) == 10 and stats["iterations"] == 7 and stats["warmup"] == 3
    _check_stats(stats, 8)
    assert stats["latency_p50_ms"] >= 1.0


def test_duration_mode_respects_the_minimum_time():
    stats = bench.time_callable(lambda: time.sleep(0.01), batch_size=1, warmup=0, duration_s=0.2)
    assert stats["timed_s"] >= 0.2 and stats["iterations"] >= 2
    _check_stats(stats, 1)


def test_default_policy_needs_both_min_calls_and_min_time():
    stats = bench.time_callable(lambda: None, batch_size=1, warmup=0)
    assert stats["iterations"] >= bench.AUTO_MIN_ITERS
    assert stats["timed_s"] >= bench.AUTO_MIN_SECONDS or stats["iterations"] == bench.AUTO_MAX_ITERS
    slow = bench.time_callable(lambda: time.sleep(0.15), batch_size=1, warmup=0)
    assert slow["iterations"] == bench.AUTO_MIN_ITERS


@pytest.mark.parametrize("kwargs, message", [
    (dict(iters=3, duration_s=1.0), "not both"), (dict(iters=0), "--iters"),
    (dict(duration_s=0), "--duration"), (dict(warmup=-1), "--warmup")])
def test_bad_timing_settings_are_user_errors(kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        bench.time_callable(lambda: None, 1, **kwargs)


def test_timing_a_real_runtime_gives_sane_numbers(untrained_run_dir):
    from vggbench.runtimes import load_runtime

    batch = np.random.RandomState(0).uniform(0, 1, (4, 1, 96, 96)).astype(np.float32)
    with load_runtime("ort-cpu", untrained_run_dir) as runtime:
        _check_stats(bench.time_callable(lambda: runtime.run(batch), 4, warmup=1, iters=5), 4)
        runtime.stage(batch)
        _check_stats(bench.time_callable(runtime.run_staged, 4, warmup=1, iters=5), 4)


# --- peak GEMM and accuracy ------------------------------------------------------------------------------

@pytest.mark.parametrize("runtime", ["mxnet", "ort-cpu"])
def test_peak_gemm_through_each_runtime(runtime):
    if runtime == "mxnet":
        fn, label = bench.mxnet_gemm(128)
    else:
        fn, label = bench.ort_gemm("ort-cpu", 128, threads=1)
    peak = bench.measure_peak(fn, 128, label, iters=5)
    assert peak["peak_gflops_per_s"] > 0 and peak["peak_iterations"] == 5
    assert "128x128 float32" in peak["peak_kernel"]


def test_matmul_model_computes_a_matmul():
    import onnxruntime as ort

    model = bench.matmul_onnx_model(8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.eye(8, dtype=np.float32) * 2
    weight = np.frombuffer(model.graph.initializer[0].raw_data, dtype=np.float32).reshape(8, 8)
    np.testing.assert_allclose(session.run(None, {"X": x})[0], 2 * weight, rtol=1e-6)


def test_accuracy_data_is_the_training_preprocessing_of_real_test_images(data_dir, tmp_path):
    from vggbench import data

    prepared = bench.prepare_accuracy_data(96, 50, tmp_path, str(data_dir), chunk=16)
    x, y = np.load(prepared["x"], mmap_mode="r"), np.load(prepared["y"])
    assert x.shape == (50, 1, 96, 96) and x.dtype == np.float32 and y.shape == (50,)
    assert prepared["images"] == 50 and not prepared["full_test_set"]
    images, labels = data.subset(*data.load_fashion_mnist(str(data_dir), train=False), 50, seed=0)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x[:16], data.preprocess(images[:16], 96), atol=1e-6)
    # a perfect and a constant classifier
    one_hot = lambda labels_: np.eye(10, dtype=np.float32)[labels_]  # noqa: E731
    order = iter(range(0, 50, 7))
    assert bench.top1_accuracy(lambda batch: one_hot(y[next(order):][:len(batch)]), x, y, batch_size=7) == 1.0
    assert bench.top1_accuracy(lambda batch: np.tile(one_hot([3]), (len(batch), 1)), x, y) == np.mean(y == 3)


# --- what runs where --------------------------------------------------------------------------------------

def test_default_precisions_follow_the_run_dirs_variants():
    manifest = {"files": {"model.onnx": "a", "model.int8.onnx": "b", "model.fp16.onnx": "c"}}
    assert bench.precisions_for("ort-cpu", manifest) == ["fp32", "int8"]
    assert bench.precisions_for("ort-cuda", manifest) == ["fp32", "fp16"]
    assert bench.precisions_for("mxnet-hybrid", manifest) == ["fp32"]
    assert bench.precisions_for("mxnet", manifest, ["fp32", "int8"]) == ["fp32", "int8"]
    with pytest.raises(VggbenchError, match="vggbench optimize"):
        bench.precisions_for("ort-cpu", manifest, ["opt"], "runs/x")
    with pytest.raises(VggbenchError, match="unknown precision"):
        bench.precisions_for("ort-cpu", manifest, ["bf16"])


def test_unknown_backend_and_bad_settings_are_user_errors(bench_run_dir):
    with pytest.raises(VggbenchError, match="unknown backend 'tvm'"):
        bench.sweep([str(bench_run_dir)], backends=["tvm"], **QUIET)
    with pytest.raises(VggbenchError, match="batch sizes"):
        bench.sweep([str(bench_run_dir)], **dict(QUIET, batch_sizes=[0]))
    with pytest.raises(VggbenchError, match="no manifest.json"):
        bench.sweep(["/nonexistent/run"], **QUIET)


# --- the default sweep ------------------------------------------------------------------------------------

def test_results_document_shape(bench_results):
    assert bench_results["schema"] == bench.SCHEMA == "vggbench.results/1"
    env = bench_results["environment"]
    for key in ("timestamp", "cpu", "cores", "versions", "gpus"):
        assert key in env
    assert env["versions"]["onnxruntime"] and env["versions"]["mxnet"]
    settings = bench_results["settings"]
    assert settings["batch_sizes"] == [1, 4] and settings["iters"] == 3 and settings["accuracy_limit"] == 64
    assert settings["models"][0]["gflops_per_image"] > 0
    assert (settings["threads"], settings["threads_source"]) == bench.resolve_threads()
    assert {r["threads"] for r in bench_results["rows"] if r["status"] == "ok"} == {settings["threads"]}
    for row in bench_results["rows"]:
        assert set(bench.ROW_KEYS) <= set(row)


def test_every_cpu_backend_gives_complete_rows(bench_results):
    ok = [r for r in bench_results["rows"] if r["status"] == "ok"]
    combos = {(r["backend"], r["precision"], r["batch_size"], r["mode"]) for r in ok}
    modes = (bench.MODE_END_TO_END, bench.MODE_COMPUTE_ONLY)
    expected = {(b, "fp32", n, m) for b in CPU for n in (1, 4) for m in modes}
    expected |= {("ort-cpu", "opt", n, m) for n in (1, 4) for m in modes}
    assert combos == expected and len(ok) == len(expected)
    for row in ok:
        assert row["model"] == "vgg11" and row["input_size"] == 96 and row["width_ratio"] == 16
        assert row["iterations"] == 3 and row["warmup"] == 1 and row["device"] == "cpu"
        _check_stats(row, row["batch_size"])
        assert row["gflops_per_s"] == pytest.approx(row["gflops_per_image"] * row["images_per_s"])
        assert row["peak_gflops_per_s"] > 0 and "128x128" in row["peak_kernel"]
        assert row["pct_of_peak"] == pytest.approx(100 * row["gflops_per_s"] / row["peak_gflops_per_s"])
        assert 0 <= row["top1_accuracy"] <= 1 and row["accuracy_images"] == 64
        assert abs(row["accuracy_delta_vs_mxnet_points"]) <= 100 / 64 + 1e-9  # same images, fp32: <= 1 image
        assert row["accuracy_reference"].startswith("mxnet-hybrid fp32")
        assert row["speedup_vs_mxnet_hybrid"] > 0 and row["threads"] >= 1
        assert row["runtime"]["backend"] == row["backend"]
    hybrid = [r for r in ok if r["backend"] == "mxnet-hybrid"]
    assert all(r["speedup_vs_mxnet_hybrid"] == 1.0 and r["accuracy_delta_vs_mxnet_points"] == 0 for r in hybrid)
    ort = {r["precision"]: r["runtime"]["model_file"] for r in ok if r["backend"] == "ort-cpu"}
    assert ort == {"fp32": "model.onnx", "opt": "model.opt.onnx"}


def test_gpu_backends_are_unavailable_rows_with_reasons(bench_results):
    other = [r for r in bench_results["rows"] if r["status"] != "ok"]
    assert {r["backend"] for r in other} == set(GPU)
    assert {(r["backend"], r["precision"]) for r in other} == {(b, "fp32") for b in GPU}
    for row in other:
        assert row["status"].startswith("unavailable: ")
        assert row["images_per_s"] is None and row["batch_size"] is None
    reasons = {r["backend"]: r["status"] for r in other}
    assert "CUDA" in reasons["mxnet-gpu"] and "CUDAExecutionProvider" in reasons["ort-cuda"]
    assert "TensorrtExecutionProvider" in reasons["ort-trt"]


def test_explicitly_requested_unavailable_backend_is_an_error(bench_run_dir):
    started = time.perf_counter()
    with pytest.raises(VggbenchError, match="ort-cuda: onnxruntime .* no CUDAExecutionProvider"):
        bench.sweep([str(bench_run_dir)], backends=["ort-cpu", "ort-cuda"], **QUIET)
    assert time.perf_counter() - started < 60  # refused before anything was measured


def test_worker_crash_oom_and_timeout_become_error_rows(bench_run_dir, tmp_path):
    """A worker that raises, one killed as the OOM killer does, one that hangs: the sweep goes on."""
    worker = tmp_path / "faulty_worker.py"
    worker.write_text(
        "import json, os, signal, sys, time\n"
        "from vggbench.bench import worker_main, _Emitter\n"
        "job = json.load(open(sys.argv[1]))\n"
        "if job['task'] == 'measure' and job['backend'] == 'ort-cpu':\n"
        "    raise MemoryError('simulated: cannot allocate the batch')\n"
        "if job['task'] == 'measure' and job['backend'] == 'mxnet':\n"
        "    _Emitter(job['out'])(kind='start', precision='fp32', batch_size=2, mode=%r, step='batch 2 e2e')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "if job['task'] == 'measure' and os.environ.get('HANG'):\n"
        "    time.sleep(60)\n"
        "sys.exit(worker_main(sys.argv[1]))\n" % bench.MODE_END_TO_END)
    quick = dict(QUIET, accuracy_limit=0, batch_sizes=[2], modes=["end-to-end"])
    results = bench.sweep([str(bench_run_dir)], backends=["mxnet", "mxnet-hybrid", "ort-cpu"],
                          command=[sys.executable, str(worker)], **quick)
    status = {(r["backend"], r["precision"]): r["status"] for r in results["rows"]}
    assert status == {
        ("mxnet", "fp32"): "error: worker killed by SIGKILL (out of memory?) during batch 2 e2e",
        ("mxnet-hybrid", "fp32"): "ok",
        ("ort-cpu", "fp32"): "error: worker exited with code 1: MemoryError: simulated: cannot allocate the batch",
        ("ort-cpu", "opt"): "error: worker exited with code 1: MemoryError: simulated: cannot allocate the batch"}
    assert all(r["top1_accuracy"] is None for r in results["rows"])  # --accuracy-limit 0 skips the pass

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HANG", "1")
        started = time.perf_counter()
        hung = bench.sweep([str(bench_run_dir)], backends=["mxnet-hybrid"], command=[sys.executable, str(worker)],
                           timeout_s=3, **quick)
    assert time.perf_counter() - started < 30
    assert [r["status"] for r in hung["rows"]] == ["error: worker timed out after 3 s and was killed "
                                                   "(raise --timeout?)"]


def test_rows_measured_before_a_crash_are_kept():
    info = {"run_dir": "r", "model": "vgg11", "input_size": 96, "width_ratio": 16, "gflops_per_image": 0.5}
    timing = dict(kind="timing", precision="fp32", batch_size=1, mode=bench.MODE_END_TO_END, images_per_s=10.0,
                  latency_p50_ms=1, latency_p90_ms=2, latency_p99_ms=3, latency_mean_ms=1, latency_min_ms=1,
                  iterations=3, timed_s=0.3, warmup=1, runtime={"threads": 2})
    records = [dict(kind="peak", dtype="float32", peak_gflops_per_s=50.0, peak_kernel="k"),
               dict(kind="start", precision="fp32", batch_size=1, mode=bench.MODE_END_TO_END, step="batch 1 e2e"),
               timing,
               dict(kind="start", precision="fp32", batch_size=64, mode=bench.MODE_COMPUTE_ONLY,
                    step="batch 64 compute")]
    rows = bench.rows_from_records(records, info, "ort-cpu", "cpu", ["fp32", "int8"], "worker killed by SIGSEGV")
    assert [r["status"] for r in rows] == ["ok", "error: worker killed by SIGSEGV during batch 64 compute",
                                           "error: worker killed by SIGSEGV"]
    assert rows[0]["gflops_per_s"] == 5.0 and rows[0]["pct_of_peak"] == 10.0 and rows[0]["threads"] == 2
    assert rows[1]["batch_size"] == 64 and rows[2]["precision"] == "int8"
    # a crash in the peak GEMM, before any precision ran, fails them all and says where
    early = bench.rows_from_records([dict(kind="start", precision=None, step="the peak GEMM (float32)")], info,
                                    "mxnet", "cpu", ["fp32"], "worker killed by SIGKILL (out of memory?)")
    assert [r["status"] for r in early] == ["error: worker killed by SIGKILL (out of memory?) during the peak "
                                            "GEMM (float32)"]


def test_speedups_and_accuracy_deltas():
    def row(backend, ips, acc, precision="fp32"):
        return {key: None for key in bench.ROW_KEYS} | dict(
            run_dir="r", model="m", input_size=96, width_ratio=1, batch_size=16, mode=bench.MODE_END_TO_END,
            backend=backend, precision=precision, status="ok", images_per_s=ips, top1_accuracy=acc)

    rows = [row("mxnet-hybrid", 40.0, 0.90), row("ort-cpu", 80.0, 0.905), row("ort-cpu", 120.0, 0.88, "int8"),
            row("mxnet", 20.0, 0.90)]
    bench.add_speedups(rows)
    assert [r["speedup_vs_mxnet_hybrid"] for r in rows] == [1.0, 2.0, 3.0, 0.5]
    bench.add_accuracy_deltas(rows, {"r": {}}, full_test_set=False)
    assert [round(r["accuracy_delta_vs_mxnet_points"], 6) for r in rows] == [0.0, 0.5, -2.0, 0.0]
    # no MXNet backend in the sweep: the manifest's full-test-set MXNet accuracy is the reference
    alone = [row("ort-cpu", 80.0, 0.905)]
    bench.add_accuracy_deltas(alone, {"r": {"manifest_test_accuracy": 0.9, "manifest_test_images": 10000}}, True)
    assert alone[0]["accuracy_delta_vs_mxnet_points"] == pytest.approx(0.5)
    assert alone[0]["accuracy_reference"].startswith("manifest")


def test_every_backend_gets_the_same_thread_count(monkeypatch):
    from vggbench.runtimes.mxnet_runtime import mxnet_default_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MXNET_OMP_MAX_THREADS", raising=False)
    assert bench.resolve_threads() == (bench.physical_cores(), "physical cores")
    assert 1 <= bench.physical_cores() <= (__import__("os").cpu_count() or 1)
    assert bench.resolve_threads(3) == (3, "--threads")
    with pytest.raises(VggbenchError, match="--threads"):
        bench.resolve_threads(0)
    env = bench.worker_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and "MXNET_OMP_MAX_THREADS" not in env
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert bench.resolve_threads() == (5, "OMP_NUM_THREADS") and mxnet_default_threads() == 5
    monkeypatch.setenv("MXNET_OMP_MAX_THREADS", "4")
    assert mxnet_default_threads() == 4  # MXNet lets this override OMP_NUM_THREADS
    assert "MXNET_OMP_MAX_THREADS" not in bench.worker_env(2)


# --- the command ------------------------------------------------------------------------------------------

def test_cli_bench_prints_table_and_method_and_writes_json(bench_run_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "results" / "bench.json"
    code = main(["bench", str(bench_run_dir), "--backends", "ort-cpu", "--batch-sizes", "2", "--precisions", "fp32",
                 "--iters", "2", "--warmup", "1", "--accuracy-limit", "32", "--peak-size", "64", "--threads", "1",
                 "--modes", "compute-only", "--json", str(out), "--data-dir", str(data_dir)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| ort-cpu" in printed.out and "compute-only (input pre-staged on device)" in printed.out
    assert "exactly 2 timed call(s)" in printed.out and "peak ort-cpu" in printed.out
    results = json.loads(out.read_text())
    assert results["schema"] == "vggbench.results/1" and results["settings"]["threads"] == 1
    [row] = results["rows"]
    assert row["status"] == "ok" and row["mode"] == bench.MODE_COMPUTE_ONLY and row["threads"] == 1
    assert row["accuracy_images"] == 32 and row["accuracy_delta_vs_mxnet_points"] is None  # no MXNet here
    assert not list(Path(out.parent).glob(".*tmp*"))  # written atomically


def test_cli_explicit_unavailable_backend_is_one_line_error(bench_run_dir, capsys):
    code = main(["bench", str(bench_run_dir), "--backends", "ort-trt", "--accuracy-limit", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("vggbench bench: error: requested backend(s) not available here: ort-trt: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_rejects_both_iters_and_duration(bench_run_dir, capsys):
    with pytest.raises(SystemExit):
        main(["bench", str(bench_run_dir), "--iters", "3", "--duration", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
