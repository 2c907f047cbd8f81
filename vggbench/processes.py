"""Child processes: start with pipes, read with a deadline, end (process group first), and say in
one line how a child ended.

Three supervisors use it: the bench worker protocol (:mod:`vggbench.bench.worker`), doctor's smoke
processes (:mod:`vggbench.doctor`) and ``vggbench launch``
(:mod:`vggbench.train.distributed.launch`). Each keeps its own policy (what a timeout means, what
to print); what they share -- how to wait without hanging, how to end a child and its children,
how to name a signal -- lives here. Imports nothing above :mod:`vggbench.errors`.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from typing import Dict, List, Optional, Sequence

from vggbench.errors import summarize_error

OOM_HINT = " (out of memory?)"


class ChildTimedOut(Exception):
    """A child did not answer or finish within its limit (it has been ended); ``str()`` is one line."""


class ChildEnded(Exception):
    """A child closed its output before answering (it exited or was killed)."""


def signal_name(returncode: int) -> Optional[str]:
    """``SIGKILL`` for a child killed by signal 9 (``returncode`` -9); None for a normal exit."""
    if returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def describe_exit(returncode: int, stderr: str, who: str = "worker") -> str:
    """One line for a child that ended: the signal (an OOM hint for SIGKILL) or its error message.

    Parameters:
        returncode: the process's return code (negative = killed by that signal).
        stderr: what it wrote to stderr.
        who: how the message names the child.
    """
    name = signal_name(returncode)
    if name:
        return f"{who} killed by {name}{OOM_HINT if name == 'SIGKILL' else ''}"
    return f"{who} exited with code {returncode}: {summarize_error(stderr) or 'no message'}"


def start(argv: Sequence[str], env: Optional[Dict[str, str]] = None, stdin=subprocess.PIPE,
          stdout=subprocess.PIPE, stderr=None, own_group: bool = False) -> subprocess.Popen:
    """Start ``argv``. ``own_group``: the child leads a new process group (session), so
    :func:`end` reaches what it starts too and a terminal's Ctrl-C reaches only the parent."""
    return subprocess.Popen(list(argv), env=env, stdin=stdin, stdout=stdout, stderr=stderr,
                            start_new_session=own_group)


def send_signal(popen: subprocess.Popen, sig: int) -> None:
    """``sig`` to the child's process group when it leads one, else to the child; gone is fine."""
    try:
        if os.getpgid(popen.pid) == popen.pid:
            os.killpg(popen.pid, sig)
        else:
            popen.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass


def end(processes: Sequence[subprocess.Popen], grace_s: float, first: Optional[int] = signal.SIGTERM) -> int:
    """End every live child: ``first`` (SIGTERM; None skips straight to SIGKILL), then SIGKILL what
    is left after ``grace_s``; every child is reaped. Returns how many were still running."""
    alive = [p for p in processes if p.poll() is None]
    if first is not None:
        for popen in alive:
            send_signal(popen, first)
        deadline = time.monotonic() + grace_s
        for popen in alive:
            try:
                popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    for popen in alive:
        if popen.poll() is None:
            send_signal(popen, signal.SIGKILL)
            popen.wait()
    return len(alive)


class LineReader:
    """Lines from a child's output pipe, each read with a deadline (``select``, never a blocking read)."""

    def __init__(self, stream):
        self._fd = stream.fileno()
        self._buffer = b""

    def readline(self, timeout_s: Optional[float]) -> bytes:
        """The next line without its newline. Raises :class:`ChildTimedOut` after ``timeout_s``
        (None: wait forever) and :class:`ChildEnded` when the pipe closes first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], wait)
            if not ready:
                raise ChildTimedOut(f"no answer within {timeout_s:g} s")
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise ChildEnded("the child closed its output")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


def run_bounded(argv: Sequence[str], env: Optional[Dict[str, str]], timeout_s: float,
                who: str = "child process") -> subprocess.CompletedProcess:
    """Run ``argv`` to its end with stdout discarded and stderr captured (bytes), in its own process
    group; past ``timeout_s`` the group is killed and :class:`ChildTimedOut` says so in one line."""
    popen = start(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                  own_group=True)
    try:
        _, stderr = popen.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        end([popen], 0.0, first=None)
        popen.communicate()
        raise ChildTimedOut(f"the {who} timed out after {timeout_s:g} s") from None
    finally:
        end([popen], 0.0, first=None)
    return subprocess.CompletedProcess(list(argv), popen.returncode, None, stderr)


__all__: List[str] = ["ChildEnded", "ChildTimedOut", "LineReader", "OOM_HINT", "describe_exit", "end",
                      "run_bounded", "send_signal", "signal_name", "start"]
