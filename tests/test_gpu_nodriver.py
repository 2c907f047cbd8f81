"""The gpu extra on a machine without an NVIDIA driver (tox -e gpu-nodriver): what a new user with
``pip install -e ".[gpu,test]"`` and no GPU gets.

Every GPU row must be ``unavailable`` with the no-driver reason (doctor and bench alike, bench
exiting 0), and every CPU row must work, int8 included (onnxruntime-gpu imports sympy in its
quantization package without declaring it: the extras do). Skipped unless onnxruntime-gpu is
installed and no driver is present.
"""

from __future__ import annotations

import json

import pytest
from helpers import QUICK_BENCH

from vggbench import doctor
from vggbench.bench import results as R
from vggbench.bench.sweep import sweep
from vggbench.errors import EXIT_OK
from vggbench.platform import driver, libraries
from vggbench.runtimes import GPU_BACKENDS

pytestmark = [
    pytest.mark.skipif("onnxruntime-gpu" not in libraries.installed_distributions(["onnxruntime"]),
                       reason="onnxruntime-gpu is not installed (tox -e gpu-nodriver installs the gpu extra)"),
    pytest.mark.skipif(driver.driver_facts().libcuda_error is None, reason="this machine has an NVIDIA driver"),
]
NO_DRIVER = "no NVIDIA driver on this machine (cannot load libcuda.so.1"


def test_doctor_says_no_driver_on_every_gpu_row_and_runs_every_cpu_row(tmp_path):
    with open(tmp_path / "doctor.txt", "w") as printed:
        rows, code = doctor.doctor(json_path=str(tmp_path / "doctor.json"), out=printed, smoke_seconds=0.2)
    assert code == 0
    for row in rows:
        if row["backend"] in GPU_BACKENDS:
            assert row["status"] == doctor.UNAVAILABLE and row["reason"].startswith(NO_DRIVER), row
        elif row["precision"] != "bf16":  # bf16 depends on the CPU's bf16 units, not on this extra
            assert row["status"] == doctor.AVAILABLE, row
    assert any(row["backend"] == "ort-cpu" and row["precision"] == "int8" and row["status"] == doctor.AVAILABLE
               for row in rows)
    document = json.loads((tmp_path / "doctor.json").read_text())
    assert not any("install the same" in note for note in document["notes"])  # no file owned twice


def test_int8_is_made_and_a_default_sweep_has_only_ok_and_no_driver_rows(int8_run_dir, data_dir):
    """optimize ran int8 in this environment (the fixture); the default sweep times every CPU row
    and lists every GPU backend as unavailable, so nothing failed (bench's exit code 0)."""
    assert (int8_run_dir / "model.int8.onnx").is_file()
    document = sweep([str(int8_run_dir)], data_dir=str(data_dir), log=lambda message: None, **QUICK_BENCH)
    rows = document["rows"]
    gpu_rows = [row for row in rows if row.backend in GPU_BACKENDS]
    cpu_rows = [row for row in rows if row.backend not in GPU_BACKENDS]
    assert gpu_rows and all(row.status_text.startswith(f"unavailable: {NO_DRIVER}") for row in gpu_rows)
    assert all(row.ok or row.precision == "bf16" for row in cpu_rows), \
        [row.status_text for row in cpu_rows if not row.ok]
    assert any(row.backend == "ort-cpu" and row.precision == "int8" and row.ok for row in rows)
    assert not any(row.status_text.startswith("error") for row in rows)
    assert R.exit_code(rows) == EXIT_OK
