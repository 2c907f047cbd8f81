"""The gate's OpenVINO floors (benchmarks/gate.py): floors only where the paired rows say the CPU
has AMX, reported without a floor elsewhere, and a noisy neighbour fails nothing unless the whole
interval is under the floor. The round numbers are made up on purpose: they decide pass/fail."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from vggbench.bench.pytest_bench import load_rows, ratio_checks

REPO = Path(__file__).resolve().parents[2]
DRIFT = [40.0, 30.0, 44.0, 36.0, 41.0, 33.0, 39.0, 35.0, 42.0, 31.0]  # the machine's speed moves
NOISE = (1.6, 1.0, 1.5, 1.1, 1.4, 1.2, 1.3, 1.0, 1.6, 1.2)


def _gate():
    spec = importlib.util.spec_from_file_location("vggbench_benchmarks_gate_ov", REPO / "benchmarks" / "gate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paired_file(path: Path, amx: bool, bf16_factor, int8_factor) -> Path:
    """One paired benchmark of the w4/96 case: ort-cpu fp32/int8 and openvino bf16/int8 rounds at
    batch 16 and 64; openvino's rounds are ort's times a factor (a number or one per round)."""
    def scaled(factor):
        factors = factor if isinstance(factor, tuple) else (factor,) * len(DRIFT)
        return [v * f for v, f in zip(DRIFT, factors)]

    rows = []
    for batch in (16, 64):
        rows += [{"backend": "ort-cpu", "precision": "fp32", "batch_size": batch, "round_images_per_s": DRIFT},
                 {"backend": "ort-cpu", "precision": "int8", "batch_size": batch, "round_images_per_s": DRIFT},
                 {"backend": "openvino", "precision": "bf16", "batch_size": batch,
                  "round_images_per_s": scaled(bf16_factor)},
                 {"backend": "openvino", "precision": "int8", "batch_size": batch,
                  "round_images_per_s": scaled(int8_factor)}]
    info = {"kind": "paired", "model": "vgg11", "width_ratio": 4.0, "input_size": 96, "backend": None,
            "precision": None, "batch_size": 16, "threads": 1, "cpu_amx_bf16": amx, "cpu_amx_int8": amx,
            "paired_rows": rows}
    bench = {"group": "paired", "name": "paired[96]", "fullname": "benchmarks/test_paired.py::paired[96]",
             "extra_info": info, "options": {"warmup": 100000},
             "stats": {"min": 1.0, "max": 1.0, "mean": 1.0, "stddev": 0.0, "rounds": 1, "median": 1.0, "iqr": 0.0}}
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": [bench],
                                "datetime": "2026-01-01T00:00:00", "version": "5.3.1"}))
    return path


def _checks(path: Path):
    floors = [f for f in _gate().FLOORS if f.name.startswith("openvino") and "(w4, 96" in f.name]
    return {c["ratio"]: c for c in ratio_checks(load_rows([path]), floors)}


def test_floors_apply_on_amx_and_pass_on_healthy_ratios(tmp_path):
    checks = _checks(_paired_file(tmp_path / "ok.json", amx=True, bf16_factor=4.0, int8_factor=2.5))
    bf16 = checks["openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, AMX)"]
    assert bf16["status"] == "pass" and bf16["floor"] == 2.0 and bf16["batch_size"] == 64
    int8 = checks["openvino int8 vs ort-cpu int8 (w4, 96, AMX)"]
    assert int8["status"] == "pass" and int8["floor"] == 1.5 and int8["batch_size"] == 16
    assert checks["openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, no AMX)"]["status"] == "skipped"


def test_a_clear_regression_on_amx_fails(tmp_path):
    checks = _checks(_paired_file(tmp_path / "slow.json", amx=True, bf16_factor=1.2, int8_factor=1.1))
    for name in ("openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, AMX)", "openvino int8 vs ort-cpu int8 (w4, 96, AMX)"):
        assert checks[name]["status"] == "FAIL" and checks[name]["ci_high"] < checks[name]["floor"]


def test_a_noisy_neighbour_is_unclear_not_a_failure(tmp_path):
    noisy = tuple(1.35 * f for f in NOISE)  # median under 2x, but the interval reaches it
    check = _checks(_paired_file(tmp_path / "noisy.json", amx=True, bf16_factor=noisy, int8_factor=2.5))[
        "openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, AMX)"]
    assert check["value"] < 2.0 <= check["ci_high"] and check["status"] == "pass (unclear)"


def test_without_amx_the_ratios_are_reported_without_a_floor(tmp_path):
    checks = _checks(_paired_file(tmp_path / "avx2.json", amx=False, bf16_factor=1.2, int8_factor=0.9))
    for name in ("openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, no AMX)",
                 "openvino int8 vs ort-cpu int8 (w4, 96, no AMX)"):
        assert checks[name]["status"] == "info" and checks[name]["floor"] is None
    assert checks["openvino bf16 vs ort-cpu fp32 (w4, 96, batch 64, AMX)"]["status"] == "skipped"
