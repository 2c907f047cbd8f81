"""Issue 11: failures are loud, one line, and lose nothing; reads stay bounded.

Each case asserts the error type, the one-line message (no traceback) and what is left on disk.
Faults are real: errors provoked from real MXNet and ONNX Runtime, real second processes holding
locks, real SIGKILL/SIGTERM, a real full disk and read-only mount (tmpfs / bind mounts in a user
namespace, skipped where the kernel forbids those), real gzip bombs.

The command-line cases at the end run ``python -m vggbench.cli`` end to end: exit codes, the
SIGTERM handler, verification of every artifact and of output paths before any measuring.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vggbench import artifacts, data, models
from vggbench.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    Terminated,
    VggbenchError,
    exit_code_for,
    summarize_error,
)
from vggbench.platform.mxnet import import_mxnet

REPO = Path(__file__).resolve().parents[1]
SHA = "0" * 64


def one_line(message) -> str:
    """The message as a string, after checking it is one line with no traceback in it."""
    text = str(message)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


def child_env() -> dict:
    """This environment with this checkout first on the path, for child Pythons."""
    return dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    """Start ``script`` in a fresh Python (this interpreter, this checkout first on the path)."""
    return start([sys.executable, "-c", textwrap.dedent(script), *args], **kwargs)


def start(command, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(command, env=child_env(), cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def wait_until(condition, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    """Poll ``condition()`` until it holds; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def wait_for_line(proc: subprocess.Popen, expected: str, timeout_s: float = 60) -> None:
    """Block until ``proc`` prints ``expected`` on stdout (it signals readiness that way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"no {expected!r} from the helper process: {proc.communicate()[1][-2000:]}")


def in_user_namespace(setup: str, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a user+mount namespace after the shell ``setup`` (tmpfs, ro bind mounts).

    Skips the test where unprivileged user namespaces are disabled.
    """
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True) if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("unprivileged user namespaces (unshare -rm) are not available here")
    command = f'{setup} && exec "$0" -c "$1"'
    return subprocess.run(["unshare", "-rm", "sh", "-c", command, sys.executable, textwrap.dedent(script)],
                          env=child_env(), cwd=str(REPO), capture_output=True, text=True, timeout=120)


# --- errors.py: exit codes, SIGTERM, summaries of real library errors ------------------------------

def test_exit_codes_map_each_way_a_command_ends():
    assert exit_code_for(VggbenchError("x")) == EXIT_USER_ERROR == 1
    assert exit_code_for(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130
    assert exit_code_for(Terminated()) == EXIT_TERMINATED == 143
    assert isinstance(Terminated(), KeyboardInterrupt)  # so every Ctrl-C cleanup path runs for SIGTERM
    with pytest.raises(ValueError, match="it is a bug"):
        exit_code_for(ZeroDivisionError())


def _mxnet_error(action) -> BaseException:
    mx = import_mxnet()

    with pytest.raises(mx.base.MXNetError) as err:
        action(mx)
    return err.value


@pytest.mark.parametrize("action, expected", [
    (lambda mx: mx.nd.ones((2, 3)).reshape((7,)),
     "NDArray.Reshape: Check failed: shape_.Size() >= shape.Size() (6 vs. 7) : target shape size is larger"),
    (lambda mx: mx.nd.dot(mx.nd.ones((2, 3)), mx.nd.ones((4, 5))).wait_to_read(), "dot shape error: [2,3] X [4,5]"),
    (lambda mx: mx.nd.load("/nonexistent/model-0000.params"),
     'Open "/nonexistent/model-0000.params": No such file or directory'),
    (lambda mx: mx.nd.Pooling(mx.nd.ones((1, 1, 1, 1)), kernel=(2, 2), pool_type="max").wait_to_read(),
     "kernel size (2) exceeds input (1 padded to 1)"),
])
def test_mxnet_errors_are_summarised_by_their_message_not_the_traceback_header(action, expected):
    error = _mxnet_error(action)
    assert str(error).startswith("Traceback (most recent call last):")  # what MXNet really gives
    summary = one_line(summarize_error(error))
    assert expected in summary and not summary.startswith(("Traceback", "File"))


def test_mxnet_shape_inference_error_drops_its_argument_dump_and_timestamp():
    mx = import_mxnet()

    net = models.get_model("vgg11", width_ratio=16)
    with pytest.raises(mx.base.MXNetError) as err:
        net(mx.sym.var("data")).infer_shape(data=(1, 1, 16, 16))
    summary = one_line(summarize_error(err.value))
    assert summary.startswith("Error in operator pool") and "kernel size (2) exceeds input" in summary
    assert "../src/" not in summary and "infer_shape error" not in summary


def _ort_session():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnx_runtime_errors_keep_the_code_and_every_detail_line(tmp_path):
    import onnxruntime as ort

    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(Exception) as err:
        ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert one_line(summarize_error(err.value)).startswith("INVALID_PROTOBUF: Load model from")
    with pytest.raises(Exception) as err:
        _ort_session().run(None, {"x": np.zeros((2, 4), np.float32)})
    summary = one_line(summarize_error(err.value))
    assert summary.startswith("INVALID_ARGUMENT: Got invalid dimensions for input: x")
    assert "index: 1 Got: 4 Expected: 3" in summary  # the detail from ORT's second line


def test_a_python_traceback_from_a_worker_is_summarised_by_its_last_line():
    proc = python("""
        def load():
            raise FileNotFoundError("model.int8.onnx is gone")
        load()
    """)
    _, stderr = proc.communicate(timeout=60)
    assert stderr.startswith("Traceback")
    assert summarize_error(stderr) == "FileNotFoundError: model.int8.onnx is gone"
    assert summarize_error("x" * 1000, max_chars=50) == "x" * 47 + "..."


HOLD_UNDER_SIGTERM = """
    import sys, time
    from vggbench import artifacts
    from vggbench.errors import Terminated, exit_code_for, install_sigterm_handler

    install_sigterm_handler()
    run_dir = sys.argv[1]
    try:
        with artifacts.run_dir_lock(run_dir, "train-export"):
            with artifacts.atomic_path(run_dir + "/model.onnx") as temp:
                temp.write_bytes(b"half a model")
                print("ready", flush=True)
                time.sleep(60)
    except KeyboardInterrupt as err:
        print(f"vggbench train-export: {'terminated' if isinstance(err, Terminated) else 'interrupted'}",
              file=sys.stderr)
        sys.exit(exit_code_for(err))
"""


def test_sigterm_runs_the_ctrl_c_cleanup_and_exits_143(tmp_path):
    run_dir = tmp_path / "runs" / "vgg11-96"
    proc = python(HOLD_UNDER_SIGTERM, str(run_dir))
    wait_for_line(proc, "ready")
    assert artifacts.read_lock_holder(run_dir)["pid"] == proc.pid
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED == 143
    assert one_line(stderr).strip() == "vggbench train-export: terminated"
    # the temp file and the lock are gone, nothing half-written took the final name
    assert sorted(p.name for p in (tmp_path / "runs").rglob("*")) == ["vgg11-96"]
    assert artifacts.read_lock_holder(run_dir) is None


# --- data.py: bounded reads, corrupt files, empty splits -------------------------------------------

def _gzip_members(path: Path, head: bytes, zeros_mib: int) -> None:
    """``head`` then ``zeros_mib`` MiB of zeros, as concatenated gzip members (a valid gzip file
    that decompresses to all of it; each 16 MiB member of zeros is ~16 kB on disk)."""
    member = gzip.compress(bytes(16 << 20), compresslevel=9)
    with open(path, "wb") as handle:
        handle.write(gzip.compress(head))
        for _ in range(zeros_mib // 16):
            handle.write(member)


def _peak_bytes(action) -> tuple:
    tracemalloc.start()
    try:
        try:
            action()
        except VggbenchError as err:
            error = err
        else:
            error = None
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_after_a_valid_header_fails_fast_with_bounded_memory(tmp_path):
    bomb = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels = np.arange(10000, dtype=np.uint8) % 10
    _gzip_members(bomb, data.encode_idx(labels), zeros_mib=2048)  # 2 GiB once decompressed
    assert bomb.stat().st_size < 4 << 20
    started = time.perf_counter()
    error, peak = _peak_bytes(lambda: data.read_idx_file(bomb, data.LABELS_MAGIC))
    assert time.perf_counter() - started < 5
    assert "goes on past the 10008 bytes its header (10000,) implies" in one_line(error)
    assert peak < 8 << 20  # the whole tail would be 2 GiB


def test_a_header_promising_terabytes_is_refused_before_reading(tmp_path):
    liar = tmp_path / "train-images-idx3-ubyte.gz"
    _gzip_members(liar, struct.pack(">IIII", data.IMAGES_MAGIC, 2 ** 32 - 1, 28, 28), zeros_mib=16)
    error, peak = _peak_bytes(lambda: data.read_idx_file(liar, data.IMAGES_MAGIC, item_shape=(28, 28)))
    assert "promises 3367254359280 bytes of data, more than the 268435456 vggbench reads" in one_line(error)
    assert peak < 2 << 20


def _data_dir_with_test_split(data_dir: Path, tmp_path: Path, images: bytes, labels: bytes) -> Path:
    """A data dir with the real training files (linked) and the given test files."""
    target = tmp_path / "fmnist"
    target.mkdir()
    for name in data.FILES[True]:
        (target / name).symlink_to(data_dir / name)
    (target / data.FILES[False][0]).write_bytes(images)
    (target / data.FILES[False][1]).write_bytes(labels)
    return target


@pytest.mark.parametrize("images, labels, message", [
    (data.encode_idx(np.zeros((5, 32, 32), np.uint8)), data.encode_idx(np.zeros(5, np.uint8)),
     r"t10k-images-idx3-ubyte.gz: items are \(32, 32\), Fashion-MNIST's are 28x28"),
    (data.encode_idx(np.zeros((5, 28, 28), np.uint8))[:-10], data.encode_idx(np.zeros(5, np.uint8)),
     r"t10k-images-idx3-ubyte.gz: 3926 bytes but the header \(5, 28, 28\) needs 3936; the file is truncated"),
    (data.encode_idx(np.zeros((5, 28, 28), np.uint8)), data.encode_idx(np.full(5, 10, np.uint8)),
     r"t10k-labels-idx1-ubyte.gz: label 10 out of range 0..9"),
])
def test_corrupt_idx_files_are_one_line_naming_the_file(data_dir, tmp_path, images, labels, message):
    target = _data_dir_with_test_split(data_dir, tmp_path, gzip.compress(images), gzip.compress(labels))
    with pytest.raises(VggbenchError, match=message) as err:
        data.load_fashion_mnist(str(target), train=False)
    one_line(err.value)


def test_a_flipped_byte_in_the_gzip_stream_is_a_gzip_error(data_dir, tmp_path):
    raw = bytearray((data_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target = _data_dir_with_test_split(data_dir, tmp_path, (data_dir / "t10k-images-idx3-ubyte.gz").read_bytes(),
                                       bytes(raw))
    with pytest.raises(VggbenchError, match="t10k-labels-idx1-ubyte.gz: not a readable gzip file") as err:
        data.load_fashion_mnist(str(target), train=False)
    one_line(err.value)


def test_a_test_split_with_zero_images_stops_train_export_before_anything_is_written(data_dir, tmp_path):
    from vggbench import train

    empty = gzip.compress(data.encode_idx(np.zeros((0, 28, 28), np.uint8)))
    target = _data_dir_with_test_split(data_dir, tmp_path, empty, gzip.compress(data.encode_idx(np.zeros(0, np.uint8))))
    out = tmp_path / "runs"
    with pytest.raises(VggbenchError, match="t10k-images-idx3-ubyte.gz holds 0 images") as err:
        train.train_export("vgg11", width_ratio=32, epochs=1, train_limit=64, data_dir=str(target), out=str(out),
                           progress=False, log=lambda message: None)
    one_line(err.value)
    assert not out.exists()  # no run dir, no lock file, not even the --out made for them


# --- artifacts.py: manifests ------------------------------------------------------------------------

def _valid_manifest(**changes):
    manifest = {"manifest_version": 1, "model": "vgg11", "input_size": 96, "width_ratio": 8.0,
                "files": {"model.onnx": SHA}, "trained": True, "test_accuracy": 0.88, "test_images": 10000,
                "variants": {"int8": {"file": "model.int8.onnx", "sha256": SHA, "flagged": False,
                                      "accuracy_drop_points": 0.02}}}
    manifest.update(changes)
    return manifest


@pytest.mark.parametrize("text, message", [
    ("[1, 2, 3]", "is a list, not a JSON object"),
    ('"a string"', "is a string, not a JSON object"),
    (json.dumps(_valid_manifest(input_size="96")), r"key 'input_size' is a string \('96'\), expected an integer"),
    (json.dumps(_valid_manifest(input_size=True)), "key 'input_size' is true/false"),
    (json.dumps(_valid_manifest(input_size=96.0)), "key 'input_size' is a number"),
    (json.dumps(_valid_manifest(files=["model.onnx"])), "key 'files' is a list"),
    (json.dumps(_valid_manifest(files={"model.onnx": 5})), r"key 'files'\['model.onnx'\] is 5, expected a sha256"),
    (json.dumps(_valid_manifest(files={"../../etc/passwd": SHA})), "not a plain file name"),
    (json.dumps(_valid_manifest(model="vgg99")), "key 'model' is 'vgg99', expected a model"),
    (json.dumps(_valid_manifest(width_ratio=0)), "key 'width_ratio' is 0, expected a finite number > 0"),
    (json.dumps(_valid_manifest(width_ratio="8")), "key 'width_ratio' is a string"),
    (json.dumps(_valid_manifest(test_accuracy=88.0)), "key 'test_accuracy' is 88.0, expected 0..1"),
    (json.dumps(_valid_manifest(variants={"int8": "model.int8.onnx"})), r"key 'variants'\['int8'\] is a string"),
    (json.dumps(_valid_manifest(variants={"int8": {"flagged": "no"}})),
     r"key 'variants'\['int8'\].'flagged' is a string"),
    (json.dumps(_valid_manifest()).replace("8.0", "Infinity"), "not valid JSON .*Infinity is not JSON"),
    (json.dumps(_valid_manifest()).replace("8.0", "NaN"), "not valid JSON .*NaN is not JSON"),
    ("[" * 100000 + "]" * 100000, "nested too deeply|not valid JSON"),
    (json.dumps(_valid_manifest(manifest_version=True)), "manifest_version True"),
    (json.dumps(_valid_manifest(model_stats={"params": "many"})), r"key 'model_stats'.'params' is a string"),
])
def test_malformed_manifests_are_one_line_naming_the_file_and_key(tmp_path, text, message):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(VggbenchError, match=message) as err:
        artifacts.read_manifest(tmp_path)
    assert one_line(err.value).startswith(str(tmp_path / "manifest.json"))


def test_a_huge_manifest_is_refused_without_reading_it_all(tmp_path):
    manifest = _valid_manifest(padding="x" * (2 * artifacts.MAX_MANIFEST_BYTES))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    error, peak = _peak_bytes(lambda: artifacts.read_manifest(tmp_path))
    assert f"larger than {artifacts.MAX_MANIFEST_BYTES} bytes" in one_line(error)
    assert peak < 2 * artifacts.MAX_MANIFEST_BYTES + (256 << 10)  # one bounded read, no parse


def test_a_manifest_with_infinity_is_never_written(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"weights")
    manifest = {"model": "vgg11", "input_size": 96, "width_ratio": float("inf"), "files": {}}
    artifacts.record_file(manifest, tmp_path, "model.onnx")
    with pytest.raises(VggbenchError, match="key 'width_ratio' is Infinity, expected a finite number > 0") as err:
        artifacts.write_manifest(tmp_path, manifest)
    one_line(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_the_real_exported_manifest_passes_the_schema(untrained_run_dir):
    manifest = artifacts.read_manifest(untrained_run_dir)
    assert artifacts.verify_all(untrained_run_dir, manifest) is manifest


# --- artifacts.py: one writer per run dir -----------------------------------------------------------

HOLD_LOCK = """
    import sys, time
    from vggbench import artifacts
    with artifacts.run_dir_lock(sys.argv[1], sys.argv[2]):
        print("locked", flush=True)
        sys.stdin.readline()  # hold it until the test closes our stdin
"""


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "runs" / "vgg11-96"
    holder = python(HOLD_LOCK, str(run_dir), "train-export", stdin=subprocess.PIPE)
    try:
        wait_for_line(holder, "locked")
        started = time.perf_counter()
        with pytest.raises(VggbenchError) as err:
            with artifacts.run_dir_lock(run_dir, "optimize"):
                pass
        assert time.perf_counter() - started < 1  # refused at once, not after waiting
        message = one_line(err.value)
        assert message.startswith(f"{run_dir} is in use by train-export (pid {holder.pid} on ")
        assert "another --name" in message
        # a real second process is refused the same way
        second = python(HOLD_LOCK, str(run_dir), "train-export")
        _, stderr = second.communicate(timeout=60)
        assert second.returncode != 0 and f"is in use by train-export (pid {holder.pid}" in stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert not artifacts.lock_path_for(run_dir).exists()  # released and removed
    assert not run_dir.exists()  # the lock never creates the run dir itself
    with artifacts.run_dir_lock(run_dir, "optimize") as lock:  # free again
        assert lock.took_over is None and lock.holder["pid"] == os.getpid()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    run_dir = tmp_path / "vgg11-96"
    holder = python(HOLD_LOCK, str(run_dir), "train-export", stdin=subprocess.PIPE)
    wait_for_line(holder, "locked")
    holder.kill()  # SIGKILL: no cleanup runs, the lock file and its record stay
    holder.wait(timeout=60)
    assert json.loads(artifacts.lock_path_for(run_dir).read_text())["pid"] == holder.pid
    with artifacts.run_dir_lock(run_dir, "train-export") as lock:
        assert lock.took_over["pid"] == holder.pid and lock.took_over["purpose"] == "train-export"
        assert artifacts.read_lock_holder(run_dir)["pid"] == os.getpid()
    assert not artifacts.lock_path_for(run_dir).exists()


ORPHAN_HOLDS_LOCK = """
    import os, sys, time
    from vggbench import artifacts
    lock = artifacts.run_dir_lock(sys.argv[1], "train-export")
    lock.__enter__()
    child = os.fork()
    if child == 0:  # inherits the locked descriptor and outlives its parent
        time.sleep(120)
        os._exit(0)
    print(child, flush=True)
    os._exit(0)  # the recorded holder dies; its forked child still holds the flock
"""


def test_a_lock_held_only_by_an_orphaned_child_of_a_dead_run_is_taken_over(tmp_path):
    run_dir = tmp_path / "vgg11-96"
    parent = python(ORPHAN_HOLDS_LOCK, str(run_dir))
    child_pid = int(parent.stdout.readline())
    parent.wait(timeout=60)
    try:
        assert artifacts.read_lock_holder(run_dir)["pid"] == parent.pid  # still locked, by a dead pid
        with artifacts.run_dir_lock(run_dir, "train-export") as lock:
            assert lock.holder["pid"] == os.getpid()
    finally:
        os.kill(child_pid, signal.SIGKILL)


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    run_dir = tmp_path / "vgg11-96"
    with artifacts.run_dir_lock(run_dir, "train-export") as outer:
        with artifacts.run_dir_lock(run_dir, "optimize") as inner:  # train-export --optimize
            assert inner is outer
        assert artifacts.read_lock_holder(run_dir)["purpose"] == "train-export"
    assert artifacts.read_lock_holder(run_dir) is None


# --- artifacts.py: leftovers of killed runs ---------------------------------------------------------

KILLED_MID_WRITE = """
    import os, signal, sys
    from pathlib import Path
    from vggbench import artifacts
    run_dir = Path(sys.argv[1])
    with artifacts.atomic_path(run_dir / "model.onnx") as temp:
        temp.write_bytes(b"half a model")
        with artifacts.atomic_path(run_dir / "checkpoints" / "epoch-0002.params") as temp2:
            temp2.write_bytes(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temp_files_of_a_killed_run_are_removed_and_finished_files_kept(tmp_path):
    run_dir = tmp_path / "vgg11-96"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "model-0000.params").write_bytes(b"finished")
    (run_dir / "checkpoints" / "epoch-0001.params").write_bytes(b"finished checkpoint")
    (run_dir / ".export.k2j4h5g6").mkdir()  # export's staging folder
    killed = python(KILLED_MID_WRITE, str(run_dir))
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    left = sorted(p.name for p in run_dir.rglob("*.tmp*"))
    assert len(left) == 2 and all(f".{killed.pid}." in name for name in left)
    removed = artifacts.remove_orphan_temp_files(run_dir)
    assert sorted(p.name for p in removed) == sorted(left + [".export.k2j4h5g6"])
    assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")) == [
        "checkpoints", "checkpoints/epoch-0001.params", "model-0000.params"]


def test_a_temp_file_of_a_live_process_is_kept(tmp_path):
    alive = python("import sys; sys.stdin.readline()", stdin=subprocess.PIPE)
    try:
        mine = tmp_path / f".model.{alive.pid}.abcd1234.tmp.onnx"
        mine.write_bytes(b"being written")
        assert artifacts.remove_orphan_temp_files(tmp_path) == []
        assert mine.exists()
    finally:
        alive.stdin.close()
        alive.wait(timeout=60)


def test_temp_names_are_unique_and_carry_the_pid(tmp_path):
    with artifacts.atomic_path(tmp_path / "model.onnx") as first, artifacts.atomic_path(tmp_path / "model.onnx") as second:
        assert first != second
        assert first.name.startswith(f".model.{os.getpid()}.") and first.name.endswith(".tmp.onnx")
    assert artifacts.remove_orphan_temp_files(tmp_path) == []  # both renamed into place, nothing left


# --- artifacts.py: names and output paths -----------------------------------------------------------

@pytest.mark.parametrize("name", ["../../x", "..", ".", "", "   ", "a/b", "a\\b", ".hidden", " padded ", "tab\tname",
                                  "x" * 256])
def test_run_names_must_be_plain_folder_names(name):
    with pytest.raises(VggbenchError, match="is not a plain folder name") as err:
        artifacts.check_run_name(name)
    one_line(err.value)


@pytest.mark.parametrize("name", ["vgg11-96", "vgg11-w8.5-96", "my run", "vgg11_bn-224-try2"])
def test_ordinary_run_names_pass(name):
    assert artifacts.check_run_name(name) == name


def test_output_dir_checks_create_nothing_and_name_the_problem(tmp_path):
    (tmp_path / "a-file").write_text("x")
    cases = {
        tmp_path / "a-file": "--out .*a-file is a file, not a folder",
        tmp_path / "a-file" / "runs": "cannot be created: .*a-file is a file",
    }
    run_dir = tmp_path / "runs" / "vgg11-96"
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text("{}")
    cases[run_dir] = "is inside the run dir .*vgg11-96; give the folder that holds run dirs"
    cases[run_dir / "deeper" / "still"] = "is inside the run dir"
    for path, message in cases.items():
        with pytest.raises(VggbenchError, match=message) as err:
            artifacts.check_output_dir(path)
        one_line(err.value)
    assert artifacts.check_output_dir(tmp_path / "new" / "runs") == tmp_path / "new" / "runs"
    assert not (tmp_path / "new").exists()
    with pytest.raises(VggbenchError, match="is a file, not a run dir"):
        artifacts.run_dir_for(tmp_path, "a-file")
    assert artifacts.run_dir_for(tmp_path / "runs", "vgg16-96") == tmp_path / "runs" / "vgg16-96"


def test_output_file_checks(tmp_path):
    (tmp_path / "a-file").write_text("x")
    for path, message in {tmp_path: "is a folder; give a file name",
                          tmp_path / "a-file" / "results.json": "results.json: folder .*a-file is a file, not a folder"
                          }.items():
        with pytest.raises(VggbenchError, match=message) as err:
            artifacts.check_output_file(path)
        one_line(err.value)
    assert artifacts.check_output_file(tmp_path / "results" / "vgg11.json") == tmp_path / "results" / "vgg11.json"
    assert not (tmp_path / "results").exists()


def test_read_only_output_locations_are_refused_before_any_work(tmp_path):
    target = tmp_path / "readonly"
    (target / "runs").mkdir(parents=True)
    result = in_user_namespace(f"mount --bind {target} {target} && mount -o remount,bind,ro {target}", f"""
        from vggbench import artifacts
        from vggbench.errors import VggbenchError
        for check, path in ((artifacts.check_output_dir, "{target}/runs"), (artifacts.check_output_dir, "{target}/new"),
                            (artifacts.check_output_file, "{target}/results.json")):
            try:
                check(path)
            except VggbenchError as err:
                print(err)
    """)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines == [f"--out {target}/runs is not writable by this user; choose another folder",
                     f"--out {target}/new cannot be created: {target} is not writable by this user (or is a "
                     f"read-only mount); choose another folder",
                     f"--json {target}/results.json: folder {target} is not writable by this user; choose "
                     f"another folder"]


def test_a_full_disk_while_writing_is_one_line_and_leaves_no_temp_file(tmp_path):
    disk = tmp_path / "small-disk"
    disk.mkdir()
    result = in_user_namespace(f"mount -t tmpfs -o size=256k tmpfs {disk}", f"""
        import os
        from vggbench import artifacts
        from vggbench.platform.mxnet import import_mxnet
        mx = import_mxnet()
        from vggbench.errors import VggbenchError
        net = mx.gluon.nn.Dense(1000, in_units=1000)  # 4 MB of parameters
        net.initialize()
        try:
            with artifacts.atomic_path("{disk}/checkpoints/epoch-0001.params") as temp:
                net.save_parameters(str(temp))  # MXNet's own writer
        except VggbenchError as err:
            print(err)
        try:
            artifacts.write_bytes_atomic("{disk}/history.json", bytes(1 << 20))  # Python's writer
        except VggbenchError as err:
            print(err)
        print(sorted(os.listdir("{disk}")), os.listdir("{disk}/checkpoints"))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"cannot write {disk}/checkpoints/epoch-0001.params: disk full (0 bytes free in {disk}/checkpoints); "
        f"free space or choose a writable location, then run the command again",
        f"cannot write {disk}/history.json: No space left on device; free space or choose a writable location, "
        f"then run the command again",
        "['checkpoints'] []"]


def test_a_file_size_limit_is_a_storage_error_too(tmp_path):
    """RLIMIT_FSIZE (EFBIG) needs no namespace, so this write-failure path runs everywhere."""
    proc = python(f"""
        import resource, signal
        from vggbench import artifacts
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, 1 << 16))
        artifacts.write_bytes_atomic("{tmp_path}/model.onnx", bytes(1 << 20))
    """)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert stderr.strip().splitlines()[-1] == (
        f"vggbench.errors.VggbenchError: cannot write {tmp_path}/model.onnx: File too large; free space or choose "
        f"a writable location, then run the command again")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_input_read_inside_a_write_is_not_blamed_on_the_storage(tmp_path):
    with pytest.raises(FileNotFoundError):
        with artifacts.atomic_path(tmp_path / "model.onnx"):
            open(tmp_path / "model-symbol.json")  # a bug or a missing input, not a storage fault
    assert list(tmp_path.iterdir()) == []


# --- models.py range checks -------------------------------------------------------------------------

@pytest.mark.parametrize("model, ratio", [("vgg11", float("inf")), ("vgg11", float("nan")), ("vgg11", 0),
                                          ("vgg11", -2), ("vgg11", 1000), ("vgg11", 64.5), ("lenet", 7),
                                          ("alexnet", 97), ("vgg16_bn", "wide")])
def test_width_ratios_that_would_empty_or_clamp_a_layer_are_refused(model, ratio):
    with pytest.raises(VggbenchError, match="--width-ratio") as err:
        models.check_width_ratio(model, ratio)
    one_line(err.value)
    with pytest.raises(VggbenchError):
        models.get_model(model, width_ratio=ratio)  # no builder clamps silently any more


@pytest.mark.parametrize("model", ["vgg11", "vgg19_bn", "lenet", "alexnet"])
def test_the_largest_allowed_width_ratio_leaves_one_channel_in_the_real_net(model):
    mx = import_mxnet()

    ratio = models.min_channels(model)
    assert models.check_width_ratio(model, ratio) == ratio
    net = models.get_model(model, width_ratio=ratio)
    net.initialize()
    size = models.min_input_size(model)
    net(mx.nd.zeros((1, 1, size, size)))
    full = models.get_model(model)
    full.initialize()
    full(mx.nd.zeros((1, 1, size, size)))
    conv_channels = lambda n: [p.shape[0] for name, p in n.collect_params().items()  # noqa: E731
                               if name.endswith("weight") and len(p.shape) == 4]
    assert min(conv_channels(net)) == 1
    assert min(conv_channels(full)) == ratio  # the table agrees with the builders


@pytest.mark.parametrize("model", ["vgg11", "lenet", "alexnet"])
def test_min_input_size_is_exactly_where_real_shape_inference_starts_to_work(model):
    lowest = models.min_input_size(model)
    assert models.model_stats(model, lowest, width_ratio=4)["params"] > 0
    with pytest.raises(VggbenchError):
        models.model_stats(model, lowest - 1, width_ratio=4)
    for size, message in ((lowest - 1, "is too small"), (models.MAX_INPUT_SIZE + 1, "is larger than"),
                          (96.0, "whole number"), (True, "whole number")):
        with pytest.raises(VggbenchError, match=message) as err:
            models.check_input_size(size, model)
        one_line(err.value)


# --- fuzz: only VggbenchError escapes, memory stays bounded -----------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def idx_like_bytes(draw):
    """IDX headers with random (often lying) counts and dims, then random data of random length."""
    magic = draw(st.sampled_from([data.IMAGES_MAGIC, data.LABELS_MAGIC, draw(st.integers(0, 2 ** 32 - 1))]))
    dims = draw(st.lists(st.integers(0, 2 ** 32 - 1) | st.integers(0, 40), min_size=0, max_size=3))
    payload = draw(st.binary(max_size=4096))
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload


@FUZZ
@given(raw=idx_like_bytes(), kind=st.sampled_from([data.IMAGES_MAGIC, data.LABELS_MAGIC]),
       gzip_it=st.booleans(), flip=st.integers(0, 10 ** 6))
def test_fuzz_the_idx_file_reader(tmp_path, raw, kind, gzip_it, flip):
    path = tmp_path / "fuzz.gz"
    blob = bytearray(gzip.compress(raw) if gzip_it else raw)
    if blob and flip % 3 == 0:  # sometimes corrupt the compressed stream itself
        blob[flip % len(blob)] ^= 0x5A
    path.write_bytes(bytes(blob))
    limit = 64 << 10
    tracemalloc.start()
    try:
        try:
            array = data.read_idx_file(path, kind, max_data_bytes=limit)
        except VggbenchError as err:
            assert "fuzz.gz" in one_line(err)
        else:
            assert array.dtype == np.uint8 and array.nbytes <= limit
            assert data.encode_idx(array) == raw
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit + (4 << 20)


@FUZZ
@given(raw=idx_like_bytes())
def test_fuzz_parse_idx(raw):
    try:
        array = data.parse_idx(raw, data.IMAGES_MAGIC, "fuzz.idx")
    except VggbenchError as err:
        assert "fuzz.idx" in one_line(err)
    else:
        assert data.encode_idx(array) == raw


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                         max_size=4), max_leaves=12)


@FUZZ
@given(key=st.sampled_from(sorted(_valid_manifest()) + ["classes", "in_channels", "class_names", "test_limit",
                                                        "train_seconds", "model_stats", "extra"]),
       value=JSON_VALUES, cut=st.integers(0, 400), mode=st.sampled_from(["replace", "truncate", "whole"]))
def test_fuzz_manifest_loading(key, value, cut, mode):
    manifest = _valid_manifest()
    if mode == "whole":
        manifest = value
    else:
        manifest[key] = value
    raw = json.dumps(manifest).encode()
    if mode == "truncate":
        raw = raw[:cut]
    try:
        loaded = artifacts.parse_manifest(raw, "fuzz/manifest.json")
    except VggbenchError as err:
        assert one_line(err).startswith("fuzz/manifest.json")
    else:  # what the stages then do with it works
        assert isinstance(loaded["model"], str) and isinstance(loaded["input_size"], int)
        assert all(isinstance(n, str) and "/" not in n and len(d) == 64 for n, d in loaded["files"].items())
        assert all(isinstance(entry.get("flagged", False), bool) for entry in loaded.get("variants", {}).values())
        if {"params", "flops_per_image"} <= set(loaded.get("model_stats", {})):
            assert models.model_stats_from_manifest(loaded)["source"] == "manifest"


# --- the command line -------------------------------------------------------------------------------

def vggbench_cli(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """``vggbench ARGS`` run to the end in a child Python."""
    return subprocess.run([sys.executable, "-m", "vggbench.cli", *args], env=child_env(), capture_output=True,
                          text=True, timeout=timeout_s)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, fragment: str) -> None:
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"vggbench {command}: error: ") and fragment in lines[-1], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


TINY_TRAIN = ("--width-ratio", "32", "--train-limit", "256", "--test-limit", "64", "--parity-images", "16",
              "--no-progress")


def test_cli_train_export_refuses_a_name_that_leaves_out_and_an_out_that_is_a_file(tmp_path, data_dir):
    out = tmp_path / "a" / "b"
    out.mkdir(parents=True)
    result = vggbench_cli("train-export", "vgg11", "--out", str(out), "--name", "../../x", "--data-dir", str(data_dir),
                          *TINY_TRAIN)
    assert_one_line_error(result, "train-export", "--name '../../x' is not a plain folder name")
    (tmp_path / "a-file").write_text("x")
    result = vggbench_cli("train-export", "vgg11", "--out", str(tmp_path / "a-file"), *TINY_TRAIN)
    assert_one_line_error(result, "train-export", "is a file, not a folder")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a-file", "a/b"]


@pytest.mark.parametrize("ratio, fragment, zoo_fragment", [("inf", "finite", "finite"), ("nan", "finite", "finite"),
                                                          ("1000", "ratio <= 64", "ratio <= 96")])
def test_cli_width_ratios_that_would_write_infinity_or_clamp_are_refused(tmp_path, data_dir, ratio, fragment,
                                                                         zoo_fragment):
    """train-export names vgg11's limit; `models` lists every model the ratio fits, so it fails only
    when none does, naming the widest model's limit (AlexNet's 96 channels)."""
    for command, args, fragment in (("train-export", ("vgg11", "--out", str(tmp_path), "--data-dir", str(data_dir),
                                                      "--epochs", "1", *TINY_TRAIN[2:]), fragment),
                                    ("models", (), zoo_fragment)):
        result = vggbench_cli(command, *args, "--width-ratio", ratio)
        assert result.returncode in (EXIT_USER_ERROR, 2), result.stderr[-2000:]  # 2: argparse's usage error
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"vggbench {command}: error: ") and "width" in last and fragment in last, last
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no run dir, no lock file, nothing with Infinity in it


@pytest.mark.slow
def test_cli_two_concurrent_train_exports_into_one_run_dir(tmp_path, data_dir):
    args = ("train-export", "vgg11", "--out", str(tmp_path), "--data-dir", str(data_dir), "--epochs", "1",
            *TINY_TRAIN)
    first = start([sys.executable, "-m", "vggbench.cli", *args])
    lock_path = artifacts.lock_path_for(tmp_path / "vgg11-w32-96")
    wait_until(lambda: artifacts.read_lock_holder(tmp_path / "vgg11-w32-96") is not None, first)
    second = vggbench_cli(*args)
    assert_one_line_error(second, "train-export", f"vgg11-w32-96 is in use by train-export (pid {first.pid} on ")
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    assert stdout.strip().splitlines()[-1] == str(tmp_path / "vgg11-w32-96")  # the run dir it printed is whole
    assert artifacts.verify_all(tmp_path / "vgg11-w32-96")["recipe"]["train_limit"] == 256
    assert not lock_path.exists()


TRAIN_UNDER_SIGTERM = """
    import sys
    from vggbench import train
    from vggbench.errors import exit_code_for, install_sigterm_handler

    install_sigterm_handler()
    try:
        train.train_export("vgg11", width_ratio=32, epochs=20, train_limit=256, test_limit=64, parity_images=16,
                           out=sys.argv[1], data_dir=sys.argv[2], progress=False, log=lambda message: None)
    except KeyboardInterrupt as err:
        sys.exit(exit_code_for(err))
"""


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["library", "cli"])
def test_sigterm_during_real_training_exits_143_and_keeps_only_the_last_checkpoint(tmp_path, data_dir, entry):
    """SIGTERM mid-training: exit 143, the last complete checkpoint kept, no temp file, no lock."""
    if entry == "library":  # errors + artifacts + train, without the command line
        proc = python(TRAIN_UNDER_SIGTERM, str(tmp_path), str(data_dir))
    else:
        proc = start([sys.executable, "-m", "vggbench.cli", "train-export", "vgg11", "--out", str(tmp_path),
                      "--data-dir", str(data_dir), "--epochs", "20", *TINY_TRAIN])
    index = tmp_path / "vgg11-w32-96" / "checkpoints" / "last.json"
    wait_until(index.is_file, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_TERMINATED, stderr[-2000:]
    if entry == "cli":
        assert stderr.strip().splitlines()[-1] == "vggbench train-export: terminated"
    epoch = json.loads(index.read_text())["epoch"]
    assert 1 <= epoch < 20
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "vgg11-w32-96", "vgg11-w32-96/checkpoints", f"vgg11-w32-96/checkpoints/epoch-{epoch:04d}.params",
        f"vgg11-w32-96/checkpoints/epoch-{epoch:04d}.states", "vgg11-w32-96/checkpoints/last.json"]


QUICK_BENCH_ARGS = ("--backends", "ort-cpu", "--batch-sizes", "1", "--iters", "1", "--warmup", "0",
                    "--accuracy-limit", "0", "--modes", "end-to-end", "--precisions", "fp32")


def _tampered_copy(untrained_run_dir: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "vgg11-96"
    shutil.copytree(untrained_run_dir, run_dir)
    raw = bytearray((run_dir / "model.onnx").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (run_dir / "model.onnx").write_bytes(bytes(raw))
    return run_dir


@pytest.mark.slow
def test_cli_bench_refuses_a_tampered_artifact_before_measuring(untrained_run_dir, tmp_path):
    run_dir = _tampered_copy(untrained_run_dir, tmp_path)
    result = vggbench_cli("bench", str(run_dir), *QUICK_BENCH_ARGS, "--json", str(tmp_path / "results.json"))
    assert_one_line_error(result, "bench", "model.onnx: sha256")
    assert not (tmp_path / "results.json").exists()


def test_cli_bench_json_to_a_folder_fails_before_measuring(untrained_run_dir, tmp_path):
    started = time.perf_counter()
    result = vggbench_cli("bench", str(untrained_run_dir), *QUICK_BENCH_ARGS, "--json", str(tmp_path))
    assert_one_line_error(result, "bench", "is a folder; give a file name")
    assert time.perf_counter() - started < 15  # no worker was started


@pytest.mark.slow
def test_cli_compare_refuses_a_run_dir_whose_variant_is_missing(untrained_run_dir, tmp_path):
    run_dir = tmp_path / "runs" / "vgg11-96"
    shutil.copytree(untrained_run_dir, run_dir)
    manifest = artifacts.read_manifest(run_dir)
    manifest["files"]["model.int8.onnx"] = SHA  # listed, never written
    artifacts.write_manifest(run_dir, manifest)
    result = vggbench_cli("compare", "--runs-dir", str(tmp_path / "runs"), *QUICK_BENCH_ARGS[:-2],
                          "--json", str(tmp_path / "results.json"))
    assert_one_line_error(result, "compare", "model.int8.onnx: listed in the manifest but missing")
    assert not (tmp_path / "results.json").exists()


# --- hostile inputs: every untrusted file, every lock, every writer, every bound --------------------

def _refused(call, fragment: str, seconds: int = 20) -> str:
    """``call()`` raises a one-line VggbenchError containing ``fragment`` within ``seconds`` (a FIFO
    that blocked the reader would hit the alarm instead)."""
    def expired(signum, frame):
        raise AssertionError(f"the reader blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        with pytest.raises(VggbenchError) as caught:
            call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    message = one_line(caught.value)
    assert fragment in message, message
    return message


def _run_dir_with_history(untrained_run_dir: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(untrained_run_dir, run_dir)
    (run_dir / "history.json").write_text(json.dumps({"epochs": [{"epoch": 1, "images_per_s": 10.0}]}))
    manifest = artifacts.read_manifest(run_dir)
    artifacts.record_file(manifest, run_dir, "history.json")
    artifacts.write_manifest(run_dir, manifest)
    (run_dir / "checkpoints").mkdir()
    for name in ("epoch-0001.params", "epoch-0001.states"):
        (run_dir / "checkpoints" / name).write_bytes(b"x")
    (run_dir / "checkpoints" / "last.json").write_text(json.dumps(
        {"epoch": 1, "params": "epoch-0001.params", "states": "epoch-0001.states", "recipe": {}, "history": []}))
    return run_dir


def _readers(run_dir: Path, tmp_path: Path):
    """Every reader of an untrusted file: (name, the file, read it, its bound as (module, constant),
    a hostile-content edit of the file, the words its one-line refusal must hold)."""
    from vggbench.artifacts import manifest as manifest_module
    from vggbench.bench import pytest_bench, results
    from vggbench.train import checkpoints
    from vggbench.train.distributed import launch

    manifest = artifacts.read_manifest(run_dir)
    results_file, hosts_file, bench_file = tmp_path / "results.json", tmp_path / "hosts", tmp_path / "bench.json"
    results_file.write_text(json.dumps({"schema": results.SCHEMA, "rows": [
        {"model": "vgg11", "backend": "ort-cpu", "status": "ok", "batch_size": 1, "images_per_s": 5.0}]}))
    hosts_file.write_text("10.0.0.1\n")
    bench_file.write_text(json.dumps({"benchmarks": []}))

    def history(text):
        (run_dir / "history.json").write_text(json.dumps({"epochs": [1, 2, 3]}))
        changed = artifacts.read_manifest(run_dir)
        artifacts.record_file(changed, run_dir, "history.json")
        artifacts.write_manifest(run_dir, changed)
        manifest["files"] = changed["files"]

    return [
        ("manifest", run_dir / "manifest.json", lambda: artifacts.read_manifest(run_dir),
         (manifest_module, "MAX_MANIFEST_BYTES"),
         lambda text: (run_dir / "manifest.json").write_text(text.replace(
             '"manifest_version"', '"threads": 2, "manifest_version"', 1)), "key 'threads' is an integer"),
        ("history", run_dir / "history.json", lambda: artifacts.read_history(run_dir, manifest),
         (manifest_module, "MAX_HISTORY_BYTES"), history, "'epochs'[0] is an integer"),
        ("checkpoint index", run_dir / "checkpoints" / "last.json", lambda: checkpoints.read_checkpoint(run_dir),
         (checkpoints, "MAX_CHECKPOINT_INDEX_BYTES"),
         lambda text: (run_dir / "checkpoints" / "last.json").write_text(
             text.replace('"epoch-0001.params"', json.dumps(str(run_dir / "checkpoints" / "epoch-0001.params")))),
         "expected a file name like epoch-0003.params"),
        ("results file", results_file, lambda: results.load_results([str(results_file)]),
         (results, "MAX_RESULTS_BYTES"),
         lambda text: results_file.write_text(text.replace('"batch_size": 1', '"batch_size": "1"')),
         "'rows'[0].'batch_size' is a string"),
        ("hosts file", hosts_file, lambda: launch.read_hosts(str(hosts_file)), (launch, "MAX_HOSTS_FILE_BYTES"),
         lambda text: hosts_file.write_text("10.0.0.1\n-oProxyCommand=touch /tmp/x\n"), "is not a host name or IP"),
        ("pytest-benchmark file", bench_file, lambda: pytest_bench.read_benchmark_json(bench_file),
         (pytest_bench, "MAX_BENCHMARK_JSON_BYTES"),
         lambda text: bench_file.write_text('{"benchmarks": [], "x": 1e400}'), "out of range"),
    ]


def test_every_untrusted_file_reader_refuses_hostile_files_in_one_line(untrained_run_dir, tmp_path):
    """Class: hostile-file readers. Each reader of a file from a run dir, --from, --hosts or a
    checkpoint refuses, in one line naming the file, at once and with bounded memory: a FIFO with no
    writer, a device (/dev/zero) behind a symbolic link, a folder, a file over its bound (lowered
    here, and read in 7-byte chunks: the read loop stops it, not st_size), and well-formed JSON of
    the wrong types."""
    from vggbench.artifacts import reader

    run_dir = _run_dir_with_history(untrained_run_dir, tmp_path)
    for name, path, read, (module, bound), corrupt, typed_words in _readers(run_dir, tmp_path):
        read()  # the good file reads
        good = path.read_bytes()
        for kind in ("fifo", "device", "folder", "too big", "typed"):
            path.unlink()
            if kind == "fifo":
                os.mkfifo(path)
            elif kind == "device":
                path.symlink_to("/dev/zero")
            elif kind == "folder":
                path.mkdir()
            else:
                path.write_bytes(good)
            if kind == "too big":
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(reader, "_CHUNK_BYTES", 7)
                    patch.setattr(module, bound, len(good) - 1)
                    message = _refused(read, f"larger than {len(good) - 1} bytes")
            elif kind == "typed":
                corrupt(good.decode())
                message = _refused(read, typed_words)
            else:
                message = _refused(read, "")
                assert any(word in message for word in ("FIFO", "symbolic link", "character device", "folder",
                                                        "not a regular file")), (name, kind, message)
            assert str(path) in message or str(path.parent) in message, (name, kind, message)
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
            path.write_bytes(good)
            if name == "history":
                changed = artifacts.read_manifest(run_dir)
                artifacts.record_file(changed, run_dir, "history.json")
                artifacts.write_manifest(run_dir, changed)


def test_a_lock_file_that_vggbench_did_not_make_is_refused_and_never_written(tmp_path):
    """Class: lock hardening. A symbolic link, a hard link to another file, a FIFO or a folder named
    like the lock is refused in one line before anything is written, so a shared --out cannot aim a
    (root) writer at another file; a plain leftover lock file is still taken over."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    run_dir = tmp_path / "out" / "run"
    run_dir.parent.mkdir()
    lock_path = artifacts.lock_path_for(run_dir)
    makers = {"symbolic link": lambda: lock_path.symlink_to(victim), "hard link": lambda: os.link(victim, lock_path),
              "FIFO": lambda: os.mkfifo(lock_path), "folder": lambda: lock_path.mkdir()}
    for what, make in makers.items():
        make()
        message = _refused(lambda: artifacts.run_dir_lock(run_dir, "train-export").__enter__(), str(lock_path))
        assert what in message or "not a lock file" in message, message
        assert victim.read_text() == "precious" and os.stat(victim).st_nlink == (2 if what == "hard link" else 1)
        lock_path.rmdir() if what == "folder" else lock_path.unlink()
    lock_path.write_text('{"pid": 1, "host": "elsewhere", "purpose": "x\\u001b[2Jy"}')  # a leftover, crafted record
    with artifacts.run_dir_lock(run_dir, "train-export") as lock:
        assert lock.holder["pid"] == os.getpid()
    assert not lock_path.exists() and victim.read_text() == "precious"


HOLD_TRAIN_EXPORT_LOCK = """
    import sys, time
    from vggbench import artifacts
    with artifacts.run_dir_lock(sys.argv[1], "train-export"):
        print("held", flush=True)
        time.sleep(120)
"""


@pytest.mark.slow
def test_every_run_dir_writer_takes_the_same_lock(untrained_run_dir, tmp_path, data_dir):
    """Class: concurrent writers of every kind. While one process writes a run dir, train-export and
    optimize are refused at once naming the holder; two optimize runs (--int8, --fp16) on one run dir
    never interleave: one is refused and the other's variant is in the manifest."""
    run_dir = tmp_path / "vgg11-96"
    shutil.copytree(untrained_run_dir, run_dir)
    holder = python(HOLD_TRAIN_EXPORT_LOCK, str(run_dir))
    try:
        assert holder.stdout.readline().strip() == "held"
        for args in (("optimize", str(run_dir), "--fp16"),
                     ("train-export", "vgg11", "--out", str(tmp_path), "--name", "vgg11-96", "--force", *TINY_TRAIN)):
            result = vggbench_cli(*args, "--data-dir", str(data_dir))
            assert_one_line_error(result, args[0], f"is in use by train-export (pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.communicate()
    optimize = ("optimize", str(run_dir), "--data-dir", str(data_dir), "--calib-images", "32", "--accuracy-limit", "64",
                "--no-progress")
    first = start([sys.executable, "-m", "vggbench.cli", *optimize, "--int8"])
    wait_until(lambda: artifacts.read_lock_holder(run_dir) is not None, first)
    second = vggbench_cli(*optimize, "--fp16")
    assert_one_line_error(second, "optimize", f"is in use by optimize (pid {first.pid} on ")
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    manifest = artifacts.verify_all(run_dir)
    assert {"opt", "int8"} <= set(manifest["variants"]) and "fp16" not in manifest["variants"]


@pytest.mark.slow
def test_an_interrupted_force_keeps_the_old_run_and_a_finished_one_swaps_in(tmp_path, data_dir):
    """Class: interrupted --force. SIGTERM while --force trains leaves the old run byte for byte
    (verified by its manifest) and nothing beside it; a --force that finishes replaces it."""
    args = ("train-export", "lenet", "--out", str(tmp_path), "--name", "run", "--data-dir", str(data_dir),
            "--epochs", "1", "--train-limit", "128", "--test-limit", "32", "--parity-images", "16", "--no-progress")
    assert vggbench_cli(*args).returncode == 0
    run_dir = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    forced = start([sys.executable, "-m", "vggbench.cli", *args, "--force", "--epochs", "50"])
    wait_until(lambda: any(p.name.startswith(".run.force.") and (p / "checkpoints").exists()
                           for p in tmp_path.iterdir()), forced)
    forced.send_signal(signal.SIGTERM)
    _, stderr = forced.communicate(timeout=120)
    assert forced.returncode == EXIT_TERMINATED, stderr[-2000:]
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    artifacts.verify_all(run_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert vggbench_cli(*args, "--force", "--seed", "1").returncode == 0
    assert artifacts.verify_all(run_dir)["recipe"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_kill_between_the_two_renames_of_a_swap_is_put_back(tmp_path):
    """Where the kernel cannot exchange two folders in one step, a kill between the two renames
    leaves the old run as .NAME.old.PID; the next writer puts it back before deciding anything."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text("old")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(run_dir, tmp_path / f".run.old.{dead.pid}")
    (tmp_path / f".run.force.{dead.pid}").mkdir()  # the half-built new run
    with artifacts.run_dir_lock(run_dir, "train-export"):
        assert len(artifacts.remove_force_leftovers(run_dir)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"] and (run_dir / "manifest.json").read_text() == "old"
    staging = artifacts.force_staging_dir(run_dir)
    (staging / "manifest.json").write_text("new")
    assert artifacts.swap_in(staging, run_dir) == run_dir
    assert (run_dir / "manifest.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_numbers_are_bounded_when_parsed_and_never_written_as_infinity(tmp_path, capsys):
    """Class: bounds. Argument errors are one line with a pointer to --help (exit 2); a learning
    rate that overflows float32, a batch size of a million, a manifest claiming 1e18 classes or a
    number that overflows a float are refused; more threads than CPUs are capped with a warning;
    JSON is never written with Infinity."""
    from vggbench.platform.mxnet import max_threads, resolve_threads

    for args, words in ((("train-export", "vgg11", "--lr", "1e39"), "argument --lr: expected a number > 0 and < 10000"),
                        (("bench", "x", "--batch-sizes", "1000000"), "argument --batch-sizes"),
                        (("bench",), "required: RUN_DIR")):
        result = vggbench_cli(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert words in result.stderr and f"see `vggbench {args[0]} --help`" in result.stderr
    assert resolve_threads(10_000) == (max_threads(), "--threads")
    assert "is more than the" in capsys.readouterr().err
    manifest = {"manifest_version": 1, "model": "vgg11", "input_size": 96, "files": {}, "classes": 10 ** 18}
    _refused(lambda: artifacts.parse_manifest(json.dumps(manifest).encode(), "m.json"), "key 'classes'")
    _refused(lambda: artifacts.parse_manifest(b'{"manifest_version": 1e400}', "m.json"), "out of range")
    artifacts.write_json_atomic(tmp_path / "r.json", {"rows": [{"accuracy_drop_points": float("inf")}]})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: 1 / 0) == \
        {"rows": [{"accuracy_drop_points": None}]}
    assert "rows[0].accuracy_drop_points" in capsys.readouterr().err


def test_outputs_naming_one_file_are_refused_before_measuring(tmp_path):
    """--json, --csv, --markdown, --plot: one path, one path through '..', a symbolic link or a hard
    link to another output are one file, refused in one line naming both flags."""
    from vggbench.workflows import check_outputs

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text("{}")
    os.link(tmp_path / "a.json", tmp_path / "hard.csv")
    (tmp_path / "link.md").symlink_to(tmp_path / "a.json")
    a = str(tmp_path / "a.json")
    for other in (a, str(tmp_path / "sub" / ".." / "a.json"), str(tmp_path / "hard.csv"), str(tmp_path / "link.md")):
        _refused(lambda: check_outputs([a, other]), f"--json {a} and --csv {other} are the same file")
    check_outputs([a, str(tmp_path / "b.csv"), str(tmp_path / "c.md"), str(tmp_path / "d.png")])


def test_an_onnx_model_with_external_data_is_refused(untrained_run_dir, tmp_path):
    """The manifest's sha256 covers model.onnx only: tensors kept in a weights.bin beside it would be
    loaded unchecked (zeroing them changed the accuracy and exited 0). bench refuses such a model."""
    import onnx
    from onnx import numpy_helper

    from vggbench.bench.sweep import verify_run_dir

    run_dir = tmp_path / "run"
    shutil.copytree(untrained_run_dir, run_dir)
    model = onnx.load(str(run_dir / "model.onnx"))
    for index, tensor in enumerate(model.graph.initializer):
        model.graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    onnx.save_model(model, str(run_dir / "model.onnx"), save_as_external_data=True, location="weights.bin",
                    size_threshold=0)
    manifest = artifacts.read_manifest(run_dir)
    artifacts.record_file(manifest, run_dir, "model.onnx")
    artifacts.write_manifest(run_dir, manifest)
    _refused(lambda: verify_run_dir(run_dir, manifest, {"ort-cpu": ["fp32"]}), "external file 'weights.bin'")


# A worker of a hand-started dist_sync job: one real push/pull, then rank 1 dies (SIGKILL) and rank 0
# waits in its second step (its own watchdog is long, so only the scheduler's and server's decide).
DIST_WORKER = """
    import os, signal, time
    from vggbench.train import distributed
    from vggbench.platform.mxnet import import_mxnet
    mx = import_mxnet()
    watchdog = distributed.KVStoreWatchdog(timeout_s=120, poll_s=0.1)
    kv, info = distributed.create_kvstore("dist_sync", watchdog)
    kv.init(0, mx.nd.zeros(4))
    out = mx.nd.zeros(4)
    kv.push(0, mx.nd.ones(4))
    kv.pull(0, out=out)
    out.wait_to_read()
    if info.rank == 1:
        time.sleep(2)  # dies mid-job, as a worker does (not within the watchdog's first look)
        os.kill(os.getpid(), signal.SIGKILL)
    with watchdog.guard("the second step"):
        kv.push(0, mx.nd.ones(4))
        kv.pull(0, out=out)
        out.wait_to_read()
"""


def test_a_hand_started_job_whose_worker_died_ends_its_scheduler_and_server():
    """Class: distributed watchdogs. Started without the launcher (as Slurm or Kubernetes would),
    a job whose worker was killed ends its scheduler and server with one line and status 4 after
    VGGBENCH_DIST_TIMEOUT_S, instead of leaving them running forever."""
    from vggbench.train import distributed
    from vggbench.train.distributed import launch

    plan = launch.plan_local(2, 1, [sys.executable, "-c", textwrap.dedent(DIST_WORKER)])
    base = {k: v for k, v in child_env().items() if k not in launch.DROPPED_ENV and k != distributed.PARENT_PID_ENV}
    base[distributed.TIMEOUT_ENV] = "3"
    procs = [subprocess.Popen(list(spec.argv), env={**base, **spec.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for spec in plan]
    try:
        for spec, proc in zip(plan[:2], procs[:2]):  # the scheduler and the server
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == distributed.WATCHDOG_EXIT_CODE, (spec.label, err[-2000:])
            lines = [line for line in err.splitlines() if line.startswith("vggbench:")]
            assert len(lines) == 1 and "a peer (worker or server) disconnected" in lines[0], err[-2000:]
            assert "within 3 s" in lines[0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


ATTACK = """
    import os, socket, sys, time
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as sock:
                sock.sendall(os.urandom(4096))
                time.sleep(0.5)
        except OSError:
            time.sleep(0.2)
"""


def test_launch_names_a_scheduler_aborted_by_a_malformed_message():
    """ps-lite has no authentication: 4 kB of random bytes to the scheduler's port abort it in its
    protobuf parser (a known ps-lite limitation). launch ends the job and says what probably
    happened, and that the network must be trusted; the --hosts plan says so too."""
    import io

    from vggbench.train.distributed import launch

    plan = launch.plan_local(1, 1, [sys.executable, "-c", "import time; time.sleep(60)"])
    attacker = python(ATTACK, plan[0].env["DMLC_PS_ROOT_PORT"])
    out = io.StringIO()
    try:
        code = launch.run_local(plan, timeout_s=60, grace_s=3, stream=out)
    finally:
        attacker.kill()
        attacker.communicate()
    assert code == 128 + signal.SIGABRT, out.getvalue()[-2000:]
    said = [line for line in out.getvalue().splitlines() if line.startswith("vggbench launch:")]
    assert len(said) == 1 and "scheduler aborted (malformed message from a peer outside the job?)" in said[0]
    assert "no authentication" in said[0] and "trusted, isolated network" in launch.NO_AUTHENTICATION


def _real_results_document(path: Path) -> dict:
    """A small results document as `bench --json` writes it (two ok rows, training, environment)."""
    from vggbench.bench import results

    row = {key: None for key in results.ROW_KEYS}
    row.update(model="vgg11", input_size=96, width_ratio=16.0, backend="ort-cpu", device="cpu", precision="fp32",
               batch_size=1, mode=results.MODE_END_TO_END, status="ok", images_per_s=100.0,
               images_per_s_ci_low=95.0, images_per_s_ci_high=105.0, rounds=3, calls=6, noisy=False,
               round_images_per_s=[99.0, 100.0, 101.0], latency_p50_ms=10.0, latency_p99_ms=12.0,
               gflops_per_image=0.5, gflops_per_s=50.0, threads=2, run_dir=str(path))
    baseline = dict(row, backend="mxnet-hybrid", images_per_s=80.0, round_images_per_s=[79.0, 80.0, 81.0])
    return {"schema": results.SCHEMA, "rows": [baseline, row],
            "training": [{"model": "vgg11", "input_size": 96, "width_ratio": 16.0, "epoch": 1, "run_dir": str(path),
                          "train_images_per_s": 10.0, "devices": "cpu(0)", "threads": 2, "batch_size": 64}],
            "environment": {"cpu": "x", "cores": 2, "gpus": [], "versions": {"onnxruntime": "1"},
                            "theoretical_peak": {"available": True, "fp32_gflops": 300.0, "fp32_formula": "f",
                                                 "precisions": {"fp32": {"gflops_per_s": 300.0, "formula": "f"}}}},
            "settings": {"threads": 2}}


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=False,
                           allow_infinity=False) | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                       max_size=3), max_leaves=6)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["row", "training", "environment", "theoretical_peak", "settings", "top"]),
       key=st.sampled_from(["model", "batch_size", "images_per_s", "round_images_per_s", "noisy", "gpus", "cpu",
                            "versions", "precisions", "available", "train_images_per_s", "width_ratio", "rows",
                            "environment", "training", "fp32_gflops", "threads", "runtime", "status"]),
       value=JSON_VALUES)
def test_fuzz_results_files_are_refused_in_one_line_or_rendered(tmp_path, where, key, value):
    """Class: hostile-file readers, fuzzed. Any field of a results file replaced by any JSON value
    is either refused in one line naming the file, or loads and renders every report compare writes
    (table, CSV, Markdown) without a traceback."""
    from vggbench.bench import report, results

    document = _real_results_document(tmp_path)
    target = {"row": document["rows"][1], "training": document["training"][0],
              "environment": document["environment"], "theoretical_peak": document["environment"]["theoretical_peak"],
              "settings": document["settings"], "top": document}[where]
    target[key] = value
    path = tmp_path / "fuzz.json"
    path.write_text(json.dumps(document))
    try:
        loaded = results.load_results([str(path)])
    except VggbenchError as err:
        assert one_line(err).startswith(str(path)) or "--from" in str(err)
        return
    report.render_results(loaded, pivot=True)
    report.csv_text(loaded["rows"])
    report.markdown_report(loaded)
