"""Argument types and flag groups shared by the commands; each command module adds its own."""

from __future__ import annotations

import argparse

from vggbench.messages import logger

log = logger()


def number(kind, minimum, below=None, strict=False):
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


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line plus a pointer to ``--help`` (exit 2, as
    argparse's), not the whole usage block: the same shape as every other vggbench error."""

    def error(self, message: str):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


positive_int = number(int, 1)
# SGD learning rates above this overflow float32 weights at the first step (1e39 is inf in float32);
# Recipe.check holds the same bound for library callers.
MAX_LR = 10_000.0
learning_rate = number(float, 0, below=MAX_LR, strict=True)
# Bigger batches than this are not a benchmark of this model zoo but an out-of-memory error.
MAX_BATCH_SIZE = 1 << 16
batch_size = number(int, 1, below=MAX_BATCH_SIZE + 1)
nonnegative_int = number(int, 0)
positive_float = number(float, 0, strict=True)
non_negative_float = number(float, 0)
seed_type = number(int, 0, below=2 ** 31)


def input_size(text: str) -> int:
    value = positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"input size {value} is too small for VGG's five 2x2 pools; use 96 or 224")
    return value


def backend_python(text: str):
    """``BACKEND=PATH`` (``--python``) -> ``(backend, path)``."""
    from vggbench.runtimes.backends import BACKENDS

    backend, sep, path = text.partition("=")
    if not sep or backend not in BACKENDS or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: give BACKEND=PATH with BACKEND one of {', '.join(BACKENDS)}")
    return backend, path


def add_command(sub, name: str, func):
    """Add subcommand ``name``, run by ``func``: its docstring's first line is the help, the rest the
    description (``vggbench NAME --help``)."""
    summary, _, details = (text.replace("%", "%%") for text in func.__doc__.partition("\n\n"))
    summary = " ".join(summary.split()).rstrip(".")
    p = sub.add_parser(name, help=summary[:1].lower() + summary[1:], description=" ".join((details or summary).split()))
    p.set_defaults(func=func)
    return p


def threads_flag(p) -> None:
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads for MXNet (OMP_NUM_THREADS, set before mxnet is imported) and ONNX Runtime "
                        "(default: $OMP_NUM_THREADS, else the physical cores)")


def data_dir_flag(p) -> None:
    p.add_argument("--data-dir", help="Fashion-MNIST folder (default: $VGGBENCH_DATA, else ~/.cache/vggbench)")


def bench_flags(p, backends_help: str) -> None:
    """Flags shared by `bench` and `compare` (everything that decides how rows are measured)."""
    from vggbench.bench.results import MODES
    from vggbench.bench.stats import CPU_ROUNDS, GPU_ROUNDS
    from vggbench.bench.sweep import DEFAULT_BATCH_SIZES, DEFAULT_MODES, DEFAULT_WARMUP
    from vggbench.bench.worker import DEFAULT_TIMEOUT_S
    from vggbench.data import TEST_IMAGES
    from vggbench.runtimes.backends import BACKENDS, PRECISIONS

    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), metavar="BACKEND",
                   help=f"{backends_help}; from: {', '.join(BACKENDS)}")
    p.add_argument("--batch-sizes", type=batch_size, nargs="+", default=list(DEFAULT_BATCH_SIZES), metavar="N",
                   help=f"batch sizes to time (default {' '.join(map(str, DEFAULT_BATCH_SIZES))})")
    p.add_argument("--precisions", nargs="+", choices=list(PRECISIONS), metavar="P",
                   help=f"from {', '.join(PRECISIONS)} (default: each backend's own that the run dir holds: "
                        "fp32/opt/int8 on ort-cpu, fp32/bf16/int8 on openvino, fp32/fp16 on ort-cuda/ort-trt, "
                        "fp32/bf16 on mxnet-hybrid, fp32 on mxnet; bf16 only where the CPU has bf16 units, and "
                        "a footnote where a backend has no bf16)")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(DEFAULT_MODES),
                   help="end-to-end (host numpy in/out) and/or compute-only (input pre-staged on device); default both")
    p.add_argument("--warmup", type=nonnegative_int, default=DEFAULT_WARMUP, metavar="N",
                   help=f"untimed calls per row before its first round; they also size the rounds "
                        f"(default {DEFAULT_WARMUP})")
    p.add_argument("--rounds", type=positive_int, metavar="N",
                   help="exactly N interleaved rounds per row instead of rounds until the CI target")
    p.add_argument("--iters", type=positive_int, metavar="N", help="exactly N calls per round (default: sized by time)")
    p.add_argument("--target-ci", type=positive_float, metavar="PCT",
                   help=f"stop a row when its 95%% CI is within +-PCT%% of its median "
                        f"(default {CPU_ROUNDS.target_ci_pct:g})")
    p.add_argument("--max-seconds", type=positive_float, metavar="S",
                   help=f"per-row budget of its own rounds; a row over it is marked noisy (default "
                        f"{CPU_ROUNDS.max_seconds:g} CPU, {GPU_ROUNDS.max_seconds:g} GPU)")
    p.add_argument("--round-seconds", type=positive_float, metavar="S",
                   help=f"round length (default {CPU_ROUNDS.round_min_s:g} CPU, {GPU_ROUNDS.round_min_s:g} GPU)")
    threads_flag(p)
    p.add_argument("--accuracy-limit", type=nonnegative_int, metavar="N",
                   help=f"accuracy on a fixed random N test images (default all {TEST_IMAGES}; 0 skips the pass)")
    data_dir_flag(p)
    p.add_argument("--peak-sizes", type=positive_int, nargs="+", metavar="N",
                   help="sides of the square GEMMs whose best is the attainable peak (default 1024 2048 3072 on "
                        "a CPU, 4096 8192 on a GPU)")
    p.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"kill a backend's worker when one step takes S seconds; its rows become errors "
                        f"(default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--gpu", type=nonnegative_int, default=0, metavar="N", help="GPU index for GPU backends (default 0)")
    p.add_argument("--graph-optimization", choices=("all", "basic", "none"), default="all",
                   help="ONNX Runtime graph optimisation level (default all)")
    p.add_argument("--cudnn-conv-algo-search", choices=("EXHAUSTIVE", "HEURISTIC", "DEFAULT"), default="EXHAUSTIVE",
                   help="ort-cuda/ort-trt cuDNN convolution algorithm search (default EXHAUSTIVE)")
    p.add_argument("--no-cudnn-max-workspace", action="store_true",
                   help="ort-cuda/ort-trt: do not let cuDNN use its maximum workspace")
    p.add_argument("--gpu-mem-limit", type=positive_int, metavar="BYTES", help="ort-cuda/ort-trt arena limit")
    p.add_argument("--python", action="append", type=backend_python, default=[], metavar="BACKEND=PATH",
                   help="run BACKEND's worker with the python of another venv, e.g. mxnet-gpu=.venv-mx/bin/python "
                        "(MXNet's CUDA 11 stack and ONNX Runtime's CUDA 12 stack cannot share one venv; "
                        "docs/gpus.md); repeatable, recorded in the results")
    p.add_argument("--json", metavar="FILE", help="write the results (rows + environment) as JSON")
    p.add_argument("--columns", choices=("default", "all"), default="default",
                   help="default: throughput ±CI, x baseline, p99, top-1 and Δ, memory and model size within 120 "
                        "characters; all: every column (%% peak, load and first-call times, memory parts, "
                        "energy). The JSON always holds every field")


def bench_kwargs(args) -> dict:
    return dict(
        batch_sizes=args.batch_sizes, precisions=args.precisions, modes=args.modes, warmup=args.warmup,
        rounds=args.rounds, iters=args.iters, target_ci_pct=args.target_ci, max_seconds=args.max_seconds,
        round_s=args.round_seconds, threads=args.threads, accuracy_limit=args.accuracy_limit,
        data_dir=args.data_dir, peak_sizes=args.peak_sizes, timeout_s=args.timeout, gpu=args.gpu,
        log=log.info, worker_python=dict(args.python),
        runtime_options={"graph_optimization": args.graph_optimization,
                         "cudnn_conv_algo_search": args.cudnn_conv_algo_search,
                         "cudnn_conv_use_max_workspace": not args.no_cudnn_max_workspace,
                         "gpu_mem_limit": args.gpu_mem_limit})


def print_and_write(results, args, pivot: bool) -> int:
    from vggbench.bench.report import render_results
    from vggbench.bench.results import exit_code
    from vggbench.workflows import write_outputs

    print(render_results(results, pivot=pivot, columns=getattr(args, "columns", "default")))
    for line in write_outputs(results, args.json, getattr(args, "csv", None), getattr(args, "markdown", None),
                              getattr(args, "plot", None)):
        print(line)
    return exit_code(results["rows"])
