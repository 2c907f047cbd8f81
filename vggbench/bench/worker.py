"""The per-backend worker process protocol.

Each backend of a sweep runs in its own long-lived process (``python -m vggbench.bench.worker``): MXNet's
OpenMP pool and ONNX Runtime's thread pool never share a process, the CUDA runtimes of the two
libraries never meet, and a crash, OOM kill or hang of one backend becomes an ``error:`` row while
the sweep goes on. The process stays alive for the whole run dir, so the sweep can alternate
timing rounds between backends (A B A B ...) without reloading models.

Protocol: the parent writes one JSON command per line on the worker's stdin and reads exactly one
JSON reply line per command from a private copy of the worker's stdout (the worker points fd 1 at
stderr, so a library that prints cannot corrupt the protocol). Commands (``op``):

- ``probe``: ``backends`` -> ``{"reasons": {backend: reason or None}}``
- ``load``: ``run_dir, backend, gpu, threads, runtime_options (OrtOptions.to_dict), precisions`` ->
  ``{"precisions": {p: {"status": "ok", "runtime": info} | {"status": "unavailable", "reason"} |
  {"status": "error", "message"}}}``
- ``peak``: ``dtype, sizes`` -> ``timing.measure_peak``'s fields
- ``prepare``: ``precision, batch_size, mode, input_size, warmup, round_s, calls`` -> ``calls_per_round``
- ``round``: ``precision, batch_size, mode, calls`` -> ``latencies_ms, wall_s``
- ``accuracy``: ``precision, x, y, batch_size`` -> ``top1_accuracy, accuracy_images``
- ``exit``

Every reply has ``ok`` (bool); a failed command replies ``{"ok": false, "message": ...}`` and the
worker stays usable. The parent side is :class:`Worker`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vggbench import processes
from vggbench.errors import VggbenchError, summarize_error
from vggbench.runtimes.backends import BACKENDS

# How long a command may take before the worker is considered hung and killed.
DEFAULT_TIMEOUT_S = 3600.0
EXIT_GRACE_S = 5.0


class WorkerDied(Exception):
    """The worker process ended or hung; ``str()`` says how (one line)."""


def worker_command() -> List[str]:
    """The command line that starts a worker."""
    return [sys.executable, "-m", "vggbench.bench.worker"]


def worker_env(threads: Optional[int], extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The child's environment: OMP_NUM_THREADS set before mxnet is ever imported there (and
    MXNET_OMP_MAX_THREADS, which MXNet would otherwise let override it, removed).

    Parameters:
        threads: the CPU thread count every backend gets (None = inherit).
        extra: more variables (e.g. ``NVIDIA_TF32_OVERRIDE=0`` for fp32 GPU rows).
    """
    from vggbench.platform.driver import use_pci_bus_order

    env = use_pci_bus_order(dict(os.environ, **(extra or {})))  # gpu:N means nvidia-smi's GPU N there too
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env.pop("MXNET_OMP_MAX_THREADS", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Worker:
    """The parent's handle on one worker process.

    Parameters:
        label: the backend it serves (for messages).
        stderr_path: file that receives the worker's stderr (read back when it dies).
        threads: CPU threads (see :func:`worker_env`).
        command: the command line (tests use a fake worker).
        timeout_s: default per-command timeout.
        env: extra environment variables (see :func:`worker_env`).
    """

    def __init__(self, label: str, stderr_path: Path, threads: Optional[int] = None,
                 command: Optional[Sequence[str]] = None, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
                 env: Optional[Dict[str, str]] = None):
        self.label, self.timeout_s, self._stderr_path = label, timeout_s, Path(stderr_path)
        self._stderr = open(self._stderr_path, "wb")
        # The worker stays in our process group: a terminal's Ctrl-C ends it at once with the sweep.
        self._proc = processes.start(command or worker_command(), worker_env(threads, env), stderr=self._stderr)
        self._lines = processes.LineReader(self._proc.stdout)
        self.dead: Optional[str] = None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._proc.pid

    def call(self, op: str, timeout_s: Optional[float] = None, **fields) -> Dict[str, Any]:
        """Send one command and wait for its reply.

        Parameters:
            op: the command (see the module docstring).
            timeout_s: this command's limit (default: the worker's).
            fields: the command's arguments.

        Raises :class:`WorkerDied` when the process ends or exceeds the limit (it is then killed).
        """
        if self.dead:
            raise WorkerDied(self.dead)
        try:
            self._proc.stdin.write((json.dumps(dict(fields, op=op)) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self._died()
        limit = timeout_s if timeout_s is not None else self.timeout_s
        try:
            line = self._lines.readline(limit)
        except processes.ChildTimedOut:
            self.kill()
            self.dead = f"worker timed out after {limit:g} s and was killed (raise --timeout?)"
            raise WorkerDied(self.dead) from None
        except processes.ChildEnded:
            self._died()
        return json.loads(line)

    def _died(self) -> None:
        try:
            returncode = self._proc.wait(timeout=EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            returncode = self._proc.returncode
        self._stderr.flush()
        stderr = self._stderr_path.read_bytes()[-20000:].decode(errors="replace")
        self.dead = processes.describe_exit(returncode, stderr, "worker")
        raise WorkerDied(self.dead)

    def kill(self) -> None:
        """End the process now (SIGKILL) and reap it."""
        processes.end([self._proc], 0.0, first=None)

    def close(self) -> None:
        """Ask the worker to exit; kill it if it does not within a few seconds."""
        if self._proc.poll() is None and not self.dead:
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.flush()
                self._proc.wait(timeout=EXIT_GRACE_S)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self._stderr.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the worker side ----------------------------------------------------------------------------------

def _device(backend: str, gpu: int) -> str:
    from vggbench.runtimes import backend_device

    return str(backend_device(backend, gpu))


# The library each runtime family imports first: its import is timed and its resident memory
# counted apart from the model's (a family not listed here counts it with the first model).
_LIBRARIES = {"mxnet": "vggbench.platform.mxnet", "ort": "onnxruntime", "openvino": "openvino"}


def _import_library(family: str) -> Dict[str, Any]:
    """Import the runtime family's library; its wall time and the resident memory it added."""
    import importlib

    from vggbench.platform import resources

    name = _LIBRARIES.get(family)
    if not name:
        return {}
    before, started = resources.rss_bytes(), time.perf_counter()
    module = importlib.import_module(name)
    if name == "vggbench.platform.mxnet":
        module.import_mxnet()  # the library itself, threads set first
    seconds, after = time.perf_counter() - started, resources.rss_bytes()
    return {"load_library_s": seconds,
            "memory_library_rss_bytes": after - before if before is not None and after is not None else None}


def _first_calls(runtime, batch_size: int, input_size: int, in_channels: int) -> Dict[str, Any]:
    """The first and second end-to-end inference of a freshly loaded runtime, timed: what a
    service pays on its first request (lazy initialisation, kernel selection) and after it."""
    batch = np.random.RandomState(0).uniform(0, 1, (batch_size, in_channels, input_size, input_size))
    batch = batch.astype(np.float32)
    seconds = []
    for _ in range(2):
        started = time.perf_counter()
        runtime.run(batch)
        seconds.append(time.perf_counter() - started)
    return {"load_first_inference_s": seconds[0], "load_second_inference_s": seconds[1],
            "load_inference_batch_size": batch_size}


class _WorkerState:
    """What one worker process holds: its backend's runtimes and the prepared timing cells."""

    def __init__(self) -> None:
        self.backend: Optional[str] = None
        self.device = "cpu"
        self.options: Any = None  # the runtime's typed options (OrtOptions for ONNX Runtime), for load_runtime
        self.threads: Optional[int] = None
        self.runtimes: Dict[str, Any] = {}
        self.cells: Dict[tuple, Any] = {}
        self.energy_read: Any = None  # cumulative energy reader of the device (platform.resources)
        self.nvml: Any = None  # GPU memory reader

    def probe(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        from vggbench.runtimes import unavailable_reason

        reasons = {}
        for backend in cmd["backends"]:
            try:
                reasons[backend] = unavailable_reason(backend, "fp32", _device(backend, cmd.get("gpu", 0)))
            except VggbenchError as err:
                reasons[backend] = str(err)
        return {"reasons": reasons}

    def load(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        """Load each precision; besides the runtime's info, ``resources``: the worker's idle RSS
        (before any runtime library), what importing the library added, the RSS after loading
        over idle, the load and first-inference times, and what energy counter this device has."""
        from vggbench.platform import resources
        from vggbench.runtimes import BackendUnavailable, load_runtime, unavailable_reason

        idle_rss = resources.rss_bytes()
        self.backend, self.threads = cmd["backend"], cmd.get("threads")
        self.device = _device(self.backend, cmd.get("gpu", 0))
        self.options = None
        if BACKENDS[self.backend].family == "ort":
            from vggbench.runtimes.ort_session import OrtOptions

            self.options = OrtOptions.from_dict(cmd.get("runtime_options"))
        common = self._open_counters(idle_rss)
        try:
            common.update(_import_library(BACKENDS[self.backend].family))
        except Exception:  # noqa: BLE001 - loading the precision below says why, as a row
            pass
        answers: Dict[str, Dict[str, Any]] = {}
        for precision in cmd["precisions"]:
            try:
                reason = unavailable_reason(self.backend, precision, self.device)
                if reason:
                    answers[precision] = {"status": "unavailable", "reason": reason}
                    continue
                started = time.perf_counter()
                runtime = load_runtime(self.backend, cmd["run_dir"], precision=precision, device=self.device,
                                       threads=self.threads, options=self.options,
                                       batch_sizes=cmd.get("batch_sizes") or ())  # ort-trt profile, OpenVINO shapes
                used = dict(common, load_session_s=time.perf_counter() - started)
                after = resources.rss_bytes()
                used["memory_load_rss_bytes"] = after - idle_rss if after is not None and idle_rss is not None else None
                if cmd.get("input_size"):
                    used.update(_first_calls(runtime, min(cmd.get("batch_sizes") or [1]), cmd["input_size"],
                                             cmd.get("in_channels", 1)))
            except BackendUnavailable as err:
                answers[precision] = {"status": "unavailable", "reason": str(err)}
                continue
            except Exception as err:  # noqa: BLE001 - becomes an error row, the sweep goes on
                answers[precision] = {"status": "error", "message": f"loading failed: {summarize_error(err)}"}
                continue
            self.runtimes[precision] = runtime
            answers[precision] = {"status": "ok", "runtime": runtime.info(), "resources": used}
        return {"precisions": answers}

    def _open_counters(self, idle_rss: Optional[int]) -> Dict[str, Any]:
        """The device's energy counter and (GPU) memory reader, opened once per worker."""
        from vggbench.platform import resources

        self.energy_read, reason = resources.energy_counter(self.device)
        fields: Dict[str, Any] = {"memory_idle_rss_bytes": idle_rss, "energy_reason": reason,
                                  "energy_source": None if reason else resources.energy_source(self.device)}
        if self.device.startswith("gpu"):
            self.nvml = resources.Nvml(int(self.device.partition(":")[2] or 0))
            fields["gpu_memory_idle_bytes"] = self.nvml.memory_used_bytes()
        return fields

    def peak(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        from vggbench.bench import timing

        dtype = cmd["dtype"]
        if BACKENDS[self.backend].family == "ort":
            runtime = next(iter(self.runtimes.values()), None)
            providers = getattr(runtime, "providers", None)

            def make(size):
                return timing.ort_gemm(self.backend, size, self.threads, dtype, providers)
        elif BACKENDS[self.backend].family == "openvino":
            def make(size):
                return timing.openvino_gemm(size, self.threads, dtype)
        else:
            if dtype in ("int8", "bfloat16"):
                raise VggbenchError(f"no MXNet {dtype} GEMM peak (nd.dot has no {dtype} CPU kernel)")

            def make(size):
                return timing.mxnet_gemm(size, self.device, dtype)
        return timing.measure_peak(make, cmd["sizes"], warmup=1, iters=cmd.get("iters", 3))

    def prepare(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        from vggbench.bench import timing
        from vggbench.bench.results import MODES

        runtime = self.runtimes[cmd["precision"]]
        size, batch_size = cmd["input_size"], cmd["batch_size"]
        batch = np.random.RandomState(batch_size).uniform(0, 1, (batch_size, 1, size, size)).astype(np.float32)
        if MODES[cmd["mode"]] == MODES["end-to-end"]:
            def fn():
                return runtime.run(batch)
        else:
            runtime.stage(batch)
            fn = runtime.run_staged
        self.cells[(cmd["precision"], batch_size, cmd["mode"])] = fn
        warm = [timing.time_round(fn, 1)["wall_s"] for _ in range(cmd["warmup"])]
        calls = cmd.get("calls") or timing.calibrate_calls(fn, cmd["round_s"], cmd.get("min_calls", 1))
        return {"calls_per_round": calls, "warmup_ms": [1e3 * w for w in warm]}

    def round(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        """One timed round; outside its clock, the resident peak over the round (``VmHWM`` reset
        first where the kernel allows), the device energy it used and (GPU) the memory in use."""
        from vggbench.bench import timing
        from vggbench.platform import resources

        reset = resources.reset_peak_rss()
        before = self.energy_read() if self.energy_read else None
        reply = timing.time_round(self.cells[(cmd["precision"], cmd["batch_size"], cmd["mode"])], cmd["calls"])
        if before is not None:
            after = self.energy_read()
            reply["energy_j"] = resources.energy_between(self.device, before, after) if after is not None else None
        reply["peak_rss_bytes"] = resources.peak_rss_bytes()
        reply["peak_rss_method"] = ("VmHWM, reset before each round" if reset
                                    else "VmHWM since the worker started (reset not allowed here)")
        if self.nvml is not None:
            reply["gpu_memory_used_bytes"] = self.nvml.memory_used_bytes()
        return reply

    def accuracy(self, cmd: Dict[str, Any]) -> Dict[str, Any]:
        from vggbench.metrics import top1_accuracy

        x = np.load(cmd["x"], mmap_mode="r")
        y = np.load(cmd["y"])
        accuracy = top1_accuracy(self.runtimes[cmd["precision"]].run, x, y, cmd["batch_size"])
        return {"top1_accuracy": accuracy, "accuracy_images": int(len(y))}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def worker_main() -> int:
    """Entry point of ``python -m vggbench.bench.worker``: serve commands until ``exit`` or EOF."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol
    state = _WorkerState()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "exit":
            break
        try:
            reply = dict(getattr(state, cmd["op"])(cmd), ok=True)
        except Exception as err:  # noqa: BLE001 - reported to the parent, which makes an error row
            reply = {"ok": False, "message": summarize_error(err)}
        protocol.write(json.dumps(reply, default=_jsonable) + "\n")
        protocol.flush()
    for runtime in state.runtimes.values():
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
