"""``manifest.json``: bounded reads, the type schema, writing it last, and sha256 checks of every file it names.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from vggbench import models
from vggbench.artifacts.io import PathLike, _json_default, sha256_file, write_bytes_atomic
from vggbench.artifacts.layout import (
    HISTORY_FILE,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    MAX_MANIFEST_BYTES,
    is_plain_name,
    manifest_path,
)
from vggbench.artifacts.reader import check_fields, finite, parse_json, read_bounded, short, type_name
from vggbench.errors import VggbenchError


def read_manifest(run_dir: PathLike) -> Dict[str, Any]:
    """Load a run dir's manifest: bounded read, strict JSON, then :func:`check_manifest`.

    No hashing (see :func:`verify_file`). Every problem is a one-line :class:`VggbenchError`
    naming the file (and the key): no manifest, a file over :data:`MAX_MANIFEST_BYTES`, invalid
    JSON or ``NaN``/``Infinity``, not an object, a wrong version, a missing key or a wrong type.

    Parameters:
        run_dir: the run dir holding ``manifest.json``.
    """
    path = manifest_path(run_dir)
    if not os.path.lexists(path):
        raise VggbenchError(f"{run_dir}: no {MANIFEST_NAME}; make the run dir with "
                            f"`vggbench train-export MODEL --out ...` first")
    raw = read_bounded(path, MAX_MANIFEST_BYTES, "manifest", follow_symlinks=False,
                       fix="re-run train-export to rebuild it")
    return parse_manifest(raw, str(path))


def parse_manifest(raw: bytes, source: str = MANIFEST_NAME) -> Dict[str, Any]:
    """Parse and check manifest bytes (see :func:`read_manifest`); ``source`` names them in errors."""
    manifest = parse_json(raw, source, "re-run train-export to rebuild it")
    check_manifest(manifest, source)
    return manifest


def write_manifest(run_dir: PathLike, manifest: Dict[str, Any]) -> Path:
    """Check ``manifest`` against the schema and write it (strict JSON: no NaN/Infinity) atomically."""
    manifest = dict(manifest)
    manifest["manifest_version"] = MANIFEST_VERSION
    path = manifest_path(run_dir)
    check_manifest(json.loads(json.dumps(manifest, default=_json_default)), f"{path} (being written)")
    try:
        payload = json.dumps(manifest, indent=2, default=_json_default, allow_nan=False) + "\n"
    except ValueError as err:  # checked above; kept so a future key cannot write Infinity
        raise VggbenchError(f"{path}: refusing to write a non-finite number ({err})") from None
    write_bytes_atomic(path, payload.encode())
    return path


# --- the manifest schema ---------------------------------------------------------------------------

# Bounds of what a run dir can hold: a manifest beyond them was not written by vggbench.
MAX_CLASSES = 100_000
MAX_IN_CHANNELS = 64
MAX_THREADS = 4096
MAX_CONTEXTS = 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NUMBER = (int, float)


def _finite_positive(value) -> bool:
    return math.isfinite(value) and value > 0


# key: (allowed Python types, required, extra check or None, what the check asks for)
_MANIFEST_SCHEMA: Dict[str, Tuple[tuple, bool, Optional[Callable[[Any], bool]], str]] = {
    "manifest_version": ((int,), True, None, ""),
    "model": ((str,), True, lambda v: v in models.MODEL_NAMES, "a model of `vggbench models`"),
    "input_size": ((int,), True, lambda v: 1 <= v <= models.MAX_INPUT_SIZE,
                   f"1..{models.MAX_INPUT_SIZE} pixels"),
    "files": ((dict,), True, None, ""),
    "width_ratio": (_NUMBER, False, _finite_positive, "a finite number > 0"),
    "classes": ((int,), False, lambda v: 1 <= v <= MAX_CLASSES, f"1..{MAX_CLASSES}"),
    "in_channels": ((int,), False, lambda v: 1 <= v <= MAX_IN_CHANNELS, f"1..{MAX_IN_CHANNELS}"),
    "trained": ((bool,), False, None, ""),
    "config": ((str,), False, None, ""),
    "input_name": ((str,), False, None, ""),
    "input_shape": ((list,), False, None, ""),
    "class_names": ((list,), False, lambda v: all(isinstance(n, str) for n in v), "a list of strings"),
    "test_accuracy": (_NUMBER + (type(None),), False, lambda v: v is None or 0 <= v <= 1, "0..1"),
    "test_images": ((int, type(None)), False, lambda v: v is None or v >= 0, ">= 0"),
    "test_limit": ((int, type(None)), False, lambda v: v is None or v >= 1, ">= 1"),
    "train_images": ((int,), False, lambda v: v >= 0, ">= 0"),
    "train_seconds": (_NUMBER, False, lambda v: v >= 0, ">= 0"),
    "variants": ((dict,), False, None, ""),
    "recipe": ((dict,), False, None, ""),
    "parity": ((dict,), False, None, ""),
    "onnx": ((dict,), False, None, ""),
    "versions": ((dict,), False, None, ""),
    "device": ((dict,), False, None, ""),
    "timestamps": ((dict,), False, None, ""),
    "model_stats": ((dict,), False, None, ""),
    "threads": ((dict,), False, None, ""),
}
_COUNT = ((int, type(None)), False, lambda v: v is None or 1 <= v <= MAX_THREADS, f"1..{MAX_THREADS}")
# manifest["threads"] and manifest["device"], which bench reads after measuring (training_row).
_THREADS_SCHEMA = {"mxnet": _COUNT, "onnxruntime": _COUNT, "mxnet_source": ((str, type(None)), False, None, "")}
_DEVICE_SCHEMA = {
    "contexts": ((list,), False, lambda v: len(v) <= MAX_CONTEXTS and all(isinstance(c, str) for c in v),
                 f"a list of at most {MAX_CONTEXTS} device names such as \"cpu(0)\""),
    "cpu": ((str, type(None)), False, None, ""),
    "gpus": ((list,), False, None, ""),
}
_RECIPE_SCHEMA = {
    "batch_size": ((int,), False, lambda v: v >= 1, ">= 1"),
    "epochs": ((int,), False, lambda v: v >= 1, ">= 1"),
    "lr": (_NUMBER, False, _finite_positive, "a finite number > 0"),
}
# manifest["model_stats"], counted on the exported graph (models.model_stats_from_manifest reads it).
_MODEL_STATS_SCHEMA: Dict[str, Tuple[tuple, bool, Optional[Callable[[Any], bool]], str]] = {
    "params": ((int,), False, lambda v: v >= 0, ">= 0"),
    "flops_per_image": ((int,), False, lambda v: v >= 0, ">= 0"),
}
# Fields of manifest["variants"][precision] that later stages read.
_VARIANT_SCHEMA: Dict[str, Tuple[tuple, bool, Optional[Callable[[Any], bool]], str]] = {
    "file": ((str,), False, None, ""),
    "sha256": ((str,), False, lambda v: bool(_SHA256.match(v)), "64 hex digits"),
    "flagged": ((bool,), False, None, ""),
    "accuracy_drop_points": (_NUMBER + (type(None),), False, finite(-100, 100), "-100..100 points"),
    "test_accuracy": (_NUMBER + (type(None),), False, lambda v: v is None or 0 <= v <= 1, "0..1"),
}
def _check_fields(obj: Dict[str, Any], schema, source: str, where: str) -> None:
    check_fields(obj, schema, source, where)


def check_manifest(manifest: Any, source: str = MANIFEST_NAME) -> None:
    """Check a parsed manifest's shape and value types; raise a one-line VggbenchError otherwise.

    Known keys must have their documented types (numbers finite, counts whole, ``files`` a map of
    plain file names to sha256 hex digests, ``variants`` a map of precision to entry); unknown keys
    are allowed, so a newer stage can add information without breaking older readers.

    Parameters:
        manifest: what ``json.loads`` returned.
        source: the file (or description) named in the error.
    """
    if not isinstance(manifest, dict):
        raise VggbenchError(f"{source}: is {type_name(manifest)}, not a JSON object; re-run train-export "
                            f"to rebuild it")
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION or isinstance(version, bool):
        raise VggbenchError(f"{source}: manifest_version {version!r}, this vggbench reads {MANIFEST_VERSION}; "
                            f"re-run train-export with this version")
    _check_fields(manifest, _MANIFEST_SCHEMA, source, "")
    _check_fields(manifest.get("model_stats", {}), _MODEL_STATS_SCHEMA, source, "'model_stats'.")
    _check_fields(manifest.get("threads", {}), _THREADS_SCHEMA, source, "'threads'.")
    _check_fields(manifest.get("device", {}), _DEVICE_SCHEMA, source, "'device'.")
    _check_fields(manifest.get("recipe", {}), _RECIPE_SCHEMA, source, "'recipe'.")
    for name, digest in manifest["files"].items():
        if not is_plain_name(name):
            raise VggbenchError(f"{source}: key 'files' names {short(name)}, not a plain file name in the run "
                                f"dir; re-run train-export to rebuild it")
        if not (isinstance(digest, str) and _SHA256.match(digest)):
            raise VggbenchError(f"{source}: key 'files'[{name!r}] is {short(digest)}, expected a sha256 of "
                                f"64 hex digits; re-run train-export to rebuild it")
    for precision, entry in manifest.get("variants", {}).items():
        if not isinstance(entry, dict):
            raise VggbenchError(f"{source}: key 'variants'[{precision!r}] is {type_name(entry)}, expected an "
                                f"object; re-run vggbench optimize")
        _check_fields(entry, _VARIANT_SCHEMA, source, f"'variants'[{precision!r}].")
        if "file" in entry and not is_plain_name(entry["file"]):
            raise VggbenchError(f"{source}: key 'variants'[{precision!r}].'file' is {short(entry['file'])}, "
                                f"not a plain file name; re-run vggbench optimize")


def record_file(manifest: Dict[str, Any], run_dir: PathLike, name: str) -> str:
    """Hash ``run_dir/name`` into ``manifest['files']`` and return the digest."""
    digest = sha256_file(Path(run_dir) / name)
    manifest.setdefault("files", {})[name] = digest
    return digest


def verify_file(run_dir: PathLike, manifest: Dict[str, Any], name: str) -> Path:
    """Return the path of artifact ``name`` after checking it exists and matches its sha256."""
    expected: Optional[str] = manifest.get("files", {}).get(name)
    path = Path(run_dir) / name
    if expected is None:
        raise VggbenchError(f"{run_dir}: the manifest lists no {name!r} "
                            f"(has: {', '.join(sorted(manifest.get('files', {}))) or 'nothing'})")
    if not os.path.lexists(path):
        raise VggbenchError(f"{path}: listed in the manifest but missing; re-run the step that makes it")
    actual = sha256_file(path, follow_symlinks=False)  # a regular file, not a link, FIFO or device
    if actual != expected:
        raise VggbenchError(f"{path}: sha256 {actual[:12]}... does not match the manifest's {expected[:12]}...; "
                            f"the file was changed or corrupted, re-run the step that makes it")
    return path


def verify_all(run_dir: PathLike, manifest: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    manifest = manifest or read_manifest(run_dir)
    for name in manifest["files"]:
        verify_file(run_dir, manifest, name)
    return manifest


# --- history.json ------------------------------------------------------------------------------------

# One row per epoch plus the within-epoch curve points: a few hundred kB for a long run.
MAX_HISTORY_BYTES = 16 << 20
MAX_EPOCHS = 100_000
MAX_CURVE_POINTS = 1_000_000
HISTORY_ROW_SCHEMA = {
    "epoch": ((int,), True, lambda v: 1 <= v <= MAX_EPOCHS, f"1..{MAX_EPOCHS}"),
    "images_per_s": (_NUMBER + (type(None),), False, finite(0), "a finite number >= 0"),
    "test_accuracy": (_NUMBER + (type(None),), False, finite(0, 1), "0..1"),
    "train_accuracy": (_NUMBER + (type(None),), False, finite(0, 1), "0..1"),
    "train_loss": (_NUMBER + (type(None),), False, finite(), "a finite number"),
    "seconds": (_NUMBER + (type(None),), False, finite(0), "a finite number >= 0"),
    "peak_rss_bytes": ((int, type(None)), False, finite(0), "bytes >= 0"),
    "gpu_memory_used_bytes": ((int, type(None)), False, finite(0), "bytes >= 0"),
}


def read_history(run_dir: PathLike, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """``history.json`` of a run dir, checked against its manifest's sha256, bounded and typed.

    Returns ``{"epochs": [row, ...], "steps": [...]}`` where every row has an integer ``epoch``
    and finite numbers; anything else is a one-line :class:`VggbenchError` naming the file and
    key. Callers run it before measuring, so a bad history never costs a finished sweep.
    """
    path = verify_file(run_dir, manifest, HISTORY_FILE)
    fix = "re-run train-export to rebuild it"
    history = parse_json(read_bounded(path, MAX_HISTORY_BYTES, "training history", follow_symlinks=False, fix=fix),
                         str(path), fix)
    check_fields(history, {"epochs": ((list,), True, lambda v: len(v) <= MAX_EPOCHS, f"at most {MAX_EPOCHS} rows"),
                           "steps": ((list,), False, lambda v: len(v) <= MAX_CURVE_POINTS,
                                     f"at most {MAX_CURVE_POINTS} points")}, str(path), "", fix)
    for index, row in enumerate(history["epochs"]):
        check_fields(row, HISTORY_ROW_SCHEMA, str(path), f"'epochs'[{index}].", fix)
    return history
