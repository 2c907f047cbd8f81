"""Run dirs and their manifest: the one contract between stages.

A run dir (``runs/<model>-<size>/``) holds a ``manifest.json`` that names every artifact with
its sha256. Stages never call each other's internals; they meet here. Every file is written to a
temporary name in the same folder and renamed when complete, so an interrupted step never leaves
a half-written file under a name that a later step would pick up.

Failure guarantees kept here (the README's "Failure behaviour"):

- one writer per run dir: :func:`run_dir_lock` (an advisory ``flock`` on ``<out>/.<name>.lock``
  that records pid, host, purpose and start time; a second writer is refused at once, a lock left
  by a dead process is taken over);
- temp names unique per process (``.<stem>.<pid>.<random>.tmp<suffix>``) and removed on every
  exit path Python sees; what a SIGKILL leaves is removed by :func:`remove_orphan_temp_files`;
- a full disk or an unwritable folder while writing is a one-line :class:`VggbenchError`;
- bounded manifest reads (:data:`MAX_MANIFEST_BYTES`) and a type schema (:func:`check_manifest`);
- output paths checked before any work: :func:`check_run_name`, :func:`check_output_dir`,
  :func:`check_output_file`, :func:`run_dir_for`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from vggbench import models
from vggbench.errors import VggbenchError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# ONNX model file per precision/variant. "fp32" is the plain cleaned export; the others are
# written by `vggbench optimize` and described in manifest["variants"][precision].
ONNX_VARIANT_FILES = {"fp32": "model.onnx", "opt": "model.opt.onnx",
                      "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
# The hybridized MXNet export (symbol + params) that the MXNet runners load.
SYMBOL_FILE = "model-symbol.json"
PARAMS_FILE = "model-0000.params"
MXNET_FILES = (SYMBOL_FILE, PARAMS_FILE)
# The exported graph's input (MXNet symbol and ONNX model alike).
INPUT_NAME = "data"
# Training history (one row per epoch) and its curves, written by train-export.
HISTORY_FILE = "history.json"
CURVES_FILE = "training.png"
# Per-machine caches inside a run dir (TensorRT engines and timing cache): not artifacts, not hashed.
CACHE_DIR = "cache"
# An unfinished run dir holds this checkpoint index (train.CHECKPOINT_DIR / train.CHECKPOINT_INDEX).
CHECKPOINT_INDEX_PATH = ("checkpoints", "last.json")
# A real manifest is a few kB (every variant entry included); anything this big is not one.
MAX_MANIFEST_BYTES = 1 << 20
PathLike = Union[str, os.PathLike]
# Errors of the storage, not of the program, reported in one line naming the file: these always ...
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# ... and these when they are about the file being written or its folder (not a file read meanwhile).
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EIO}
# Free bytes below which a failed write (whatever the writing library raised) is a full disk.
DISK_FULL_BYTES = 1 << 20


def sha256_file(path: PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(final_path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``final_path``; rename it into place only on success.

    For libraries that insist on writing to a path themselves (MXNet, ONNX, matplotlib). The
    temporary name keeps the real suffix, since some writers choose the format from it, and holds
    this process's pid (``.model.<pid>.<random>.tmp.onnx``): unique per process and call, and
    recognisable by :func:`remove_orphan_temp_files` after a kill. The temporary file is removed
    on every exit path. A full disk, a read-only or unwritable folder while writing raise a
    one-line :class:`VggbenchError` naming ``final_path``.

    Parameters:
        final_path: where the complete file should end up; its folder is created if missing.
    """
    final_path = Path(final_path)
    temp_path = None
    try:
        final_path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.{os.getpid()}.",
                                             suffix=f".tmp{final_path.suffix}", dir=final_path.parent)
        os.close(handle)
        temp_path = Path(temp_name)
        os.chmod(temp_path, 0o666 & ~_umask())
        yield temp_path
        with open(temp_path, "rb+") as synced:
            os.fsync(synced.fileno())
        os.replace(temp_path, final_path)
    except Exception as err:  # noqa: BLE001 - storage faults become one line, the rest re-raise
        problem = storage_problem(err, final_path.parent, (final_path, temp_path))
        if problem is None:
            raise
        raise VggbenchError(f"cannot write {final_path}: {problem}; free space or choose a writable "
                            f"location, then run the command again") from None
    finally:
        if temp_path is not None and temp_path.exists():
            temp_path.unlink()


def storage_problem(error: BaseException, folder: PathLike, written: Tuple[Optional[PathLike], ...] = ()
                    ) -> Optional[str]:
    """Say what is wrong with the storage when ``error`` came from writing into ``folder``.

    Parameters:
        error: what a write raised: an ``OSError`` (Python) or any library error (MXNet's
            ``MXNetError`` on a failed ``fwrite``, protobuf's ...).
        folder: the folder written into.
        written: the files being written; a permission/missing-path error counts only when it is
            about one of them, ``folder`` or a folder above it (not about a file read meanwhile).

    Returns a short reason ("No space left on device", "Permission denied", "disk full (12 bytes
    free in /mnt)") or None when the error is not a storage problem (a bug, which must keep its
    traceback).
    """
    if not isinstance(error, Exception) or isinstance(error, VggbenchError):
        return None
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return error.strerror or os.strerror(error.errno)
    if isinstance(error, OSError) and error.errno in PATH_ERRNOS:
        folder_abs = Path(os.path.abspath(folder))
        ours = {Path(os.path.abspath(path)) for path in written if path is not None}
        for name in (error.filename, error.filename2):
            if name is not None:
                name = Path(os.path.abspath(os.fsdecode(name)))
                if name in ours or name == folder_abs or name in folder_abs.parents:
                    return error.strerror or os.strerror(error.errno)
    try:
        free_bytes = shutil.disk_usage(_existing_ancestor(Path(folder))).free
    except OSError:
        return None
    if free_bytes < DISK_FULL_BYTES:
        return f"disk full ({free_bytes} bytes free in {folder})"
    return None


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: PathLike, payload: bytes) -> None:
    with atomic_path(path) as temp:
        temp.write_bytes(payload)


def write_json_atomic(path: PathLike, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n").encode())


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def default_run_name(model: str, input_size: int, width_ratio: float = 1.0) -> str:
    """``<model>-<input_size>``, or ``<model>-w<width_ratio>-<input_size>`` when the width ratio is
    not 1 (``vgg11-w8-96``), so runs of one model at two widths never share a folder."""
    if float(width_ratio) == 1.0:
        return f"{model}-{input_size}"
    return f"{model}-w{float(width_ratio):g}-{input_size}"


def manifest_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / MANIFEST_NAME


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


# --- names and output paths (checked before any work starts) ---------------------------------------

MAX_NAME_BYTES = 255


def is_plain_name(name: Any) -> bool:
    """True for one path component: no separator, not ``.``/``..``, no control characters, not
    hidden (a leading dot is reserved for locks and temp files), not empty, at most 255 bytes."""
    return (isinstance(name, str) and name.strip() == name and name not in ("", ".", "..")
            and not name.startswith(".") and "/" not in name and "\\" not in name
            and not any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
            and len(name.encode("utf-8", "surrogateescape")) <= MAX_NAME_BYTES)


def check_run_name(name: str, flag: str = "--name") -> str:
    """Return ``name`` when it is a plain folder name (see :func:`is_plain_name`), else raise.

    Parameters:
        name: the run dir's name inside ``--out`` (``--name``).
        flag: the option named in the error.
    """
    if not is_plain_name(name):
        raise VggbenchError(f"{flag} {name!r} is not a plain folder name (no '/', '..', leading dot, spaces "
                            f"at the ends or control characters; at most {MAX_NAME_BYTES} bytes); "
                            f"use something like vgg11-96-try2")
    return name


def find_enclosing_run_dir(path: PathLike) -> Optional[Path]:
    """The run dir that ``path`` is (or lies inside), or None. A run dir holds ``manifest.json``
    (finished) or ``checkpoints/last.json`` (unfinished)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    for candidate in (path, *path.parents):
        if (candidate / MANIFEST_NAME).is_file() or candidate.joinpath(*CHECKPOINT_INDEX_PATH).is_file():
            return candidate
    return None


def _check_creatable_dir(path: Path, flag: str) -> None:
    """``path`` is a writable folder, or the nearest existing ancestor is one (so it can be made)."""
    if path.exists():
        if not path.is_dir():
            raise VggbenchError(f"{flag} {path} is a file, not a folder; choose a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise VggbenchError(f"{flag} {path} is not writable by this user; choose another folder")
        return
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise VggbenchError(f"{flag} {path} cannot be created: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise VggbenchError(f"{flag} {path} cannot be created: {ancestor} is not writable by this user "
                            f"(or is a read-only mount); choose another folder")


def check_output_dir(path: PathLike, flag: str = "--out") -> Path:
    """Check (without creating anything) that ``path`` can hold run dirs; return it as a Path.

    It must be a writable folder or creatable under a writable one, and must not be a run dir or
    lie inside one (run dirs inside run dirs would be overwritten by ``--force``).

    Parameters:
        path: the parent folder of run dirs (``--out``/``--runs-dir``).
        flag: the option named in errors.
    """
    path = Path(path).expanduser()
    _check_creatable_dir(path, flag)
    enclosing = find_enclosing_run_dir(path)
    if enclosing is not None:
        raise VggbenchError(f"{flag} {path} is inside the run dir {enclosing}; give the folder that holds run "
                            f"dirs (for example {enclosing.parent})")
    return path


def check_output_file(path: PathLike, flag: str = "--json") -> Path:
    """Check (without creating anything) that a results file can be written at ``path``.

    For ``bench --json`` and friends, so a bad path fails before minutes of measuring, not after.
    ``path`` must not be a folder, an existing file must be writable, and its folder must exist
    writable or be creatable under a writable one. ``-`` (stdout) is not a path: do not pass it.

    Parameters:
        path: the file to be written.
        flag: the option named in errors.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise VggbenchError(f"{flag} {path} is a folder; give a file name such as {path / 'results.json'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise VggbenchError(f"{flag} {path} exists and is not writable by this user; choose another file")
    _check_creatable_dir(path.parent if str(path.parent) else Path("."), f"{flag} {path}: folder")
    return path


def run_dir_for(out: PathLike, name: str) -> Path:
    """``out/name`` after :func:`check_output_dir` (``--out``) and :func:`check_run_name` (``--name``),
    refusing a ``name`` that exists as a file. Creates nothing."""
    run_dir = check_output_dir(out) / check_run_name(name)
    if run_dir.exists() and not run_dir.is_dir():
        raise VggbenchError(f"{run_dir} is a file, not a run dir; choose another --name or --out")
    return run_dir


# --- one writer per run dir ------------------------------------------------------------------------

LOCK_SUFFIX = ".lock"
_held_locks: Dict[str, "RunDirLock"] = {}
_held_guard = threading.Lock()


@dataclasses.dataclass
class RunDirLock:
    """A held run-dir lock (what :func:`run_dir_lock` yields).

    Attributes:
        run_dir: the locked run dir (it may not exist yet).
        lock_path: ``<parent>/.<name>.lock``, beside the run dir so the run dir itself stays exactly
            what the manifest describes and can be deleted or replaced under the lock.
        holder: what this process recorded (pid, host, purpose, started, pid_start).
        took_over: the record of a dead previous holder whose lock was taken over, or None.
    """

    run_dir: Path
    lock_path: Path
    holder: Dict[str, Any]
    took_over: Optional[Dict[str, Any]] = None
    fd: int = -1
    depth: int = 1
    created_dirs: Tuple[Path, ...] = ()  # folders made for the lock file, removed again if left empty


def lock_path_for(run_dir: PathLike) -> Path:
    """Where the lock of ``run_dir`` lives: ``<parent>/.<name>.lock``."""
    run_dir = Path(os.path.abspath(Path(run_dir).expanduser()))
    if not run_dir.name:
        raise VggbenchError(f"{run_dir} cannot be a run dir (it has no name)")
    return run_dir.parent / f".{run_dir.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def run_dir_lock(run_dir: PathLike, purpose: str) -> Iterator[RunDirLock]:
    """Hold the exclusive lock of ``run_dir`` for one writing command; refuse at once if taken.

    An advisory ``fcntl.flock`` on ``<parent>/.<name>.lock`` (the parent is created if missing, and
    removed again on release when nothing else was put in it).
    The file records who holds it (pid, host, purpose, start time) so a refused writer gets one
    line naming the holder. The kernel drops the lock when its process dies, so a lock left by a
    killed run is simply taken over (``took_over`` says whose it was); a lock still held by a
    process that is not the recorded, dead pid (a forked child that outlived it) is broken. The
    lock is re-entrant within a process (``train-export --optimize``) and released, and its file
    removed, on every exit path Python sees (a ``KeyboardInterrupt``/SIGTERM included).

    Parameters:
        run_dir: the run dir about to be written (it need not exist).
        purpose: what the holder is doing, shown to a refused writer ("train-export", "optimize").

    Raises :class:`VggbenchError` when another live process holds the lock, or the folder cannot
    hold a lock file.
    """
    lock_path = lock_path_for(run_dir)
    key = str(lock_path)
    with _held_guard:
        held = _held_locks.get(key)
        if held is not None:
            held.depth += 1
    if held is not None:
        try:
            yield held
        finally:
            held.depth -= 1
        return
    lock = _acquire(Path(os.path.abspath(Path(run_dir).expanduser())), lock_path, purpose)
    with _held_guard:
        _held_locks[key] = lock
    try:
        yield lock
    finally:
        with _held_guard:
            _held_locks.pop(key, None)
        _release(lock)


def _acquire(run_dir: Path, lock_path: Path, purpose: str) -> RunDirLock:
    missing = [folder for folder in (lock_path.parent, *lock_path.parent.parents) if not folder.exists()]
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VggbenchError(f"cannot create {lock_path.parent} for {run_dir} ({err.strerror}); choose a "
                            f"writable --out") from None
    for _ in range(5):  # retried only when the file was replaced between open and flock
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise VggbenchError(f"cannot create the lock file {lock_path} ({err.strerror}); choose a writable "
                                f"--out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_record(fd)
            os.close(fd)
            if holder and _is_dead_here(holder):  # held by an orphaned descendant of a dead run
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
                continue
            raise VggbenchError(f"{run_dir} is in use by {describe_holder(holder)}; wait for it to finish, or "
                                f"write elsewhere with another --name") from None
        except OSError as err:  # ENOLCK/EOPNOTSUPP: a file system without locks (old NFS)
            os.close(fd)
            raise VggbenchError(f"cannot lock {lock_path} ({err.strerror}): this file system has no file locks; "
                                f"use a local --out") from None
        if not _same_file(fd, lock_path):
            os.close(fd)
            continue
        previous = _read_record(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid_start": _process_start(os.getpid())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        return RunDirLock(run_dir, lock_path, holder, previous or None, fd, created_dirs=tuple(missing))
    raise VggbenchError(f"cannot take the lock {lock_path}: it keeps being replaced by another process; "
                        f"is another vggbench writing {run_dir}?")


def _release(lock: RunDirLock) -> None:
    try:
        if _same_file(lock.fd, lock.lock_path):
            os.unlink(lock.lock_path)  # while still holding it, so nobody locks a file about to vanish
    except OSError:
        pass
    finally:
        os.close(lock.fd)
    for folder in lock.created_dirs:  # deepest first: an --out made only for a run that failed early
        try:
            folder.rmdir()
        except OSError:
            break


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_record(fd: int) -> Dict[str, Any]:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def read_lock_holder(run_dir: PathLike) -> Optional[Dict[str, Any]]:
    """The record of whoever holds ``run_dir``'s lock now, or None when it is free.

    For messages and tests. It tests the lock by taking a shared lock for an instant, so a writer
    starting in that instant is refused as if the run dir were in use: do not poll it next to a
    writer that must not fail.
    """
    lock_path = lock_path_for(run_dir)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_record(fd)
        return None
    finally:
        os.close(fd)


def describe_holder(holder: Optional[Dict[str, Any]]) -> str:
    """One phrase naming a lock holder: ``train-export (pid 123 on host, since 2026-...)``."""
    if not holder:
        return "another process (it has not recorded itself yet)"
    return (f"{holder.get('purpose', 'another vggbench command')} (pid {holder.get('pid', '?')} on "
            f"{holder.get('host', '?')}, since {holder.get('started', '?')})")


def _process_start(pid: int) -> Optional[int]:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def pid_alive(pid: int, started: Optional[int] = None) -> bool:
    """Is process ``pid`` (on this host) running, and, when ``started`` is given, still the process
    that started at that tick (not a later process that reused the pid)? Zombies count as dead."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2:].split()[0] == "Z":
            return False
    except (OSError, ValueError, IndexError):
        return True
    return started is None or _process_start(pid) in (None, started)


def _is_dead_here(holder: Dict[str, Any]) -> bool:
    return holder.get("host") == socket.gethostname() and not pid_alive(holder.get("pid"), holder.get("pid_start"))


# --- leftovers of killed runs ----------------------------------------------------------------------

# atomic_path's names (.<stem>.<pid>.<random>.tmp<suffix>, and the older .<stem>.<random>.tmp<suffix>)
# and export's staging folders (.export.<random>).
_TEMP_FILE = re.compile(r"^\..+?\.(?:(?P<pid>\d+)\.)?[A-Za-z0-9_]{8}\.tmp(?:\.[^./]*)?$")
_TEMP_DIR = re.compile(r"^\.export\.[A-Za-z0-9_]{8}$")


def remove_orphan_temp_files(run_dir: PathLike) -> List[Path]:
    """Delete the temporary files and staging folders a killed run left in ``run_dir`` (and its
    ``checkpoints/``); return what was removed.

    Call it while holding :func:`run_dir_lock` (``--resume``/``--force`` do): then no other writer
    can own them. A temp file whose name carries the pid of another live process is kept all the
    same, as a second line of defence. Finished artifacts never match these names.

    Parameters:
        run_dir: the run dir to clean; a missing one is fine (nothing to do).
    """
    run_dir = Path(run_dir)
    removed: List[Path] = []
    if not run_dir.is_dir():
        return removed
    for folder, dirs, files in os.walk(run_dir):
        for name in list(dirs):
            if _TEMP_DIR.match(name):
                shutil.rmtree(Path(folder) / name, ignore_errors=True)
                removed.append(Path(folder) / name)
                dirs.remove(name)
        for name in files:
            match = _TEMP_FILE.match(name)
            if not match:
                continue
            pid = int(match.group("pid")) if match.group("pid") else None
            if pid is not None and pid != os.getpid() and pid_alive(pid):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path(folder) / name)
                removed.append(Path(folder) / name)
    return sorted(removed)
