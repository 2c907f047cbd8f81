"""The model zoo: the lesson's VGG blocks, the paper's Table 1 as one table, and the baselines.

The lesson builds VGG from two pieces, ``vgg_block`` and ``vgg_stack``, driven by an
``architecture`` tuple of ``(num_convs, channels)`` pairs. We keep exactly that shape: every VGG
variant is one row of :data:`VGG_ARCHITECTURES`, every name (``vgg11``, ``vgg11_bn``, ...) is
generated from that table, and :func:`get_model` is the one builder. LeNet and AlexNet are the
lesson's exercise baselines, written as in the Gluon edition of the same course.

Everything is a ``HybridBlock`` so any model can be hybridized and exported.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

from vggbench.errors import VggbenchError

Architecture = Tuple[Tuple[int, int], ...]

# Paper Table 1 (Simonyan & Zisserman, 2014): configuration letter and (num_convs, channels) per block.
VGG_ARCHITECTURES: Dict[str, Tuple[str, Architecture]] = {
    "vgg11": ("A", ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))),
    "vgg13": ("B", ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512))),
    "vgg16": ("D", ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))),
    "vgg19": ("E", ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))),
}
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
    from mxnet.gluon import nn

    return nn


def _scaled(channels: int, width_ratio: float) -> int:
    """Divide a layer's channel count by the width ratio (the course's trick for small hardware)."""
    return max(1, int(channels // width_ratio))


def vgg_block(num_convs: int, channels: int, batch_norm: bool = False):
    """The lesson's block: ``num_convs`` 3x3 convolutions (padding 1) + ReLU, then 2x2 max-pool."""
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
    """The lesson's convolutional part: one ``vgg_block`` per ``(num_convs, channels)`` pair."""
    nn = _nn()
    stack = nn.HybridSequential()
    for num_convs, channels in architecture:
        stack.add(vgg_block(num_convs, channels, batch_norm))
    return stack


def _classifier_head(classes: int, hidden: int = 4096, dropout: float = 0.5):
    """The lesson's head: Flatten, two Dense(4096)+ReLU+Dropout(0.5), Dense(classes)."""
    nn = _nn()
    head = nn.HybridSequential()
    head.add(nn.Flatten(),
             nn.Dense(hidden, activation="relu"), nn.Dropout(dropout),
             nn.Dense(hidden, activation="relu"), nn.Dropout(dropout),
             nn.Dense(classes))
    return head


def vgg(architecture: Sequence[Tuple[int, int]], classes: int = 10, batch_norm: bool = False,
        width_ratio: float = 1.0):
    """VGG = ``vgg_stack`` (channels divided by ``width_ratio``) + the lesson's dense head."""
    nn = _nn()
    scaled = tuple((num_convs, _scaled(channels, width_ratio)) for num_convs, channels in architecture)
    net = nn.HybridSequential()
    net.add(vgg_stack(scaled, batch_norm), _classifier_head(classes))
    return net


def lenet(classes: int = 10, width_ratio: float = 1.0):
    """LeNet-5 as in the course: sigmoid activations and average pooling."""
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


def alexnet(classes: int = 10, width_ratio: float = 1.0):
    """AlexNet as in the course (single-tower, no LRN), for 1-channel Fashion-MNIST."""
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
            _classifier_head(classes))
    return net


def describe(name: str) -> str:
    """Short configuration label for tables: paper letter (A/B/D/E, +BN) or the baseline's name."""
    check_model_name(name)
    return VGG_MODELS[name][0] if name in VGG_MODELS else BASELINES[name]


def check_model_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise VggbenchError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


def get_model(name: str, classes: int = 10, in_channels: int = 1, width_ratio: float = 1.0):
    """Build (uninitialised) model ``name``.

    ``in_channels`` is accepted for symmetry with the input shape; Gluon infers it at the first
    forward pass, so it only matters to :func:`model_stats`.
    """
    check_model_name(name)
    if width_ratio <= 0:
        raise VggbenchError(f"width_ratio must be > 0, got {width_ratio}; 1 is full width, 4 is the course's small VGG")
    if classes < 1 or in_channels < 1:
        raise VggbenchError(f"classes and in_channels must be >= 1, got {classes} and {in_channels}")
    if name in VGG_MODELS:
        _, arch, batch_norm = VGG_MODELS[name]
        return vgg(arch, classes=classes, batch_norm=batch_norm, width_ratio=width_ratio)
    builder = {"lenet": lenet, "alexnet": alexnet}[name]
    return builder(classes=classes, width_ratio=width_ratio)


def count_parameters(net) -> int:
    """Trainable parameters of an initialised net (BatchNorm running statistics are state)."""
    return int(sum(p.data().size for p in net.collect_params().values() if p.grad_req != "null"))


def graph_stats(net, input_shape: Sequence[int]) -> Dict[str, int]:
    """Trainable parameters and forward FLOPs per image, read from the network's own graph.

    The net is traced symbolically and MXNet's shape inference gives every weight and every
    layer output, so nothing is allocated or computed: the full-width ImageNet VGG-19 at 224
    costs milliseconds. FLOPs are 2 x multiply-adds of every Convolution and FullyConnected
    layer (activations, pooling, BN and biases are not counted; ImageNet VGG-16 at 224 is 15.5 G
    multiply-adds, so 31 GFLOP). Parameters are the graph's arguments except the input; BatchNorm
    running statistics are auxiliary states and not counted.
    """
    import json

    import mxnet as mx

    output = net(mx.sym.var("data"))
    internals = output.get_internals()
    shape = (1,) + tuple(input_shape[1:])
    try:
        arg_shapes, out_shapes, _ = internals.infer_shape(data=shape)
    except mx.base.MXNetError as err:
        raise VggbenchError(f"the model cannot take {shape[2]}x{shape[3]} inputs "
                            f"({str(err).strip().splitlines()[0][:160]}); use a larger --size") from None
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
    """Parameters and forward GFLOPs of ``name`` for square ``input_size`` inputs."""
    net = get_model(name, classes=classes, in_channels=in_channels, width_ratio=width_ratio)
    try:
        stats = graph_stats(net, (1, in_channels, input_size, input_size))
    except VggbenchError as err:
        raise VggbenchError(f"{name}: {err}") from None
    return {"model": name, "config": describe(name), "input_size": input_size,
            "width_ratio": width_ratio, "classes": classes, "in_channels": in_channels,
            "params": stats["params"], "gflops": stats["flops"] / 1e9}
