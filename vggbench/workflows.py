"""Multi-stage orchestration: ``compare`` (optionally training what is missing), ``train-export
--optimize``, the zoo listing and the lesson's exercises.

Stages meet only at run dirs: this module calls each stage's public entry point
(``train.train_export``, ``optimize.optimize_run_dir``, ``sweep.sweep``) and hands run dir paths
between them; rendering is :mod:`vggbench.bench.report`'s, writing files :mod:`vggbench.artifacts`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from vggbench.artifacts.io import write_bytes_atomic, write_json_atomic
from vggbench.artifacts.layout import MANIFEST_NAME, check_output_file
from vggbench.artifacts.manifest import read_history, read_manifest
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


def check_outputs(paths: Iterable[Optional[str]],
                  flags: Sequence[str] = ("--json", "--csv", "--markdown", "--plot")) -> None:
    """Refuse unwritable output files, and two outputs that are one file, before any measuring.

    Parameters:
        paths: the output files in the order of ``flags`` (None = not asked for).
        flags: the option naming each path, for the one-line error.

    Two outputs are the same file when their resolved paths are equal (``a.json`` and
    ``./x/../a.json``, or through a symbolic link) or they already exist as one file (a hard link).
    """
    seen: List[tuple] = []
    for flag, path in zip(flags, paths):
        if not path:
            continue
        check_output_file(path, flag)
        resolved = os.path.realpath(os.path.expanduser(path))
        for other_flag, other_path, other_resolved in seen:
            same = resolved == other_resolved
            if not same and os.path.exists(resolved) and os.path.exists(other_resolved):
                same = os.path.samefile(resolved, other_resolved)
            if same:
                raise VggbenchError(f"{other_flag} {other_path} and {flag} {path} are the same file; give each "
                                    f"output its own file name")
        seen.append((flag, path, resolved))


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
        write_bytes_atomic(plot_path, report.throughput_png(results["rows"],
                                                            recommendations=results.get("recommendations")))
        written.append(f"wrote plot: {plot_path}")
        if any(r.memory_peak_rss_bytes is not None for r in results["rows"]):
            memory_path = memory_plot_path(plot_path)
            write_bytes_atomic(memory_path, report.memory_scatter_png(results["rows"]))
            written.append(f"wrote plot: {memory_path}")
    return written


def memory_plot_path(plot_path) -> Path:
    """Where ``--plot FILE.png`` puts the throughput-vs-memory scatter: ``FILE-memory.png`` beside it."""
    path = Path(plot_path)
    return path.with_name(f"{path.stem}-memory{path.suffix or '.png'}")


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
            log: Optional[Log] = None, say: Log = print, max_accuracy_drop_points: Optional[float] = None,
            **bench_options) -> Dict[str, Any]:
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
        max_accuracy_drop_points: the recommendation's accuracy budget (percentage points of top-1
            below fp32; None = :data:`vggbench.bench.recommend.DEFAULT_MAX_ACCURACY_DROP_POINTS`).
        bench_options: :func:`vggbench.bench.sweep`'s keyword arguments.

    The document ends with ``recommendations`` (:func:`vggbench.bench.recommend.recommend`): per
    batch size and mode, the fastest backend x precision within the accuracy budget.
    """
    from vggbench.bench.recommend import DEFAULT_MAX_ACCURACY_DROP_POINTS, check_max_accuracy_drop
    from vggbench.models import check_model_name

    budget = check_max_accuracy_drop(DEFAULT_MAX_ACCURACY_DROP_POINTS if max_accuracy_drop_points is None
                                     else max_accuracy_drop_points)

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
        return _with_recommendations(results, budget)
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
    return _with_recommendations(results, budget)


def _with_recommendations(results: Dict[str, Any], budget: float) -> Dict[str, Any]:
    from vggbench.bench.recommend import recommend

    results["settings"]["max_accuracy_drop_points"] = budget
    results["recommendations"] = recommend(results["rows"], budget)
    return results


# --- the lesson's exercises -------------------------------------------------------------------------

# (name, title, [(model, input_size, width_ratio, recipe)]): what `vggbench exercises` trains, each
# model with its own lesson's recipe (vggbench.train.recipes) until its held-out accuracy plateaus.
# Width ratios: VGGs at 1/8 (the course's small-hardware trick), AlexNet at 1/4 (its first layers
# are 96-384 wide), LeNet full (6-16 channels). Plain VGG-16/19 also run with the better start
# (He init + 1-epoch warm-up): from the lesson's Xavier start at lr 0.05 they can die at chance.
EXERCISES = (
    ("baselines", "Train longer: LeNet vs AlexNet vs VGG-11, each with its lesson's recipe, to its plateau (96 px)",
     (("lenet", 96, 1.0, "lenet"), ("alexnet", 96, 4.0, "alexnet"), ("vgg11", 96, 8.0, "vgg"))),
    ("depth", "VGG-11/13/16/19 (paper Table 1), plain and with batch norm, width 1/8, each to its plateau",
     (("vgg11", 96, 8.0, "vgg"), ("vgg13", 96, 8.0, "vgg"), ("vgg16", 96, 8.0, "vgg"),
      ("vgg16", 96, 8.0, "vgg-he-warmup"), ("vgg19", 96, 8.0, "vgg"), ("vgg19", 96, 8.0, "vgg-he-warmup"),
      ("vgg11_bn", 96, 8.0, "vgg"), ("vgg13_bn", 96, 8.0, "vgg"), ("vgg16_bn", 96, 8.0, "vgg"),
      ("vgg19_bn", 96, 8.0, "vgg"))),
    ("size", "224 vs 96 for VGG-11 at equal convergence: both to their plateau, and the time to the same accuracy",
     (("vgg11", 96, 8.0, "vgg"), ("vgg11", 224, 8.0, "vgg"))),
)
# How `vggbench exercises` trains by default: a fixed 10,000-image training subset (a tenth held
# out to watch for the plateau), every epoch tested on all 10,000 test images; at most 15 epochs
# keeps the whole default set within about two hours on 2 idle vCPUs (docs/exercises.md).
EXERCISE_DEFAULTS = dict(train_limit=10000, holdout=0.1, patience=3, min_delta=0.002, max_epochs=15)
# A model whose best accuracy stays below this learned nothing; it sets no common accuracy.
LEARNED_ACCURACY = 0.5
REPRODUCTION_RECIPE = "d2lzh-pytorch-vgg11"


def exercise_run_name(model: str, input_size: int, width_ratio: float, recipe: str) -> str:
    """The run dir name of one exercise model (``train-export``'s default name for that recipe)."""
    from vggbench.artifacts.layout import default_run_name
    from vggbench.train.recipes import recipe_for_model

    return default_run_name(model, input_size, width_ratio) + ("" if recipe == recipe_for_model(model) else f"-{recipe}")


def _plan_entry(entry, runs_dir: Path, settings: Dict[str, Any]) -> Dict[str, Any]:
    """What one exercise model needs: reuse a finished run with the same recipe, resume a matching
    checkpoint, or train from the start."""
    from vggbench.train import RESUME_MUST_MATCH, read_checkpoint
    from vggbench.train.recipes import resolve_recipe

    model, input_size, width_ratio, recipe_name = entry
    recipe, _ = resolve_recipe(model, recipe_name, input_size=input_size, width_ratio=width_ratio,
                               epochs=settings["max_epochs"], train_limit=settings["train_limit"],
                               holdout=settings["holdout"], until_plateau=True, patience=settings["patience"],
                               min_delta=settings["min_delta"], seed=settings["seed"])
    run_dir = runs_dir / exercise_run_name(*entry)
    wanted = recipe.asdict()
    plan = {"entry": entry, "run_dir": str(run_dir), "recipe": recipe, "action": "train", "epochs_done": 0}
    if (run_dir / MANIFEST_NAME).is_file():
        manifest = read_manifest(run_dir)
        if manifest.get("recipe") == wanted and manifest.get("test_limit") == settings["test_limit"]:
            plan.update(action="reuse", epochs_done=manifest.get("epochs_trained", 0))
            return plan
    try:
        checkpoint = read_checkpoint(run_dir)
    except VggbenchError:
        checkpoint = None
    if checkpoint and all(checkpoint["recipe"].get(key) == wanted[key] for key in RESUME_MUST_MATCH) \
            and checkpoint["epoch"] <= recipe.epochs:
        plan.update(action="resume", epochs_done=checkpoint["epoch"])
    return plan


def _calibrate(recipe, train_split, eval_images) -> Dict[str, float]:
    """Training and evaluation images/s of ``recipe`` on this machine now: one warm-up batch,
    then two timed batches, and one timed evaluation of ``eval_images``.

    Also the same speeds as this process's CPU time allows on ``threads`` idle cores
    (``quiet_*``): images / (CPU seconds / threads). On a machine shared with other jobs that is
    the estimate for a quiet one (an upper bound on speed: it assumes the threads scale).
    """
    import os
    import time

    from vggbench import data
    from vggbench.platform.mxnet import import_mxnet, mxnet_threads
    from vggbench.train import build_network, build_trainer, evaluate, train_epoch

    mx = import_mxnet()
    contexts = [mx.cpu()]
    net = build_network(recipe, contexts)
    trainer = build_trainer(net, recipe, steps_per_epoch=100)
    x, y = train_split
    batch = recipe.batch_size
    loss = recipe.make_loss()
    train_epoch(net, trainer, loss, data.data_loader(x[:batch], y[:batch], recipe.input_size, batch, shuffle=False),
                contexts, 1, 1, recipe.lr, progress=False)
    cpu = lambda: sum(os.times()[:2])  # noqa: E731  this process's user + system seconds
    cpu_start = cpu()
    stats = train_epoch(net, trainer, loss, data.data_loader(x[:2 * batch], y[:2 * batch], recipe.input_size, batch,
                                                             shuffle=False), contexts, 1, 1, recipe.lr, progress=False)
    train_cpu_s, cpu_start, start = cpu() - cpu_start, cpu(), time.perf_counter()
    try:
        evaluate(net, eval_images[0], eval_images[1], recipe.input_size, contexts)
    except VggbenchError:
        pass  # diverged calibration weights still measure the speed
    eval_s, eval_cpu_s = time.perf_counter() - start, cpu() - cpu_start
    threads = mxnet_threads() or 1
    return {"train_images_per_s": stats["images_per_s"], "eval_images_per_s": len(eval_images[1]) / eval_s,
            "quiet_train_images_per_s": stats["train_images"] * threads / max(train_cpu_s, 1e-9),
            "quiet_eval_images_per_s": len(eval_images[1]) * threads / max(eval_cpu_s, 1e-9), "threads": threads}


def _estimate(plans: List[Dict[str, Any]], settings: Dict[str, Any], data_dir, log: Log) -> Dict[str, Any]:
    """Seconds the trainings still need, at least (each stops at its first chance: patience + 1
    epochs) and at most (each runs ``max_epochs``), from speeds calibrated here and now."""
    from vggbench import data
    from vggbench.platform.load import load_average

    todo = [plan for plan in plans if plan["action"] != "reuse"]
    if not todo:
        return {"low_s": 0.0, "high_s": 0.0, "quiet_low_s": 0.0, "quiet_high_s": 0.0, "per_run": {}}
    train_x, train_y = data.load_split(data_dir, True, settings["train_limit"], settings["seed"])
    test_count = min(settings["test_limit"] or data.TEST_IMAGES, data.TEST_IMAGES)
    images = int(round(len(train_y) * (1 - settings["holdout"])))
    eval_count = len(train_y) - images + test_count
    sample = (train_x[:256], train_y[:256])
    low = high = quiet_low = quiet_high = 0.0
    per_run: Dict[str, Dict[str, float]] = {}
    log(f"exercises: calibrating the training speed of {len(todo)} model(s) (a few batches each) for the estimate")
    for plan in todo:
        speed = _calibrate(plan["recipe"], (train_x, train_y), sample)
        epoch_s = images / speed["train_images_per_s"] + eval_count / speed["eval_images_per_s"]
        quiet_epoch_s = images / speed["quiet_train_images_per_s"] + eval_count / speed["quiet_eval_images_per_s"]
        first = max(0, settings["patience"] + 1 - plan["epochs_done"])
        rest = max(0, settings["max_epochs"] - plan["epochs_done"])
        per_run[plan["run_dir"]] = dict(speed, epoch_s=epoch_s, quiet_epoch_s=quiet_epoch_s)
        low, high = low + min(first, rest) * epoch_s, high + rest * epoch_s
        quiet_low, quiet_high = quiet_low + min(first, rest) * quiet_epoch_s, quiet_high + rest * quiet_epoch_s
    return {"low_s": low, "high_s": high, "quiet_low_s": quiet_low, "quiet_high_s": quiet_high, "per_run": per_run,
            "load_average": load_average(), "threads": speed["threads"]}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _exercise_rows(exercise, plans: Dict[tuple, Dict[str, Any]], histories: Dict[str, List[Dict[str, Any]]]
                   ) -> Dict[str, Any]:
    """One exercise's table inputs: per run its recipe, stop, epochs and times, and the common
    accuracy (the lowest final test accuracy among the runs that learned) with each run's
    training time to reach it."""
    from vggbench.train.plateau import time_to_accuracy

    name, title, entries = exercise
    runs = []
    for entry in entries:
        plan = plans[entry]
        manifest = read_manifest(plan["run_dir"])
        history = histories[plan["run_dir"]]
        stop = manifest.get("stop") or {}
        runs.append({"run_dir": plan["run_dir"], "model": entry[0], "input_size": entry[1], "width_ratio": entry[2],
                     "recipe": entry[3], "test_accuracy": manifest["test_accuracy"],
                     "best_test_accuracy": max(row["test_accuracy"] for row in history),
                     "epochs_trained": len(history), "best_epoch": stop.get("best_epoch"),
                     "best_holdout_accuracy": stop.get("best_holdout_accuracy"), "stop_reason": stop.get("reason"),
                     "stop_line": stop.get("line"), "train_seconds": sum(row["seconds"] for row in history),
                     "train_images_per_epoch": history[-1]["train_images"]})
    learned = [run["test_accuracy"] for run in runs if run["best_test_accuracy"] >= LEARNED_ACCURACY]
    common = min(learned) if learned else None
    for run in runs:
        run["seconds_to_common"] = (time_to_accuracy(histories[run["run_dir"]], common) if common is not None
                                    else None)
    return {"name": name, "title": title, "run_dirs": [run["run_dir"] for run in runs], "runs": runs,
            "common_accuracy": common}


def exercises(out_dir, max_epochs: int = EXERCISE_DEFAULTS["max_epochs"],
              train_limit: Optional[int] = EXERCISE_DEFAULTS["train_limit"], test_limit: Optional[int] = None,
              holdout: float = EXERCISE_DEFAULTS["holdout"], patience: int = EXERCISE_DEFAULTS["patience"],
              min_delta: float = EXERCISE_DEFAULTS["min_delta"], data_dir: Optional[str] = None,
              threads: Optional[int] = None, progress: bool = True, only: Optional[Sequence[str]] = None,
              models: Optional[Sequence[str]] = None, estimate_only: bool = False, note: Optional[str] = None,
              log: Log = say, **bench_options) -> Dict[str, Any]:
    """``vggbench exercises``: train every exercise model to its plateau, measure, publish.

    Every model of :data:`EXERCISES` trains with its own lesson's recipe on the same fixed
    ``train_limit`` subset until the accuracy on the ``holdout`` part of it has not improved by
    more than ``min_delta`` for ``patience`` epochs (at most ``max_epochs``). Before training it
    says the plan and a time range calibrated on this machine; during it, which run of how many,
    and the time used and left. Finished runs with the same recipe in ``out_dir/runs`` are reused
    and interrupted ones resumed. Then one interleaved sweep (mxnet-hybrid and ort-cpu, batch 16,
    end to end) measures them all, and ``out_dir`` gets ``exercises.md`` (one table per
    exercise), ``exercises.json`` (results, histories, plan, settings) and one plot per exercise
    (``<name>.png``: test accuracy of all its models against epochs and training time).

    Parameters:
        out_dir: where the runs and the published files go.
        max_epochs, train_limit, test_limit, holdout, patience, min_delta: the training settings
            every model shares (its recipe gives the rest).
        data_dir: Fashion-MNIST folder. threads: CPU threads for training and benchmarking.
        progress: tqdm bars while training. only: names of the exercises to run (default all).
        models: train only these of the chosen exercises' models (a reduced run): a model name
            (every recipe of it) or ``model:recipe`` (``vgg16:vgg-he-warmup``).
        estimate_only: say the plan and the estimate, train nothing; returns ``{"plan", "estimate"}``.
        note: a paragraph for the top of ``exercises.md`` (e.g. the machine and what a reduced run left out).
        log: progress lines. bench_options: :func:`vggbench.bench.sweep` overrides (e.g. ``rounds``).
    """
    import time

    from vggbench.bench import report, sweep

    names = [name for name, _, _ in EXERCISES]
    for name in only or ():
        if name not in names:
            raise VggbenchError(f"unknown exercise {name!r}; choose from {', '.join(names)}")
    chosen = [(name, title, tuple(e for e in entries if not models or _selected(e, models)))
              for name, title, entries in EXERCISES if not only or name in only]
    chosen = [item for item in chosen if item[2]]
    if not chosen:
        choices = sorted({e[0] for _, _, entries in EXERCISES for e in entries} |
                         {f"{e[0]}:{e[3]}" for _, _, entries in EXERCISES for e in entries})
        raise VggbenchError(f"--models {' '.join(models or ())} leaves no exercise model; choose from "
                            f"{', '.join(choices)}")
    settings = {"train_limit": train_limit, "test_limit": test_limit, "holdout": holdout, "patience": patience,
                "min_delta": min_delta, "max_epochs": max_epochs, "seed": 0}
    out_dir = Path(out_dir)
    runs_dir = out_dir / "runs"
    plans: Dict[tuple, Dict[str, Any]] = {}
    for _, _, entries in chosen:
        for entry in entries:
            plans.setdefault(entry, _plan_entry(entry, runs_dir, settings))
    for plan in plans.values():
        log(f"exercises: {plan['action']:>6} {Path(plan['run_dir']).name} (recipe {plan['entry'][3]}"
            + (f", {plan['epochs_done']} epoch(s) done" if plan["epochs_done"] else "") + ")")
    estimate = _estimate(list(plans.values()), settings, data_dir, log)
    log(f"exercises: {sum(p['action'] != 'reuse' for p in plans.values())} training(s) to run; estimated "
        f"{_minutes(estimate['low_s'])} (every model stopping at its first chance, {patience + 1} epochs) to "
        f"{_minutes(estimate['high_s'])} (every model running {max_epochs} epochs), from speeds measured here now"
        + (f" (load average {estimate['load_average']['load_1min']:.1f})" if estimate.get("load_average") else "")
        + ", plus the benchmark sweep"
        + (f"; on {estimate['threads']} idle cores (from the CPU time used): {_minutes(estimate['quiet_low_s'])} to "
           f"{_minutes(estimate['quiet_high_s'])}" if estimate.get("threads") else ""))
    if estimate_only:
        return {"plan": [{k: v for k, v in p.items() if k != "recipe"} for p in plans.values()], "estimate": estimate}
    runs_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    todo = [plan for plan in plans.values() if plan["action"] != "reuse"]
    left = dict(estimate["per_run"])
    for index, plan in enumerate(todo, 1):
        model, input_size, width_ratio, recipe_name = plan["entry"]
        left_s = [sum(s["epoch_s"] for s in left.values()) * (patience + 1),
                  sum(s["epoch_s"] for s in left.values()) * max_epochs]
        log(f"exercises: [{index}/{len(todo)}] {plan['action']} {Path(plan['run_dir']).name}; "
            f"{_minutes(time.perf_counter() - started)} used, about {_minutes(left_s[0])} to {_minutes(left_s[1])} "
            f"of training left")
        from vggbench.train import train_export

        train_export(model, input_size=input_size, width_ratio=width_ratio, recipe=recipe_name,
                     epochs=max_epochs, train_limit=train_limit, test_limit=test_limit, holdout=holdout,
                     until_plateau=True, patience=patience, min_delta=min_delta, data_dir=data_dir, threads=threads,
                     progress=progress, out=str(runs_dir), name=Path(plan["run_dir"]).name,
                     resume=plan["action"] == "resume", force=plan["action"] == "train", log=log)
        left.pop(plan["run_dir"], None)
    training_wall_s = time.perf_counter() - started
    run_dirs = [plan["run_dir"] for plan in plans.values()]
    options = dict({"backends": ["mxnet-hybrid", "ort-cpu"], "precisions": ["fp32"], "batch_sizes": [16],
                    "modes": ["end-to-end"], "accuracy_limit": test_limit, "threads": threads,
                    "data_dir": data_dir}, **bench_options)
    results = sweep.sweep(run_dirs, log=log, **options)
    histories = {}
    for run_dir in run_dirs:
        rows = read_history(run_dir, read_manifest(run_dir))["epochs"]  # bounded, typed, sha256-checked
        histories[run_dir] = [{key: row.get(key) for key in ("epoch", "test_accuracy", "holdout_accuracy", "seconds",
                                                             "train_images")} for row in rows]
    published = {"results": results, "histories": histories, "settings": settings, "note": note,
                 "training_wall_s": training_wall_s, "estimate": {k: v for k, v in estimate.items() if k != "per_run"},
                 "exercises": [_exercise_rows(item, plans, histories) for item in chosen]}
    # a results document (its "settings" are the sweep's) plus the exercises' own fields beside them
    R.write_results(out_dir / "exercises.json", dict(results, exercise_settings=settings, **{
        k: v for k, v in published.items() if k not in ("results", "settings")}))
    for exercise in published["exercises"]:
        labels = {run["run_dir"]: _curve_label(run) for run in exercise["runs"]}
        write_bytes_atomic(out_dir / f"{exercise['name']}.png",
                           report.accuracy_curves_png(labels, histories, title=exercise["title"]))
    write_bytes_atomic(out_dir / "exercises.md", report.exercises_markdown(published).encode())
    return published


def _selected(entry: tuple, models: Sequence[str]) -> bool:
    """Whether ``--models`` picks an exercise entry: by model name (``vgg16``: every recipe of it)
    or by ``model:recipe`` (``vgg16:vgg-he-warmup``: that one)."""
    return entry[0] in models or f"{entry[0]}:{entry[3]}" in models


def _curve_label(run: Dict[str, Any]) -> str:
    from vggbench.train.recipes import recipe_for_model

    label = f"{run['model']} ÷{run['width_ratio']:g} {run['input_size']}px"
    return label + (f" ({run['recipe']})" if run["recipe"] != recipe_for_model(run["model"]) else "")


def reproduce(out_dir, train_limit: Optional[int] = None, epochs: Optional[int] = None,
              test_limit: Optional[int] = None, data_dir: Optional[str] = None, threads: Optional[int] = None,
              progress: bool = True, estimate_only: bool = False, log: Log = say) -> Dict[str, Any]:
    """``vggbench exercises --reproduce``: the published narrow VGG-11 run, with its own recipe.

    Trains :data:`REPRODUCTION_RECIPE` (vggbench.train.recipes: VGG-11 at width 1/8 with a
    512-wide dense head, 224 px, Adam lr 0.001, batch 64, PyTorch's default init, 5 epochs over
    all 60,000 training images, tested on all 10,000 after every epoch), says a calibrated time
    estimate first, resumes an interrupted run, and writes ``out_dir/reproduction.md`` and
    ``reproduction.json``: their test accuracy per epoch beside ours, and the seconds per epoch
    here. ``train_limit``/``epochs``/``test_limit`` shorten it (the page then says so).
    """

    from vggbench.bench import report
    from vggbench.train import train_export
    from vggbench.train.recipes import get_recipe, resolve_recipe

    named = get_recipe(REPRODUCTION_RECIPE)
    recipe, _ = resolve_recipe("vgg11", named.name, epochs=epochs, train_limit=train_limit)
    out_dir = Path(out_dir)
    name = exercise_run_name("vgg11", recipe.input_size, recipe.width_ratio, named.name)
    settings = {"train_limit": train_limit, "test_limit": test_limit, "holdout": 0.0, "patience": 1,
                "min_delta": 0.0, "max_epochs": recipe.epochs, "seed": 0}
    plan = {"entry": ("vgg11", recipe.input_size, recipe.width_ratio, named.name), "run_dir": str(out_dir / "runs" / name),
            "recipe": recipe, "action": "train", "epochs_done": 0}
    from vggbench.train import read_checkpoint

    if (Path(plan["run_dir"]) / MANIFEST_NAME).is_file() and read_manifest(plan["run_dir"]).get("recipe") == recipe.asdict():
        plan["action"] = "reuse"
    else:
        try:
            checkpoint = read_checkpoint(Path(plan["run_dir"]))
        except VggbenchError:
            checkpoint = None
        if checkpoint and checkpoint["recipe"] == recipe.asdict():
            plan.update(action="resume", epochs_done=checkpoint["epoch"])
    estimate = _estimate([plan], settings, data_dir, log)
    per_epoch = estimate["per_run"].get(plan["run_dir"], {}).get("epoch_s")
    quiet_epoch = estimate["per_run"].get(plan["run_dir"], {}).get("quiet_epoch_s")
    log(f"reproduce: {plan['action']} {name}: {named.summary}; "
        + (f"estimated {_minutes(estimate['high_s'])} ({_minutes(per_epoch)} per epoch) from speeds measured here now, "
           f"{_minutes(estimate['quiet_high_s'])} ({_minutes(quiet_epoch)} per epoch) on {estimate['threads']} idle "
           f"cores" if per_epoch else "nothing to train"))
    if estimate_only:
        return {"plan": {k: v for k, v in plan.items() if k != "recipe"}, "estimate": estimate}
    if plan["action"] != "reuse":
        train_export("vgg11", recipe=named.name, epochs=epochs, train_limit=train_limit, test_limit=test_limit,
                     data_dir=data_dir, threads=threads, progress=progress, out=str(out_dir / "runs"), name=name,
                     resume=plan["action"] == "resume", force=plan["action"] == "train", log=log)
    manifest = read_manifest(plan["run_dir"])
    history = read_history(plan["run_dir"], manifest)["epochs"]  # bounded, typed, sha256-checked
    published = {"recipe": manifest["recipe"], "recipe_source": manifest.get("recipe_source"),
                 "published_test_accuracy": list(named.published_test_accuracy),
                 "same_as_published": list(named.same_as_published),
                 "unlike_published": list(named.unlike_published),
                 "ours": [{"epoch": row["epoch"], "test_accuracy": row["test_accuracy"], "seconds": row["seconds"],
                           "train_images": row["train_images"], "test_images": row["test_images"]} for row in history],
                 "device": manifest.get("device"), "threads": manifest.get("threads"),
                 "timestamps": manifest.get("timestamps"), "model_stats": manifest.get("model_stats"),
                 "estimate": {k: v for k, v in estimate.items() if k != "per_run"}}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "reproduction.json", published)
    write_bytes_atomic(out_dir / "reproduction.md", report.reproduction_markdown(published).encode())
    return published
