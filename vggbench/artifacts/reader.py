"""The one reader of untrusted files: run-dir files, results files, hosts files, checkpoints.

Whoever can write a run dir (a shared ``--out``), a results file (``compare --from``) or a hosts
file can put anything there: a FIFO that blocks a reader forever, ``/dev/zero`` that never ends, a
400 MB JSON, numbers that overflow to infinity, a list where an object belongs. Every such read goes
through here:

- :func:`open_regular` refuses anything that is not a regular file (devices, FIFOs, sockets,
  folders) from ``stat`` before opening and again from ``fstat`` after a non-blocking open, so
  neither a swapped path nor a FIFO can block or feed it;
- :func:`read_bounded` reads at most a bound with a read loop (never trusting ``st_size``);
- :func:`read_json` parses strict JSON: no ``NaN``/``Infinity``, no number that overflows a float,
  no integer longer than :data:`MAX_INT_DIGITS`, nesting bounded by Python's recursion limit;
- :func:`check_fields` checks a parsed object against a small schema (:class:`Field`) so the
  caller gets typed, validated values.

Every violation is one :class:`VggbenchError` line naming the file (and the field) and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union

from vggbench.errors import VggbenchError

PathLike = Union[str, os.PathLike]
# Integers in vggbench files are counts, sizes and seeds: far below 10**19.
MAX_INT_DIGITS = 19
_CHUNK_BYTES = 1 << 20
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """``"a FIFO (named pipe)"``, ``"a folder"``, ... for a ``st_mode`` that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: PathLike, what: str, *, follow_symlinks: bool = True, fix: str = "") -> int:
    """Open ``path`` read-only and return the descriptor, refusing anything but a regular file.

    Checked twice: ``stat`` before opening (so a device is never opened: opening some has side
    effects) and ``fstat`` on the descriptor after a non-blocking open (so a path swapped for a FIFO
    in between cannot block). The descriptor is left blocking for ordinary reads.

    Parameters:
        path: the file.
        what: what the file is, for the error ("results file", "hosts file").
        follow_symlinks: False refuses a symbolic link (``O_NOFOLLOW``): for files inside a run dir,
            where a link could aim a reader at anything on the machine.
        fix: the end of the error line (what to do); a default is used when empty.
    """
    fix = fix or f"give a regular {what}"
    try:
        before = os.stat(path) if follow_symlinks else os.lstat(path)
    except FileNotFoundError:
        raise VggbenchError(f"{path}: cannot read the {what} (no such file); check the path") from None
    except OSError as err:
        raise VggbenchError(f"{path}: cannot read the {what} ({err.strerror}); check the path and its "
                            f"permissions") from None
    if not stat.S_ISREG(before.st_mode):
        raise VggbenchError(f"{path}: is {file_kind(before.st_mode)}, not a regular {what}; {fix}")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise VggbenchError(f"{path}: cannot open the {what} ({err.strerror}); {fix}") from None
    after = os.fstat(fd)
    if not stat.S_ISREG(after.st_mode) or (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise VggbenchError(f"{path}: was replaced while being opened (now {file_kind(after.st_mode)}); {fix}")
    os.set_blocking(fd, True)
    return fd


def read_bounded(path: PathLike, max_bytes: int, what: str, *, follow_symlinks: bool = True,
                 fix: str = "") -> bytes:
    """The bytes of regular file ``path`` (:func:`open_regular`), refusing one over ``max_bytes``.

    A read loop stops after ``max_bytes + 1`` bytes whatever ``stat`` says, so a file that grows
    while read, or a special file behind a changed path, costs at most the bound in memory.
    """
    fd = open_regular(path, what, follow_symlinks=follow_symlinks, fix=fix)
    chunks, total = [], 0
    try:
        while total <= max_bytes:
            chunk = os.read(fd, min(_CHUNK_BYTES, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise VggbenchError(f"{path}: cannot read the {what} ({err.strerror}); {fix or 'check the file'}") from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise VggbenchError(f"{path}: larger than {max_bytes} bytes, too large for a {what}; "
                            f"{fix or f'give a real {what}'}")
    return b"".join(chunks)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:30]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer {text[:30]}... has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes, source: str, fix: str) -> Any:
    """Strict JSON from ``raw`` (UTF-8): no NaN/Infinity, no overflowing number; one line on failure."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except RecursionError:
        raise VggbenchError(f"{source}: nested too deeply; {fix}") from None
    except UnicodeDecodeError as err:
        raise VggbenchError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start}); {fix}") from None
    except ValueError as err:
        raise VggbenchError(f"{source}: not valid JSON ({err}); {fix}") from None


def read_json(path: PathLike, max_bytes: int, what: str, *, follow_symlinks: bool = True, fix: str = "") -> Any:
    """:func:`read_bounded` then :func:`parse_json`: the parsed value of a small JSON file."""
    fix = fix or f"give a real {what}"
    return parse_json(read_bounded(path, max_bytes, what, follow_symlinks=follow_symlinks, fix=fix), str(path), fix)


def read_text(path: PathLike, max_bytes: int, what: str, *, fix: str = "") -> str:
    """:func:`read_bounded` decoded as UTF-8 (a one-line error otherwise)."""
    raw = read_bounded(path, max_bytes, what, fix=fix)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise VggbenchError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                            f"{fix or f'give a real {what}'}") from None


# --- typed fields ----------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", dict: "an object",
               list: "a list", type(None): "null"}


@dataclasses.dataclass(frozen=True)
class Field:
    """One key of a JSON object: its allowed types, whether it must be there, and a value check.

    ``check`` returns True for a good value; ``wanted`` says what a good value is, for the error.
    ``int`` accepts integers only; a bool is never a number (JSON ``true`` is not a count).
    """

    kinds: Tuple[type, ...]
    required: bool = False
    check: Optional[Callable[[Any], bool]] = None
    wanted: str = ""


def is_kind(value: Any, kinds: Tuple[type, ...]) -> bool:
    """isinstance without the bool-is-an-int surprise."""
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def short(value: Any, limit: int = 40) -> str:
    """``value`` as at most ``limit`` characters of JSON, for error lines."""
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_fields(obj: Any, schema: Mapping[str, Any], source: str, where: str = "", fix: str = "") -> None:
    """Check ``obj`` (a parsed JSON object) against ``schema`` (key -> :class:`Field`, or the
    ``(kinds, required, check, wanted)`` tuple) and raise a one-line error naming ``source`` and the
    key otherwise. Unknown keys are allowed (a newer writer may add some).

    Parameters:
        obj: the parsed value (must be a dict).
        schema: the fields checked.
        source: the file named in errors.
        where: the path of ``obj`` inside the file (``"'variants'['int8']."``), prefixed to keys.
        fix: what to do, ending the line (default: re-run the step that wrote it).
    """
    fix = fix or "re-run the step that wrote it"
    if not isinstance(obj, dict):
        raise VggbenchError(f"{source}: {where.rstrip('.') or 'the file'} is {type_name(obj)}, expected an object; "
                            f"{fix}")
    for key, spec in schema.items():
        spec = spec if isinstance(spec, Field) else Field(*spec)
        if key not in obj:
            if spec.required:
                raise VggbenchError(f"{source}: missing key {where}{key!r}; {fix}")
            continue
        value = obj[key]
        if not is_kind(value, spec.kinds):
            expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in spec.kinds
                                   if not (k is int and float in spec.kinds))
            raise VggbenchError(f"{source}: key {where}{key!r} is {type_name(value)} ({short(value)}), expected "
                                f"{expected}; {fix}")
        if spec.check is not None and not spec.check(value):
            raise VggbenchError(f"{source}: key {where}{key!r} is {short(value)}, expected {spec.wanted}; {fix}")


def check_list(value: Any, source: str, where: str, max_items: int, fix: str = "") -> list:
    """``value`` as a list of at most ``max_items`` items, else a one-line error."""
    fix = fix or "re-run the step that wrote it"
    if not isinstance(value, list):
        raise VggbenchError(f"{source}: key {where} is {type_name(value)}, expected a list; {fix}")
    if len(value) > max_items:
        raise VggbenchError(f"{source}: key {where} has {len(value)} items, more than {max_items}; {fix}")
    return value


def finite(low: Optional[float] = None, high: Optional[float] = None) -> Callable[[Any], bool]:
    """A :class:`Field` check: a finite number within ``[low, high]`` (either end open when None)."""
    def check(value) -> bool:
        return (value is None or (math.isfinite(value) and (low is None or value >= low)
                                  and (high is None or value <= high)))
    return check


NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))


def is_regular_file(path: Path) -> bool:
    """True when ``path`` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


JsonObject = Dict[str, Any]


# --- ONNX models -------------------------------------------------------------------------------------

_ONNX_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL


def _onnx_tensors(graph):
    yield from graph.initializer
    yield from (sparse.values for sparse in graph.sparse_initializer)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _onnx_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _onnx_tensors(subgraph)


def refuse_external_data(model: Any, path: PathLike) -> None:
    """Refuse an ONNX model (a ``ModelProto`` loaded with ``load_external_data=False``) that keeps
    tensors in external files.

    vggbench never writes external data, and the manifest's sha256 covers ``model.onnx`` only: a
    ``weights.bin`` beside it would be loaded unchecked. One line naming the file and the tensor.
    """
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location == _ONNX_EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "?")
            raise VggbenchError(f"{path}: tensor {tensor.name!r} keeps its data in the external file {location!r}, "
                                f"which no sha256 covers (vggbench never writes external data); re-export the "
                                f"run dir")
