"""Planning and running a sweep: run dirs x backends x precisions x batch sizes x modes.

What is timed (every row says which):

- ``end-to-end (host numpy in/out)``: ``runtime.run(batch)`` -- host float32 NCHW in, host logits
  out, the runtime synced (MXNet ``asnumpy``/``wait_to_read``) before the clock stops.
- ``compute-only (input pre-staged on device)``: ``runtime.stage(batch)`` once, then
  ``runtime.run_staged()`` -- the input already on the device, the output left there, synced.

How (:mod:`vggbench.bench.timing` for one round, :mod:`vggbench.bench.stats` for the statistics): every
backend gets one long-lived worker process (:mod:`vggbench.bench.worker`) that loads its models once.
For each (batch size, mode) cell, each row gets ``warmup`` untimed calls, which also size its
rounds to about ``round_s`` seconds; then the rows of the cell take turns, one round each
(A B C A B C ...), so drift in machine speed lands on every backend alike. A cell keeps adding
rounds until every row's 95% confidence interval of the median images/s (bootstrap over rounds)
is narrower than ``target_ci_pct`` (after a minimum number of rounds), or each row has spent
its time budget on its own rounds (:class:`vggbench.bench.stats.Convergence`, defaults per device kind in
:data:`vggbench.bench.stats.CPU_ROUNDS` / :data:`~vggbench.bench.stats.GPU_ROUNDS`); rows that did not converge
are marked ``noisy``. ``rounds`` fixes the count instead. All rows of a cell run the same number of
rounds, so each speedup is computed from paired rounds (:func:`vggbench.bench.results.add_speedups`).

Threads: every backend gets the same CPU thread count (:func:`vggbench.platform.mxnet.resolve_threads`:
``--threads``, else ``$OMP_NUM_THREADS``, else the physical cores) -- OMP_NUM_THREADS
in the worker's environment before mxnet is imported, ``intra_op_num_threads`` for ONNX Runtime.

Before a single timing starts, every artifact the sweep will load is verified (sha256 against the
manifest, ONNX input shape against the manifest): a tampered or missing file is a
:class:`VggbenchError` (exit 1), never an error row.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.artifacts.layout import ONNX_VARIANT_FILES
from vggbench.artifacts.manifest import read_manifest, verify_file
from vggbench.bench import results as R
from vggbench.bench.stats import RoundSettings
from vggbench.bench.timing import CPU_PEAK_SIZES, GPU_PEAK_SIZES, PEAK_DTYPES, latency_summary
from vggbench.bench.worker import DEFAULT_TIMEOUT_S, Worker, WorkerDied
from vggbench.errors import VggbenchError, summarize_error
from vggbench.messages import say
from vggbench.platform import cpu, load
from vggbench.platform.mxnet import MXNetUnavailable, resolve_threads
from vggbench.runtimes import backend_device, check_backend_name
from vggbench.runtimes.backends import BACKENDS, PRECISIONS, unsupported_reason
from vggbench.runtimes.ort_session import OrtOptions

DEFAULT_BACKENDS = tuple(BACKENDS)
DEFAULT_BATCH_SIZES = (1, 16, 64)
DEFAULT_MODES = ("end-to-end", "compute-only")
DEFAULT_WARMUP = RoundSettings.warmup
ACCURACY_BATCH_SIZE = 64
# Pause between two rounds, so a runtime's spinning pool threads (ONNX Runtime, OpenMP) go idle
# before the next backend's round starts.
ROUND_SETTLE_S = 0.005

Log = Callable[[str], None]


def check_policy(warmup: int = DEFAULT_WARMUP, rounds: Optional[int] = None, iters: Optional[int] = None,
                 target_ci_pct: Optional[float] = None, max_seconds: Optional[float] = None,
                 round_s: Optional[float] = None) -> Dict[str, Any]:
    """Validate a round policy given as keywords; returns its results-JSON form
    (:meth:`vggbench.bench.stats.RoundSettings.to_dict`, with a ``description`` in words)."""
    return RoundSettings(warmup, rounds, iters, target_ci_pct, max_seconds, round_s).to_dict()


def check_backends(backends: Iterable[str]) -> List[str]:
    """The backends, de-duplicated, each a known name (else a one-line error)."""
    backends = list(backends)
    for name in backends:
        check_backend_name(name)
    return list(dict.fromkeys(backends))


def present_precisions(manifest: Dict[str, Any]) -> List[str]:
    """Precisions whose ONNX file the run dir holds (fp32 and tf32 run the plain export)."""
    files = manifest.get("files", {})
    return [p for p, (variant, _) in PRECISIONS.items() if ONNX_VARIANT_FILES[variant] in files]


def precisions_for(backend: str, manifest: Dict[str, Any], requested: Optional[Sequence[str]] = None,
                   run_dir: str = "") -> List[str]:
    """Precisions to run on ``backend``: the requested ones, or by default the backend's default
    precisions that the run dir holds (int8/opt on ort-cpu, fp16 on ort-cuda/ort-trt).

    Parameters:
        backend: a key of :data:`vggbench.runtimes.backends.BACKENDS`.
        manifest: the run dir's manifest.
        requested: ``--precisions`` (None = default).
        run_dir: for messages.
    """
    present = present_precisions(manifest)
    if requested is None:
        return [p for p in BACKENDS[backend].default_precisions if p in present]
    for precision in requested:
        if precision not in PRECISIONS:
            raise VggbenchError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        if precision not in present:
            raise VggbenchError(f"{run_dir}: no {ONNX_VARIANT_FILES[PRECISIONS[precision][0]]} in the manifest; "
                                f"make it with `vggbench optimize {run_dir}` first, or drop {precision} "
                                f"from --precisions")
    return list(dict.fromkeys(requested))


def run_info(run_dir, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The model facts every row of this run dir carries, FLOPs per image from the manifest.

    Parameters:
        run_dir: the run dir.
        manifest: its manifest.
    """
    from vggbench.models import model_stats_from_manifest

    stats = model_stats_from_manifest(manifest)
    return {"run_dir": str(run_dir), "model": manifest["model"], "config": manifest.get("config"),
            "input_size": manifest["input_size"], "width_ratio": manifest.get("width_ratio", 1.0),
            "in_channels": manifest.get("in_channels", 1), "params": stats["params"],
            "gflops_per_image": stats["flops_per_image"] / 1e9,
            "trained": manifest.get("trained", True),
            "manifest_test_accuracy": manifest.get("test_accuracy"),
            "manifest_test_images": manifest.get("test_images"),
            "variant_gates": {precision: {"flagged": bool(entry.get("flagged")),
                                          "accuracy_drop_points": entry.get("accuracy_drop_points")}
                              for precision, entry in manifest.get("variants", {}).items()}}


def training_row(run_dir, manifest: Dict[str, Any], info: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The run's training speed from its ``history.json``, next to the inference rows (None when
    the run has no training history, e.g. an exported untrained model).

    Training images/s is the last epoch's (images / epoch time, data loading included); training
    does about 3x the forward FLOPs (forward, backward for activations, backward for weights), so
    ``train_gflops_per_s = 3 x gflops_per_image x images_per_s``; its ``pct_of_peak`` is set with the
    inference rows' against the one fp32 ceiling of its device (:func:`vggbench.bench.ceilings.apply_ceilings`).
    ``peak_rss_bytes`` (and ``gpu_memory_used_bytes``) are the last epoch's, when the history has them.

    Parameters:
        run_dir, manifest: the run.
        info: :func:`run_info` of it.
    """
    from vggbench.artifacts.layout import HISTORY_FILE
    from vggbench.artifacts.manifest import read_history

    if HISTORY_FILE not in manifest.get("files", {}):
        return None
    epochs = read_history(run_dir, manifest)["epochs"]  # typed and bounded; checked before measuring too
    if not epochs or not epochs[-1].get("images_per_s"):
        return None
    last = epochs[-1]
    threads = (manifest.get("threads") or {}).get("mxnet")
    devices = ",".join((manifest.get("device") or {}).get("contexts") or ["cpu(0)"])
    gflops = 3 * info["gflops_per_image"] * last["images_per_s"]
    return {"run_dir": info["run_dir"], "model": info["model"], "input_size": info["input_size"],
            "width_ratio": info["width_ratio"], "epoch": last.get("epoch"), "train_images_per_s": last["images_per_s"],
            "train_gflops_per_s": gflops, "pct_of_peak": None, "peak_rss_bytes": last.get("peak_rss_bytes"),
            "gpu_memory_used_bytes": last.get("gpu_memory_used_bytes"), "threads": threads, "devices": devices,
            "batch_size": (manifest.get("recipe") or {}).get("batch_size")}


def onnx_parameters(path) -> Dict[str, int]:
    """``parameter_count`` and ``parameter_bytes`` of an ONNX file: its initializer tensors as stored
    (int8 weights 1 byte each, their scales and zero points included), read without the weights'
    external data."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    count = total = 0
    for tensor in model.graph.initializer:
        size = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        count += size
        total += size * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return {"parameter_count": count, "parameter_bytes": total}


def model_size(run_dir, backend: str, precision: str, runtime_info: Dict[str, Any]) -> Dict[str, Any]:
    """What a row's model weighs: ``model_file_bytes`` (the files it loads, on disk) and its
    ``parameter_count``/``parameter_bytes`` (ONNX: the file's initializers; MXNet: the loaded
    arrays, as its runner reports them).

    Parameters:
        run_dir: the run dir.
        backend, precision: the row's.
        runtime_info: the loaded runtime's ``info()``.
    """
    from vggbench.artifacts.layout import MXNET_FILES

    if BACKENDS[backend].family == "mxnet":
        names = list(MXNET_FILES)
        fields = {key: runtime_info.get(key) for key in ("parameter_count", "parameter_bytes")}
    else:
        names = [ONNX_VARIANT_FILES[PRECISIONS[precision][0]]]
        fields = onnx_parameters(Path(run_dir) / names[0])
    fields["model_file_bytes"] = sum((Path(run_dir) / name).stat().st_size for name in names)
    return fields


def verify_run_dir(run_dir, manifest: Dict[str, Any], plan: Dict[str, List[str]]) -> None:
    """Check every file the planned rows will load before anything is timed.

    sha256 of each file against the manifest, and each ONNX file's input shape against the
    manifest's input size and channels. Raises :class:`VggbenchError` naming the file.

    Parameters:
        run_dir: the run dir.
        manifest: its manifest.
        plan: backend -> precisions that will run.
    """
    import onnx

    from vggbench.artifacts.layout import HISTORY_FILE, MXNET_FILES
    from vggbench.artifacts.manifest import read_history
    from vggbench.artifacts.reader import refuse_external_data

    names = set()
    for backend, precisions in plan.items():
        if BACKENDS[backend].family == "mxnet":
            names.update(MXNET_FILES)
        else:
            names.update(ONNX_VARIANT_FILES[PRECISIONS[p][0]] for p in precisions if p in PRECISIONS)
    expected = [manifest.get("in_channels", 1), manifest["input_size"], manifest["input_size"]]
    if HISTORY_FILE in manifest.get("files", {}):
        read_history(run_dir, manifest)  # what training_row reads after measuring: refuse it now
    for name in sorted(names):
        path = verify_file(run_dir, manifest, name)
        if not name.endswith(".onnx"):
            continue
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # noqa: BLE001 - a corrupt file is the user's to fix
            raise VggbenchError(f"{path}: not a readable ONNX model ({summarize_error(err)}); "
                                f"re-export the run dir") from None
        refuse_external_data(model, path)
        if not model.graph.input:
            raise VggbenchError(f"{path}: the ONNX graph has no input; re-export the run dir")
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in model.graph.input[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or dims[1:] != expected:
            raise VggbenchError(f"{path}: input shape {dims} does not match the manifest's "
                                f"[batch, {expected[0]}, {expected[1]}, {expected[2]}]; re-export the run dir")


def prepare_accuracy_data(input_size: int, limit: Optional[int], out_dir: Path,
                          data_dir: Optional[str] = None, chunk: int = 500) -> Dict[str, Any]:
    """Preprocess the real test set (or a fixed random ``limit`` subset) once, into ``.npy`` files.

    Same preprocessing as training and evaluation (:func:`vggbench.data.iter_batches`); workers
    memory-map the result, so every backend classifies exactly the same float32 images and the
    images are held once, not once per backend.

    Parameters:
        input_size: side of the resized images.
        limit: None = all 10,000 test images, N = a fixed random subset.
        out_dir: where the ``.npy`` files go (the sweep's temporary folder).
        data_dir: Fashion-MNIST folder (None = the default resolution).
        chunk: images preprocessed at a time.
    """
    from vggbench import data

    images, labels = data.load_fashion_mnist(data_dir, train=False)
    total = len(labels)
    images, labels = data.subset(images, labels, limit, seed=0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    x_path, y_path = out_dir / f"test-x-{input_size}.npy", out_dir / f"test-y-{input_size}.npy"
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32,
                                  shape=(len(labels), 1, input_size, input_size))
    start = 0
    for batch_x, _ in data.iter_batches(images, labels, input_size, chunk):
        x[start:start + len(batch_x)] = batch_x
        start += len(batch_x)
    x.flush()
    del x
    np.save(y_path, labels.astype(np.int32))
    return {"x": str(x_path), "y": str(y_path), "images": int(len(labels)),
            "full_test_set": len(labels) == total}


def worker_command_for(backend: str, worker_python: Dict[str, str], command: Optional[Sequence[str]] = None):
    """The command that starts ``backend``'s worker: ``PYTHON -m vggbench.bench.worker`` when
    ``worker_python`` names an interpreter for it (another venv: MXNet's CUDA 11 stack beside ONNX
    Runtime's CUDA 12 one), else ``command`` (None: this interpreter)."""
    python = worker_python.get(backend)
    return [python, "-m", "vggbench.bench.worker"] if python else command


def check_worker_python(worker_python: Optional[Dict[str, str]]) -> Dict[str, str]:
    """``{backend: interpreter}`` checked: known backends, executable files (one-line errors)."""
    checked = {}
    for backend, python in (worker_python or {}).items():
        if backend not in BACKENDS:
            raise VggbenchError(f"--python {backend}={python}: unknown backend; choose from {', '.join(BACKENDS)}")
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise VggbenchError(f"--python {backend}={python}: not an executable file; give the python of a venv "
                                f"with vggbench installed (e.g. .venv-mx/bin/python)")
        checked[backend] = str(python)
    return checked


def probe_backends(backends: Sequence[str], work_dir: Path, gpu: int = 0,
                   command: Optional[Sequence[str]] = None, timeout_s: float = 300) -> Dict[str, Optional[str]]:
    """Ask a worker why each backend cannot run here (None = it can).

    Parameters:
        backends: names to probe.
        work_dir: where the worker's stderr goes.
        gpu: GPU index for GPU backends.
        command: worker command line (tests).
        timeout_s: limit for the probe.
    """
    with Worker("probe", Path(work_dir) / "probe.stderr", command=command, timeout_s=timeout_s) as worker:
        try:
            reply = worker.call("probe", backends=list(backends), gpu=gpu)
        except WorkerDied as err:
            raise VggbenchError(f"could not check the requested backends ({err})") from None
    if not reply.get("ok"):
        raise VggbenchError(f"could not check the requested backends ({reply.get('message')})")
    return reply["reasons"]


class _Row:
    """One (backend, precision, batch, mode) being measured: its worker and its rounds."""

    def __init__(self, worker: Worker, backend: str, precision: str, row: R.Row):
        self.worker, self.backend, self.precision, self.row = worker, backend, precision, row
        self.calls = 0
        self.control: Any = None  # its stats.Convergence once prepared
        self.latencies_ms: List[float] = []
        self.round_replies: List[Dict[str, Any]] = []  # memory and energy of each round


def resource_fields(row: R.Row, replies: Sequence[Dict[str, Any]], batch_size: int) -> Dict[str, Any]:
    """A row's memory and energy from its rounds' replies (:meth:`vggbench.bench.worker._WorkerState.round`).

    ``memory_peak_rss_bytes``: the highest resident peak over the rounds minus the worker's idle RSS;
    ``energy_j_per_image``: the energy of all rounds over the images they classified, only when every
    round has a reading (else None, and ``energy_reason`` keeps why); ``gpu_memory_used_bytes``: the
    most device memory in use after a round, over the worker's before loading (NVML, whole GPU).

    Parameters:
        row: the row (``memory_idle_rss_bytes``, ``gpu_memory_idle_bytes`` from loading).
        replies: the round replies (``peak_rss_bytes``, ``energy_j``, ``calls``, ...).
        batch_size: images per call.
    """
    fields: Dict[str, Any] = {}
    peaks = [r["peak_rss_bytes"] for r in replies if r.get("peak_rss_bytes") is not None]
    if peaks and row.memory_idle_rss_bytes is not None:
        fields["memory_peak_rss_bytes"] = max(peaks) - row.memory_idle_rss_bytes
        fields["memory_peak_method"] = replies[-1].get("peak_rss_method")
    energies = [r.get("energy_j") for r in replies]
    if replies and all(e is not None for e in energies):
        fields["energy_j_per_image"] = sum(energies) / (batch_size * sum(reply["calls"] for reply in replies))
    elif replies and not row.energy_reason:
        fields["energy_reason"] = "the energy counter could not be read in some rounds"
    used = [reply["gpu_memory_used_bytes"] for reply in replies if reply.get("gpu_memory_used_bytes") is not None]
    if used and row.gpu_memory_idle_bytes is not None:
        fields["gpu_memory_used_bytes"] = max(used) - row.gpu_memory_idle_bytes
        fields["gpu_memory_note"] = ("NVML device memory in use after each round minus before loading, whole GPU "
                                     "(unverified: not yet checked on a GPU)")
    return fields


class _CellContext:
    """What the machine was doing while one cell was timed: load average, CPU time of other
    processes and the hypervisor (steal), clock, throttling; and a warning line when it was busy."""

    def __init__(self, workers: Sequence[Worker]):
        self._pids = sorted({w.pid for w in workers})
        self.load_before = load.load_average()
        self.throttle_before = load.throttling_hints()
        self.cpu_before = load.cpu_times()
        self.own_before = self._own_cpu_s()

    def _own_cpu_s(self) -> float:
        return sum(load.process_cpu_s(pid) or 0.0 for pid in self._pids) + sum(os.times()[:2])

    def finish(self) -> Dict[str, Any]:
        """The row fields: ``load_avg_before/after`` (1-min), ``context`` (details) and ``busy_warning``."""
        after = load.cpu_times()
        usage = (load.cpu_usage_between(self.cpu_before, after, self._own_cpu_s() - self.own_before)
                 if self.cpu_before and after else None)
        load_after = load.load_average()
        warning = load.machine_busy(None, cpu.physical_cores(), usage=usage) or load.throttled_between(
            self.throttle_before, load.throttling_hints())
        frequency = cpu.cpu_frequencies_mhz()
        return {"load_avg_before": (self.load_before or {}).get("load_1min"),
                "load_avg_after": (load_after or {}).get("load_1min"), "busy_warning": warning,
                "context": {"load_before": self.load_before, "load_after": load_after, "cpu_usage": usage,
                            "cpu_mhz_mean": frequency.get("current_mhz_mean"), "cpu_mhz_source": frequency.get("source")}}


def _measure_cell(cell_rows: List[_Row], batch_size: int, mode: str, input_size: int, settings: RoundSettings,
                  device_kind: str) -> None:
    """Prepare each row of one (batch, mode) cell, then interleave rounds until every row is done.

    Every row keeps taking rounds until the whole cell is done, so all rows have the same number
    of rounds and round i of each was timed in the same cycle (the pairs of a speedup).
    """
    from vggbench.bench import stats

    policy = settings.policy(device_kind)
    where = f"batch {batch_size} {R.MODE_SHORT[R.MODES[mode]]}"
    active = []
    for item in cell_rows:
        try:
            reply = item.worker.call("prepare", precision=item.precision, batch_size=batch_size, mode=mode,
                                     input_size=input_size, warmup=settings.warmup, round_s=policy.round_min_s,
                                     calls=settings.iters, min_calls=policy.round_min_calls)
        except WorkerDied as err:
            item.row.set_status(R.Status.ERROR, f"{err} during {where}")
            continue
        if not reply["ok"]:
            item.row.set_status(R.Status.ERROR, f"{reply['message']} during {where}")
            continue
        item.calls = reply["calls_per_round"]
        item.control = stats.Convergence.from_policy(policy)
        active.append(item)
    context = _CellContext([item.worker for item in active])
    while active and not all(item.control.done for item in active):
        for item in list(active):
            try:
                reply = item.worker.call("round", precision=item.precision, batch_size=batch_size, mode=mode,
                                         calls=item.calls)
                if not reply["ok"]:
                    raise WorkerDied(reply["message"])
            except WorkerDied as err:
                item.row.set_status(R.Status.ERROR, f"{err} during {where}")
                active.remove(item)
                continue
            item.control.add(batch_size * item.calls / reply["wall_s"], round_s=reply["wall_s"], calls=item.calls)
            item.latencies_ms += reply["latencies_ms"]
            item.round_replies.append(dict(reply, latencies_ms=None, calls=item.calls))
            time.sleep(ROUND_SETTLE_S)
    fields = context.finish()
    for item in active:
        item.row.update(item.control.summary(), round_images_per_s=list(item.control.samples),
                        warmup=settings.warmup, **fields, **latency_summary(item.latencies_ms))
        item.row.update(resource_fields(item.row, item.round_replies, batch_size))


def worker_groups(backend: str, precisions: Sequence[str]) -> List[Tuple[str, List[str], Dict[str, str]]]:
    """How one backend's precisions are split over worker processes: ``(label, precisions, env)``.

    Every precision gets a process of its own, so a row's memory is what one process running only
    that model needs, and on a GPU ``NVIDIA_TF32_OVERRIDE`` (read once per process) is 0 for fp32/fp16
    (so fp32 means IEEE fp32 in cuBLAS/cuDNN/TensorRT) and unset for tf32
    (:func:`vggbench.runtimes.providers.tf32_environment`).

    Parameters:
        backend: a key of :data:`vggbench.runtimes.backends.BACKENDS`.
        precisions: the precisions to run on it.
    """
    from vggbench.runtimes.providers import tf32_environment

    gpu = BACKENDS[backend].device_kind == "gpu"
    return [(f"{backend}/{precision}", [precision], tf32_environment(precision) if gpu else {})
            for precision in dict.fromkeys(precisions)]


class _Group:
    """One worker process of a run dir's sweep: its backend, label and loaded precisions."""

    def __init__(self, label: str, backend: str, worker: Worker):
        self.label, self.backend, self.worker = label, backend, worker
        self.loaded: Dict[str, Dict[str, Any]] = {}  # precision -> runtime info
        self.resources: Dict[str, Dict[str, Any]] = {}  # precision -> memory, load times, energy counter
        self.peaks: Dict[str, Dict[str, Any]] = {}  # dtype -> peak fields


def _start_groups(run_dir: str, info: Dict[str, Any], plan: Dict[str, List[str]], missing: Dict[str, str],
                  settings: Dict[str, Any], work_dir: Path, command, log: Log,
                  rows: List[R.Row], groups: List[_Group]) -> None:
    """Rows for what cannot run; a loaded worker (appended to ``groups``) for the rest."""
    gpu = settings["gpu"]
    for backend, precisions in plan.items():
        device = str(backend_device(backend, gpu))
        by_design = {p: unsupported_reason(backend, p) for p in precisions}
        for precision, reason in by_design.items():
            if reason or backend in missing:
                rows.append(R.new_row(info, backend, device, precision, R.Status.UNAVAILABLE,
                                      reason or missing[backend]))
        runnable = [p for p in precisions if not by_design[p]] if backend not in missing else []
        for label, members, env in (worker_groups(backend, runnable) if runnable else []):
            log(f"  {label}: loading {', '.join(members)}")
            worker_command = worker_command_for(backend, settings.get("worker_python") or {}, command)
            group = _Group(label, backend, Worker(label, work_dir / f"{label.replace('/', '-')}.stderr",
                                                  settings["threads"], worker_command, settings["timeout_s"], env))
            groups.append(group)
            try:
                reply = group.worker.call("load", run_dir=run_dir, backend=backend, gpu=gpu,
                                          threads=settings["threads"], runtime_options=settings["runtime_options"],
                                          precisions=members, batch_sizes=settings["session_batch_sizes"],
                                          input_size=info["input_size"], in_channels=info.get("in_channels", 1))
                answers = reply["precisions"] if reply["ok"] else {
                    p: {"status": "error", "message": reply["message"]} for p in members}
            except WorkerDied as err:
                answers = {p: {"status": "error", "message": f"{err} during loading"} for p in members}
            for precision, answer in answers.items():
                if answer["status"] == "ok":
                    group.loaded[precision] = answer["runtime"]
                    group.resources[precision] = dict(answer.get("resources") or {},
                                                      **model_size(run_dir, backend, precision, answer["runtime"]))
                else:
                    text = answer.get("reason") or answer.get("message")
                    rows.append(R.new_row(info, backend, device, precision, R.Status(answer["status"]), text))


def _measure_run_dir(run_dir: str, info: Dict[str, Any], plan: Dict[str, List[str]], missing: Dict[str, str],
                     settings: Dict[str, Any], policy: RoundSettings, accuracy: Optional[Dict[str, Any]],
                     work_dir: Path, command, log: Log) -> List[Dict[str, Any]]:
    """Every row of one run dir: start the workers, load, peak, interleaved cells, accuracy."""
    from tqdm import tqdm

    rows: List[R.Row] = []
    groups: List[_Group] = []
    try:
        _start_groups(run_dir, info, plan, missing, settings, work_dir, command, log, rows, groups)
        _measure_peaks(groups, settings, log)
        cells = [(b, m) for b in settings["batch_sizes"] for m in settings["modes"]]
        progress = tqdm(total=len(cells), desc=f"timing {Path(run_dir).name}", unit="cell", leave=False,
                        disable=None)
        for batch_size, mode in cells:
            cell_rows = []
            for group in groups:
                device = str(backend_device(group.backend, settings["gpu"]))
                for precision, runtime_info in group.loaded.items():
                    row = R.new_row(info, group.backend, device, precision, batch_size=batch_size,
                                    mode=R.MODES[mode])
                    row.update(runtime=runtime_info, threads=runtime_info.get("threads"))
                    row.update(group.resources.get(precision) or {})
                    peak = group.peaks.get(PEAK_DTYPES[precision])
                    if peak:
                        row.update(peak_gflops_per_s=peak["peak_gflops_per_s"], peak_kernel=peak["peak_kernel"])
                    cell_rows.append(_Row(group.worker, group.backend, precision, row))
            kinds = {BACKENDS[item.backend].device_kind for item in cell_rows}
            _measure_cell(cell_rows, batch_size, mode, info["input_size"], policy, "gpu" if "gpu" in kinds else "cpu")
            warning = next((item.row.busy_warning for item in cell_rows if item.row.busy_warning), None)
            if warning:
                log(f"  WARNING batch {batch_size} {mode}: {warning}")
            for item in cell_rows:
                row = item.row
                if row.ok and row.images_per_s is None:
                    row.set_status(R.Status.ERROR, "no round was timed")
                if row.ok and row.gflops_per_image is not None:
                    row.gflops_per_s = row.gflops_per_image * row.images_per_s
                rows.append(row)
            progress.update(1)
        progress.close()
        if accuracy:
            _accuracy_pass(rows, groups, accuracy, log)
    finally:
        for group in groups:
            group.worker.close()
    return rows


def _measure_peaks(groups: Sequence[_Group], settings: Dict[str, Any], log: Log) -> None:
    """Each backend's GEMM peak once per dtype (and TF32 setting), shared by its precisions' workers."""
    measured: Dict[tuple, Dict[str, Any]] = {}
    for group in groups:
        sizes = settings["peak_sizes"] or (CPU_PEAK_SIZES if BACKENDS[group.backend].device_kind == "cpu"
                                           else GPU_PEAK_SIZES)
        for dtype in sorted({PEAK_DTYPES[p] for p in group.loaded}):
            key = (group.backend, dtype, "tf32" in group.loaded)
            if key in measured:
                group.peaks[dtype] = measured[key]
                continue
            log(f"  {group.label}: peak GEMM ({dtype}, sizes {', '.join(map(str, sizes))})")
            try:
                reply = group.worker.call("peak", dtype=dtype, sizes=list(sizes))
            except WorkerDied:
                break  # the cells will report the dead worker
            if reply["ok"]:
                group.peaks[dtype] = measured[key] = reply


def _accuracy_pass(rows: List[R.Row], groups: Sequence[_Group], accuracy: Dict[str, Any], log: Log) -> None:
    for group in groups:
        for precision in group.loaded:
            mine = [r for r in rows if r.backend == group.backend and r.precision == precision]
            if not any(r.ok for r in mine):
                continue
            log(f"  {group.backend} {precision}: accuracy on {accuracy['images']} test images")
            try:
                reply = group.worker.call("accuracy", precision=precision, x=accuracy["x"], y=accuracy["y"],
                                          batch_size=ACCURACY_BATCH_SIZE)
                failure = None if reply["ok"] else reply["message"]
            except WorkerDied as err:
                reply, failure = {}, str(err)
            if failure:
                keep = ("model", "input_size", "width_ratio", "backend", "device", "precision", "run_dir",
                        "gflops_per_image")
                rows.append(R.Row(**{key: getattr(mine[0], key) for key in keep}, status=R.Status.ERROR,
                                  reason=f"accuracy pass failed: {failure}"))
                continue
            for row in mine:
                if row.ok:
                    row.update(top1_accuracy=reply["top1_accuracy"], accuracy_images=reply["accuracy_images"])


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """What one sweep measures: run dirs x backends x precisions x batch sizes x modes, and how.
    Validates itself on creation (one-line :class:`VggbenchError`s naming the flag).

    Attributes:
        run_dirs: run dirs made by ``train-export``.
        backends: None = the default sweep (every backend, unavailable ones as rows); naming
            backends makes an unavailable one a :class:`VggbenchError` before anything runs.
        batch_sizes, precisions, modes: what to time (precisions None = each backend's defaults
            that the run dir holds).
        round_settings: the round policy (:class:`vggbench.bench.stats.RoundSettings`).
        threads: CPU threads for every backend (:func:`vggbench.platform.mxnet.resolve_threads`).
        accuracy_limit: None = the full test set, N = a fixed random subset, 0 = skip.
        data_dir: Fashion-MNIST folder.
        peak_sizes: GEMM sides for the peak (None = by device kind).
        timeout_s: per-command limit of a worker (a hung backend becomes an error row).
        gpu: GPU index for GPU backends.
        ort_options: ONNX Runtime options (None: ONNX Runtime runners' defaults, recorded as ``{}``).
    """

    run_dirs: Tuple[str, ...]
    backends: Optional[Tuple[str, ...]] = None
    batch_sizes: Tuple[int, ...] = DEFAULT_BATCH_SIZES
    precisions: Optional[Tuple[str, ...]] = None
    modes: Tuple[str, ...] = DEFAULT_MODES
    round_settings: RoundSettings = RoundSettings()
    threads: Optional[int] = None
    accuracy_limit: Optional[int] = None
    data_dir: Optional[str] = None
    peak_sizes: Optional[Tuple[int, ...]] = None
    timeout_s: Optional[float] = DEFAULT_TIMEOUT_S
    gpu: int = 0
    ort_options: Optional[OrtOptions] = None
    worker_python: Tuple[Tuple[str, str], ...] = ()  # (backend, interpreter): that backend's worker runs there

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.backends is not None:
            put("backends", tuple(check_backends(self.backends)))
            if not self.backends:
                raise VggbenchError("no backends to run; choose from: " + ", ".join(BACKENDS))
        batch_sizes = tuple(dict.fromkeys(int(b) for b in self.batch_sizes))
        if not batch_sizes or min(batch_sizes) < 1:
            raise VggbenchError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
        put("batch_sizes", batch_sizes)
        put("modes", tuple(self.modes))
        for mode in self.modes:
            if mode not in R.MODES:
                raise VggbenchError(f"unknown mode {mode!r}; choose from {', '.join(R.MODES)}")
        if self.precisions is not None:
            put("precisions", tuple(self.precisions))
        if self.accuracy_limit is not None and self.accuracy_limit < 0:
            raise VggbenchError(f"--accuracy-limit must be >= 0 (0 skips the accuracy pass), got {self.accuracy_limit}")
        if self.peak_sizes is not None:
            put("peak_sizes", tuple(self.peak_sizes))
            if not self.peak_sizes or min(self.peak_sizes) < 16:
                raise VggbenchError(f"--peak-sizes must be >= 16, got {list(self.peak_sizes)}")
        put("worker_python", tuple(sorted(check_worker_python(dict(self.worker_python)).items())))
        put("run_dirs", tuple(str(run_dir) for run_dir in self.run_dirs))
        if not self.run_dirs:
            raise VggbenchError("no run dirs to benchmark; make one with `vggbench train-export MODEL --size 96`")

    @property
    def backend_names(self) -> List[str]:
        """The backends to run: the named ones, else every backend."""
        return list(self.backends) if self.backends is not None else check_backends(DEFAULT_BACKENDS)


def sweep(run_dirs: Sequence, backends: Optional[Sequence[str]] = None,
          batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, precisions: Optional[Sequence[str]] = None,
          modes: Sequence[str] = DEFAULT_MODES, warmup: int = DEFAULT_WARMUP, rounds: Optional[int] = None,
          iters: Optional[int] = None, target_ci_pct: Optional[float] = None,
          max_seconds: Optional[float] = None, round_s: Optional[float] = None, threads: Optional[int] = None,
          accuracy_limit: Optional[int] = None, data_dir: Optional[str] = None,
          peak_sizes: Optional[Sequence[int]] = None, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S, gpu: int = 0,
          runtime_options: Optional[Dict[str, Any]] = None, log: Log = say,
          command: Optional[Sequence[str]] = None, worker_python: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Benchmark every run dir on every backend; return the results document.

    The keyword form of :func:`run_sweep`: the arguments are :class:`SweepJob`'s, with the round
    policy spread out (``warmup, rounds, iters, target_ci_pct, max_seconds, round_s``:
    :class:`~vggbench.bench.stats.RoundSettings`) and ``runtime_options`` as the dict form of
    :class:`~vggbench.runtimes.ort_runtime.OrtOptions`. ``log``: progress lines; ``command``:
    worker command line (tests); ``worker_python``: ``{backend: interpreter}``, that backend's
    worker and probe run with that Python (another venv, e.g. mxnet-cu117's beside onnxruntime-gpu's),
    recorded in ``settings.worker_python``.
    """
    job = SweepJob(tuple(run_dirs), tuple(backends) if backends is not None else None, tuple(batch_sizes),
                   tuple(precisions) if precisions is not None else None, tuple(modes),
                   RoundSettings(warmup, rounds, iters, target_ci_pct, max_seconds, round_s), threads,
                   accuracy_limit, data_dir, tuple(peak_sizes) if peak_sizes is not None else None, timeout_s, gpu,
                   OrtOptions.from_dict(runtime_options) if runtime_options else None,
                   tuple((worker_python or {}).items()))
    return run_sweep(job, log=log, command=command)


def run_sweep(job: SweepJob, log: Log = say, command: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Benchmark every run dir of ``job`` on every backend; return the results document.

    Parameters:
        job: what to measure and how.
        log: progress lines.
        command: worker command line (tests).
    """
    from vggbench.bench.ceilings import apply_ceilings
    from vggbench.platform.cpu import theoretical_peaks
    from vggbench.platform.environment import collect_environment
    from vggbench.platform.load import load_average

    explicit = job.backends is not None
    backends = job.backend_names
    batch_sizes, precisions, modes = list(job.batch_sizes), job.precisions, list(job.modes)
    accuracy_limit, data_dir, peak_sizes, gpu = job.accuracy_limit, job.data_dir, job.peak_sizes, job.gpu
    policy = job.round_settings
    threads, threads_source = resolve_threads(job.threads)
    run_dirs = job.run_dirs
    manifests = {str(run_dir): read_manifest(run_dir) for run_dir in run_dirs}
    plan = {run_dir: {b: precisions_for(b, manifest, precisions, run_dir) for b in backends}
            for run_dir, manifest in manifests.items()}
    for run_dir, manifest in manifests.items():
        verify_run_dir(run_dir, manifest, plan[run_dir])
    infos = {run_dir: run_info(run_dir, manifest) for run_dir, manifest in manifests.items()}
    settings = {"run_dirs": list(manifests), "backends": backends, "backends_explicit": explicit,
                "batch_sizes": batch_sizes, "precisions": list(precisions) if precisions is not None else None,
                "modes": [R.MODES[m] for m in modes], "policy": policy.to_dict(), "timing_policy": policy.description,
                "threads": threads, "threads_source": threads_source, "accuracy_limit": accuracy_limit,
                "accuracy_batch_size": ACCURACY_BATCH_SIZE, "peak_sizes": list(peak_sizes) if peak_sizes else None,
                "timeout_s": job.timeout_s, "gpu": gpu,
                "runtime_options": job.ort_options.to_dict() if job.ort_options else {},
                "worker_python": dict(job.worker_python), "models": list(infos.values())}
    environment = collect_environment()
    environment["load_average_before"] = load_average()
    environment["theoretical_peak"] = theoretical_peaks(threads)
    if any(BACKENDS[b].device_kind == "gpu" for b in backends):
        from vggbench.platform.libraries import gpu_versions

        environment["gpu_versions"] = gpu_versions()  # driver, CUDA, cuDNN, TensorRT, ORT build, GPUs
        from vggbench.platform.gpu_peaks import this_gpu_peaks

        environment["gpu_theoretical_peak"] = this_gpu_peaks(gpu)
    work_dir = Path(tempfile.mkdtemp(prefix="vggbench-bench-"))
    try:
        # One probe answers for every explicitly named backend (so an unavailable one fails before
        # anything is measured) or, in the default sweep, for the GPU backends (so a machine without
        # a GPU does not start a worker per GPU backend just to hear "unavailable").
        to_probe = backends if explicit else [b for b in backends if BACKENDS[b].device_kind == "gpu"]
        try:
            reasons: Dict[str, Optional[str]] = {}
            by_command: Dict[Any, List[str]] = {}  # one probe per interpreter (--python)
            for backend in to_probe:
                found = worker_command_for(backend, settings["worker_python"], command)
                by_command.setdefault(tuple(found) if found else None, []).append(backend)
            for found, members in by_command.items():
                reasons.update(probe_backends(members, work_dir, gpu, list(found) if found else None))
        except VggbenchError:
            if explicit:
                raise
            to_probe, reasons = [], {}  # each backend's own worker will find out
        missing = {b: reasons.get(b, "no answer from the probe") for b in to_probe if reasons.get(b, "?")}
        if explicit and missing:
            raise VggbenchError("requested backend(s) not available here: " + "; ".join(
                f"{b}: {why}" for b, why in missing.items()) + " (leave out --backends to see all as rows)")
        accuracy_sets: Dict[int, Dict[str, Any]] = {}
        rows: List[R.Row] = []
        for index, (run_dir, info) in enumerate(infos.items(), 1):
            size = info["input_size"]
            if accuracy_limit != 0 and size not in accuracy_sets and not settings.get("accuracy_skipped"):
                log(f"preparing {accuracy_limit or 'all'} test images at {size}x{size} for the accuracy pass")
                try:
                    accuracy_sets[size] = prepare_accuracy_data(size, accuracy_limit, work_dir, data_dir)
                except MXNetUnavailable as err:  # e.g. a GPU mxnet that cannot import here: time without it
                    settings["accuracy_skipped"] = f"the accuracy images could not be prepared: {err}"
                    log(f"WARNING: accuracy pass skipped: {err}")
            log(f"[{index}/{len(infos)}] {run_dir}")
            started = time.perf_counter()
            # every batch size a session will see: the timed ones, the accuracy pass's and its last one
            images = (accuracy_sets.get(size) or {}).get("images", 0)
            session_batch_sizes = sorted(set(batch_sizes) | ({ACCURACY_BATCH_SIZE, images % ACCURACY_BATCH_SIZE or
                                                              ACCURACY_BATCH_SIZE} if images else set()))
            new_rows = _measure_run_dir(run_dir, info, plan[run_dir], missing,
                                        dict(settings, peak_sizes=peak_sizes, modes=list(modes),
                                             session_batch_sizes=session_batch_sizes), policy,
                                        accuracy_sets.get(size), work_dir, command, log)
            rows.extend(new_rows)
            log(f"      {R.summary_line(new_rows)} ({time.perf_counter() - started:.0f} s)")
        full = accuracy_limit is None or all(a["full_test_set"] for a in accuracy_sets.values())
        R.add_accuracy_deltas(rows, infos, full)
        R.add_speedups(rows)
        training = [row for row in (training_row(run_dir, manifests[run_dir], infos[run_dir])
                                    for run_dir in infos) if row]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    environment["load_average_after"] = load_average()
    ceilings = apply_ceilings(rows, training, environment)
    return {"schema": R.SCHEMA, "environment": environment, "settings": settings, "rows": rows,
            "training": training, "ceilings": ceilings}
