"""``manifest.json``: bounded reads, the type schema, writing it last, and sha256 checks of every file it names.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from vggbench import models
from vggbench.artifacts.io import PathLike, _json_default, sha256_file, write_bytes_atomic
from vggbench.artifacts.layout import MANIFEST_NAME, MANIFEST_VERSION, MAX_MANIFEST_BYTES, is_plain_name, manifest_path
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
    if not path.is_file():
        raise VggbenchError(f"{run_dir}: no {MANIFEST_NAME}; make the run dir with "
                            f"`vggbench train-export MODEL --out ...` first")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise VggbenchError(f"{path}: cannot read it ({err.strerror}); check its permissions") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise VggbenchError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes, so not a vggbench manifest; "
                            f"re-run train-export to rebuild it")
    return parse_manifest(raw, str(path))


def parse_manifest(raw: bytes, source: str = MANIFEST_NAME) -> Dict[str, Any]:
    """Parse and check manifest bytes (see :func:`read_manifest`); ``source`` names them in errors."""
    try:
        manifest = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise VggbenchError(f"{source}: nested too deeply to be a vggbench manifest; re-run train-export "
                            f"to rebuild it") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise VggbenchError(f"{source}: not valid JSON ({err}); re-run train-export to rebuild it") from None
    check_manifest(manifest, source)
    return manifest


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


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

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NUMBER = (int, float)


def _is(value, kinds) -> bool:
    """isinstance without the bool-is-an-int surprise (``true`` is not a number or a count)."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


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
    "classes": ((int,), False, lambda v: v >= 1, ">= 1"),
    "in_channels": ((int,), False, lambda v: v >= 1, ">= 1"),
    "trained": ((bool,), False, None, ""),
    "config": ((str,), False, None, ""),
    "input_name": ((str,), False, None, ""),
    "input_shape": ((list,), False, None, ""),
    "class_names": ((list,), False, lambda v: all(isinstance(n, str) for n in v), "a list of strings"),
    "test_accuracy": (_NUMBER + (type(None),), False, lambda v: v is None or 0 <= v <= 1, "0..1"),
    "test_images": ((int, type(None)), False, lambda v: v is None or v >= 0, ">= 0"),
    "test_limit": ((int, type(None)), False, None, ""),
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
    "accuracy_drop_points": (_NUMBER + (type(None),), False, None, ""),
    "test_accuracy": (_NUMBER + (type(None),), False, lambda v: v is None or 0 <= v <= 1, "0..1"),
}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object",
               list: "a list", type(None): "null"}


def _type_name(value) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _check_fields(obj: Dict[str, Any], schema, source: str, where: str) -> None:
    for key, (kinds, required, check, wanted) in schema.items():
        if key not in obj:
            if required:
                raise VggbenchError(f"{source}: missing key {where}{key!r}; re-run train-export to rebuild it")
            continue
        value = obj[key]
        if not _is(value, kinds):
            expected = " or ".join(_TYPE_NAMES[k] for k in kinds if not (k is int and float in kinds))
            raise VggbenchError(f"{source}: key {where}{key!r} is {_type_name(value)} ({_short(value)}), expected "
                                f"{expected}; re-run the step that wrote it")
        if check is not None and not check(value):
            raise VggbenchError(f"{source}: key {where}{key!r} is {_short(value)}, expected {wanted}; re-run the "
                                f"step that wrote it")


def _short(value, limit: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
        raise VggbenchError(f"{source}: is {_type_name(manifest)}, not a JSON object; re-run train-export "
                            f"to rebuild it")
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION or isinstance(version, bool):
        raise VggbenchError(f"{source}: manifest_version {version!r}, this vggbench reads {MANIFEST_VERSION}; "
                            f"re-run train-export with this version")
    _check_fields(manifest, _MANIFEST_SCHEMA, source, "")
    _check_fields(manifest.get("model_stats", {}), _MODEL_STATS_SCHEMA, source, "'model_stats'.")
    for name, digest in manifest["files"].items():
        if not is_plain_name(name):
            raise VggbenchError(f"{source}: key 'files' names {_short(name)}, not a plain file name in the run "
                                f"dir; re-run train-export to rebuild it")
        if not (isinstance(digest, str) and _SHA256.match(digest)):
            raise VggbenchError(f"{source}: key 'files'[{name!r}] is {_short(digest)}, expected a sha256 of "
                                f"64 hex digits; re-run train-export to rebuild it")
    for precision, entry in manifest.get("variants", {}).items():
        if not isinstance(entry, dict):
            raise VggbenchError(f"{source}: key 'variants'[{precision!r}] is {_type_name(entry)}, expected an "
                                f"object; re-run vggbench optimize")
        _check_fields(entry, _VARIANT_SCHEMA, source, f"'variants'[{precision!r}].")
        if "file" in entry and not is_plain_name(entry["file"]):
            raise VggbenchError(f"{source}: key 'variants'[{precision!r}].'file' is {_short(entry['file'])}, "
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
    if not path.is_file():
        raise VggbenchError(f"{path}: listed in the manifest but missing; re-run the step that makes it")
    actual = sha256_file(path)
    if actual != expected:
        raise VggbenchError(f"{path}: sha256 {actual[:12]}... does not match the manifest's {expected[:12]}...; "
                            f"the file was changed or corrupted, re-run the step that makes it")
    return path


def verify_all(run_dir: PathLike, manifest: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    manifest = manifest or read_manifest(run_dir)
    for name in manifest["files"]:
        verify_file(run_dir, manifest, name)
    return manifest
