"""Deployment variants of a run dir's ``model.onnx``, each measured against it and gated on accuracy.

Three variants, written next to ``model.onnx`` (file names: :data:`artifacts.ONNX_VARIANT_FILES`):

- ``opt``  (``model.opt.onnx``): ONNX Runtime's offline-optimized graph (``ORT_ENABLE_ALL`` on the
  CPU provider). It holds CPU-only fused ops and the NCHWc layout blocked for the building CPU's
  vector width, so it is for ``ort-cpu`` on a CPU like the one that built it.
- ``int8`` (``model.int8.onnx``): static QDQ quantization with ``onnxruntime.quantization``, weights
  int8 per output channel (7-bit range, see :data:`INT8_REDUCE_RANGE`), activations uint8, ranges
  calibrated on **training** images only.
- ``fp16`` (``model.fp16.onnx``): float16 weights and compute with float32 input/output (Casts at
  the edges), for GPUs (``ort-cuda``/``ort-trt``). The x86 CPU provider lacks float16 kernels for
  most ops and casts around them: fine for measuring its accuracy here, meaningless for timing it.

Each variant file is built under a temporary name, checked, run on the test set (test accuracy,
top-1 agreement and max |logit difference| against ``model.onnx`` on the same images), and only
then renamed into place and recorded in the manifest (``files`` + ``variants[precision]``). A
variant whose accuracy drops by more than ``max_accuracy_drop_points`` is kept but flagged, in the
manifest and in every table, and a warning is printed.

The test split is read in :func:`optimize_run_dir` only; calibration data comes from
:func:`calibration_batches`, which reads the training split and nothing else.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from vggbench import artifacts, data
from vggbench.artifacts.layout import ONNX_VARIANT_FILES
from vggbench.artifacts.reader import refuse_external_data
from vggbench.errors import VggbenchError, summarize_error
from vggbench.export.onnx import make_portable_file
from vggbench.messages import logger, say
from vggbench.metrics import accuracy_from_logits, compare_logits, predict_in_batches
from vggbench.platform.environment import utc_now
from vggbench.platform.mxnet import import_mxnet, resolve_threads
from vggbench.runtimes.backends import VARIANT_TARGET
from vggbench.runtimes.ort_session import make_session, session_predictor

VARIANTS = ("opt", "int8", "fp16")
FP32_FILE = ONNX_VARIANT_FILES["fp32"]
DEFAULT_CALIB_IMAGES = 512
DEFAULT_MAX_ACCURACY_DROP_POINTS = 1.0
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_CALIB_METHOD = "minmax"
CALIB_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
# uint8 activations with int8 weights (U8S8, QDQ, per channel): MLAS's fast path; the alternatives
# measured no faster (docs/methodology.md).
INT8_ACTIVATION_TYPE = "QUInt8"
INT8_WEIGHT_TYPE = "QInt8"
# Without VNNI, MLAS multiplies u8 x s8 with vpmaddubsw, whose int16 pair sums saturate when both
# operands are large, which costs accuracy with 8-bit weights; 7-bit weights (reduce_range) avoid it
# at no measurable speed cost (docs/methodology.md). VNNI CPUs do not need it, but a model file may
# be run anywhere, so it is on by default.
INT8_REDUCE_RANGE = True


def _tqdm(progress: bool, **kwargs):
    from tqdm import tqdm

    return tqdm(disable=not progress, file=sys.stderr, leave=False, **kwargs)


# --- data: calibration reads the training split only ----------------------------------------------

def calibration_batches(input_size: int, n_images: int = DEFAULT_CALIB_IMAGES, seed: int = 0,
                        data_dir: Optional[str] = None, batch_size: int = CALIB_BATCH_SIZE) -> List[np.ndarray]:
    """Preprocessed calibration batches: a fixed-seed subset of the **training** split, never test.

    ``input_size``: the model's; ``n_images``: how many training images; ``seed``: which ones;
    ``data_dir``: the Fashion-MNIST files; ``batch_size``: images per batch.
    """
    if n_images < 1:
        raise VggbenchError(f"calibration needs at least 1 image, got {n_images}")
    images, _ = data.load_split(data_dir, True, n_images, seed)
    return [data.preprocess(images[start:start + batch_size], input_size)
            for start in range(0, len(images), batch_size)]


def make_calibration_reader(batches: Sequence[np.ndarray], input_name: str, progress: bool = False,
                            desc: str = "calibration"):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``batches`` (rewindable, sliceable)
    that feeds each batch as the model input ``input_name``; with ``progress`` a tqdm bar named ``desc``."""
    CalibrationDataReader = _quantization().CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._start, self._end, self._next = 0, len(batches), 0
            self._bar = _tqdm(progress, total=sum(len(b) for b in batches), unit="img", desc=desc)

        def get_next(self):
            index = self._start + self._next
            if index >= self._end:
                return None
            self._next += 1
            self._bar.update(len(batches[index]))
            return {input_name: batches[index]}

        def rewind(self):
            self._next = 0

        def __len__(self):  # in batches; quantize_static's strided calibration uses it
            return len(batches)

        def set_range(self, start_index: int, end_index: int):
            self._start, self._end, self._next = start_index, min(end_index, len(batches)), 0

        def close(self):
            self._bar.close()

    return _Reader()


def evaluate_onnx(model_path: Path, images: np.ndarray, input_size: int, batch_size: int = EVAL_BATCH_SIZE,
                  threads: Optional[int] = None, progress: bool = False, desc: str = "accuracy") -> np.ndarray:
    """Logits [N, classes] of the ONNX file ``model_path`` on CPU ONNX Runtime over uint8 ``images``
    (preprocessed to ``input_size``, ``batch_size`` at a time, ``threads`` intra-op threads; a tqdm
    bar named ``desc`` with ``progress``)."""
    predict = session_predictor(make_session(model_path, threads=threads))
    with _tqdm(progress, total=len(images), unit="img", desc=desc) as bar:
        return predict_in_batches(predict, images, batch_size, prepare=lambda raw: data.preprocess(raw, input_size),
                                  on_batch=bar.update)


# --- the three builders (each writes dst itself; callers pass a temporary path) ------------------

def write_ort_optimized(src: Path, dst: Path) -> Dict[str, Any]:
    """ORT's offline graph optimization of the ONNX file ``src``: ``ORT_ENABLE_ALL`` on the CPU
    provider, saved to ``dst``. Returns the manifest entry's ``build`` settings."""
    import onnxruntime as ort

    make_session(src, graph_optimization="all", optimized_model_path=dst)
    if not Path(dst).is_file() or Path(dst).stat().st_size == 0:
        raise VggbenchError(f"onnxruntime wrote no optimized model for {src}")
    from vggbench.platform.cpu import cpu_flags, cpu_model

    return {"tool": f"onnxruntime {ort.__version__} SessionOptions.optimized_model_filepath",
            "graph_optimization_level": "ORT_ENABLE_ALL", "provider": "CPUExecutionProvider",
            "built_on": {"cpu": cpu_model(), "cpu_flags": cpu_flags()},
            "note": "holds CPU-provider-only ops (com.microsoft FusedGemm, com.microsoft.nchwc Conv/MaxPool "
                    "blocked for this CPU's vector width): run it on ort-cpu, on a CPU like this one; "
                    "rebuild it on the target machine otherwise"}


def _quantization():
    try:
        import onnxruntime.quantization as quantization
    except ImportError as err:
        # onnxruntime-gpu imports sympy and ml_dtypes here but declares them only under its extras.
        missing = getattr(err, "name", None) or next((name for name in ("sympy", "ml_dtypes") if name in str(err)), None)
        fix = (f"pip install {missing} (every vggbench extra installs it: pip install -e \".[gpu]\" or the one you use)"
               if missing in ("sympy", "ml_dtypes") else "reinstall the extra you use (pip install -e \".[cpu]\")")
        raise VggbenchError(f"onnxruntime.quantization cannot be imported ({summarize_error(err)}); {fix}; "
                            f"ml_dtypes must be <0.6 with numpy<2") from None
    return quantization


def quantize_int8(src: Path, dst: Path, batches: Sequence[np.ndarray], method: str = DEFAULT_CALIB_METHOD,
                  per_channel: bool = True, activation_type: str = INT8_ACTIVATION_TYPE,
                  weight_type: str = INT8_WEIGHT_TYPE, reduce_range: bool = INT8_REDUCE_RANGE,
                  progress: bool = False) -> Dict[str, Any]:
    """Static QDQ quantization of ``src`` into ``dst``, activation ranges from ``batches``.

    Parameters:
        src, dst: the fp32 ONNX file and where the INT8 one goes.
        batches: preprocessed calibration batches (:func:`calibration_batches`).
        method: one of :data:`CALIBRATION_METHODS`.
        per_channel: weight scales per output channel (else per tensor).
        activation_type, weight_type: ``QuantType`` names (``QUInt8``, ``QInt8``).
        reduce_range: 7-bit weights (see :data:`INT8_REDUCE_RANGE`).
        progress: a tqdm bar over the calibration images.

    Returns the manifest entry's ``build`` settings. Calibration runs one batch at a time
    (``CalibStridedMinMax``), so histogram methods never hold every intermediate tensor of every
    calibration image in memory at once.
    """
    if method not in CALIBRATION_METHODS:
        raise VggbenchError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    q = _quantization()
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibrate_method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
                        "percentile": q.CalibrationMethod.Percentile}[method]
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    reader = make_calibration_reader(batches, input_name, progress=progress, desc=f"calibration ({method})")
    extra_options = {"CalibStridedMinMax": 1}
    if method == "percentile":
        extra_options["CalibPercentile"] = 99.999
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantizer logs advice on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="vggbench-quant.") as scratch:
            # ORT's recommended pre-pass: basic graph optimizations (folds BatchNorm into Conv: without
            # it a vgg*_bn INT8 model ran 0.7x fp32 here, with it 1.0x) and ONNX shape inference.
            # Symbolic shape inference needs sympy and adds nothing for fixed-size image models.
            prepared = Path(scratch) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            with contextlib.redirect_stdout(io.StringIO()):  # histogram calibrators print per batch
                q.quantize_static(str(prepared), str(dst), reader, quant_format=q.QuantFormat.QDQ,
                                  per_channel=per_channel, reduce_range=reduce_range,
                                  activation_type=q.QuantType[activation_type],
                                  weight_type=q.QuantType[weight_type],
                                  calibrate_method=calibrate_method, extra_options=extra_options)
    finally:
        logging.getLogger().setLevel(quiet)
        reader.close()
    settings = {"tool": f"onnxruntime {ort.__version__} quantization.quantize_static", "format": "QDQ",
                "activation_type": activation_type, "weight_type": weight_type, "per_channel": per_channel,
                "reduce_range": reduce_range, "pre_process": "quant_pre_process(skip_symbolic_shape=True)"}
    if method == "percentile":
        settings["percentile"] = extra_options["CalibPercentile"]
    return settings


def convert_fp16(src: Path, dst: Path) -> Dict[str, Any]:
    """``src`` converted to float16 weights and compute, float32 input/output (``keep_io_types``),
    checked by onnx.checker, saved to ``dst``. Returns the manifest entry's ``build`` settings."""
    import onnx
    import onnxruntime as ort

    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as err:
        raise VggbenchError(f"onnxruntime.transformers.float16 cannot be imported ({err}); "
                            f"reinstall onnxruntime (the converter ships in its wheel)") from None
    model = onnx.load(str(src))
    _pack_raw(model.graph)  # MXNet's export keeps weights in float_data: the converter's slow path
    model = convert_float_to_float16(model, keep_io_types=True)
    sort_graph(model.graph)  # the converter appends the input Casts after their consumers
    _check_model(model, str(dst))
    onnx.save(model, str(dst))
    return {"tool": f"onnxruntime {ort.__version__} transformers.float16.convert_float_to_float16",
            "keep_io_types": True, "io_type": "float32"}


def build_variant(variant: str, src: Path, dst: Path, calibration: Callable[[], Sequence[np.ndarray]],
                  method: str = DEFAULT_CALIB_METHOD, progress: bool = False) -> Dict[str, Any]:
    """Write the ``variant`` (``opt``, ``int8`` or ``fp16``) of the fp32 ONNX file ``src`` to ``dst``;
    returns its build record. The one place a variant name decides which builder runs
    (``vggbench optimize`` and doctor's tiny model both come here).

    Parameters:
        calibration: returns the int8 calibration batches (called only for ``int8``).
        method, progress: int8 calibration method and progress bar.
    """
    if variant == "opt":
        return write_ort_optimized(src, dst)
    if variant == "fp16":
        return convert_fp16(src, dst)
    if variant == "int8":
        return quantize_int8(src, dst, calibration(), method=method, progress=progress)
    raise VggbenchError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")


def _pack_raw(graph) -> None:
    """Store initializers as raw bytes.

    ``mx.onnx`` writes weights as ``float_data``; ORT's float16 converter then goes through a
    per-value Python loop (75 s for VGG-11 at width ratio 32) and writes ``int32_data`` (a 25%
    larger file). From raw bytes it converts with numpy in well under a second.
    """
    from onnx import numpy_helper

    for index, init in enumerate(graph.initializer):
        if not init.HasField("raw_data"):
            graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))


def sort_graph(graph) -> None:
    """Reorder the ONNX ``graph``'s nodes topologically, in place (stable: keeps the original order
    where it can)."""
    available = {value.name for value in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise VggbenchError(f"graph has a cycle or a missing input near node {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered.extend(ready)
        ready_ids = {id(node) for node in ready}
        pending = [node for node in pending if id(node) not in ready_ids]
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _check_model(model_or_path, name: str, full: bool = True) -> None:
    import onnx

    try:
        onnx.checker.check_model(model_or_path, full_check=full)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        raise VggbenchError(f"{name} fails onnx.checker: {summarize_error(err)}") from None


# --- the run-dir step ------------------------------------------------------------------------------

def optimize_run_dir(run_dir, int8: bool = True, fp16: bool = True, calib_images: int = DEFAULT_CALIB_IMAGES,
                     data_dir: Optional[str] = None,
                     max_accuracy_drop_points: float = DEFAULT_MAX_ACCURACY_DROP_POINTS, seed: int = 0,
                     accuracy_limit: Optional[int] = None, calib_method: str = DEFAULT_CALIB_METHOD,
                     opt: bool = True, threads: Optional[int] = None, progress: bool = True,
                     log: Callable[[str], None] = say) -> Dict[str, Dict[str, Any]]:
    """Write the requested variants next to ``run_dir/model.onnx`` and record them in the manifest.

    Parameters:
        run_dir: a run dir made by train-export; its ``model.onnx`` is checked first.
        opt, int8, fp16: which variants to build.
        calib_images, calib_method: INT8 calibration on that many training images
            (:data:`CALIBRATION_METHODS`).
        data_dir: the Fashion-MNIST files.
        max_accuracy_drop_points: a variant losing more test accuracy than this is flagged.
        seed: which calibration images, and which test images with ``accuracy_limit``.
        accuracy_limit: measure on a fixed-seed subset of the test split instead of all of it
            (for tests); the entry's ``n_test`` says which.
        threads: CPU threads for the accuracy passes (ONNX Runtime) and preprocessing (MXNet, at its
            first import in the process); None: ``$OMP_NUM_THREADS``, else the physical cores.
            Each entry records ``accuracy_threads``.
        progress: show tqdm bars.
        log: where the summary lines go.

    Returns ``manifest["variants"]`` after the update (all variants, including ones from earlier
    runs that were not rebuilt now).
    """
    run_dir = Path(run_dir)
    wanted = [name for name, on in (("opt", opt), ("int8", int8), ("fp16", fp16)) if on]
    if not wanted:
        raise VggbenchError("nothing to do: enable at least one of opt, int8, fp16")
    if calib_images < 1:
        raise VggbenchError(f"--calib-images must be >= 1, got {calib_images}")
    if not max_accuracy_drop_points >= 0:
        raise VggbenchError(f"the accuracy-drop threshold must be >= 0 points, got {max_accuracy_drop_points}")
    if accuracy_limit is not None and accuracy_limit < 1:
        raise VggbenchError(f"accuracy_limit must be >= 1 test images, got {accuracy_limit}")
    if not 0 <= seed < 2 ** 31:
        raise VggbenchError(f"--seed must be in 0..{2 ** 31 - 1}, got {seed}")
    threads = resolve_threads(threads)[0]
    import_mxnet(threads)  # data.preprocess runs on MXNet: set its thread count before its first import
    if calib_method not in CALIBRATION_METHODS:
        raise VggbenchError(f"unknown calibration method {calib_method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
    with artifacts.run_dir_lock(run_dir, "optimize"):  # one writer per run dir: train-export and optimize alike
        return _write_variants(run_dir, wanted, calib_images, data_dir, max_accuracy_drop_points, seed,
                               accuracy_limit, calib_method, threads, progress, log)


def _write_variants(run_dir: Path, wanted: List[str], calib_images: int, data_dir: Optional[str],
                    max_accuracy_drop_points: float, seed: int, accuracy_limit: Optional[int], calib_method: str,
                    threads: int, progress: bool, log: Callable[[str], None]) -> Dict[str, Dict[str, Any]]:
    """:func:`optimize_run_dir`'s work, under the run dir's lock: build, measure, record each variant."""
    manifest = artifacts.read_manifest(run_dir)
    fp32_path = artifacts.verify_file(run_dir, manifest, FP32_FILE)
    import onnx

    refuse_external_data(onnx.load(str(fp32_path), load_external_data=False), fp32_path)
    source = {"file": FP32_FILE, "sha256": manifest["files"][FP32_FILE]}
    input_size = int(manifest["input_size"])

    images, labels = data.load_split(data_dir, False, accuracy_limit, seed)
    started = time.time()
    reference = evaluate_onnx(fp32_path, images, input_size, threads=threads, progress=progress,
                              desc="accuracy fp32")
    log(f"fp32 (ORT CPU) test accuracy {100 * accuracy_from_logits(reference, labels):.2f}% "
        f"on {len(labels)} test images ({time.time() - started:.0f}s)")

    batches = None
    for precision in wanted:
        final = run_dir / ONNX_VARIANT_FILES[precision]
        started = time.time()
        with artifacts.atomic_path(final) as temp:
            if precision == "int8" and batches is None:
                batches = calibration_batches(input_size, calib_images, seed, data_dir)
            built = {"build": build_variant(precision, fp32_path, temp, lambda: batches, calib_method, progress)}
            if precision == "opt":
                _check_model(str(temp), final.name, full=False)  # com.microsoft ops: no full check
            elif precision == "int8":
                settings = built["build"]
                _check_model(str(temp), final.name)
                built["calibration"] = {"n_images": int(sum(len(b) for b in batches)), "split": "train",
                                        "seed": seed, "method": calib_method, "per_channel": settings["per_channel"],
                                        "batch_size": CALIB_BATCH_SIZE}
            built["onnx"] = make_portable_file(temp)  # opset 15 / IR 8, unused domains dropped, batch dim
            build_s = time.time() - started
            built["accuracy_threads"] = threads
            logits = evaluate_onnx(temp, images, input_size, threads=threads, progress=progress,
                                   desc=f"accuracy {precision}")
            entry = _variant_entry(precision, final.name, temp, compare_logits(reference, logits, labels=labels),
                                   max_accuracy_drop_points, source, build_s, built)
        manifest = artifacts.read_manifest(run_dir)
        if manifest["files"].get(FP32_FILE) != source["sha256"]:
            raise VggbenchError(f"{run_dir}/{FP32_FILE} changed while its variants were built; re-run optimize")
        if artifacts.record_file(manifest, run_dir, final.name) != entry["sha256"]:
            raise VggbenchError(f"{final}: changed while it was being recorded; re-run optimize")
        manifest.setdefault("variants", {})[precision] = entry
        artifacts.write_manifest(run_dir, manifest)
        log(_summary_line(precision, entry))
        if entry["flagged"]:
            logger().warning(f"warning: {precision} variant {final.name} loses {entry['accuracy_drop_points']:.2f} "
                             f"points of test accuracy (> {max_accuracy_drop_points:g}); it is flagged in the "
                             f"manifest and tables")
    return artifacts.read_manifest(run_dir)["variants"]


def _variant_entry(precision: str, name: str, path: Path, measured: Dict[str, Any], max_drop: float,
                   source: Dict[str, str], build_s: float, built: Dict[str, Any]) -> Dict[str, Any]:
    import onnxruntime as ort

    from vggbench.platform.cpu import cpu_flags, cpu_model

    drop = measured["accuracy_drop_points"]  # from counts: a drop of exactly max_drop is not flagged
    entry = {"file": name, "sha256": artifacts.sha256_file(path), "size_bytes": os.path.getsize(path),
             "for": VARIANT_TARGET[precision], "test_accuracy": measured["candidate_accuracy"],
             "n_test": measured["n"], "fp32_test_accuracy": measured["reference_accuracy"],
             "accuracy_drop_points": drop, "max_accuracy_drop_points": float(max_drop),
             "flagged": bool(drop > max_drop), "top1_agreement": measured["top1_agreement"],
             "max_abs_diff": measured["max_abs_diff"],
             "measured_with": f"onnxruntime {ort.__version__} CPUExecutionProvider",
             # INT8 results depend on the CPU's integer kernels (VNNI or not): say which CPU it was
             "measured_on": {"cpu": cpu_model(), "cpu_flags": cpu_flags()},
             "source": source, "build_seconds": round(build_s, 1), "created": utc_now()}
    entry.update(built)
    return entry


def _summary_line(precision: str, entry: Dict[str, Any]) -> str:
    flag = "  FLAGGED" if entry["flagged"] else ""
    return (f"{precision:>4}: {entry['file']} {entry['size_bytes'] / 1e6:.1f} MB, test accuracy "
            f"{100 * entry['test_accuracy']:.2f}% ({0.0 - entry['accuracy_drop_points']:+.2f} points vs fp32), "
            f"top-1 agreement {100 * entry['top1_agreement']:.2f}%, max |logit diff| {entry['max_abs_diff']:.3g}{flag}")


def variants_table(variants: Dict[str, Dict[str, Any]]) -> str:
    """A plain table of ``variants`` (``manifest["variants"]``): the optimize command's closing summary."""
    from tabulate import tabulate

    rows = []
    for precision in [p for p in VARIANTS if p in variants] + [p for p in variants if p not in VARIANTS]:
        entry = variants[precision]
        rows.append([precision, entry["file"], entry.get("for", ""), f"{entry['size_bytes'] / 1e6:.1f}",
                     f"{100 * entry['test_accuracy']:.2f}", f"{0.0 - entry['accuracy_drop_points']:+.2f}",
                     f"{100 * entry['top1_agreement']:.2f}", f"{entry['max_abs_diff']:.3g}", entry["n_test"],
                     "FLAGGED" if entry["flagged"] else "ok"])
    return tabulate(rows, headers=["precision", "file", "for", "size_MB", "test_acc_%", "vs_fp32_points",
                                   "top1_agree_%", "max_abs_diff", "n_test", "gate"], disable_numparse=True)
