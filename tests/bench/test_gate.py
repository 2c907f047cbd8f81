"""The benchmark ratio gate (benchmarks/gate.py + vggbench.bench.pytest_bench) and `vggbench bench-table`.

The gate's logic is checked on small files in pytest-benchmark's JSON format (the numbers are
made up on purpose: they decide pass/fail); one test runs real pytest-benchmark on a trivial
function to make sure the format we read is the format it writes.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vggbench import cli
from vggbench.bench.pytest_bench import RatioFloor, bench_table, load_rows, ratio_checks, run_gate
from vggbench.errors import VggbenchError

REPO = Path(__file__).resolve().parents[2]


def _load_gate():
    spec = importlib.util.spec_from_file_location("vggbench_benchmarks_gate", REPO / "benchmarks" / "gate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The suite's cases (benchmarks/conftest.py CASES): VGG-11 width 4 at 96, width 16 at 224.
WIDTH = {96: 4.0, 224: 16.0}


def _bench(name, backend, precision, median_ms, size=96, kind="inference", warmup=True, **extra):
    info = {"kind": kind, "model": "vgg11", "width_ratio": WIDTH[size], "input_size": size, "backend": backend,
            "precision": precision, "batch_size": 16, "threads": 1, "images_per_round": 16}
    info.update(extra)
    seconds = median_ms / 1e3
    return {"group": f"inference @{size}", "name": name, "fullname": f"benchmarks/x.py::{name}",
            "params": None, "param": None, "extra_info": info,
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 10, "max_time": 1.0,
                        "warmup": 100000 if warmup else False},
            "stats": {"min": seconds * 0.9, "max": seconds * 1.3, "mean": seconds * 1.05, "stddev": seconds * 0.1,
                      "rounds": 12, "median": seconds, "iqr": seconds * 0.1, "q1": seconds * 0.95,
                      "q3": seconds * 1.05, "iqr_outliers": 0, "stddev_outliers": 1, "outliers": "1;0",
                      "ld15iqr": seconds * 0.9, "hd15iqr": seconds * 1.2, "ops": 1 / seconds, "total": seconds * 12,
                      "iterations": 1}}


def _write(path: Path, benchmarks) -> Path:
    path.write_text(json.dumps({"machine_info": {}, "commit_info": {}, "benchmarks": benchmarks,
                                "datetime": "2026-01-01T00:00:00", "version": "5.3.1"}))
    return path


def _suite(ort_96=30.0, ort_224=80.0, int8=None):
    benches = [_bench("inf[96-mxnet]", "mxnet", "fp32", 90.0), _bench("inf[96-hybrid]", "mxnet-hybrid", "fp32", 70.0),
               _bench("inf[96-ort]", "ort-cpu", "fp32", ort_96),
               _bench("inf[224-mxnet]", "mxnet", "fp32", 200.0, size=224),
               _bench("inf[224-hybrid]", "mxnet-hybrid", "fp32", 190.0, size=224),
               _bench("inf[224-ort]", "ort-cpu", "fp32", ort_224, size=224),
               _bench("train[all-cores]", "mxnet-hybrid", "fp32", 280.0, kind="train_step", thread_setting="all-cores",
                      threads=2),
               _bench("train[1-thread]", "mxnet-hybrid", "fp32", 490.0, kind="train_step", thread_setting="1-thread"),
               _bench("read_idx", None, None, 100.0, kind="data", model=None, images_per_round=10000)]
    if int8 is not None:
        benches.append(_bench("inf[96-int8]", "ort-cpu", "int8", int8))
    return benches


ORT_FLOOR = RatioFloor("ort vs hybrid", faster={"kind": "inference", "backend": "ort-cpu", "precision": "fp32"},
                       baseline={"kind": "inference", "backend": "mxnet-hybrid"}, floor=1.5, why="test")
INT8_FLOOR = RatioFloor("int8 vs fp32", faster={"kind": "inference", "precision": "int8"},
                        baseline={"kind": "inference", "backend": "ort-cpu", "precision": "fp32"}, floor=1.1,
                        why="test", required=False)


def test_ratios_pair_benchmarks_of_the_same_size_and_compare_medians(tmp_path):
    rows = load_rows([_write(tmp_path / "r.json", _suite())])
    checks = ratio_checks(rows, [ORT_FLOOR])
    assert [(c["input_size"], round(c["value"], 3), c["status"]) for c in checks] == \
        [(96, round(70 / 30, 3), "pass"), (224, round(190 / 80, 3), "pass")]
    assert checks[0]["faster"] == "inf[96-ort]" and checks[0]["baseline"] == "inf[96-hybrid]"


def test_a_ratio_under_its_floor_fails_with_one_clear_line(tmp_path, capsys):
    path = _write(tmp_path / "r.json", _suite(ort_224=150.0))  # 190/150 = 1.27x < 1.5x
    assert run_gate([path], [ORT_FLOOR]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1
    assert "ort vs hybrid" in fails[0] and "@224" in fails[0] and "1.27x < floor 1.50x" in fails[0]
    assert "inf[224-ort] 150.00 ms vs inf[224-hybrid] 190.00 ms" in fails[0]
    assert "1 passed, 1 failed" in out


def test_a_training_ratio_under_its_floor_on_a_busy_machine_is_unclear_not_a_failure(tmp_path, capsys):
    """A neighbour holding a core decides all-cores vs 1-thread; the benchmark records it
    (``machine_busy``) and the gate does not judge that ratio. Quiet, the same ratio fails."""
    gate = _load_gate()
    [training] = [floor for floor in gate.FLOORS if floor.name == "training: all cores vs 1 thread"]
    busy = "machine busy: other processes used 48% of the CPU time -- figures may be low and noisy"
    slow = [_bench("train[all-cores]", "mxnet-hybrid", "fp32", 334.0, kind="train_step", thread_setting="all-cores",
                   threads=2, machine_busy=busy),
            _bench("train[1-thread]", "mxnet-hybrid", "fp32", 285.0, kind="train_step", thread_setting="1-thread",
                   machine_busy=None)]
    assert run_gate([_write(tmp_path / "busy.json", slow)], [training]) == 0
    out = capsys.readouterr().out
    assert "unclear training: all cores vs 1 thread: 0.85x < floor 1.10x" in out and "1 unclear" in out
    slow[0]["extra_info"]["machine_busy"] = None
    assert run_gate([_write(tmp_path / "quiet.json", slow)], [training]) == 1
    assert "FAIL training: all cores vs 1 thread" in capsys.readouterr().out


def test_the_statistic_can_be_min_instead_of_median(tmp_path):
    rows = load_rows([_write(tmp_path / "r.json", _suite())])
    assert ratio_checks(rows, [ORT_FLOOR], stat="min")[0]["faster_ms"] == pytest.approx(27.0)
    with pytest.raises(VggbenchError, match="unknown statistic"):
        ratio_checks(rows, [ORT_FLOOR], stat="p99")


def test_optional_ratio_is_skipped_when_its_benchmark_did_not_run_but_required_fails(tmp_path, capsys):
    path = _write(tmp_path / "r.json", [b for b in _suite() if b["extra_info"]["backend"] != "ort-cpu"])
    assert run_gate([path], [ORT_FLOOR, INT8_FLOOR]) == 1
    out = capsys.readouterr().out
    assert "FAIL ort vs hybrid: no inference ort-cpu fp32 benchmark in the results" in out
    assert "skipped int8 vs fp32: no inference int8 benchmark in the results" in out


def test_optional_ratio_is_checked_when_present(tmp_path):
    rows = load_rows([_write(tmp_path / "r.json", _suite(int8=10.0))])
    (check,) = ratio_checks(rows, [INT8_FLOOR])
    assert check["value"] == pytest.approx(3.0) and check["status"] == "pass"
    rows = load_rows([_write(tmp_path / "r.json", _suite(int8=40.0))])
    assert ratio_checks(rows, [INT8_FLOOR])[0]["status"] == "FAIL"


def test_ambiguous_pairs_are_an_error_not_a_guess(tmp_path):
    benches = _suite() + [_bench("inf[96-hybrid-again]", "mxnet-hybrid", "fp32", 71.0)]
    rows = load_rows([_write(tmp_path / "r.json", benches)])
    with pytest.raises(VggbenchError, match="matches 2 baselines"):
        ratio_checks(rows, [ORT_FLOOR])


def test_unreadable_results_are_one_line_errors(tmp_path):
    with pytest.raises(VggbenchError, match="no such file"):
        load_rows([tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(VggbenchError, match="not valid JSON"):
        load_rows([tmp_path / "bad.json"])
    (tmp_path / "other.json").write_text('{"rows": []}')
    with pytest.raises(VggbenchError, match="not a pytest-benchmark file"):
        load_rows([tmp_path / "other.json"])
    empty = _write(tmp_path / "empty.json", [])
    with pytest.raises(VggbenchError, match="holds no benchmarks"):
        run_gate([empty], [ORT_FLOOR])


def test_ratios_without_a_floor_are_reported_not_gated(tmp_path, capsys):
    info_only = RatioFloor("hybrid vs imperative", faster={"backend": "mxnet-hybrid"},
                           baseline={"backend": "mxnet"}, floor=None, why="too noisy to gate")
    path = _write(tmp_path / "r.json", _suite())
    assert run_gate([path], [info_only]) == 0
    out = capsys.readouterr().out
    assert "| info" in out and "2 reported without a floor" in out and "FAIL" not in out


def test_the_project_floors_are_stated_with_their_source_and_pass_on_healthy_numbers(tmp_path, capsys):
    gate = _load_gate()
    assert gate.FLOORS and len({floor.name for floor in gate.FLOORS}) == len(gate.FLOORS)
    for floor in gate.FLOORS:
        assert floor.floor is None or floor.floor > 0, floor
        assert "measured" in floor.why and "PROVISIONAL" not in floor.why, floor
    healthy = _write(tmp_path / "ok.json", _suite(ort_96=20.0, ort_224=50.0, int8=4.0)
                     + [_bench("inf[224-int8]", "ort-cpu", "int8", 100.0, size=224)])
    assert gate.main([str(healthy)]) == 0
    out = capsys.readouterr().out
    paired_only = [f for f in gate.FLOORS if f.name.startswith("openvino")]  # from test_paired.py's sweep only
    assert f"0 failed, 0 unclear (busy machine), {len(paired_only)} skipped" in out  # every other floor found its benchmarks
    slow_ort = _write(tmp_path / "slow.json", _suite(ort_96=75.0, int8=4.0))  # ort slower than hybrid
    assert gate.main([str(slow_ort)]) == 1
    assert "FAIL ort-cpu vs mxnet-hybrid (w4, 96): vgg11/4 @96" in capsys.readouterr().out
    assert gate.main([str(tmp_path / "missing.json")]) == 2


def test_bench_table_prints_the_compare_style_table(tmp_path, capsys):
    path = _write(tmp_path / "r.json", _suite(int8=10.0) + [_bench("cold", "mxnet", "fp32", 5.0, warmup=False)])
    rows = bench_table([path])
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("name", "model", "size", "backend", "precision", "batch", "median ms", "images/s", "rounds"):
        assert column in header
    ort = next(row for row in rows if row["name"] == "inf[96-ort]")
    assert ort["images_per_s"] == pytest.approx(16 / 0.030)
    assert "| inf[96-ort]" in out and "vgg11/4" in out and "533.3" in out
    assert "note: run without warm-up (--benchmark-warmup=on): cold" in out


def test_bench_table_cli_writes_json_and_reports_bad_input_on_one_line(tmp_path, capsys):
    path = _write(tmp_path / "r.json", _suite())
    assert cli.main(["bench-table", str(path), str(path), "--json", str(tmp_path / "rows.json")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| file")  # two files: a file column
    assert len(json.loads((tmp_path / "rows.json").read_text())) == 2 * len(_suite())
    assert cli.main(["bench-table", str(tmp_path / "nope.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vggbench bench-table: error:") and len(err.strip().splitlines()) == 1


TINY_SUITE = '''
import time
import pytest

@pytest.mark.parametrize("backend,seconds", [("mxnet-hybrid", 0.004), ("ort-cpu", 0.001)])
def test_tiny(benchmark, backend, seconds):
    benchmark.extra_info.update(kind="inference", model="tiny", width_ratio=1.0, input_size=96, backend=backend,
                                precision="fp32", batch_size=16, threads=1, images_per_round=16)
    benchmark.pedantic(time.sleep, args=(seconds,), rounds=5, warmup_rounds=1)
'''


def test_real_pytest_benchmark_output_goes_through_gate_and_table(tmp_path, capsys):
    (tmp_path / "test_tiny.py").write_text(TINY_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    out_json = tmp_path / "tiny.json"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
                             "--benchmark-warmup=on", f"--benchmark-json={out_json}", str(tmp_path / "test_tiny.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    floor = RatioFloor("ort vs hybrid", faster={"backend": "ort-cpu"}, baseline={"backend": "mxnet-hybrid"},
                       floor=1.5, why="sleep 4 ms vs 1 ms", match=("model", "input_size", "batch_size"))
    assert run_gate([out_json], [floor]) == 0
    rows = bench_table([out_json])
    assert {row["backend"] for row in rows} == {"mxnet-hybrid", "ort-cpu"}
    assert all(row["warmup"] and row["rounds"] == 5 for row in rows)
    assert "test_tiny[ort-cpu-0.001]" in capsys.readouterr().out


def _paired(rounds_by_row, size=96):
    """A benchmarks/test_paired.py benchmark: interleaved rounds of each (backend, precision)."""
    rows = [{"backend": backend, "precision": precision, "round_images_per_s": rounds, "rounds": len(rounds),
             "images_per_s": sorted(rounds)[len(rounds) // 2]} for (backend, precision), rounds in rounds_by_row.items()]
    return _bench(f"paired[{size}]", None, None, 5000.0, size=size, kind="paired", paired_rows=rows)


def test_the_gate_prefers_paired_rounds_and_fails_only_when_the_whole_interval_is_under_the_floor(tmp_path):
    floor = RatioFloor(name="ort vs hybrid", faster={"kind": "inference", "backend": "ort-cpu", "precision": "fp32"},
                       baseline={"kind": "inference", "backend": "mxnet-hybrid", "precision": "fp32"},
                       floor=1.3, why="test")
    drift = [40.0, 30.0, 44.0, 36.0, 41.0, 33.0, 39.0, 35.0, 42.0, 31.0]  # the machine's speed moves
    # separately timed medians say 0.9x (under the floor); the pairs say 1.5x: the pairs win
    fast = _write(tmp_path / "fast.json", _suite(ort_96=78.0) + [_paired({
        ("mxnet-hybrid", "fp32"): drift, ("ort-cpu", "fp32"): [1.5 * v for v in drift]})])
    [check] = [c for c in ratio_checks(load_rows([fast]), [floor]) if c["ratio"] == "ort vs hybrid"]
    assert check["status"] == "pass" and check["value"] == pytest.approx(1.5)
    assert check["stat"].startswith("paired rounds (10)") and check["ci_low"] <= 1.5 <= check["ci_high"]
    slow = _write(tmp_path / "slow.json", [_paired({
        ("mxnet-hybrid", "fp32"): drift, ("ort-cpu", "fp32"): [1.1 * v for v in drift]})])
    [check] = ratio_checks(load_rows([slow]), [floor])
    assert check["status"] == "FAIL" and check["ci_high"] < 1.3
    noisy = [v * f for v, f in zip(drift, (1.6, 1.0, 1.5, 1.1, 1.4, 1.2, 1.3, 1.0, 1.6, 1.2))]
    unclear = _write(tmp_path / "unclear.json", [_paired({("mxnet-hybrid", "fp32"): drift, ("ort-cpu", "fp32"): noisy})])
    [check] = ratio_checks(load_rows([unclear]), [floor])
    assert check["value"] < 1.3 <= check["ci_high"] and check["status"] == "pass (unclear)"
    assert run_gate([slow], [floor], out=open("/dev/null", "w")) == 1
