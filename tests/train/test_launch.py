"""vggbench.train.distributed.launch: plans (local, hosts, ssh), and the supervisor that reaps a process group.

The supervisor tests run real processes (small Python one-liners standing in for the roles, so
they take a second or two); the real KVStore jobs are in tests/train/test_distributed.py.
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vggbench.errors import VggbenchError
from vggbench.train.distributed import launch

WORKER = ["vggbench", "train-export", "vgg11", "--kvstore", "dist_sync"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running any more
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _spec(role: str, index: int, code: str, pid_dir: Path) -> launch.ProcessSpec:
    """A stand-in process that records its pid in ``pid_dir`` and then runs ``code``."""
    script = f"import os, sys, time\nopen({str(pid_dir / f'{role}{index}')!r}, 'w').write(str(os.getpid()))\n{code}"
    return launch.ProcessSpec(role, index, (sys.executable, "-c", script), {})


def _running_with(token: str) -> list:
    """Pids of live processes whose command line contains ``token``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if token in (entry / "cmdline").read_bytes().decode("utf-8", "replace") and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _pids(pid_dir: Path, expected: int, timeout_s: float = 10.0) -> list:
    deadline = time.monotonic() + timeout_s
    while len(list(pid_dir.iterdir())) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return [int(p.read_text() or 0) for p in pid_dir.iterdir()]


# --- plans -----------------------------------------------------------------------------------------

def test_plan_local_is_loopback_with_the_dmlc_variables(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = launch.plan_local(2, 1, WORKER, port=9123)
    assert [s.label for s in plan] == ["scheduler", "server #0", "worker #0", "worker #1"]
    for spec in plan:
        assert spec.env["DMLC_PS_ROOT_URI"] == spec.env["DMLC_NODE_HOST"] == "127.0.0.1"
        assert (spec.env["DMLC_PS_ROOT_PORT"], spec.env["DMLC_NUM_WORKER"], spec.env["DMLC_NUM_SERVER"]) == \
            ("9123", "2", "1")
        assert spec.env["DMLC_ROLE"] == spec.role
    assert plan[0].argv[1:] == ("-m", "vggbench.train.distributed") == plan[1].argv[1:]
    assert plan[2].argv == tuple(WORKER)
    assert plan[1].env["OMP_NUM_THREADS"] == "1"
    assert int(plan[2].env["OMP_NUM_THREADS"]) >= 1


def test_plan_local_keeps_a_users_thread_count_and_picks_a_free_port(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    plan = launch.plan_local(1, 1, WORKER)
    assert all("OMP_NUM_THREADS" not in spec.env for spec in plan)
    port = int(plan[0].env["DMLC_PS_ROOT_PORT"])
    import socket

    with socket.socket() as probe:  # free: we can bind it ourselves
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("workers, servers, command, words", [
    (0, 1, WORKER, "--workers and --servers must be >= 1"),
    (2, 1, [], "give the worker command after --"),
    (2, 1, ["vggbench", "train-export", "vgg11"], "add --kvstore dist_sync"),
])
def test_bad_jobs_are_one_line_errors(workers, servers, command, words):
    with pytest.raises(VggbenchError, match=words) as err:
        launch.plan_local(workers, servers, command)
    assert "\n" not in str(err.value)


def test_plan_hosts_prints_the_exact_per_host_commands(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# the cluster\n10.0.0.1\n\n10.0.0.2  # second box\nnode-c\n")
    plan = launch.plan_hosts(str(hosts), workers=4, servers=2, command=WORKER, port=9500, python="/opt/venv/bin/python")
    placement = [(s.label, s.host) for s in plan]
    assert placement == [("scheduler", "10.0.0.1"), ("server #0", "10.0.0.1"), ("server #1", "10.0.0.2"),
                         ("worker #0", "10.0.0.1"), ("worker #1", "10.0.0.2"), ("worker #2", "node-c"),
                         ("worker #3", "10.0.0.1")]
    text = launch.format_host_plan(plan, workdir="/shared/work dir")
    warning, *lines = text.splitlines()
    assert warning == f"# {launch.NO_AUTHENTICATION}"  # ps-lite authenticates nothing: said first
    assert lines[0] == "# 10.0.0.1: scheduler"
    assert lines[1] == ("cd '/shared/work dir' && env -u PORT DMLC_ROLE=scheduler DMLC_PS_ROOT_URI=10.0.0.1 "
                        "DMLC_PS_ROOT_PORT=9500 DMLC_NUM_WORKER=4 DMLC_NUM_SERVER=2 DMLC_NODE_HOST=10.0.0.1 "
                        "/opt/venv/bin/python -m vggbench.train.distributed")
    worker_on_name = lines[lines.index("# node-c: worker #2") + 1]
    assert "DMLC_NODE_HOST" not in worker_on_name  # a name: ps-lite picks the interface there
    assert worker_on_name.endswith("DMLC_ROLE=worker DMLC_PS_ROOT_URI=10.0.0.1 DMLC_PS_ROOT_PORT=9500 "
                                   "DMLC_NUM_WORKER=4 DMLC_NUM_SERVER=2 "
                                   "vggbench train-export vgg11 --kvstore dist_sync")
    # The line is a real shell command: the shell hands the worker exactly its argv.
    echo = launch.ProcessSpec("worker", 0, ("printf", "%s|", "a b", "--kvstore=dist_sync"), {"DMLC_ROLE": "worker"})
    done = subprocess.run(["sh", "-c", launch.host_command_line(echo, str(tmp_path))], capture_output=True, text=True)
    assert done.stdout == "a b|--kvstore=dist_sync|"

    ssh = launch.ssh_plan(plan, workdir="/w")
    assert ssh[2].argv[:5] == ("ssh", "-tt", "-o", "BatchMode=yes", "10.0.0.2")
    assert ssh[2].argv[5] == launch.host_command_line(plan[2], "/w") and ssh[2].env == {}


@pytest.mark.parametrize("content, words", [
    ("", "lists no host"),
    ("node-a\n10.0.0.2\n", "must be an IP address"),
    ("10.0.0.1 slots=2\n", "one host name or IP per line"),
])
def test_bad_hosts_files_are_one_line_errors(tmp_path, content, words):
    hosts = tmp_path / "hosts"
    hosts.write_text(content)
    with pytest.raises(VggbenchError, match=words):
        launch.plan_hosts(str(hosts), 2, 1, WORKER)
    with pytest.raises(VggbenchError, match="cannot read"):
        launch.plan_hosts(str(tmp_path / "missing"), 2, 1, WORKER)


def test_launch_with_hosts_prints_the_plan_and_starts_nothing(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("192.168.1.10\n192.168.1.11\n")
    out = io.StringIO()
    assert launch.launch(2, 1, WORKER, hosts_file=str(hosts), port=9600, workdir="/w", stream=out) == 0
    assert out.getvalue().splitlines()[2].startswith("cd /w && env -u PORT DMLC_ROLE=scheduler "
                                                     "DMLC_PS_ROOT_URI=192.168.1.10 DMLC_PS_ROOT_PORT=9600")
    with pytest.raises(VggbenchError, match="--ssh runs the per-host commands"):
        launch.launch(2, 1, WORKER, ssh=True)


# --- the supervisor --------------------------------------------------------------------------------

def test_run_local_success_prefixes_output_and_ends_lingering_servers(tmp_path):
    plan = [_spec("scheduler", 0, "time.sleep(60)", tmp_path),
            _spec("server", 0, "print('serving', flush=True); time.sleep(60)", tmp_path),
            _spec("worker", 0, "print('rank 1 of 2'); sys.stdout.write('50%\\r'); print('trained')", tmp_path),
            _spec("worker", 1, "print('rank 0 of 2')", tmp_path)]
    out = io.StringIO()
    start = time.monotonic()
    assert launch.run_local(plan, grace_s=1.0, stream=out) == 0
    assert time.monotonic() - start < 15
    text = out.getvalue()
    assert "[worker #0] trained" in text and "[server #0] serving" in text and "[worker #0] 50%" in text
    assert "ended scheduler (pid" in text and "server #0 (pid" in text
    assert not any(_alive(pid) for pid in _pids(tmp_path, 4))


def test_run_local_failure_ends_every_other_process_and_names_the_failed_one(tmp_path):
    plan = [_spec("scheduler", 0, "time.sleep(60)", tmp_path),
            _spec("server", 0, "time.sleep(60)", tmp_path),
            _spec("worker", 0, "print('rank 1 of 2', flush=True); time.sleep(0.5); "
                               "print('error: something broke', flush=True); sys.exit(3)", tmp_path),
            # ignores SIGTERM: must be SIGKILLed after the grace period
            _spec("worker", 1, "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
                  tmp_path)]
    out = io.StringIO()
    start = time.monotonic()
    code = launch.run_local(plan, grace_s=1.0, stream=out)
    elapsed = time.monotonic() - start
    assert code == 3
    assert elapsed < 15
    failure = [line for line in out.getvalue().splitlines() if line.startswith("vggbench launch:")]
    assert len(failure) == 1
    assert "worker #0 (pid" in failure[0] and "rank 1)" in failure[0] and "exited with status 3" in failure[0]
    assert "error: something broke" in failure[0] and "ended the other 3 process(es)" in failure[0]
    assert not any(_alive(pid) for pid in _pids(tmp_path, 4))


def test_run_local_timeout_and_a_killed_process(tmp_path):
    plan = [_spec("server", 0, "time.sleep(60)", tmp_path / "a"), _spec("worker", 0, "time.sleep(60)", tmp_path / "a")]
    (tmp_path / "a").mkdir()
    out = io.StringIO()
    assert launch.run_local(plan, timeout_s=1.0, grace_s=1.0, stream=out) == launch.EXIT_TIMEOUT
    assert "ran past --timeout 1 s: ended all 2 running process(es)" in out.getvalue()
    assert not any(_alive(pid) for pid in _pids(tmp_path / "a", 2))

    (tmp_path / "b").mkdir()
    plan = [_spec("server", 0, "time.sleep(60)", tmp_path / "b"),
            _spec("worker", 0, "os.kill(os.getpid(), 9)", tmp_path / "b")]
    out = io.StringIO()
    assert launch.run_local(plan, grace_s=1.0, stream=out) == 128 + 9
    assert "worker #0 (pid" in out.getvalue() and "was killed by SIGKILL" in out.getvalue()
    assert not any(_alive(pid) for pid in _pids(tmp_path / "b", 2))


def test_sigterm_to_the_launcher_ends_everything(tmp_path):
    """The launcher in its own process: SIGTERM to it ends the group and it exits 143."""
    code = textwrap.dedent(f"""
        import sys
        from vggbench.train.distributed import launch
        plan = [launch.ProcessSpec("worker", i, (sys.executable, "-c",
                "import os, time; open({str(tmp_path)!r} + '/w%d' % {{i}}, 'w').write(str(os.getpid())); "
                "time.sleep(60)".replace("{{i}}", str(i))), {{}}) for i in range(2)]
        sys.exit(launch.run_local(plan, grace_s=1.0))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pids = _pids(tmp_path, 2)
        assert all(_alive(pid) for pid in pids)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 143, out
        assert "SIGTERM: ended all 2 running process(es)" in out
        assert not any(_alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_program_is_reported_and_nothing_is_left(tmp_path):
    plan = [_spec("server", 0, "time.sleep(60)", tmp_path),
            launch.ProcessSpec("worker", 0, ("/nonexistent/vggbench-worker",), {})]
    out = io.StringIO()
    assert launch.run_local(plan, grace_s=1.0, stream=out) == 127
    assert "cannot start worker #0 (/nonexistent/vggbench-worker)" in out.getvalue()
    assert "ended the other 1 process(es)" in out.getvalue()
    assert _running_with(str(tmp_path)) == []  # the server, started first, is gone
    assert shlex.split(out.getvalue().splitlines()[-1])  # one readable line
