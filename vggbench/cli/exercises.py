"""``vggbench exercises``: train every exercise model to its plateau, measure, publish (tables + plots);
``--reproduce``: the published narrow VGG-11 run, with its own recipe."""

from __future__ import annotations

from vggbench.cli.flags import add_command, data_dir_flag, log, number, positive_int, threads_flag
from vggbench.errors import EXIT_OK, VggbenchError

NAME = "exercises"


def add(sub) -> None:
    from vggbench.data import TEST_IMAGES
    from vggbench.workflows import EXERCISE_DEFAULTS, EXERCISES

    p = add_command(sub, NAME, run)
    p.add_argument("--out", default="docs/exercises", help="where runs and published files go (default docs/exercises)")
    p.add_argument("--max-epochs", type=positive_int, metavar="M",
                   help=f"the most epochs any model trains (default {EXERCISE_DEFAULTS['max_epochs']})")
    p.add_argument("--patience", type=positive_int, default=EXERCISE_DEFAULTS["patience"], metavar="K",
                   help=f"stop a model after K epochs without a held-out improvement "
                        f"(default {EXERCISE_DEFAULTS['patience']})")
    p.add_argument("--min-delta", type=number(float, 0.0), default=EXERCISE_DEFAULTS["min_delta"], metavar="D",
                   help=f"an improvement must exceed D, a fraction (default {EXERCISE_DEFAULTS['min_delta']})")
    p.add_argument("--holdout", type=number(float, 0.0, below=1.0, strict=True), default=EXERCISE_DEFAULTS["holdout"],
                   metavar="F", help=f"fraction of the training subset held out to watch for the plateau "
                                     f"(default {EXERCISE_DEFAULTS['holdout']})")
    p.add_argument("--train-limit", type=positive_int, metavar="N",
                   help=f"train every model on the same fixed random N images "
                        f"(default {EXERCISE_DEFAULTS['train_limit']})")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help=f"test images (default all {TEST_IMAGES})")
    p.add_argument("--only", nargs="+", choices=tuple(name for name, _, _ in EXERCISES), help="run only these exercises")
    p.add_argument("--models", nargs="+", metavar="MODEL",
                   help="train only these models of the chosen exercises: a name (every recipe of it) or "
                        "MODEL:RECIPE (e.g. vgg16:vgg-he-warmup)")
    p.add_argument("--estimate", action="store_true", help="say the plan and the time estimate, train nothing")
    p.add_argument("--reproduce", action="store_true",
                   help="instead: reproduce the published narrow VGG-11 result (Dive into DL, PyTorch port, 5.7: "
                        "0.918 after 5 epochs at 224); long on a CPU, resumable; --train-limit/--max-epochs shorten "
                        "it only when given")
    p.add_argument("--note", metavar="TEXT", help="a paragraph for the top of exercises.md (machine, reductions)")
    p.add_argument("--rounds", type=positive_int, metavar="N", help="fixed interleaved rounds per row")
    data_dir_flag(p)
    threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def run(args) -> int:
    """Train every exercise model to its plateau, measure, publish the tables and plots.

    LeNet, AlexNet and VGG-11 (baselines), VGG-11/13/16/19 plain and with batch norm (depth; plain
    VGG-16/19 also with the better start), VGG-11 at 96 and 224 (size): each with its lesson's
    recipe until its held-out accuracy plateaus. Says the plan and a time range first; finished
    runs in OUT/runs are reused and interrupted ones resumed. Writes OUT/exercises.md,
    exercises.json and one plot per exercise. With --reproduce: the published VGG-11 run instead,
    written to OUT/reproduction.md and reproduction.json.
    """
    from vggbench.bench.report import exercises_markdown, reproduction_markdown
    from vggbench.workflows import reproduce

    if args.reproduce:
        if args.only or args.models:
            raise VggbenchError("--reproduce trains the one published recipe; drop --only/--models")
        published = reproduce(args.out, train_limit=args.train_limit, epochs=args.max_epochs, test_limit=args.test_limit,
                              data_dir=args.data_dir, threads=args.threads, progress=not args.no_progress,
                              estimate_only=args.estimate, log=log.info)
        if not args.estimate:
            print(reproduction_markdown(published))
            print(f"wrote {args.out}/reproduction.md and reproduction.json")
        return EXIT_OK
    from vggbench.workflows import EXERCISE_DEFAULTS, exercises

    bench_options = {"rounds": args.rounds} if args.rounds else {}
    published = exercises(args.out, max_epochs=args.max_epochs or EXERCISE_DEFAULTS["max_epochs"],
                          train_limit=args.train_limit or EXERCISE_DEFAULTS["train_limit"],
                          test_limit=args.test_limit, holdout=args.holdout, patience=args.patience,
                          min_delta=args.min_delta, data_dir=args.data_dir, threads=args.threads,
                          progress=not args.no_progress, only=args.only, models=args.models,
                          estimate_only=args.estimate, note=args.note, log=log.info, **bench_options)
    if not args.estimate:
        print(exercises_markdown(published))
        print(f"wrote {args.out}/exercises.md, exercises.json and one plot per exercise")
    return EXIT_OK
