"""Multi-stage orchestration: ``compare`` (optionally training what is missing), ``train-export
--optimize``, the zoo listing and the lesson's exercises.

Stages meet only at run dirs: this module calls each stage's public entry point
(``train.train_export``, ``optimize.optimize_run_dir``, ``sweep.sweep``) and hands run dir paths
between them; rendering is :mod:`vggbench.bench.report`'s, writing files :mod:`vggbench.artifacts`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from vggbench.artifacts.io import write_bytes_atomic
from vggbench.artifacts.layout import HISTORY_FILE, MANIFEST_NAME, check_output_file
from vggbench.artifacts.manifest import read_manifest
from vggbench.bench import results as R
from vggbench.errors import VggbenchError
from vggbench.messages import say

Log = Callable[[str], None]


def zoo_rows(sizes: Iterable[int] = (96, 224), width_ratio: float = 1.0, classes: int = 10,
             in_channels: int = 1) -> List[Dict[str, Any]]:
    """One row per model of the zoo: config, and parameters and GFLOPs per input size.

    Models that ``width_ratio`` or a size does not fit (e.g. LeNet's 6-channel layer at ratio 8)
    are left out; when none fits, the last model's one-line error is raised (the zoo ends with
    AlexNet, whose 96-channel layer allows the largest ratio).

    Parameters:
        sizes: input sizes.
        width_ratio: conv channels divided by this.
        classes: output classes.
        in_channels: image channels.
    """
    from vggbench.models import MODEL_NAMES, check_input_size, check_width_ratio, model_stats

    usable = []
    for name in MODEL_NAMES:  # a model whose narrowest layer cannot be divided that far is left out
        try:
            check_width_ratio(name, width_ratio, "--width-ratio")
            usable += [name] if all(check_input_size(size, name, "--sizes") for size in sizes) else []
        except VggbenchError as err:
            first_error = err
    if not usable:
        raise first_error
    rows = []
    for name in usable:
        per_size = [model_stats(name, size, classes, in_channels, width_ratio) for size in sizes]
        row = {"model": name, "config": per_size[0]["config"], "width_ratio": width_ratio,
               "classes": classes, "in_channels": in_channels}
        for stats in per_size:
            row[f"params_{stats['input_size']}"] = stats["params"]
            row[f"gflops_{stats['input_size']}"] = stats["gflops"]
        rows.append(row)
    return rows


def train_export_and_optimize(model: str, optimize: bool = False, **train_options) -> Optional[Path]:
    """``vggbench train-export [--optimize]``: train, export, and optionally build the variants.

    Parameters:
        model: model name.
        optimize: also run ``vggbench optimize`` on the new run dir.
        train_options: :func:`vggbench.train.run.train_export`'s keyword arguments.
    """
    from vggbench.train.run import train_export

    run_dir = train_export(model, **train_options)
    if optimize and run_dir is not None:  # None: a distributed worker other than rank 0
        from vggbench.export.variants import optimize_run_dir

        optimize_run_dir(run_dir, int8=True, fp16=True, data_dir=train_options.get("data_dir"),
                         progress=train_options.get("progress", True),
                         threads=train_options.get("threads"))
    return run_dir


def train_export_command(model: str, size: int, runs_dir: str = "runs", width_ratio: Optional[float] = None) -> str:
    """The exact command that makes the missing run dir for ``model`` at ``size``.

    Parameters:
        model, size, width_ratio: what the run should be.
        runs_dir: where run dirs live.
    """
    command = f"vggbench train-export {model} --size {size}"
    if width_ratio is not None and width_ratio != 1.0:
        command += f" --width-ratio {width_ratio:g}"
    if str(runs_dir) != "runs":
        command += f" --out {runs_dir}"
    return command


def find_run_dirs(runs_dir="runs") -> List[str]:
    """Run dirs (folders holding manifest.json) directly under ``runs_dir``, sorted."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return [str(p.parent) for p in sorted(root.glob(f"*/{MANIFEST_NAME}"))]


def check_outputs(paths: Iterable[Optional[str]]) -> None:
    """Refuse unwritable output files before any measuring (one line naming the path)."""
    for path in paths:
        if path:
            check_output_file(path)


def write_outputs(results: Dict[str, Any], json_path=None, csv_path=None, markdown_path=None,
                  plot_path=None) -> List[str]:
    """Write the results document and its renderings, each atomically; returns ``wrote ...`` lines.

    Parameters:
        results: a results document.
        json_path, csv_path, markdown_path, plot_path: files to write (None = skip).
    """
    from vggbench.bench import report

    written = []
    if json_path:
        R.write_results(json_path, results)
        written.append(f"wrote results JSON: {json_path}")
    if csv_path:
        write_bytes_atomic(csv_path, report.csv_text(results["rows"]).encode())
        written.append(f"wrote CSV: {csv_path}")
    if markdown_path:
        write_bytes_atomic(markdown_path, report.markdown_report(results).encode())
        written.append(f"wrote Markdown: {markdown_path}")
    if plot_path:
        write_bytes_atomic(plot_path, report.throughput_png(results["rows"]))
        written.append(f"wrote plot: {plot_path}")
    return written


def _select_run_dirs(run_dirs, models, sizes, width_ratio, runs_dir):
    explicit = bool(run_dirs)
    candidates = [str(d) for d in run_dirs] if explicit else find_run_dirs(runs_dir)
    chosen, have = [], set()
    for run_dir in candidates:
        manifest = read_manifest(run_dir)
        if models and manifest["model"] not in models:
            continue
        if sizes and manifest["input_size"] not in sizes:
            continue
        if width_ratio is not None and manifest.get("width_ratio", 1.0) != width_ratio:
            continue
        chosen.append(run_dir)
        have.add((manifest["model"], manifest["input_size"]))
    return explicit, chosen, have


def compare(run_dirs: Optional[Sequence] = None, models: Optional[Sequence[str]] = None,
            sizes: Optional[Sequence[int]] = None, backends: Optional[Sequence[str]] = None,
            runs_dir="runs", width_ratio: Optional[float] = None, train: bool = False,
            train_options: Optional[Dict] = None, from_files: Optional[Sequence] = None,
            log: Optional[Log] = None, say: Log = print, **bench_options) -> Dict[str, Any]:
    """``vggbench compare``: one results document across models, sizes and backends.

    With ``from_files`` the rows come from saved results; otherwise the run dirs (given, or all in
    ``runs_dir``) matching ``models``/``sizes``/``width_ratio`` are benchmarked with
    :func:`vggbench.bench.sweep`. A requested model/size with no run dir is trained with
    ``train=True``, else its exact train-export command is said.

    Parameters:
        run_dirs: run dirs to compare (default: every run dir in ``runs_dir``).
        models, sizes, backends: filters (and, with ``train``, what to make).
        runs_dir: where run dirs live (and where ``train`` writes).
        width_ratio: only run dirs with this width ratio (and train with it).
        train: train-export missing model/size pairs.
        train_options: extra :func:`vggbench.train.run.train_export` arguments for ``train``.
        from_files: saved results JSON files instead of measuring.
        log: progress lines of the sweep (None = the sweep's default).
        say: where the missing-run suggestions go.
        bench_options: :func:`vggbench.bench.sweep`'s keyword arguments.
    """
    from vggbench.models import check_model_name

    for model in models or ():
        check_model_name(model)
    if from_files:
        if run_dirs or train:
            raise VggbenchError("--from rebuilds tables from saved results; do not also give run dirs or --train")
        results = R.load_results(from_files)
        results["rows"] = R.filter_rows(results["rows"], models, sizes, backends)
        if not results["rows"]:
            raise VggbenchError(f"no rows in {', '.join(map(str, from_files))} match the "
                                f"--models/--sizes/--backends filter")
        return results
    from vggbench.bench import sweep

    explicit, chosen, have = _select_run_dirs(run_dirs, models, sizes, width_ratio, runs_dir)
    wanted = []
    if models or sizes:
        for model in models or sorted({m for m, _ in have}):
            for size in sizes or (96, 224):
                if (model, size) not in have:
                    wanted.append((model, size))
    suggestions = []
    for model, size in wanted:
        if train:
            from vggbench.train.run import train_export

            options = dict(train_options or {})
            if width_ratio is not None:
                options["width_ratio"] = width_ratio
            chosen.append(str(train_export(model, input_size=size, out=str(runs_dir), **options)))
        else:
            suggestions.append(f"no run for {model} at {size}: make it with `"
                               f"{train_export_command(model, size, runs_dir, width_ratio)}` (or add --train)")
    for line in suggestions:
        say(line)
    if not chosen:
        hint = "; ".join(suggestions) or (
            f"make one with `{train_export_command('vgg11', 96, runs_dir, width_ratio)}`")
        where = "the given run dirs" if explicit else f"{runs_dir}/"
        raise VggbenchError(f"nothing to compare: no run dir in {where} matches; {hint}")
    kwargs = dict(bench_options)
    if log is not None:
        kwargs["log"] = log
    results = sweep.sweep(chosen, backends=backends, **kwargs)
    results["settings"]["missing_runs"] = suggestions
    return results


# --- the lesson's exercises -------------------------------------------------------------------------

# (title, [(model, input_size, width_ratio)]): what `vggbench exercises` trains, at equal recipes.
# Width ratios: VGGs at 1/8 (the course's small-hardware trick), AlexNet at 1/4 (its first layers
# are 96-384 wide), LeNet full (6-16 channels). The baselines use the lesson's plain VGG-11; depth
# and size use the batch-norm variants, because plain VGG-16/19 from Xavier init stay at chance
# accuracy for the first epochs at the lesson's lr 0.05 (measured: vgg16 at width 1/8, 2 epochs of
# 10,000 images: 10.00%), which would compare nothing but the failure to start.
EXERCISES = (
    ("baselines", "LeNet vs AlexNet vs VGG-11 after the same epochs at 96",
     (("lenet", 96, 1.0), ("alexnet", 96, 4.0), ("vgg11", 96, 8.0))),
    ("depth", "VGG-11/13/16/19 (batch norm) at width 1/8: parameters, GFLOPs, speed, accuracy",
     (("vgg11_bn", 96, 8.0), ("vgg13_bn", 96, 8.0), ("vgg16_bn", 96, 8.0), ("vgg19_bn", 96, 8.0))),
    ("size", "224 -> 96 for VGG-11 (batch norm): GFLOPs, speed and accuracy after equal training",
     (("vgg11_bn", 96, 8.0), ("vgg11_bn", 224, 8.0))),
)


def _trained_run(model: str, input_size: int, width_ratio: float, runs_dir: Path, train_options: Dict[str, Any],
                 log: Log) -> str:
    """The run dir for one exercise model: reused when a finished one with the same recipe exists."""
    from vggbench.artifacts.layout import default_run_name
    from vggbench.train.run import train_export

    run_dir = runs_dir / default_run_name(model, input_size, width_ratio)
    if (run_dir / MANIFEST_NAME).is_file():
        recipe = read_manifest(run_dir).get("recipe", {})
        same = all(recipe.get(key) == value for key, value in train_options.items()
                   if key in ("epochs", "batch_size", "lr", "seed", "train_limit"))
        if same:
            log(f"exercises: reusing {run_dir}")
            return str(run_dir)
    log(f"exercises: training {model} at {input_size} (width ÷{width_ratio:g})")
    return str(train_export(model, input_size=input_size, width_ratio=width_ratio, out=str(runs_dir), force=True,
                            **train_options))


def exercises(out_dir, epochs: int = 2, train_limit: Optional[int] = 10000, test_limit: Optional[int] = None,
              data_dir: Optional[str] = None, threads: Optional[int] = None, progress: bool = True,
              only: Optional[Sequence[str]] = None, log: Log = say, **bench_options) -> Dict[str, Any]:
    """``vggbench exercises``: train, measure and publish the lesson's exercises.

    Trains every model of :data:`EXERCISES` with the same recipe (``epochs`` over a fixed
    ``train_limit`` subset), benchmarks them all in one interleaved sweep (mxnet-hybrid and
    ort-cpu, batch 16, end to end), and writes into ``out_dir``: ``exercises.md`` (the three
    tables), ``exercises.json`` (the results document plus the training histories) and
    ``baselines.png`` (test accuracy per epoch of LeNet, AlexNet and VGG-11 on one plot).
    Finished runs with the same recipe in ``out_dir/runs`` are reused.

    Parameters:
        out_dir: where the runs and the published files go.
        epochs, train_limit, test_limit: the training recipe every model gets.
        data_dir: Fashion-MNIST folder.
        threads: CPU threads for training and benchmarking.
        progress: tqdm bars while training.
        only: names of the exercises to run (default all: baselines, depth, size).
        log: progress lines.
        bench_options: :func:`vggbench.bench.sweep` overrides (e.g. ``rounds``).
    """
    from vggbench.bench import report, sweep

    names = [name for name, _, _ in EXERCISES]
    for name in only or ():
        if name not in names:
            raise VggbenchError(f"unknown exercise {name!r}; choose from {', '.join(names)}")
    chosen = [item for item in EXERCISES if not only or item[0] in only]
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    train_options = {"epochs": epochs, "train_limit": train_limit, "test_limit": test_limit, "data_dir": data_dir,
                     "threads": threads, "progress": progress}
    run_dirs: Dict[tuple, str] = {}
    for _, _, entries in chosen:
        for entry in entries:
            if entry not in run_dirs:
                run_dirs[entry] = _trained_run(*entry, runs_dir, train_options, log)
    options = dict({"backends": ["mxnet-hybrid", "ort-cpu"], "precisions": ["fp32"], "batch_sizes": [16],
                    "modes": ["end-to-end"], "accuracy_limit": test_limit, "threads": threads,
                    "data_dir": data_dir}, **bench_options)
    results = sweep.sweep(list(run_dirs.values()), log=log, **options)
    import json

    histories = {}
    for run_dir in run_dirs.values():
        history = json.loads((Path(run_dir) / HISTORY_FILE).read_text()).get("epochs", [])
        histories[run_dir] = [{"epoch": row["epoch"], "test_accuracy": row["test_accuracy"]} for row in history]
    published = {"results": results, "histories": histories,
                 "exercises": [{"name": name, "title": title, "run_dirs": [run_dirs[e] for e in entries]}
                               for name, title, entries in chosen]}
    R.write_results(out_dir / "exercises.json", dict(results, exercises=published["exercises"],
                                                      histories=histories))
    baselines = next((item for item in chosen if item[0] == "baselines"), None)
    if baselines:
        write_bytes_atomic(out_dir / "baselines.png", report.accuracy_curves_png(
            {run_dirs[entry]: f"{entry[0]} (÷{entry[2]:g})" for entry in baselines[2]}, histories))
    write_bytes_atomic(out_dir / "exercises.md", report.exercises_markdown(published).encode())
    return published
