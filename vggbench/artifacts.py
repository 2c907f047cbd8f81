"""Run dirs and their manifest: the one contract between stages.

A run dir (``runs/<model>-<size>/``) holds a ``manifest.json`` that names every artifact with
its sha256. Stages never call each other's internals; they meet here. Every file is written to a
temporary name in the same folder and renamed when complete, so an interrupted step never leaves
a half-written file under a name that a later step would pick up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

from vggbench.errors import VggbenchError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# ONNX model file per precision/variant. "fp32" is the plain cleaned export; the others are
# written by `vggbench optimize` and described in manifest["variants"][precision].
ONNX_VARIANT_FILES = {"fp32": "model.onnx", "opt": "model.opt.onnx",
                      "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
PathLike = Union[str, os.PathLike]


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
    temporary name keeps the real suffix, since some writers choose the format from it.
    """
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=f".tmp{final_path.suffix}",
                                         dir=final_path.parent)
    os.close(handle)
    temp_path = Path(temp_name)
    os.chmod(temp_path, 0o666 & ~_umask())
    try:
        yield temp_path
        with open(temp_path, "rb+") as synced:
            os.fsync(synced.fileno())
        os.replace(temp_path, final_path)
    finally:
        if temp_path.exists():
            temp_path.unlink()


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


def default_run_name(model: str, input_size: int) -> str:
    return f"{model}-{input_size}"


def manifest_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / MANIFEST_NAME


def read_manifest(run_dir: PathLike) -> Dict[str, Any]:
    """Load and sanity-check a run dir's manifest (no hashing; see :func:`verify_file`)."""
    path = manifest_path(run_dir)
    if not path.is_file():
        raise VggbenchError(f"{run_dir}: no {MANIFEST_NAME}; make the run dir with "
                            f"`vggbench train-export MODEL --out ...` first")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise VggbenchError(f"{path}: not valid JSON ({err}); re-run train-export to rebuild it") from None
    version = manifest.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise VggbenchError(f"{path}: manifest_version {version!r}, this vggbench reads {MANIFEST_VERSION}; "
                            f"re-run train-export with this version")
    for key in ("model", "input_size", "files"):
        if key not in manifest:
            raise VggbenchError(f"{path}: missing key {key!r}; re-run train-export to rebuild it")
    return manifest


def write_manifest(run_dir: PathLike, manifest: Dict[str, Any]) -> Path:
    manifest = dict(manifest)
    manifest["manifest_version"] = MANIFEST_VERSION
    path = manifest_path(run_dir)
    write_json_atomic(path, manifest)
    return path


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
