"""MXNet runners: imperative Gluon (``mxnet``) and the hybridized exported graph (``mxnet-hybrid``).

MXNet is asynchronous: every call here waits for its result (``wait_to_read``) before returning,
so a timer around ``run``/``run_staged`` measures the work and not just its scheduling.
MXNet's CPU thread count comes from ``OMP_NUM_THREADS``, which must be set before mxnet is first
imported (the bench worker process does that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from vggbench.artifacts.layout import INPUT_NAME, PARAMS_FILE, SYMBOL_FILE
from vggbench.artifacts.manifest import read_manifest, verify_file
from vggbench.errors import summarize_error
from vggbench.platform.mxnet import import_mxnet
from vggbench.runtimes.backends import unsupported_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime


def mxnet_default_threads() -> int:
    """The OpenMP thread count MXNet uses in this process: what :func:`vggbench.platform.mxnet.import_mxnet`
    set (its :func:`~vggbench.platform.mxnet.mxnet_threads`), else MXNet's own rule for the environment
    (:func:`vggbench.platform.mxnet.mxnet_default_threads`)."""
    from vggbench.platform import mxnet as mxnet_platform

    return mxnet_platform.mxnet_threads() or mxnet_platform.mxnet_default_threads()[0]


def parse_device(device: str):
    """'cpu', 'gpu' or 'gpu:N' -> (kind, index)."""
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "gpu") or (index and not index.isdigit()):
        raise BackendUnavailable(f"device {device!r} is not one of cpu, gpu, gpu:N")
    return kind, int(index or 0)


def unavailable_reason(precision: str = "fp32", device: str = "cpu") -> Optional[str]:
    """Why the MXNet runners cannot run ``precision`` on ``device`` (cpu, gpu, gpu:N) here, or None."""
    reason = unsupported_reason("mxnet", precision)
    if reason:
        return reason
    kind, index = parse_device(device)
    if kind == "cpu":
        return None
    from vggbench.platform.gpu import mxnet_gpu_unavailable_reason, visible_inventory

    mx = import_mxnet()
    has_cuda = bool(mx.runtime.Features().is_enabled("CUDA"))
    if not has_cuda:
        return mxnet_gpu_unavailable_reason(None, mxnet_has_cuda=False)
    if mx.context.num_gpus() <= index:
        return f"MXNet sees {mx.context.num_gpus()} GPU(s), gpu:{index} requested"
    for gpu in visible_inventory()[index:index + 1]:
        reason = mxnet_gpu_unavailable_reason(gpu.compute_capability, gpu.name)
        if reason:
            return reason
    try:  # a real kernel launch catches what the checks above cannot
        (mx.nd.ones((1, 1, 8, 8), ctx=mx.gpu(index)) * 2).wait_to_read()
    except mx.base.MXNetError as err:
        return f"MXNet cannot run on gpu:{index}: {summarize_error(err)}"
    return None


def _load_exported_weights(net, params_path: Path, ctx) -> None:
    """Copy the exported (``arg:``/``aux:``) weights into a freshly built Gluon net.

    Gluon numbers layer names with process-wide counters, so names differ between processes
    (``conv0_weight`` vs ``conv8_weight``); both lists follow construction order, so we pair
    them by position and check that every kind and shape matches.
    """
    mx = import_mxnet()

    saved = mx.nd.load(str(params_path))
    ours = list(net.collect_params().values())
    if len(saved) != len(ours):
        raise BackendUnavailable(f"{params_path}: {len(saved)} arrays but the rebuilt model has {len(ours)} "
                                 f"parameters; the manifest's model settings do not match the file")
    for param, (name, value) in zip(ours, saved.items()):
        kind = name.split(":", 1)[1].rsplit("_", 1)[-1]
        if not param.name.endswith("_" + kind) or param.shape != value.shape:
            raise BackendUnavailable(f"{params_path}: {name} {value.shape} does not fit {param.name} "
                                     f"{param.shape}; the manifest's model settings do not match the file")
        param.set_data(value.as_in_context(ctx))


class MXNetRuntime(Runtime):
    """The run dir's exported weights in MXNet.

    Parameters:
        run_dir: a run dir; the symbol and params files are checked against the manifest first.
        hybrid: True loads the exported graph (``mxnet-hybrid``); False rebuilds the Gluon model
            from the manifest and copies the weights in (``mxnet``, imperative).
        precision: ``fp32`` only.
        device: ``cpu``, ``gpu`` or ``gpu:N``.
        threads: recorded only: MXNet's thread count is fixed when mxnet is imported.
    """

    def __init__(self, run_dir, hybrid: bool = True, precision: str = "fp32", device: str = "cpu",
                 threads: Optional[int] = None):
        reason = unavailable_reason(precision, device)
        if reason:
            raise BackendUnavailable(reason)
        mx = import_mxnet()

        self.backend = "mxnet-hybrid" if hybrid else "mxnet"
        self.precision, self.device = precision, device
        self.threads = threads or mxnet_default_threads()
        kind, index = parse_device(device)
        self._ctx = mx.cpu() if kind == "cpu" else mx.gpu(index)
        manifest = read_manifest(run_dir)
        symbol_path = verify_file(run_dir, manifest, SYMBOL_FILE)
        params_path = verify_file(run_dir, manifest, PARAMS_FILE)
        size, channels = manifest["input_size"], manifest.get("in_channels", 1)
        if hybrid:
            self._net = load_exported(symbol_path, params_path, self._ctx)
        else:
            from vggbench.models import get_model

            self._net = get_model(manifest["model"], classes=manifest.get("classes", 10),
                                  in_channels=channels, width_ratio=manifest.get("width_ratio", 1.0))
            self._net.initialize(ctx=self._ctx)
            self._net(mx.nd.zeros((1, channels, size, size), ctx=self._ctx)).wait_to_read()  # shapes
            _load_exported_weights(self._net, params_path, self._ctx)
        self._staged = self._staged_output = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        mx = import_mxnet()

        out = self._net(mx.nd.array(batch, ctx=self._ctx))
        return out.asnumpy()  # asnumpy waits for the result

    def stage(self, batch: np.ndarray) -> None:
        mx = import_mxnet()

        self._staged = mx.nd.array(batch, ctx=self._ctx)
        self._staged.wait_to_read()

    def run_staged(self) -> None:
        self._staged_output = self._net(self._staged)
        self._staged_output.wait_to_read()

    def staged_output(self) -> np.ndarray:
        return self._staged_output.asnumpy()

    def info(self) -> Dict[str, Any]:
        mx = import_mxnet()

        info = super().info()
        info.update({"threads": self.threads, "mxnet": mx.__version__,
                     "hybridized": self.backend == "mxnet-hybrid",
                     "static_alloc": self.backend == "mxnet-hybrid"})
        return info

    def close(self) -> None:
        self._net = self._staged = self._staged_output = None


def load_exported(symbol_path: Path, params_path: Path, ctx=None):
    """The exported graph (``model-symbol.json`` + ``model-0000.params``) as a hybridized Gluon
    ``SymbolBlock`` on MXNet context ``ctx`` (default: the CPU)."""
    import warnings

    mx = import_mxnet()

    with warnings.catch_warnings():  # imports() warns that 'data' has no type: it is float32
        warnings.simplefilter("ignore")
        block = mx.gluon.SymbolBlock.imports(str(symbol_path), [INPUT_NAME], str(params_path),
                                             ctx=ctx or mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    return block
