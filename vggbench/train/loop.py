"""The lesson's training loop: network and trainer, one epoch (tqdm, NaN guard, multi-device), evaluation.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench import data, metrics, models
from vggbench.errors import VggbenchError, summarize_error
from vggbench.platform import resources
from vggbench.platform.mxnet import import_mxnet
from vggbench.train.devices import _split
from vggbench.train.recipe import EVAL_BATCH_SIZE, Recipe

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
    net = models.get_model(recipe.model, classes=recipe.classes, width_ratio=recipe.width_ratio,
                           dense_units=recipe.dense_units)
    net.initialize(recipe.make_initializer(), ctx=list(contexts))
    try:
        net(mx.nd.zeros((1, 1, recipe.input_size, recipe.input_size), ctx=contexts[0])).wait_to_read()
    except mx.base.MXNetError as err:
        raise VggbenchError(f"{recipe.model} cannot run {recipe.input_size}x{recipe.input_size} inputs on "
                            f"{contexts[0]} ({summarize_error(err)}); check --size and --ctx") from None
    if recipe.init == "torch":
        _torch_default_biases(net)
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def _torch_default_biases(net) -> None:
    """Biases drawn as PyTorch's Conv/Linear defaults draw them: uniform in +-1/sqrt(fan-in) of the
    layer's weight (MXNet initializers set biases to zero). Seeded by ``build_network``'s seed."""
    mx = import_mxnet()

    params = net.collect_params()
    for name, param in params.items():
        weight_name = name[:-len("bias")] + "weight"
        if name.endswith("bias") and weight_name in params:
            fan_in = int(np.prod(params[weight_name].shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            param.set_data(mx.nd.random.uniform(-bound, bound, shape=param.shape))


def build_trainer(net, recipe: Recipe, *, kvstore: Any = "device", update_on_kvstore: Optional[bool] = None,
                  steps_per_epoch: Optional[int] = None):
    """The ``gluon.Trainer`` that updates ``net`` with the recipe's optimizer and learning rate.

    ``kvstore``: how gradients of several devices are summed (MXNet's ``device`` or ``local``, a
    ``dist_*`` type, or a ``KVStore``); with one device there is nothing to sum. ``trainer.step(n)``
    divides the summed gradient by ``n``, the global batch, so a batch split over devices gives the
    update that one device would compute on the whole batch. ``update_on_kvstore``: Gluon's (None:
    MXNet chooses; ``distributed.trainer_options`` says what a ``dist_*`` job needs).
    ``steps_per_epoch``: optimizer steps in one epoch, for the recipe's learning-rate warm-up.
    """
    gluon = import_mxnet().gluon

    return gluon.Trainer(net.collect_params(), recipe.make_optimizer(steps_per_epoch), kvstore=kvstore,
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
    peak_reset = resources.reset_peak_rss()  # the epoch's own resident peak, not the whole process life
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
    memory = {"peak_rss_bytes": resources.peak_rss_bytes(),
              "peak_rss_method": "VmHWM over the epoch" if peak_reset else "VmHWM since the process started"}
    gpus = [ctx.device_id for ctx in contexts if getattr(ctx, "device_type", "cpu") == "gpu"]
    if gpus:  # whole-GPU memory in use at the epoch's end (NVML; not yet checked on a GPU)
        memory["gpu_memory_used_bytes"] = resources.Nvml(gpus[0]).memory_used_bytes()
    return {"train_loss": total_loss / seen, "train_accuracy": total_correct / seen, "train_images": seen,
            "seconds": seconds, "images_per_s": seen / seconds, "steps": steps, **memory}


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
