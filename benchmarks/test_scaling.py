"""Data-parallel scaling: training images/s of a ``dist_sync`` job with 1 and with 2 local workers.

Reported, not gated (issue 12): on a 2-core machine two workers share the cores with the server
and the scheduler, so the number says what this machine does, not what a cluster would. Each
round is one whole job started with ``vggbench.train.distributed.launch`` on loopback (scheduler, one server,
``N`` workers), each worker running vggbench's own loop (``train.build_network``,
``train.build_trainer``, ``distributed.DistributedTrainer``, ``train.train_epoch``) over its shard
of real Fashion-MNIST images: ``WARMUP_STEPS`` untimed steps, then ``TIMED_STEPS`` timed ones.
Weak scaling: every worker takes ``PER_WORKER_BATCH`` images per step, so the global batch is
``N x PER_WORKER_BATCH``.

The round's wall time includes starting the processes (so no ``images_per_round``: a table's
images/s column would mix start-up into it); the numbers to read are in extra_info:
``images_per_s`` (global images in the timed steps / the slowest worker's time for them),
``step_ms`` and ``speedup_vs_1_worker`` (on the 2-worker row, when the 1-worker row ran first).
Each worker runs with the suite's thread count (``VGGBENCH_BENCH_THREADS``, default 1 per
worker). The gate ignores ``kind=scaling``. Quick check: ``pytest benchmarks/test_scaling.py
--benchmark-disable``.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

MODEL, WIDTH_RATIO, INPUT_SIZE, PER_WORKER_BATCH = "vgg11", 16.0, 96, 16
WARMUP_STEPS, TIMED_STEPS = 2, 8
REPLY = "vggbench-scaling:"
JOB_TIMEOUT_S = 300.0


def worker_main(data_dir: str) -> None:
    """One worker of the job: join, train the untimed then the timed steps, print the timing."""
    from vggbench import data, train
    from vggbench.platform import mxnet as mxnet_platform
    from vggbench.train import distributed

    mx = mxnet_platform.import_mxnet()
    watchdog = distributed.KVStoreWatchdog(timeout_s=120)
    kv, info = distributed.create_kvstore("dist_sync", watchdog)
    global_batch = PER_WORKER_BATCH * info.num_workers
    recipe = train.Recipe(model=MODEL, input_size=INPUT_SIZE, width_ratio=WIDTH_RATIO, batch_size=global_batch)
    contexts = [mx.cpu()]
    net = train.build_network(recipe, contexts)
    trainer = distributed.DistributedTrainer(
        train.build_trainer(net, recipe, **{**distributed.trainer_options("dist_sync"), "kvstore": kv}), kv, info,
        net, contexts, (1, INPUT_SIZE, INPUT_SIZE), global_batch, watchdog)
    trainer.prepare()
    stats = {}
    for epoch, steps in ((1, WARMUP_STEPS), (2, TIMED_STEPS)):
        images, labels = data.load_split(data_dir, True, global_batch * steps, seed=epoch)
        plan = distributed.plan_shards(len(labels), info.num_workers, global_batch, epoch_seed=epoch)
        mine = plan.indices(info.rank)
        loader = data.data_loader(images[mine], labels[mine], INPUT_SIZE, PER_WORKER_BATCH, shuffle=False)
        trainer.begin_epoch(plan, epoch)
        stats = train.train_epoch(net, trainer, recipe.make_loss(), loader, contexts, epoch, 2, recipe.lr,
                                  progress=False)
        trainer.finish_epoch()
    trainer.close()
    watchdog.close()
    print(REPLY + json.dumps({"rank": info.rank, "workers": info.num_workers, "seconds": stats["seconds"],
                              "train_images": stats["train_images"], "threads": mxnet_platform.mxnet_threads()}),
          flush=True)


def run_job(workers: int, data_dir: Path) -> dict:
    """Start a ``workers``-worker job on loopback and return its timing (see the module docstring)."""
    from vggbench.train.distributed import launch

    plan = launch.plan_local(workers, 1, [sys.executable, __file__, "--worker", str(data_dir)])
    out = io.StringIO()
    code = launch.run_local(plan, timeout_s=JOB_TIMEOUT_S, stream=out)
    replies = [json.loads(line.split(REPLY, 1)[1]) for line in out.getvalue().splitlines() if REPLY in line]
    if code != 0 or len(replies) != workers:
        raise RuntimeError(f"the {workers}-worker job failed (exit {code}): " + out.getvalue()[-2000:])
    seconds = max(reply["seconds"] for reply in replies)
    images = sum(reply["train_images"] for reply in replies)
    return {"images_per_s": images / seconds, "step_ms": 1e3 * seconds / TIMED_STEPS,
            "threads": replies[0]["threads"], "global_batch": PER_WORKER_BATCH * workers}


_measured = {}


@pytest.mark.parametrize("workers", [1, 2], ids=["1-worker", "2-workers"])
def test_dist_sync_training_throughput(benchmark, data_dir, workers):
    from vggbench import models
    from vggbench.train import distributed

    benchmark.extra_info.update(kind="scaling", model=MODEL, width_ratio=WIDTH_RATIO, input_size=INPUT_SIZE,
                                batch_size=PER_WORKER_BATCH, workers=workers, kvstore="dist_sync")
    result = benchmark.pedantic(run_job, args=(workers, data_dir), rounds=1, iterations=1)
    _measured[workers] = result
    params = models.model_stats(MODEL, INPUT_SIZE, width_ratio=WIDTH_RATIO)["params"]
    benchmark.extra_info.update(result, step_traffic_bytes=distributed.step_traffic_bytes(params)["total_bytes"])
    if workers > 1 and 1 in _measured:
        benchmark.extra_info["speedup_vs_1_worker"] = result["images_per_s"] / _measured[1]["images_per_s"]
    assert result["images_per_s"] > 0


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    worker_main(sys.argv[2])
