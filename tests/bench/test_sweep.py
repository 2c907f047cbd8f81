"""The sweep: interleaved rounds on real MXNet and ONNX Runtime workers, verification before
measuring, unavailable backends as rows, crashes and hangs as error rows, speedups from pairs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import QUICK_BENCH

from vggbench.bench import results as R
from vggbench.bench import sweep
from vggbench.cli import main
from vggbench.errors import VggbenchError
from vggbench.platform.cpu import bf16_unavailable_reason
from vggbench.platform.gpu import gpu_inventory

# Tests that count on this machine having no GPU (CI, the dev box) skip on a GPU machine.
NO_GPU = pytest.mark.skipif(bool(gpu_inventory()), reason="this machine has a GPU")

CPU = ("mxnet", "mxnet-hybrid", "ort-cpu", "openvino")
# bf16 rows of a default sweep where the CPU has bf16 units; elsewhere they are unavailable rows.
CPU_BF16 = ("mxnet-hybrid", "openvino")
HAS_BF16 = bf16_unavailable_reason() is None
GPU = ("mxnet-gpu", "mxnet-hybrid-gpu", "ort-cuda", "ort-trt")
QUIET = dict(QUICK_BENCH, log=lambda message: None)


def test_results_document_shape(bench_results):
    assert bench_results["schema"] == R.SCHEMA == "vggbench.results/2"
    env = bench_results["environment"]
    for key in ("timestamp", "cpu", "cores", "versions", "gpus"):
        assert key in env
    assert env["versions"]["onnxruntime"] and env["versions"]["mxnet"]
    settings = bench_results["settings"]
    assert settings["batch_sizes"] == [1, 4] and settings["policy"]["rounds"] == 3
    assert settings["policy"]["iters"] == 2 and settings["accuracy_limit"] == 64
    assert "exactly 3 round(s) per row" in settings["timing_policy"]
    assert settings["models"][0]["gflops_per_image"] > 0
    assert (settings["threads"], settings["threads_source"]) == sweep.resolve_threads()
    assert {r.threads for r in bench_results["rows"] if r.ok} == {settings["threads"]}
    for row in bench_results["rows"]:
        assert isinstance(row, R.Row) and set(R.ROW_KEYS) <= set(row.to_json())


def test_every_cpu_backend_gives_complete_rows_with_rounds_and_intervals(bench_results):
    ok = [r for r in bench_results["rows"] if r.ok]
    combos = {(r.backend, r.precision, r.batch_size, r.mode) for r in ok}
    modes = (R.MODE_END_TO_END, R.MODE_COMPUTE_ONLY)
    expected = {(b, "fp32", n, m) for b in CPU for n in (1, 4) for m in modes}
    expected |= {("ort-cpu", "opt", n, m) for n in (1, 4) for m in modes}
    expected |= {(b, "bf16", n, m) for b in CPU_BF16 for n in (1, 4) for m in modes if HAS_BF16}
    assert combos == expected and len(ok) == len(expected)
    for row in ok:
        assert row.model == "vgg11" and row.input_size == 96 and row.width_ratio == 16
        assert row.rounds == 3 and row.calls == 6 and row.warmup == 1 and row.device == "cpu"
        rounds = row.round_images_per_s
        assert len(rounds) == 3 and all(value > 0 for value in rounds)
        assert row.images_per_s == pytest.approx(float(np.median(rounds)))
        assert row.images_per_s_ci_low <= row.images_per_s <= row.images_per_s_ci_high
        assert row.noisy is True  # 3 rounds are too few for a 95% interval of a median
        assert 0 < row.latency_min_ms <= row.latency_p50_ms <= row.latency_p90_ms <= row.latency_p99_ms
        assert row.gflops_per_s == pytest.approx(row.gflops_per_image * row.images_per_s)
        if (row.backend, row.precision) != ("mxnet-hybrid", "bf16"):  # MXNet has no bf16 GEMM
            assert row.peak_gflops_per_s > 0 and "128x128" in row.peak_kernel
            assert row.ceiling_gflops_per_s >= row.peak_gflops_per_s and 0 < row.pct_of_peak <= 100
        assert 0 <= row.top1_accuracy <= 1 and row.accuracy_images == 64
        if row.precision != "bf16":
            assert abs(row.accuracy_delta_vs_mxnet_points) <= 100 / 64 + 1e-9  # same images, fp32: <= 1 image
        assert row.accuracy_reference.startswith("mxnet-hybrid fp32")
        assert row.threads >= 1 and row.runtime["backend"] == row.backend
        assert row.load_avg_before >= 0 and row.load_avg_after >= 0
    for row in ok:
        base = next(r for r in ok if r.backend == "mxnet-hybrid" and r.batch_size == row.batch_size
                    and r.mode == row.mode)
        ratios = np.asarray(row.round_images_per_s) / np.asarray(base.round_images_per_s)
        assert row.speedup_vs_mxnet_hybrid == pytest.approx(float(np.median(ratios)))
        if row is not base:
            assert row.speedup_ci_low <= row.speedup_vs_mxnet_hybrid <= row.speedup_ci_high
            assert row.speedup_pairs == 3 and isinstance(row.speedup_clear, bool)
    ort = {r.precision: r.runtime["model_file"] for r in ok if r.backend == "ort-cpu"}
    assert ort == {"fp32": "model.onnx", "opt": "model.opt.onnx"}


@NO_GPU
def test_gpu_backends_are_unavailable_rows_with_reasons(bench_results):
    other = [r for r in bench_results["rows"] if not r.ok]
    bf16_reasons = {("mxnet", "bf16"), ("ort-cpu", "bf16")} | (set() if HAS_BF16 else {(b, "bf16") for b in CPU_BF16})
    assert {(r.backend, r.precision) for r in other} == {(b, "fp32") for b in GPU} | bf16_reasons
    for row in other:
        assert row.status_text.startswith("unavailable: ")
        assert row.images_per_s is None and row.batch_size is None


@NO_GPU
def test_explicitly_requested_unavailable_backend_is_an_error(bench_run_dir):
    started = time.perf_counter()
    with pytest.raises(VggbenchError, match="ort-cuda: "):
        sweep.sweep([str(bench_run_dir)], backends=["ort-cpu", "ort-cuda"], **QUIET)
    assert time.perf_counter() - started < 60  # refused before anything was measured


def _fake_worker(tmp_path: Path) -> Path:
    """The real worker with faults injected by backend (and a log of every command it served)."""
    worker = tmp_path / "faulty_worker.py"
    worker.write_text(
        "import json, os, signal, sys, time\n"
        "from vggbench.bench import worker\n"
        "log = os.environ['WORKER_LOG']\n"
        "state_class = worker._WorkerState\n"
        "class Faulty(state_class):\n"
        "    def _note(self, op):\n"
        "        with open(log, 'a') as f: f.write(json.dumps([self.backend, op, time.time()]) + '\\n')\n"
        "    def round(self, cmd):\n"
        "        self._note('round')\n"
        "        if self.backend == 'mxnet' and os.environ.get('KILL_MXNET'):\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        if os.environ.get('HANG'):\n"
        "            time.sleep(60)\n"
        "        return super().round(cmd)\n"
        "    def prepare(self, cmd):\n"
        "        if self.backend == 'ort-cpu' and os.environ.get('CRASH_ORT'):\n"
        "            sys.stderr.write('Traceback (most recent call last):\\n  File \"w.py\", line 1, in <module>\\n'\n"
        "                             'MemoryError: simulated\\n')\n"
        "            sys.stderr.flush(); os._exit(1)\n"
        "        return super().prepare(cmd)\n"
        "worker._WorkerState = Faulty\n"
        "sys.exit(worker.worker_main())\n")
    return worker


def test_rounds_alternate_between_backends(bench_run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKER_LOG", str(tmp_path / "ops.jsonl"))
    quick = dict(QUIET, accuracy_limit=0, batch_sizes=[2], modes=["end-to-end"], rounds=4)
    sweep.sweep([str(bench_run_dir)], backends=["mxnet-hybrid", "ort-cpu"], precisions=["fp32"],
                command=[sys.executable, str(_fake_worker(tmp_path))], **quick)
    ops = [json.loads(line) for line in (tmp_path / "ops.jsonl").read_text().splitlines()]
    order = [backend for backend, op, _ in sorted(ops, key=lambda item: item[2]) if op == "round"]
    assert order == ["mxnet-hybrid", "ort-cpu"] * 4  # A B A B A B A B


def test_worker_crash_oom_and_timeout_become_error_rows(bench_run_dir, tmp_path, monkeypatch):
    """A worker killed as the OOM killer does, one that exits with a traceback, one that hangs."""
    monkeypatch.setenv("WORKER_LOG", str(tmp_path / "ops.jsonl"))
    monkeypatch.setenv("KILL_MXNET", "1")
    monkeypatch.setenv("CRASH_ORT", "1")
    worker = [sys.executable, str(_fake_worker(tmp_path))]
    quick = dict(QUIET, accuracy_limit=0, batch_sizes=[2], modes=["end-to-end"])
    results = sweep.sweep([str(bench_run_dir)], backends=["mxnet", "mxnet-hybrid", "ort-cpu"], precisions=["fp32"],
                          command=worker, **quick)
    status = {(r.backend, r.precision): r.status_text for r in results["rows"]}
    assert status == {
        ("mxnet", "fp32"): "error: worker killed by SIGKILL (out of memory?) during batch 2 e2e",
        ("mxnet-hybrid", "fp32"): "ok",
        ("ort-cpu", "fp32"): "error: worker exited with code 1: MemoryError: simulated during batch 2 e2e"}
    assert R.exit_code(results["rows"]) == 3

    monkeypatch.delenv("KILL_MXNET")
    monkeypatch.delenv("CRASH_ORT")
    monkeypatch.setenv("HANG", "1")
    started = time.perf_counter()
    # 10 s: loading (library import, model, the first two calls) fits on a loaded 2-vCPU machine
    hung = sweep.sweep([str(bench_run_dir)], backends=["mxnet-hybrid"], precisions=["fp32"], command=worker,
                       timeout_s=10, **quick)
    assert time.perf_counter() - started < 60
    assert [r.status_text for r in hung["rows"]] == ["error: worker timed out after 10 s and was killed "
                                                   "(raise --timeout?) during batch 2 e2e"]


def test_artifacts_are_verified_before_anything_is_timed(bench_run_dir, tmp_path):
    import shutil

    from vggbench import artifacts

    run_dir = tmp_path / "vgg11-96"
    shutil.copytree(bench_run_dir, run_dir)
    raw = bytearray((run_dir / "model.opt.onnx").read_bytes())
    raw[len(raw) // 2] ^= 1
    (run_dir / "model.opt.onnx").write_bytes(bytes(raw))
    started = time.perf_counter()
    with pytest.raises(VggbenchError, match="model.opt.onnx"):
        sweep.sweep([str(run_dir)], backends=["ort-cpu"], **QUIET)
    assert time.perf_counter() - started < 20
    # a wrong-shape ONNX whose manifest was updated to match is refused too
    shutil.copy(bench_run_dir / "model.opt.onnx", run_dir / "model.opt.onnx")
    manifest = artifacts.read_manifest(run_dir)
    manifest["input_size"] = 64
    artifacts.write_manifest(run_dir, manifest)
    with pytest.raises(VggbenchError, match=r"input shape .* does not match the manifest's \[batch, 1, 64, 64\]"):
        sweep.sweep([str(run_dir)], backends=["ort-cpu"], precisions=["fp32"], **QUIET)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rounds=0), "--rounds"), (dict(warmup=0, iters=None), "--warmup 0 needs --iters"),
    (dict(target_ci_pct=float("nan")), "--target-ci"), (dict(max_seconds=-1.0), "--max-seconds")])
def test_bad_round_policies_are_user_errors(kwargs, message):
    with pytest.raises(VggbenchError, match=message):
        sweep.check_policy(**kwargs)


def test_default_precisions_follow_the_run_dirs_variants():
    manifest = {"files": {"model.onnx": "x", "model.int8.onnx": "y", "model.fp16.onnx": "z"}}
    assert sweep.precisions_for("ort-cpu", manifest) == ["fp32", "int8", "bf16"]  # bf16: its "unavailable" row
    assert sweep.precisions_for("openvino", manifest) == ["fp32", "bf16", "int8"]
    assert sweep.precisions_for("ort-cuda", manifest) == ["fp32", "fp16"]
    assert sweep.precisions_for("mxnet-hybrid", manifest) == ["fp32", "bf16"]
    assert sweep.precisions_for("ort-cuda", manifest, ["tf32"]) == ["tf32"]
    with pytest.raises(VggbenchError, match="vggbench optimize runs/x"):
        sweep.precisions_for("ort-cpu", manifest, ["opt"], "runs/x")
    with pytest.raises(VggbenchError, match="unknown precision"):
        sweep.precisions_for("ort-cpu", manifest, ["int4"])


def test_speedups_from_paired_rounds_and_accuracy_deltas():
    def row(backend, rounds, acc, precision="fp32"):
        return R.Row(run_dir="r", model="m", input_size=96, width_ratio=1, batch_size=16, mode=R.MODE_END_TO_END,
                     backend=backend, precision=precision, images_per_s=float(np.median(rounds)),
                     round_images_per_s=rounds, top1_accuracy=acc)

    drift = [40.0, 30.0, 44.0, 36.0, 41.0, 33.0, 39.0]  # the machine's speed moves both rows alike
    rows = [row("mxnet-hybrid", drift, 0.90), row("ort-cpu", [2 * v for v in drift], 0.905),
            row("mxnet", [v * 1.001 for v in drift], 0.90)]
    R.add_speedups(rows)
    assert [r.speedup_vs_mxnet_hybrid for r in rows] == pytest.approx([1.0, 2.0, 1.001])
    assert rows[1].speedup_ci_low == pytest.approx(2.0) and rows[1].speedup_clear is True
    assert rows[2].speedup_clear is True  # paired rounds see a 0.1% difference the medians would not
    unpaired = [row("mxnet-hybrid", drift, 0.9), row("mxnet", [40.0, 31.0, 43.0, 36.0, 41.0, 32.0, 40.0], 0.9)]
    R.add_speedups(unpaired)
    assert unpaired[1].speedup_clear is False  # CI includes 1.00: no clear difference
    R.add_accuracy_deltas(rows, {"r": {}}, full_test_set=False)
    assert [round(r.accuracy_delta_vs_mxnet_points, 6) for r in rows] == [0.0, 0.5, 0.0]
    alone = [row("ort-cpu", drift, 0.905)]
    R.add_accuracy_deltas(alone, {"r": {"manifest_test_accuracy": 0.9, "manifest_test_images": 10000}}, True)
    assert alone[0].accuracy_delta_vs_mxnet_points == pytest.approx(0.5)
    assert alone[0].accuracy_reference.startswith("manifest")


def test_every_backend_gets_the_same_thread_count(monkeypatch):
    from vggbench.bench.worker import worker_env
    from vggbench.platform.cpu import physical_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert sweep.resolve_threads() == (physical_cores(), "physical cores")
    from vggbench.platform.mxnet import max_threads

    assert sweep.resolve_threads(max_threads()) == (max_threads(), "--threads")
    with pytest.raises(VggbenchError, match="--threads"):
        sweep.resolve_threads(0)
    monkeypatch.setenv("MXNET_OMP_MAX_THREADS", "4")
    env = worker_env(3)
    assert env["OMP_NUM_THREADS"] == "3" and "MXNET_OMP_MAX_THREADS" not in env
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert sweep.resolve_threads() == (1, "OMP_NUM_THREADS")


def test_cli_bench_prints_table_and_method_and_writes_json(bench_run_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "results" / "sweep.json"
    out.parent.mkdir()
    code = main(["bench", str(bench_run_dir), "--backends", "ort-cpu", "--batch-sizes", "2", "--precisions", "fp32",
                 "--rounds", "2", "--iters", "2", "--warmup", "1", "--accuracy-limit", "32", "--peak-sizes", "64",
                 "--threads", "1", "--modes", "compute-only", "--json", str(out), "--data-dir", str(data_dir)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "| ort-cpu" in printed.out and "compute-only (input pre-staged on device)" in printed.out
    assert "exactly 2 round(s) per row" in printed.out and "ceiling cpu fp32: " in printed.out
    results = json.loads(out.read_text())
    assert results["schema"] == R.SCHEMA and results["settings"]["threads"] == 1
    [raw] = results["rows"]
    row = R.Row.from_json(raw)
    assert raw["status"] == "ok" and row.ok and row.mode == R.MODE_COMPUTE_ONLY and row.threads == 1
    assert row.accuracy_images == 32 and row.accuracy_delta_vs_mxnet_points is None  # no MXNet here
    assert not list(Path(out.parent).glob(".*tmp*"))  # written atomically


@NO_GPU
def test_cli_explicit_unavailable_backend_is_one_line_error(bench_run_dir, capsys):
    code = main(["bench", str(bench_run_dir), "--backends", "ort-trt", "--accuracy-limit", "0"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("vggbench bench: error: requested backend(s) not available here: ort-trt: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_mxnet_that_cannot_import_skips_the_accuracy_pass_not_the_sweep(bench_run_dir, monkeypatch):
    """The parent prepares the accuracy images with MXNet's resize; a GPU mxnet that cannot load its
    CUDA libraries here must not cost the ONNX Runtime rows (issue 9)."""
    from vggbench.platform.mxnet import MXNetUnavailable

    def no_mxnet(*args, **kwargs):
        raise MXNetUnavailable("cannot import mxnet (OSError: libcudnn.so.8: cannot open shared object file)")

    monkeypatch.setattr(sweep, "prepare_accuracy_data", no_mxnet)
    results = sweep.sweep([str(bench_run_dir)], backends=["ort-cpu"], precisions=["fp32"],
                          **dict(QUIET, batch_sizes=[2], modes=["end-to-end"]))
    [row] = results["rows"]
    assert row.ok and row.top1_accuracy is None
    assert "libcudnn.so.8" in results["settings"]["accuracy_skipped"]
    from vggbench.bench.report import render_results

    assert "top-1: skipped: the accuracy images could not be prepared" in render_results(results)


def test_a_sweep_job_validates_and_normalizes_itself():
    job = sweep.SweepJob(["runs/a"], backends=["ort-cpu", "ort-cpu", "mxnet"], batch_sizes=[4, 1, 4])
    assert job.backends == ("ort-cpu", "mxnet") and job.batch_sizes == (4, 1) and job.run_dirs == ("runs/a",)
    assert sweep.SweepJob(["runs/a"]).backend_names == list(sweep.DEFAULT_BACKENDS)
    assert job.round_settings == sweep.RoundSettings() and job.ort_options is None
    for kwargs, message in ((dict(backends=["tvm"]), "unknown backend 'tvm'"), (dict(backends=[]), "no backends"),
                            (dict(batch_sizes=[0]), "batch sizes"), (dict(modes=["fast"]), "unknown mode"),
                            (dict(accuracy_limit=-1), "--accuracy-limit"), (dict(peak_sizes=[8]), "--peak-sizes")):
        with pytest.raises(VggbenchError, match=message):
            sweep.SweepJob(["runs/a"], **kwargs)
    with pytest.raises(VggbenchError, match="no run dirs"):
        sweep.SweepJob([])


def test_the_keyword_sweep_and_the_job_record_the_same_settings(bench_run_dir):
    from vggbench.runtimes.ort_runtime import OrtOptions

    options = OrtOptions(graph_optimization="basic")
    common = dict(batch_sizes=[2], modes=["end-to-end"], accuracy_limit=0, peak_sizes=[64])
    by_keywords = sweep.sweep([str(bench_run_dir)], backends=["ort-cpu"], precisions=["fp32"], rounds=2, iters=1,
                              warmup=1, runtime_options=options.to_dict(), log=lambda message: None, **common)
    job = sweep.SweepJob((str(bench_run_dir),), ("ort-cpu",), (2,), ("fp32",), ("end-to-end",),
                         sweep.RoundSettings(warmup=1, rounds=2, iters=1), accuracy_limit=0, peak_sizes=(64,),
                         ort_options=options)
    by_job = sweep.run_sweep(job, log=lambda message: None)
    for key in ("backends", "batch_sizes", "precisions", "modes", "policy", "timing_policy", "runtime_options",
                "peak_sizes", "accuracy_limit"):
        assert by_keywords["settings"][key] == by_job["settings"][key], key
    assert by_job["settings"]["runtime_options"]["graph_optimization"] == "basic"
    assert [r.runtime["graph_optimization"] for r in by_job["rows"]] == ["basic"]
