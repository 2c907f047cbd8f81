"""One writer per run dir (an advisory ``flock`` recording pid, host, purpose, start), one filler at a
time per shared cache folder, and leftovers of killed runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from vggbench.artifacts.io import PathLike
from vggbench.artifacts.reader import file_kind
from vggbench.errors import VggbenchError

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
        fd, holder = _try_lock(lock_path, "use a local --out")
        if fd is None and holder is not None:
            raise VggbenchError(f"{run_dir} is in use by {describe_holder(holder)}; wait for it to finish, or "
                                f"write elsewhere with another --name")
        if fd is None:
            continue
        previous = _read_record(fd)
        holder = _record_holder(fd, purpose)
        return RunDirLock(run_dir, lock_path, holder, previous or None, fd, created_dirs=tuple(missing))
    raise VggbenchError(f"cannot take the lock {lock_path}: it keeps being replaced by another process; "
                        f"is another vggbench writing {run_dir}?")


def _try_lock(lock_path: Path, fix: str) -> Tuple[Optional[int], Optional[Dict[str, Any]]]:
    """One non-blocking attempt at ``lock_path``: ``(fd, None)`` when taken; ``(None, holder)`` when
    another live process holds it; ``(None, None)`` to try again (the file was replaced between open
    and flock, or a lock left by an orphaned descendant of a dead holder was removed). A file system
    without locks is a one-line :class:`VggbenchError` ending in ``fix``."""
    fd = _open_lock_file(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_record(fd)
        os.close(fd)
        if holder and _is_dead_here(holder):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            return None, None
        return None, holder or {}
    except OSError as err:  # ENOLCK/EOPNOTSUPP: a file system without locks (old NFS)
        os.close(fd)
        raise VggbenchError(f"cannot lock {lock_path} ({err.strerror}): this file system has no file locks; "
                            f"{fix}") from None
    if not _same_file(fd, lock_path):
        os.close(fd)
        return None, None
    return fd, None


def _record_holder(fd: int, purpose: str) -> Dict[str, Any]:
    """Write this process's holder record into the locked file ``fd``; return it."""
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "pid_start": _process_start(os.getpid())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
    os.fsync(fd)
    return holder


def _open_lock_file(lock_path: Path) -> int:
    """Open (creating it if missing) the lock file at ``lock_path`` for reading and writing, safely
    in a folder other users can write (a shared ``--out``).

    Created with ``O_CREAT|O_EXCL`` when missing; an existing one is opened with ``O_NOFOLLOW``
    (a symbolic link named like the lock cannot aim the write at another file) and ``O_NONBLOCK``
    (a FIFO cannot block), then ``fstat`` must show a regular file with one link (not a hard link
    to someone else's file). Anything else is refused in one line; nothing is truncated or written
    before these checks.
    """
    base = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
    try:
        try:
            fd = os.open(lock_path, base | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(lock_path, base)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise VggbenchError(f"the lock file {lock_path} is a symbolic link, which vggbench never makes; "
                                f"remove it (someone may be aiming writes at another file), then run again") from None
        if err.errno == errno.EISDIR:
            raise VggbenchError(f"the lock file {lock_path} is a folder, not a lock file vggbench made; remove it, "
                                f"then run again") from None
        raise VggbenchError(f"cannot create the lock file {lock_path} ({err.strerror}); choose a writable "
                            f"--out") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = file_kind(info.st_mode) if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} hard links"
        raise VggbenchError(f"the lock file {lock_path} is {what}, not a lock file vggbench made; remove it, then "
                            f"run again")
    os.set_blocking(fd, True)
    return fd


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


_RECORD_KEYS = {"pid": int, "host": str, "purpose": str, "started": str, "pid_start": int}


def _read_record(fd: int) -> Dict[str, Any]:
    """The holder record in a lock file (at most 4 kB): only its known keys with their types, strings
    cut to one short line, so a crafted record cannot break the one-line message that quotes it."""
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
    except (ValueError, RecursionError):
        return {}
    if not isinstance(record, dict):
        return {}
    clean: Dict[str, Any] = {}
    for key, kind in _RECORD_KEYS.items():
        value = record.get(key)
        if isinstance(value, kind) and not isinstance(value, bool):
            clean[key] = "".join(ch for ch in value if ch.isprintable())[:80] if kind is str else value
    return clean


def read_lock_holder(run_dir: PathLike) -> Optional[Dict[str, Any]]:
    """The record of whoever holds ``run_dir``'s lock now, or None when it is free.

    For messages and tests. It tests the lock by taking a shared lock for an instant, so a writer
    starting in that instant is refused as if the run dir were in use: do not poll it next to a
    writer that must not fail.
    """
    lock_path = lock_path_for(run_dir)
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise VggbenchError(f"cannot read the lock file {lock_path} ({err.strerror}); remove it if no vggbench "
                            f"is writing {run_dir}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise VggbenchError(f"the lock file {lock_path} is not a regular file; remove it")
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


# --- one filler at a time per cache folder ---------------------------------------------------------

CACHE_LOCK_POLL_S = 0.2  # how often a waiting process tries the lock again


@contextlib.contextmanager
def cache_lock(folder: PathLike, purpose: str, timeout_s: float, work: str = "writing",
               log: Optional[Callable[[str], None]] = None) -> Iterator[RunDirLock]:
    """Hold the exclusive lock of the cache ``folder`` while filling it, waiting for another holder.

    For caches that readers of a run dir fill (``bench`` on ``ort-trt`` builds TensorRT engines into
    ``cache/tensorrt``): two processes writing one cache file at once could leave a half-written
    file for a third to load. Unlike :func:`run_dir_lock` it waits rather than refuses, as the
    second process then finds the finished cache, and it is not re-entrant. Same lock file as
    :func:`run_dir_lock` (``<parent>/.<name>.lock``, the holder's record in it, released and removed
    on every exit path); a lock left by a dead process does not block (the kernel dropped it).

    Parameters:
        folder: the cache folder (created if missing, and kept).
        purpose: what this process does, recorded for waiters' messages ("vggbench ort-trt fp16").
        timeout_s: how long to wait for another holder before giving up.
        work: what holders of this folder do, for the messages ("building TensorRT engines").
        log: called once with a one-line message when this process has to wait; None: silent.

    Yields the held lock (:class:`RunDirLock`, its ``run_dir`` the cache folder). Raises
    :class:`VggbenchError` when the lock is still held after ``timeout_s``, or the folder cannot
    hold a lock file.
    """
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VggbenchError(f"cannot create the cache folder {folder} ({err.strerror}); make the run dir "
                            f"writable") from None
    lock = _wait_for_cache(folder, lock_path_for(folder), purpose, timeout_s, work, log)
    try:
        yield lock
    finally:
        _release(lock)


def _wait_for_cache(folder: Path, lock_path: Path, purpose: str, timeout_s: float, work: str,
                    log: Optional[Callable[[str], None]]) -> RunDirLock:
    deadline, said = time.monotonic() + timeout_s, False
    while True:
        fd, holder = _try_lock(lock_path, "put the run dir on a local disk")
        if fd is None and holder is not None:
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise VggbenchError(f"{folder} is still locked by {describe_holder(holder)} {work} there after "
                                    f"{timeout_s:g} s of waiting; let it finish (end it if it hangs), then run "
                                    f"again") from None
            if not said and log is not None:
                log(f"waiting for {describe_holder(holder)} {work} in {folder}")
                said = True
            time.sleep(min(CACHE_LOCK_POLL_S, left_s))
            continue
        if fd is None:
            continue
        try:
            previous = _read_record(fd)
            return RunDirLock(folder, lock_path, _record_holder(fd, purpose), previous or None, fd)
        except BaseException:
            os.close(fd)
            raise


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


# --- --force: build the new run beside the old one, swap on success -------------------------------

_FORCE_KINDS = ("force", "old")  # .<name>.force.<pid>: the new run being built; .<name>.old.<pid>: mid-swap


def _beside(run_dir: Path, kind: str, pid: int) -> Path:
    return run_dir.parent / f".{run_dir.name}.{kind}.{pid}"


def force_staging_dir(run_dir: PathLike) -> Path:
    """A fresh, empty folder beside ``run_dir`` (``<parent>/.<name>.force.<pid>``) where ``--force``
    builds the new run, so the old run stays whole, and resumable, until :func:`swap_in`.

    Call it while holding :func:`run_dir_lock`; the leading dot keeps it out of run-dir listings.
    """
    run_dir = Path(os.path.abspath(run_dir))
    staging = _beside(run_dir, "force", os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def swap_in(staging: PathLike, run_dir: PathLike) -> Path:
    """Put the finished run in ``staging`` at ``run_dir`` and delete the old run; return ``run_dir``.

    One atomic exchange where the kernel and file system offer it; elsewhere two renames through
    ``.<name>.old.<pid>``, which :func:`remove_force_leftovers` puts back if a kill falls between
    them. Hold :func:`run_dir_lock` while calling it.
    """
    staging, run_dir = Path(staging), Path(os.path.abspath(run_dir))
    if not run_dir.exists():
        os.rename(staging, run_dir)
    elif _exchange(staging, run_dir):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old run
    else:
        old = _beside(run_dir, "old", os.getpid())
        os.rename(run_dir, old)
        os.rename(staging, run_dir)
        shutil.rmtree(old, ignore_errors=True)
    return run_dir


def remove_force_leftovers(run_dir: PathLike) -> List[Path]:
    """Delete what an interrupted ``--force`` left beside ``run_dir`` (its half-built new run) and
    put back an old run a kill left mid-swap; return the paths handled. Folders of a live process
    are kept. Call it while holding :func:`run_dir_lock`."""
    run_dir = Path(os.path.abspath(run_dir))
    handled: List[Path] = []
    try:
        names = os.listdir(run_dir.parent)
    except OSError:
        return handled
    prefix = f".{run_dir.name}."
    for name in sorted(names):
        kind, _, pid = name[len(prefix):].partition(".") if name.startswith(prefix) else ("", "", "")
        if kind not in _FORCE_KINDS or not pid.isdigit() or (int(pid) != os.getpid() and pid_alive(int(pid))):
            continue
        path = run_dir.parent / name
        if kind == "old" and not os.path.lexists(run_dir):
            os.rename(path, run_dir)
        else:
            shutil.rmtree(path, ignore_errors=True)
        handled.append(path)
    return handled
