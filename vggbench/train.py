"""Train a zoo model on Fashion-MNIST, then export it into a run dir (``vggbench train-export``).

Read top to bottom, this is the whole command:

1. :class:`Recipe` holds everything that decides the trained weights (the lesson's defaults: SGD,
   lr 0.05, batch 64, Xavier init, 96x96, softmax cross-entropy). It is checked first, and it is
   what builds the optimizer, the initializer and the loss, so the manifest's recipe is the truth.
2. :func:`resolve_contexts` turns ``--ctx`` into MXNet contexts.
3. :func:`train_export` validates inputs, builds the model and loads the data *before* it creates
   the run dir, so a bad model name, bad data or a missing GPU leaves nothing behind.
4. :func:`build_network` + :func:`build_trainer`, then :func:`train_epoch` / :func:`evaluate`: the
   lesson's loop (tqdm bar, NaN guard, multi-device via ``split_and_load``); a checkpoint is
   written after every epoch so ``--resume`` can continue.
5. Export (``vggbench.export``: files, parameter and FLOP counts, the ONNX Runtime parity gate),
   ``history.json``, ``training.png`` and finally ``manifest.json``: written last, atomically, only
   when every artifact is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench import artifacts, data, distributed, export, metrics, models
from vggbench._mxnet import import_mxnet, mxnet_threads, mxnet_threads_source, resolve_threads
from vggbench.environment import cpu_model, gpus, package_versions, utc_now
from vggbench.errors import VggbenchError, summarize_error
from vggbench.messages import say

HISTORY_FILE, CURVES_FILE = artifacts.HISTORY_FILE, artifacts.CURVES_FILE
CHECKPOINT_DIR, CHECKPOINT_INDEX = artifacts.CHECKPOINT_INDEX_PATH
RUN_FILES = (export.ONNX_FILE, export.SYMBOL_FILE, export.PARAMS_FILE, HISTORY_FILE, CURVES_FILE)
EVAL_BATCH_SIZE = 256
PARITY_IMAGES = 256
# What a Recipe's optimizer, init and loss may name. Optimizers are MXNet's (mx.optimizer.create
# with the recipe's learning rate and MXNet's other defaults: plain SGD has no momentum or decay).
OPTIMIZERS = ("sgd", "adam")
INITIALIZERS = ("xavier", "msra")
LOSSES = ("softmax_cross_entropy",)
# Resume must continue the same training: these recipe fields must match the checkpoint's.
RESUME_MUST_MATCH = ("model", "input_size", "width_ratio", "classes", "batch_size", "lr", "seed",
                     "train_limit", "optimizer", "init", "loss")
FLAG_OF = {"input_size": "--size", "width_ratio": "--width-ratio", "batch_size": "--batch-size",
           "lr": "--lr", "seed": "--seed", "train_limit": "--train-limit"}

Log = Callable[[str], None]


# --- the recipe ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; recorded in the manifest and checkpoints.

    ``model`` (a zoo name), ``input_size`` (square, pixels), ``width_ratio`` (divides the conv
    channels), ``epochs``, ``batch_size`` (the global batch, split over the devices), ``lr``,
    ``seed`` (initialisation, shuffle and dropout), ``train_limit`` (a fixed-seed subset of the
    training split; None: all of it), ``classes``, and what the recipe builds: ``optimizer`` (one
    of :data:`OPTIMIZERS`), ``init`` (:data:`INITIALIZERS`) and ``loss`` (:data:`LOSSES`).
    """

    model: str
    input_size: int = 96
    width_ratio: float = 1.0
    epochs: int = 5
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    train_limit: Optional[int] = None
    classes: int = data.NUM_CLASSES
    optimizer: str = "sgd"
    init: str = "xavier"
    loss: str = "softmax_cross_entropy"

    def check(self) -> None:
        """Raise a one-line VggbenchError for anything a user can get wrong."""
        models.check_model_name(self.model)
        for field, known in (("optimizer", OPTIMIZERS), ("init", INITIALIZERS), ("loss", LOSSES)):
            self._choice(field, known)
        if self.input_size < 32:
            raise VggbenchError(f"--size {self.input_size} is too small for VGG's five 2x2 pools; use 96 or 224")
        if not self.width_ratio > 0:
            raise VggbenchError(f"--width-ratio must be > 0, got {self.width_ratio}; 1 is full width")
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value < 1:
                raise VggbenchError(f"{flag} must be >= 1, got {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise VggbenchError(f"--lr must be a finite number > 0, got {self.lr}; the lesson uses 0.05")
        if not 0 <= self.seed < 2 ** 31:
            raise VggbenchError(f"--seed must be in 0..{2 ** 31 - 1}, got {self.seed}")
        if self.train_limit is not None and self.train_limit < 1:
            raise VggbenchError(f"--train-limit must be >= 1, got {self.train_limit}")

    def asdict(self) -> Dict[str, Any]:
        """The recipe as the plain dict recorded in the manifest, history and checkpoints."""
        return dataclasses.asdict(self)

    def _choice(self, field: str, known: Sequence[str]) -> str:
        value = getattr(self, field)
        if value not in known:
            raise VggbenchError(f"unknown {field} {value!r} in the training recipe; choose from {', '.join(known)}")
        return value

    def make_optimizer(self):
        """A new ``mx.optimizer.Optimizer`` named by ``optimizer``, at learning rate ``lr``."""
        mx = import_mxnet()

        return mx.optimizer.create(self._choice("optimizer", OPTIMIZERS), learning_rate=self.lr)

    def make_initializer(self):
        """The ``mx.init`` initializer named by ``init``: ``xavier`` (Glorot uniform, the lesson's) or
        ``msra`` (He et al., for ReLU networks)."""
        mx = import_mxnet()

        return {"xavier": mx.init.Xavier, "msra": mx.init.MSRAPrelu}[self._choice("init", INITIALIZERS)]()

    def make_loss(self):
        """The Gluon loss named by ``loss`` (per-example values; the Trainer divides by the batch)."""
        gluon = import_mxnet().gluon

        return {"softmax_cross_entropy": gluon.loss.SoftmaxCrossEntropyLoss}[self._choice("loss", LOSSES)]()


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed for one epoch's shuffle and dropout, so a resumed run draws what an unbroken one would."""
    return (seed * 100_003 + epoch) % (2 ** 31)


# --- devices ---------------------------------------------------------------------------------------

def resolve_contexts(spec: str, num_gpus: Optional[int] = None, inventory: Optional[Sequence] = None
                     ) -> Tuple[list, str]:
    """Turn ``--ctx`` into MXNet contexts plus a sentence saying why.

    Parameters:
        spec: ``auto``, ``cpu``, ``gpu``, ``gpu:N``, a list ``gpu:0,gpu:1``, or ``cpu:0,cpu:1``
            (several CPU contexts: the multi-device split path, testable without a GPU).
        num_gpus: what MXNet sees (default ``mx.context.num_gpus()``, 0 on CPU-only builds).
        inventory: the GPUs with their compute capability (default
            :func:`vggbench.gpu.visible_inventory`); ``auto`` falls back to the CPU, with the reason,
            on a GPU that mxnet-cu117 has no kernels for (Hopper and newer), and an explicit GPU
            there is a one-line error (:func:`vggbench.gpu.resolve_mxnet_context`).
    """
    from vggbench import gpu

    mx = import_mxnet()
    label = (spec or "auto").strip().lower()
    parts = [part.strip() for part in label.split(",")]
    if all(part.startswith("cpu:") for part in parts):
        if not all(part[4:].isdigit() for part in parts) or len(set(parts)) != len(parts):
            raise VggbenchError(f"--ctx {label!r}: use distinct cpu:N entries, e.g. cpu:0,cpu:1")
        contexts = [mx.cpu(int(part[4:])) for part in parts]
        return contexts, f"--ctx {label}: training on {', '.join(str(c) for c in contexts)}"
    has_cuda = bool(mx.runtime.Features().is_enabled("CUDA"))
    if num_gpus is None:
        try:
            num_gpus = mx.context.num_gpus() if has_cuda else 0
        except mx.base.MXNetError:  # CUDA build without a usable driver
            num_gpus = 0
    if inventory is None:
        inventory = gpu.visible_inventory() if num_gpus else []
    indices, sentence = gpu.resolve_mxnet_context(label, num_gpus, inventory, mxnet_has_cuda=has_cuda)
    return ([mx.gpu(index) for index in indices] or [mx.cpu()]), sentence


def _split(batch, contexts: Sequence) -> list:
    """Spread a batch over the devices (the lesson's multi-GPU recipe); one device gets it whole."""
    gluon = import_mxnet().gluon

    if len(contexts) == 1:
        return [batch.as_in_context(contexts[0])]
    return gluon.utils.split_and_load(batch, contexts[:len(batch)], even_split=False)


# --- the model -------------------------------------------------------------------------------------

def build_network(recipe: Recipe, contexts: Sequence):
    """The recipe's model, initialised by the recipe's initializer (seeded by ``recipe.seed``) on
    the MXNet ``contexts``, shapes materialised by one dummy forward pass, hybridized.

    The dummy pass is where a too-small input size or a broken GPU shows up, before any run dir
    exists.
    """
    mx = import_mxnet()

    mx.random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    net = models.get_model(recipe.model, classes=recipe.classes, width_ratio=recipe.width_ratio)
    net.initialize(recipe.make_initializer(), ctx=list(contexts))
    try:
        net(mx.nd.zeros((1, 1, recipe.input_size, recipe.input_size), ctx=contexts[0])).wait_to_read()
    except mx.base.MXNetError as err:
        raise VggbenchError(f"{recipe.model} cannot run {recipe.input_size}x{recipe.input_size} inputs on "
                            f"{contexts[0]} ({summarize_error(err)}); check --size and --ctx") from None
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def build_trainer(net, recipe: Recipe, *, kvstore: Any = "device", update_on_kvstore: Optional[bool] = None):
    """The ``gluon.Trainer`` that updates ``net`` with the recipe's optimizer and learning rate.

    ``kvstore``: how gradients of several devices are summed (MXNet's ``device`` or ``local``, a
    ``dist_*`` type, or a ``KVStore``); with one device there is nothing to sum. ``trainer.step(n)``
    divides the summed gradient by ``n``, the global batch, so a batch split over devices gives the
    update that one device would compute on the whole batch. ``update_on_kvstore``: Gluon's (None:
    MXNet chooses; ``distributed.trainer_options`` says what a ``dist_*`` job needs).
    """
    gluon = import_mxnet().gluon

    return gluon.Trainer(net.collect_params(), recipe.make_optimizer(), kvstore=kvstore,
                         update_on_kvstore=update_on_kvstore)


# --- one epoch and evaluation ----------------------------------------------------------------------

def _device_sum(values: Sequence, context):
    """The sum of per-device NDArrays ``values`` as one NDArray on ``context``, not waited for."""
    mx = import_mxnet()

    if len(values) == 1:
        return values[0]
    return mx.nd.add_n(*[value.as_in_context(context) for value in values])


def train_epoch(net, trainer, loss_fn, loader, contexts: Sequence, epoch: int, epochs: int, lr: float,
                progress: bool = True, record_every: int = 20) -> Dict[str, Any]:
    """One pass over ``loader`` with a tqdm bar (loss, running accuracy, images/s).

    Parameters:
        net, trainer, loss_fn: from :func:`build_network`, :func:`build_trainer` and
            ``Recipe.make_loss``.
        loader: yields ``(images, labels)`` NDArray batches (the global batch).
        contexts: the MXNet devices; each batch is split over them.
        epoch, epochs: this epoch's number and the total, for the bar and the curve.
        lr: the learning rate, named in the divergence message.
        progress: show the tqdm bar.
        record_every: batches per curve point.

    Returns the epoch's mean loss, accuracy, images, seconds and images/s, plus ``steps``: the mean
    loss/accuracy every ``record_every`` batches, so even a one-epoch run has a curve to plot.
    A NaN/inf loss stops the run before the optimizer step can spread it into the weights.

    The host waits on the devices once per batch, for the batch's summed loss (one scalar: the
    NaN/inf check needs it before the step, and the sum is non-finite when any loss is); the
    correct-answer count is summed on the device and read once per curve point, so the bar's
    accuracy moves every ``record_every`` batches. The next batch's preparation is queued while
    this one's backward pass still runs (``vggbench.data.data_loader``'s ``prefetch``).
    """
    mx = import_mxnet()
    autograd = mx.autograd
    from tqdm import tqdm

    total_loss, total_correct, seen, counted = 0.0, 0, 0, 0
    window_loss, window_correct, window_seen = 0.0, None, 0
    steps: List[Dict[str, float]] = []
    batches = len(loader)
    start = time.perf_counter()
    drawn = iter(loader)
    bar = tqdm(drawn, total=batches, desc=f"epoch {epoch}/{epochs}", unit="batch",
               disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for batch_index, (x, y) in enumerate(bar, 1):
            xs, ys = _split(x, contexts), _split(y, contexts)
            with autograd.record():
                outputs = [net(part) for part in xs]
                losses = [loss_fn(out, label) for out, label in zip(outputs, ys)]
            autograd.backward(losses)
            batch_loss = float(_device_sum([loss.sum() for loss in losses], contexts[0]).asscalar())
            if not math.isfinite(batch_loss):
                raise VggbenchError(f"loss became {batch_loss} at epoch {epoch} batch {batch_index}; "
                                    f"lower --lr (now {lr:g})")
            trainer.step(x.shape[0])
            batch_correct = _device_sum([(out.argmax(axis=1) == label.astype(out.dtype)).sum().astype("int32")
                                         for out, label in zip(outputs, ys)], contexts[0])
            window_correct = batch_correct if window_correct is None else window_correct + batch_correct
            total_loss += batch_loss
            seen += x.shape[0]
            window_loss += batch_loss
            window_seen += x.shape[0]
            if batch_index % record_every == 0 or batch_index == batches:
                correct = int(window_correct.asscalar())
                total_correct, counted = total_correct + correct, seen
                steps.append({"epoch": round(epoch - 1 + batch_index / batches, 4),
                              "loss": window_loss / window_seen, "accuracy": correct / window_seen})
                window_loss, window_correct, window_seen = 0.0, None, 0
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{total_correct / max(counted, 1):.3f}",
                            img_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
        if window_correct is not None:  # a loader that yielded more batches than its len()
            total_correct += int(window_correct.asscalar())
        mx.nd.waitall()  # the last step's update: the epoch's seconds include it
    finally:
        bar.close()
        if hasattr(drawn, "close"):  # a prefetching loader's thread stops with the epoch, even on an error
            drawn.close()
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / seen, "train_accuracy": total_correct / seen, "train_images": seen,
            "seconds": seconds, "images_per_s": seen / seconds, "steps": steps}


class NonFiniteLogits(VggbenchError):
    """The model produced nan/inf logits: its weights diverged (argmax would hide it)."""


def evaluate(net, images: np.ndarray, labels: np.ndarray, input_size: int, contexts: Sequence,
             batch_size: int = EVAL_BATCH_SIZE) -> Tuple[float, int]:
    """Top-1 accuracy (fraction) of ``net`` and the number of images it was measured on.

    ``images``/``labels``: uint8 images and their labels, preprocessed to ``input_size`` batch by
    batch; each batch of ``batch_size`` is split over the MXNet ``contexts``. Raises
    :class:`NonFiniteLogits` when any logit is nan/inf.
    """
    mx = import_mxnet()

    def predict(x: np.ndarray) -> np.ndarray:
        return np.concatenate([net(part).asnumpy() for part in _split(mx.nd.array(x), contexts)])

    logits = metrics.predict_in_batches(predict, images, batch_size,
                                        prepare=lambda raw: data.preprocess(raw, input_size))
    if not np.isfinite(logits).all():
        raise NonFiniteLogits("the model outputs nan/inf logits on test images; its weights diverged")
    return metrics.accuracy_from_logits(logits, labels), int(len(labels))


def check_finite_weights(net, epoch: int, lr: float) -> None:
    """Raise a VggbenchError naming ``epoch`` and ``lr`` when a weight of ``net`` is nan/inf.

    The last optimizer step of an epoch is never followed by a loss check; diverged weights must
    not reach a checkpoint or an export.
    """
    for name, param in net.collect_params().items():
        values = param.list_data()[0]
        if not np.isfinite(values.sum().asscalar()) and not np.isfinite(values.asnumpy()).all():
            raise VggbenchError(f"weights became nan/inf at epoch {epoch} ({name}); lower --lr (now {lr:g})")


# --- checkpoints -----------------------------------------------------------------------------------

def save_checkpoint(run_dir: Path, net, trainer, recipe: Recipe, history: List[Dict[str, Any]],
                    steps: List[Dict[str, float]]) -> Path:
    """Params + trainer state for the epoch just finished, then ``last.json`` pointing at them.

    ``run_dir``: where ``checkpoints/`` goes; ``net``, ``trainer``: what is saved; ``recipe``,
    ``history`` (one row per finished epoch), ``steps`` (the curve points): recorded in the index,
    whose path is returned. Each file is renamed into place when complete and the index is written last, so an
    interrupted save leaves the previous checkpoint usable; older epochs are then deleted.
    """
    epoch = len(history)
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    params_name, states_name = f"epoch-{epoch:04d}.params", f"epoch-{epoch:04d}.states"
    with artifacts.atomic_path(folder / params_name) as temp:
        net.save_parameters(str(temp))
    with artifacts.atomic_path(folder / states_name) as temp:
        trainer.save_states(str(temp))
    index = folder / CHECKPOINT_INDEX
    artifacts.write_json_atomic(index, {"epoch": epoch, "params": params_name, "states": states_name,
                                        "recipe": recipe.asdict(), "history": history, "steps": steps,
                                        "saved": utc_now()})
    for old in folder.glob("epoch-*"):
        if old.name not in (params_name, states_name):
            old.unlink()
    return index


def read_checkpoint(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The last checkpoint's index in ``run_dir``, or None when it has none; a VggbenchError when
    the index is unreadable or names missing files."""
    index = Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_INDEX
    if not index.is_file():
        return None
    try:
        checkpoint = json.loads(index.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise VggbenchError(f"{index}: unreadable checkpoint index ({err}); start over with --force") from None
    missing = [key for key in ("epoch", "params", "states", "recipe", "history") if key not in checkpoint]
    if missing:
        raise VggbenchError(f"{index}: checkpoint index lacks {', '.join(missing)}; start over with --force")
    for key in ("params", "states"):
        if not (index.parent / checkpoint[key]).is_file():
            raise VggbenchError(f"{index} names {checkpoint[key]}, which is missing; start over with --force")
    return checkpoint


def check_resumable(checkpoint: Dict[str, Any], recipe: Recipe, index: Path) -> None:
    """Refuse (VggbenchError) to resume ``checkpoint`` (read from ``index``) with a ``recipe`` that
    differs from the one it was trained with, or that asks for fewer epochs than it has."""
    saved = checkpoint["recipe"]
    for key in RESUME_MUST_MATCH:
        if saved.get(key) != getattr(recipe, key):
            flag = FLAG_OF.get(key, key)
            raise VggbenchError(f"--resume: the checkpoint in {index.parent.parent} was trained with {key} "
                                f"{saved.get(key)!r}, this run asks for {getattr(recipe, key)!r}; resume with "
                                f"the same {flag}, or use --name for a new run")
    if checkpoint["epoch"] > recipe.epochs:
        raise VggbenchError(f"--resume: the checkpoint already has {checkpoint['epoch']} epochs, more than "
                            f"--epochs {recipe.epochs}; ask for at least {checkpoint['epoch']}")


def load_checkpoint(run_dir: Path, checkpoint: Dict[str, Any], net, trainer, contexts: Sequence) -> None:
    """Load ``checkpoint``'s (from :func:`read_checkpoint`) weights into ``net`` on the MXNet
    ``contexts`` and its optimizer state into ``trainer``."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    net.load_parameters(str(folder / checkpoint["params"]), ctx=list(contexts))
    trainer.load_states(str(folder / checkpoint["states"]))


# --- history and curves ----------------------------------------------------------------------------

def plot_history(history: List[Dict[str, Any]], steps: List[Dict[str, float]], path: Path,
                 loss_name: str) -> None:
    """``training.png`` at ``path``: loss (left) and train/test accuracy (right) against epochs.

    ``history``: one row per epoch (``train_loss``, ``train_accuracy``, ``test_accuracy``);
    ``steps``: the within-epoch points; ``loss_name``: the loss's name, the left axis label. Uses a
    bare ``Figure`` on the Agg canvas (no pyplot) so nothing global changes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, acc_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    if steps:
        loss_axes.plot([s["epoch"] for s in steps], [s["loss"] for s in steps], color="tab:blue",
                       alpha=0.35, label="train loss (every few batches)")
        acc_axes.plot([s["epoch"] for s in steps], [s["accuracy"] for s in steps], color="tab:blue",
                      alpha=0.35, label="train accuracy (every few batches)")
    loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", color="tab:blue", label="train loss (epoch)")
    acc_axes.plot(epochs, [row["train_accuracy"] for row in history], "o-", color="tab:blue",
                  label="train accuracy (epoch)")
    acc_axes.plot(epochs, [row["test_accuracy"] for row in history], "s-", color="tab:orange",
                  label="test accuracy (epoch)")
    loss_axes.set(xlabel="epoch", ylabel=loss_name, title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temp:
        figure.savefig(str(temp), format="png")


# --- the run dir -----------------------------------------------------------------------------------

def _prepare_run_dir(run_dir: Path, recipe: Recipe, resume: bool, force: bool) -> Optional[Dict[str, Any]]:
    """Decide, without touching anything, what to do with an existing run dir.

    Returns the checkpoint to resume from (or None for a fresh start). Refuses to overwrite a
    finished run (has a manifest) or an unfinished one (has a checkpoint) unless ``--force``.
    """
    has_manifest = artifacts.manifest_path(run_dir).is_file()
    index = run_dir / CHECKPOINT_DIR / CHECKPOINT_INDEX
    if resume:
        if force:
            raise VggbenchError("--resume and --force contradict each other: --resume continues the run in "
                                f"{run_dir}, --force starts it over; pick one")
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


def train_export(model: str, *, input_size: int = 96, epochs: int = 5, batch_size: int = 64,
                 lr: float = 0.05, width_ratio: float = 1.0, ctx: str = "auto",
                 train_limit: Optional[int] = None, test_limit: Optional[int] = None,
                 data_dir: Optional[str] = None, out: str = "runs", name: Optional[str] = None,
                 seed: int = 0, resume: bool = False, force: bool = False,
                 optimizer: str = "sgd", init: str = "xavier", loss: str = "softmax_cross_entropy",
                 threads: Optional[int] = None, parity_images: int = PARITY_IMAGES,
                 parity_max_abs_diff: float = export.PARITY_MAX_ABS_DIFF,
                 parity_min_top1_agreement: float = export.PARITY_MIN_TOP1_AGREEMENT,
                 kvstore: str = "device", dist_timeout_s: Optional[float] = None,
                 progress: bool = True, log: Log = say) -> Optional[Path]:
    """Train ``model`` on Fashion-MNIST and write a complete run dir; return its path (None on
    the workers other than rank 0 of a ``dist_*`` job, which write nothing).

    Parameters:
        model, input_size, epochs, batch_size, lr, width_ratio, seed, train_limit, optimizer, init,
            loss: the :class:`Recipe`.
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
            ``DMLC_*`` variables; the rules are in :mod:`vggbench.distributed`).
        dist_timeout_s: a ``dist_*`` worker's bound on each KVStore wait
            (``distributed.resolve_timeout_s``).
        progress: show tqdm bars.
        log: where the summary lines go.

    Everything a user can get wrong is checked before the run dir is created. ``manifest.json``
    is written last and only after the parity gate passes, so its presence means every file it
    lists is complete.
    """
    started = utc_now()
    recipe = Recipe(model=model, input_size=input_size, width_ratio=float(width_ratio), epochs=epochs,
                    batch_size=batch_size, lr=float(lr), seed=seed, train_limit=train_limit,
                    optimizer=optimizer, init=init, loss=loss)
    recipe.check()
    if test_limit is not None and test_limit < 1:
        raise VggbenchError(f"--test-limit must be >= 1, got {test_limit}")
    if parity_images < 1:
        raise VggbenchError(f"--parity-images must be >= 1, got {parity_images}")
    threads = resolve_threads(threads)[0]
    import_mxnet(threads)  # before anything else imports mxnet: its thread count is fixed then
    name = name or artifacts.default_run_name(model, input_size, recipe.width_ratio)
    run_dir = artifacts.run_dir_for(out, name)  # issue 11: plain --name, usable --out, nothing created
    run_info = _run_info(test_limit, data_dir, started, threads, parity_max_abs_diff, parity_min_top1_agreement)
    kvstore = distributed.check_kvstore(kvstore)
    if distributed.is_distributed(kvstore):  # issue 12: this process is one worker of a job
        return _train_export_distributed(recipe, kvstore, ctx, run_dir, resume, force, data_dir, test_limit,
                                         parity_images, run_info, dist_timeout_s, progress, log)
    # issue 11: one writer per run dir, held until the manifest is written; leftovers of a killed run go
    with artifacts.run_dir_lock(run_dir, "train-export") as lock:
        checkpoint = _claim_run_dir(lock, run_dir, recipe, resume, force, log)
        contexts, device_note = resolve_contexts(ctx)
        log(device_note)
        train_x, train_y = data.load_split(data_dir, True, train_limit, seed)
        test_x, test_y = data.load_split(data_dir, False, test_limit, seed)
        net = build_network(recipe, contexts)
        trainer = build_trainer(net, recipe, kvstore=kvstore)
        created = not run_dir.exists()
        try:
            if checkpoint is not None:
                load_checkpoint(run_dir, checkpoint, net, trainer, contexts)
            history, steps = _open_run_dir(run_dir, checkpoint, recipe, log)
            log(f"training {model} (width ratio {recipe.width_ratio:g}) at {input_size}x{input_size} on "
                f"{len(train_y)} images, testing on {len(test_y)}; {recipe.optimizer} lr {recipe.lr:g}, "
                f"batch {batch_size}, {epochs} epoch(s), seed {seed}")
            for epoch in range(len(history) + 1, recipe.epochs + 1):
                row, epoch_steps = _train_and_test_one_epoch(net, trainer, recipe, epoch, contexts,
                                                             (train_x, train_y), (test_x, test_y), progress)
                _record_epoch(run_dir, net, trainer, recipe, history, steps, row, epoch_steps, log)
                created = False  # from here on the run dir holds a resumable checkpoint: keep it
        except BaseException:
            if created and run_dir.exists():
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

        run_info["distributed"] = distributed.distributed_recipe_fields(distributed.DistInfo(kvstore), contexts,
                                                                         recipe.batch_size)
        return _export_run(run_dir, net, recipe, history, steps, contexts, test_x[:parity_images], run_info, log)


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
    checkpoint = _prepare_run_dir(run_dir, recipe, resume, force)
    for leftover in artifacts.remove_orphan_temp_files(run_dir):
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
    log(f"epoch {row['epoch']}/{recipe.epochs}: train loss {row['train_loss']:.4f}, train acc "
        f"{row['train_accuracy']:.4f}, test acc {row['test_accuracy']:.4f} ({row['test_images']} "
        f"images), {row['seconds']:.0f} s, {row['images_per_s']:.0f} img/s")
    save_checkpoint(run_dir, net, trainer, recipe, history, steps)


def _train_and_test_one_epoch(net, trainer, recipe: Recipe, epoch: int, contexts: Sequence, train_split,
                              test_split, progress: bool) -> Tuple[Dict[str, Any], List[Dict[str, float]]]:
    """One epoch of training, the divergence checks, then the test accuracy: one history row."""
    loader = data.data_loader(*train_split, recipe.input_size, recipe.batch_size, shuffle=True,
                              seed=epoch_seed(recipe.seed, epoch))
    stats = train_epoch(net, trainer, recipe.make_loss(), loader, contexts, epoch, recipe.epochs, recipe.lr,
                        progress)
    return _test_one_epoch(net, recipe, epoch, contexts, test_split, stats)


def _test_one_epoch(net, recipe: Recipe, epoch: int, contexts: Sequence, test_split,
                    stats: Dict[str, Any]) -> Tuple[Dict[str, Any], List[Dict[str, float]]]:
    """After ``epoch``'s training (``train_epoch``'s ``stats``): the divergence checks and the test
    accuracy on ``test_split``; returns the history row and the epoch's curve points."""
    check_finite_weights(net, epoch, recipe.lr)
    try:
        test_accuracy, test_images = evaluate(net, *test_split, recipe.input_size, contexts)
    except NonFiniteLogits:
        raise VggbenchError(f"test logits became nan/inf after epoch {epoch}; lower --lr "
                            f"(now {recipe.lr:g})") from None
    steps = stats.pop("steps")
    return {"epoch": epoch, **stats, "test_accuracy": test_accuracy, "test_images": test_images}, steps


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
                                                         "steps": steps})
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


# --- one worker of a multi-machine job: --kvstore dist_* (issue 12) --------------------------------

def _train_export_distributed(recipe: Recipe, kvstore: str, ctx: str, run_dir: Path, resume: bool, force: bool,
                              data_dir: Optional[str], test_limit: Optional[int], parity_images: int,
                              run_info: Dict[str, Any], timeout_s: Optional[float], progress: bool,
                              log: Log) -> Optional[Path]:
    """:func:`train_export` on one worker of a ``dist_*`` job; rank 0 returns the run dir, the
    others None. The batch, shard and failure rules are :mod:`vggbench.distributed`'s.

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
                history, steps = _distributed_epochs(trainer, info, net, recipe, contexts, run_dir, rank0_lock,
                                                     resume, force, (train_x, train_y), (test_x, test_y),
                                                     progress, log)
                trainer.close()  # every worker leaves together; rank 0 exports alone
                if not info.is_rank0:
                    log(f"rank {info.rank}: training done; rank 0 evaluates, exports and writes the run dir")
                    return None
                run_info["distributed"] = distributed.distributed_recipe_fields(info, contexts, recipe.batch_size)
                return _export_run(run_dir, net, recipe, history, steps, contexts, test_x[:parity_images],
                                   run_info, log)
        except BaseException:
            trainer.abandon()  # an error only this worker saw (no-op once every worker has left)
            raise
    finally:
        watchdog.close()


def _distributed_epochs(trainer, info, net, recipe: Recipe, contexts: Sequence, run_dir: Path, rank0_lock,
                        resume: bool, force: bool, train_split, test_split, progress: bool, log: Log):
    """The epochs of :func:`_train_export_distributed`; returns rank 0's history rows and curve
    points (the other ranks': empty). Rank 0 takes the run-dir lock into ``rank0_lock`` (an
    ``ExitStack`` the caller closes after the export)."""
    checkpoint, history, steps, created = None, [], [], False
    if info.is_rank0:
        try:
            lock = rank0_lock.enter_context(artifacts.run_dir_lock(run_dir, "train-export"))
            checkpoint = _claim_run_dir(lock, run_dir, recipe, resume, force, log)
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
        created = not run_dir.exists()
        history, steps = _open_run_dir(run_dir, checkpoint, recipe, log)
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
                    _record_epoch(run_dir, net, trainer, recipe, history, steps, row, epoch_steps, log)
                except BaseException:
                    _stop_every_worker(trainer, f"rank 0 evaluates and checkpoints epoch {epoch}")
                    raise
                created = False
            if trainer.broadcast([1], f"rank 0 evaluates and checkpoints epoch {epoch}")[0] != 1:
                trainer.close()
                raise VggbenchError(f"rank 0 stopped the run after epoch {epoch} (its output says why)")
    except BaseException:
        if created and run_dir.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return history, steps


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
