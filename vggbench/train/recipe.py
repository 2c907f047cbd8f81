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
