"""The one timing method, the accuracy pass, the peak GEMM, and one worker process per backend.

What is timed (every row says which):

- ``end-to-end (host numpy in/out)``: ``runtime.run(batch)`` -- host float32 NCHW in, host logits
  out, the runtime synced (MXNet ``asnumpy``/``wait_to_read``) before the clock stops.
- ``compute-only (input pre-staged on device)``: ``runtime.stage(batch)`` once, then
  ``runtime.run_staged()`` -- the input already on the device, the output left there, synced.
  On the CPU the two differ only by the host copies; on a GPU they differ by the PCIe transfers.

The method (like timm's ``benchmark.py`` and ``onnxruntime_perf_test``): ``warmup`` untimed calls,
then timed calls -- a fixed count (``iters``), a minimum duration (``duration_s``), or by default
at least :data:`AUTO_MIN_ITERS` calls and :data:`AUTO_MIN_SECONDS` -- with ``time.perf_counter``
around each synced call (garbage collection paused). Latency p50/p90/p99 come from the per-call
times; ``images_per_s = batch_size * iterations / wall time of the timed loop``.

Each backend runs in its own worker process (``python -m vggbench.bench JOB.json``), one after
another: MXNet's OpenMP pool and ONNX Runtime's thread pool never compete, the CUDA runtimes of
the two libraries never share a process, and a crash, OOM kill or timeout of one backend becomes
an ``error: ...`` row while the sweep goes on. The worker streams one JSON line per finished step,
so rows measured before a crash are kept.

Threads: every backend gets the same CPU thread count (:func:`resolve_threads`: ``threads``, else
``$OMP_NUM_THREADS``, else the physical cores) -- ``OMP_NUM_THREADS`` in the worker's environment
before mxnet is imported, ``intra_op_num_threads`` for ONNX Runtime -- and each row records it.
Left to its defaults, MXNet would use half the processors on x86 (1 of 2 vCPUs here) while ONNX
Runtime uses all the physical cores.

The parent process does the MXNet-on-CPU chores once per sweep: FLOPs per image
(:func:`vggbench.models.model_stats`) and the accuracy images, preprocessed exactly as in training
(:func:`vggbench.data.iter_batches`) into a temporary ``.npy`` file that workers memory-map, so an
ONNX Runtime worker never imports mxnet.

Accuracy: every available (backend, precision) classifies the same real Fashion-MNIST test images
(all 10,000 by default; ``accuracy_limit`` for a fixed random subset, 0 to skip); the difference
from MXNet's accuracy on the same images is reported in percentage points.

Attainable peak: each worker times a square fp32 matrix multiply (``peak_size``) through the same
runtime on the same device (MXNet ``nd.dot``; ONNX Runtime a one-node ``MatMul`` model), with the
same timing method; its fastest call is the peak, and every row reports its GFLOP/s as a
percentage of that.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.artifacts import ONNX_VARIANT_FILES, read_manifest, write_json_atomic
from vggbench.environment import physical_cores
from vggbench.errors import VggbenchError

SCHEMA = "vggbench.results/1"
MODE_END_TO_END = "end-to-end (host numpy in/out)"
MODE_COMPUTE_ONLY = "compute-only (input pre-staged on device)"
MODES = {"end-to-end": MODE_END_TO_END, "compute-only": MODE_COMPUTE_ONLY}
MODE_SHORT = {MODE_END_TO_END: "e2e", MODE_COMPUTE_ONLY: "compute"}
STATUS_OK = "ok"

# Bench backends: name -> (runtimes backend, device kind). The MXNet GPU rows are their own names
# so a default sweep shows them (e.g. "unavailable: mxnet-cu117 has no kernels for ... sm_90").
TARGETS: Dict[str, Tuple[str, str]] = {
    "mxnet": ("mxnet", "cpu"),
    "mxnet-hybrid": ("mxnet-hybrid", "cpu"),
    "ort-cpu": ("ort-cpu", "cpu"),
    "mxnet-gpu": ("mxnet", "gpu"),
    "mxnet-hybrid-gpu": ("mxnet-hybrid", "gpu"),
    "ort-cuda": ("ort-cuda", "gpu"),
    "ort-trt": ("ort-trt", "gpu"),
}
DEFAULT_BACKENDS = tuple(TARGETS)
BASELINE_BACKEND = "mxnet-hybrid"
# MXNet reference for accuracy deltas, best first.
MXNET_REFERENCE_BACKENDS = ("mxnet-hybrid", "mxnet", "mxnet-hybrid-gpu", "mxnet-gpu")
# Precisions a default sweep runs on each backend (when the run dir has that file): int8 and the
# ORT-optimized graph are CPU artifacts, fp16 is for GPUs.
DEFAULT_PRECISIONS = {
    "mxnet": ("fp32",), "mxnet-hybrid": ("fp32",), "mxnet-gpu": ("fp32",), "mxnet-hybrid-gpu": ("fp32",),
    "ort-cpu": ("fp32", "opt", "int8"), "ort-cuda": ("fp32", "fp16"), "ort-trt": ("fp32", "fp16"),
}

DEFAULT_BATCH_SIZES = (1, 16, 64)
DEFAULT_MODES = ("end-to-end", "compute-only")
DEFAULT_WARMUP = 2
AUTO_MIN_ITERS = 5
AUTO_MIN_SECONDS = 0.5
AUTO_MAX_ITERS = 1000
DEFAULT_PEAK_SIZE = 2048
DEFAULT_TIMEOUT_S = 3600.0
ACCURACY_BATCH_SIZE = 64
ORT_OPTION_KEYS = ("device_id", "cudnn_conv_algo_search", "gpu_mem_limit", "cudnn_conv_use_max_workspace",
                   "graph_optimization")

Log = Callable[[str], None]


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the timing method -----------------------------------------------------------------------------

def check_timing(warmup: int = DEFAULT_WARMUP, iters: Optional[int] = None,
                 duration_s: Optional[float] = None) -> str:
    """Validate the iteration policy and describe it in words (goes into the results' settings)."""
    if warmup < 0:
        raise VggbenchError(f"--warmup must be >= 0, got {warmup}")
    if iters is not None and duration_s is not None:
        raise VggbenchError("give --iters or --duration, not both")
    if iters is not None:
        if iters < 1:
            raise VggbenchError(f"--iters must be >= 1, got {iters}")
        return f"{warmup} warm-up call(s), then exactly {iters} timed call(s)"
    if duration_s is not None:
        if not duration_s > 0:
            raise VggbenchError(f"--duration must be > 0 seconds, got {duration_s}")
        return f"{warmup} warm-up call(s), then timed calls until at least {duration_s:g} s have passed"
    return (f"{warmup} warm-up call(s), then timed calls until at least {AUTO_MIN_ITERS} calls and "
            f"{AUTO_MIN_SECONDS:g} s (at most {AUTO_MAX_ITERS} calls)")


def time_callable(fn: Callable[[], Any], batch_size: int, warmup: int = DEFAULT_WARMUP,
                  iters: Optional[int] = None, duration_s: Optional[float] = None) -> Dict[str, Any]:
    """Time ``fn`` (which must return only when its work is finished) by the one method.

    Returns ``images_per_s``, ``latency_p50_ms``/``p90``/``p99``, ``latency_mean_ms``,
    ``latency_min_ms``, ``iterations`` and ``timed_s`` (wall time of the timed loop).
    """
    check_timing(warmup, iters, duration_s)
    for _ in range(warmup):
        fn()
    latencies: List[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = end = time.perf_counter()
        while True:
            before = time.perf_counter()
            fn()
            end = time.perf_counter()
            latencies.append(end - before)
            count, elapsed = len(latencies), end - start
            if iters is not None:
                if count >= iters:
                    break
            elif duration_s is not None:
                if elapsed >= duration_s:
                    break
            elif (count >= AUTO_MIN_ITERS and elapsed >= AUTO_MIN_SECONDS) or count >= AUTO_MAX_ITERS:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    total = end - start
    latency_ms = np.asarray(latencies) * 1e3
    p50, p90, p99 = np.percentile(latency_ms, [50, 90, 99])
    return {"images_per_s": batch_size * len(latencies) / total,
            "latency_p50_ms": float(p50), "latency_p90_ms": float(p90), "latency_p99_ms": float(p99),
            "latency_mean_ms": float(latency_ms.mean()), "latency_min_ms": float(latency_ms.min()),
            "iterations": len(latencies), "timed_s": total, "warmup": warmup}


# --- attainable peak: a large matrix multiply through the same runtime -----------------------------

def gemm_flops(size: int) -> int:
    return 2 * size ** 3


def mxnet_gemm(size: int, device: str = "cpu", dtype: str = "float32") -> Tuple[Callable[[], None], str]:
    """A synced ``mx.nd.dot`` of two ``size`` x ``size`` matrices on ``device``; returns (fn, label)."""
    import mxnet as mx

    from vggbench.runtimes.mxnet_runtime import parse_device

    kind, index = parse_device(device)
    ctx = mx.cpu() if kind == "cpu" else mx.gpu(index)
    a = mx.nd.random.uniform(shape=(size, size), ctx=ctx, dtype=dtype)
    b = mx.nd.random.uniform(shape=(size, size), ctx=ctx, dtype=dtype)
    a.wait_to_read()
    b.wait_to_read()

    def run() -> None:
        mx.nd.dot(a, b).wait_to_read()

    return run, f"mxnet nd.dot {size}x{size} {dtype} on {ctx}"


def matmul_onnx_model(size: int, dtype: str = "float32", seed: int = 0):
    """A one-node ONNX model ``Y = X @ W`` (``W`` a ``size`` x ``size`` initializer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    weight = np.random.RandomState(seed).uniform(-1, 1, (size, size)).astype(dtype)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])], "peak_gemm",
        [helper.make_tensor_value_info("X", elem, [size, size])],
        [helper.make_tensor_value_info("Y", elem, [size, size])],
        initializer=[numpy_helper.from_array(weight, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_gemm(backend: str, size: int, threads: Optional[int] = None, dtype: str = "float32",
             device_id: int = 0, cudnn_conv_algo_search: str = "EXHAUSTIVE",
             gpu_mem_limit: Optional[int] = None, cudnn_conv_use_max_workspace: bool = True,
             graph_optimization: str = "all") -> Tuple[Callable[[], None], str]:
    """The MatMul model in the backend's provider with the same session options as the model's
    runner; input pre-staged and output bound on the device (IOBinding), synced."""
    import onnxruntime as ort

    from vggbench.runtimes.ort_runtime import PROVIDERS, _provider_options

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[graph_optimization]
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3
    providers = _provider_options(backend, device_id, cudnn_conv_algo_search, gpu_mem_limit,
                                  cudnn_conv_use_max_workspace, dtype == "float16")
    session = ort.InferenceSession(matmul_onnx_model(size, dtype).SerializeToString(), options,
                                   providers=providers)
    got = session.get_providers()[0]
    if got != PROVIDERS[backend]:
        raise VggbenchError(f"peak GEMM: onnxruntime fell back to {got} instead of {PROVIDERS[backend]}")
    device_type = "cpu" if backend == "ort-cpu" else "cuda"
    x = np.random.RandomState(1).uniform(-1, 1, (size, size)).astype(dtype)
    staged = ort.OrtValue.ortvalue_from_numpy(x, device_type, device_id)
    binding = session.io_binding()
    binding.bind_ortvalue_input("X", staged)
    binding.bind_output("Y", device_type, device_id)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run._keepalive = (session, staged, binding)  # type: ignore[attr-defined]
    return run, f"onnxruntime MatMul {size}x{size} {dtype} on {got}"


def measure_peak(fn: Callable[[], None], size: int, label: str, warmup: int = 1,
                 iters: Optional[int] = None, duration_s: Optional[float] = None) -> Dict[str, Any]:
    """Attainable GFLOP/s of a ``size``^3 GEMM, timed by :func:`time_callable` (same policy).

    Attainable = the fastest call: on a shared machine, slower calls measure the neighbours, and a
    peak that is too low would flatter every row's % of peak.
    """
    stats = time_callable(fn, batch_size=1, warmup=warmup, iters=iters, duration_s=duration_s)
    return {"peak_gflops_per_s": gemm_flops(size) / (stats["latency_min_ms"] * 1e6),
            "peak_mean_gflops_per_s": gemm_flops(size) * stats["images_per_s"] / 1e9,
            "peak_kernel": label, "peak_iterations": stats["iterations"]}


# --- accuracy ---------------------------------------------------------------------------------------

def prepare_accuracy_data(input_size: int, limit: Optional[int], out_dir: Path,
                          data_dir: Optional[str] = None, chunk: int = 500) -> Dict[str, Any]:
    """Preprocess the real test set (or a fixed random ``limit`` subset) once, into ``.npy`` files.

    Same preprocessing as training and evaluation (:func:`vggbench.data.iter_batches`); workers
    memory-map the result, so every backend classifies exactly the same float32 images.
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


def top1_accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                  batch_size: int = ACCURACY_BATCH_SIZE) -> float:
    """Fraction of ``y`` that ``predict`` (host batch -> host logits) gets right."""
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = predict(np.ascontiguousarray(x[start:start + batch_size]))
        correct += int((np.asarray(logits).argmax(axis=1) == y[start:start + batch_size]).sum())
    return correct / len(y)


# --- what to run --------------------------------------------------------------------------------------

def check_backends(backends: Iterable[str]) -> List[str]:
    backends = list(backends)
    for name in backends:
        if name not in TARGETS:
            raise VggbenchError(f"unknown backend {name!r}; choose from: {', '.join(TARGETS)}")
    return list(dict.fromkeys(backends))


def present_precisions(manifest: Dict[str, Any]) -> List[str]:
    """ONNX precisions the run dir holds (fp32 is the plain export)."""
    files = manifest.get("files", {})
    return [precision for precision, name in ONNX_VARIANT_FILES.items() if name in files]


def precisions_for(backend: str, manifest: Dict[str, Any], requested: Optional[Sequence[str]] = None,
                   run_dir: str = "") -> List[str]:
    """Precisions to run on ``backend``: the requested ones, or by default fp32 plus the run dir's
    variants meant for that backend (int8/opt on ort-cpu, fp16 on ort-cuda/ort-trt)."""
    present = present_precisions(manifest)
    if requested is None:
        return [p for p in DEFAULT_PRECISIONS[backend] if p in present or p == "fp32"]
    for precision in requested:
        if precision not in ONNX_VARIANT_FILES:
            raise VggbenchError(f"unknown precision {precision!r}; choose from {', '.join(ONNX_VARIANT_FILES)}")
        if precision not in present and precision != "fp32":
            raise VggbenchError(f"{run_dir}: no {ONNX_VARIANT_FILES[precision]} in the manifest; make it with "
                                f"`vggbench optimize {run_dir}` first, or drop {precision} from --precisions")
    return list(dict.fromkeys(requested))


def run_info(run_dir, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """The model facts every row of this run dir carries, including FLOPs per image."""
    from vggbench.models import model_stats

    stats = model_stats(manifest["model"], manifest["input_size"], classes=manifest.get("classes", 10),
                        in_channels=manifest.get("in_channels", 1),
                        width_ratio=manifest.get("width_ratio", 1.0))
    return {"run_dir": str(run_dir), "model": manifest["model"], "config": manifest.get("config"),
            "input_size": manifest["input_size"], "width_ratio": manifest.get("width_ratio", 1.0),
            "gflops_per_image": stats["gflops"], "trained": manifest.get("trained", True),
            "manifest_test_accuracy": manifest.get("test_accuracy"),
            "manifest_test_images": manifest.get("test_images"),
            # optimize's accuracy gate per variant, so tables can flag a variant that lost accuracy
            "variant_gates": {precision: {"flagged": bool(entry.get("flagged")),
                                          "accuracy_drop_points": entry.get("accuracy_drop_points")}
                              for precision, entry in manifest.get("variants", {}).items()}}


# --- the worker process --------------------------------------------------------------------------------

def resolve_threads(threads: Optional[int] = None) -> Tuple[int, str]:
    """One CPU thread count for every backend, and where it came from.

    ``--threads``, else ``$OMP_NUM_THREADS``, else the physical cores. Every runtime gets the same
    count: left to themselves, ONNX Runtime takes the physical cores while MXNet takes *half* the
    processors on x86 (1 thread on a 2-vCPU VM), which would compare 2 threads against 1.
    """
    if threads is not None:
        if threads < 1:
            raise VggbenchError(f"--threads must be >= 1, got {threads}")
        return threads, "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), "OMP_NUM_THREADS"
    return physical_cores(), "physical cores"


def worker_command() -> List[str]:
    return [sys.executable, "-m", "vggbench.bench"]


def worker_env(threads: Optional[int]) -> Dict[str, str]:
    """The child's environment: OMP_NUM_THREADS set before mxnet is ever imported there (and
    MXNET_OMP_MAX_THREADS, which MXNet would otherwise let override it)."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
        env.pop("MXNET_OMP_MAX_THREADS", None)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_worker(job: Dict[str, Any], work_dir: Path, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S,
               command: Optional[Sequence[str]] = None) -> Tuple[List[Dict[str, Any]], Optional[str]]:
    """Run one job in a fresh process; return (streamed records, failure message or None)."""
    work_dir = Path(work_dir)
    handle, job_name = tempfile.mkstemp(prefix="job-", suffix=".json", dir=work_dir)
    os.close(handle)
    job = dict(job, out=job_name[:-len(".json")] + ".jsonl")
    Path(job_name).write_text(json.dumps(job))
    cmd = list(command or worker_command()) + [job_name]
    failure = None
    try:
        proc = subprocess.run(cmd, env=worker_env(job.get("threads")), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout_s)
        if proc.returncode != 0:
            failure = _describe_exit(proc.returncode, proc.stderr.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        failure = f"worker timed out after {timeout_s:g} s and was killed (raise --timeout?)"
    return _read_records(Path(job["out"])), failure


def _describe_exit(returncode: int, stderr: str) -> str:
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"worker killed by {name}{hint}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1][:300] if lines else "no message"
    return f"worker exited with code {returncode}: {last}"


def _read_records(path: Path) -> List[Dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a crash
            continue
    return records


class _Emitter:
    def __init__(self, path: str):
        self._handle = open(path, "a", buffering=1)

    def __call__(self, **record) -> None:
        self._handle.write(json.dumps(record, default=_jsonable) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300]}" if text else type(err).__name__


def _device(job: Dict[str, Any]) -> str:
    backend, kind = TARGETS[job["backend"]]
    return "cpu" if kind == "cpu" else f"gpu:{job.get('gpu', 0)}"


def _ort_options(job: Dict[str, Any]) -> Dict[str, Any]:
    options = {key: value for key, value in (job.get("runtime_options") or {}).items()
               if key in ORT_OPTION_KEYS and value is not None}
    options.setdefault("device_id", job.get("gpu", 0))
    return options


def _probe(job: Dict[str, Any], emit: _Emitter) -> None:
    from vggbench.runtimes import unavailable_reason

    for backend in job["backends"]:
        runtime_backend, _ = TARGETS[backend]
        try:
            reason = unavailable_reason(runtime_backend, "fp32", _device(dict(job, backend=backend)))
        except VggbenchError as err:
            reason = str(err)
        emit(kind="probe", backend=backend, reason=reason)


def _measure_backend(job: Dict[str, Any], emit: _Emitter) -> None:
    """Worker body: availability, peak GEMM, then per precision: load, time, accuracy."""
    from vggbench.runtimes import BackendUnavailable, load_runtime, unavailable_reason

    runtime_backend, kind = TARGETS[job["backend"]]
    device = _device(job)
    available = []
    for precision in job["precisions"]:
        try:
            reason = unavailable_reason(runtime_backend, precision, device)
        except VggbenchError as err:
            reason = str(err)
        if reason:
            emit(kind="unavailable", precision=precision, reason=reason)
        else:
            available.append(precision)
    if not available:
        return

    is_ort = runtime_backend.startswith("ort-")
    options = _ort_options(job) if is_ort else {}
    dtypes = sorted({"float16" if p == "fp16" else "float32" for p in available})
    for dtype in dtypes:
        emit(kind="start", precision=None, step=f"the peak GEMM ({dtype})")
        try:
            if is_ort:
                fn, label = ort_gemm(runtime_backend, job["peak_size"], job.get("threads"), dtype, **options)
            else:
                fn, label = mxnet_gemm(job["peak_size"], device, dtype)
            emit(kind="peak", dtype=dtype, **measure_peak(fn, job["peak_size"], label, 1, job.get("iters"),
                                                          job.get("duration_s")))
            del fn
        except Exception as err:  # noqa: BLE001 - a failed peak leaves rows without % of peak
            emit(kind="peak_error", dtype=dtype, message=_one_line(err))

    accuracy_x = accuracy_y = None
    if job.get("accuracy"):
        accuracy_x = np.load(job["accuracy"]["x"], mmap_mode="r")
        accuracy_y = np.load(job["accuracy"]["y"])
    rng = np.random.RandomState(0)
    size = job["input_size"]
    for precision in available:
        emit(kind="start", precision=precision, step="loading the model")
        try:
            runtime = load_runtime(runtime_backend, job["run_dir"], precision=precision, device=device,
                                   threads=job.get("threads"), **options)
        except BackendUnavailable as err:
            emit(kind="unavailable", precision=precision, reason=str(err))
            continue
        except Exception as err:  # noqa: BLE001 - becomes an error row, the sweep goes on
            emit(kind="error", precision=precision, message=f"loading failed: {_one_line(err)}")
            continue
        info = runtime.info()
        for batch_size in job["batch_sizes"]:
            batch = rng.uniform(0, 1, (batch_size, 1, size, size)).astype(np.float32)
            for mode in job["modes"]:
                emit(kind="start", precision=precision, batch_size=batch_size, mode=MODES[mode],
                     step=f"batch {batch_size} {MODE_SHORT[MODES[mode]]}")
                try:
                    if mode == "end-to-end":
                        fn = lambda: runtime.run(batch)  # noqa: E731
                    else:
                        runtime.stage(batch)
                        fn = runtime.run_staged
                    stats = time_callable(fn, batch_size, job["warmup"], job.get("iters"), job.get("duration_s"))
                    emit(kind="timing", precision=precision, batch_size=batch_size, mode=MODES[mode],
                         runtime=info, **stats)
                except Exception as err:  # noqa: BLE001 - e.g. out of memory at a large batch
                    emit(kind="error", precision=precision, batch_size=batch_size, mode=MODES[mode],
                         message=_one_line(err))
        if accuracy_x is not None:
            emit(kind="start", precision=precision, step="the accuracy pass")
            try:
                accuracy = top1_accuracy(runtime.run, accuracy_x, accuracy_y, job["accuracy_batch_size"])
                emit(kind="accuracy", precision=precision, top1_accuracy=accuracy, accuracy_images=len(accuracy_y))
            except Exception as err:  # noqa: BLE001
                emit(kind="error", precision=precision, message=f"accuracy pass failed: {_one_line(err)}")
        runtime.close()
        emit(kind="done", precision=precision)


def worker_main(job_path: str) -> int:
    """Entry point of ``python -m vggbench.bench JOB.json``."""
    job = json.loads(Path(job_path).read_text())
    emit = _Emitter(job["out"])
    if job.get("task") == "probe":
        _probe(job, emit)
    else:
        _measure_backend(job, emit)
    return 0


# --- turning worker records into rows -------------------------------------------------------------------

ROW_KEYS = ("model", "input_size", "width_ratio", "backend", "device", "precision", "batch_size", "mode",
            "status", "images_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
            "latency_mean_ms", "latency_min_ms", "iterations", "timed_s", "warmup", "gflops_per_image",
            "gflops_per_s", "peak_gflops_per_s", "pct_of_peak", "peak_kernel", "top1_accuracy",
            "accuracy_images", "accuracy_delta_vs_mxnet_points", "accuracy_reference",
            "speedup_vs_mxnet_hybrid", "variant_flagged", "variant_accuracy_drop_points",
            "threads", "runtime", "run_dir")


def _row(info: Dict[str, Any], backend: str, device: str, precision: str, status: str,
         batch_size=None, mode=None) -> Dict[str, Any]:
    row = {key: None for key in ROW_KEYS}
    row.update({"model": info["model"], "input_size": info["input_size"], "width_ratio": info["width_ratio"],
                "backend": backend, "device": device, "precision": precision, "batch_size": batch_size,
                "mode": mode, "status": status, "gflops_per_image": info["gflops_per_image"],
                "run_dir": info["run_dir"]})
    gate = info.get("variant_gates", {}).get(precision)
    if gate:
        row["variant_flagged"] = gate["flagged"]
        row["variant_accuracy_drop_points"] = gate["accuracy_drop_points"]
    return row


def rows_from_records(records: Sequence[Dict[str, Any]], info: Dict[str, Any], backend: str, device: str,
                      precisions: Sequence[str], failure: Optional[str] = None) -> List[Dict[str, Any]]:
    """Assemble one backend's rows from its worker's records (plus its failure, if it died)."""
    rows: List[Dict[str, Any]] = []
    peaks = {r["dtype"]: r for r in records if r["kind"] == "peak"}
    accuracy = {r["precision"]: r for r in records if r["kind"] == "accuracy"}
    finished = set()
    for record in records:
        kind = record["kind"]
        if kind == "unavailable":
            rows.append(_row(info, backend, device, record["precision"], f"unavailable: {record['reason']}"))
            finished.add(record["precision"])
        elif kind == "error":
            rows.append(_row(info, backend, device, record["precision"], f"error: {record['message']}",
                             record.get("batch_size"), record.get("mode")))
            if record.get("batch_size") is None and not record["message"].startswith("accuracy"):
                finished.add(record["precision"])
        elif kind == "done":
            finished.add(record["precision"])
        elif kind == "timing":
            row = _row(info, backend, device, record["precision"], STATUS_OK, record["batch_size"], record["mode"])
            for key in ("images_per_s", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
                        "latency_min_ms", "iterations", "timed_s", "warmup", "runtime"):
                row[key] = record[key]
            row["threads"] = record["runtime"].get("threads")
            row["gflops_per_s"] = info["gflops_per_image"] * record["images_per_s"]
            peak = peaks.get("float16" if record["precision"] == "fp16" else "float32")
            if peak:
                row["peak_gflops_per_s"] = peak["peak_gflops_per_s"]
                row["peak_kernel"] = peak["peak_kernel"]
                row["pct_of_peak"] = 100.0 * row["gflops_per_s"] / peak["peak_gflops_per_s"]
            if record["precision"] in accuracy:
                row["top1_accuracy"] = accuracy[record["precision"]]["top1_accuracy"]
                row["accuracy_images"] = accuracy[record["precision"]]["accuracy_images"]
            rows.append(row)
    if failure:
        starts = [r for r in records if r["kind"] == "start"]
        last = starts[-1] if starts else {}
        for precision in precisions:
            if precision in finished:
                continue
            mine = last.get("precision") in (precision, None) and last.get("step")
            where = f" during {last['step']}" if mine else ""
            rows.append(_row(info, backend, device, precision, f"error: {failure}{where}",
                             last.get("batch_size") if mine else None, last.get("mode") if mine else None))
    return rows


def add_accuracy_deltas(rows: List[Dict[str, Any]], run_infos: Dict[str, Dict[str, Any]],
                        full_test_set: bool) -> None:
    """Fill ``accuracy_delta_vs_mxnet_points`` against MXNet fp32 on the same images (this sweep),
    or the manifest's MXNet test accuracy when no MXNet backend ran and the full test set was used."""
    for run_dir, info in run_infos.items():
        own = [r for r in rows if r["run_dir"] == run_dir]
        reference, label = None, None
        for backend in MXNET_REFERENCE_BACKENDS:
            found = [r["top1_accuracy"] for r in own if r["backend"] == backend and r["precision"] == "fp32"
                     and r["top1_accuracy"] is not None]
            if found:
                reference, label = found[0], f"{backend} fp32, same images"
                break
        if reference is None and full_test_set and info.get("manifest_test_accuracy") is not None \
                and (info.get("manifest_test_images") or 0) >= 10000:
            reference, label = info["manifest_test_accuracy"], "manifest test_accuracy (MXNet, full test set)"
        for row in own:
            if reference is not None and row["top1_accuracy"] is not None:
                row["accuracy_delta_vs_mxnet_points"] = 100.0 * (row["top1_accuracy"] - reference)
                row["accuracy_reference"] = label


def add_speedups(rows: List[Dict[str, Any]], baseline: str = BASELINE_BACKEND) -> None:
    """``speedup_vs_mxnet_hybrid`` = images/s over the mxnet-hybrid fp32 row of the same run dir,
    batch size and mode."""
    base = {(r.get("run_dir"), r["model"], r["input_size"], r["width_ratio"], r["batch_size"], r["mode"]):
            r["images_per_s"] for r in rows
            if r["backend"] == baseline and r["precision"] == "fp32" and r["status"] == STATUS_OK}
    for row in rows:
        key = (row.get("run_dir"), row["model"], row["input_size"], row["width_ratio"], row["batch_size"], row["mode"])
        if row["status"] == STATUS_OK and base.get(key):
            row["speedup_vs_mxnet_hybrid"] = row["images_per_s"] / base[key]


# --- the sweep ----------------------------------------------------------------------------------------------

def probe_backends(backends: Sequence[str], work_dir: Path, gpu: int = 0,
                   command: Optional[Sequence[str]] = None, timeout_s: float = 300) -> Dict[str, Optional[str]]:
    """Ask a worker why each backend cannot run here (None = it can). For explicit requests."""
    records, failure = run_worker({"task": "probe", "backends": list(backends), "gpu": gpu}, work_dir,
                                  timeout_s, command)
    if failure:
        raise VggbenchError(f"could not check the requested backends ({failure})")
    return {r["backend"]: r["reason"] for r in records if r["kind"] == "probe"}


def sweep(run_dirs: Sequence, backends: Optional[Sequence[str]] = None,
          batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, precisions: Optional[Sequence[str]] = None,
          modes: Sequence[str] = DEFAULT_MODES, warmup: int = DEFAULT_WARMUP, iters: Optional[int] = None,
          duration_s: Optional[float] = None, threads: Optional[int] = None,
          accuracy_limit: Optional[int] = None, data_dir: Optional[str] = None,
          peak_size: int = DEFAULT_PEAK_SIZE, timeout_s: Optional[float] = DEFAULT_TIMEOUT_S, gpu: int = 0,
          runtime_options: Optional[Dict[str, Any]] = None, log: Log = _log_stderr,
          command: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Benchmark every run dir on every backend (one worker process each); return the results document.

    ``backends=None`` is the default sweep: every backend, unavailable ones as rows. Naming
    backends explicitly makes an unavailable one a :class:`VggbenchError` before anything runs.
    ``accuracy_limit``: None = the full 10,000 test images, N = a fixed random subset, 0 = skip.
    """
    from vggbench.environment import collect_environment

    explicit = backends is not None
    backends = check_backends(backends if explicit else DEFAULT_BACKENDS)
    if not backends:
        raise VggbenchError("no backends to run; choose from: " + ", ".join(TARGETS))
    policy = check_timing(warmup, iters, duration_s)
    batch_sizes = list(dict.fromkeys(int(b) for b in batch_sizes))
    if not batch_sizes or min(batch_sizes) < 1:
        raise VggbenchError(f"batch sizes must be >= 1, got {batch_sizes}")
    for mode in modes:
        if mode not in MODES:
            raise VggbenchError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    threads, threads_source = resolve_threads(threads)
    if accuracy_limit is not None and accuracy_limit < 0:
        raise VggbenchError(f"--accuracy-limit must be >= 0 (0 skips the accuracy pass), got {accuracy_limit}")
    if peak_size < 16:
        raise VggbenchError(f"--peak-size must be >= 16, got {peak_size}")
    if not run_dirs:
        raise VggbenchError("no run dirs to benchmark; make one with `vggbench train-export MODEL --size 96`")
    manifests = {str(run_dir): read_manifest(run_dir) for run_dir in run_dirs}
    plan = {run_dir: {b: precisions_for(b, manifest, precisions, run_dir) for b in backends}
            for run_dir, manifest in manifests.items()}

    work_dir = Path(tempfile.mkdtemp(prefix="vggbench-bench-"))
    try:
        # One probe process answers for every explicitly named backend (so an unavailable one fails
        # before anything is measured) or, in the default sweep, for the GPU backends (so a machine
        # without a GPU does not start a worker per GPU backend just to hear "unavailable").
        to_probe = backends if explicit else [b for b in backends if TARGETS[b][1] == "gpu"]
        try:
            reasons = probe_backends(to_probe, work_dir, gpu, command) if to_probe else {}
        except VggbenchError:
            if explicit:
                raise
            to_probe, reasons = [], {}  # each backend's own worker will find out (and may become an error row)
        missing = {b: reasons.get(b, "no answer from the probe") for b in to_probe if reasons.get(b, "?")}
        if explicit and missing:
            raise VggbenchError("requested backend(s) not available here: " + "; ".join(
                f"{b}: {why}" for b, why in missing.items()) + " (leave out --backends to see all as rows)")
        infos: Dict[str, Dict[str, Any]] = {}
        accuracy_sets: Dict[int, Dict[str, Any]] = {}
        rows: List[Dict[str, Any]] = []
        total, step = len(manifests) * len(backends), 0
        for run_dir, manifest in manifests.items():
            infos[run_dir] = info = run_info(run_dir, manifest)
            size = info["input_size"]
            if accuracy_limit != 0 and size not in accuracy_sets:
                log(f"preparing {accuracy_limit or 'all'} test images at {size}x{size} for the accuracy pass")
                accuracy_sets[size] = prepare_accuracy_data(size, accuracy_limit, work_dir, data_dir)
            for backend in backends:
                step += 1
                runtime_backend, kind = TARGETS[backend]
                device = "cpu" if kind == "cpu" else f"gpu:{gpu}"
                log(f"[{step}/{total}] {run_dir}: {backend} ({', '.join(plan[run_dir][backend])})")
                job = {"task": "measure", "run_dir": run_dir, "backend": backend, "gpu": gpu,
                       "input_size": size, "precisions": plan[run_dir][backend], "batch_sizes": batch_sizes,
                       "modes": list(modes), "warmup": warmup, "iters": iters, "duration_s": duration_s,
                       "threads": threads, "peak_size": peak_size, "accuracy": accuracy_sets.get(size),
                       "accuracy_batch_size": ACCURACY_BATCH_SIZE, "runtime_options": runtime_options or {}}
                started = time.perf_counter()
                if backend in missing:
                    records, failure = [{"kind": "unavailable", "precision": precision, "reason": missing[backend]}
                                        for precision in plan[run_dir][backend]], None
                else:
                    records, failure = run_worker(job, work_dir, timeout_s, command)
                new_rows = rows_from_records(records, info, backend, device, plan[run_dir][backend], failure)
                rows.extend(new_rows)
                log(f"      {_summary(new_rows)} ({time.perf_counter() - started:.0f} s)")
        full = accuracy_limit is None or all(a["full_test_set"] for a in accuracy_sets.values())
        add_accuracy_deltas(rows, infos, full)
        add_speedups(rows)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    settings = {"run_dirs": list(manifests), "backends": backends, "backends_explicit": explicit,
                "batch_sizes": batch_sizes, "precisions": precisions, "modes": [MODES[m] for m in modes],
                "warmup": warmup, "iters": iters, "duration_s": duration_s, "timing_policy": policy,
                "threads": threads, "threads_source": threads_source, "accuracy_limit": accuracy_limit,
                "accuracy_batch_size": ACCURACY_BATCH_SIZE,
                "peak_size": peak_size, "timeout_s": timeout_s, "gpu": gpu,
                "runtime_options": runtime_options or {}, "models": list(infos.values())}
    return {"schema": SCHEMA, "environment": collect_environment(), "settings": settings, "rows": rows}


def _summary(rows: Sequence[Dict[str, Any]]) -> str:
    ok = [r for r in rows if r["status"] == STATUS_OK]
    other = sorted({r["status"].split(":")[0] for r in rows if r["status"] != STATUS_OK})
    best = max((r["images_per_s"] for r in ok), default=None)
    text = f"{len(ok)} row(s) ok" + (f", best {best:.1f} img/s" if best else "")
    return text + (f"; {', '.join(other)} row(s)" if other else "")


def write_results(path, results: Dict[str, Any]) -> None:
    """Write the results document atomically (``{"schema", "environment", "settings", "rows"}``)."""
    write_json_atomic(path, results)


def bench(run_dir, json_path: Optional[str] = None, out=None, **options) -> Dict[str, Any]:
    """``vggbench bench RUN_DIR``: sweep one run dir, print the table and what was timed, save JSON."""
    from vggbench import report

    results = sweep([str(run_dir)], **options)
    if json_path:
        write_results(json_path, results)
    report.print_results(results, out=out)
    return results


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1]))
