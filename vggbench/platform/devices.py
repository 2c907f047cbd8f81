"""The one owner of device names: ``cpu``, ``gpu``, ``gpu:N`` (and ``cpu:N`` for several CPU contexts).

Rows, runtimes, the sweep, doctor and ``--ctx`` all spell a device the same way; :class:`Device`
parses and prints that spelling so no module formats ``f"gpu:{index}"`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from vggbench.errors import VggbenchError

KINDS = ("cpu", "gpu")


@dataclass(frozen=True)
class Device:
    """One device: ``kind`` (``cpu`` or ``gpu``) and ``index`` (the GPU in CUDA's numbering; a CPU
    context number, 0 for the CPU as a whole)."""

    kind: str = "cpu"
    index: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise VggbenchError(f"device kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(self.index, int) or isinstance(self.index, bool) or self.index < 0:
            raise VggbenchError(f"device index must be an integer >= 0, got {self.index!r}")

    @classmethod
    def parse(cls, text: str) -> "Device":
        """``cpu``, ``cpu:N``, ``gpu`` (GPU 0) or ``gpu:N`` -> a Device; a one-line VggbenchError otherwise."""
        kind, colon, index = str(text).strip().lower().partition(":")
        if kind not in KINDS or (colon and not index.isdigit()):
            raise VggbenchError(f"device {text!r} is not one of cpu, gpu, gpu:N")
        return cls(kind, int(index or 0))

    @classmethod
    def of_kind(cls, kind: str, gpu_index: int = 0) -> "Device":
        """The device a backend of ``kind`` runs on: the CPU, or GPU ``gpu_index``."""
        return cls("gpu", int(gpu_index)) if kind == "gpu" else cls("cpu")

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def __str__(self) -> str:
        """``cpu`` (``cpu:N`` for another CPU context) or ``gpu:N``: the form rows and ``--ctx`` use."""
        if self.kind == "cpu" and self.index == 0:
            return "cpu"
        return f"{self.kind}:{self.index}"
