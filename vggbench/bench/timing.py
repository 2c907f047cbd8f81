"""The one timing method and the attainable peak.

A *call* is one synced inference: the callable returns only when its result exists (MXNet
``asnumpy``/``wait_to_read``, ONNX Runtime ``run``/``synchronize_outputs``). A *round* is a fixed
number of calls timed back to back with ``time.perf_counter`` around each call (garbage
collection paused); its throughput is ``batch x calls / round wall time``. A row's figure is the
median over rounds (see :mod:`vggbench.bench.stats`), and the sweep interleaves the rounds of the
backends it compares (:mod:`vggbench.bench.sweep`). :func:`time_callable` is the same method as one
round sized by a policy, for one-off timings (the peak GEMMs, the plain-loop cross-check).

Attainable peak: the fastest call of several GEMM shapes through the same runtime on the same
device, the best of them (:func:`measure_peak`); int8 rows use an int8 GEMM (``MatMulInteger`` in
ONNX Runtime, a QDQ ``Gemm`` in OpenVINO), bf16 rows OpenVINO's GEMM compiled with the bf16 hint.
Rows are not divided by their own runtime's GEMM: :mod:`vggbench.bench.ceilings` takes the best
of these across runtimes and the theoretical peak, one ceiling per device and precision.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vggbench.artifacts.layout import ONNX_IR_VERSION, ONNX_OPSET
from vggbench.errors import VggbenchError

DEFAULT_WARMUP = 2
AUTO_MIN_ITERS = 5
AUTO_MIN_SECONDS = 0.5
AUTO_MAX_ITERS = 1000
# Square GEMM sides whose best call is a row's peak: 1024 is cache-friendly, 3072 is large enough
# to be compute-bound on a CPU (58 GFLOP, ~0.4 s here); on a GPU 8192 (1.1 TFLOP) is needed for
# the launch overhead (~10 us) to vanish (a 2048 GEMM is ~40 us on an H200).
CPU_PEAK_SIZES = (1024, 2048, 3072)
GPU_PEAK_SIZES = (4096, 8192)
PEAK_DTYPES = {"fp32": "float32", "tf32": "float32", "opt": "float32", "int8": "int8", "fp16": "float16",
               "bf16": "bfloat16"}
# The runtime precision OpenVINO's fully connected layer must report for each peak dtype (else
# the GEMM did not run the units it is named after).
OPENVINO_GEMM_PRECISIONS = {"float32": ("f32", "f32"), "bfloat16": ("bf16", "bf16"), "int8": ("f32", "u8")}


def check_timing(warmup: int = DEFAULT_WARMUP, iters: Optional[int] = None,
                 duration_s: Optional[float] = None) -> str:
    """Validate a one-off timing policy and describe it in words.

    Parameters:
        warmup: untimed calls first (>= 0).
        iters: exactly this many timed calls, or None.
        duration_s: timed calls until at least this many seconds, or None.
    """
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


def _timed_loop(fn: Callable[[], Any], enough: Callable[[int, float], bool]) -> Tuple[List[float], float]:
    """Call ``fn`` until ``enough(calls, elapsed_s)``; per-call seconds and the loop's wall time."""
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
            if enough(len(latencies), end - start):
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return latencies, end - start


def time_round(fn: Callable[[], Any], calls: int) -> Dict[str, Any]:
    """One round: exactly ``calls`` synced calls back to back.

    Parameters:
        fn: the synced call.
        calls: how many calls (>= 1).

    Returns ``latencies_ms`` (per call) and ``wall_s`` (the round's wall time).
    """
    if calls < 1:
        raise VggbenchError(f"a round needs at least one call, got {calls}")
    latencies, wall_s = _timed_loop(fn, lambda count, _elapsed: count >= calls)
    return {"latencies_ms": [1e3 * value for value in latencies], "wall_s": wall_s}


def calibrate_calls(fn: Callable[[], Any], round_s: float, min_calls: int = 1,
                    max_calls: int = AUTO_MAX_ITERS) -> int:
    """How many calls of ``fn`` fill a round of ``round_s`` seconds: calls are made (untimed for
    the results) until ``round_s`` has passed, after the warm-up, so the first calls' one-time
    costs do not make the rounds too short.

    Parameters:
        fn: the synced call (already warmed up).
        round_s: the wanted round length.
        min_calls, max_calls: bounds on the answer.
    """
    latencies, _ = _timed_loop(fn, lambda count, elapsed: elapsed >= round_s or count >= max_calls)
    return int(min(max_calls, max(min_calls, len(latencies))))


def latency_summary(latencies_ms: Sequence[float]) -> Dict[str, float]:
    """p50/p90/p99, mean and min of per-call latencies in milliseconds."""
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"latency_p50_ms": float(p50), "latency_p90_ms": float(p90), "latency_p99_ms": float(p99),
            "latency_mean_ms": float(values.mean()), "latency_min_ms": float(values.min())}


def time_callable(fn: Callable[[], Any], batch_size: int, warmup: int = DEFAULT_WARMUP,
                  iters: Optional[int] = None, duration_s: Optional[float] = None) -> Dict[str, Any]:
    """Time ``fn`` (which must return only when its work is finished) as one policy-sized round.

    Parameters:
        fn: the synced call.
        batch_size: images per call (for ``images_per_s``).
        warmup: untimed calls first.
        iters / duration_s: see :func:`check_timing`; neither = at least
            :data:`AUTO_MIN_ITERS` calls and :data:`AUTO_MIN_SECONDS`.

    Returns ``images_per_s``, ``latency_p50_ms``/``p90``/``p99``, ``latency_mean_ms``,
    ``latency_min_ms``, ``iterations``, ``timed_s`` and ``warmup``.
    """
    check_timing(warmup, iters, duration_s)
    for _ in range(warmup):
        fn()
    if iters is not None:
        def enough(count, _elapsed):
            return count >= iters
    elif duration_s is not None:
        def enough(_count, elapsed):
            return elapsed >= duration_s
    else:
        def enough(count, elapsed):
            return (count >= AUTO_MIN_ITERS and elapsed >= AUTO_MIN_SECONDS) or count >= AUTO_MAX_ITERS
    latencies, total = _timed_loop(fn, enough)
    return dict(latency_summary(np.asarray(latencies) * 1e3), images_per_s=batch_size * len(latencies) / total,
                iterations=len(latencies), timed_s=total, warmup=warmup)


# --- attainable peak: GEMMs through the same runtime -----------------------------------------------

def gemm_flops(m: int, k: int, n: int) -> int:
    """Floating-point (or int8) operations of an ``m x k`` by ``k x n`` matrix product: 2 m k n."""
    return 2 * m * k * n


def mxnet_gemm(size: int, device: str = "cpu", dtype: str = "float32") -> Tuple[Callable[[], None], str]:
    """A synced ``mx.nd.dot`` of two ``size`` x ``size`` matrices on ``device``; returns (fn, label).

    Parameters:
        size: the side of the square matrices.
        device: ``cpu`` or ``gpu:N``.
        dtype: ``float32`` or ``float16``.
    """
    from vggbench.platform.devices import Device
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    target = Device.parse(device)
    ctx = mx.gpu(target.index) if target.is_gpu else mx.cpu()
    a = mx.nd.random.uniform(shape=(size, size), ctx=ctx, dtype=dtype)
    b = mx.nd.random.uniform(shape=(size, size), ctx=ctx, dtype=dtype)
    a.wait_to_read()
    b.wait_to_read()

    def run() -> None:
        mx.nd.dot(a, b).wait_to_read()

    return run, f"mxnet nd.dot {size}x{size} {dtype} on {ctx}"


def matmul_onnx_model(size: int, dtype: str = "float32", seed: int = 0):
    """A one-node ONNX model ``Y = X @ W`` (``W`` a ``size`` x ``size`` initializer).

    ``dtype`` ``int8`` builds ``MatMulInteger`` (uint8 activations x int8 weights -> int32), the
    operation ONNX Runtime's int8 convolutions and matmuls reduce to.

    Parameters:
        size: the side of the square matrices.
        dtype: ``float32``, ``float16`` or ``int8``.
        seed: seed of the weights.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    if dtype == "int8":
        weight = rng.randint(-64, 64, (size, size)).astype(np.int8)
        node = helper.make_node("MatMulInteger", ["X", "W"], ["Y"])
        in_type, out_type = TensorProto.UINT8, TensorProto.INT32
    else:
        elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
        weight = rng.uniform(-1, 1, (size, size)).astype(dtype)
        node = helper.make_node("MatMul", ["X", "W"], ["Y"])
        in_type = out_type = elem
    return _square_gemm_model([node], [numpy_helper.from_array(weight, "W")], size, in_type, out_type)


def _square_gemm_model(nodes, initializers, size: int, in_type: int, out_type: int):
    """The checked one-graph ONNX model ``X`` (``size`` x ``size``) -> ``nodes`` -> ``Y``."""
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "peak_gemm", [helper.make_tensor_value_info("X", in_type, [size, size])],
                              [helper.make_tensor_value_info("Y", out_type, [size, size])], initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model


def ort_gemm(backend: str, size: int, threads: Optional[int] = None, dtype: str = "float32",
             provider_options: Optional[list] = None) -> Tuple[Callable[[], None], str]:
    """The GEMM model in the backend's provider, built by the one ORT session factory; input
    pre-staged and output bound on the device (IOBinding), synced.

    Parameters:
        backend: ``ort-cpu``, ``ort-cuda`` or ``ort-trt``.
        size: the side of the square matrices.
        threads: intra-op threads (CPU).
        dtype: ``float32``, ``float16`` or ``int8``.
        provider_options: the providers list the model's own session uses (None = the backend's default).
    """
    import onnxruntime as ort

    from vggbench.runtimes.backends import BACKENDS
    from vggbench.runtimes.ort_session import make_session

    session = make_session(matmul_onnx_model(size, dtype).SerializeToString(), backend=backend,
                           threads=threads, providers=provider_options)
    want = BACKENDS[backend].provider
    got = session.get_providers()[0]
    if got != want:
        raise VggbenchError(f"peak GEMM: onnxruntime fell back to {got} instead of {want}")
    device_type = "cpu" if backend == "ort-cpu" else "cuda"
    rng = np.random.RandomState(1)
    x = (rng.randint(0, 128, (size, size)).astype(np.uint8) if dtype == "int8"
         else rng.uniform(-1, 1, (size, size)).astype(dtype))
    staged = ort.OrtValue.ortvalue_from_numpy(x, device_type, 0)
    binding = session.io_binding()
    binding.bind_ortvalue_input("X", staged)
    binding.bind_output("Y", device_type, 0)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    run._keepalive = (session, staged, binding)  # type: ignore[attr-defined]
    return run, f"onnxruntime {'MatMulInteger u8s8' if dtype == 'int8' else 'MatMul ' + dtype} {size}x{size} on {got}"


def openvino_gemm_onnx_model(size: int, dtype: str = "float32", seed: int = 0):
    """A one-node ``Y = X @ W^T`` ONNX model (``Gemm``, ``W`` stored transposed as OpenVINO's fully
    connected layer wants it) for an OpenVINO peak; ``int8`` wraps it in QuantizeLinear /
    DequantizeLinear (uint8 activations, int8 weights), the pattern OpenVINO runs as an int8 GEMM,
    as it does the run dir's QDQ model. ``float32`` and ``bfloat16`` are the same float32 model:
    the compile hint picks the math.

    Parameters:
        size: the side of the square matrices.
        dtype: ``float32``, ``bfloat16`` or ``int8``.
        seed: seed of the weights.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(seed)
    if dtype == "int8":
        weight = numpy_helper.from_array(rng.randint(-64, 64, (size, size)).astype(np.int8), "Wq")
        scales = [numpy_helper.from_array(np.array(value, dtype), name) for value, dtype, name in
                  ((1 / 128, np.float32, "xs"), (128, np.uint8, "xz"), (1 / 64, np.float32, "ws"), (0, np.int8, "wz"))]
        nodes = [helper.make_node("QuantizeLinear", ["X", "xs", "xz"], ["Xq"]),
                 helper.make_node("DequantizeLinear", ["Xq", "xs", "xz"], ["Xd"]),
                 helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["W"]),
                 helper.make_node("Gemm", ["Xd", "W"], ["Y"], transB=1)]
        initializers = [weight] + scales
    elif dtype in ("float32", "bfloat16"):
        nodes = [helper.make_node("Gemm", ["X", "W"], ["Y"], transB=1)]
        initializers = [numpy_helper.from_array(rng.uniform(-1, 1, (size, size)).astype(np.float32), "W")]
    else:
        raise VggbenchError(f"no OpenVINO peak GEMM for {dtype}; choose from float32, bfloat16, int8")
    return _square_gemm_model(nodes, initializers, size, TensorProto.FLOAT, TensorProto.FLOAT)


def openvino_gemm(size: int, threads: Optional[int] = None, dtype: str = "float32") -> Tuple[Callable[[], None], str]:
    """The GEMM model compiled by OpenVINO for the CPU (the one compile helper, precision hint
    explicit), input bound once, synced; refused when its fully connected layer does not execute
    in the precision the peak is named after (e.g. bf16 on a CPU without bf16 units).

    Parameters:
        size: the side of the square matrices.
        threads: inference threads (None: OpenVINO's choice).
        dtype: ``float32``, ``bfloat16`` (float32 model, bf16 hint) or ``int8`` (QDQ model).
    """
    import io

    import openvino as ov

    from vggbench.runtimes.openvino_runtime import compile_model, executed_layers

    hint, wanted = OPENVINO_GEMM_PRECISIONS[dtype]
    core = ov.Core()
    model = core.read_model(io.BytesIO(openvino_gemm_onnx_model(size, dtype).SerializeToString()))
    compiled = compile_model(model, hint, threads, core)
    layers = executed_layers(compiled)
    if set(layers["layer_precisions"]) != {wanted}:
        raise VggbenchError(f"peak GEMM: OpenVINO ran the {dtype} GEMM in {layers['layer_precisions']}, "
                            f"not {wanted}; no {dtype} peak on this CPU")
    x = np.ascontiguousarray(np.random.RandomState(1).uniform(0, 1, (size, size)).astype(np.float32))
    request = compiled.create_infer_request()
    request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))

    def run() -> None:
        request.infer()

    run._keepalive = (compiled, request, x)  # type: ignore[attr-defined]
    return run, f"openvino {'/'.join(layers['layer_kernels'])} ({wanted}) {size}x{size} on CPU"


def measure_peak(make_gemm: Callable[[int], Tuple[Callable[[], None], str]], sizes: Sequence[int],
                 warmup: int = 1, iters: int = 3) -> Dict[str, Any]:
    """Attainable GFLOP/s: the fastest call of each GEMM size, the best size.

    Attainable = the fastest call: on a shared machine, slower calls measure the neighbours, and a
    peak that is too low would flatter every row's % of peak.

    Parameters:
        make_gemm: ``size -> (synced fn, label)`` (e.g. ``lambda n: ort_gemm("ort-cpu", n)``).
        sizes: square sides to try.
        warmup, iters: calls per size (untimed, timed).

    Returns ``peak_gflops_per_s``, ``peak_kernel`` (the winning shape) and ``peak_candidates``
    (each size's GFLOP/s).
    """
    candidates = []
    for size in sizes:
        fn, label = make_gemm(size)
        stats = time_callable(fn, batch_size=1, warmup=warmup, iters=iters)
        candidates.append({"size": size, "kernel": label,
                           "gflops_per_s": gemm_flops(size, size, size) / (stats["latency_min_ms"] * 1e6)})
        del fn
    best = max(candidates, key=lambda c: c["gflops_per_s"])
    return {"peak_gflops_per_s": best["gflops_per_s"], "peak_kernel": best["kernel"],
            "peak_candidates": candidates}
