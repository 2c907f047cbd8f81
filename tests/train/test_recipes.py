"""The lessons' recipes: the named table, which one a model gets, flags over it, what it builds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from vggbench import models, train
from vggbench.errors import VggbenchError
from vggbench.platform.mxnet import import_mxnet
from vggbench.train.recipes import RECIPES, describe_choice, get_recipe, recipe_for_model, resolve_recipe

mx = import_mxnet()


@pytest.mark.parametrize("model, name", [("lenet", "lenet"), ("alexnet", "alexnet"), ("vgg11", "vgg"),
                                         ("vgg16_bn", "vgg"), ("vgg19", "vgg")])
def test_each_model_trains_with_its_own_lessons_recipe_by_default(model, name):
    recipe, named = resolve_recipe(model)
    assert recipe_for_model(model) == name and named.name == name and recipe.preset == name
    assert (recipe.lr, recipe.batch_size, recipe.optimizer, recipe.init) == (named.lr, named.batch_size,
                                                                             named.optimizer, named.init)


def test_the_baselines_lessons_use_other_rates_than_vgg():
    rates = {model: resolve_recipe(model)[0].lr for model in ("lenet", "alexnet", "vgg11")}
    assert rates["lenet"] > rates["vgg11"] > rates["alexnet"]


def test_the_main_job_keeps_the_recipe_its_published_accuracy_came_from():
    """`train-export vgg11_bn --width-ratio 8 --epochs 2 --train-limit 40000`: the values every run
    had before the table existed (the Recipe dataclass defaults), no held-out split, no plateau."""
    recipe, _ = resolve_recipe("vgg11_bn", width_ratio=8, epochs=2, train_limit=40000)
    before = train.Recipe("vgg11_bn", width_ratio=8.0, epochs=2, train_limit=40000)
    fields = ("input_size", "batch_size", "lr", "optimizer", "init", "loss", "warmup_epochs", "dense_units", "holdout",
              "until_plateau")
    assert {f: getattr(recipe, f) for f in fields} == {f: getattr(before, f) for f in fields}


def test_flags_override_the_recipe_and_none_keeps_it():
    recipe, named = resolve_recipe("lenet", lr=0.5, batch_size=None, epochs=7)
    assert (recipe.lr, recipe.batch_size, recipe.epochs) == (0.5, named.batch_size, 7)
    line = describe_choice(named, recipe, {"lr": 0.5, "batch_size": None, "epochs": 7})
    assert line.startswith("recipe lenet: LeNet lesson") and "lr 0.5" in line and "epochs 7" in line
    assert "batch_size" not in line


def test_a_named_recipe_can_be_chosen_for_any_model():
    recipe, _ = resolve_recipe("vgg16", "vgg-he-warmup")
    assert (recipe.preset, recipe.init, recipe.warmup_epochs, recipe.lr) == ("vgg-he-warmup", "he", 1.0, 0.05)


def test_the_reproduction_recipe_fixes_size_width_and_head_as_published():
    recipe, named = resolve_recipe("vgg11", "d2lzh-pytorch-vgg11")
    assert (recipe.input_size, recipe.width_ratio, recipe.dense_units) == (224, 8.0, 512)
    assert (recipe.optimizer, recipe.lr, recipe.batch_size, recipe.init, recipe.epochs) == ("adam", 0.001, 64, "torch", 5)
    assert len(named.published_test_accuracy) == recipe.epochs and "ShusenTang/Dive-into-DL-PyTorch" in named.source


def test_until_plateau_holds_out_a_tenth_unless_told():
    assert resolve_recipe("vgg11", until_plateau=True)[0].holdout == 0.1
    assert resolve_recipe("vgg11", until_plateau=True, holdout=0.2)[0].holdout == 0.2
    assert resolve_recipe("vgg11")[0].holdout == 0.0


def test_an_unknown_recipe_is_one_line_naming_the_table():
    with pytest.raises(VggbenchError, match="unknown recipe 'vgg-fast'; choose one of: lenet, alexnet, vgg") as err:
        get_recipe("vgg-fast")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_passes_its_checks_and_builds_its_optimizer(name):
    recipe, named = resolve_recipe("vgg11", name)
    recipe.check()
    optimizer = recipe.make_optimizer(steps_per_epoch=10)
    assert type(optimizer).__name__.lower() == named.optimizer
    assert (optimizer.lr_scheduler is not None) == bool(named.warmup_epochs)


def test_warm_up_rises_linearly_and_continues_after_a_saved_trainer_state(tmp_path):
    recipe = dataclasses.replace(resolve_recipe("lenet")[0], warmup_epochs=1.0, input_size=32)
    net = train.build_network(recipe, [mx.cpu()])
    trainer = train.build_trainer(net, recipe, steps_per_epoch=4)
    x, y = mx.nd.random.uniform(shape=(2, 1, 32, 32)), mx.nd.array([0, 1])
    rates = []
    for _ in range(2):
        with mx.autograd.record():
            loss = recipe.make_loss()(net(x), y)
        loss.backward()
        trainer.step(2)
        rates.append(trainer.learning_rate)
    assert rates == pytest.approx([recipe.lr * 1 / 4, recipe.lr * 2 / 4])
    trainer.save_states(str(tmp_path / "states"))
    again = train.build_trainer(net, recipe, steps_per_epoch=4)
    again.load_states(str(tmp_path / "states"))
    assert again.learning_rate == pytest.approx(recipe.lr * 2 / 4)  # the schedule travels with the state


def test_warm_up_without_steps_per_epoch_is_a_clear_error():
    recipe = resolve_recipe("vgg11", "vgg-warmup")[0]
    with pytest.raises(VggbenchError, match="warm-up needs the number of steps per epoch"):
        recipe.make_optimizer()


def test_torch_init_draws_weights_and_biases_within_one_over_root_fan_in():
    recipe = resolve_recipe("vgg11", "d2lzh-pytorch-vgg11", input_size=32, width_ratio=32)[0]
    net = train.build_network(recipe, [mx.cpu()])
    params = net.collect_params()
    for name, param in params.items():
        if not name.endswith("weight"):
            continue
        bound = 1 / math.sqrt(int(np.prod(param.shape[1:])))
        weight = param.data().asnumpy()
        bias = params[name[:-len("weight")] + "bias"].data().asnumpy()
        assert np.abs(weight).max() <= bound * (1 + 1e-6) and weight.std() > bound / 4
        assert np.abs(bias).max() <= bound * (1 + 1e-6) and np.abs(bias).max() > 0  # MXNet alone leaves them 0


def test_he_init_is_relu_fan_in_gain_two():
    recipe = resolve_recipe("vgg11", "vgg-he", width_ratio=32)[0]
    net = train.build_network(recipe, [mx.cpu()])
    dense = [p for p in net.collect_params().values() if p.shape == (4096, 4096)][0].data().asnumpy()
    assert dense.std() == pytest.approx(math.sqrt(2 / 4096), rel=0.02)


def test_the_dense_width_changes_only_the_head():
    narrow = models.graph_stats(models.get_model("vgg11", width_ratio=8, dense_units=512), (1, 1, 224, 224))
    lesson = models.graph_stats(models.get_model("vgg11", width_ratio=8), (1, 1, 224, 224))
    flat = 64 * 7 * 7  # the last block's 512/8 channels at 7x7
    head = lambda units: flat * units + units + units * units + units + units * 10 + 10  # noqa: E731
    assert lesson["params"] - narrow["params"] == head(4096) - head(512)
    assert head(512) == 3136 * 512 + 512 + 512 * 512 + 512 + 5130  # the published net's printed Linear layers
