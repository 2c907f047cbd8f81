"""The lessons' training recipes as one named table (``train-export --recipe NAME``).

Each model trains by default with the recipe of the lesson that introduces it (LeNet's, AlexNet's,
VGG's), so the exercises compare architectures rather than one architecture's learning rate on
another's network. A recipe fixes what decides the trained weights besides the model: optimizer,
learning rate, batch size, initializer, epochs, and optionally a learning-rate warm-up; the
published reproduction also fixes the input size, width ratio and dense width its text uses.
Every field a recipe sets can still be overridden by its own flag; the run's manifest records the
recipe's name and every resolved value. ``docs/training.md`` cites where each number comes from.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

from vggbench.errors import VggbenchError


@dataclasses.dataclass(frozen=True)
class NamedRecipe:
    """One row of :data:`RECIPES`.

    ``name``; ``summary`` (one line, said by ``train-export``); ``source`` (the lesson or
    published text, repository and path); the training values ``optimizer``, ``lr``,
    ``batch_size``, ``init``, ``epochs``, ``warmup_epochs`` (linear warm-up from 0 over this many
    epochs); ``input_size``, ``width_ratio``, ``dense_units`` (None: the command's own default);
    ``lesson_input_size`` (what the lesson trains at, for the docs); ``published_test_accuracy``
    (test accuracy after each epoch as the source prints it, when it does); ``same_as_published``
    and ``unlike_published`` (what a reproduction keeps and what it cannot, for its page).
    """

    name: str
    summary: str
    source: str
    optimizer: str = "sgd"
    lr: float = 0.05
    batch_size: int = 64
    init: str = "xavier"
    epochs: int = 5
    warmup_epochs: float = 0.0
    input_size: Optional[int] = None
    width_ratio: Optional[float] = None
    dense_units: Optional[int] = None
    lesson_input_size: Optional[int] = None
    published_test_accuracy: Tuple[float, ...] = ()
    same_as_published: Tuple[str, ...] = ()
    unlike_published: Tuple[str, ...] = ()

    def training_values(self) -> Dict[str, Any]:
        """The values this recipe gives :class:`vggbench.train.Recipe` (None ones left out)."""
        values = {"optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size, "init": self.init,
                  "epochs": self.epochs, "warmup_epochs": self.warmup_epochs, "input_size": self.input_size,
                  "width_ratio": self.width_ratio, "dense_units": self.dense_units}
        return {key: value for key, value in values.items() if value is not None}


_D2L_ZH_V1 = "d2l-ai/d2l-zh, branch v1 (MXNet), chapter_convolutional-neural-networks/"
RECIPES: Dict[str, NamedRecipe] = {recipe.name: recipe for recipe in (
    NamedRecipe("lenet", "LeNet lesson: SGD lr 0.9, batch 256, Xavier, 5 epochs",
                _D2L_ZH_V1 + "lenet.md (lr, num_epochs = 0.9, 5; batch_size = 256)",
                lr=0.9, batch_size=256, lesson_input_size=28),
    NamedRecipe("alexnet", "AlexNet lesson: SGD lr 0.01, batch 128, Xavier, 5 epochs",
                _D2L_ZH_V1 + "alexnet.md (lr, num_epochs = 0.01, 5; batch_size = 128; resize=224)",
                lr=0.01, batch_size=128, lesson_input_size=224),
    NamedRecipe("vgg", "VGG lesson: SGD lr 0.05, batch 64, Xavier, 5 epochs",
                _D2L_ZH_V1 + "vgg.md (lr, num_epochs, batch_size = 0.05, 5, 128; ratio = 4; resize=224); "
                "this project keeps batch 64, the batch of its published main job",
                lr=0.05, batch_size=64, lesson_input_size=224),
    NamedRecipe("vgg-he", "VGG lesson with He init (ReLU, fan-in)",
                "the VGG recipe; init as He et al. 2015 (mx.init.MSRAPrelu(factor_type='in', slope=0))",
                lr=0.05, batch_size=64, init="he", lesson_input_size=224),
    NamedRecipe("vgg-warmup", "VGG lesson with a 1-epoch linear lr warm-up",
                "the VGG recipe; lr rises linearly from 0 to 0.05 over the first epoch",
                lr=0.05, batch_size=64, warmup_epochs=1.0, lesson_input_size=224),
    NamedRecipe("vgg-he-warmup", "VGG lesson with He init and a 1-epoch linear lr warm-up: the better start for "
                "plain VGG-16/19",
                "the VGG recipe; He et al. 2015 init and a linear warm-up from 0 to 0.05 over the first epoch (the paper "
                "instead started its deep nets from trained shallower ones)",
                lr=0.05, batch_size=64, init="he", warmup_epochs=1.0, lesson_input_size=224),
    NamedRecipe("d2lzh-pytorch-vgg11",
                "published VGG-11 run: Adam lr 0.001, batch 64, PyTorch default init, 5 epochs, 224 px, width 1/8, "
                "dense 512",
                "ShusenTang/Dive-into-DL-PyTorch, code/chapter05_CNN/5.7_vgg.ipynb and docs/chapter05_CNN/5.7_vgg.md "
                "(ratio = 8; fc_hidden_units // ratio; batch_size = 64; resize=224; Adam lr 0.001; 5 epochs)",
                optimizer="adam", lr=0.001, batch_size=64, init="torch", input_size=224, width_ratio=8.0,
                dense_units=512, lesson_input_size=224,
                published_test_accuracy=(0.859, 0.902, 0.908, 0.914, 0.918),
                same_as_published=(
                    "network: VGG-11 (8 convolutions, 3 dense layers) with every width divided by 8, a 512-wide dense "
                    "head (4096 / 8), ReLU, 2x2 max-pooling, dropout 0.5 after both hidden dense layers",
                    "data: all 60,000 training images every epoch, reshuffled, all 10,000 test images; 28 -> 224 px "
                    "bilinear, scaled to [0, 1], no normalisation, no augmentation",
                    "training: Adam lr 0.001 (betas 0.9/0.999, eps 1e-8), batch 64, 5 epochs, softmax cross-entropy, "
                    "no weight decay; PyTorch's default init (weights and biases uniform within +-1/sqrt(fan-in))",
                    "measurement: test accuracy after each epoch, dropout off"),
                unlike_published=(
                    "framework and device: MXNet 1.9.1 on a CPU here, PyTorch 0.4.0 on CUDA there: the same math with "
                    "other kernels and summation order",
                    "resize: there torchvision's PIL bilinear resize of the uint8 image, rounded back to uint8 before "
                    "ToTensor; here MXNet's BilinearResize2D (half-pixel centres) in float32, so pixel values differ "
                    "by up to half a grey level",
                    "randomness: one run on each side, with different generators and seeds (initial weights, shuffle "
                    "order, dropout masks); neither side measures the spread over seeds, so a gap of a few tenths of "
                    "a point cannot be told apart from what another seed would give",
                    "an older revision of the published page (5.7_vgg.md) shows the MXNet original's settings (SGD "
                    "lr 0.05, batch 128, Xavier) above the output printed by the PyTorch notebook (5.7_vgg.ipynb: "
                    "Adam lr 0.001, batch 64); this recipe is the notebook's, the code that printed the numbers")),
)}
# The lesson recipe each model trains with unless --recipe names another.
MODEL_RECIPES = {"lenet": "lenet", "alexnet": "alexnet"}
DEFAULT_RECIPE = "vgg"


def recipe_for_model(model: str) -> str:
    """The name of the lesson recipe ``model`` trains with by default (VGGs: ``vgg``)."""
    return MODEL_RECIPES.get(model, DEFAULT_RECIPE)


def get_recipe(name: str) -> NamedRecipe:
    """The recipe called ``name``; a one-line VggbenchError listing the table otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise VggbenchError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)} "
                            f"(`vggbench train-export --help` describes them)") from None


# Held out of the training subset when --until-plateau is asked without --holdout.
DEFAULT_HOLDOUT = 0.1


def resolve_recipe(model: str, recipe: Optional[str] = None, **explicit: Any):
    """The :class:`vggbench.train.Recipe` for ``model``: the named ``recipe`` (default: the model's
    lesson recipe, :func:`recipe_for_model`), then every ``explicit`` value that is not None
    (the user's own flags) on top. Returns ``(Recipe, NamedRecipe)``.

    ``input_size`` and ``width_ratio`` fall back to 96 and 1 when neither the recipe nor the caller
    sets them; ``--until-plateau`` without ``holdout`` holds out :data:`DEFAULT_HOLDOUT`.
    """
    from vggbench.train.recipe import Recipe

    named = get_recipe(recipe or recipe_for_model(model))
    values: Dict[str, Any] = {"input_size": 96, "width_ratio": 1.0, **named.training_values()}
    values.update({key: value for key, value in explicit.items() if value is not None})
    if values.get("until_plateau") and values.get("holdout") is None:
        values["holdout"] = DEFAULT_HOLDOUT
    for key in ("width_ratio", "lr", "warmup_epochs", "holdout", "min_delta"):
        if key in values:
            values[key] = float(values[key])
    return Recipe(model=model, preset=named.name, **values), named


def describe_choice(named: NamedRecipe, recipe, explicit: Dict[str, Any]) -> str:
    """One line for ``train-export``: which recipe, and which of its values the user's flags changed."""
    changed = [f"{key} {getattr(recipe, key)}" for key, value in named.training_values().items()
               if explicit.get(key) is not None and explicit[key] != value]
    return f"recipe {named.name}: {named.summary}" + (f" (changed by flags: {', '.join(changed)})" if changed else "")
