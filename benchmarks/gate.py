"""The ratio gate: speed-ups measured within one benchmark run must stay above stated floors.

    python benchmarks/gate.py RESULTS.json [--stat median|min]

RESULTS.json is pytest-benchmark's ``--benchmark-json`` output of ``pytest benchmarks``. For every
floor below, each pair of benchmarks of the same model/width/size/batch/threads gives
``baseline time / faster time``; the gate prints them as a table and exits 1 with one line per
ratio under its floor. Ratios of numbers taken seconds apart on the same machine survive a slow
or busy machine; absolute times do not (for those, see --benchmark-compare in benchmarks/README.md).

THE FLOORS LIVE HERE, AND ONLY HERE (FLOORS below). Each one says where its number comes from:
about 60-70% of the median ratio measured on the project's CI-class machine (2 shared cores, AMD
EPYC with AVX2, 1 thread per backend, busy with other jobs), about 80% of the lowest single run.
So neighbours' load does not trip them; what trips them is a gross regression: ort-cpu losing
its lead over mxnet-hybrid, INT8 becoming slower than fp32 (e.g. unfused quantize/dequantize).
For scale: turning off ONNX Runtime's graph optimisations made ort-cpu 1.3-1.5x slower here, which
brings the (w4, 96) ratio down to about its floor; drifts of 10-30% pass, because a shared
machine's noise is that large (the opt-in absolute comparison on a quiet machine catches those).
Ratios too noisy to gate have ``floor=None``: printed, never failing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):  # run as a script: make `vggbench` importable from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggbench.bench.pytest_bench import STATS, RatioFloor, run_gate  # noqa: E402
from vggbench.errors import VggbenchError  # noqa: E402

FP32_ORT = {"kind": "inference", "backend": "ort-cpu", "precision": "fp32"}
FP32_HYBRID = {"kind": "inference", "backend": "mxnet-hybrid", "precision": "fp32"}
FP32_IMPERATIVE = {"kind": "inference", "backend": "mxnet", "precision": "fp32"}
INT8_ORT = {"kind": "inference", "backend": "ort-cpu", "precision": "int8"}
# The suite's two cases (benchmarks/conftest.py CASES).
W4_96 = {"model": "vgg11", "width_ratio": 4.0, "input_size": 96}
W16_224 = {"model": "vgg11", "width_ratio": 16.0, "input_size": 224}
OV_FP32 = {"kind": "inference", "backend": "openvino", "precision": "fp32"}
OV_BF16 = {"kind": "inference", "backend": "openvino", "precision": "bf16"}
OV_INT8 = {"kind": "inference", "backend": "openvino", "precision": "int8"}


def openvino_floors(case_name: str, case: dict, measured: dict) -> List[RatioFloor]:
    """The OpenVINO ratios of one case (benchmarks/test_paired.py's sweep): floors only where the CPU
    has AMX tiles (``cpu_amx_bf16``/``cpu_amx_int8`` in the paired rows), reported elsewhere."""
    floors = [RatioFloor(
        name=f"openvino fp32 vs ort-cpu fp32 ({case_name})", faster={**OV_FP32, **case},
        baseline={**FP32_ORT, **case}, floor=None, required=False,
        why=f"measured {measured['fp32']}: both run fp32 kernels (the f32 hint is forced); reported, not gated")]
    for units, floor, bf16_why, int8_why in (
            (True, 2.0, f"measured {measured['bf16']}; the issue's full-width VGG-11 3.8-6.7x: AMX bf16 must "
                        f"stay at least 2x fp32", f"measured {measured['int8']}; full width 2.5-3.6x"),
            (False, None, f"measured with AMX only ({measured['bf16']}); without AMX (avx512_bf16 only: "
                          f"fewer bf16 units) reported, not gated",
             f"measured with AMX only ({measured['int8']}); without AMX int8 (VNNI or AVX2: ORT's int8 kernels "
             f"use the same units) reported, not gated")):
        where = "AMX" if units else "no AMX"
        floors += [
            RatioFloor(name=f"openvino bf16 vs ort-cpu fp32 ({case_name}, batch 64, {where})",
                       faster={**OV_BF16, **case, "batch_size": 64, "cpu_amx_bf16": units},
                       baseline={**FP32_ORT, **case, "batch_size": 64, "cpu_amx_bf16": units},
                       floor=floor, required=False, why=bf16_why),
            RatioFloor(name=f"openvino int8 vs ort-cpu int8 ({case_name}, {where})",
                       faster={**OV_INT8, **case, "cpu_amx_int8": units},
                       baseline={**INT8_ORT, **case, "cpu_amx_int8": units},
                       floor=floor and 1.5, required=False, why=int8_why)]
    return floors


# Where the numbers come from: 14 runs of `pytest benchmarks --benchmark-warmup=on` (5 full, 9 with
# -k inference) on the 2-core AMD EPYC (AVX2, no VNNI) dev/CI machine while other engineers'
# training and test jobs kept the load average at 2-6; median time per benchmark, 1 thread, batch
# 16. Interleaved A/B timing of the same models (20-30 alternating calls) gave the values in [].
# OpenVINO: benchmarks/test_paired.py's interleaved sweep, 2-vCPU Xeon with AMX (amx_bf16, amx_int8),
# 1 thread, 8 paired rounds, while other agents kept the load average at ~10 (2026-12-05); each
# value the median per-round ratio [95% CI], batch 16 unless said. Floors are 50-65% of these.
OPENVINO_MEASURED = {
    "w4, 96": {"fp32": "1.14x [0.92-1.70]; batch 64 0.99x [0.86-1.10]",
               "bf16": "batch 64 4.21x [3.86-4.60] (batch 16 4.13x)", "int8": "2.48x [2.23-2.79]"},
    "w16, 224": {"fp32": "1.60x [1.41-1.72]; batch 64 1.61x [1.47-1.78]",
                 "bf16": "batch 64 3.08x [2.84-3.18] (batch 16 3.10x)", "int8": "2.36x [2.28-2.60]"},
}

FLOORS = [
    RatioFloor(
        name="ort-cpu vs mxnet-hybrid (w4, 96)",
        faster={**FP32_ORT, **W4_96}, baseline={**FP32_HYBRID, **W4_96}, floor=1.0,
        why="measured 1.21-1.75x, median 1.41x [interleaved 1.43-1.47x]; floor = 71% of the median, "
            "83% of the lowest run: ort-cpu must not fall behind mxnet-hybrid"),
    RatioFloor(
        name="ort-cpu vs mxnet-hybrid (w16, 224)",
        faster={**FP32_ORT, **W16_224}, baseline={**FP32_HYBRID, **W16_224}, floor=1.3,
        why="measured 1.60-2.77x, median 2.30x; floor = 57% of the median, 81% of the lowest run "
            "(one run at 1.60x, the other thirteen at 1.99x or more)"),
    RatioFloor(
        name="int8 vs ort-cpu fp32 (w4, 96)",
        faster={**INT8_ORT, **W4_96}, baseline={**FP32_ORT, **W4_96}, floor=1.0, required=False,
        why="measured 1.17-1.82x, median 1.52x [interleaved 1.40-1.46x]; floor = 66% of the median, "
            "85% of the lowest run: INT8 must not be slower than fp32 where it has channels to work "
            "with. Checked when vggbench.export.variants made model.int8.onnx"),
    RatioFloor(
        name="int8 vs ort-cpu fp32 (w16, 224)",
        faster={**INT8_ORT, **W16_224}, baseline={**FP32_ORT, **W16_224}, floor=None, required=False,
        why="measured 0.49-0.84x: INT8 is SLOWER at width 16 and 224 (4-32 channel convs over large maps: "
            "quantize/dequantize costs more than int8 saves on AVX2); reported, not gated"),
    RatioFloor(
        name="training: all cores vs 1 thread",
        faster={"kind": "train_step", "thread_setting": "all-cores"},
        baseline={"kind": "train_step", "thread_setting": "1-thread"}, floor=1.1,
        match=("kind", "model", "width_ratio", "input_size", "batch_size"),
        why="measured: 1.76x on the Zen 3 dev box for issue 14 (607 vs 345 ms per vgg11_bn/8 batch of 64 at "
            "96), 1.27x in the first CI run of this suite on the Zen 5 box (2026-11-29: 154 vs 121 ms, with "
            "the loader's resize on the same engine); floor 1.1: training must keep using every core (a "
            "1-thread regression is ~1.0x). On a 1-core machine both settings are 1 thread: run on >= 2 cores"),
    RatioFloor(
        name="mxnet-hybrid vs mxnet",
        faster=FP32_HYBRID, baseline=FP32_IMPERATIVE, floor=None,
        why="measured 0.74-1.47x, sometimes faster, sometimes slower: at batch 16 the per-operator "
            "overhead hybridize removes is small next to the compute, and load noise decides; "
            "reported, not gated"),
] + openvino_floors("w4, 96", W4_96, OPENVINO_MEASURED["w4, 96"]) + openvino_floors(
    "w16, 224", W16_224, OPENVINO_MEASURED["w16, 224"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", help="pytest-benchmark JSON file(s) (--benchmark-json)")
    parser.add_argument("--stat", choices=STATS, default="median",
                        help="which per-benchmark time the ratios use (default median)")
    parser.add_argument("--list-floors", action="store_true", help="print the floors and where they come from")
    args = parser.parse_args(argv)
    if args.list_floors:
        for floor in FLOORS:
            bound = "reported only" if floor.floor is None else f">= {floor.floor:.2f}x"
            print(f"{floor.name}: {bound}{'' if floor.required else ' (when present)'}: {floor.why}")
        if not args.results:
            return 0
    if not args.results:
        parser.error("give the JSON file written by pytest --benchmark-json")
    try:
        return run_gate(args.results, FLOORS, stat=args.stat)
    except VggbenchError as err:
        print(f"benchmarks/gate.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
