"""Command line: argument parsing only; each subcommand calls one function of the library.

User errors (:class:`VggbenchError`) print one line and exit 1; bugs keep their traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from vggbench import __version__
from vggbench.errors import VggbenchError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value}")
    return value


def _input_size(text: str) -> int:
    value = _positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"input size {value} is too small for VGG's five 2x2 pools; use 96 or 224")
    return value


# --- vggbench models -------------------------------------------------------------------------------

def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo: parameters and GFLOPs at 96 and 224")
    p.add_argument("--sizes", type=_input_size, nargs="+", default=[96, 224], help="input sizes (default 96 224)")
    p.add_argument("--width-ratio", type=_positive_float, default=1.0, help="divide conv channels by this")
    p.add_argument("--classes", type=_positive_int, default=10)
    p.add_argument("--in-channels", type=_positive_int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)")
    p.set_defaults(func=_run_models)


def _run_models(args) -> None:
    from vggbench.report import models_table

    models_table(sizes=args.sizes, width_ratio=args.width_ratio, classes=args.classes,
                 in_channels=args.in_channels, json_path=args.json)


# --- vggbench train-export -------------------------------------------------------------------------
# (owned by the train-export work)

# --- vggbench bench / compare ----------------------------------------------------------------------
# (owned by the bench/compare work)

# --- vggbench optimize -----------------------------------------------------------------------------
# (owned by the deployment-variants work)

# --- vggbench bench-table --------------------------------------------------------------------------
# (owned by the CI benchmarks work)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vggbench",
        description="Train, export and benchmark the VGG family (Gluon -> ONNX) on MXNet and ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"vggbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in [value for key, value in sorted(globals().items()) if key.startswith("_add_")]:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VggbenchError as err:
        print(f"vggbench {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"vggbench {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
