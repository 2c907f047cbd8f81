"""Training throughput: train-step images/s of vggbench's own loop, all cores against one thread.

One round is one training step exactly as ``train-export`` runs it: the recipe's network
(:func:`vggbench.train.loop.build_network`) and trainer (:func:`vggbench.train.loop.build_trainer`), one
batch through :func:`vggbench.train.loop.train_epoch` (forward, loss, backward, optimizer update), then
``mx.nd.waitall()`` so the asynchronous update is finished inside the round. The case is the one
issue 14 names: vgg11_bn at width 1/8, 96x96, batch 64 of real Fashion-MNIST training images.

MXNet sizes its OpenMP pool once, when it is first imported, so a thread count cannot change inside
one process (and this suite's conftest pins the suite's own process to ``VGGBENCH_BENCH_THREADS``).
Each thread count therefore runs in a worker process of its own, started with ``OMP_NUM_THREADS``
set before its first import of mxnet. The benchmark times, here, one request/reply per step: the
worker runs the step, waits for it and answers. The bare request/reply round trip is measured too
(``round_trip_overhead_ms`` in extra_info), so the numbers say what they include.

extra_info: ``kind=train_step``, ``thread_setting`` (``all-cores`` or ``1-thread``), ``threads``
(what the worker's MXNet really runs with), ``images_per_round`` and, after the rounds,
``images_per_s`` (batch / median round). A ratio floor pairs the two settings of the same case on
``thread_setting`` (the gate's floors live in benchmarks/gate.py).

Run one quick invocation with ``pytest benchmarks/test_training.py --benchmark-disable`` (one step
per setting, untimed), the real thing with the suite (``tox -e bench``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

MODEL, WIDTH_RATIO, INPUT_SIZE, BATCH_SIZE = "vgg11_bn", 8.0, 96, 64
WARMUP_STEPS = 2  # untimed, in the worker's setup: one-time primitive creation and graph building
PINGS = 20
REPLY = "vggbench-train-worker:"
STARTUP_TIMEOUT_S = 300.0


def _thread_settings():
    from vggbench.platform.cpu import physical_cores

    return {"all-cores": physical_cores(), "1-thread": 1}


THREAD_SETTINGS = _thread_settings()


# --- the worker process --------------------------------------------------------------------------

def _reply(message: dict) -> None:
    sys.stdout.write(REPLY + json.dumps(message) + "\n")
    sys.stdout.flush()


def worker_main() -> None:
    """Worker: read the case from stdin, build it, then one reply per request line
    (``step``: one training step, finished; ``ping``: nothing, to time the round trip)."""
    spec = json.loads(sys.stdin.readline())
    from vggbench import data, train
    from vggbench.platform import mxnet as mxnet_platform

    mx = mxnet_platform.import_mxnet()
    recipe = train.Recipe(model=spec["model"], input_size=spec["input_size"], width_ratio=spec["width_ratio"],
                          batch_size=spec["batch_size"])
    contexts = [mx.cpu()]
    net = train.build_network(recipe, contexts)
    trainer, loss_fn = train.build_trainer(net, recipe), recipe.make_loss()
    images, labels = data.load_split(spec["data_dir"], True, recipe.batch_size, seed=0)
    batch = [(mx.nd.array(data.preprocess(images, recipe.input_size)), mx.nd.array(labels))]

    def step() -> int:
        stats = train.train_epoch(net, trainer, loss_fn, batch, contexts, 1, 1, recipe.lr, progress=False)
        mx.nd.waitall()
        return stats["train_images"]

    for _ in range(spec["warmup_steps"]):
        step()
    _reply({"ready": True, "threads": mxnet_platform.mxnet_threads()})
    for line in sys.stdin:
        _reply({"train_images": step()} if line.strip() == "step" else {})


class TrainWorker:
    """The parent's end of one worker process at ``threads`` OpenMP threads."""

    def __init__(self, threads: int, data_dir: Path):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
        env.pop("MXNET_OMP_MAX_THREADS", None)  # it would override OMP_NUM_THREADS
        self._stderr = tempfile.TemporaryFile()
        self._process = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env,
                                         cwd=Path(__file__).resolve().parents[1])
        spec = {"model": MODEL, "width_ratio": WIDTH_RATIO, "input_size": INPUT_SIZE, "batch_size": BATCH_SIZE,
                "data_dir": str(data_dir), "warmup_steps": WARMUP_STEPS}
        self.ready = self._request(json.dumps(spec))

    def _request(self, line: str) -> dict:
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        for out in self._process.stdout:
            if out.startswith(REPLY):
                return json.loads(out[len(REPLY):])
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"training worker exited ({self._process.wait()}): " + " | ".join(tail))

    @property
    def pid(self) -> int:
        return self._process.pid

    def step(self) -> dict:
        return self._request("step")

    def round_trip_overhead_ms(self) -> float:
        times = []
        for _ in range(PINGS):
            start = time.perf_counter()
            self._request("ping")
            times.append(time.perf_counter() - start)
        return 1e3 * sorted(times)[len(times) // 2]

    def close(self) -> None:
        self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()
        self._stderr.close()


@pytest.fixture(scope="module", params=list(THREAD_SETTINGS), ids=list(THREAD_SETTINGS))
def train_worker(request, data_dir):
    worker = TrainWorker(THREAD_SETTINGS[request.param], data_dir)
    worker.setting = request.param
    yield worker
    worker.close()


# --- the benchmark ---------------------------------------------------------------------------------

class _MachineContext:
    """What other processes did with the CPU while one setting's rounds ran. All-cores scaling
    cannot be judged while a neighbour holds a core: the gate reads ``machine_busy`` and calls a
    ratio under its floor *unclear* then, not a failure."""

    def __init__(self, worker_pid: int):
        from vggbench.platform import load

        self._load, self._worker_pid = load, worker_pid
        self._before, self._own_before = load.cpu_times(), self._own_cpu_s()

    def _own_cpu_s(self) -> float:
        return (self._load.process_cpu_s(self._worker_pid) or 0.0) + sum(os.times()[:2])

    def finish(self) -> dict:
        from vggbench.platform.cpu import physical_cores

        after = self._load.cpu_times()
        if not (self._before and after):
            return {"machine_busy": None, "other_busy_pct": None}
        usage = self._load.cpu_usage_between(self._before, after, self._own_cpu_s() - self._own_before)
        return {"machine_busy": self._load.machine_busy(None, physical_cores(), usage=usage),
                "other_busy_pct": usage["other_busy_pct"]}


@pytest.mark.benchmark(min_rounds=5)
def test_train_step(benchmark, suite, train_worker):
    threads = train_worker.ready["threads"]
    assert threads == THREAD_SETTINGS[train_worker.setting], "the worker's MXNet did not take OMP_NUM_THREADS"
    benchmark.group = f"training step {MODEL}-w{WIDTH_RATIO:g}-{INPUT_SIZE}px batch {BATCH_SIZE}"
    benchmark.extra_info.update(suite.info(
        model=MODEL, width_ratio=WIDTH_RATIO, input_size=INPUT_SIZE, batch_size=BATCH_SIZE, threads=threads,
        thread_setting=train_worker.setting, kind="train_step", backend="mxnet-hybrid", precision="fp32",
        images_per_round=BATCH_SIZE, round_trip_overhead_ms=train_worker.round_trip_overhead_ms()))
    context = _MachineContext(train_worker.pid)
    reply = benchmark(train_worker.step)
    benchmark.extra_info.update(context.finish())
    assert reply["train_images"] == BATCH_SIZE
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["images_per_s"] = BATCH_SIZE / benchmark.stats.stats.median


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    worker_main()
