"""The model zoo: the lesson's VGG blocks, the paper's Table 1 as one table, and the baselines.

The lesson builds VGG from two pieces, ``vgg_block`` and ``vgg_stack``, driven by an
``architecture`` tuple of ``(num_convs, channels)`` pairs. We keep exactly that shape: every VGG
variant is one row of :data:`VGG_ARCHITECTURES`, every name (``vgg11``, ``vgg11_bn``, ...) is
generated from that table, and :func:`get_model` is the one builder. LeNet and AlexNet are the
lesson's exercise baselines, written as in the Gluon edition of the same course.

Everything is a ``HybridBlock`` so any model can be hybridized and exported.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

from vggbench.errors import VggbenchError, summarize_error
from vggbench.platform.mxnet import import_mxnet

Architecture = Tuple[Tuple[int, int], ...]

# Paper Table 1 (Simonyan & Zisserman, 2014): configuration letter and (num_convs, channels) per block.
VGG_ARCHITECTURES: Dict[str, Tuple[str, Architecture]] = {
    "vgg11": ("A", ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))),
    "vgg13": ("B", ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512))),
    "vgg16": ("D", ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))),
    "vgg19": ("E", ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))),
}
# Width of the two hidden dense layers of VGG and AlexNet (the lesson's; width_ratio leaves it alone).
DENSE_UNITS = 4096
BASELINES = {"lenet": "LeNet-5 (sigmoid, avg-pool)", "alexnet": "AlexNet (5 conv + 3 dense)"}


def _vgg_names() -> Dict[str, Tuple[str, Architecture, bool]]:
    names = {}
    for name, (letter, arch) in VGG_ARCHITECTURES.items():
        names[name] = (letter, arch, False)
        names[name + "_bn"] = (letter + "+BN", arch, True)
    return names


VGG_MODELS = _vgg_names()
MODEL_NAMES: Tuple[str, ...] = tuple(VGG_MODELS) + tuple(BASELINES)


def _nn():
    # Imported lazily so `vggbench --help` and error paths stay fast.
    nn = import_mxnet().gluon.nn

    return nn


def _scaled(channels: int, width_ratio: float) -> int:
    """Divide a layer's channel count by the width ratio (the course's trick for small hardware)."""
    return max(1, int(channels // width_ratio))


def vgg_block(num_convs: int, channels: int, batch_norm: bool = False):
    """The lesson's block: ``num_convs`` 3x3 convolutions (padding 1) with ``channels`` outputs + ReLU
    (with ``batch_norm``: BatchNorm before each ReLU), then 2x2 max-pool."""
    nn = _nn()
    block = nn.HybridSequential()
    for _ in range(num_convs):
        if batch_norm:
            block.add(nn.Conv2D(channels, kernel_size=3, padding=1),
                      nn.BatchNorm(), nn.Activation("relu"))
        else:
            block.add(nn.Conv2D(channels, kernel_size=3, padding=1, activation="relu"))
    block.add(nn.MaxPool2D(pool_size=2, strides=2))
    return block


def vgg_stack(architecture: Sequence[Tuple[int, int]], batch_norm: bool = False):
    """The lesson's convolutional part: one ``vgg_block`` per ``(num_convs, channels)`` pair of
    ``architecture``, each with ``batch_norm``."""
    nn = _nn()
    stack = nn.HybridSequential()
    for num_convs, channels in architecture:
        stack.add(vgg_block(num_convs, channels, batch_norm))
    return stack


def _classifier_head(classes: int, hidden: int = DENSE_UNITS, dropout: float = 0.5):
    """The lesson's head: Flatten, two Dense(4096)+ReLU+Dropout(0.5), Dense(classes)."""
    nn = _nn()
    head = nn.HybridSequential()
    head.add(nn.Flatten(),
             nn.Dense(hidden, activation="relu"), nn.Dropout(dropout),
             nn.Dense(hidden, activation="relu"), nn.Dropout(dropout),
             nn.Dense(classes))
    return head


def vgg(architecture: Sequence[Tuple[int, int]], classes: int = 10, batch_norm: bool = False,
        width_ratio: float = 1.0, dense_units: int = DENSE_UNITS):
    """VGG = ``vgg_stack`` (channels divided by ``width_ratio``) + the lesson's dense head.

    ``architecture``: ``(num_convs, channels)`` per block; ``classes``: output logits;
    ``batch_norm``: BatchNorm after every convolution; ``width_ratio``: divides every conv's channels;
    ``dense_units``: the head's hidden width.
    """
    nn = _nn()
    scaled = tuple((num_convs, _scaled(channels, width_ratio)) for num_convs, channels in architecture)
    net = nn.HybridSequential()
    net.add(vgg_stack(scaled, batch_norm), _classifier_head(classes, dense_units))
    return net


def lenet(classes: int = 10, width_ratio: float = 1.0):
    """LeNet-5 as in the course: sigmoid activations and average pooling.

    ``classes``: output logits; ``width_ratio``: divides the two convolutions' channels.
    """
    nn = _nn()
    net = nn.HybridSequential()
    net.add(nn.Conv2D(_scaled(6, width_ratio), kernel_size=5, padding=2, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Conv2D(_scaled(16, width_ratio), kernel_size=5, activation="sigmoid"),
            nn.AvgPool2D(pool_size=2, strides=2),
            nn.Flatten(),
            nn.Dense(120, activation="sigmoid"), nn.Dense(84, activation="sigmoid"),
            nn.Dense(classes))
    return net


def alexnet(classes: int = 10, width_ratio: float = 1.0, dense_units: int = DENSE_UNITS):
    """AlexNet as in the course (single-tower, no LRN), for 1-channel Fashion-MNIST.

    ``classes``: output logits; ``width_ratio``: divides every convolution's channels;
    ``dense_units``: the head's hidden width.
    """
    nn = _nn()
    c = lambda channels: _scaled(channels, width_ratio)  # noqa: E731
    net = nn.HybridSequential()
    net.add(nn.Conv2D(c(96), kernel_size=11, strides=4, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            nn.Conv2D(c(256), kernel_size=5, padding=2, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            nn.Conv2D(c(384), kernel_size=3, padding=1, activation="relu"),
            nn.Conv2D(c(384), kernel_size=3, padding=1, activation="relu"),
            nn.Conv2D(c(256), kernel_size=3, padding=1, activation="relu"),
            nn.MaxPool2D(pool_size=3, strides=2),
            _classifier_head(classes, dense_units))
    return net


def describe(name: str) -> str:
    """Short configuration label for tables: paper letter (A/B/D/E, +BN) or the baseline's name."""
    check_model_name(name)
    return VGG_MODELS[name][0] if name in VGG_MODELS else BASELINES[name]


def check_model_name(name: str) -> None:
    """Raise a VggbenchError listing the zoo when ``name`` is not one of :data:`MODEL_NAMES`."""
    if name not in MODEL_NAMES:
        raise VggbenchError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


# --- range checks: every layer keeps >= 1 channel, every pooling fits -----------------------------
# Smallest conv channel count of each baseline (as written in lenet()/alexnet(); tests check that
# these equal the built nets') and the smallest square input each model accepts (VGG: five 2x2
# pools, 32 -> 1; LeNet: 5x5 conv + two pools; AlexNet: 11x11/4 conv + three 3x3/2 pools).
_BASELINE_MIN_CHANNELS = {"lenet": 6, "alexnet": 96}
_MIN_INPUT_SIZE = {"lenet": 12, "alexnet": 67}
VGG_MIN_INPUT_SIZE = 32
# 28x28 images upsampled past this are pointless, and VGG's dense head outgrows memory
# (full-width VGG-11 at 1024: 2.1 G weights in the first dense layer).
MAX_INPUT_SIZE = 1024


def min_channels(name: str) -> int:
    """The smallest convolution channel count of model ``name`` at full width."""
    check_model_name(name)
    if name in VGG_MODELS:
        return min(channels for _, channels in VGG_MODELS[name][1])
    return _BASELINE_MIN_CHANNELS[name]


def min_input_size(name: str) -> int:
    """The smallest square input (pixels) model ``name`` accepts: every pooling window must fit."""
    check_model_name(name)
    return VGG_MIN_INPUT_SIZE if name in VGG_MODELS else _MIN_INPUT_SIZE[name]


def check_width_ratio(name: str, width_ratio: float, flag: str = "--width-ratio") -> float:
    """Return ``width_ratio`` as a float if every conv layer of ``name`` keeps >= 1 channel.

    Rejects non-numbers, NaN, inf, values <= 0 and values above :func:`min_channels` (which
    would otherwise be clamped to one channel without a word), in one line naming ``flag``.
    """
    check_model_name(name)
    try:
        ratio = float(width_ratio)
    except (TypeError, ValueError):
        raise VggbenchError(f"{flag} must be a number, got {width_ratio!r}") from None
    limit = min_channels(name)
    if not (0 < ratio <= limit):  # NaN fails this too
        raise VggbenchError(f"{flag} {width_ratio!r} is outside 0 < ratio <= {limit}: {name}'s smallest layer has "
                            f"{limit} channels, and every layer needs at least one; 1 is full width, 8 the quick "
                            f"CPU run")
    return ratio


def check_input_size(input_size: int, name: str = "vgg11", flag: str = "--size") -> int:
    """Return ``input_size`` if it is a whole number from :func:`min_input_size` to
    :data:`MAX_INPUT_SIZE` (the default ``name`` asks VGG's bound: five 2x2 pools)."""
    lowest = min_input_size(name)
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise VggbenchError(f"{flag} must be a whole number of pixels, got {input_size!r}; use 96 or 224")
    if input_size < lowest:
        raise VggbenchError(f"{flag} {input_size} is too small for {name}: its poolings need at least "
                            f"{lowest}x{lowest}; use 96 (the lesson's) or 224 (the paper's)")
    if input_size > MAX_INPUT_SIZE:
        raise VggbenchError(f"{flag} {input_size} is larger than {MAX_INPUT_SIZE}: the 28x28 images gain nothing and "
                            f"the dense head outgrows memory; use 96 or 224")
    return input_size


def get_model(name: str, classes: int = 10, in_channels: int = 1, width_ratio: float = 1.0,
              dense_units: int = DENSE_UNITS):
    """Build (uninitialised) model ``name`` (one of :data:`MODEL_NAMES`).

    ``classes``: output logits; ``width_ratio``: divides every convolution's channels (1 is full
    width). ``in_channels`` is accepted for symmetry with the input shape; Gluon infers it at the
    first forward pass, so it only matters to :func:`model_stats`. ``dense_units``: the hidden
    width of VGG's and AlexNet's dense head (LeNet's is its own 120/84).
    """
    width_ratio = check_width_ratio(name, width_ratio, flag="width_ratio")
    if classes < 1 or in_channels < 1:
        raise VggbenchError(f"classes and in_channels must be >= 1, got {classes} and {in_channels}")
    if name in VGG_MODELS:
        _, arch, batch_norm = VGG_MODELS[name]
        return vgg(arch, classes=classes, batch_norm=batch_norm, width_ratio=width_ratio, dense_units=dense_units)
    if name == "alexnet":
        return alexnet(classes=classes, width_ratio=width_ratio, dense_units=dense_units)
    return lenet(classes=classes, width_ratio=width_ratio)


def graph_stats(graph, input_shape: Sequence[int]) -> Dict[str, int]:
    """Trainable parameters and forward FLOPs per image, read from the network's own graph.

    Parameters:
        graph: a Gluon block (traced symbolically) or an ``mx.sym.Symbol`` whose input is
            named ``data``, such as an exported ``model-symbol.json``.
        input_shape: ``(N, channels, height, width)``; N is ignored (FLOPs are per image).

    MXNet's shape inference gives every weight and every layer output, so nothing is allocated
    or computed: the full-width ImageNet VGG-19 at 224 costs milliseconds. FLOPs are 2 x
    multiply-adds of every Convolution and FullyConnected layer (activations, pooling, BN and
    biases are not counted; ImageNet VGG-16 at 224 is 15.5 G multiply-adds, so 31 GFLOP).
    Parameters are the graph's arguments except the input; BatchNorm running statistics are
    auxiliary states and not counted.
    """
    import json

    mx = import_mxnet()

    output = graph if isinstance(graph, mx.sym.Symbol) else graph(mx.sym.var("data"))
    internals = output.get_internals()
    shape = (1,) + tuple(input_shape[1:])
    try:
        arg_shapes, out_shapes, _ = internals.infer_shape(data=shape)
    except mx.base.MXNetError as err:
        raise VggbenchError(f"the model cannot take {shape[2]}x{shape[3]} inputs "
                            f"({summarize_error(err)}); use a larger --size") from None
    arg_shape = dict(zip(internals.list_arguments(), arg_shapes))
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    params = sum(int(_prod(s)) for name, s in arg_shape.items() if name != "data")
    nodes = json.loads(output.tojson())["nodes"]
    flops = 0
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        weight = arg_shape[nodes[node["inputs"][1][0]]["name"]]
        outputs_per_image = _prod(out_shape[node["name"] + "_output"][1:])
        if node["op"] == "Convolution":  # weight: (out, in/groups, kh, kw); output: (1, out, h, w)
            flops += 2 * outputs_per_image * _prod(weight[1:])
        else:  # weight: (units, in_units); output: (1, units)
            flops += 2 * outputs_per_image * weight[1]
    return {"params": int(params), "flops": int(flops)}


def _prod(values) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


def model_stats(name: str, input_size: int, classes: int = 10, in_channels: int = 1,
                width_ratio: float = 1.0) -> Dict[str, float]:
    """Parameters and forward FLOPs per image of model ``name`` for square ``input_size`` inputs.

    ``classes``, ``in_channels`` and ``width_ratio`` are :func:`get_model`'s. Returns the settings
    plus ``params``, ``flops_per_image`` and ``gflops`` (the same count in 1e9 FLOPs).
    """
    net = get_model(name, classes=classes, in_channels=in_channels, width_ratio=width_ratio)
    try:
        stats = graph_stats(net, (1, in_channels, input_size, input_size))
    except VggbenchError as err:
        raise VggbenchError(f"{name}: {err}") from None
    return {"model": name, "config": describe(name), "input_size": input_size,
            "width_ratio": width_ratio, "classes": classes, "in_channels": in_channels,
            "params": stats["params"], "flops_per_image": stats["flops"], "gflops": stats["flops"] / 1e9}


def model_stats_from_manifest(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Parameters and forward FLOPs per image of a run dir's model, from its manifest.

    ``manifest``: a run dir's manifest (``artifacts.read_manifest``). Export writes
    ``manifest["model_stats"]``, counted on the exported graph; run dirs made before that are
    recomputed from today's model code with the manifest's model settings. Returns ``params``,
    ``flops_per_image``, ``gflops`` (the same in 1e9 FLOPs) and ``source`` (``manifest`` or
    ``recomputed``).
    """
    recorded = manifest.get("model_stats")
    if recorded and "params" in recorded and "flops_per_image" in recorded:
        params, flops, source = int(recorded["params"]), int(recorded["flops_per_image"]), "manifest"
    else:
        stats = model_stats(manifest["model"], int(manifest["input_size"]), classes=manifest.get("classes", 10),
                            in_channels=manifest.get("in_channels", 1), width_ratio=manifest.get("width_ratio", 1.0))
        params, flops, source = stats["params"], stats["flops_per_image"], "recomputed"
    return {"params": params, "flops_per_image": flops, "gflops": flops / 1e9, "source": source}
