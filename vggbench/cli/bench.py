"""``vggbench bench``: time one exported model on every backend: throughput with 95% CI, latency, accuracy."""

from __future__ import annotations

from vggbench.cli.flags import add_command, bench_flags, bench_kwargs, print_and_write

NAME = "bench"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run dir made by `vggbench train-export`")
    bench_flags(p, "backends to run (default: all; unavailable ones show as rows). Naming an unavailable "
                    "backend here is an error")


def run(args) -> int:
    """Time one exported model on every backend: throughput with 95% CI, latency, accuracy.

    Benchmark RUN_DIR on each backend in its own worker process: warm-up, then interleaved timed
    rounds until each row's median is known to +-2% (95% CI); images/s, latency p50/p90/p99, GFLOP/s
    and percent of a GEMM peak measured in the same run, top-1 accuracy on the real test set.
    Unavailable backends are rows in the default sweep. Exit 3 when a row failed.
    """
    from vggbench.bench.sweep import sweep
    from vggbench.workflows import check_outputs

    check_outputs([args.json])
    results = sweep([args.run_dir], backends=args.backends, **bench_kwargs(args))
    return print_and_write(results, args, pivot=False)
