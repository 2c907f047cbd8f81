"""The recipe: everything that decides the trained weights; checked first, and what builds the
optimizer, the initializer and the loss.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, Optional, Sequence

from vggbench import artifacts, data, models
from vggbench.errors import VggbenchError
from vggbench.export import onnx as export
from vggbench.platform.mxnet import import_mxnet

HISTORY_FILE, CURVES_FILE = artifacts.HISTORY_FILE, artifacts.CURVES_FILE
CHECKPOINT_DIR, CHECKPOINT_INDEX = artifacts.CHECKPOINT_INDEX_PATH
RUN_FILES = (export.ONNX_FILE, export.SYMBOL_FILE, export.PARAMS_FILE, HISTORY_FILE, CURVES_FILE)
EVAL_BATCH_SIZE = 256
# Bounds of a recipe (the command line checks the same at parse time): learning rates from here up
# overflow float32 weights at the first step; bigger batches and longer runs are mistakes, not runs.
MAX_LR = 10_000.0
MAX_BATCH_SIZE = 1 << 16
MAX_EPOCHS = 100_000
PARITY_IMAGES = 256
# What a Recipe's optimizer, init and loss may name. Optimizers are MXNet's (mx.optimizer.create
# with the recipe's learning rate and MXNet's other defaults: plain SGD has no momentum or decay).
OPTIMIZERS = ("sgd", "adam")
# xavier: Glorot uniform (the lessons'); msra: MXNet's MSRAPrelu defaults; he: He et al. for ReLU
# (fan-in, gain 2); torch: PyTorch's default Conv/Linear init (uniform +-1/sqrt(fan-in), biases too).
INITIALIZERS = ("xavier", "msra", "he", "torch")
LOSSES = ("softmax_cross_entropy",)
# Resume must continue the same training: these recipe fields must match the checkpoint's.
RESUME_MUST_MATCH = ("model", "input_size", "width_ratio", "classes", "batch_size", "lr", "seed",
                     "train_limit", "optimizer", "init", "loss", "dense_units", "warmup_epochs", "holdout")
FLAG_OF = {"input_size": "--size", "width_ratio": "--width-ratio", "batch_size": "--batch-size",
           "lr": "--lr", "seed": "--seed", "train_limit": "--train-limit", "holdout": "--holdout",
           "init": "--recipe", "optimizer": "--recipe", "warmup_epochs": "--recipe", "dense_units": "--recipe"}

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

    ``preset`` names the row of :data:`vggbench.train.recipes.RECIPES` the values came from;
    ``warmup_epochs`` (linear learning-rate warm-up from 0 over that many epochs' steps);
    ``dense_units`` (width of the VGG/AlexNet dense head, the lesson's 4096). ``holdout``: the
    fraction of the training subset held out (never trained on) to measure held-out accuracy each
    epoch; ``until_plateau``: stop when that accuracy has not improved by more than ``min_delta``
    for ``patience`` epochs, ``epochs`` being the maximum (:mod:`vggbench.train.plateau`).
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
    preset: str = "vgg"
    warmup_epochs: float = 0.0
    dense_units: int = models.DENSE_UNITS
    holdout: float = 0.0
    until_plateau: bool = False
    patience: int = 3
    min_delta: float = 0.002

    def check(self) -> None:
        """Raise a one-line VggbenchError for anything a user can get wrong."""
        models.check_model_name(self.model)
        for field, known in (("optimizer", OPTIMIZERS), ("init", INITIALIZERS), ("loss", LOSSES)):
            self._choice(field, known)
        if self.input_size < 32:
            raise VggbenchError(f"--size {self.input_size} is too small for VGG's five 2x2 pools; use 96 or 224")
        if not self.width_ratio > 0:
            raise VggbenchError(f"--width-ratio must be > 0, got {self.width_ratio}; 1 is full width")
        for flag, value, most in (("--epochs", self.epochs, MAX_EPOCHS), ("--batch-size", self.batch_size,
                                                                         MAX_BATCH_SIZE)):
            if not 1 <= value <= most:
                raise VggbenchError(f"{flag} must be in 1..{most}, got {value}")
        if not (0 < self.lr < MAX_LR):
            raise VggbenchError(f"--lr must be a number > 0 and < {MAX_LR:g}, got {self.lr}; the lesson uses 0.05")
        if not 0 <= self.seed < 2 ** 31:
            raise VggbenchError(f"--seed must be in 0..{2 ** 31 - 1}, got {self.seed}")
        if self.train_limit is not None and self.train_limit < 1:
            raise VggbenchError(f"--train-limit must be >= 1, got {self.train_limit}")
        if not (0 <= self.warmup_epochs < 1000 and math.isfinite(self.warmup_epochs)):
            raise VggbenchError(f"warmup_epochs must be in 0..1000, got {self.warmup_epochs}")
        if self.dense_units < 1:
            raise VggbenchError(f"dense_units must be >= 1, got {self.dense_units}")
        if not 0 <= self.holdout < 1:
            raise VggbenchError(f"--holdout must be in [0, 1), got {self.holdout}; 0.1 holds out a tenth")
        if self.until_plateau and not self.holdout:
            raise VggbenchError("--until-plateau needs held-out images to watch; give --holdout, e.g. 0.1")
        if self.patience < 1 or not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise VggbenchError(f"--patience must be >= 1 and --min-delta >= 0, got {self.patience} and "
                                f"{self.min_delta}")

    def asdict(self) -> Dict[str, Any]:
        """The recipe as the plain dict recorded in the manifest, history and checkpoints."""
        return dataclasses.asdict(self)

    def _choice(self, field: str, known: Sequence[str]) -> str:
        value = getattr(self, field)
        if value not in known:
            raise VggbenchError(f"unknown {field} {value!r} in the training recipe; choose from {', '.join(known)}")
        return value

    def make_optimizer(self, steps_per_epoch: Optional[int] = None):
        """A new ``mx.optimizer.Optimizer`` named by ``optimizer``, at learning rate ``lr``.

        With ``warmup_epochs`` the rate rises linearly from 0 to ``lr`` over
        ``warmup_epochs * steps_per_epoch`` updates (an MXNet scheduler: it travels with the
        trainer state, so a resumed run continues the same schedule).
        """
        mx = import_mxnet()

        scheduler = None
        if self.warmup_epochs:
            if not steps_per_epoch:
                raise VggbenchError("a learning-rate warm-up needs the number of steps per epoch; this training "
                                    "path does not support warmup_epochs")
            scheduler = mx.lr_scheduler.FactorScheduler(
                step=2 ** 31 - 1, factor=1.0, base_lr=self.lr, warmup_mode="linear", warmup_begin_lr=0.0,
                warmup_steps=max(1, int(math.ceil(self.warmup_epochs * steps_per_epoch))))
        return mx.optimizer.create(self._choice("optimizer", OPTIMIZERS), learning_rate=self.lr,
                                   lr_scheduler=scheduler)

    def make_initializer(self):
        """The ``mx.init`` initializer named by ``init`` (:data:`INITIALIZERS`). ``torch``'s biases
        are drawn afterwards by ``loop.build_network`` (they need the weight's fan-in)."""
        mx = import_mxnet()

        return {"xavier": lambda: mx.init.Xavier(),
                "msra": lambda: mx.init.MSRAPrelu(),
                "he": lambda: mx.init.MSRAPrelu(factor_type="in", slope=0.0),
                "torch": lambda: mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1.0),
                }[self._choice("init", INITIALIZERS)]()

    def make_loss(self):
        """The Gluon loss named by ``loss`` (per-example values; the Trainer divides by the batch)."""
        gluon = import_mxnet().gluon

        return {"softmax_cross_entropy": gluon.loss.SoftmaxCrossEntropyLoss}[self._choice("loss", LOSSES)]()


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed for one epoch's shuffle and dropout, so a resumed run draws what an unbroken one would."""
    return (seed * 100_003 + epoch) % (2 ** 31)
