"""Run dir layout: file names, run names, and output paths checked before any work starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from vggbench.artifacts.io import PathLike, _existing_ancestor
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
# The ONNX opset and IR version every ONNX model vggbench writes declares (run dir files, the probe's
# tiny model, the GEMM peak models): loadable by ONNX Runtime 1.16 and later (export/onnx.py says why).
ONNX_OPSET = 15
ONNX_IR_VERSION = 8
# Training history (one row per epoch) and its curves, written by train-export.
HISTORY_FILE = "history.json"
CURVES_FILE = "training.png"
# Per-machine caches inside a run dir (TensorRT engines and timing cache): not artifacts, not hashed.
CACHE_DIR = "cache"
# An unfinished run dir holds this checkpoint index (train.CHECKPOINT_DIR / train.CHECKPOINT_INDEX).
CHECKPOINT_INDEX_PATH = ("checkpoints", "last.json")
# A real manifest is a few kB (every variant entry included); anything this big is not one.
MAX_MANIFEST_BYTES = 1 << 20


def default_run_name(model: str, input_size: int, width_ratio: float = 1.0) -> str:
    """``<model>-<input_size>``, or ``<model>-w<width_ratio>-<input_size>`` when the width ratio is
    not 1 (``vgg11-w8-96``), so runs of one model at two widths never share a folder."""
    if float(width_ratio) == 1.0:
        return f"{model}-{input_size}"
    return f"{model}-w{float(width_ratio):g}-{input_size}"


def manifest_path(run_dir: PathLike) -> Path:
    return Path(run_dir) / MANIFEST_NAME


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
    """``path`` is a writable folder, or the nearest existing ancestor is one (so it can be made), and
    its name is text: bytes that are not UTF-8 could not be written into a manifest or results file."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise VggbenchError(f"{flag} {ascii(str(path))} is not valid UTF-8 text; choose a path whose name is "
                            f"UTF-8") from None
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
