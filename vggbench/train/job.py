"""``TrainJob``: what one ``train-export`` run does, as one checked value (``run.run_train`` runs it).

Everything a user can get wrong without touching the run dir is checked when the job is made, so
a bad argument fails before any data is loaded or any folder is created.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

from vggbench import artifacts, models
from vggbench.errors import VggbenchError
from vggbench.export import onnx as export
from vggbench.platform.mxnet import check_threads
from vggbench.train import distributed
from vggbench.train.recipe import PARITY_IMAGES, Recipe
from vggbench.train.recipes import NamedRecipe, recipe_for_model, resolve_recipe

# The Recipe fields a job may set over its named recipe (train_export's keywords of the same names).
RECIPE_OVERRIDES = ("input_size", "width_ratio", "epochs", "batch_size", "lr", "seed", "train_limit", "optimizer",
                    "init", "loss", "warmup_epochs", "dense_units", "holdout", "until_plateau", "patience",
                    "min_delta")


@dataclasses.dataclass(frozen=True)
class ParityGate:
    """The MXNet vs ONNX Runtime check before the manifest is written: ``images`` (the first test
    images; :class:`TrainJob` checks it is >= 1), and the tolerance: ``max_abs_diff`` (largest
    |logit difference|) and ``min_top1_agreement`` (fraction of equal top-1 classes)."""

    images: int = PARITY_IMAGES
    max_abs_diff: float = export.PARITY_MAX_ABS_DIFF
    min_top1_agreement: float = export.PARITY_MIN_TOP1_AGREEMENT


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """One training run into one run dir. Validates itself on creation (one-line
    :class:`VggbenchError`s naming the flag, the same as ``train-export``'s).

    Attributes:
        model: a zoo name (``vggbench models``).
        recipe_name: a row of :data:`vggbench.train.recipes.RECIPES` (None: the model's lesson
            recipe: ``lenet``, ``alexnet`` or ``vgg``).
        overrides: :class:`Recipe` values set over the named recipe, a mapping or (name, value)
            pairs with names from :data:`RECIPE_OVERRIDES`; None values are dropped; stored as
            sorted pairs.
        out, name: the run dir is ``out/name``; ``name`` None: ``artifacts.default_run_name``
            (``vgg11-96``, ``vgg11-w8-96`` at width ratio 8; ``-<recipe>`` added for a recipe
            that is not the model's lesson recipe).
        resume: continue from the run dir's last checkpoint.
        force: start over in a run dir that holds a run.
        data_dir: the Fashion-MNIST files (``data.resolve_data_dir``).
        test_limit: measure test accuracy on a fixed-seed subset of the test split (None: all).
        ctx: the devices (:func:`vggbench.train.devices.resolve_contexts`, at run time).
        threads: CPU threads for MXNet and ONNX Runtime; None: ``$OMP_NUM_THREADS``, else the
            physical cores (resolved at run time).
        kvstore: ``device``/``local``, or a ``dist_*`` type (this process is one worker of a job);
            stored lower case.
        dist_timeout_s: a ``dist_*`` worker's bound on each KVStore wait
            (``distributed.resolve_timeout_s``).
        parity: the parity gate.

    Derived on creation: ``recipe`` (the resolved :class:`Recipe`), ``recipe_source`` (its
    :class:`~vggbench.train.recipes.NamedRecipe`) and ``run_dir`` (``out/name``, checked to be
    creatable; nothing is created).
    """

    model: str
    recipe_name: Optional[str] = None
    overrides: Union[Mapping[str, Any], Tuple[Tuple[str, Any], ...]] = ()
    out: str = "runs"
    name: Optional[str] = None
    resume: bool = False
    force: bool = False
    data_dir: Optional[str] = None
    test_limit: Optional[int] = None
    ctx: str = "auto"
    threads: Optional[int] = None
    kvstore: str = "device"
    dist_timeout_s: Optional[float] = None
    parity: ParityGate = ParityGate()
    recipe: Recipe = dataclasses.field(init=False)
    recipe_source: NamedRecipe = dataclasses.field(init=False, repr=False)
    run_dir: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        models.check_model_name(self.model)
        overrides = {key: value for key, value in dict(self.overrides).items() if value is not None}
        unknown = sorted(set(overrides) - set(RECIPE_OVERRIDES))
        if unknown:
            raise VggbenchError(f"unknown recipe override(s) {', '.join(unknown)}; choose from "
                                f"{', '.join(RECIPE_OVERRIDES)}")
        put("overrides", tuple(sorted(overrides.items())))
        recipe, named = resolve_recipe(self.model, self.recipe_name, **overrides)
        recipe.check()
        put("recipe", recipe)
        put("recipe_source", named)
        if self.test_limit is not None and self.test_limit < 1:
            raise VggbenchError(f"--test-limit must be >= 1, got {self.test_limit}")
        if self.parity.images < 1:
            raise VggbenchError(f"--parity-images must be >= 1, got {self.parity.images}")
        if self.threads is not None:
            check_threads(self.threads)
        name = self.name or artifacts.default_run_name(self.model, recipe.input_size, recipe.width_ratio) + (
            f"-{recipe.preset}" if recipe.preset != recipe_for_model(self.model) else "")
        put("run_dir", artifacts.run_dir_for(self.out, name))  # plain --name, usable --out, nothing created
        put("kvstore", distributed.check_kvstore(self.kvstore))
        if self.is_distributed and (recipe.until_plateau or recipe.holdout or recipe.warmup_epochs):
            raise VggbenchError(f"--kvstore {self.kvstore}: --until-plateau, --holdout and warm-up recipes run on "
                                f"one machine only; drop them, or train with --kvstore device")
        if self.resume and self.force:
            raise VggbenchError("--resume and --force contradict each other: --resume continues the run in "
                                f"{self.run_dir}, --force starts it over; pick one")

    @property
    def is_distributed(self) -> bool:
        """True when this process is one worker of a ``dist_*`` job."""
        return distributed.is_distributed(self.kvstore)
