"""What a deployer weighs besides speed, per row of a real sweep: memory, model size, load time, energy."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from vggbench.bench import results as R
from vggbench.bench import sweep


def _ok(results):
    return [r for r in results["rows"] if r.ok]


def test_every_row_has_memory_over_the_idle_worker(bench_results):
    for row in _ok(bench_results):
        assert row.memory_idle_rss_bytes > 0
        assert row.memory_load_rss_bytes > 0  # the library and the model are resident after loading
        assert row.memory_peak_rss_bytes >= 0 and row.memory_peak_method.startswith("VmHWM")
        if row.memory_library_rss_bytes is not None:
            assert 0 <= row.memory_library_rss_bytes <= row.memory_load_rss_bytes
        assert row.gpu_memory_used_bytes is None  # CPU rows


def test_model_size_is_the_loaded_files_and_their_parameters(bench_results, bench_run_dir):
    ok = _ok(bench_results)
    for row in ok:
        assert row.model_file_bytes > 0 and row.parameter_count > 0
        if row.backend == "ort-cpu":
            name = row.runtime["model_file"]
            assert row.model_file_bytes == (Path(bench_run_dir) / name).stat().st_size
            initializers = onnx.load(str(Path(bench_run_dir) / name)).graph.initializer
            assert row.parameter_count == sum(int(onnx.numpy_helper.to_array(t).size) for t in initializers)
            assert row.parameter_bytes == sum(onnx.numpy_helper.to_array(t).nbytes for t in initializers)
    fp32 = {r.backend: r for r in ok if r.precision == "fp32"}
    # the same trained weights: MXNet's arrays and the ONNX file's initializers hold about as many numbers
    assert fp32["mxnet-hybrid"].parameter_bytes == pytest.approx(fp32["ort-cpu"].parameter_bytes, rel=0.05)


def test_load_time_and_first_inference_are_their_own_fields(bench_results):
    for row in _ok(bench_results):
        assert row.load_session_s > 0
        assert row.load_first_inference_s > 0 and row.load_second_inference_s > 0
        assert row.load_inference_batch_size == 1  # the smallest batch the session sees
        if row.backend == "ort-cpu":
            assert row.runtime["session_create_s"] <= row.load_session_s


def test_energy_is_measured_or_says_why_not(bench_results):
    for row in _ok(bench_results):
        if row.energy_j_per_image is None:
            assert row.energy_reason
        else:
            assert row.energy_j_per_image > 0 and "RAPL" in row.energy_source


def test_resource_fields_from_round_replies():
    row = R.Row(model="vgg11", input_size=96, width_ratio=1.0, backend="ort-cuda", memory_idle_rss_bytes=100,
                gpu_memory_idle_bytes=1000)
    replies = [{"peak_rss_bytes": 400, "peak_rss_method": "VmHWM, reset before each round", "energy_j": 2.0,
                "calls": 5, "gpu_memory_used_bytes": 3000},
               {"peak_rss_bytes": 700, "peak_rss_method": "VmHWM, reset before each round", "energy_j": 4.0,
                "calls": 5, "gpu_memory_used_bytes": 2500}]
    fields = sweep.resource_fields(row, replies, batch_size=4)
    assert fields["memory_peak_rss_bytes"] == 600
    assert fields["energy_j_per_image"] == pytest.approx(6.0 / 40)
    assert fields["gpu_memory_used_bytes"] == 2000 and "unverified" in fields["gpu_memory_note"]
    replies[1]["energy_j"] = None  # one round without a reading: no figure, and why
    fields = sweep.resource_fields(row, replies, batch_size=4)
    assert "energy_j_per_image" not in fields and "could not be read" in fields["energy_reason"]


def test_every_precision_runs_in_a_worker_of_its_own():
    groups = sweep.worker_groups("ort-cpu", ["fp32", "opt", "int8"])
    assert [(label, members) for label, members, _ in groups] == [
        ("ort-cpu/fp32", ["fp32"]), ("ort-cpu/opt", ["opt"]), ("ort-cpu/int8", ["int8"])]
    gpu = {label: env for label, _, env in sweep.worker_groups("ort-cuda", ["fp32", "tf32"])}
    assert gpu["ort-cuda/fp32"] == {"NVIDIA_TF32_OVERRIDE": "0"} and gpu["ort-cuda/tf32"] == {}
