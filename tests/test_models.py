"""The model zoo: every model builds, hybridizes and has the paper's parameter counts."""

from __future__ import annotations

import json

import pytest

from vggbench import VggbenchError
from vggbench.cli import main
from vggbench.models import (
    MODEL_NAMES,
    VGG_ARCHITECTURES,
    get_model,
    graph_stats,
    min_channels,
    model_stats,
    model_stats_from_manifest,
    vgg_block,
)
from vggbench.platform.mxnet import import_mxnet

mx = import_mxnet()

# Parameter counts of the ImageNet models (3 input channels, 1000 classes, 224x224), as published
# with the paper-era reference implementations (torchvision/GluonCV agree to the parameter).
IMAGENET_PARAMS = {
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
}


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("size", [96, 224])
def test_every_model_hybridizes_and_maps_images_to_ten_logits(name, size):
    net = get_model(name, width_ratio=min(16, min_channels(name)))  # LeNet's 6-channel conv caps it at 6
    net.initialize(mx.init.Xavier())
    net.hybridize()
    out = net(mx.nd.random.uniform(shape=(2, 1, size, size)))
    assert out.shape == (2, 10)
    assert mx.nd.contrib.isfinite(out).min().asscalar() == 1


def test_lesson_vgg_block_halves_the_resolution():
    block = vgg_block(2, 128)
    block.initialize()
    assert block(mx.nd.zeros((2, 3, 16, 16))).shape == (2, 128, 8, 8)


@pytest.mark.parametrize("name", sorted(IMAGENET_PARAMS))
def test_imagenet_parameter_counts_match_the_reference_models(name):
    stats = model_stats(name, 224, classes=1000, in_channels=3)
    assert stats["params"] == IMAGENET_PARAMS[name]


def _hand_count_vgg11_gflops(size: int, in_channels: int = 1, classes: int = 10) -> float:
    """Layer by layer: a 3x3 conv costs 2*9*Cin*Cout per output pixel, dense 2*in*out."""
    flops, channels, side = 0, in_channels, size
    for num_convs, out_channels in VGG_ARCHITECTURES["vgg11"][1]:
        for _ in range(num_convs):
            flops += 2 * 9 * channels * out_channels * side * side
            channels = out_channels
        side //= 2
    flops += 2 * (channels * side * side * 4096 + 4096 * 4096 + 4096 * classes)
    return flops / 1e9


@pytest.mark.parametrize("size, expected", [(96, 2.80), (224, 15.09)])
def test_vgg11_flops_match_a_hand_count(size, expected):
    stats = model_stats("vgg11", size)
    assert stats["gflops"] == pytest.approx(_hand_count_vgg11_gflops(size), rel=1e-12)
    assert stats["gflops"] == pytest.approx(expected, abs=0.01)


def test_width_ratio_divides_conv_channels_only():
    net = get_model("vgg11", width_ratio=4)
    net.initialize()
    net(mx.nd.zeros((1, 1, 96, 96)))
    convs = [p for name, p in net.collect_params().items() if name.endswith("weight") and len(p.shape) == 4]
    assert [p.shape[0] for p in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    dense = [p for name, p in net.collect_params().items() if name.endswith("weight") and len(p.shape) == 2]
    assert [p.shape[0] for p in dense] == [4096, 4096, 10]


def test_graph_count_equals_the_initialised_network():
    net = get_model("vgg13_bn", width_ratio=8)
    stats = graph_stats(net, (1, 1, 96, 96))
    net.initialize()
    net(mx.nd.zeros((1, 1, 96, 96)))
    trainable = [p for p in net.collect_params().values() if p.grad_req != "null"]  # not BN running stats
    assert stats["params"] == sum(p.data().size for p in trainable)
    lenet = get_model("lenet")
    assert graph_stats(lenet, (1, 1, 28, 28))["params"] == 61_706  # classic LeNet-5 on 28x28


def test_manifest_stats_are_read_and_old_manifests_are_recomputed():
    old = {"model": "vgg11", "input_size": 96, "width_ratio": 8.0, "classes": 10, "in_channels": 1, "files": {}}
    expected = model_stats("vgg11", 96, width_ratio=8.0)
    recomputed = model_stats_from_manifest(old)
    assert recomputed == {"params": expected["params"], "flops_per_image": expected["flops_per_image"],
                          "gflops": pytest.approx(expected["gflops"]), "source": "recomputed"}
    # A run dir's own count wins over today's model code (here: a model that has since changed).
    recorded = dict(old, model_stats={"params": 1234, "flops_per_image": 5_000_000_000})
    assert model_stats_from_manifest(recorded) == {"params": 1234, "flops_per_image": 5_000_000_000,
                                                   "gflops": 5.0, "source": "manifest"}


def test_too_small_input_is_a_clear_error():
    with pytest.raises(VggbenchError, match="alexnet.*cannot take 32x32"):
        model_stats("alexnet", 32)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(VggbenchError) as err:
        get_model("vgg12")
    assert "vgg12" in str(err.value) and "vgg11_bn" in str(err.value) and "alexnet" in str(err.value)


def test_bad_width_ratio_is_a_clear_error():
    with pytest.raises(VggbenchError, match="width_ratio"):
        get_model("vgg11", width_ratio=0)


def test_models_command_prints_the_table_and_json(capsys, tmp_path):
    out_file = tmp_path / "models.json"
    assert main(["models", "--width-ratio", "4", "--json", str(out_file)]) == 0
    printed = capsys.readouterr().out
    assert "vgg19_bn" in printed and "GFLOPs @224" in printed
    rows = json.loads(out_file.read_text())
    assert [row["model"] for row in rows] == list(MODEL_NAMES)
    assert all(row["gflops_96"] < row["gflops_224"] for row in rows)
