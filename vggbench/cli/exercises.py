"""``vggbench exercises``: train, measure and publish the lesson's exercises (tables + accuracy plot)."""

from __future__ import annotations

from vggbench.cli.flags import add_command, data_dir_flag, log, positive_int, threads_flag
from vggbench.errors import EXIT_OK

NAME = "exercises"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("--out", default="docs/exercises", help="where runs and published files go (default docs/exercises)")
    p.add_argument("--epochs", type=positive_int, default=2, help="epochs for every model (default 2)")
    p.add_argument("--train-limit", type=positive_int, default=10000, metavar="N",
                   help="train every model on the same fixed random N images (default 10000)")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help="test images (default all 10000)")
    p.add_argument("--only", nargs="+", choices=("baselines", "depth", "size"), help="run only these exercises")
    p.add_argument("--rounds", type=positive_int, metavar="N", help="fixed interleaved rounds per row")
    data_dir_flag(p)
    threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def run(args) -> int:
    """Train, measure and publish the lesson's exercises (tables + accuracy plot).

    Train LeNet, AlexNet and VGG-11/13/16/19 (and VGG-11 at 224) with one recipe, benchmark them in
    one interleaved sweep, and write OUT/exercises.md, exercises.json and baselines.png. Finished
    runs in OUT/runs with the same recipe are reused.
    """
    from vggbench.bench.report import exercises_markdown
    from vggbench.workflows import exercises

    bench_options = {"rounds": args.rounds} if args.rounds else {}
    published = exercises(args.out, epochs=args.epochs, train_limit=args.train_limit, test_limit=args.test_limit,
                          data_dir=args.data_dir, threads=args.threads, progress=not args.no_progress,
                          only=args.only, log=log.info, **bench_options)
    print(exercises_markdown(published))
    print(f"wrote {args.out}/exercises.md, exercises.json and baselines.png")
    return EXIT_OK
