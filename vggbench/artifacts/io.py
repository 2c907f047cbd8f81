"""Atomic writes (temp name in the same folder, rename when complete), sha256, and one-line storage errors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Tuple, Union

from vggbench.errors import VggbenchError

PathLike = Union[str, os.PathLike]
# Errors of the storage, not of the program, reported in one line naming the file: these always ...
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}
# ... and these when they are about the file being written or its folder (not a file read meanwhile).
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EIO}
# Free bytes below which a failed write (whatever the writing library raised) is a full disk.
DISK_FULL_BYTES = 1 << 20


def sha256_file(path: PathLike, chunk_bytes: int = 1 << 20, follow_symlinks: bool = True) -> str:
    from vggbench.artifacts.reader import open_regular

    digest = hashlib.sha256()
    with os.fdopen(open_regular(path, "artifact", follow_symlinks=follow_symlinks,
                                fix="re-run the step that makes it"), "rb") as handle:  # never a FIFO or a device
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
    """Write ``obj`` as strict JSON, atomically: never ``NaN`` or ``Infinity``, which no JSON reader
    (nor vggbench's) accepts. A non-finite number is written as ``null`` and a warning line names
    where it was (``rows[3].images_per_s``), so the file stays readable and the gap is explained."""
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    except ValueError:
        replaced: list = []
        clean = _finite_or_null(json.loads(json.dumps(obj, default=_json_default)), "", replaced)
        from vggbench.messages import say

        say(f"warning: {path}: non-finite number(s) written as null at {', '.join(replaced[:5])}"
            f"{f' and {len(replaced) - 5} more' if len(replaced) > 5 else ''}")
        text = json.dumps(clean, indent=2, sort_keys=False, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode())


def _finite_or_null(value: Any, where: str, replaced: list) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(where or "the top level")
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item, f"{where}.{key}" if where else str(key), replaced)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(item, f"{where}[{index}]", replaced) for index, item in enumerate(value)]
    return value


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if callable(getattr(value, "to_json", None)):  # typed records (bench.results.Row) give their JSON form
        return value.to_json()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
