"""The shared child-process supervision: reading with a deadline, ending a process group, and one
line for how a child ended -- on real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vggbench import processes


def _python(code: str, **kwargs) -> subprocess.Popen:
    return processes.start([sys.executable, "-c", code], dict(os.environ), **kwargs)


def test_lines_arrive_and_a_silent_child_times_out():
    child = _python("import sys, time\nprint('one', flush=True)\ntime.sleep(30)")
    try:
        reader = processes.LineReader(child.stdout)
        assert reader.readline(10.0) == b"one"
        started = time.monotonic()
        with pytest.raises(processes.ChildTimedOut, match="no answer within 0.3 s"):
            reader.readline(0.3)
        assert time.monotonic() - started < 5
    finally:
        assert processes.end([child], 1.0) == 1
    assert child.returncode == -signal.SIGTERM


def test_a_child_that_closes_its_output_is_reported_as_ended():
    child = _python("print('last', end='')")
    reader = processes.LineReader(child.stdout)
    with pytest.raises(processes.ChildEnded):
        reader.readline(10.0)
    child.wait()
    assert processes.end([child], 1.0) == 0


def test_ending_a_group_reaches_the_grandchild_and_escalates_to_sigkill():
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(grandchild.pid, flush=True)\n"
            "time.sleep(60)")
    child = _python(code, own_group=True)
    grandchild = int(processes.LineReader(child.stdout).readline(30.0))
    assert processes.end([child], 0.5) == 1
    assert child.returncode == -signal.SIGKILL  # it ignored SIGTERM
    for _ in range(100):  # the grandchild got the group's SIGTERM (it is not our child: poll its pid)
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild outlived its process group")


def test_run_bounded_kills_a_hung_child_in_one_line():
    started = time.monotonic()
    with pytest.raises(processes.ChildTimedOut, match=r"^the smoke process timed out after 0.5 s$"):
        processes.run_bounded([sys.executable, "-c", "import time; time.sleep(60)"], None, 0.5, who="smoke process")
    assert time.monotonic() - started < 10
    done = processes.run_bounded([sys.executable, "-c", "import sys; sys.exit('bad input')"], None, 30.0)
    assert done.returncode == 1 and b"bad input" in done.stderr


def test_exits_are_described_in_one_line():
    assert processes.describe_exit(-9, "", "worker") == "worker killed by SIGKILL (out of memory?)"
    assert processes.describe_exit(-15, "", "smoke process") == "smoke process killed by SIGTERM"
    text = processes.describe_exit(1, 'Traceback (most recent call last):\n  File "<string>", line 1, in <module>\n'
                                      "MemoryError: simulated\n")
    assert text == "worker exited with code 1: MemoryError: simulated"
    assert processes.describe_exit(2, "") == "worker exited with code 2: no message"
    assert processes.signal_name(0) is None and processes.signal_name(-200) == "signal 200"
