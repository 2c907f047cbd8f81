"""``vggbench bench-table``: print saved pytest-benchmark JSON (benchmarks/ suite) as a vggbench table."""

from __future__ import annotations

from vggbench.cli.flags import add_command
from vggbench.errors import EXIT_OK

NAME = "bench-table"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("files", nargs="+", metavar="FILE.json", help="pytest-benchmark JSON file(s)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)")
    p.add_argument("--tablefmt", default="github", help="tabulate table format (default github)")


def run(args) -> int:
    """Print saved pytest-benchmark JSON (benchmarks/ suite) as a vggbench table.

    Turn the JSON written by `pytest benchmarks --benchmark-json=FILE` (or saved by --benchmark-
    autosave under .benchmarks/) into one table: name, model, size, backend, precision, batch,
    median/IQR/min ms, images/s, rounds. The ratio gate is `python benchmarks/gate.py FILE`.
    """
    from vggbench.bench.pytest_bench import bench_table

    bench_table(args.files, json_path=args.json, tablefmt=args.tablefmt)
    return EXIT_OK
