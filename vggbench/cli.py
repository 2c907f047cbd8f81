"""Command line: argument parsing, dispatch and printing; nothing else.

Each subcommand calls one library function (a stage or :mod:`vggbench.pipeline`) and prints what
it returns (rendered by :mod:`vggbench.report`); progress and messages go to stderr through the
``vggbench`` logger and tqdm, results to stdout. Exit codes (:mod:`vggbench.errors`): 0 all
requested work ok; 1 user error or refused artifact (before any measuring); 3 some rows failed
while measuring (results still written, failed rows marked); 130 Ctrl-C; 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from vggbench import __version__
from vggbench.distributed import KVSTORES
from vggbench.errors import EXIT_OK, VggbenchError, exit_code_for, install_sigterm_handler
from vggbench.messages import logger, set_quiet

log = logger()


def _number(kind, minimum, below=None, strict=False):
    """An argparse type: a finite ``kind`` (int/float) >= ``minimum`` (> with ``strict``), < ``below``."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if (value <= minimum if strict else not value >= minimum) or (below is not None and value >= below):
            bound = f"> {minimum}" if strict else f">= {minimum}"
            raise argparse.ArgumentTypeError(f"expected a number {bound}"
                                             f"{f' and < {below}' if below is not None else ''}, got {value}")
        return value
    return parse


_positive_int = _number(int, 1)
_nonnegative_int = _number(int, 0)
_positive_float = _number(float, 0, strict=True)
_non_negative_float = _number(float, 0)
_seed = _number(int, 0, below=2 ** 31)


def _input_size(text: str) -> int:
    value = _positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"input size {value} is too small for VGG's five 2x2 pools; use 96 or 224")
    return value


def _command(sub, name: str):
    """Add subcommand ``name``, run by ``_run_<name>``: its docstring's first line is the help, the
    rest the description (``vggbench NAME --help``)."""
    func = globals()["_run_" + name.replace("-", "_")]
    summary, _, details = (text.replace("%", "%%") for text in func.__doc__.partition("\n\n"))
    summary = " ".join(summary.split()).rstrip(".")
    p = sub.add_parser(name, help=summary[:1].lower() + summary[1:], description=" ".join((details or summary).split()))
    p.set_defaults(func=func)
    return p


def _threads_flag(p) -> None:
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="CPU threads for MXNet (OMP_NUM_THREADS, set before mxnet is imported) and ONNX Runtime "
                        "(default: $OMP_NUM_THREADS, else the physical cores)")


def _data_dir_flag(p) -> None:
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default: $VGGBENCH_DATA, else ~/.cache/vggbench)")


# --- vggbench models -------------------------------------------------------------------------------

def _add_models(sub) -> None:
    p = _command(sub, "models")
    p.add_argument("--sizes", type=_input_size, nargs="+", default=[96, 224], help="input sizes (default 96 224)")
    p.add_argument("--width-ratio", type=_positive_float, default=1.0, help="divide conv channels by this")
    p.add_argument("--classes", type=_positive_int, default=10)
    p.add_argument("--in-channels", type=_positive_int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)")


def _run_models(args) -> int:
    """List the model zoo: parameters and GFLOPs at 96 and 224."""
    import json

    from vggbench.artifacts import write_json_atomic
    from vggbench.models import MODEL_NAMES
    from vggbench.pipeline import zoo_rows
    from vggbench.report import models_table

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


# --- vggbench train-export -------------------------------------------------------------------------

def _add_train_export(sub) -> None:
    p = _command(sub, "train-export")
    p.add_argument("model", help="model name, e.g. vgg11, vgg11_bn, vgg16 (see `vggbench models`)")
    p.add_argument("--size", type=_input_size, default=96, help="input size in pixels (default 96; the paper uses 224)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="total epochs (default 5)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="training batch size (default 64)")
    p.add_argument("--lr", type=_positive_float, default=0.05, help="SGD learning rate (default 0.05)")
    p.add_argument("--width-ratio", type=_positive_float, default=1.0,
                   help="divide conv channels by this (default 1 = full width; 8 for a quick CPU run)")
    p.add_argument("--ctx", default="auto", metavar="auto|cpu|gpu|gpu:0,gpu:1",
                   help="devices to train on (default auto: a GPU if MXNet can use one, else CPU)")
    p.add_argument("--train-limit", type=_positive_int, metavar="N", help="train on a fixed random N images")
    p.add_argument("--test-limit", type=_positive_int, metavar="N", help="evaluate on a fixed random N test images")
    p.add_argument("--parity-images", type=_positive_int, default=256, metavar="N",
                   help="test images for the MXNet vs ONNX Runtime parity gate (default 256)")
    _data_dir_flag(p)
    _threads_flag(p)
    p.add_argument("--out", default="runs", help="parent folder of run dirs (default runs)")
    p.add_argument("--name", help="run dir name (default MODEL-SIZE, or MODEL-wR-SIZE when the width ratio is not 1)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for init, shuffling, dropout and subsets (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run dir's last checkpoint")
    p.add_argument("--force", action="store_true", help="start over even if the run dir holds a run")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (per-epoch lines only)")
    p.add_argument("--optimize", action="store_true",
                   help="afterwards, also build the ORT-optimized, INT8 and FP16 variants (vggbench optimize)")
    p.add_argument("--kvstore", default="device", choices=KVSTORES,
                   help="MXNet KVStore: device/local on one machine; dist_sync, dist_device_sync or dist_async for "
                        "several machines, started by `vggbench launch` (default device)")
    p.add_argument("--dist-timeout", type=_positive_float, metavar="S",
                   help="dist_*: end this worker with one line when a KVStore wait takes S seconds (a peer died); "
                        "default $VGGBENCH_DIST_TIMEOUT_S, else 300")


def _run_train_export(args) -> int:
    """Train a model on Fashion-MNIST, export MXNet + ONNX, check parity, write a run dir.

    Train MODEL with the lesson's recipe (SGD, Xavier init, softmax cross-entropy), export it to
    MXNet symbol/params and ONNX, check ONNX Runtime against MXNet, and write OUT/NAME/ with
    manifest.json. Checkpoints after every epoch; --resume continues.
    """
    from vggbench.pipeline import train_export_and_optimize

    run_dir = train_export_and_optimize(
        args.model, optimize=args.optimize, input_size=args.size, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, width_ratio=args.width_ratio, ctx=args.ctx, train_limit=args.train_limit,
        test_limit=args.test_limit, data_dir=args.data_dir, out=args.out, name=args.name, seed=args.seed,
        resume=args.resume, force=args.force, parity_images=args.parity_images, progress=not args.no_progress,
        threads=args.threads, kvstore=args.kvstore, dist_timeout_s=args.dist_timeout)
    if run_dir is not None:  # in a distributed job only rank 0 writes the run dir
        print(run_dir)
    return EXIT_OK


# --- vggbench launch ---------------------------------------------------------------------------------

def _add_launch(sub) -> None:
    p = _command(sub, "launch")
    p.add_argument("--workers", type=_positive_int, required=True, metavar="N", help="worker processes")
    p.add_argument("--servers", type=_positive_int, default=1, metavar="M", help="KVStore server processes (default 1)")
    p.add_argument("--hosts", metavar="FILE", help="one host per line: print (or with --ssh run) each host's command")
    p.add_argument("--ssh", action="store_true", help="with --hosts: start the per-host commands over ssh")
    p.add_argument("--port", type=_positive_int, metavar="P", help="the scheduler's port (default: a free one locally)")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="end the whole job after S seconds")
    p.add_argument("--workdir", metavar="DIR", help="folder the commands run in on each host (default: this one)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the worker command, e.g. -- vggbench train-export vgg11 --kvstore dist_sync")


def _run_launch(args) -> int:
    """Run data-parallel training over MXNet's KVStore: scheduler, servers and workers.

    On this machine it starts the scheduler, M servers and N workers as local processes with the
    DMLC_* variables on loopback, prefixes their output, and ends every process when one fails
    (exit non-zero naming the role and rank). With --hosts FILE it prints the exact command for each
    host (or runs them with --ssh). Everything after -- is the worker command.
    """
    from vggbench.launch import launch

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    if not job:
        raise VggbenchError("give the worker command after --, e.g. -- vggbench train-export vgg11 --kvstore dist_sync")
    return launch(args.workers, args.servers, job, hosts_file=args.hosts, port=args.port, ssh=args.ssh,
                  timeout_s=args.timeout, workdir=args.workdir)


# --- vggbench bench / compare ----------------------------------------------------------------------

def _bench_flags(p, backends_help: str) -> None:
    """Flags shared by `bench` and `compare` (everything that decides how rows are measured)."""
    from vggbench.backends import BACKENDS, PRECISIONS
    from vggbench.bench import DEFAULT_BATCH_SIZES, DEFAULT_MODES, DEFAULT_WARMUP
    from vggbench.results import MODES
    from vggbench.stats import CPU_ROUNDS, GPU_ROUNDS
    from vggbench.worker import DEFAULT_TIMEOUT_S

    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), metavar="BACKEND",
                   help=f"{backends_help}; from: {', '.join(BACKENDS)}")
    p.add_argument("--batch-sizes", type=_positive_int, nargs="+", default=list(DEFAULT_BATCH_SIZES), metavar="N",
                   help=f"batch sizes to time (default {' '.join(map(str, DEFAULT_BATCH_SIZES))})")
    p.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), metavar="P",
                   help=f"from {', '.join(PRECISIONS)} (default: each backend's own that the run dir holds: "
                        "fp32/opt/int8 on ort-cpu, fp32/fp16 on ort-cuda/ort-trt, fp32 on MXNet)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(DEFAULT_MODES),
                   help="end-to-end (host numpy in/out) and/or compute-only (input pre-staged on device); default both")
    p.add_argument("--warmup", type=_nonnegative_int, default=DEFAULT_WARMUP, metavar="N",
                   help=f"untimed calls per row before its first round; they also size the rounds (default {DEFAULT_WARMUP})")
    p.add_argument("--rounds", type=_positive_int, metavar="N",
                   help="exactly N interleaved rounds per row instead of rounds until the CI target")
    p.add_argument("--iters", type=_positive_int, metavar="N", help="exactly N calls per round (default: sized by time)")
    p.add_argument("--target-ci", type=_positive_float, metavar="PCT",
                   help=f"stop a row when its 95%% CI is within +-PCT%% of its median (default {CPU_ROUNDS.target_ci_pct:g})")
    p.add_argument("--max-seconds", type=_positive_float, metavar="S",
                   help=f"per-row budget of its own rounds; a row over it is marked noisy (default "
                        f"{CPU_ROUNDS.max_seconds:g} CPU, {GPU_ROUNDS.max_seconds:g} GPU)")
    p.add_argument("--round-seconds", type=_positive_float, metavar="S",
                   help=f"round length (default {CPU_ROUNDS.round_min_s:g} CPU, {GPU_ROUNDS.round_min_s:g} GPU)")
    _threads_flag(p)
    p.add_argument("--accuracy-limit", type=_nonnegative_int, metavar="N",
                   help="accuracy on a fixed random N test images (default all 10000; 0 skips the pass)")
    _data_dir_flag(p)
    p.add_argument("--peak-sizes", type=_positive_int, nargs="+", metavar="N",
                   help="sides of the square GEMMs whose best is the attainable peak (default 1024 2048 3072 on "
                        "a CPU, 4096 8192 on a GPU)")
    p.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"kill a backend's worker when one step takes S seconds; its rows become errors "
                        f"(default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--gpu", type=_nonnegative_int, default=0, metavar="N", help="GPU index for GPU backends (default 0)")
    p.add_argument("--graph-optimization", choices=("all", "basic", "none"), default="all",
                   help="ONNX Runtime graph optimisation level (default all)")
    p.add_argument("--cudnn-conv-algo-search", choices=("EXHAUSTIVE", "HEURISTIC", "DEFAULT"), default="EXHAUSTIVE",
                   help="ort-cuda/ort-trt cuDNN convolution algorithm search (default EXHAUSTIVE)")
    p.add_argument("--no-cudnn-max-workspace", action="store_true",
                   help="ort-cuda/ort-trt: do not let cuDNN use its maximum workspace")
    p.add_argument("--gpu-mem-limit", type=_positive_int, metavar="BYTES", help="ort-cuda/ort-trt arena limit")
    p.add_argument("--json", metavar="FILE", help="write the results (rows + environment) as JSON")


def _bench_kwargs(args) -> dict:
    return dict(
        batch_sizes=args.batch_sizes, precisions=args.precisions, modes=args.modes, warmup=args.warmup,
        rounds=args.rounds, iters=args.iters, target_ci_pct=args.target_ci, max_seconds=args.max_seconds,
        round_s=args.round_seconds, threads=args.threads, accuracy_limit=args.accuracy_limit,
        data_dir=args.data_dir, peak_sizes=args.peak_sizes, timeout_s=args.timeout, gpu=args.gpu,
        log=log.info,
        runtime_options={"graph_optimization": args.graph_optimization,
                         "cudnn_conv_algo_search": args.cudnn_conv_algo_search,
                         "cudnn_conv_use_max_workspace": not args.no_cudnn_max_workspace,
                         "gpu_mem_limit": args.gpu_mem_limit})


def _add_bench(sub) -> None:
    p = _command(sub, "bench")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run dir made by `vggbench train-export`")
    _bench_flags(p, "backends to run (default: all; unavailable ones show as rows). Naming an unavailable "
                    "backend here is an error")


def _print_and_write(results, args, pivot: bool) -> int:
    from vggbench.pipeline import write_outputs
    from vggbench.report import render_results
    from vggbench.results import exit_code

    print(render_results(results, pivot=pivot))
    for line in write_outputs(results, args.json, getattr(args, "csv", None), getattr(args, "markdown", None),
                              getattr(args, "plot", None)):
        print(line)
    return exit_code(results["rows"])


def _run_bench(args) -> int:
    """Time one exported model on every backend: throughput with 95% CI, latency, accuracy.

    Benchmark RUN_DIR on each backend in its own worker process: warm-up, then interleaved timed
    rounds until each row's median is known to +-2% (95% CI); images/s, latency p50/p90/p99, GFLOP/s
    and percent of a GEMM peak measured in the same run, top-1 accuracy on the real test set.
    Unavailable backends are rows in the default sweep. Exit 3 when a row failed.
    """
    from vggbench.bench import sweep
    from vggbench.pipeline import check_outputs

    check_outputs([args.json])
    results = sweep([args.run_dir], backends=args.backends, **_bench_kwargs(args))
    return _print_and_write(results, args, pivot=False)


def _add_compare(sub) -> None:
    p = _command(sub, "compare")
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run dirs (default: every run dir in --runs-dir)")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="only these models (missing runs: see --train)")
    p.add_argument("--sizes", nargs="+", type=_input_size, metavar="SIZE",
                   help="only these input sizes (default with --models: 96 224)")
    p.add_argument("--width-ratio", type=_positive_float, help="only run dirs with this width ratio (and train with it)")
    p.add_argument("--runs-dir", default="runs", help="where run dirs live (default runs)")
    p.add_argument("--train", action="store_true",
                   help="train-export a requested model/size that has no run dir (instead of printing the command)")
    p.add_argument("--epochs", type=_positive_int, help="with --train: epochs (default: train-export's)")
    p.add_argument("--from", dest="from_files", nargs="+", metavar="RESULTS.json",
                   help="rebuild the tables from saved results instead of measuring")
    p.add_argument("--csv", metavar="FILE", help="write every row as CSV")
    p.add_argument("--markdown", metavar="FILE", help="write the tables and notes as Markdown")
    p.add_argument("--plot", metavar="FILE.png", help="plot throughput vs batch size with 95%% CI error bars")
    _bench_flags(p, "backends to run or show (default: all; unavailable ones show as rows)")


def _run_compare(args) -> int:
    """One side-by-side table across models, sizes and backends (or from saved results).

    Benchmark run dirs (default: all in --runs-dir) and print one table with speedup vs mxnet-hybrid
    and its 95% CI; --from rebuilds the tables from saved results JSON files.
    """
    from vggbench.pipeline import check_outputs, compare

    check_outputs([args.json, args.csv, args.markdown, args.plot])
    train_options = {"data_dir": args.data_dir, "threads": args.threads}
    if args.epochs:
        train_options["epochs"] = args.epochs
    bench_options = _bench_kwargs(args)
    results = compare(args.run_dirs, models=args.models, sizes=args.sizes, backends=args.backends,
                      runs_dir=args.runs_dir, width_ratio=args.width_ratio, train=args.train,
                      train_options=train_options, from_files=args.from_files, say=print, **bench_options)
    return _print_and_write(results, args, pivot=True)


# --- vggbench doctor -------------------------------------------------------------------------------

def _add_doctor(sub) -> None:
    p = _command(sub, "doctor")
    p.add_argument("--json", metavar="FILE", help="also write the rows and versions as JSON")
    p.add_argument("--require", nargs="+", metavar="BACKEND[:PRECISION]", default=(),
                   help="exit 1 when one of these is unavailable (e.g. ort-cuda ort-trt:fp16)")
    p.add_argument("--gpu-smoke", metavar="OUT_DIR", help="train a few steps, export and bench every GPU backend")
    _data_dir_flag(p)


def _run_doctor(args) -> int:
    """Which backends x precisions run here, why not, versions, a one-second smoke of each.

    One table of every backend x precision: available (after a real one-second smoke inference on
    it) or the exact reason it is not, with versions. --gpu-smoke OUT_DIR is the first command on a
    GPU box: a few training steps, export, and every available GPU backend at 96 and 224, batch 1
    and 64, written as results JSON and table.
    """
    from vggbench.doctor import doctor_command

    return doctor_command(require=args.require, json_path=args.json, gpu_smoke_dir=args.gpu_smoke,
                          data_dir=args.data_dir)


# --- vggbench exercises ----------------------------------------------------------------------------

def _add_exercises(sub) -> None:
    p = _command(sub, "exercises")
    p.add_argument("--out", default="docs/exercises", help="where runs and published files go (default docs/exercises)")
    p.add_argument("--epochs", type=_positive_int, default=2, help="epochs for every model (default 2)")
    p.add_argument("--train-limit", type=_positive_int, default=10000, metavar="N",
                   help="train every model on the same fixed random N images (default 10000)")
    p.add_argument("--test-limit", type=_positive_int, metavar="N", help="test images (default all 10000)")
    p.add_argument("--only", nargs="+", choices=("baselines", "depth", "size"), help="run only these exercises")
    p.add_argument("--rounds", type=_positive_int, metavar="N", help="fixed interleaved rounds per row")
    _data_dir_flag(p)
    _threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def _run_exercises(args) -> int:
    """Train, measure and publish the lesson's exercises (tables + accuracy plot).

    Train LeNet, AlexNet and VGG-11/13/16/19 (and VGG-11 at 224) with one recipe, benchmark them in
    one interleaved sweep, and write OUT/exercises.md, exercises.json and baselines.png. Finished
    runs in OUT/runs with the same recipe are reused.
    """
    from vggbench.pipeline import exercises
    from vggbench.report import exercises_markdown

    bench_options = {"rounds": args.rounds} if args.rounds else {}
    published = exercises(args.out, epochs=args.epochs, train_limit=args.train_limit, test_limit=args.test_limit,
                          data_dir=args.data_dir, threads=args.threads, progress=not args.no_progress,
                          only=args.only, log=log.info, **bench_options)
    print(exercises_markdown(published))
    print(f"wrote {args.out}/exercises.md, exercises.json and baselines.png")
    return EXIT_OK


# --- vggbench optimize -----------------------------------------------------------------------------

def _add_optimize(sub) -> None:
    from vggbench.optimize import (CALIBRATION_METHODS, DEFAULT_CALIB_IMAGES, DEFAULT_CALIB_METHOD,
                                   DEFAULT_MAX_ACCURACY_DROP_POINTS)

    p = _command(sub, "optimize")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run dir made by train-export")
    p.add_argument("--int8", action="store_true",
                   help="build the INT8 variant (with --fp16/--int8 given, only those are built besides opt; "
                        "with neither, all three are)")
    p.add_argument("--fp16", action="store_true", help="build the FP16 variant (see --int8)")
    p.add_argument("--calib-images", type=_positive_int, default=DEFAULT_CALIB_IMAGES, metavar="N",
                   help=f"training images to calibrate INT8 on (default {DEFAULT_CALIB_IMAGES}; never test images)")
    p.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=DEFAULT_CALIB_METHOD,
                   help=f"INT8 activation-range calibration (default {DEFAULT_CALIB_METHOD})")
    p.add_argument("--max-accuracy-drop", type=_non_negative_float, default=DEFAULT_MAX_ACCURACY_DROP_POINTS,
                   metavar="POINTS", help="flag a variant whose test accuracy is this many percentage points below "
                                          f"fp32 (default {DEFAULT_MAX_ACCURACY_DROP_POINTS:g})")
    p.add_argument("--accuracy-limit", type=_positive_int, metavar="N",
                   help="measure accuracy on a fixed random N test images (default: all 10,000)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the calibration and test subsets (default 0)")
    _data_dir_flag(p)
    _threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def _run_optimize(args) -> int:
    """Write ORT-optimized, INT8 and FP16 variants of a run dir's model.onnx, with accuracy gates.

    Write model.opt.onnx (ONNX Runtime's offline-optimized graph, for ort-cpu) and, by default,
    model.int8.onnx (static QDQ quantization calibrated on training images) and model.fp16.onnx
    (float16 inside, float32 in/out, for ort-cuda) next to RUN_DIR/model.onnx. Each is measured on
    the test set against model.onnx and recorded in manifest.json; a variant whose accuracy drops by
    more than --max-accuracy-drop points is flagged.
    """
    from vggbench.optimize import optimize_run_dir, variants_table

    both = not (args.int8 or args.fp16)
    variants = optimize_run_dir(
        args.run_dir, int8=args.int8 or both, fp16=args.fp16 or both, calib_images=args.calib_images,
        calib_method=args.calib_method, data_dir=args.data_dir, max_accuracy_drop_points=args.max_accuracy_drop,
        seed=args.seed, accuracy_limit=args.accuracy_limit, progress=not args.no_progress, threads=args.threads)
    print(variants_table(variants))
    return EXIT_OK


# --- vggbench bench-table --------------------------------------------------------------------------

def _add_bench_table(sub) -> None:
    p = _command(sub, "bench-table")
    p.add_argument("files", nargs="+", metavar="FILE.json", help="pytest-benchmark JSON file(s)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-' for stdout only)")
    p.add_argument("--tablefmt", default="github", help="tabulate table format (default github)")


def _run_bench_table(args) -> int:
    """Print saved pytest-benchmark JSON (benchmarks/ suite) as a vggbench table.

    Turn the JSON written by `pytest benchmarks --benchmark-json=FILE` (or saved by --benchmark-
    autosave under .benchmarks/) into one table: name, model, size, backend, precision, batch,
    median/IQR/min ms, images/s, rounds. The ratio gate is `python benchmarks/gate.py FILE`.
    """
    from vggbench.pytest_bench import bench_table

    bench_table(args.files, json_path=args.json, tablefmt=args.tablefmt)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``vggbench`` argument parser with every subcommand (the ``_add_*`` functions)."""
    parser = argparse.ArgumentParser(
        prog="vggbench",
        description="Train, export and benchmark the VGG family (Gluon -> ONNX) on MXNet and ONNX Runtime.")
    parser.add_argument("--version", action="version", version=f"vggbench {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only results and errors (no progress lines)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in [value for key, value in sorted(globals().items()) if key.startswith("_add_")]:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one ``vggbench`` command; returns its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
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
