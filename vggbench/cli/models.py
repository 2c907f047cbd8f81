"""``vggbench models``: list the model zoo: parameters and GFLOPs at 96 and 224."""

from __future__ import annotations

from vggbench.cli.flags import add_command, input_size, positive_float, positive_int
from vggbench.errors import EXIT_OK

NAME = "models"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("--sizes", type=input_size, nargs="+", default=[96, 224], help="input sizes (default 96 224)")
    p.add_argument("--width-ratio", type=positive_float, default=1.0, help="divide conv channels by this")
    p.add_argument("--classes", type=positive_int, default=10)
    p.add_argument("--in-channels", type=positive_int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)")


def run(args) -> int:
    """List the model zoo: parameters and GFLOPs at 96 and 224."""
    import json

    from vggbench.artifacts.io import write_json_atomic
    from vggbench.bench.report import models_table
    from vggbench.models import MODEL_NAMES
    from vggbench.workflows import zoo_rows

    rows = zoo_rows(args.sizes, args.width_ratio, args.classes, args.in_channels)
    if args.json == "-":
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    print(models_table(rows, args.sizes))
    left_out = [name for name in MODEL_NAMES if name not in {row["model"] for row in rows}]
    if left_out:
        print(f"not listed: {', '.join(left_out)} (--width-ratio {args.width_ratio:g} or a size does not fit them)")
    if args.json:
        write_json_atomic(args.json, rows)
    return EXIT_OK
