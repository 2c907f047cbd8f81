"""``vggbench compare``: one side-by-side table across models, sizes and backends (or from saved results)."""

from __future__ import annotations

from vggbench.cli.flags import (
    add_command,
    bench_flags,
    bench_kwargs,
    input_size,
    positive_float,
    positive_int,
    print_and_write,
)

NAME = "compare"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run dirs (default: every run dir in --runs-dir)")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="only these models (missing runs: see --train)")
    p.add_argument("--sizes", nargs="+", type=input_size, metavar="SIZE",
                   help="only these input sizes (default with --models: 96 224)")
    p.add_argument("--width-ratio", type=positive_float, help="only run dirs with this width ratio (and train with it)")
    p.add_argument("--runs-dir", default="runs", help="where run dirs live (default runs)")
    p.add_argument("--train", action="store_true",
                   help="train-export a requested model/size that has no run dir (instead of printing the command)")
    p.add_argument("--epochs", type=positive_int, help="with --train: epochs (default: train-export's)")
    p.add_argument("--from", dest="from_files", nargs="+", metavar="RESULTS.json",
                   help="rebuild the tables from saved results instead of measuring")
    p.add_argument("--csv", metavar="FILE", help="write every row as CSV")
    p.add_argument("--markdown", metavar="FILE", help="write the tables and notes as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="plot throughput vs batch size with 95%% CI error bars")
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, metavar="POINTS",
                   help="the recommendation (last table) is the fastest backend x precision whose top-1 on the "
                        "real test set is at most this many percentage points below fp32 (default 0.5)")
    bench_flags(p, "backends to run or show (default: all; unavailable ones show as rows)")


def run(args) -> int:
    """One side-by-side table across models, sizes and backends (or from saved results).

    Benchmark run dirs (default: all in --runs-dir) and print one table with speedup vs mxnet-hybrid
    and its 95% CI; --from rebuilds the tables from saved results JSON files.
    """
    from vggbench.workflows import check_outputs, compare

    check_outputs([args.json, args.csv, args.markdown, args.plot])
    train_options = {"data_dir": args.data_dir, "threads": args.threads}
    if args.epochs:
        train_options["epochs"] = args.epochs
    bench_options = bench_kwargs(args)
    results = compare(args.run_dirs, models=args.models, sizes=args.sizes, backends=args.backends,
                      runs_dir=args.runs_dir, width_ratio=args.width_ratio, train=args.train,
                      train_options=train_options, from_files=args.from_files, say=print,
                      max_accuracy_drop_points=args.max_accuracy_drop, **bench_options)
    return print_and_write(results, args, pivot=True)
