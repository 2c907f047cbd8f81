"""The ratio gate: speed-ups measured within one benchmark run must stay above stated floors.

    python benchmarks/gate.py RESULTS.json [--stat median|min]

RESULTS.json is pytest-benchmark's ``--benchmark-json`` output of ``pytest benchmarks``. For every
floor below, each pair of benchmarks of the same model/width/size/batch/threads gives
``baseline time / faster time``; the gate prints them as a table and exits 1 with one line per
ratio under its floor. Ratios of numbers taken seconds apart on the same machine survive a slow
or busy machine; absolute times do not (for those, see --benchmark-compare in benchmarks/README.md).

THE FLOORS LIVE HERE, AND ONLY HERE. Each one says where its number comes from. They were set
to about 60-70% of the lowest ratio measured on the project's CI-class machine (2 shared cores,
AMD EPYC with AVX2, 1 thread per backend), so load from other jobs does not trip them but a real
regression (a lost graph optimisation, a broken hybridize, a quantizer that stops quantizing) does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

if __package__ in (None, ""):  # run as a script: make `vggbench` importable from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vggbench.errors import VggbenchError  # noqa: E402
from vggbench.pytest_bench import STATS, RatioFloor, run_gate  # noqa: E402

FP32_ORT = {"kind": "inference", "backend": "ort-cpu", "precision": "fp32"}
FP32_HYBRID = {"kind": "inference", "backend": "mxnet-hybrid", "precision": "fp32"}
FP32_IMPERATIVE = {"kind": "inference", "backend": "mxnet", "precision": "fp32"}
INT8_ORT = {"kind": "inference", "backend": "ort-cpu", "precision": "int8"}
INT8_CASE = {"width_ratio": 4.0, "input_size": 96}  # where INT8 pays off (benchmarks/conftest.py CASES)
INT8_CASE_SLOW = {"width_ratio": 16.0, "input_size": 224}

FLOORS = [
    RatioFloor(
        name="ort-cpu vs mxnet-hybrid",
        faster=FP32_ORT, baseline=FP32_HYBRID, floor=1.2,
        why="PROVISIONAL measured"),
    RatioFloor(
        name="int8 vs ort-cpu fp32 (w4, 96)",
        faster={**INT8_ORT, **INT8_CASE}, baseline={**FP32_ORT, **INT8_CASE}, floor=1.2, required=False,
        why="PROVISIONAL measured"),
    RatioFloor(
        name="int8 vs ort-cpu fp32 (w16, 224)",
        faster={**INT8_ORT, **INT8_CASE_SLOW}, baseline={**FP32_ORT, **INT8_CASE_SLOW}, floor=None,
        required=False,
        why="PROVISIONAL measured"),
    RatioFloor(
        name="mxnet-hybrid vs mxnet",
        faster=FP32_HYBRID, baseline=FP32_IMPERATIVE, floor=None,
        why="PROVISIONAL measured"),
]


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/gate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON file(s) (--benchmark-json)")
    parser.add_argument("--stat", choices=STATS, default="median",
                        help="which per-benchmark time the ratios use (default median)")
    parser.add_argument("--list-floors", action="store_true", help="print the floors and where they come from")
    args = parser.parse_args(argv)
    if args.list_floors:
        for floor in FLOORS:
            bound = "reported only" if floor.floor is None else f">= {floor.floor:.2f}x"
            print(f"{floor.name}: {bound}{'' if floor.required else ' (when present)'}: {floor.why}")
    try:
        return run_gate(args.results, FLOORS, stat=args.stat)
    except VggbenchError as err:
        print(f"benchmarks/gate.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
