"""``--ctx`` to MXNet contexts, and splitting a batch over them.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from vggbench.errors import VggbenchError
from vggbench.platform.devices import Device
from vggbench.platform.mxnet import import_mxnet, mxnet_cuda_facts

# --- devices ---------------------------------------------------------------------------------------

def resolve_contexts(spec: str, num_gpus: Optional[int] = None, inventory: Optional[Sequence] = None
                     ) -> Tuple[list, str]:
    """Turn ``--ctx`` into MXNet contexts plus a sentence saying why.

    Parameters:
        spec: ``auto``, ``cpu``, ``gpu``, ``gpu:N``, a list ``gpu:0,gpu:1``, or ``cpu:0,cpu:1``
            (several CPU contexts: the multi-device split path, testable without a GPU).
        num_gpus: what MXNet sees (default ``mx.context.num_gpus()``, 0 on CPU-only builds).
        inventory: the GPUs with their compute capability (default
            :func:`vggbench.platform.gpu.visible_inventory`); ``auto`` falls back to the CPU, with the reason,
            on a GPU that mxnet-cu117 has no kernels for (Hopper and newer), and an explicit GPU
            there is a one-line error (:func:`vggbench.platform.gpu.resolve_mxnet_context`).
    """
    from vggbench.platform import gpu

    mx = import_mxnet()
    label = (spec or "auto").strip().lower()
    parts = [part.strip() for part in label.split(",")]
    if all(part.startswith("cpu:") for part in parts):
        try:
            devices = [Device.parse(part) for part in parts]
        except VggbenchError:
            devices = []
        if not devices or len(set(devices)) != len(devices):
            raise VggbenchError(f"--ctx {label!r}: use distinct cpu:N entries, e.g. cpu:0,cpu:1")
        contexts = [mx.cpu(device.index) for device in devices]
        return contexts, f"--ctx {label}: training on {', '.join(str(c) for c in contexts)}"
    has_cuda, counted, _ = mxnet_cuda_facts()  # a CUDA build that cannot count GPUs counts 0
    if num_gpus is None:
        num_gpus = counted
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
