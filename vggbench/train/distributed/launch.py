"""``vggbench launch``: start a KVStore job (scheduler, servers, workers) with plain ``DMLC_*`` variables.

MXNet's own ``tools/launch.py`` needs ``dmlc_tracker``, which is neither in the wheel nor on the
package index; this module does what its ``local`` and ``ssh`` modes do, with the same
variables, and supervises the group:

- :func:`plan_local`: every process on this machine, loopback only (``DMLC_PS_ROOT_URI`` and
  ``DMLC_NODE_HOST`` = 127.0.0.1), on a free port;
- :func:`plan_hosts`: the scheduler on the hosts file's first host, servers and workers round
  robin over the hosts; :func:`format_host_plan` prints the exact command per host (to paste, or
  to hand to a cluster scheduler), :func:`ssh_plan` wraps them in ``ssh`` to run from here;
- :func:`run_local`: starts a plan, prefixes every line a process prints with its role, and reaps
  the group: when any process exits non-zero, every other one is ended within ``grace_s`` and
  the launch exits non-zero with one line naming the process; SIGINT/SIGTERM end everything.

The scheduler and servers run ``python -m vggbench.train.distributed`` (MXNet serves those roles
while it is imported). ps-lite binds every node to ``$PORT`` when that variable is set, so it is
removed from every process's environment. Unless ``OMP_NUM_THREADS`` is set, each local worker
gets ``physical cores / workers`` OpenMP threads (and servers 1), so workers sharing a machine do
not oversubscribe it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

from vggbench.errors import VggbenchError
from vggbench.platform.driver import use_pci_bus_order
from vggbench.processes import end as end_processes
from vggbench.processes import signal_name
from vggbench.processes import start as start_process
from vggbench.train.distributed.kvstore import DIST_KVSTORES, PARENT_PID_ENV

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9091
# Variables a node must not inherit: ps-lite binds to $PORT when it is set.
DROPPED_ENV = ("PORT",)
# Seconds between two progress-bar redraws (lines ending in \r) shown per process.
PROGRESS_EVERY_S = 10.0
RANK_LINE = re.compile(r"\brank (\d+) of (\d+)\b")
EXIT_TIMEOUT = 124
EXIT_SIGNAL_BASE = 128


@dataclasses.dataclass(frozen=True)
class ProcessSpec:
    """One process of a job: ``role`` (scheduler, server, worker), ``index`` (its number within
    the role, in start order; a worker's KVStore rank is assigned later by the scheduler),
    ``argv``, ``env`` (the variables set on top of the launcher's environment) and ``host``."""

    role: str
    index: int
    argv: Tuple[str, ...]
    env: Dict[str, str]
    host: str = LOOPBACK

    @property
    def label(self) -> str:
        return self.role if self.role == "scheduler" else f"{self.role} #{self.index}"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _check_job(workers: int, servers: int, command: Sequence[str]) -> List[str]:
    if workers < 1 or servers < 1:
        raise VggbenchError(f"--workers and --servers must be >= 1, got {workers} and {servers}")
    command = [str(part) for part in command]
    if not command:
        raise VggbenchError("give the worker command after --, e.g. vggbench launch --workers 2 --servers 1 -- "
                            "vggbench train-export vgg11 --kvstore dist_sync")
    if "train-export" in command and not any(kind in command for kind in DIST_KVSTORES) \
            and not any(part.startswith("--kvstore=dist") for part in command):
        raise VggbenchError("the worker command runs train-export without --kvstore dist_sync (or dist_device_sync, "
                            "dist_async): every worker would train alone; add --kvstore dist_sync")
    return command


def dmlc_env(role: str, root_uri: str, root_port: int, workers: int, servers: int,
             node_host: Optional[str] = None) -> Dict[str, str]:
    """The ``DMLC_*`` variables of one process: ``role``, the scheduler's ``root_uri`` (an IP
    address: ps-lite's scheduler binds to it) and ``root_port``, the job's ``workers`` and
    ``servers``, and ``node_host``: the address this node binds and announces (None: ps-lite
    picks the machine's first interface)."""
    env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(root_port),
           "DMLC_NUM_WORKER": str(workers), "DMLC_NUM_SERVER": str(servers)}
    if node_host:
        env["DMLC_NODE_HOST"] = node_host
    return env


def server_command(python: str = sys.executable) -> List[str]:
    """The scheduler's and servers' command: ``python -m vggbench.train.distributed`` with ``python``."""
    return [python, "-m", "vggbench.train.distributed"]


def _thread_env(role: str, workers_here: int) -> Dict[str, str]:
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return {}
    if role != "worker":
        return {"OMP_NUM_THREADS": "1"}
    from vggbench.platform.cpu import physical_cores

    return {"OMP_NUM_THREADS": str(max(1, physical_cores() // max(1, workers_here)))}


def plan_local(workers: int, servers: int, command: Sequence[str], port: Optional[int] = None,
               python: str = sys.executable) -> List[ProcessSpec]:
    """Scheduler, ``servers`` servers and ``workers`` workers on this machine, loopback only.

    ``command``: the worker's argv (``vggbench train-export ... --kvstore dist_sync``); ``port``:
    the scheduler's port (None: a free one); ``python``: the interpreter for the scheduler and
    servers. Returns the specs in start order.
    """
    command = _check_job(workers, servers, command)
    port = free_port() if port is None else int(port)
    specs = [ProcessSpec("scheduler", 0, tuple(server_command(python)),
                         {**dmlc_env("scheduler", LOOPBACK, port, workers, servers, LOOPBACK),
                          **_thread_env("scheduler", workers)})]
    specs += [ProcessSpec("server", i, tuple(server_command(python)),
                          {**dmlc_env("server", LOOPBACK, port, workers, servers, LOOPBACK),
                           **_thread_env("server", workers)}) for i in range(servers)]
    specs += [ProcessSpec("worker", i, tuple(command),
                          {**dmlc_env("worker", LOOPBACK, port, workers, servers, LOOPBACK),
                           **_thread_env("worker", workers)}) for i in range(workers)]
    return specs


# A hosts file lists a cluster's machines: a few kB. Host names are DNS names (they go into ssh and
# DMLC_* values, so nothing that could read as an option or a shell word).
MAX_HOSTS_FILE_BYTES = 1 << 20
_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,252})$")


def read_hosts(hosts_file: str) -> List[str]:
    """The hosts in ``hosts_file``: one per line, ``#`` starts a comment, blank lines skipped."""
    from vggbench.artifacts.reader import read_text

    lines = read_text(hosts_file, MAX_HOSTS_FILE_BYTES, "hosts file",
                      fix="write one host name or IP per line in a regular file").splitlines()
    hosts = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if len(text.split()) != 1 or not (_HOST_NAME.match(text) or _is_ip(text)):
            raise VggbenchError(f"--hosts {hosts_file} line {number}: {text[:60]!r} is not a host name or IP; write "
                                f"one host name or IP per line")
        hosts.append(text)
    if not hosts:
        raise VggbenchError(f"--hosts {hosts_file} lists no host; write one host name or IP per line")
    return hosts


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def plan_hosts(hosts_file: str, workers: int, servers: int, command: Sequence[str], port: int = DEFAULT_PORT,
               python: str = sys.executable) -> List[ProcessSpec]:
    """The job over the hosts in ``hosts_file`` (:func:`read_hosts`).

    The scheduler runs on the first host, which must be an IP address (ps-lite's scheduler binds
    ``DMLC_PS_ROOT_URI``); server ``i`` and worker ``i`` run on host ``i mod hosts``. A host given
    as an IP is also its ``DMLC_NODE_HOST``; for a name, ps-lite picks the host's first interface
    (set ``DMLC_INTERFACE`` there to choose). ``command``: the worker's argv; ``port``: the
    scheduler's port, open between the hosts; ``python``: the scheduler's and servers'
    interpreter on the hosts (default: this one's path, right for a shared virtual environment).
    """
    command = _check_job(workers, servers, command)
    hosts = read_hosts(hosts_file)
    root = hosts[0]
    if not _is_ip(root):
        raise VggbenchError(f"--hosts {hosts_file}: the first host runs the scheduler and must be an IP address "
                            f"(ps-lite binds to it), got {root!r}; put that machine's IP first")
    if not 1 <= int(port) <= 65535:
        raise VggbenchError(f"--port must be in 1..65535, got {port}")

    def spec(role: str, index: int, host: str, argv: Sequence[str]) -> ProcessSpec:
        return ProcessSpec(role, index, tuple(argv),
                           dmlc_env(role, root, int(port), workers, servers, host if _is_ip(host) else None), host)

    specs = [spec("scheduler", 0, root, server_command(python))]
    specs += [spec("server", i, hosts[i % len(hosts)], server_command(python)) for i in range(servers)]
    specs += [spec("worker", i, hosts[i % len(hosts)], command) for i in range(workers)]
    return specs


def host_command_line(spec: ProcessSpec, workdir: Optional[str] = None) -> str:
    """The shell line that starts ``spec`` on its host: ``cd WORKDIR && env -u PORT DMLC_...=...
    COMMAND`` (``workdir`` default: this process's working directory)."""
    workdir = os.getcwd() if workdir is None else workdir
    unset = " ".join(f"-u {name}" for name in DROPPED_ENV)
    assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in spec.env.items())
    return f"cd {shlex.quote(workdir)} && env {unset} {assignments} {shlex.join(spec.argv)}"


# ps-lite authenticates nothing: said with every host plan, and when the scheduler aborts.
NO_AUTHENTICATION = ("ps-lite (the KVStore transport) has no authentication: run the job only on a trusted, isolated "
                     "network; anyone who can reach its ports can crash or corrupt the training")
SCHEDULER_ABORTED = ("scheduler aborted (malformed message from a peer outside the job?): ps-lite has no "
                     "authentication, keep its ports on a trusted, isolated network")


def format_host_plan(plan: Sequence[ProcessSpec], workdir: Optional[str] = None) -> str:
    """The plan as text: per process a ``# host: role`` line and its :func:`host_command_line`.
    Start the scheduler and servers first; the workers may follow in any order."""
    lines = [f"# {NO_AUTHENTICATION}"]
    for spec in plan:
        lines.append(f"# {spec.host}: {spec.label}")
        lines.append(host_command_line(spec, workdir))
    return "\n".join(lines)


def ssh_plan(plan: Sequence[ProcessSpec], workdir: Optional[str] = None) -> List[ProcessSpec]:
    """``plan`` with every process started through ``ssh -tt HOST LINE`` (:func:`host_command_line`),
    for :func:`run_local`. ``-tt`` gives the remote command a terminal, so ending the local ssh
    (which the launcher does to end a process) hangs it up on the host too."""
    return [dataclasses.replace(spec, argv=("ssh", "-tt", "-o", "BatchMode=yes", spec.host,
                                            host_command_line(spec, workdir)), env={})
            for spec in plan]


# --- running and reaping a plan --------------------------------------------------------------------

class _Process:
    """A started :class:`ProcessSpec`, its output pump and what it said last."""

    def __init__(self, spec: ProcessSpec, popen: subprocess.Popen, out: TextIO, lock: threading.Lock):
        self.spec = spec
        self.popen = popen
        self.last_line = ""
        self.rank: Optional[str] = None
        self._out = out
        self._lock = lock
        self._pump = threading.Thread(target=self._read, name=f"launch-{spec.label}", daemon=True)
        self._pump.start()

    @property
    def name(self) -> str:
        rank = f", rank {self.rank}" if self.rank is not None else ""
        return f"{self.spec.label} (pid {self.popen.pid}{rank})"

    def _emit(self, text: str) -> None:
        text = text.rstrip()
        if not text:
            return
        self.last_line = text
        found = RANK_LINE.search(text)
        if found and self.spec.role == "worker":
            self.rank = found.group(1)
        with self._lock:
            self._out.write(f"[{self.spec.label}] {text}\n")
            self._out.flush()

    def _read(self) -> None:
        stream = self.popen.stdout
        buffer, last_progress = b"", 0.0
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            buffer += chunk
            while True:
                cut = min((i for i in (buffer.find(b"\n"), buffer.find(b"\r")) if i >= 0), default=-1)
                if cut < 0:
                    break
                line, end, buffer = buffer[:cut], buffer[cut:cut + 1], buffer[cut + 1:]
                text = line.decode("utf-8", "replace")
                if end == b"\r":  # a progress bar redraw: show one every PROGRESS_EVERY_S
                    if time.monotonic() - last_progress < PROGRESS_EVERY_S:
                        continue
                    last_progress = time.monotonic()
                self._emit(text)
        if buffer:
            self._emit(buffer.decode("utf-8", "replace"))

    def join_output(self, timeout_s: float = 5.0) -> None:
        self._pump.join(timeout=timeout_s)


def _status_text(code: int) -> str:
    name = signal_name(code)
    return f"was killed by {name}" if name else f"exited with status {code}"


def _exit_code(code: int) -> int:
    return EXIT_SIGNAL_BASE - code if code < 0 else (code or 1)


def _end_all(started: Sequence[_Process], grace_s: float) -> int:
    """SIGTERM every live process group, SIGKILL what is left after ``grace_s``; return how
    many were still running."""
    return end_processes([process.popen for process in started], grace_s)


def run_local(plan: Sequence[ProcessSpec], timeout_s: Optional[float] = None, grace_s: float = 10.0,
              stream: Optional[TextIO] = None, poll_s: float = 0.1) -> int:
    """Start every process of ``plan``, stream their output, reap the group; return the exit code.

    - ``timeout_s``: end everything after this long (None: no limit); the launch then exits 124.
    - ``grace_s``: how long ended processes get between SIGTERM and SIGKILL, and how long the
      scheduler and servers get to stop by themselves after the last worker succeeded.
    - ``stream``: where prefixed output and the launcher's own lines go (default stdout).

    Exit code: 0 when every worker exited 0; else the first failing process's status (128 + N
    for signal N), 124 on timeout, 130/143 on SIGINT/SIGTERM. Every process started is ended
    before this returns.
    """
    out = stream or sys.stdout
    lock = threading.Lock()
    processes: List[_Process] = []
    stop: List[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda number, frame: stop.append(number))

    def say(message: str) -> None:
        with lock:
            out.write(f"vggbench launch: {message}\n")
            out.flush()

    base_env = {key: value for key, value in os.environ.items() if key not in DROPPED_ENV}
    base_env[PARENT_PID_ENV] = str(os.getpid())
    use_pci_bus_order(base_env)  # gpu(N) in every process is nvidia-smi's GPU N
    base_env.setdefault("PYTHONUNBUFFERED", "1")
    started = time.monotonic()
    try:
        for spec in plan:
            try:
                popen = start_process(spec.argv, {**base_env, **spec.env}, stdin=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, own_group=True)
            except OSError as err:
                say(f"cannot start {spec.label} ({shlex.join(spec.argv)}): {err.strerror or err}; "
                    f"ended the other {_end_all(processes, grace_s)} process(es)")
                return 127
            processes.append(_Process(spec, popen, out, lock))
        workers = [p for p in processes if p.spec.role == "worker"]
        while True:
            for process in processes:
                code = process.popen.poll()
                if code is not None and code != 0:
                    process.join_output(1.0)
                    ended = _end_all(processes, grace_s)
                    said = f" (last output: {process.last_line[:300]!r})" if process.last_line else ""
                    if process.spec.role == "scheduler" and code in (-signal.SIGABRT, EXIT_SIGNAL_BASE + signal.SIGABRT):
                        said += f"; {SCHEDULER_ABORTED}"
                    say(f"{process.name} {_status_text(code)}{said}; ended the other {ended} process(es)")
                    return _exit_code(code)
            if all(p.popen.poll() == 0 for p in workers):
                _wait_servers(processes, grace_s, say)
                return 0
            if stop:
                ended = _end_all(processes, grace_s)
                name = signal.Signals(stop[0]).name
                say(f"{name}: ended all {ended} running process(es)")
                return EXIT_SIGNAL_BASE + stop[0]
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                ended = _end_all(processes, grace_s)
                say(f"the job ran past --timeout {timeout_s:g} s: ended all {ended} running process(es)")
                return EXIT_TIMEOUT
            time.sleep(poll_s)
    finally:
        _end_all(processes, grace_s)
        for process in processes:
            process.join_output()
            if process.popen.stdout:
                process.popen.stdout.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_servers(processes: Sequence[_Process], grace_s: float, say) -> None:
    """After every worker succeeded, the scheduler and servers stop by themselves (rank 0 tells
    them); give them ``grace_s``, then end any that did not."""
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    left = [p for p in processes if p.popen.poll() is None]
    if left:
        say(f"every worker finished; ended {', '.join(p.name for p in left)}, which had not stopped "
            f"within {grace_s:g} s")
        _end_all(left, grace_s)


def launch(workers: int, servers: int, command: Sequence[str], hosts_file: Optional[str] = None,
           port: Optional[int] = None, ssh: bool = False, timeout_s: Optional[float] = None,
           workdir: Optional[str] = None, stream: Optional[TextIO] = None) -> int:
    """What ``vggbench launch`` does; returns its exit code.

    Without ``hosts_file``: run the job on this machine (:func:`plan_local`, :func:`run_local`).
    With it: print the per-host commands (:func:`format_host_plan`), or with ``ssh`` run them
    from here (:func:`ssh_plan`). ``port``: the scheduler's (default: a free one locally,
    :data:`DEFAULT_PORT` across hosts); ``timeout_s``: :func:`run_local`'s; ``workdir``: the
    directory the commands run in on each host (default: this one); ``stream``: where output goes.
    """
    out = stream or sys.stdout
    if hosts_file is None:
        if ssh:
            raise VggbenchError("--ssh runs the per-host commands of --hosts FILE; give --hosts, or drop --ssh to "
                                "run the job on this machine")
        return run_local(plan_local(workers, servers, command, port), timeout_s=timeout_s, stream=out)
    plan = plan_hosts(hosts_file, workers, servers, command, DEFAULT_PORT if port is None else port)
    if not ssh:
        out.write(format_host_plan(plan, workdir) + "\n")
        out.flush()
        return 0
    return run_local(ssh_plan(plan, workdir), timeout_s=timeout_s, stream=out)
