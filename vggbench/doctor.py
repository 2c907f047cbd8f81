"""``vggbench doctor``: which backend x precision really runs on this machine, and why not.

:func:`doctor` prints one table of every backend x precision of :data:`vggbench.runtimes.backends.BACKENDS`:
``available`` (after a tiny real model ran on it for about a second and matched numpy) or the exact
reason, plus the versions involved. The smoke runs happen in child processes
(``python -m vggbench.doctor SPEC OUT``), grouped so that a crashing import (a CUDA build of mxnet
without its libraries, a broken GPU driver) becomes ``unavailable`` rows instead of killing doctor,
and so that TF32 rows run in a process without ``NVIDIA_TF32_OVERRIDE=0`` and every other GPU row in
one with it (:func:`vggbench.runtimes.providers.tf32_environment`).

:func:`gpu_smoke` is the first command a GPU owner runs (``vggbench doctor --gpu-smoke OUT_DIR``):
doctor, then a few training steps (on the GPU where MXNet can run, else the CPU), export, and a
short sweep of every backend at 96 and 224, batch 1 and 64, written as results JSON and Markdown.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from vggbench import processes
from vggbench.artifacts.layout import ONNX_VARIANT_FILES
from vggbench.errors import EXIT_OK, EXIT_USER_ERROR, VggbenchError, summarize_error
from vggbench.messages import say
from vggbench.platform import driver, gpu, libraries
from vggbench.platform.devices import Device
from vggbench.runtimes import backend_device, check_backend_name, probe, providers
from vggbench.runtimes.backends import BACKENDS, PRECISIONS

SCHEMA = "vggbench.doctor/1"
AVAILABLE, UNAVAILABLE, ERROR = "available", "unavailable", "error"
SMOKE_SECONDS = 1.0
SMOKE_TIMEOUT_S = 600.0
# Largest probe.relative_error accepted per precision: fp32 paths must agree with float64 numpy to
# float32 rounding; TF32/fp16 keep ~10 mantissa bits, bf16 7; int8 is a quantized model.
TOLERANCE = {"fp32": 1e-4, "opt": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "int8": 5e-2, "bf16": 3e-2}

Log = Callable[[str], None]


def planned_rows() -> List[Tuple[str, str]]:
    """Every (backend, precision) doctor reports, in the table's order."""
    return [(name, precision) for name, spec in BACKENDS.items() for precision in spec.precisions]


def check_require(require: Iterable[str]) -> List[Tuple[str, Optional[str]]]:
    """``--require`` items (``ort-cuda`` or ``ort-cuda:fp16``) as (backend, precision or None).

    Raises a one-line VggbenchError for a backend or precision doctor does not know.
    """
    items = []
    for item in require:
        backend, _, precision = str(item).partition(":")
        try:
            check_backend_name(backend)
        except VggbenchError as err:
            raise VggbenchError(f"--require {item}: {err}") from None
        if precision and precision not in BACKENDS[backend].precisions:
            raise VggbenchError(f"--require {item}: {backend} runs {', '.join(BACKENDS[backend].precisions)}, "
                                f"not {precision!r}")
        items.append((backend, precision or None))
    return items


def required_missing(rows: Sequence[Dict[str, Any]], require: Sequence[Tuple[str, Optional[str]]]) -> List[str]:
    """The ``--require`` items with no available row (a backend needs one available precision)."""
    missing = []
    for backend, precision in require:
        ok = [r for r in rows if r["backend"] == backend and (precision is None or r["precision"] == precision)
              and r["status"] == AVAILABLE]
        if not ok:
            missing.append(backend + (f":{precision}" if precision else ""))
    return missing


def _row(backend: str, precision: str, device: str, status: str, reason: Optional[str] = None,
         versions: str = "", smoke: Optional[Dict[str, Any]] = None, error: Optional[float] = None) -> Dict[str, Any]:
    smoke = smoke or {}
    return {"backend": backend, "precision": precision, "device": device, "status": status, "reason": reason,
            "versions": versions, "smoke_calls": smoke.get("calls"), "smoke_seconds": smoke.get("seconds"),
            "first_call_s": smoke.get("first_call_s"), "max_relative_error": error}


def timed_smoke(run: Callable[[], Any], seconds: float = SMOKE_SECONDS) -> Dict[str, Any]:
    """Call ``run`` (which must return only when its work is done) for about ``seconds`` after a
    first call. Returns ``{"calls", "seconds", "first_call_s"}``: proof that a backend keeps
    working, not a benchmark (``vggbench bench`` measures)."""
    started = time.perf_counter()
    run()
    first = time.perf_counter() - started
    calls = 1
    while time.perf_counter() - started < seconds:
        run()
        calls += 1
    return {"calls": calls, "seconds": round(time.perf_counter() - started, 3), "first_call_s": round(first, 4)}


def _checked(backend: str, precision: str, device: str, versions: str, run: Callable[[], np.ndarray],
             expected: np.ndarray, seconds: float) -> Dict[str, Any]:
    """One smoke row: first result against numpy, then :func:`timed_smoke`."""
    error = probe.relative_error(run(), expected)
    if not error <= TOLERANCE[precision]:
        return _row(backend, precision, device, ERROR, f"ran but computed a wrong result: relative error "
                    f"{error:.3g} > {TOLERANCE[precision]:g} against numpy", versions, error=error)
    return _row(backend, precision, device, AVAILABLE, None, versions, timed_smoke(run, seconds), error)


# --- smoke runs, inside the child process ---------------------------------------------------------------

def _gpu_facts(device_id: int) -> Tuple[Optional[str], str]:
    visible = gpu.visible_inventory()
    if device_id < len(visible):
        return visible[device_id].compute_capability, visible[device_id].name
    return None, str(Device("gpu", device_id))


def _smoke_mxnet(rows: Sequence[Tuple[str, str]], device_id: int, seconds: float) -> List[Dict[str, Any]]:
    from vggbench.platform.mxnet import import_mxnet, mxnet_cuda_facts

    target = backend_device(rows[0][0], device_id)
    device = str(target)
    if target.is_gpu:  # no driver is the first cause, whichever mxnet build is installed
        no_driver = driver.no_driver_reason(driver.driver_facts(), rows[0][0])
        if no_driver:
            return [_row(b, p, device, UNAVAILABLE, no_driver) for b, p in rows]
    try:
        mx = import_mxnet()
    except VggbenchError as err:
        return [_row(b, p, device, UNAVAILABLE, str(err)) for b, p in rows]
    has_cuda, count, count_error = mxnet_cuda_facts()
    dist = ", ".join(f"{name} {version}" for name, version in libraries.mxnet_distributions().items()) or "mxnet"
    versions = f"{dist} ({'CUDA' if has_cuda else 'CPU'} build)"
    reason = None
    if target.is_gpu:
        reason = gpu.mxnet_device_unavailable_reason(device_id, count, gpu.visible_inventory(), has_cuda, count_error)
    if reason:
        return [_row(b, p, device, UNAVAILABLE, reason, versions) for b, p in rows]
    weights = probe.tiny_weights()
    expected = probe.tiny_reference(weights["x"], weights["conv"], weights["dense"])
    ctx = mx.gpu(device_id) if target.is_gpu else mx.cpu()
    out = []
    for backend, precision in rows:
        try:
            net = mx.gluon.nn.HybridSequential()
            net.add(mx.gluon.nn.Conv2D(probe.TINY_CHANNELS, 3, padding=1, in_channels=probe.TINY_INPUT_SHAPE[1],
                                       use_bias=False, activation="relu"),
                    mx.gluon.nn.Dense(probe.TINY_CLASSES, in_units=weights["dense"].shape[0], use_bias=False))
            net.initialize(ctx=ctx)
            net[0].weight.set_data(mx.nd.array(weights["conv"], ctx=ctx))
            net[1].weight.set_data(mx.nd.array(weights["dense"].T, ctx=ctx))
            if BACKENDS[backend].hybrid:
                net.hybridize(static_alloc=True, static_shape=True)
            if precision == "bf16":
                from vggbench.runtimes.mxnet_runtime import to_bfloat16, unavailable_reason

                why_not = unavailable_reason(precision, device, backend)
                if why_not:
                    out.append(_row(backend, precision, device, UNAVAILABLE, why_not, versions))
                    continue
                net(mx.nd.array(weights["x"], ctx=ctx)).wait_to_read()  # AMP converts a graph that has run
                net = to_bfloat16(net, ctx)[0]
            x = mx.nd.array(weights["x"], ctx=ctx)
            out.append(_checked(backend, precision, device, versions, lambda: net(x).asnumpy(), expected, seconds))
        except Exception as err:  # noqa: BLE001 - e.g. "no kernel image is available"
            out.append(_row(backend, precision, device, UNAVAILABLE, f"MXNet failed on {ctx}: {summarize_error(err)}",
                            versions))
    return out


@contextlib.contextmanager
def _tiny_onnx():
    """The tiny model's weights, its float64 numpy answer, a scratch folder and the model saved
    there as ONNX (``tiny.onnx``): what the ONNX Runtime and OpenVINO smoke runs load."""
    import onnx

    weights = probe.tiny_weights()
    expected = probe.tiny_reference(weights["x"], weights["conv"], weights["dense"])
    with tempfile.TemporaryDirectory(prefix="vggbench-doctor.") as scratch_name:
        scratch = Path(scratch_name)
        fp32_path = scratch / "tiny.onnx"
        onnx.save(probe.tiny_onnx_model(weights), str(fp32_path))
        yield weights, expected, scratch, fp32_path


def _ort_variant(precision: str, fp32_path: Path, scratch: Path, weights: Dict[str, np.ndarray]) -> Path:
    """The tiny model as the file ``precision`` runs (:data:`~vggbench.runtimes.backends.PRECISIONS`), built
    by the project's own variant builders."""
    from vggbench.export import variants

    variant = PRECISIONS[precision][0]
    if variant == "fp32":
        return fp32_path
    path = scratch / ONNX_VARIANT_FILES[variant]

    def calibration() -> List[np.ndarray]:
        rng = np.random.RandomState(1)
        return [weights["x"]] + [rng.uniform(-1, 1, probe.TINY_INPUT_SHAPE).astype(np.float32) for _ in range(7)]

    if not path.is_file():
        variants.build_variant(variant, fp32_path, path, calibration)
    return path


def _ort_providers(backend: str, precision: str, device_id: int, scratch: Path) -> List[Any]:
    from vggbench.runtimes.ort_session import provider_options

    n, c, h, w = probe.TINY_INPUT_SHAPE
    tensorrt = {"cache_dir": scratch / "cache", "input_name": "x", "input_shape_chw": (c, h, w), "batch_sizes": [n]}
    return provider_options(backend, device_id, precision=precision, tensorrt=tensorrt)


def _smoke_ort(rows: Sequence[Tuple[str, str]], device_id: int, seconds: float) -> List[Dict[str, Any]]:

    from vggbench.runtimes.ort_session import make_session, session_predictor

    build = libraries.ort_build()
    if build.get("version") is None:
        return [_row(b, p, "cpu", UNAVAILABLE, build["error"]) for b, p in rows]
    versions = (f"onnxruntime {build['version']} ({build.get('package') or 'onnxruntime'}"
                + (f", CUDA {build['cuda_version']})" if build["cuda_version"] else ", CPU build)"))
    backend_reasons: Dict[str, Optional[str]] = {}
    capability, name = _gpu_facts(device_id)
    out = []
    with _tiny_onnx() as (weights, expected, scratch, fp32_path):
        for backend, precision in rows:
            target = backend_device(backend, device_id)
            device = str(target)
            if backend not in backend_reasons:
                backend_reasons[backend] = probe.probe_ort_backend(backend, device_id)
            reason = backend_reasons[backend]
            if not reason and target.is_gpu:
                reason = providers.gpu_precision_unavailable_reason(precision, capability, name)
            if not reason and precision == "tf32" and os.environ.get(providers.TF32_OVERRIDE_VAR) == "0":
                reason = f"{providers.TF32_OVERRIDE_VAR}=0 is set: TF32 is off in this process"
            if reason:
                out.append(_row(backend, precision, device, UNAVAILABLE, reason, versions))
                continue
            try:
                path = _ort_variant(precision, fp32_path, scratch, weights)
                session = make_session(path, backend, providers=_ort_providers(backend, precision, device_id, scratch))
                predict = session_predictor(session)
                out.append(_checked(backend, precision, device, versions, lambda: predict(weights["x"]), expected,
                                    seconds))
            except VggbenchError as err:  # BackendUnavailable: fell back to another provider
                out.append(_row(backend, precision, device, UNAVAILABLE, str(err), versions))
            except Exception as err:  # noqa: BLE001 - any failure is this row's reason
                out.append(_row(backend, precision, device, ERROR, summarize_error(err), versions))
    return out


def _smoke_openvino(rows: Sequence[Tuple[str, str]], device_id: int, seconds: float) -> List[Dict[str, Any]]:
    """OpenVINO's rows: the tiny model as each precision's file, compiled with the precision hint the
    bench uses, refused unless the compiled model reports that precision."""

    from vggbench.runtimes import openvino_runtime as ov_runtime

    version = ov_runtime.openvino_version()
    if version is None:
        return [_row(b, p, "cpu", UNAVAILABLE, ov_runtime.unavailable_reason(p)) for b, p in rows]
    versions = f"openvino {version}"
    out = []
    with _tiny_onnx() as (weights, expected, scratch, fp32_path):
        for backend, precision in rows:
            reason = ov_runtime.unavailable_reason(precision)
            if reason:
                out.append(_row(backend, precision, "cpu", UNAVAILABLE, reason, versions))
                continue
            try:
                hint = ov_runtime.INFERENCE_PRECISION_HINTS[precision]
                compiled = ov_runtime.compile_model(_ort_variant(precision, fp32_path, scratch, weights), hint)
                reported = ov_runtime.compiled_precision(compiled)
                if reported != hint:
                    out.append(_row(backend, precision, "cpu", UNAVAILABLE, f"OpenVINO compiled it in {reported}, "
                                    f"not {hint}", versions))
                    continue
                request = compiled.create_infer_request()

                def run(request=request):
                    request.infer({0: weights["x"]})
                    return request.get_output_tensor(0).data.copy()

                out.append(_checked(backend, precision, "cpu", versions, run, expected, seconds))
            except Exception as err:  # noqa: BLE001 - any failure is this row's reason
                out.append(_row(backend, precision, "cpu", ERROR, summarize_error(err), versions))
    return out


SMOKES = {"mxnet": _smoke_mxnet, "ort": _smoke_ort, "openvino": _smoke_openvino}


def smoke_main(spec_path: str, out_path: str) -> int:
    """Child process entry (``python -m vggbench.doctor SPEC OUT``): run the spec's rows, write rows JSON."""
    spec = json.loads(Path(spec_path).read_text())
    rows = [tuple(row) for row in spec["rows"]]
    smoke = SMOKES[spec["family"]]
    result = smoke(rows, int(spec.get("device_id", 0)), float(spec.get("seconds", SMOKE_SECONDS)))
    Path(out_path).write_text(json.dumps(result))
    return 0


# --- the parent: groups of rows, one child each ------------------------------------------------------------

def smoke_groups(rows: Sequence[Tuple[str, str]]) -> List[Dict[str, Any]]:
    """The child processes doctor starts: MXNet CPU, MXNet GPU, ONNX Runtime, ONNX Runtime TF32.

    Each is ``{"family", "rows", "env"}``; ``env`` holds the variables to set (value) or remove
    (None) in that child: GPU rows other than tf32 run with ``NVIDIA_TF32_OVERRIDE=0``.
    """
    groups: Dict[Tuple[str, str, bool], List[Tuple[str, str]]] = {}
    for backend, precision in rows:
        spec = BACKENDS[backend]
        tf32 = providers.tf32_for_precision(precision)
        groups.setdefault((spec.family, spec.device_kind, tf32), []).append((backend, precision))
    out = []
    for (family, kind, tf32), members in groups.items():
        if kind == "cpu" and family in ("mxnet", "openvino"):
            env: Dict[str, Optional[str]] = {}
        elif tf32:
            env = {providers.TF32_OVERRIDE_VAR: None}
        else:
            env = dict(providers.tf32_environment("fp32"))
        out.append({"family": family, "device_kind": kind, "rows": list(members), "env": env})
    merged: List[Dict[str, Any]] = []
    for group in out:  # ONNX Runtime's CPU and non-TF32 GPU rows share one child
        same = [g for g in merged if g["family"] == group["family"] == "ort" and g["env"] == group["env"]]
        if same:
            same[0]["rows"] += group["rows"]
        else:
            merged.append(group)
    return merged


def _run_child(group: Dict[str, Any], device_id: int, seconds: float, timeout_s: float) -> List[Dict[str, Any]]:
    def device(backend: str) -> str:
        return str(backend_device(backend, device_id))

    with tempfile.TemporaryDirectory(prefix="vggbench-doctor.") as scratch:
        spec_path, out_path = Path(scratch) / "spec.json", Path(scratch) / "rows.json"
        spec_path.write_text(json.dumps({"family": group["family"], "rows": group["rows"], "device_id": device_id,
                                         "seconds": seconds}))
        env = driver.use_pci_bus_order(dict(os.environ))
        for name, value in group["env"].items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        try:
            proc = processes.run_bounded([sys.executable, "-m", "vggbench.doctor", str(spec_path), str(out_path)],
                                         env, timeout_s, who="smoke process")
        except processes.ChildTimedOut as err:
            return [_row(b, p, device(b), ERROR, str(err)) for b, p in group["rows"]]
        if proc.returncode != 0 or not out_path.is_file():
            why = processes.describe_exit(proc.returncode, proc.stderr.decode(errors="replace"), "smoke process")
            return [_row(b, p, device(b), UNAVAILABLE, why) for b, p in group["rows"]]
        return json.loads(out_path.read_text())


def environment_notes(distributions: Optional[Dict[str, str]] = None,
                      clashes: Optional[Dict[str, List[str]]] = None) -> List[str]:
    """Install problems doctor points out: two builds of one module installed at once, and files
    that two installed distributions both own.

    Parameters:
        distributions: ``{name: version}`` installed (default: the mxnet and onnxruntime ones here).
        clashes: ``{path: [distributions]}`` (default: read from the installed RECORDs).
    """
    if distributions is None:
        distributions = libraries.installed_distributions(["mxnet", "onnxruntime"])
    notes = []
    for module, names in (("mxnet", [n for n in distributions if n == "mxnet" or n.startswith("mxnet-cu")]),
                          ("onnxruntime", [n for n in distributions if n in ("onnxruntime", "onnxruntime-gpu")])):
        if len(names) > 1:
            notes.append(f"{' and '.join(names)} are both installed and write the same {module}/ folder (the last "
                         f"one installed wins, partly): pip uninstall {' '.join(names)}, then install one extra")
    notes.extend(file_clash_notes(libraries.installed_file_clashes() if clashes is None else clashes))
    return notes


def file_clash_notes(clashes: Dict[str, List[str]], examples: int = 3) -> List[str]:
    """One line per set of distributions that install the same files
    (:func:`vggbench.platform.libraries.installed_file_clashes`), with a few of the paths."""
    by_owners: Dict[Tuple[str, ...], List[str]] = {}
    for path, owners in clashes.items():
        by_owners.setdefault(tuple(owners), []).append(path)
    notes = []
    for owners, paths in sorted(by_owners.items()):
        shown = ", ".join(paths[:examples]) + (f" and {len(paths) - examples} more" if len(paths) > examples else "")
        notes.append(f"{' and '.join(owners)} install the same {len(paths)} file(s) ({shown}): the last one "
                     f"installed overwrote the other's, and uninstalling either deletes them; keep them in separate "
                     f"venvs (docs/gpus.md, two venvs) or pip uninstall {' '.join(owners)} and install one extra")
    return notes


def _smoke_text(row: Dict[str, Any]) -> Optional[str]:
    if row["status"] != AVAILABLE:
        return None
    return (f"{row['smoke_calls']} calls in {row['smoke_seconds']:.2f} s, max rel. error "
            f"{row['max_relative_error']:.1e}")


def doctor_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The doctor rows as a GitHub-Markdown table; each reason once, as a numbered footnote under it
    (so the table fits a terminal; ``--json`` keeps every reason on its row)."""
    from vggbench.bench.report import Footnotes, format_table

    notes = Footnotes()

    def status(row: Dict[str, Any]) -> str:
        if row["status"] == AVAILABLE:
            return AVAILABLE
        return notes.mark(row["status"], str(row["reason"]))

    table = format_table(rows, [("backend", "backend"), ("precision", "precision"), ("device", "device"),
                                ("status", status), ("smoke run", _smoke_text), ("versions", "versions")])
    return "\n".join([table, ""] + notes.lines()) if notes.lines() else table


def _machine_lines(versions: Dict[str, Any]) -> List[str]:
    gpus = versions["gpus"]
    if gpus:
        described = "; ".join(f"{Device('gpu', i)} {g['name']} (compute capability {g['compute_capability'] or '?'}, "
                              f"{g['memory_total_mib'] or '?'} MiB)" for i, g in enumerate(gpus))
        lines = [f"GPUs: {described}; driver {versions['driver'] or '?'} (CUDA {versions['cuda_driver_api'] or '?'})"]
    else:
        lines = ["GPUs: none found (no nvidia-smi on PATH, or it lists no GPU)"]
    ort = versions["onnxruntime"]
    mxnet = ", ".join(f"{n} {v}" for n, v in versions["mxnet"].items()) or "not installed"
    lines.append(f"installed: mxnet: {mxnet}; onnxruntime: {ort.get('version')} ({ort.get('package')}"
                 + (f", built with CUDA {ort['cuda_version']}" if ort.get("cuda_version") else ", CPU build") + ")"
                 + (f"; nvidia wheels: {len(versions['nvidia_wheels'])}" if versions["nvidia_wheels"] else ""))
    return lines


def doctor(require: Sequence[str] = (), json_path: Optional[str] = None, out: Optional[TextIO] = None,
           device_id: int = 0, smoke_seconds: float = SMOKE_SECONDS,
           timeout_s: float = SMOKE_TIMEOUT_S) -> Tuple[List[Dict[str, Any]], int]:
    """Check every backend x precision here; print the table; return ``(rows, exit_code)``.

    Parameters:
        require: backends (``ort-cuda``) or backend:precision items (``ort-trt:fp16``) that must be
            available; exit code 1 when one is not (0 otherwise).
        json_path: also write ``{"schema", "versions", "notes", "rows", "exit_code"}`` there.
        out: where to print (default stdout).
        device_id: the GPU to check, in CUDA's numbering.
        smoke_seconds: how long each available row keeps running its tiny model.
        timeout_s: limit per child process.

    Each row: ``backend, precision, device, status`` (``available``, ``unavailable``, ``error``),
    ``reason``, ``versions``, ``smoke_calls``, ``smoke_seconds``, ``first_call_s``,
    ``max_relative_error`` (against numpy in float64).
    """
    required = check_require(require)
    if json_path:
        from vggbench.artifacts.layout import check_output_file

        check_output_file(json_path)
    out = out or sys.stdout
    versions = libraries.gpu_versions()
    notes = environment_notes()
    plan = planned_rows()
    found: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for group in smoke_groups(plan):
        # A backend whose every row so far is unavailable for one and the same reason (no provider,
        # no GPU) needs no second child for its remaining rows (its tf32 rows).
        todo = dict(group, rows=[])
        for backend, precision in group["rows"]:
            known = [r for (b, _), r in found.items() if b == backend]
            if known and all(r["status"] == UNAVAILABLE and r["reason"] == known[0]["reason"] for r in known):
                found[(backend, precision)] = dict(known[0], precision=precision)
            else:
                todo["rows"].append((backend, precision))
        if todo["rows"]:
            for row in _run_child(todo, device_id, smoke_seconds, timeout_s):
                found[(row["backend"], row["precision"])] = row
    rows = [found[key] for key in plan]
    missing = required_missing(rows, required)
    code = EXIT_USER_ERROR if missing else EXIT_OK
    for line in _machine_lines(versions) + [f"note: {note}" for note in notes]:
        print(line, file=out)
    print(doctor_table(rows), file=out)
    if missing:
        print(f"required but not available here: {', '.join(missing)}", file=out)
    if json_path:
        from vggbench.artifacts.io import write_json_atomic
        from vggbench.platform.environment import utc_now

        write_json_atomic(json_path, {"schema": SCHEMA, "timestamp": utc_now(), "versions": versions, "notes": notes,
                                      "rows": rows, "required": list(require), "exit_code": code})
    return rows, code


# --- the GPU owner's first command ---------------------------------------------------------------------------

GPU_SMOKE_SIZES = (96, 224)
GPU_SMOKE_BATCH_SIZES = (1, 64)


def _bench_for_smoke(run_dirs: Sequence[str], batch_sizes: Sequence[int], accuracy_images: int,
                     data_dir: Optional[str], log: Log) -> Dict[str, Any]:
    """The one call into the sweep (kept here alone so a change of sweep.sweep's signature is one
    edit): every backend, unavailable ones as rows; three rounds per row keep it short."""
    from vggbench.bench import sweep

    return sweep.sweep(run_dirs, backends=None, batch_sizes=batch_sizes, rounds=3,
                       accuracy_limit=accuracy_images, data_dir=data_dir, log=log)


def gpu_smoke(out_dir: Any, model: str = "vgg11_bn", width_ratio: float = 4.0,
              sizes: Sequence[int] = GPU_SMOKE_SIZES, batch_sizes: Sequence[int] = GPU_SMOKE_BATCH_SIZES,
              train_images: int = 320, test_images: int = 256, data_dir: Optional[str] = None,
              device_id: int = 0, log: Optional[Log] = None) -> Dict[str, Any]:
    """Doctor, a few training steps, export, and a short sweep of every backend; files in ``out_dir``.

    Parameters:
        out_dir: where ``doctor.json``, ``doctor.md``, ``runs/<model>-<size>/``, ``results.json``
            and ``results.md`` go (created).
        model, width_ratio: what to train (width ratio 4 keeps the CPU side of the sweep short).
        sizes: input sizes (96 and 224: one run dir each).
        batch_sizes: the sweep's batch sizes.
        train_images: training images (one epoch at batch 64: 320 images = 5 steps).
        test_images: test images for the evaluation, the parity gate and the accuracy pass.
        data_dir: the Fashion-MNIST files.
        device_id: the GPU.
        log: progress lines (default stderr).

    Training runs on gpu(``device_id``) when doctor found MXNet's GPU rows available, else on the
    CPU (e.g. Hopper, or the gpu extra's CPU mxnet). Returns ``{"doctor_rows", "train_ctx",
    "run_dirs", "results", "files", "seconds"}``.
    """
    from vggbench import train, workflows
    from vggbench.artifacts.io import write_bytes_atomic

    log = log or say
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO()
    rows, _ = doctor(json_path=str(out / "doctor.json"), out=table, device_id=device_id)
    write_bytes_atomic(out / "doctor.md", table.getvalue().encode())
    mxnet_gpu = any(r["status"] == AVAILABLE for r in rows if r["backend"] in ("mxnet-gpu", "mxnet-hybrid-gpu"))
    ctx = str(Device("gpu", device_id) if mxnet_gpu else Device("cpu"))
    log(f"doctor: {sum(r['status'] == AVAILABLE for r in rows)} of {len(rows)} backend x precision rows available; "
        f"training on {ctx}")
    run_dirs = []
    for size in sizes:
        run_dirs.append(str(train.train_export(
            model, input_size=size, epochs=1, batch_size=64, width_ratio=width_ratio, ctx=ctx,
            train_limit=train_images, test_limit=test_images, data_dir=data_dir, out=str(out / "runs"),
            name=f"{model}-{size}", force=True, parity_images=min(test_images, train.PARITY_IMAGES),
            progress=False, log=log)))
    results = _bench_for_smoke(run_dirs, batch_sizes, test_images, data_dir, log)
    files = workflows.write_outputs(results, json_path=str(out / "results.json"),
                                   markdown_path=str(out / "results.md"))
    for line in files:
        log(line)
    return {"doctor_rows": rows, "train_ctx": ctx, "run_dirs": run_dirs, "results": results,
            "files": [str(out / name) for name in ("doctor.json", "doctor.md", "results.json", "results.md")],
            "seconds": time.perf_counter() - started}


def doctor_command(require: Sequence[str] = (), json_path: Optional[str] = None,
                   gpu_smoke_dir: Optional[str] = None, data_dir: Optional[str] = None,
                   out: Optional[TextIO] = None) -> int:
    """``vggbench doctor [--json F] [--require B ...] [--gpu-smoke OUT_DIR]``: returns the exit code.

    Parameters:
        require, json_path: as for :func:`doctor`.
        gpu_smoke_dir: run :func:`gpu_smoke` into this folder instead (its doctor table is part of it).
        data_dir: Fashion-MNIST folder for the GPU smoke.
        out: where to print.
    """
    if gpu_smoke_dir:
        required = check_require(require)
        result = gpu_smoke(gpu_smoke_dir, data_dir=data_dir)
        print((Path(gpu_smoke_dir) / "doctor.md").read_text(), file=out or sys.stdout, end="")
        return EXIT_USER_ERROR if required_missing(result["doctor_rows"], required) else EXIT_OK
    return doctor(require=require, json_path=json_path, out=out)[1]


if __name__ == "__main__":
    sys.exit(smoke_main(sys.argv[1], sys.argv[2]))
