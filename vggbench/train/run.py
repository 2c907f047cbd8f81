"""``run_train`` (a :class:`TrainJob`) and its keyword form ``train_export``: train, export into a
run dir; the run dir's lifecycle (single process and distributed).

Inputs are validated (when the job is made), the model built and the data loaded *before* the run dir is created, so a
bad name, bad data or a missing GPU leaves nothing behind. ``manifest.json`` is written last,
atomically, only when every artifact is complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench import artifacts, data, models
from vggbench.errors import VggbenchError
from vggbench.export import onnx as export
from vggbench.messages import say
from vggbench.platform.cpu import cpu_model
from vggbench.platform.environment import gpus, package_versions, utc_now
from vggbench.platform.mxnet import import_mxnet, mxnet_threads, mxnet_threads_source, resolve_threads
from vggbench.train import distributed, plateau
from vggbench.train.checkpoints import check_resumable, load_checkpoint, read_checkpoint, save_checkpoint
from vggbench.train.curves import plot_history
from vggbench.train.devices import resolve_contexts
from vggbench.train.job import ParityGate, TrainJob
from vggbench.train.loop import (
    NonFiniteLogits,
    build_network,
    build_trainer,
    check_finite_weights,
    evaluate,
    train_epoch,
)
from vggbench.train.recipe import (
    CHECKPOINT_DIR,
    CHECKPOINT_INDEX,
    CURVES_FILE,
    HISTORY_FILE,
    PARITY_IMAGES,
    RUN_FILES,
    Log,
    Recipe,
    epoch_seed,
)
from vggbench.train.recipes import describe_choice

# --- the run dir -----------------------------------------------------------------------------------

def _prepare_run_dir(run_dir: Path, recipe: Recipe, resume: bool, force: bool) -> Optional[Dict[str, Any]]:
    """Decide, without touching anything, what to do with an existing run dir.

    Returns the checkpoint to resume from (or None for a fresh start). Refuses to overwrite a
    finished run (has a manifest) or an unfinished one (has a checkpoint) unless ``--force``.
    """
    has_manifest = artifacts.manifest_path(run_dir).is_file()
    index = run_dir / CHECKPOINT_DIR / CHECKPOINT_INDEX
    if resume:  # never with force: a TrainJob refuses both
        checkpoint = read_checkpoint(run_dir)
        if checkpoint is None:
            raise VggbenchError(f"--resume: no checkpoint in {run_dir / CHECKPOINT_DIR}; run without --resume "
                                f"to start training")
        check_resumable(checkpoint, recipe, index)
        return checkpoint
    if force:
        return None
    if has_manifest:
        raise VggbenchError(f"{run_dir} already holds a finished run (manifest.json); choose another --name, "
                            f"delete the folder, or add --force to overwrite it")
    if index.is_file():
        raise VggbenchError(f"{run_dir} holds an unfinished run (checkpoint in {CHECKPOINT_DIR}/); add --resume "
                            f"to continue it, or --force to start over")
    return None


def train_export(model: str, *, input_size: Optional[int] = None, epochs: Optional[int] = None,
                 batch_size: Optional[int] = None, lr: Optional[float] = None,
                 width_ratio: Optional[float] = None, ctx: str = "auto",
                 train_limit: Optional[int] = None, test_limit: Optional[int] = None,
                 data_dir: Optional[str] = None, out: str = "runs", name: Optional[str] = None,
                 seed: int = 0, resume: bool = False, force: bool = False,
                 optimizer: Optional[str] = None, init: Optional[str] = None,
                 loss: str = "softmax_cross_entropy", recipe: Optional[str] = None,
                 warmup_epochs: Optional[float] = None, dense_units: Optional[int] = None,
                 holdout: Optional[float] = None, until_plateau: bool = False, patience: int = 3,
                 min_delta: float = 0.002,
                 threads: Optional[int] = None, parity_images: int = PARITY_IMAGES,
                 parity_max_abs_diff: float = export.PARITY_MAX_ABS_DIFF,
                 parity_min_top1_agreement: float = export.PARITY_MIN_TOP1_AGREEMENT,
                 kvstore: str = "device", dist_timeout_s: Optional[float] = None,
                 progress: bool = True, log: Log = say) -> Optional[Path]:
    """Train ``model`` on Fashion-MNIST and write a complete run dir; return its path (None on
    the workers other than rank 0 of a ``dist_*`` job, which write nothing).

    The keyword form of :func:`run_train`: the arguments become a :class:`TrainJob` (the recipe
    values its ``overrides``, ``parity_*`` its :class:`ParityGate`).

    Parameters:
        model, input_size, epochs, batch_size, lr, width_ratio, seed, train_limit, optimizer, init,
            loss, warmup_epochs, dense_units, holdout, until_plateau, patience, min_delta: the
            :class:`Recipe`; None takes the value of the named ``recipe``.
        recipe: a row of :data:`vggbench.train.recipes.RECIPES` (default: the model's lesson
            recipe: ``lenet``, ``alexnet`` or ``vgg``); said in one line.
        until_plateau: train until held-out accuracy (``holdout`` of the training subset, 0.1 by
            default) has not improved by more than ``min_delta`` for ``patience`` epochs, at most
            ``epochs``; why it stopped goes to history.json and the manifest.
        ctx: the devices (:func:`resolve_contexts`).
        threads: CPU threads for MXNet and ONNX Runtime; None: ``$OMP_NUM_THREADS``, else the
            physical cores. MXNet takes it only at its first import in the process (the CLI's
            case); the manifest records what both really used.
        test_limit: measure test accuracy on a fixed-seed subset of the test split (None: all).
        data_dir: the Fashion-MNIST files (``data.resolve_data_dir``).
        out, name: the run dir is ``out/name``; ``name`` defaults to
            ``artifacts.default_run_name`` (``vgg11-96``, ``vgg11-w8-96`` at width ratio 8).
        resume: continue from the run dir's last checkpoint.
        force: start over in a run dir that holds a run.
        parity_images, parity_max_abs_diff, parity_min_top1_agreement: the MXNet vs ONNX
            Runtime gate on the first test images.
        kvstore: how gradients are summed: ``device``/``local`` over ``ctx``'s devices, or a
            ``dist_*`` type: this process is one worker of a job (``vggbench launch`` or the
            ``DMLC_*`` variables; the rules are in :mod:`vggbench.train.distributed`).
        dist_timeout_s: a ``dist_*`` worker's bound on each KVStore wait
            (``distributed.resolve_timeout_s``).
        progress: show tqdm bars.
        log: where the summary lines go.

    Everything a user can get wrong is checked before the run dir is created.
    """
    job = TrainJob(model, recipe_name=recipe, overrides={
        "input_size": input_size, "width_ratio": width_ratio, "epochs": epochs, "batch_size": batch_size, "lr": lr,
        "optimizer": optimizer, "init": init, "warmup_epochs": warmup_epochs, "dense_units": dense_units,
        "holdout": holdout, "seed": seed, "train_limit": train_limit, "loss": loss, "until_plateau": until_plateau,
        "patience": patience, "min_delta": min_delta},
        out=out, name=name, resume=resume, force=force, data_dir=data_dir, test_limit=test_limit, ctx=ctx,
        threads=threads, kvstore=kvstore, dist_timeout_s=dist_timeout_s,
        parity=ParityGate(parity_images, parity_max_abs_diff, parity_min_top1_agreement))
    return run_train(job, progress=progress, log=log)


def run_train(job: TrainJob, progress: bool = True, log: Log = say) -> Optional[Path]:
    """Train ``job``'s model on Fashion-MNIST and write its run dir; return the run dir's path
    (None on the workers other than rank 0 of a ``dist_*`` job, which write nothing).

    Parameters:
        job: what to train and where; checked when it was made, so what is left to fail here is
            the machine's (devices, data files, the run dir's lock and contents).
        progress: show tqdm bars.
        log: where the summary lines go.

    The data is loaded and the network built before the run dir is created. ``manifest.json``
    is written last and only after the parity gate passes, so its presence means every file it
    lists is complete.
    """
    started = utc_now()
    recipe, named, run_dir, kvstore = job.recipe, job.recipe_source, job.run_dir, job.kvstore
    ctx, resume, force, data_dir, test_limit = job.ctx, job.resume, job.force, job.data_dir, job.test_limit
    parity_images = job.parity.images
    threads = resolve_threads(job.threads)[0]
    import_mxnet(threads)  # before anything else imports mxnet: its thread count is fixed then
    run_info = _run_info(test_limit, data_dir, started, threads, job.parity.max_abs_diff,
                         job.parity.min_top1_agreement)
    run_info["recipe_source"] = {"name": named.name, "summary": named.summary, "source": named.source}
    if job.is_distributed:  # this process is one worker of a job
        return _train_export_distributed(recipe, kvstore, ctx, run_dir, resume, force, data_dir, test_limit,
                                         parity_images, run_info, job.dist_timeout_s, progress, log)
    # one writer per run dir, held until the manifest is written; leftovers of a killed run go
    with artifacts.run_dir_lock(run_dir, "train-export") as lock:
        checkpoint = _claim_run_dir(lock, run_dir, recipe, resume, force, log)
        final_dir, run_dir = run_dir, _force_target(run_dir, force)  # --force builds beside the old run
        contexts, device_note = resolve_contexts(ctx)
        log(describe_choice(named, recipe, dict(job.overrides)))
        log(device_note)
        train_x, train_y = data.load_split(data_dir, True, recipe.train_limit, recipe.seed)
        test_x, test_y = data.load_split(data_dir, False, test_limit, recipe.seed)
        (train_x, train_y), holdout_split = plateau.split_holdout(train_x, train_y, recipe.holdout, recipe.seed)
        net = build_network(recipe, contexts)
        trainer = build_trainer(net, recipe, kvstore=kvstore,
                                steps_per_epoch=-(-len(train_y) // recipe.batch_size))
        created = not run_dir.exists()
        try:
            if checkpoint is not None:
                load_checkpoint(run_dir, checkpoint, net, trainer, contexts)
            history, steps = _open_run_dir(run_dir, checkpoint, recipe, log)
            log(f"training {recipe.model} (width ratio {recipe.width_ratio:g}) at {recipe.input_size}x{recipe.input_size} "
                f"on {len(train_y)} images (held out: {len(holdout_split[1])}), testing on {len(test_y)}; "
                f"{recipe.optimizer} lr {recipe.lr:g}, batch {recipe.batch_size}, init {recipe.init}, "
                + (f"until a plateau (patience {recipe.patience}, min delta {recipe.min_delta:g}), at most "
                   if recipe.until_plateau else "") + f"{recipe.epochs} epoch(s), seed {recipe.seed}")
            while (reason := _stop_reason(recipe, history)) is None:
                row, epoch_steps = _train_and_test_one_epoch(net, trainer, recipe, len(history) + 1, contexts,
                                                             (train_x, train_y), (test_x, test_y), progress,
                                                             holdout_split)
                _record_epoch(run_dir, net, trainer, recipe, history, steps, row, epoch_steps, log)
                created = False  # from here on the run dir holds a resumable checkpoint: keep it
        except BaseException:
            if (created or run_dir != final_dir) and run_dir.exists():  # the old run of a --force stays
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

        run_info["distributed"] = distributed.distributed_recipe_fields(distributed.DistInfo(kvstore), contexts,
                                                                         recipe.batch_size)
        run_info["stop"] = plateau.stop_summary(history, reason, recipe.until_plateau, recipe.patience,
                                                recipe.min_delta, recipe.epochs, recipe.classes)
        log(run_info["stop"]["line"])
        if run_dir == final_dir:
            return _export_run(run_dir, net, recipe, history, steps, contexts, test_x[:parity_images], run_info, log)
        try:
            _export_run(run_dir, net, recipe, history, steps, contexts, test_x[:parity_images], run_info, log)
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        log(f"replacing the previous run in {final_dir} with this one (--force)")
        return artifacts.swap_in(run_dir, final_dir)


def _force_target(run_dir: Path, force: bool) -> Path:
    """Where this run is built: ``run_dir`` itself, or with ``--force`` over a run dir that holds
    anything, a staging folder beside it (:func:`artifacts.force_staging_dir`), swapped in only
    when the new run is complete, so an interrupted ``--force`` loses nothing."""
    if force and run_dir.is_dir() and any(run_dir.iterdir()):
        return artifacts.force_staging_dir(run_dir)
    return run_dir


def _stop_reason(recipe: Recipe, history: List[Dict[str, Any]]) -> Optional[str]:
    """Why training stops after the epochs in ``history`` (:func:`plateau.stop_reason`), or None."""
    return plateau.stop_reason([row.get("holdout_accuracy", 0.0) for row in history], len(history), recipe.epochs,
                               recipe.until_plateau, recipe.patience, recipe.min_delta,
                               [row.get("train_loss") for row in history], recipe.classes)


def _run_info(test_limit: Optional[int], data_dir: Optional[str], started: str, threads: int,
              parity_max_abs_diff: float, parity_min_top1_agreement: float) -> Dict[str, Any]:
    """What the manifest records about the run beyond the recipe (:func:`train_export`'s parameters)."""
    return {"test_limit": test_limit, "data_dir": str(data.resolve_data_dir(data_dir)), "started": started,
            "threads": {"mxnet": mxnet_threads(), "mxnet_source": mxnet_threads_source(), "onnxruntime": threads},
            "parity_tolerance": {"max_abs_diff": parity_max_abs_diff,
                                 "min_top1_agreement": parity_min_top1_agreement}}


def _claim_run_dir(lock, run_dir: Path, recipe: Recipe, resume: bool, force: bool,
                   log: Log) -> Optional[Dict[str, Any]]:
    """Under the run dir's ``lock``: the checkpoint to resume from, or None (:func:`_prepare_run_dir`);
    then the temporary files of a killed run are removed."""
    if lock.took_over:
        log(f"taking over {run_dir} from {artifacts.describe_holder(lock.took_over)}, which is no longer running")
    leftovers = artifacts.remove_force_leftovers(run_dir)  # first: it may put back an old run a kill left mid-swap
    checkpoint = _prepare_run_dir(run_dir, recipe, resume, force)
    for leftover in leftovers + artifacts.remove_orphan_temp_files(run_dir):
        log(f"removed {leftover}, left by an interrupted run")
    return checkpoint


def _open_run_dir(run_dir: Path, checkpoint: Optional[Dict[str, Any]], recipe: Recipe,
                  log: Log) -> Tuple[List[Dict[str, Any]], List[Dict[str, float]]]:
    """Make ``run_dir`` ready to train into: a fresh start clears an old run, a resume (from
    ``checkpoint``, whose weights are loaded by the caller) drops the manifest. Returns the history
    rows and curve points so far."""
    if checkpoint is None:
        _clear_previous_run(run_dir)
        history: List[Dict[str, Any]] = []
        steps: List[Dict[str, float]] = []
    else:
        history, steps = list(checkpoint["history"]), list(checkpoint.get("steps", []))
        artifacts.manifest_path(run_dir).unlink(missing_ok=True)  # artifacts are about to change
        log(f"resuming {run_dir} after epoch {checkpoint['epoch']} of {recipe.epochs}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return history, steps


def _record_epoch(run_dir: Path, net, trainer, recipe: Recipe, history: List[Dict[str, Any]],
                  steps: List[Dict[str, float]], row: Dict[str, Any], epoch_steps: List[Dict[str, float]],
                  log: Log) -> None:
    """Append the epoch's history ``row`` and curve points, log them, and checkpoint."""
    history.append(row)
    steps.extend(epoch_steps)
    held = f", held-out acc {row['holdout_accuracy']:.4f}" if row.get("holdout_accuracy") is not None else ""
    log(f"epoch {row['epoch']}/{recipe.epochs}{' (at most)' if recipe.until_plateau else ''}: train loss "
        f"{row['train_loss']:.4f}, train acc {row['train_accuracy']:.4f}{held}, test acc {row['test_accuracy']:.4f} "
        f"({row['test_images']} images), {row['seconds']:.0f} s, {row['images_per_s']:.0f} img/s")
    save_checkpoint(run_dir, net, trainer, recipe, history, steps)


def _train_and_test_one_epoch(net, trainer, recipe: Recipe, epoch: int, contexts: Sequence, train_split,
                              test_split, progress: bool, holdout_split=None
                              ) -> Tuple[Dict[str, Any], List[Dict[str, float]]]:
    """One epoch of training, the divergence checks, then the test (and held-out) accuracy: one
    history row."""
    loader = data.data_loader(*train_split, recipe.input_size, recipe.batch_size, shuffle=True,
                              seed=epoch_seed(recipe.seed, epoch))
    stats = train_epoch(net, trainer, recipe.make_loss(), loader, contexts, epoch, recipe.epochs, recipe.lr,
                        progress)
    return _test_one_epoch(net, recipe, epoch, contexts, test_split, stats, holdout_split)


def _test_one_epoch(net, recipe: Recipe, epoch: int, contexts: Sequence, test_split,
                    stats: Dict[str, Any], holdout_split=None) -> Tuple[Dict[str, Any], List[Dict[str, float]]]:
    """After ``epoch``'s training (``train_epoch``'s ``stats``): the divergence checks and the test
    accuracy on ``test_split`` (and the held-out accuracy on a non-empty ``holdout_split``);
    returns the history row and the epoch's curve points."""
    check_finite_weights(net, epoch, recipe.lr)
    try:
        test_accuracy, test_images = evaluate(net, *test_split, recipe.input_size, contexts)
    except NonFiniteLogits:
        raise VggbenchError(f"test logits became nan/inf after epoch {epoch}; lower --lr "
                            f"(now {recipe.lr:g})") from None
    steps = stats.pop("steps")
    row = {"epoch": epoch, **stats, "test_accuracy": test_accuracy, "test_images": test_images}
    if holdout_split is not None and len(holdout_split[1]):
        row["holdout_accuracy"], row["holdout_images"] = evaluate(net, *holdout_split, recipe.input_size, contexts)
    return row, steps


def _clear_previous_run(run_dir: Path) -> None:
    """Fresh start over an old run (``--force``): drop its manifest first, then its checkpoints."""
    artifacts.manifest_path(run_dir).unlink(missing_ok=True)
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def _export_run(run_dir: Path, net, recipe: Recipe, history: List[Dict[str, Any]], steps: List[Dict[str, float]],
                contexts: Sequence, parity_x: np.ndarray, run_info: Dict[str, Any], log: Log) -> Path:
    """Export, check parity, write history + curves, then the manifest (last, atomically)."""
    mx = import_mxnet()

    # The final evaluation is the last epoch's: the weights have not changed since.
    log(f"test accuracy {history[-1]['test_accuracy']:.4f} on {history[-1]['test_images']} images; "
        f"exporting to {run_dir}")

    net.collect_params().reset_ctx(mx.cpu())  # export and parity run on CPU, wherever we trained
    export.export_mxnet(net, run_dir, recipe.input_size)
    onnx_info = export.export_onnx(run_dir, recipe.input_size)
    tolerance = run_info["parity_tolerance"]
    result = export.exported_parity(run_dir, parity_x, recipe.input_size,
                                    threads=run_info["threads"]["onnxruntime"])
    result["tolerance"] = tolerance
    log(f"parity on {result['n']} test images: max |logit diff| {result['max_abs_diff']:.2e}, "
        f"top-1 agreement {result['top1_agreement']:.4f}")
    export.check_parity(result, tolerance["max_abs_diff"], tolerance["min_top1_agreement"])

    artifacts.write_json_atomic(run_dir / HISTORY_FILE, {"recipe": recipe.asdict(), "epochs": history,
                                                         "steps": steps, "stop": run_info.get("stop")})
    plot_history(history, steps, run_dir / CURVES_FILE, recipe.loss)

    manifest: Dict[str, Any] = {
        "model": recipe.model,
        "config": models.describe(recipe.model),
        "input_size": recipe.input_size,
        "input_shape": [None, 1, recipe.input_size, recipe.input_size],
        "input_name": export.INPUT_NAME,
        "width_ratio": recipe.width_ratio,
        "classes": recipe.classes,
        "in_channels": 1,
        "trained": True,
        "class_names": list(data.CLASS_NAMES),
        "preprocess": "bilinear resize to input_size, scale to [0,1], NCHW float32 (vggbench.data.preprocess)",
        "recipe": recipe.asdict(),
        "recipe_source": run_info.get("recipe_source"),
        "stop": run_info.get("stop"),
        "epochs_trained": len(history),
        "model_stats": export.exported_model_stats(run_dir, recipe.input_size),
        "train_images": history[-1]["train_images"],
        "train_seconds": sum(row["seconds"] for row in history),
        "test_accuracy": history[-1]["test_accuracy"],
        "test_images": history[-1]["test_images"],
        "test_limit": run_info["test_limit"],
        "parity": result,
        "onnx": onnx_info,
        "files": {},
        "versions": package_versions(),
        "device": {"contexts": [str(c) for c in contexts], "cpu": cpu_model(),
                   "gpus": gpus() if any(c.device_type == "gpu" for c in contexts) else []},
        "data_dir": run_info["data_dir"],
        "threads": run_info["threads"],
        "distributed": run_info["distributed"],
        "timestamps": {"started": run_info["started"], "finished": utc_now()},
    }
    for file_name in RUN_FILES:
        artifacts.record_file(manifest, run_dir, file_name)
    artifacts.write_manifest(run_dir, manifest)
    log(f"wrote {run_dir / artifacts.MANIFEST_NAME}")
    return run_dir


# --- one worker of a multi-machine job: --kvstore dist_* --------------------------------------------

def _train_export_distributed(recipe: Recipe, kvstore: str, ctx: str, run_dir: Path, resume: bool, force: bool,
                              data_dir: Optional[str], test_limit: Optional[int], parity_images: int,
                              run_info: Dict[str, Any], timeout_s: Optional[float], progress: bool,
                              log: Log) -> Optional[Path]:
    """:func:`train_export` on one worker of a ``dist_*`` job; rank 0 returns the run dir, the
    others None. The batch, shard and failure rules are :mod:`vggbench.train.distributed`'s.

    Every worker checks what it can alone, loads the data, builds the network and joins the job.
    Rank 0 alone takes the run-dir lock and decides: start, resume from its checkpoint, or refuse
    (then every worker stops); it evaluates, checkpoints, exports and writes the run dir, and the
    others never touch it. On resume rank 0's weights reach every worker through the KVStore;
    the others load the optimizer state from the same checkpoint when they can read it (a shared
    ``--out``), which only a stateful optimizer (adam) requires.
    """
    from contextlib import ExitStack

    workers = distributed.DistInfo.from_env(kvstore).num_workers  # before joining: mistakes fail fast
    distributed.check_optimizer(kvstore, recipe.optimizer)
    distributed.per_worker_batch(recipe.batch_size, workers)
    contexts, device_note = resolve_contexts(ctx)
    train_x, train_y = data.load_split(data_dir, True, recipe.train_limit, recipe.seed)
    test_x, test_y = data.load_split(data_dir, False, test_limit, recipe.seed)
    distributed.plan_shards(len(train_y), workers, recipe.batch_size, epoch_seed=0)
    net = build_network(recipe, contexts)
    watchdog = distributed.KVStoreWatchdog(timeout_s)
    try:
        kv, info = distributed.create_kvstore(kvstore, watchdog)
        log(f"joined the {kvstore} job as rank {info.rank} of {info.num_workers}; {device_note}")
        trainer = distributed.DistributedTrainer(
            build_trainer(net, recipe, **{**distributed.trainer_options(kvstore), "kvstore": kv}), kv, info, net,
            contexts, (1, recipe.input_size, recipe.input_size), recipe.batch_size, watchdog)
        try:
            with ExitStack() as rank0_lock:  # rank 0 holds the run-dir lock until the manifest is written
                history, steps, work_dir = _distributed_epochs(trainer, info, net, recipe, contexts, run_dir,
                                                               rank0_lock, resume, force, (train_x, train_y),
                                                               (test_x, test_y), progress, log)
                trainer.close()  # every worker leaves together; rank 0 exports alone
                if not info.is_rank0:
                    log(f"rank {info.rank}: training done; rank 0 evaluates, exports and writes the run dir")
                    return None
                run_info["distributed"] = distributed.distributed_recipe_fields(info, contexts, recipe.batch_size)
                try:
                    _export_run(work_dir, net, recipe, history, steps, contexts, test_x[:parity_images], run_info,
                                log)
                except BaseException:
                    if work_dir != run_dir:  # a --force that failed: the old run stays
                        shutil.rmtree(work_dir, ignore_errors=True)
                    raise
                return artifacts.swap_in(work_dir, run_dir) if work_dir != run_dir else run_dir
        except BaseException:
            trainer.abandon()  # an error only this worker saw (no-op once every worker has left)
            raise
    finally:
        watchdog.close()


def _distributed_epochs(trainer, info, net, recipe: Recipe, contexts: Sequence, run_dir: Path, rank0_lock,
                        resume: bool, force: bool, train_split, test_split, progress: bool, log: Log):
    """The epochs of :func:`_train_export_distributed`; returns rank 0's history rows and curve
    points (the other ranks': empty) and the folder rank 0 wrote (``run_dir``, or with ``--force``
    over a run the staging folder beside it, swapped in after the export). Rank 0 takes the run-dir
    lock into ``rank0_lock`` (an ``ExitStack`` the caller closes after the export)."""
    checkpoint, history, steps, created, work_dir = None, [], [], False, run_dir
    if info.is_rank0:
        try:
            lock = rank0_lock.enter_context(artifacts.run_dir_lock(run_dir, "train-export"))
            checkpoint = _claim_run_dir(lock, run_dir, recipe, resume, force, log)
            work_dir = _force_target(run_dir, force)  # --force builds beside the old run
            if checkpoint is not None:
                net.load_parameters(str(run_dir / CHECKPOINT_DIR / checkpoint["params"]), ctx=list(contexts))
        except BaseException:
            _stop_every_worker(trainer, "rank 0 checks its run dir")
            raise
    start = int(trainer.broadcast([checkpoint["epoch"] if checkpoint else 0], "rank 0 checks its run dir")[0])
    if start < 0:
        trainer.close()
        raise VggbenchError(f"rank 0 refused to start (its output says why); rank {info.rank} trained nothing")
    trainer.prepare()  # rank 0's (resumed) weights on every worker before the first gradient
    if start:
        _load_distributed_states(trainer, info, run_dir, checkpoint, start, recipe, log)
    if info.is_rank0:
        created = not work_dir.exists() or work_dir != run_dir
        history, steps = _open_run_dir(work_dir, checkpoint, recipe, log)
        log(f"training {recipe.model} (width ratio {recipe.width_ratio:g}) at {recipe.input_size}x"
            f"{recipe.input_size} on {len(train_split[1])} images over {info.num_workers} workers (global batch "
            f"{recipe.batch_size}, {trainer.local_batch} per worker), testing on {len(test_split[1])}; "
            f"{recipe.optimizer} lr {recipe.lr:g}, {recipe.epochs} epoch(s), seed {recipe.seed}")
    try:
        for epoch in range(start + 1, recipe.epochs + 1):
            plan = distributed.plan_shards(len(train_split[1]), info.num_workers, recipe.batch_size,
                                           epoch_seed(recipe.seed, epoch))
            mine = plan.indices(info.rank)
            loader = data.data_loader(train_split[0][mine], train_split[1][mine], recipe.input_size,
                                      trainer.local_batch, shuffle=False)
            trainer.begin_epoch(plan, epoch)
            stats = train_epoch(net, trainer, recipe.make_loss(), loader, contexts, epoch, recipe.epochs, recipe.lr,
                                progress)
            trainer.finish_epoch()
            if info.is_rank0:
                # loss and accuracy are rank 0's shard's; images and images/s the whole job's
                stats.update(train_images=plan.n_images, images_per_s=plan.n_images / stats["seconds"])
                try:
                    row, epoch_steps = _test_one_epoch(net, recipe, epoch, contexts, test_split, stats)
                    _record_epoch(work_dir, net, trainer, recipe, history, steps, row, epoch_steps, log)
                except BaseException:
                    _stop_every_worker(trainer, f"rank 0 evaluates and checkpoints epoch {epoch}")
                    raise
                created = work_dir != run_dir  # a --force staging folder goes on failure; a run dir stays
            if trainer.broadcast([1], f"rank 0 evaluates and checkpoints epoch {epoch}")[0] != 1:
                trainer.close()
                raise VggbenchError(f"rank 0 stopped the run after epoch {epoch} (its output says why)")
    except BaseException:
        if created and work_dir.exists():
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    return history, steps, work_dir


def _stop_every_worker(trainer, what: str) -> None:
    """Rank 0 failed where the others wait for it: tell them (a 0/-1 broadcast) and leave together."""
    trainer.broadcast([-1], what)
    trainer.close()


def _load_distributed_states(trainer, info, run_dir: Path, checkpoint: Optional[Dict[str, Any]], start: int,
                             recipe: Recipe, log: Log) -> None:
    """The optimizer state at resume: rank 0 from its checkpoint; another rank from the same file
    when it can read it, else (plain SGD has no state) nothing, else a one-line error."""
    if checkpoint is None:  # not rank 0: look for rank 0's checkpoint on a shared --out
        try:
            checkpoint = read_checkpoint(run_dir)
        except VggbenchError:
            checkpoint = None
        if checkpoint is None or checkpoint["epoch"] != start:
            if recipe.optimizer == "sgd":
                log(f"rank {info.rank}: resuming after epoch {start} with rank 0's weights (plain SGD has no state)")
                return
            raise VggbenchError(f"--resume: rank {info.rank} cannot read rank 0's epoch-{start} checkpoint in "
                                f"{run_dir / CHECKPOINT_DIR} for the {recipe.optimizer} state; give --out a folder "
                                f"every worker sees")
    trainer.load_states(str(run_dir / CHECKPOINT_DIR / checkpoint["states"]))
