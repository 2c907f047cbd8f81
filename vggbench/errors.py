"""The one error type users can cause, the exit codes, and one-line summaries of library errors.

Anything a user can get wrong (a model name, a missing data file, a tampered artifact, a GPU that
is not there) raises :class:`VggbenchError` with a message that names the input and the fix. The
CLI prints it on one line and exits non-zero; bugs still raise normally with a traceback.

Exit codes (what ``vggbench`` returns; CI can rely on them):

==========================  ====  ==========================================================
``EXIT_OK``                    0  everything requested finished (rows ``ok``, or ``unavailable``
                                  in a default sweep)
``EXIT_USER_ERROR``            1  a user error or a refused artifact, reported before any
                                  measuring starts
``EXIT_MEASUREMENT_FAILED``    3  some rows failed while measuring; the results JSON is still
                                  written with the failed rows marked
``EXIT_INTERRUPTED``         130  Ctrl-C (SIGINT)
``EXIT_TERMINATED``          143  SIGTERM (``kill``, a batch scheduler, ``docker stop``)
``EXIT_USAGE``                 2  an argument error (argparse): one line and a pointer to ``--help``
==========================  ====  ==========================================================

``vggbench launch`` and the KVStore processes add: 4 (a distributed watchdog ended a worker,
server or scheduler: a peer died or a wait outlived ``$VGGBENCH_DIST_TIMEOUT_S``), 124 (the job
ran past ``launch --timeout``), 127 (a process could not be started) and 128+N (a process was
killed by signal N, e.g. 134 = SIGABRT of a scheduler fed a malformed message, 137 = SIGKILL).
The full table is in docs/failure-behaviour.md.

SIGTERM is turned into :class:`Terminated`, a :class:`KeyboardInterrupt`, by
:func:`install_sigterm_handler`, so every ``except KeyboardInterrupt`` / ``finally`` cleanup path
written for Ctrl-C (temp files, partial run dirs, worker processes) runs for SIGTERM too.
"""

from __future__ import annotations

import re
import signal
import threading
from typing import Callable, Optional, Union

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_MEASUREMENT_FAILED = 3
EXIT_USAGE = 2  # argparse's code for an argument error
EXIT_INTERRUPTED = 130  # 128 + SIGINT (2), what a shell reports for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM (15)


class VggbenchError(Exception):
    """A problem with the user's input or machine, explained in one line."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A ``KeyboardInterrupt`` so the Ctrl-C cleanup paths run; exit code 143."""

    exit_code = EXIT_TERMINATED


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated(f"terminated by signal {signum} (SIGTERM)")


def install_sigterm_handler() -> Optional[Callable]:
    """Make SIGTERM raise :class:`Terminated` in the main thread, like Ctrl-C raises
    ``KeyboardInterrupt``; return the previous handler (for restoring it).

    Call it once at the start of the command line's ``main``. From a thread other than the main
    one, Python cannot install signal handlers: then nothing changes and None is returned. Like
    Ctrl-C, the exception is raised between Python bytecodes, so a long MXNet/ORT call finishes
    first; a second SIGTERM during cleanup raises again (SIGKILL cannot be caught at all: what a
    killed run leaves behind is removed by the next ``--resume``/``--force``).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an exception that ends a command.

    Parameters:
        error: what stopped the command. :class:`Terminated` -> 143, another
            ``KeyboardInterrupt`` -> 130, :class:`VggbenchError` -> 1; anything else is a bug and
            is not mapped here (re-raise it so it keeps its traceback): ValueError is raised.
    """
    if isinstance(error, Terminated):
        return EXIT_TERMINATED
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(error, VggbenchError):
        return EXIT_USER_ERROR
    raise ValueError(f"no exit code for {type(error).__name__}: it is a bug, let it raise")


# --- one-line summaries of MXNet / ONNX Runtime / Python errors ------------------------------------

SUMMARY_MAX_CHARS = 300
_PYTHON_FRAME = re.compile(r'^File ".*", line \d+, in ')  # a Python traceback frame (code follows)
_NATIVE_FRAME = re.compile(r'^File ".*", line \d+$')  # MXNet's C++ location line
_MXNET_PREFIX = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+:\d+: ")  # "[09:22:22] ../src/x.cc:192: "
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : (\w+) : ")  # "[ONNXRuntimeError] : 2 : CODE : "
# Terminal colour codes (ONNX Runtime colours its log lines: "\x1b[1;31m ... \x1b[m").
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOISE = ("Traceback (most recent call last):", "During handling of the above exception",
          "The above exception was the direct cause")


def summarize_error(error: Union[BaseException, str], max_chars: int = SUMMARY_MAX_CHARS) -> str:
    """The meaningful line of an MXNet, ONNX Runtime or Python error, as one line.

    MXNet puts ``Traceback (most recent call last):`` and a C++ ``File "...", line N`` first and the
    message after it (often after ``MXNetError:``, with a ``[hh:mm:ss] file:line:`` prefix and a
    ``Stack trace:`` after it); ONNX Runtime starts with ``[ONNXRuntimeError] : 2 :
    INVALID_ARGUMENT :`` and may continue on more lines; a Python traceback ends with its
    ``Type: message`` line. The summary drops the headers, frames, prefixes and stack traces.

    Parameters:
        error: an exception, or its text (for example a worker process's stderr).
        max_chars: longer summaries are cut to this many characters, ending in "...".

    Returns the message on one line (whitespace collapsed); an exception with no text gives its
    type name.
    """
    raw = [line.rstrip() for line in strip_ansi(str(error)).replace("\r", "").split("\n")]
    if any(line.strip() == "Stack trace:" for line in raw):  # MXNet's native backtrace: [bt] (0) ...
        raw = raw[:[line.strip() for line in raw].index("Stack trace:")]
    raw = [line for line in raw if line.strip() and not line.strip().startswith("[bt] (")]
    lines = [line.strip() for line in raw]
    summary = (_mxnet_message(lines) or _ort_message(lines) or _last_python_line(raw)
               or _first_plain_line(lines))
    if not summary and isinstance(error, BaseException):
        summary = type(error).__name__
    summary = " ".join(summary.split())
    if len(summary) > max_chars:
        summary = summary[:max_chars - 3].rstrip() + "..."
    return summary


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour/cursor escape sequences (what ONNX Runtime's logger adds)."""
    return ANSI_ESCAPE.sub("", text)


def _mxnet_message(lines) -> str:
    marked = [line for line in lines if "MXNetError:" in line]
    if not marked:
        return ""
    message = marked[-1].rsplit("MXNetError:", 1)[1].strip()
    return _MXNET_PREFIX.sub("", message)


def _ort_message(lines) -> str:
    for index, line in enumerate(lines):
        start = line.find("[ONNXRuntimeError]")
        if start >= 0:
            head = _ORT_PREFIX.sub(r"\1: ", line[start:])
            return " ".join([head] + lines[index + 1:])
    return ""


def _last_python_line(raw_lines) -> str:
    """The ``Type: message`` line(s) ending a Python traceback: the unindented lines after the
    last frame (its indented code and ``^^^`` marker lines dropped)."""
    frames = [index for index, line in enumerate(raw_lines) if _PYTHON_FRAME.match(line.strip())]
    if not frames:
        return ""
    rest = [line.strip() for line in raw_lines[frames[-1] + 1:]
            if not line[:1].isspace() and not line.startswith(_NOISE)]
    return " ".join(rest)


def _first_plain_line(lines) -> str:
    for line in lines:
        if line.startswith(_NOISE) or _NATIVE_FRAME.match(line) or _PYTHON_FRAME.match(line):
            continue
        return _MXNET_PREFIX.sub("", line)
    return ""
