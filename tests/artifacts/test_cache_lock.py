"""The cache-folder lock (``artifacts.cache_lock``): one filler at a time, the others wait, bounded.

The holder is a real second Python holding the lock; the waiter is this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from vggbench import artifacts
from vggbench.errors import VggbenchError

REPO = Path(__file__).resolve().parents[2]

HOLD_CACHE_LOCK = """
    import sys
    from vggbench import artifacts
    with artifacts.cache_lock(sys.argv[1], "vggbench ort-trt fp16", timeout_s=60):
        print("locked", flush=True)
        sys.stdin.readline()  # hold it until the test closes our stdin
"""


def hold_in_second_process(folder: Path) -> subprocess.Popen:
    """A fresh Python (this checkout first on its path) that holds ``folder``'s cache lock until its
    stdin is closed; returns once it holds it."""
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD_CACHE_LOCK), str(folder)], env=env,
                            cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    if line.strip() != "locked":
        proc.kill()
        raise AssertionError(f"the holder did not take the lock: {line!r} {proc.communicate()[1][-2000:]}")
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=60)


def test_a_second_process_waits_for_the_holder_and_gets_the_lock_after_release(tmp_path):
    folder = tmp_path / "cache" / "tensorrt"
    holder = hold_in_second_process(folder)
    said = []
    releaser = threading.Timer(1.0, release, args=(holder,))
    releaser.start()
    try:
        started = time.monotonic()
        with artifacts.cache_lock(folder, "vggbench ort-trt fp32", timeout_s=60, work="building TensorRT engines",
                                  log=said.append) as lock:
            waited_s = time.monotonic() - started
            assert lock.holder["pid"] == os.getpid()
            assert artifacts.read_lock_holder(folder)["purpose"] == "vggbench ort-trt fp32"
    finally:
        releaser.join()
    assert holder.returncode == 0
    assert waited_s >= 0.9  # it waited for the holder, not refused nor barged in
    assert len(said) == 1, said  # said once, not on every poll
    assert said[0].startswith(f"waiting for vggbench ort-trt fp16 (pid {holder.pid} on ")
    assert said[0].endswith(f"building TensorRT engines in {folder}")
    assert not artifacts.lock_path_for(folder).exists()


def test_a_wait_past_the_timeout_is_a_one_line_error_naming_the_holder(tmp_path):
    folder = tmp_path / "cache" / "tensorrt"
    holder = hold_in_second_process(folder)
    try:
        started = time.monotonic()
        with pytest.raises(VggbenchError) as err:
            with artifacts.cache_lock(folder, "vggbench ort-trt fp32", timeout_s=0.5,
                                      work="building TensorRT engines"):
                pass
        assert 0.5 <= time.monotonic() - started < 10
        assert artifacts.read_lock_holder(folder)["pid"] == holder.pid  # the holder keeps it
    finally:
        release(holder)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{folder} is still locked by vggbench ort-trt fp16 (pid {holder.pid} on ")
    assert "building TensorRT engines there after 0.5 s" in message and "then run again" in message


def test_the_holder_is_recorded_and_nothing_is_said_without_a_wait(tmp_path):
    folder = tmp_path / "cache" / "tensorrt"  # neither exists yet
    said = []
    with artifacts.cache_lock(folder, "vggbench ort-trt fp16", timeout_s=0, log=said.append) as lock:
        assert folder.is_dir()
        record = json.loads(artifacts.lock_path_for(folder).read_text())
        assert record == lock.holder
        assert record["pid"] == os.getpid() and record["purpose"] == "vggbench ort-trt fp16"
        assert record["host"] and record["started"]
    assert said == []
    assert folder.is_dir() and not artifacts.lock_path_for(folder).exists()  # the cache stays, the lock goes


def test_the_lock_is_released_when_the_work_under_it_fails(tmp_path):
    folder = tmp_path / "tensorrt"
    with pytest.raises(RuntimeError, match="engine build failed"):
        with artifacts.cache_lock(folder, "vggbench ort-trt fp32", timeout_s=0):
            raise RuntimeError("engine build failed")
    assert artifacts.read_lock_holder(folder) is None
    with artifacts.cache_lock(folder, "vggbench ort-trt fp32", timeout_s=0) as lock:  # free at once
        assert lock.holder["pid"] == os.getpid()


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path):
    folder = tmp_path / "tensorrt"
    holder = hold_in_second_process(folder)
    holder.kill()  # SIGKILL: no cleanup runs, the lock file and its record stay
    holder.wait(timeout=60)
    assert json.loads(artifacts.lock_path_for(folder).read_text())["pid"] == holder.pid
    with artifacts.cache_lock(folder, "vggbench ort-trt fp32", timeout_s=0) as lock:
        assert lock.took_over["pid"] == holder.pid
        assert artifacts.read_lock_holder(folder)["pid"] == os.getpid()
    assert not artifacts.lock_path_for(folder).exists()
