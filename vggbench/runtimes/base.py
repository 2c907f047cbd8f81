"""The interface every backend runner implements."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from vggbench.errors import VggbenchError


class BackendUnavailable(VggbenchError):
    """This backend cannot run here; the message is the reason shown in tables."""


class Runtime:
    """A loaded model on one backend/device.

    - ``run(batch)``: end to end. Host float32 NCHW in, host logits out, finished when it returns.
    - ``stage(batch)`` then ``run_staged()``: compute only. The input is copied to the device once;
      each call computes and waits for the result without copying it back. On the CPU the two
      modes differ only by the host copies. ``staged_output()`` copies the last result back, so
      the compute-only path can be checked against ``run``.
    """

    backend: str = "?"
    precision: str = "fp32"
    device: str = "cpu"

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def stage(self, batch: np.ndarray) -> None:
        raise NotImplementedError

    def run_staged(self) -> None:
        raise NotImplementedError

    def staged_output(self) -> np.ndarray:
        """The last ``run_staged`` result copied to the host (for checking it, never timed)."""
        raise NotImplementedError

    def info(self) -> Dict[str, Any]:
        """What was actually used (providers, threads, options): goes into each result row."""
        return {"backend": self.backend, "precision": self.precision, "device": self.device}

    def close(self) -> None:
        """Release device memory; the default does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
