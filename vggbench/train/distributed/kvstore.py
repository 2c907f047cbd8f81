"""KVStore names, the distributed environment (roles, ranks), the watchdog that bounds every wait, and KVStore creation.

ps-lite waits forever for a peer that died; :class:`KVStoreWatchdog` bounds every KVStore
operation and ends the process with :data:`WATCHDOG_EXIT_CODE` and one line when one does not
return in time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

from vggbench.errors import VggbenchError

LOCAL_KVSTORES = ("device", "local")
DIST_KVSTORES = ("dist_sync", "dist_device_sync", "dist_async")
KVSTORES = LOCAL_KVSTORES + DIST_KVSTORES
ROLES = ("worker", "server", "scheduler")
# What ps-lite reads to join a job (see mxnet/tools/launch.py's dmlc tracker).
REQUIRED_ENV = ("DMLC_ROLE", "DMLC_PS_ROOT_URI", "DMLC_PS_ROOT_PORT", "DMLC_NUM_WORKER", "DMLC_NUM_SERVER")
TIMEOUT_ENV = "VGGBENCH_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300.0
# Exit status of a process the watchdog ends (a KVStore operation did not return in time).
WATCHDOG_EXIT_CODE = 4
# Set by ``vggbench launch`` to its own pid: a child whose launcher is gone ends itself.
PARENT_PID_ENV = "VGGBENCH_LAUNCH_PID"
# Keys for rank-0 broadcasts. The Trainer uses 0..params-1; MXNet's dist KVStore places a small
# key on server ``key * 9973 % servers`` in 32-bit ints, so keys stay far below 2**31 / 9973.
CONTROL_KEY_BASE = 100_000
CONTROL_KEY_LIMIT = 200_000


# --- names and environment -------------------------------------------------------------------------

def check_kvstore(name: str) -> str:
    """``name`` (a ``--kvstore`` value, any case) normalised, or a one-line VggbenchError."""
    normal = (name or "").strip().lower()
    if normal not in KVSTORES:
        raise VggbenchError(f"--kvstore {name!r} is not a KVStore type vggbench runs; "
                            f"choose from {', '.join(KVSTORES)}")
    return normal


def is_distributed(kvstore_name: str) -> bool:
    """True for the multi-machine types (``dist_*``), which need the ``DMLC_*`` environment."""
    return check_kvstore(kvstore_name) in DIST_KVSTORES


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a job.

    ``kvstore``: the KVStore type; ``role``: worker, server or scheduler (``DMLC_ROLE``);
    ``rank``: this worker's rank (assigned by the KVStore: 0 until it exists); ``num_workers`` /
    ``num_servers``: ``DMLC_NUM_WORKER`` / ``DMLC_NUM_SERVER`` (1 / 0 without ``dist_*``);
    ``root_uri`` / ``root_port``: the scheduler's address (None without ``dist_*``).
    """

    kvstore: str
    role: str = "worker"
    rank: int = 0
    num_workers: int = 1
    num_servers: int = 0
    root_uri: Optional[str] = None
    root_port: Optional[int] = None

    @property
    def distributed(self) -> bool:
        return self.kvstore in DIST_KVSTORES

    @property
    def is_rank0(self) -> bool:
        """The one worker that evaluates, checkpoints, exports and writes the run dir."""
        return self.rank == 0

    @classmethod
    def from_env(cls, kvstore: str, env: Optional[Mapping[str, str]] = None) -> "DistInfo":
        """Read the ``DMLC_*`` variables for ``kvstore`` from ``env`` (default ``os.environ``).

        A ``dist_*`` type with a variable missing or malformed is a one-line VggbenchError that
        names the variables and how to get them (``vggbench launch``); a local type ignores them.
        """
        kvstore = check_kvstore(kvstore)
        if kvstore not in DIST_KVSTORES:
            return cls(kvstore=kvstore)
        env = os.environ if env is None else env
        missing = [name for name in REQUIRED_ENV if not str(env.get(name, "")).strip()]
        if missing:
            raise VggbenchError(f"--kvstore {kvstore} needs the environment variables {', '.join(REQUIRED_ENV)}; "
                                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start the job "
                                f"with vggbench launch, or set them as the README's cluster recipe shows")
        role = env["DMLC_ROLE"].strip().lower()
        if role not in ROLES:
            raise VggbenchError(f"DMLC_ROLE={env['DMLC_ROLE']!r} is not one of {', '.join(ROLES)}")
        numbers = {}
        for name, low in (("DMLC_PS_ROOT_PORT", 1), ("DMLC_NUM_WORKER", 1), ("DMLC_NUM_SERVER", 1)):
            text = env[name].strip()
            if not text.isdigit() or int(text) < low or (name.endswith("PORT") and int(text) > 65535):
                raise VggbenchError(f"{name}={text!r} must be a whole number >= {low}"
                                    f"{' and <= 65535' if name.endswith('PORT') else ''}")
            numbers[name] = int(text)
        return cls(kvstore=kvstore, role=role, num_workers=numbers["DMLC_NUM_WORKER"],
                   num_servers=numbers["DMLC_NUM_SERVER"], root_uri=env["DMLC_PS_ROOT_URI"].strip(),
                   root_port=numbers["DMLC_PS_ROOT_PORT"])


def resolve_timeout_s(timeout_s: Optional[float] = None, env: Optional[Mapping[str, str]] = None) -> float:
    """The bound on one KVStore wait: ``timeout_s``, else ``$VGGBENCH_DIST_TIMEOUT_S``, else
    :data:`DEFAULT_TIMEOUT_S` (300 s; it must cover rank 0's per-epoch evaluation and checkpoint,
    which the other workers wait for)."""
    if timeout_s is None:
        text = (os.environ if env is None else env).get(TIMEOUT_ENV, "").strip()
        if not text:
            return DEFAULT_TIMEOUT_S
        try:
            timeout_s = float(text)
        except ValueError:
            raise VggbenchError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise VggbenchError(f"the KVStore timeout must be a finite number of seconds > 0, got {timeout_s}")
    return float(timeout_s)


# --- the watchdog ----------------------------------------------------------------------------------

class KVStoreWatchdog:
    """Ends the process when a guarded KVStore operation does not return within a bound.

    ps-lite blocks forever on a push, pull or barrier whose peer died. Wrap each wait in
    :meth:`guard`; a background thread ends the process with ``os._exit(exit_code)`` (default
    :data:`WATCHDOG_EXIT_CODE`, 4) after writing one line to ``stream`` (stderr) when the wait
    outlives its bound. ``os._exit`` because the main thread is stuck inside MXNet's C++ and
    cannot raise. The thread also ends the process when the ``vggbench launch`` that started it
    is gone (``$VGGBENCH_LAUNCH_PID`` names it), so a killed launcher leaves no orphans.

    Parameters: ``timeout_s``: the default bound (:func:`resolve_timeout_s`); ``label``: who we
    are in the message (``rank 1``; :meth:`set_label` once the rank is known); ``exit_code``;
    ``stream``: where the line goes; ``poll_s``: how often the thread looks.
    """

    def __init__(self, timeout_s: Optional[float] = None, label: str = "worker",
                 exit_code: int = WATCHDOG_EXIT_CODE, stream=None, poll_s: float = 0.5):
        self.timeout_s = resolve_timeout_s(timeout_s)
        self.label = label
        self.exit_code = exit_code
        self._stream = stream
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._armed: Optional[Tuple[str, float, float]] = None  # (what, deadline, bound)
        self._closed = False
        self._parent = _launcher_parent()
        self._thread = threading.Thread(target=self._watch, name="vggbench-kvstore-watchdog", daemon=True)
        self._thread.start()

    def set_label(self, label: str) -> None:
        """Name this process in the message (e.g. ``rank 1 of 2``)."""
        self.label = label

    @contextlib.contextmanager
    def guard(self, what: str, timeout_s: Optional[float] = None) -> Iterator[None]:
        """Bound the ``with`` body to ``timeout_s`` (default: the watchdog's); ``what`` says in
        the message what was being waited for. Guards do not nest."""
        bound = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._cond:
            self._armed = (what, time.monotonic() + bound, bound)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._armed = None
                self._cond.notify_all()

    def close(self) -> None:
        """Stop watching (the thread exits at its next look)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                armed = self._armed
                now = time.monotonic()
                if armed is not None and now >= armed[1]:
                    what, _, bound = armed
                    self._die(f"{what} did not finish within {bound:g} s: a worker, server or the scheduler has "
                              f"probably died (or is slower than the bound: raise {TIMEOUT_ENV})")
                wait = self._poll_s if armed is None else min(self._poll_s, max(armed[1] - now, 0.0))
                self._cond.wait(timeout=wait)
            if self._parent is not None and os.getppid() != self._parent:
                self._die(f"vggbench launch (pid {self._parent}) is gone")

    def _die(self, reason: str) -> None:
        stream = self._stream or sys.stderr
        try:
            stream.write(f"vggbench: {self.label}: {reason}; exiting with status {self.exit_code}\n")
            stream.flush()
        finally:
            os._exit(self.exit_code)


def established_tcp_connections(pid: str = "self") -> int:
    """How many ESTABLISHED TCP connections (IPv4 and IPv6) process ``pid`` holds (Linux ``/proc``);
    -1 where that cannot be read."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        count = 0
        for table in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{pid}/net/{table}") as handle:
                    next(handle, None)
                    for line in handle:
                        fields = line.split()
                        if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                            count += 1
            except FileNotFoundError:
                continue
        return count
    except OSError:
        return -1


class PeerWatchdog:
    """Ends a scheduler or server process whose job lost a peer and did not end.

    ps-lite's scheduler and servers wait forever for a worker that died: with no launcher to end
    them (a job started by hand, by Slurm or Kubernetes) they would run on. A background thread
    counts this process's established TCP connections (one or more per peer): once a count seen
    before drops (a peer closed or died) and stays below it for ``timeout_s``
    (:func:`resolve_timeout_s`, ``$VGGBENCH_DIST_TIMEOUT_S``), the process writes one line and
    ends with ``os._exit(exit_code)`` (4), as a worker's :class:`KVStoreWatchdog` does. A job that
    ends normally ends its scheduler and servers long before that. Where ``/proc`` cannot be read
    the thread does nothing. The thread looks every ``poll_s``: a peer that dies within that time of
    the job's last node connecting is not seen as a drop; the next one is (a surviving worker's own
    watchdog ends it within the same bound), so the scheduler and servers still end.

    Parameters: ``timeout_s``; ``label`` (``scheduler``, ``server``); ``exit_code``; ``stream``
    (stderr); ``poll_s``; ``count``: the connection counter (for tests).
    """

    def __init__(self, timeout_s: Optional[float] = None, label: str = "scheduler",
                 exit_code: int = WATCHDOG_EXIT_CODE, stream=None, poll_s: float = 0.25,
                 count=established_tcp_connections):
        self.timeout_s = resolve_timeout_s(timeout_s)
        self.label = label
        self.exit_code = exit_code
        self._stream = stream
        self._poll_s = poll_s
        self._count = count
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vggbench-peer-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        peak, since = 0, None
        while not self._closed.wait(self._poll_s):
            now_count = self._count()
            if now_count < 0:
                return
            if now_count >= peak:
                peak, since = now_count, None
                continue
            since = time.monotonic() if since is None else since
            if time.monotonic() - since >= self.timeout_s:
                stream = self._stream or sys.stderr
                try:
                    stream.write(f"vggbench: {self.label}: a peer (worker or server) disconnected and the job did not "
                                 f"end within {self.timeout_s:g} s ({now_count} of {peak} connections left): a worker "
                                 f"probably died; exiting with status {self.exit_code} (bound: {TIMEOUT_ENV})\n")
                    stream.flush()
                finally:
                    os._exit(self.exit_code)


def _launcher_parent() -> Optional[int]:
    """The launcher's pid when it is this process's parent (so its death is noticeable)."""
    text = os.environ.get(PARENT_PID_ENV, "").strip()
    if text.isdigit() and int(text) == os.getppid():
        return int(text)
    return None


# --- the KVStore -----------------------------------------------------------------------------------

def create_kvstore(name: str, watchdog: Optional[KVStoreWatchdog] = None,
                   env: Optional[Mapping[str, str]] = None):
    """``mx.kv.create(name)`` and this process's :class:`DistInfo` (with its rank).

    ``name``: one of :data:`KVSTORES`; ``watchdog``: bounds the wait for every node to join a
    ``dist_*`` job (ps-lite otherwise waits forever for a node that never starts); ``env``: the
    ``DMLC_*`` variables, checked first (default ``os.environ``; ps-lite itself always reads
    ``os.environ``). Returns ``(kvstore, info)``.
    """
    from vggbench.platform.mxnet import import_mxnet

    info = DistInfo.from_env(name, env)
    if info.distributed and info.role != "worker":
        raise VggbenchError(f"DMLC_ROLE={info.role}: this process is meant to be a {info.role}; run "
                            f"python -m vggbench.train.distributed for it, and vggbench train-export only as a worker")
    mx = import_mxnet()
    guard = watchdog.guard(f"joining the {info.kvstore} job at {info.root_uri}:{info.root_port} "
                           f"({info.num_workers} workers, {info.num_servers} servers)") \
        if (watchdog is not None and info.distributed) else contextlib.nullcontext()
    with guard:
        kv = mx.kv.create(info.kvstore)
    if info.distributed:
        info = dataclasses.replace(info, rank=int(kv.rank), num_workers=int(kv.num_workers))
        if watchdog is not None:
            watchdog.set_label(f"rank {info.rank} of {info.num_workers} ({info.kvstore})")
    return kv, info


def trainer_options(kvstore_name: str) -> Dict[str, Any]:
    """What ``gluon.Trainer`` needs besides params and optimizer: ``kvstore`` (the name for
    ``device``/``local``) and ``update_on_kvstore`` (False for ``dist_sync``/``dist_device_sync``:
    servers sum, workers update, so optimizer state is local and checkpointable; True for
    ``dist_async``, which MXNet requires; None, MXNet's choice, otherwise)."""
    name = check_kvstore(kvstore_name)
    update = {"dist_sync": False, "dist_device_sync": False, "dist_async": True}.get(name)
    return {"kvstore": name, "update_on_kvstore": update}


def free_kvstore(kvstore, wait_for_others: bool) -> None:
    """Free a ``dist_*`` ``kvstore`` now: with ``wait_for_others`` every worker meets first (all
    must call it) and rank 0 stops the servers; without, this worker just leaves. The Python
    object is left harmless (its ``__del__`` then frees NULL, a no-op)."""
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    lib, check_call = mx.base._LIB, mx.base.check_call
    if wait_for_others:
        mx.nd.waitall()
    else:
        check_call(lib.MXKVStoreSetBarrierBeforeExit(kvstore.handle, 0))
    check_call(lib.MXKVStoreFree(kvstore.handle))
    kvstore.handle = None


def check_optimizer(kvstore_name: str, optimizer: str) -> None:
    """``dist_async`` updates on the servers, where MXNet cannot checkpoint optimizer state: it
    takes only the stateless ``sgd`` (the recipe's default)."""
    if check_kvstore(kvstore_name) == "dist_async" and optimizer != "sgd":
        raise VggbenchError(f"--kvstore dist_async keeps the {optimizer} state on the servers, which MXNet cannot "
                            f"checkpoint; use --optimizer sgd, or --kvstore dist_sync")
