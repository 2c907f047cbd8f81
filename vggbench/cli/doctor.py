"""``vggbench doctor``: which backends x precisions run here, why not, versions, a one-second smoke of each."""

from __future__ import annotations

from vggbench.cli.flags import add_command, data_dir_flag

NAME = "doctor"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("--json", metavar="FILE", help="also write the rows and versions as JSON")
    p.add_argument("--require", nargs="+", metavar="BACKEND[:PRECISION]", default=(),
                   help="exit 1 when one of these is unavailable (e.g. ort-cuda ort-trt:fp16)")
    p.add_argument("--gpu-smoke", metavar="OUT_DIR", help="train a few steps, export and bench every GPU backend")
    data_dir_flag(p)


def run(args) -> int:
    """Which backends x precisions run here, why not, versions, a one-second smoke of each.

    One table of every backend x precision: available (after a real one-second smoke inference on
    it) or the exact reason it is not, with versions. --gpu-smoke OUT_DIR is the first command on a
    GPU box: a few training steps, export, and every available GPU backend at 96 and 224, batch 1
    and 64, written as results JSON and table.
    """
    from vggbench.doctor import doctor_command

    return doctor_command(require=args.require, json_path=args.json, gpu_smoke_dir=args.gpu_smoke,
                          data_dir=args.data_dir)
