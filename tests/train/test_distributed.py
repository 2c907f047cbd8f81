"""vggbench.train.distributed: shards, batch semantics, the watchdog, and real KVStore jobs on loopback.

The job tests start a real scheduler, server and two workers (``vggbench.train.distributed.launch``) on 127.0.0.1
running a tiny Gluon network through :class:`DistributedTrainer`, and compare the weights with a
single process doing the same steps.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vggbench.errors import VggbenchError
from vggbench.train import distributed
from vggbench.train.distributed import launch

# --- shards ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_images, workers, global_batch", [(10, 2, 4), (9, 2, 4), (64, 4, 16), (7, 3, 6),
                                                             (1000, 3, 96), (5, 5, 5)])
def test_shards_are_disjoint_cover_every_image_once_and_take_equal_steps(n_images, workers, global_batch):
    plan = distributed.plan_shards(n_images, workers, global_batch, epoch_seed=3)
    shards = [plan.indices(rank) for rank in range(workers)]
    assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(n_images))  # union, each once
    assert sum(len(s) for s in shards) == n_images  # so disjoint
    assert all(len(counts) == plan.steps == -(-n_images // global_batch) for counts in plan.local_images)
    for step, total in enumerate(plan.step_images):
        counts = [plan.local_images[rank][step] for rank in range(workers)]
        assert sum(counts) == total and max(counts) - min(counts) <= 1
        # step k of the workers together is exactly positions k*B..k*B+total of the epoch order
        start = step * global_batch
        together = np.concatenate([shards[r][sum(plan.local_images[r][:step]):][:counts[r]] for r in range(workers)])
        assert np.array_equal(together, plan.order[start:start + total])
    assert np.array_equal(distributed.shard_indices(n_images, 1, workers, 3, global_batch), shards[1])


def test_a_new_epoch_reshuffles_and_the_remainder_may_leave_a_worker_idle():
    plan = distributed.plan_shards(9, 2, 4, epoch_seed=1)
    assert plan.step_images == (4, 4, 1) and plan.local_images == ((2, 2, 1), (2, 2, 0))
    assert not np.array_equal(plan.order, distributed.plan_shards(9, 2, 4, epoch_seed=2).order)


def test_one_worker_gets_the_single_process_loaders_order():
    """Step k of any number of workers is the single-process loader's batch k: same permutation."""
    from vggbench import data

    n_images = 50
    images = np.zeros((n_images, 28, 28), dtype=np.uint8)
    labels = np.arange(n_images, dtype=np.int32)  # the label says which image came out
    drawn = np.concatenate([y.asnumpy() for _, y in data.data_loader(images, labels, 32, 16, shuffle=True, seed=77)])
    assert np.array_equal(drawn.astype(np.int64), distributed.epoch_order(n_images, 77))


@pytest.mark.parametrize("call, words", [
    (lambda: distributed.plan_shards(10, 3, 8, 0), "--batch-size 8 is the global batch and must split evenly over 3"),
    (lambda: distributed.plan_shards(2, 3, 6, 0), "raise --train-limit to at least 3"),
    (lambda: distributed.check_kvstore("nccl"), "choose from device, local, dist_sync"),
    (lambda: distributed.check_optimizer("dist_async", "adam"), "use --optimizer sgd"),
    (lambda: distributed.resolve_timeout_s(None, {distributed.TIMEOUT_ENV: "soon"}), "is not a number of seconds"),
    (lambda: distributed.resolve_timeout_s(-1.0), "must be a finite number of seconds > 0"),
])
def test_user_mistakes_are_one_line_errors(call, words):
    with pytest.raises(VggbenchError, match=words) as err:
        call()
    assert "\n" not in str(err.value)


def test_dist_info_reads_the_dmlc_environment():
    env = {"DMLC_ROLE": "worker", "DMLC_PS_ROOT_URI": "10.0.0.1", "DMLC_PS_ROOT_PORT": "9091",
           "DMLC_NUM_WORKER": "4", "DMLC_NUM_SERVER": "2"}
    info = distributed.DistInfo.from_env("DIST_SYNC", env)
    assert (info.kvstore, info.role, info.num_workers, info.num_servers, info.root_uri, info.root_port) == \
        ("dist_sync", "worker", 4, 2, "10.0.0.1", 9091)
    assert info.distributed and info.is_rank0
    assert not distributed.DistInfo.from_env("device", {}).distributed
    with pytest.raises(VggbenchError, match="DMLC_PS_ROOT_PORT, DMLC_NUM_SERVER are not set: start the job with "
                                            "vggbench launch"):
        distributed.DistInfo.from_env("dist_async", {k: v for k, v in env.items()
                                                     if k not in ("DMLC_PS_ROOT_PORT", "DMLC_NUM_SERVER")})
    with pytest.raises(VggbenchError, match="DMLC_NUM_WORKER='two' must be a whole number"):
        distributed.DistInfo.from_env("dist_sync", {**env, "DMLC_NUM_WORKER": "two"})


def test_create_kvstore_without_the_environment_fails_at_once(monkeypatch):
    for name in distributed.REQUIRED_ENV:
        monkeypatch.delenv(name, raising=False)
    start = time.monotonic()
    with pytest.raises(VggbenchError, match="--kvstore dist_sync needs the environment variables"):
        distributed.create_kvstore("dist_sync")
    assert time.monotonic() - start < 5
    kv, info = distributed.create_kvstore("local")
    assert kv.type == "local" and info.rank == 0 and info.num_workers == 1


def test_recipe_fields_and_trainer_options():
    info = distributed.DistInfo(kvstore="dist_sync", rank=0, num_workers=4, num_servers=2)
    fields = distributed.distributed_recipe_fields(info, ["gpu(0)", "gpu(1)"], global_batch=256)
    assert (fields["global_batch"], fields["per_worker_batch"], fields["per_device_batch"]) == (256, 64, 32)
    assert (fields["kvstore"], fields["num_workers"], fields["update_on_kvstore"]) == ("dist_sync", 4, False)
    assert fields["train_metrics"] == "rank 0's shard"
    assert distributed.trainer_options("dist_async") == {"kvstore": "dist_async", "update_on_kvstore": True}
    assert distributed.trainer_options("Device") == {"kvstore": "device", "update_on_kvstore": None}


def test_step_traffic_is_every_gradient_out_and_every_weight_back():
    assert distributed.step_traffic_bytes(1000) == {"push_bytes": 4000, "pull_bytes": 4000, "total_bytes": 8000}
    rows = distributed.communication_table(("vgg11",), (96,), width_ratio=16)
    from vggbench import models

    params = models.model_stats("vgg11", 96, width_ratio=16)["params"]
    assert rows[0]["total_bytes"] == 8 * params
    assert rows[0]["link_ms_10gbit"] == pytest.approx(8 * params * 8 / 10e9 * 1e3)


# --- the watchdog ----------------------------------------------------------------------------------

def _run_python(code: str, timeout_s: float = 30, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout_s, env=env)


def test_watchdog_ends_a_stuck_wait_with_one_line_and_its_exit_code():
    start = time.monotonic()
    done = _run_python("""
        import time
        from vggbench.train.distributed import KVStoreWatchdog
        watchdog = KVStoreWatchdog(timeout_s=10, label="rank 1 of 2 (dist_sync)", poll_s=0.1)
        with watchdog.guard("a quick step"):
            pass
        with watchdog.guard("step 3/9 of epoch 1 (push gradients, pull the sum)", timeout_s=0.5):
            time.sleep(60)
        print("not reached")
    """)
    assert time.monotonic() - start < 20
    assert done.returncode == distributed.WATCHDOG_EXIT_CODE
    assert "not reached" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert lines == ["vggbench: rank 1 of 2 (dist_sync): step 3/9 of epoch 1 (push gradients, pull the sum) did "
                     "not finish within 0.5 s: a worker, server or the scheduler has probably died (or is slower than "
                     f"the bound: raise {distributed.TIMEOUT_ENV}); exiting with status 4"]


def test_watchdog_ends_the_process_when_its_launcher_is_gone(tmp_path):
    """A child of vggbench launch notices its launcher died (re-parented) and exits."""
    pid_file = tmp_path / "child"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, subprocess, sys
        env = dict(os.environ, {distributed.PARENT_PID_ENV}=str(os.getpid()))
        child = subprocess.Popen([sys.executable, "-c", "import os, time; from vggbench.train.distributed import "
                                  "KVStoreWatchdog; w = KVStoreWatchdog(60, 'worker', poll_s=0.1); "
                                  "open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"], env=env)
        while not os.path.exists({str(pid_file)!r}):
            pass
        os._exit(0)  # the launcher dies without ending its child
    """)])
    parent.wait(timeout=30)
    child = int(pid_file.read_text())
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[-1][:3]
    finally:
        try:
            os.kill(child, 9)
        except ProcessLookupError:
            pass


# --- real KVStore jobs on loopback -----------------------------------------------------------------

# Two convolutions: big enough for MXNet's oneDNN kernels, whose weight layout the dist KVStore
# cannot push unless DistributedTrainer.prepare() copies the weights back to the default layout.
TINY_NET = """net = gluon.nn.HybridSequential()
net.add(gluon.nn.Conv2D(4, 3, padding=1, activation="relu"), gluon.nn.Conv2D(8, 3, activation="relu"),
        gluon.nn.Flatten(), gluon.nn.Dense(4))"""

# A tiny real training run through DistributedTrainer. argv: out_dir kvstore n_images global_batch
# epochs timeout_s die_at_step (rank 1 SIGKILLs itself before that global step; negative: raises
# an error there instead and leaves the job with abandon(); 0: never).
WORKER_SCRIPT = '''
import os, signal, sys, time
import numpy as np
from vggbench.train import distributed
from vggbench.platform.mxnet import import_mxnet

out_dir, kvstore = sys.argv[1], sys.argv[2]
n_images, global_batch, epochs = (int(v) for v in sys.argv[3:6])
timeout_s, die_at_step = float(sys.argv[6]), int(sys.argv[7])
mx = import_mxnet()
from mxnet import autograd, gluon

watchdog = distributed.KVStoreWatchdog(timeout_s=timeout_s, poll_s=0.1)
kv, info = distributed.create_kvstore(kvstore, watchdog)
print(f"joined as rank {info.rank} of {info.num_workers}", flush=True)
mx.random.seed(100 + info.rank)  # different weights per rank: prepare() must copy rank 0's
#TINY_NET#
net.initialize(mx.init.Xavier())
net(mx.nd.zeros((1, 1, 6, 6)))  # an inference pass: oneDNN keeps the conv weights in its own layout
options = {**distributed.trainer_options(kvstore), "kvstore": kv}
trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5}, **options)
steps = distributed.DistributedTrainer(trainer, kv, info, net, [mx.cpu()], (1, 6, 6), global_batch, watchdog)
steps.prepare()
rng = np.random.RandomState(0)
images = rng.rand(n_images, 1, 6, 6).astype("float32")
labels = rng.randint(0, 4, n_images).astype("float32")
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

def save(tag):
    np.savez(os.path.join(out_dir, f"rank{info.rank}-{tag}.npz"),
             *[p.data().asnumpy() for p in net.collect_params().values()])

save("start")
step = 0
for epoch in range(1, epochs + 1):
    plan = distributed.plan_shards(n_images, info.num_workers, global_batch, epoch_seed=epoch)
    steps.begin_epoch(plan, epoch)
    mine, used = plan.indices(info.rank), 0
    for count in plan.local_images[info.rank]:
        step += 1
        if die_at_step and step == abs(die_at_step) and info.rank == 1:
            if die_at_step > 0:
                os.kill(os.getpid(), signal.SIGKILL)
            steps.abandon()
            raise SystemExit("rank 1: a made-up error")
        if count == 0:
            break
        x = mx.nd.array(images[mine[used:used + count]])
        y = mx.nd.array(labels[mine[used:used + count]])
        used += count
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        steps.step(count)
        if step == 1:
            save("step1")
        if die_at_step:
            time.sleep(0.2)
    steps.finish_epoch()
save("end")
steps.save_states(os.path.join(out_dir, f"rank{info.rank}.states"))  # what a checkpoint writes
steps.close()
print(f"rank {info.rank} of {info.num_workers} done", flush=True)
'''.replace("#TINY_NET#", TINY_NET)


def _single_process_reference(start_weights, n_images, global_batch, epochs, lr=0.5, steps_limit=None):
    """The same network and data in one process: plain Trainer steps over each global batch."""
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    autograd, gluon = mx.autograd, mx.gluon
    namespace = {"gluon": gluon}
    exec(TINY_NET, namespace)
    net = namespace["net"]
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 1, 6, 6)))
    for param, value in zip(net.collect_params().values(), start_weights):
        param.set_data(mx.nd.array(value))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})
    rng = np.random.RandomState(0)
    images = rng.rand(n_images, 1, 6, 6).astype("float32")
    labels = rng.randint(0, 4, n_images).astype("float32")
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    done = 0
    for epoch in range(1, epochs + 1):
        order = distributed.epoch_order(n_images, epoch)
        for start in range(0, n_images, global_batch):
            batch = order[start:start + global_batch]
            with autograd.record():
                loss = loss_fn(net(mx.nd.array(images[batch])), mx.nd.array(labels[batch]))
            loss.backward()
            trainer.step(len(batch))
            done += 1
            if steps_limit and done == steps_limit:
                return [p.data().asnumpy() for p in net.collect_params().values()]
    return [p.data().asnumpy() for p in net.collect_params().values()]


def _check_states_file(path: Path, lr: float) -> None:
    """A worker's optimizer-state file loads into a plain Trainer (as --resume does) with its SGD."""
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    dense = mx.gluon.nn.Dense(2, in_units=2)
    dense.initialize()
    trainer = mx.gluon.Trainer(dense.collect_params(), "sgd", {"learning_rate": 1.0})
    trainer.load_states(str(path))
    assert trainer.learning_rate == lr and type(trainer.optimizer).__name__ == "SGD"


def _weights(path: Path) -> list:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _job(tmp_path, kvstore, n_images, global_batch, epochs, timeout_s=60.0, die_at_step=0, run_timeout_s=120):
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    command = [sys.executable, str(script), str(tmp_path), kvstore, str(n_images), str(global_batch), str(epochs),
               str(timeout_s), str(die_at_step)]
    plan = launch.plan_local(2, 1, command)
    out = io.StringIO()
    start = time.monotonic()
    code = launch.run_local(plan, timeout_s=run_timeout_s, grace_s=5.0, stream=out)
    return code, out.getvalue(), time.monotonic() - start, plan


def _no_process_of(plan) -> bool:
    """No live process carries this job's scheduler port in its environment."""
    marker = f"DMLC_PS_ROOT_PORT={plan[0].env['DMLC_PS_ROOT_PORT']}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0") and \
                        "Z" not in (entry / "stat").read_text().split(")")[-1][:3]:
                    return False
            except OSError:
                continue
    return True


def test_dist_sync_step_equals_a_single_process_step_on_the_global_batch(tmp_path):
    """9 images, global batch 4, 2 workers: steps of 4, 4 and 1 image (worker 1 idle in the last).
    Both workers end with the same weights, equal to one process stepping over the same batches."""
    code, out, _, plan = _job(tmp_path, "dist_sync", n_images=9, global_batch=4, epochs=2)
    assert code == 0, out
    assert "rank 0 of 2 done" in out and "rank 1 of 2 done" in out
    assert _no_process_of(plan)
    start0, start1 = _weights(tmp_path / "rank0-start.npz"), _weights(tmp_path / "rank1-start.npz")
    assert all(np.array_equal(a, b) for a, b in zip(start0, start1))  # rank 0's weights everywhere
    for tag, limit in (("step1", 1), ("end", None)):
        rank0, rank1 = _weights(tmp_path / f"rank0-{tag}.npz"), _weights(tmp_path / f"rank1-{tag}.npz")
        reference = _single_process_reference(start0, 9, 4, epochs=2, steps_limit=limit)
        for got0, got1, want in zip(rank0, rank1, reference):
            assert np.array_equal(got0, got1)
            np.testing.assert_allclose(got0, want, rtol=1e-5, atol=1e-6)
        assert any(not np.allclose(a, b) for a, b in zip(rank0, start0))  # it did train
    _check_states_file(tmp_path / "rank1.states", lr=0.5)


@pytest.mark.parametrize("kvstore", ["dist_device_sync", "dist_async"])
def test_the_other_dist_kvstores_train_to_the_end(tmp_path, kvstore):
    """dist_device_sync sums like dist_sync (same result); dist_async applies each worker's push
    on the servers as it comes, so it only has to train and stay finite."""
    code, out, _, plan = _job(tmp_path, kvstore, n_images=9, global_batch=4, epochs=2)
    assert code == 0, out
    assert _no_process_of(plan)
    start = _weights(tmp_path / "rank0-start.npz")
    rank0, rank1 = _weights(tmp_path / "rank0-end.npz"), _weights(tmp_path / "rank1-end.npz")
    assert all(np.isfinite(w).all() for w in rank0 + rank1)
    assert any(not np.allclose(a, b) for a, b in zip(rank0, start))
    _check_states_file(tmp_path / "rank0.states", lr=0.5)
    if kvstore == "dist_device_sync":
        for got0, got1, want in zip(rank0, rank1, _single_process_reference(start, 9, 4, epochs=2)):
            assert np.array_equal(got0, got1)
            np.testing.assert_allclose(got0, want, rtol=1e-5, atol=1e-6)


def test_a_killed_worker_ends_the_whole_job_quickly_and_cleanly(tmp_path):
    code, out, elapsed, plan = _job(tmp_path, "dist_sync", n_images=400, global_batch=4, epochs=1, die_at_step=3)
    assert code == 128 + 9, out
    failure = [line for line in out.splitlines() if line.startswith("vggbench launch:")]
    assert len(failure) == 1 and "rank 1) was killed by SIGKILL" in failure[0], out
    assert "ended the other 3 process(es)" in failure[0]
    assert elapsed < 60
    assert _no_process_of(plan)
    assert not (tmp_path / "rank0-end.npz").exists()


def test_a_worker_failing_alone_exits_at_once_with_its_own_error(tmp_path):
    """Without abandon() the failing worker would wait forever at exit for the others."""
    code, out, elapsed, plan = _job(tmp_path, "dist_sync", n_images=400, global_batch=4, epochs=1, die_at_step=-3)
    assert code == 1, out
    failure = [line for line in out.splitlines() if line.startswith("vggbench launch:")]
    assert len(failure) == 1 and "rank 1) exited with status 1" in failure[0], out
    assert "rank 1: a made-up error" in failure[0]
    assert elapsed < 60 and _no_process_of(plan)


def _run_by_hand(plan, timeout_s: float = 90):
    """Start ``plan``'s processes without the launcher (as a cluster scheduler would), wait for the
    workers, end the rest; return the workers' ``(returncode, stdout, stderr)``."""
    base = {k: v for k, v in os.environ.items() if k not in launch.DROPPED_ENV and k != distributed.PARENT_PID_ENV}
    procs = []
    try:
        for spec in plan:
            procs.append(subprocess.Popen(list(spec.argv), env={**base, **spec.env}, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
        results = []
        for worker in procs[2:]:
            out, err = worker.communicate(timeout=timeout_s)
            results.append((worker.returncode, out, err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def test_without_a_launcher_the_watchdog_ends_the_surviving_worker(tmp_path):
    """Started by hand: rank 1 dies, rank 0 would wait forever in its next push; the watchdog ends
    it after its bound with one line and status 4."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    plan = launch.plan_local(2, 1, [sys.executable, str(script), str(tmp_path), "dist_sync", "400", "4", "1", "3",
                                    "3"])
    workers = _run_by_hand(plan)
    assert sorted(code for code, _, _ in workers) == [-9, distributed.WATCHDOG_EXIT_CODE], workers
    survivor = [err for code, _, err in workers if code == distributed.WATCHDOG_EXIT_CODE][0]
    lines = [line for line in survivor.splitlines() if line.startswith("vggbench:")]
    assert len(lines) == 1 and lines[0].startswith("vggbench: rank 0 of 2 (dist_sync): step 3/")
    assert "did not finish within 3 s" in lines[0]
    assert _no_process_of(plan)


# --- train-export as a dist_sync job --------------------------------------------------------------

TRAIN_EXPORT_SCRIPT = '''
import sys
from vggbench import train
data_dir, out, epochs, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
run_dir = train.train_export("vgg11", input_size=32, width_ratio=64, epochs=epochs, batch_size=16, lr=0.05,
                             train_limit=72, test_limit=32, parity_images=16, ctx="cpu", data_dir=data_dir,
                             out=out, name="dist", resume=resume, kvstore="dist_sync", progress=False)
print("train_export returned", run_dir, flush=True)
'''


@pytest.mark.slow
def test_train_export_as_a_dist_sync_job_writes_one_valid_run_dir_and_resumes(tmp_path, data_dir):
    """2 workers, 72 images in global steps of 16 (8 per worker; the last step 4 each), then a
    resume for a second epoch: rank 0 alone writes the run dir, which verifies like any other."""
    from vggbench import artifacts

    script = tmp_path / "train_export.py"
    script.write_text(TRAIN_EXPORT_SCRIPT)
    out = tmp_path / "runs"
    for epochs, mode in ((1, "fresh"), (2, "resume")):
        plan = launch.plan_local(2, 1, [sys.executable, str(script), str(data_dir), str(out), str(epochs), mode])
        log = io.StringIO()
        assert launch.run_local(plan, timeout_s=300, grace_s=5.0, stream=log) == 0, log.getvalue()
        text = log.getvalue()
        assert text.count("train_export returned None") == 1
        assert text.count(f"train_export returned {out / 'dist'}") == 1
        assert _no_process_of(plan)
        assert sorted(p.name for p in out.iterdir()) == ["dist"]  # nothing written by the other rank
        manifest = artifacts.read_manifest(out / "dist")
        artifacts.verify_all(out / "dist", manifest)
        fields = manifest["distributed"]
        assert (fields["kvstore"], fields["num_workers"], fields["rank"]) == ("dist_sync", 2, 0)
        assert (fields["global_batch"], fields["per_worker_batch"]) == (16, 8)
        assert manifest["train_images"] == 72 and manifest["recipe"]["batch_size"] == 16
        assert manifest["parity"]["n"] == 16 and manifest["parity"]["top1_agreement"] == 1.0
        history = manifest_history = [row["epoch"] for row in __import__("json").loads(
            (out / "dist" / "history.json").read_text())["epochs"]]
        assert manifest_history == list(range(1, epochs + 1)), history
    assert "resuming" in text and "after epoch 1 of 2" in text


def test_when_rank_0_refuses_to_start_every_worker_stops_with_one_line(tmp_path, data_dir):
    """--resume with no checkpoint: rank 0 refuses, tells the others, and nobody trains or hangs."""
    script = tmp_path / "train_export.py"
    script.write_text(TRAIN_EXPORT_SCRIPT)
    out = tmp_path / "runs"
    plan = launch.plan_local(2, 1, [sys.executable, str(script), str(data_dir), str(out), "1", "resume"])
    start = time.monotonic()
    workers = _run_by_hand(plan)
    assert time.monotonic() - start < 60
    assert [code for code, _, _ in workers] == [1, 1], workers
    errors = sorted(err.strip().splitlines()[-1] for _, _, err in workers)
    assert errors[0].startswith("vggbench.errors.VggbenchError: --resume: no checkpoint in")  # rank 0's reason
    assert errors[1] == ("vggbench.errors.VggbenchError: rank 0 refused to start (its output says why); "
                         "rank 1 trained nothing")
    assert not (out / "dist").exists()
    assert _no_process_of(plan)
