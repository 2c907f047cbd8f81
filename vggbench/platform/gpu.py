"""The GPUs of this machine and what MXNet can do on them.

Inventory from ``nvidia-smi`` (none -> ``[]``), ``CUDA_VISIBLE_DEVICES`` applied so index *i* is
what CUDA calls device *i*; compute capabilities; the one decision whether MXNet (``mxnet-cu117``:
kernels for sm_50-sm_86, no PTX) can run on a GPU, and ``--ctx`` resolution built on it. Each
decision is a pure function of facts a test can build without a GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vggbench.errors import VggbenchError
from vggbench.platform.devices import Device

# --- inventory: nvidia-smi -----------------------------------------------------------------------------

# ``name`` last: the one field that could hold a comma.
NVIDIA_SMI_FIELDS = ("index", "uuid", "compute_cap", "driver_version", "memory.total", "name")
_NOT_AVAILABLE = ("", "[N/A]", "N/A", "[Not Supported]", "[Unknown Error]")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as ``nvidia-smi`` reports it (PCI bus order, before ``CUDA_VISIBLE_DEVICES``)."""

    index: int
    name: str
    compute_capability: Optional[str]  # "9.0"; None when the driver cannot report it (< 510)
    driver_version: Optional[str]
    memory_total_mib: Optional[int]
    uuid: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _value(text: str) -> Optional[str]:
    text = text.strip()
    return None if text in _NOT_AVAILABLE else text


def parse_nvidia_smi_csv(text: str, fields: Sequence[str] = NVIDIA_SMI_FIELDS) -> List[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` output.

    Parameters:
        text: the command's stdout, one line per GPU, values separated by ``", "``.
        fields: the queried fields in order; ``name`` must be last (it is re-joined if it holds a
            comma). ``memory.total`` may carry a `` MiB`` unit (output without ``nounits``).

    Lines with too few values (a warning line, a blank line) are skipped.
    """
    if fields[-1] != "name":
        raise ValueError("the name field must be queried last")
    rows = []
    for number, line in enumerate(text.splitlines()):
        parts = line.split(",", len(fields) - 1)
        if len(parts) != len(fields):
            continue
        values = dict(zip(fields, parts))
        memory = _value(values.get("memory.total", ""))
        match = re.match(r"^(\d+)", memory or "")
        index = _value(values.get("index", ""))
        rows.append(GpuInfo(
            index=int(index) if index and index.isdigit() else number,
            name=values["name"].strip(),
            compute_capability=_value(values.get("compute_cap", "")),
            driver_version=_value(values.get("driver_version", "")),
            memory_total_mib=int(match.group(1)) if match else None,
            uuid=_value(values.get("uuid", ""))))
    return rows


def nvidia_smi_command(executable: str = "nvidia-smi", fields: Sequence[str] = NVIDIA_SMI_FIELDS) -> List[str]:
    """The ``nvidia-smi`` query :func:`gpu_inventory` runs (``executable``: its path)."""
    return [executable, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]


def gpu_inventory(nvidia_smi: Optional[str] = None, timeout_s: float = 20.0) -> List[GpuInfo]:
    """The NVIDIA GPUs of this machine; ``[]`` when there is no ``nvidia-smi`` or it fails.

    Parameters:
        nvidia_smi: the ``nvidia-smi`` executable; None looks it up on ``PATH``.
        timeout_s: how long the query may take.

    Drivers older than 510 cannot report ``compute_cap``: the query is then repeated without it
    and ``compute_capability`` is None.
    """
    executable = nvidia_smi or shutil.which("nvidia-smi")
    if not executable:
        return []
    fields = NVIDIA_SMI_FIELDS
    for attempt in range(2):
        try:
            proc = subprocess.run(nvidia_smi_command(executable, fields), capture_output=True, text=True,
                                  timeout=timeout_s)
        except (OSError, subprocess.SubprocessError):
            return []
        if proc.returncode == 0:
            return parse_nvidia_smi_csv(proc.stdout, fields)
        if attempt == 0 and "compute_cap" in proc.stdout + proc.stderr:
            fields = tuple(field for field in fields if field != "compute_cap")
            continue
        return []
    return []


def visible_gpus(inventory: Sequence[GpuInfo], cuda_visible_devices: Optional[str] = None) -> List[GpuInfo]:
    """``inventory`` in CUDA's numbering: what ``gpu(i)`` / ``device_id=i`` means in this process.

    Parameters:
        inventory: :func:`gpu_inventory`'s list.
        cuda_visible_devices: the ``CUDA_VISIBLE_DEVICES`` value (None or unset: all GPUs, in
            nvidia-smi's order, which is CUDA's too unless ``CUDA_DEVICE_ORDER`` says otherwise).
            Entries are indices or UUID prefixes (``GPU-5e6c``); as in CUDA, the list ends at the
            first entry that names no GPU. MIG instances (``MIG-...``) cannot be matched to a GPU
            here: the result is then ``[]`` (unknown), never a wrong GPU.
    """
    if cuda_visible_devices is None:
        return list(inventory)
    visible = []
    for entry in cuda_visible_devices.split(","):
        entry = entry.strip()
        if entry.isdigit():
            found = [gpu for gpu in inventory if gpu.index == int(entry)]
        elif entry.startswith("GPU-"):
            found = [gpu for gpu in inventory if gpu.uuid and gpu.uuid.startswith(entry)]
        elif entry.startswith("MIG-"):
            return []
        else:
            found = []
        if len(found) != 1 or found[0] in visible:
            break
        visible.append(found[0])
    return visible


def visible_inventory() -> List[GpuInfo]:
    """This process's GPUs in CUDA's numbering (:func:`gpu_inventory` + :func:`visible_gpus`)."""
    return visible_gpus(gpu_inventory(), os.environ.get("CUDA_VISIBLE_DEVICES"))


def parse_compute_capability(value: Any) -> Optional[Tuple[int, int]]:
    """``"8.6"`` (or ``8.6``, ``(8, 6)``) -> ``(8, 6)``; None when unknown or unreadable."""
    if value is None:
        return None
    if isinstance(value, tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    match = re.match(r"^\s*(\d+)\.(\d+)\s*$", str(value))
    return (int(match.group(1)), int(match.group(2))) if match else None


# --- MXNet on a GPU ------------------------------------------------------------------------------------

MXNET_GPU_DISTRIBUTION = "mxnet-cu117"
# mxnet-cu117 1.9.1's libmxnet.so holds SASS for these and no PTX. A cubin runs on its own major
# version with an equal or higher minor (sm_86 code runs on 8.9), never on another major.
MXNET_CU117_ARCHITECTURES = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))


def mxnet_cu117_runs_on(compute_capability: Any) -> Optional[bool]:
    """Whether mxnet-cu117's kernels run on ``compute_capability`` (``"9.0"``); None if unknown."""
    cc = parse_compute_capability(compute_capability)
    if cc is None:
        return None
    return any(cc[0] == major and cc[1] >= minor for major, minor in MXNET_CU117_ARCHITECTURES)


def mxnet_gpu_unavailable_reason(compute_capability: Any, gpu_name: str = "this GPU",
                                 mxnet_has_cuda: bool = True) -> Optional[str]:
    """Why MXNet cannot compute on this GPU, or None when it can (as far as facts tell).

    Parameters:
        compute_capability: the GPU's, e.g. ``"9.0"``; None (unknown) is not a reason: the
            caller's kernel launch decides then.
        gpu_name: the GPU's name, for the message.
        mxnet_has_cuda: False for the CPU build of mxnet (``mx.runtime.Features()['CUDA']``).
    """
    if not mxnet_has_cuda:
        return ("this mxnet is the CPU build (no CUDA); for MXNet on the GPU install the mxnet-gpu extra "
                "(mxnet-cu117 + CUDA 11 libraries) on a Maxwell-to-Ada GPU")
    if mxnet_cu117_runs_on(compute_capability) is False:
        cc = parse_compute_capability(compute_capability)
        newer = cc > MXNET_CU117_ARCHITECTURES[-1]
        return (f"{MXNET_GPU_DISTRIBUTION} has no kernels for {gpu_name} (compute capability {cc[0]}.{cc[1]}, "
                f"sm_{cc[0]}{cc[1]}): it was built for sm_50-sm_86 without PTX"
                + ("; no newer MXNet wheel exists, use ort-cuda/ort-trt on this GPU" if newer else ""))
    return None


def mxnet_device_unavailable_reason(index: int, mxnet_gpu_count: int, inventory: Sequence[GpuInfo] = (),
                                    mxnet_has_cuda: bool = True, count_error: Optional[str] = None) -> Optional[str]:
    """Why MXNet cannot compute on GPU ``index``, or None when the facts allow it: the one decision
    the runners, doctor and ``--ctx`` share (a real kernel launch may still fail afterwards).

    Parameters:
        index: the GPU, in CUDA's numbering.
        mxnet_gpu_count, mxnet_has_cuda, count_error: :func:`vggbench.platform.mxnet.mxnet_cuda_facts`.
        inventory: the GPUs in CUDA's numbering (:func:`visible_inventory`); empty when unknown.
    """
    if not mxnet_has_cuda:
        return mxnet_gpu_unavailable_reason(None, mxnet_has_cuda=False)
    if count_error:
        return count_error
    if index < len(inventory):
        reason = mxnet_gpu_unavailable_reason(inventory[index].compute_capability, inventory[index].name)
        if reason:
            return reason
    if mxnet_gpu_count <= index:
        return f"MXNet sees {mxnet_gpu_count} GPU(s), {Device('gpu', index)} requested (no driver or no device?)"
    return None


def _parse_ctx(spec: str) -> Optional[List[int]]:
    """``--ctx`` -> None for ``auto``, ``[]`` for ``cpu``, else the GPU indices."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return None
    if spec == "cpu":
        return []
    indices: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            device = Device.parse(part)
        except VggbenchError:
            device = None
        if device is None or not device.is_gpu:
            raise VggbenchError(f"--ctx {spec!r}: cannot read {part!r}; use auto, cpu, gpu or a list like gpu:0,gpu:1")
        index = device.index
        if index in indices:
            raise VggbenchError(f"--ctx {spec!r} lists {Device('gpu', index)} twice")
        indices.append(index)
    return indices


def resolve_mxnet_context(spec: str, mxnet_gpu_count: int, inventory: Sequence[GpuInfo] = (),
                          mxnet_has_cuda: bool = True) -> Tuple[List[int], str]:
    """Turn ``--ctx`` into the GPU indices MXNet should train on (``[]`` = CPU) plus a sentence.

    Parameters:
        spec: ``auto``, ``cpu``, ``gpu``, ``gpu:N`` or a list ``gpu:0,gpu:1``.
        mxnet_gpu_count: what MXNet counts (``mx.context.num_gpus()``; 0 for the CPU build).
        inventory: the GPUs in CUDA's numbering (:func:`visible_inventory`), for their compute
            capability; empty when unknown.
        mxnet_has_cuda: False for the CPU build of mxnet.

    ``auto`` uses gpu(0) only when MXNet can compute there and says otherwise why it trains on the
    CPU (e.g. on Hopper). An explicit GPU that MXNet cannot use is a one-line VggbenchError naming
    the cause.
    """
    indices = _parse_ctx(spec)
    label = (spec or "auto").strip().lower()
    by_index = dict(enumerate(inventory))
    if indices is None:
        if mxnet_gpu_count < 1:
            cause = "this mxnet is the CPU build" if not mxnet_has_cuda else "MXNet sees no GPU"
            return [], f"--ctx auto: {cause}, training on CPU"
        gpu = by_index.get(0)
        reason = gpu and mxnet_gpu_unavailable_reason(gpu.compute_capability, gpu.name, mxnet_has_cuda)
        if reason:
            return [], f"--ctx auto: training on CPU: {reason}"
        return [0], f"--ctx auto: MXNet sees {mxnet_gpu_count} GPU(s), training on gpu(0)"
    if not indices:
        return [], "--ctx cpu: training on CPU"
    if mxnet_gpu_count < 1:
        cause = "this mxnet is the CPU build" if not mxnet_has_cuda else "CPU-only mxnet build or no CUDA device"
        raise VggbenchError(f"--ctx {label}: MXNet sees no GPU ({cause}); use --ctx cpu, or install the "
                            f"mxnet-gpu extra (mxnet-cu117) on a machine with a Maxwell-to-Ada GPU")
    missing = [index for index in indices if index >= mxnet_gpu_count]
    if missing:
        raise VggbenchError(f"--ctx {label}: MXNet sees {mxnet_gpu_count} GPU(s) (gpu:0..gpu:{mxnet_gpu_count - 1}), "
                            f"there is no {Device('gpu', missing[0])}")
    for index in indices:
        gpu = by_index.get(index)
        reason = gpu and mxnet_gpu_unavailable_reason(gpu.compute_capability, gpu.name, mxnet_has_cuda)
        if reason:
            raise VggbenchError(f"--ctx {label}: {Device('gpu', index)}: {reason}; train with --ctx cpu")
    return indices, f"--ctx {label}: training on {', '.join(f'gpu({i})' for i in indices)}"
