"""Command line: argument parsing, dispatch and printing; nothing else.

Each subcommand calls one library function (a stage or :mod:`vggbench.workflows`) and prints what
it returns (rendered by :mod:`vggbench.bench.report`); progress and messages go to stderr through the
``vggbench`` logger and tqdm, results to stdout. Exit codes (:mod:`vggbench.errors`): 0 all
requested work ok; 1 user error or refused artifact (before any measuring); 3 some rows failed
while measuring (results still written, failed rows marked); 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from vggbench import __version__
from vggbench.cli import bench, bench_table, compare, data, doctor, exercises, launch, models, optimize, train_export
from vggbench.cli.flags import OneLineParser
from vggbench.errors import EXIT_OK, VggbenchError, exit_code_for, install_sigterm_handler
from vggbench.messages import set_quiet
from vggbench.platform.driver import use_pci_bus_order

# The commands in workflow order: `vggbench --help` lists them so. Each module has NAME, add(sub), run(args).
COMMANDS = (data, models, train_export, optimize, bench, compare, exercises, launch, doctor, bench_table)


def build_parser() -> argparse.ArgumentParser:
    """The ``vggbench`` argument parser with every subcommand of :data:`COMMANDS`."""
    parser = OneLineParser(  # subcommand parsers inherit the class: every argument error is one line
        prog="vggbench",
        description="Train, export and benchmark the VGG family (Gluon -> ONNX) on MXNet and ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"vggbench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors (no progress lines)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in COMMANDS:
        command.add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one ``vggbench`` command; returns its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    use_pci_bus_order()  # before anything starts CUDA; children inherit it
    previous = install_sigterm_handler()
    try:
        return args.func(args) or EXIT_OK
    except (VggbenchError, KeyboardInterrupt) as err:
        if isinstance(err, VggbenchError):
            print(f"vggbench {args.command}: error: {err}", file=sys.stderr)
        else:
            print(f"vggbench {args.command}: {'terminated' if exit_code_for(err) == 143 else 'interrupted'}",
                  file=sys.stderr)
        return exit_code_for(err)
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
