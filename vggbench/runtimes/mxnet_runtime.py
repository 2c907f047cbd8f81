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
from vggbench.errors import VggbenchError, summarize_error
from vggbench.platform.cpu import bf16_unavailable_reason
from vggbench.platform.devices import Device
from vggbench.platform.mxnet import import_mxnet, import_mxnet_amp
from vggbench.runtimes.backends import unsupported_reason
from vggbench.runtimes.base import BackendUnavailable, Runtime


def threads_in_use() -> int:
    """The OpenMP thread count MXNet uses in this process: what :func:`vggbench.platform.mxnet.import_mxnet`
    set (its :func:`~vggbench.platform.mxnet.mxnet_threads`), else MXNet's own rule for the environment
    (:func:`vggbench.platform.mxnet.threads_from_environment`)."""
    from vggbench.platform import mxnet as mxnet_platform

    return mxnet_platform.mxnet_threads() or mxnet_platform.threads_from_environment()[0]


def parse_device(device: str) -> Device:
    """``cpu``, ``gpu`` or ``gpu:N`` -> a :class:`~vggbench.platform.devices.Device` (BackendUnavailable otherwise)."""
    try:
        return Device.parse(device)
    except VggbenchError as err:
        raise BackendUnavailable(str(err)) from None


def unavailable_reason(precision: str = "fp32", device: str = "cpu", backend: str = "mxnet-hybrid") -> Optional[str]:
    """Why the MXNet runner ``backend`` cannot run ``precision`` on ``device`` (cpu, gpu, gpu:N)
    here, or None. bf16 (``mxnet-hybrid`` on the CPU) needs a CPU with bfloat16 units."""
    reason = unsupported_reason(backend, precision)
    if reason:
        return reason
    target = parse_device(device)
    if not target.is_gpu:
        try:  # a build that cannot import here (mxnet-cu117 without a driver) is unavailable, not an error
            import_mxnet()
        except VggbenchError as err:
            return str(err)
        return bf16_unavailable_reason() if precision == "bf16" else None
    from vggbench.platform.driver import driver_facts, no_driver_reason
    from vggbench.platform.gpu import mxnet_device_unavailable_reason, visible_inventory
    from vggbench.platform.mxnet import mxnet_cuda_facts

    no_driver = no_driver_reason(driver_facts(), backend)  # the first cause, whichever mxnet build is installed
    if no_driver:
        return no_driver
    mx = import_mxnet()
    index = target.index
    has_cuda, count, count_error = mxnet_cuda_facts()
    reason = mxnet_device_unavailable_reason(index, count, visible_inventory() if has_cuda else [], has_cuda,
                                             count_error)
    if reason:
        return reason
    try:  # a real kernel launch catches what the checks above cannot
        (mx.nd.ones((1, 1, 8, 8), ctx=mx.gpu(index)) * 2).wait_to_read()
    except mx.base.MXNetError as err:
        return f"MXNet cannot run on {target}: {summarize_error(err)}"
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
        precision: ``fp32``, or ``bf16`` (hybrid, CPU): the exported graph converted by MXNet's AMP
            (``amp.convert_hybrid_block``: bfloat16 weights and math where AMP converts, float32
            in/out).
        device: ``cpu``, ``gpu`` or ``gpu:N``; with ``hybrid`` it names the backend this runner is
            (``mxnet``, ``mxnet-hybrid``, ``mxnet-gpu``, ``mxnet-hybrid-gpu``).
        threads: recorded only: MXNet's thread count is fixed when mxnet is imported.
    """

    def __init__(self, run_dir, hybrid: bool = True, precision: str = "fp32", device: str = "cpu",
                 threads: Optional[int] = None):
        self._hybrid = hybrid
        self.backend = ("mxnet-hybrid" if hybrid else "mxnet") + ("-gpu" if parse_device(device).is_gpu else "")
        reason = unavailable_reason(precision, device, self.backend)
        if reason:
            raise BackendUnavailable(reason)
        mx = import_mxnet()

        self.precision, self.device = precision, device
        self.threads = threads or threads_in_use()
        target = parse_device(device)
        self._ctx = mx.gpu(target.index) if target.is_gpu else mx.cpu()
        manifest = read_manifest(run_dir)
        symbol_path = verify_file(run_dir, manifest, SYMBOL_FILE)
        params_path = verify_file(run_dir, manifest, PARAMS_FILE)
        size, channels = manifest["input_size"], manifest.get("in_channels", 1)
        self._bf16_params = None
        if hybrid:
            self._net = load_exported(symbol_path, params_path, self._ctx)
            if precision == "bf16":
                self._net, self._bf16_params = to_bfloat16(self._net, self._ctx)
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
                     "hybridized": self._hybrid, "static_alloc": self._hybrid})
        if self._bf16_params is not None:
            info.update(amp_target_dtype="bfloat16", bf16_params=self._bf16_params)
        arrays = [param.data() for param in self._net.collect_params().values()]
        info.update(parameter_count=int(sum(a.size for a in arrays)),  # the arrays as loaded (aux states too)
                    parameter_bytes=int(sum(a.size * np.dtype(a.dtype).itemsize for a in arrays)))
        return info

    def close(self) -> None:
        self._net = self._staged = self._staged_output = None


def to_bfloat16(block, ctx):
    """``block`` converted to bfloat16 by MXNet's AMP (weights stored in bf16, float32 in/out),
    hybridized, with the number of its bf16 parameters (none converted is refused, so a "bf16"
    row never times float32)."""
    import warnings

    amp = import_mxnet_amp()

    with warnings.catch_warnings():  # as in load_exported: 'data' has no type; it is float32
        warnings.simplefilter("ignore")
        converted = amp.convert_hybrid_block(block, target_dtype="bfloat16", ctx=ctx, cast_optional_params=True)
    converted.hybridize(static_alloc=True, static_shape=True)
    # MXNet's bfloat16 is the numpy structured dtype [('bfloat16', '<u2')]
    bf16_params = sum(1 for p in converted.collect_params().values() if np.dtype(p.dtype).names == ("bfloat16",))
    if not bf16_params:
        raise BackendUnavailable("MXNet's AMP converted no parameter to bfloat16")
    return converted, bf16_params


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
