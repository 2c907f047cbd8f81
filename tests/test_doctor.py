"""vggbench doctor: one table of every backend x precision, from real smoke runs in child processes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from vggbench import doctor
from vggbench.errors import VggbenchError
from vggbench.platform import driver, gpu
from vggbench.runtimes.backends import BACKENDS

HAS_GPU = bool(gpu.gpu_inventory())
GPU_BACKENDS = [name for name, spec in BACKENDS.items() if spec.device_kind == "gpu"]
CPU_BACKENDS = [name for name, spec in BACKENDS.items() if spec.device_kind == "cpu"]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One real doctor run on this machine (short smoke runs), requiring ort-cpu and ort-cuda."""
    json_path = tmp_path_factory.mktemp("doctor") / "doctor.json"
    out = io.StringIO()
    rows, code = doctor.doctor(require=["ort-cpu", "ort-cuda"], json_path=str(json_path), out=out,
                               smoke_seconds=0.2)
    return rows, code, out.getvalue(), json.loads(json_path.read_text())


def test_every_backend_and_precision_has_one_row(checked):
    rows, _, _, _ = checked
    assert [(r["backend"], r["precision"]) for r in rows] == doctor.planned_rows()
    assert {r["backend"] for r in rows} == set(BACKENDS)
    assert {r["precision"] for r in rows if r["backend"] == "ort-cuda"} == {"fp32", "tf32", "fp16"}


def test_cpu_rows_ran_the_tiny_model_and_matched_numpy(checked):
    rows, _, _, _ = checked
    from vggbench.platform.cpu import bf16_unavailable_reason

    no_bf16 = bf16_unavailable_reason()
    for row in rows:
        if row["backend"] in CPU_BACKENDS and row["precision"] == "bf16" and no_bf16:
            assert row["status"] == doctor.UNAVAILABLE and row["reason"] == no_bf16, row
        elif row["backend"] in CPU_BACKENDS:
            assert row["status"] == doctor.AVAILABLE, row
            assert row["smoke_calls"] >= 1 and row["smoke_seconds"] >= 0.2
            assert row["max_relative_error"] <= doctor.TOLERANCE[row["precision"]]
            assert row["versions"].startswith(("mxnet", "onnxruntime", "openvino"))


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_gpu_rows_are_unavailable_here_with_their_reason(checked):
    rows, code, printed, _ = checked
    gpu_rows = [r for r in rows if r["backend"] in GPU_BACKENDS]
    assert gpu_rows and all(r["status"] == doctor.UNAVAILABLE and r["reason"] for r in gpu_rows)
    reasons = {r["backend"]: r["reason"] for r in gpu_rows}
    if driver.driver_facts().libcuda_error:  # no driver: the first cause, on every GPU row
        assert all(reason.startswith("no NVIDIA driver on this machine") for reason in reasons.values())
    else:
        assert "CPU build" in reasons["mxnet-gpu"]
    assert "CUDAExecutionProvider" in reasons["ort-cuda"]
    assert "TensorrtExecutionProvider" in reasons["ort-trt"]
    assert code == 1 and "required but not available here: ort-cuda" in printed  # --require ort-cuda


def test_the_table_and_json_say_the_same(checked):
    rows, code, printed, document = checked
    assert document["schema"] == doctor.SCHEMA and document["rows"] == rows and document["exit_code"] == code
    assert document["versions"]["onnxruntime"]["version"] and document["required"] == ["ort-cpu", "ort-cuda"]
    assert printed.splitlines()[0].startswith("GPUs: ")
    table = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)
    assert sum("| available " in line for line in table) == sum(r["status"] == doctor.AVAILABLE for r in rows)


def test_require_is_checked_by_backend_or_backend_and_precision():
    assert doctor.check_require(["ort-cuda", "ort-trt:fp16"]) == [("ort-cuda", None), ("ort-trt", "fp16")]
    with pytest.raises(VggbenchError, match="unknown backend 'tvm'"):
        doctor.check_require(["tvm"])
    with pytest.raises(VggbenchError, match="ort-cpu runs fp32, opt, int8, not 'fp16'"):
        doctor.check_require(["ort-cpu:fp16"])
    rows = [{"backend": "ort-trt", "precision": "fp32", "status": doctor.UNAVAILABLE},
            {"backend": "ort-trt", "precision": "fp16", "status": doctor.AVAILABLE}]
    assert doctor.required_missing(rows, doctor.check_require(["ort-trt", "ort-trt:fp16"])) == []
    assert doctor.required_missing(rows, doctor.check_require(["ort-trt:fp32"])) == ["ort-trt:fp32"]


def test_tf32_rows_run_in_their_own_process_without_the_override():
    groups = doctor.smoke_groups(doctor.planned_rows())
    by_rows = {row: group for group in groups for row in group["rows"]}
    assert by_rows[("ort-cuda", "tf32")]["env"] == {"NVIDIA_TF32_OVERRIDE": None}
    assert by_rows[("ort-trt", "fp32")]["env"] == by_rows[("mxnet-gpu", "fp32")]["env"] == {"NVIDIA_TF32_OVERRIDE": "0"}
    assert by_rows[("ort-cpu", "int8")] is by_rows[("ort-cuda", "fp32")]  # one ONNX Runtime child
    assert by_rows[("mxnet", "fp32")]["env"] == {} and by_rows[("mxnet", "fp32")] is not by_rows[("mxnet-gpu", "fp32")]
    assert sorted(row for group in groups for row in group["rows"]) == sorted(doctor.planned_rows())


def test_a_child_that_dies_becomes_unavailable_rows():
    group = {"family": "ort", "rows": [("ort-cpu", "fp32")], "env": {"PYTHONHOME": "/nonexistent"}}
    [row] = doctor._run_child(group, 0, 0.1, 60)
    assert row["status"] == doctor.UNAVAILABLE and row["reason"].startswith("smoke process exited with code")


def test_two_builds_of_one_module_are_pointed_out():
    notes = doctor.environment_notes({"mxnet": "1.9.1", "mxnet-cu117": "1.9.1", "onnxruntime": "1.26.0",
                                      "onnxruntime-gpu": "1.26.0"}, clashes={})
    assert len(notes) == 2 and "pip uninstall mxnet mxnet-cu117" in notes[0]
    assert "onnxruntime and onnxruntime-gpu" in notes[1]
    assert doctor.environment_notes({"mxnet-cu117": "1.9.1", "onnxruntime-gpu": "1.26.0"}, clashes={}) == []


def test_timed_smoke_keeps_calling_for_the_time_given():
    calls = []
    result = doctor.timed_smoke(lambda: calls.append(1), seconds=0.05)
    assert result["calls"] == len(calls) >= 2 and result["seconds"] >= 0.05


@pytest.mark.slow
@pytest.mark.skipif(HAS_GPU, reason="checks the CPU-only outcome")
def test_gpu_smoke_runs_on_cpu_and_marks_gpu_rows_unavailable(tmp_path, data_dir):
    """The GPU owner's first command, on this CPU machine: trains on the CPU, exports, sweeps every
    backend; the GPU ones are unavailable rows with their reasons."""
    result = doctor.gpu_smoke(tmp_path, width_ratio=32, sizes=(96,), batch_sizes=(1, 4), train_images=128,
                              test_images=64, data_dir=str(data_dir), log=lambda message: None)
    assert result["train_ctx"] == "cpu"
    for name in ("doctor.json", "doctor.md", "results.json", "results.md"):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0
    assert (Path(result["run_dirs"][0]) / "manifest.json").is_file()
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    gpu_rows = [r for r in rows if r["backend"] in GPU_BACKENDS]
    assert {r["backend"] for r in gpu_rows} == set(GPU_BACKENDS)
    assert all(r["status"].startswith("unavailable: ") and len(r["status"]) > len("unavailable: ") for r in gpu_rows)
    assert any(r["backend"] == "ort-cpu" and r["status"] == "ok" for r in rows)
    assert "| mxnet-gpu" in (tmp_path / "doctor.md").read_text()
