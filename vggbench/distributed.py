"""Data-parallel training over MXNet's KVStore: devices on one machine, workers on many.

Everything that depends on a worker's rank lives here, small and testable; ``train.py`` calls it
and ``launch.py`` starts the processes. The semantics, chosen once and recorded in the manifest:

**Batch and learning rate.** ``--batch-size`` is the *global* batch: the images behind one
optimizer step, whatever the hardware. One machine with several devices splits it over the
devices; ``N`` workers each take ``batch_size / N`` images per step (it must divide evenly) and
split those over their own devices. ``--lr`` is not rescaled. The summed gradient is divided by
the number of images in the step, so a ``dist_sync`` step equals the single-process step on the
same global batch (up to float summation order and BatchNorm, whose batch statistics are
per device, as in any data-parallel run without synchronized BN). To scale throughput, raise
``--batch-size`` (and ``--lr`` with it, the usual linear rule) yourself.

**Shards.** Every epoch all ranks draw the same permutation of the training images (the one the
single-process loader draws for that epoch: :func:`epoch_order`). Step ``k`` takes positions
``k*B .. (k+1)*B`` of it (``B`` the global batch), and worker ``r`` gets the ``r``-th of ``N``
equal chunks of that slice. So the shards are disjoint, their union is every image exactly once
per epoch, and step ``k`` of ``N`` workers sees exactly the images of step ``k`` of one process.
The remainder (``n % B`` images) is a smaller last step, as in the single-process loader: its
images are spread over the workers (some get one more, a worker may get none); every worker
still takes that step (``dist_sync`` deadlocks otherwise), a worker without images contributing
a zero gradient, and the step divides by the images it really had.

**Who does what.** Only rank 0 evaluates, checkpoints, exports, runs the parity gate and writes
the run dir. Ranks are assigned by MXNet's scheduler (ps-lite, in the order nodes register; the
``DMLC_RANK`` variable is ignored), so the run dir is written on whichever machine gets rank 0:
give ``--out`` a shared file system on a cluster. ``dist_sync``/``dist_device_sync`` sum
gradients on the servers and update the weights on every worker (``update_on_kvstore=False``,
so the optimizer state is local and checkpoints hold it); ``dist_async`` must update on the
servers (MXNet's rule), so its optimizer state is out of reach and it accepts only stateless SGD.

**Failures.** ps-lite waits forever for a peer that died (its ``PS_RESEND`` and
``PS_HEARTBEAT_*`` variables do not change that: checked with a killed worker, the others stay
blocked). :class:`KVStoreWatchdog` bounds every KVStore operation a worker waits on and ends the
process with :data:`WATCHDOG_EXIT_CODE` and one line when one does not return in time.

Run ``python -m vggbench.distributed`` with ``DMLC_ROLE=scheduler`` or ``server`` to serve those
roles (importing mxnet with that role runs the node until the job ends).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

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
    from vggbench._mxnet import import_mxnet

    info = DistInfo.from_env(name, env)
    if info.distributed and info.role != "worker":
        raise VggbenchError(f"DMLC_ROLE={info.role}: this process is meant to be a {info.role}; run "
                            f"python -m vggbench.distributed for it, and vggbench train-export only as a worker")
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


# --- shards ----------------------------------------------------------------------------------------

def epoch_order(n_images: int, epoch_seed: int) -> np.ndarray:
    """The epoch's permutation of ``0..n_images-1``: the order the single-process shuffled loader
    (``vggbench.data.data_loader``, Gluon's ``RandomSampler`` after ``np.random.seed``) draws
    with ``epoch_seed``, so step ``k`` of any number of workers sees that loader's batch ``k``."""
    return np.random.RandomState(epoch_seed).permutation(int(n_images))


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    """One epoch's split of ``n_images`` over ``num_workers`` in steps of ``global_batch``.

    ``order``: the epoch permutation; ``step_images``: images in each global step (all
    ``global_batch`` except possibly the last); ``local_images``: per worker, images in each step.
    """

    n_images: int
    num_workers: int
    global_batch: int
    order: np.ndarray
    step_images: Tuple[int, ...]
    local_images: Tuple[Tuple[int, ...], ...]

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch, the same on every worker."""
        return len(self.step_images)

    def indices(self, rank: int) -> np.ndarray:
        """Worker ``rank``'s image indices in the order it trains on them (step by step)."""
        if not 0 <= rank < self.num_workers:
            raise ValueError(f"rank {rank} outside 0..{self.num_workers - 1}")
        parts = []
        for step, total in enumerate(self.step_images):
            start = step * self.global_batch
            counts = [self.local_images[r][step] for r in range(self.num_workers)]
            offset = start + sum(counts[:rank])
            parts.append(self.order[offset:offset + counts[rank]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.order.dtype)


def per_worker_batch(global_batch: int, num_workers: int) -> int:
    """Images each worker takes per step: ``global_batch / num_workers``, which must be whole."""
    if global_batch < 1 or num_workers < 1:
        raise VggbenchError(f"--batch-size ({global_batch}) and the number of workers ({num_workers}) must be >= 1")
    if global_batch % num_workers:
        raise VggbenchError(f"--batch-size {global_batch} is the global batch and must split evenly over "
                            f"{num_workers} workers; use a multiple of {num_workers}")
    return global_batch // num_workers


def plan_shards(n_images: int, num_workers: int, global_batch: int, epoch_seed: int) -> ShardPlan:
    """The epoch's :class:`ShardPlan` (the rules are in this module's docstring).

    ``n_images``: training images (>= ``num_workers``, so every worker trains on something);
    ``num_workers``; ``global_batch``: images per optimizer step, a multiple of ``num_workers``;
    ``epoch_seed``: the epoch's shuffle seed (``train.epoch_seed``).
    """
    local = per_worker_batch(global_batch, num_workers)
    if n_images < num_workers:
        raise VggbenchError(f"{n_images} training images cannot be shared by {num_workers} workers; "
                            f"raise --train-limit to at least {num_workers}")
    full_steps, remainder = divmod(int(n_images), global_batch)
    step_images = [global_batch] * full_steps
    per_rank = [[local] * full_steps for _ in range(num_workers)]
    if remainder:
        step_images.append(remainder)
        for rank, count in enumerate(np.array_split(np.arange(remainder), num_workers)):
            per_rank[rank].append(len(count))
    return ShardPlan(n_images=int(n_images), num_workers=num_workers, global_batch=global_batch,
                     order=epoch_order(n_images, epoch_seed), step_images=tuple(step_images),
                     local_images=tuple(tuple(counts) for counts in per_rank))


def shard_indices(n_images: int, rank: int, num_workers: int, epoch_seed: int, global_batch: int) -> np.ndarray:
    """Worker ``rank``'s training-image indices for the epoch seeded ``epoch_seed``, in training
    order (see :func:`plan_shards` for the other parameters). The shards of ranks
    ``0..num_workers-1`` are disjoint and together hold every index once."""
    return plan_shards(n_images, num_workers, global_batch, epoch_seed).indices(rank)


def distributed_recipe_fields(info: DistInfo, contexts: Sequence, global_batch: int) -> Dict[str, Any]:
    """The manifest's record of how a run was spread: ``kvstore``, ``num_workers``, ``rank`` (of
    the writer), ``contexts`` (each worker's devices), ``global_batch`` (``--batch-size``),
    ``per_worker_batch``, ``per_device_batch`` (largest share of one device), and the batch/lr
    and shard rules in words."""
    local = per_worker_batch(global_batch, info.num_workers)
    return {
        "kvstore": info.kvstore,
        "num_workers": info.num_workers,
        "num_servers": info.num_servers,
        "rank": info.rank,
        "contexts": [str(c) for c in contexts],
        "global_batch": global_batch,
        "per_worker_batch": local,
        "per_device_batch": math.ceil(local / max(1, len(contexts))),
        "batch_semantics": "batch_size is the global batch per optimizer step, split over workers and their "
                           "devices; lr is not rescaled; the summed gradient is divided by the step's images",
        "sharding": "one shared permutation per epoch (the single-process order); step k's global batch is split "
                    "into equal consecutive chunks by rank; every image once per epoch; a smaller last step",
        "update_on_kvstore": trainer_options(info.kvstore)["update_on_kvstore"],
        "train_metrics": "rank 0's shard" if info.distributed and info.num_workers > 1 else "all images",
    }


# --- the trainer on a distributed worker ---------------------------------------------------------

class DistributedTrainer:
    """Stands in for the ``gluon.Trainer`` in the training loop of a ``dist_*`` worker.

    The loop calls ``step(images_in_this_batch)``, ``save_states``/``load_states`` as on a plain
    Trainer; this class turns them into the synchronous semantics above and bounds every KVStore
    wait with the watchdog.

    Parameters: ``trainer``: a ``gluon.Trainer`` built with :func:`trainer_options` and
    ``kvstore``, the KVStore from :func:`create_kvstore`; ``info``: its :class:`DistInfo`; ``net`` and
    ``contexts``: the network and this worker's devices (a worker with no images in a step runs
    a zero-weighted pass on them); ``input_shape``: one image's ``(channels, height, width)``;
    ``global_batch``: ``--batch-size``; ``watchdog``: the process's :class:`KVStoreWatchdog`.
    """

    def __init__(self, trainer, kvstore, info: DistInfo, net, contexts: Sequence, input_shape: Sequence[int],
                 global_batch: int, watchdog: KVStoreWatchdog):
        if not info.distributed:
            raise ValueError("DistributedTrainer is for dist_* KVStores; use the gluon.Trainer itself otherwise")
        self.trainer = trainer
        self.kv = kvstore
        self.info = info
        self.net = net
        self.contexts = list(contexts)
        self.input_shape = tuple(input_shape)
        self.global_batch = global_batch
        self.local_batch = per_worker_batch(global_batch, info.num_workers)
        self.watchdog = watchdog
        self.asynchronous = info.kvstore == "dist_async"
        self._plan: Optional[ShardPlan] = None
        self._step = 0
        self._epoch = 0
        self._next_key = CONTROL_KEY_BASE
        self._initial_rescale: Optional[float] = None

    # -- set-up ------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Initialise the KVStore with rank 0's weights and copy them to every worker, before the
        first gradient is computed. Gluon would do this inside the first ``step``, after each
        worker computed its gradient on its *own* weights (wrong after rank 0 alone resumed), and
        with ``update_on_kvstore=False`` the weight pull can race the first gradient push (seen
        here: after Gluon's own first step the workers held different weights in 2 of 4 loopback
        runs)."""
        trainer = self.trainer
        if not hasattr(trainer, "_init_kvstore") or not hasattr(trainer, "_init_params"):
            raise VggbenchError("this mxnet's gluon.Trainer lacks _init_kvstore/_init_params (MXNet 1.x has them); "
                                "distributed training needs mxnet 1.9.1")
        # The rescale the first step will set, so the optimizer the servers get (dist_async) is final.
        trainer.optimizer.rescale_grad = trainer.optimizer.rescale_grad / self._step_divisor(self.global_batch)
        for param in self.net.collect_params().values():
            # After an inference pass MXNet's CPU build (oneDNN) keeps conv weights in its own
            # layout, which the dist KVStore cannot push ("We can't generate TBlob for MKLDNN
            # data": rank 0 fails, then a server aborts on a key never initialised). Fresh copies
            # have the default layout; one context first, so several get exact copies, not a mean.
            param.reset_ctx(self.contexts[0])
            param.reset_ctx(self.contexts)
        with self.watchdog.guard("copying rank 0's weights to every worker"):
            trainer._init_kvstore()
            trainer._init_params()
            for param in self.net.collect_params().values():
                for array in param.list_data():
                    array.wait_to_read()
        self._initial_rescale = trainer.optimizer.rescale_grad

    def _step_divisor(self, global_images: int) -> int:
        # dist_async applies each worker's push alone: its mean is over that worker's batch.
        return self.local_batch if self.asynchronous else global_images

    # -- the epoch ---------------------------------------------------------------------------------
    def begin_epoch(self, plan: ShardPlan, epoch: int) -> None:
        """Start ``epoch`` (1-based) with its :class:`ShardPlan`."""
        if plan.num_workers != self.info.num_workers or plan.global_batch != self.global_batch:
            raise ValueError("the shard plan is for another job shape")
        self._plan, self._step, self._epoch = plan, 0, epoch

    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """One synchronous step after this worker's backward pass on ``batch_size`` images (the
        share the plan gave it; anything else is a bug in the caller)."""
        plan = self._require_plan()
        if self._step >= plan.steps:
            raise RuntimeError(f"epoch {self._epoch} has {plan.steps} steps; step {self._step + 1} was asked for")
        planned = plan.local_images[self.info.rank][self._step]
        if batch_size != planned:
            raise RuntimeError(f"rank {self.info.rank} was planned {planned} images in step {self._step + 1}, "
                               f"got a batch of {batch_size}")
        self._synchronous_step(plan.step_images[self._step], planned, ignore_stale_grad)

    def finish_epoch(self) -> None:
        """Take part in the steps this worker had no images for (only the last step can be one):
        a zero-weighted pass makes its gradients zero but fresh, so every worker pushes in every
        step and ``dist_sync`` does not deadlock. ``dist_async`` needs no such step."""
        from vggbench._mxnet import import_mxnet

        mx = import_mxnet()
        plan = self._require_plan()
        while self._step < plan.steps:
            if self.asynchronous:
                self._step += 1
                continue
            with mx.autograd.record(train_mode=False):
                outputs = [self.net(mx.nd.zeros((1,) + self.input_shape, ctx=ctx)).sum() * 0 for ctx in self.contexts]
            mx.autograd.backward(outputs)
            self._synchronous_step(plan.step_images[self._step], 0, False)
        self._plan = None

    def _synchronous_step(self, global_images: int, local_images: int, ignore_stale_grad: bool) -> None:
        divisor = self._step_divisor(global_images)
        if self.asynchronous and local_images and local_images != self.local_batch:
            # dist_async's servers divide by the per-worker batch they were given: rescale the
            # gradient of a smaller last batch so its step is still a mean over its own images.
            for param in self.net.collect_params().values():
                if param.grad_req != "null":
                    for grad in param.list_grad():
                        grad *= self.local_batch / local_images
        pulled = "the weights" if self.asynchronous else "the sum"
        what = f"step {self._step + 1}/{self._plan.steps} of epoch {self._epoch} (push gradients, pull {pulled})"
        with self.watchdog.guard(what):
            self.trainer.step(divisor, ignore_stale_grad=ignore_stale_grad)
            for param in self.net.collect_params().values():
                for array in param.list_data():
                    array.wait_to_read()
        self._step += 1

    def _require_plan(self) -> ShardPlan:
        if self._plan is None:
            raise RuntimeError("begin_epoch() first")
        return self._plan

    # -- what passes between ranks -----------------------------------------------------------------
    def broadcast(self, values: Sequence[float], what: str) -> np.ndarray:
        """Rank 0's ``values`` (float32, small integers exact) on every rank; other ranks' values
        are ignored. ``what`` names the wait in a watchdog message. Every rank must call it, in
        the same order (each call uses the next control key)."""
        from vggbench._mxnet import import_mxnet

        mx = import_mxnet()
        if self._next_key >= CONTROL_KEY_LIMIT:
            raise RuntimeError("out of KVStore control keys")
        key, self._next_key = self._next_key, self._next_key + 1
        kv = self.kv
        local = mx.nd.array(np.asarray(values, dtype=np.float32))
        out = mx.nd.zeros(local.shape)
        with self.watchdog.guard(f"waiting for rank 0: {what}"):
            kv.init(key, local)  # the dist KVStore keeps rank 0's value, then all workers meet
            kv.pull(key, out=out)
            result = out.asnumpy()
        return result

    # -- checkpoints -------------------------------------------------------------------------------
    def save_states(self, fname: str) -> None:
        """The optimizer state, as ``gluon.Trainer.save_states`` writes it. ``dist_sync`` keeps
        it on the worker (all workers hold the same); ``dist_async`` (stateless SGD only, see
        :func:`check_optimizer`) writes the optimizer with its empty state."""
        if not self.asynchronous:
            self.trainer.save_states(fname)
            return
        from vggbench._mxnet import import_mxnet

        mx = import_mxnet()
        with open(fname, "wb") as handle:
            handle.write(mx.optimizer.get_updater(self.trainer.optimizer).get_states(dump_optimizer=True))

    def load_states(self, fname: str) -> None:
        """Load what :meth:`save_states` wrote (nothing to load for ``dist_async``'s plain SGD)."""
        if not self.asynchronous:
            self.trainer.load_states(fname)
            if self._initial_rescale is not None:  # load_states replaced the optimizer: keep the rescale
                self.trainer.optimizer.rescale_grad = self._initial_rescale

    @property
    def learning_rate(self) -> float:
        return self.trainer.learning_rate

    # -- the end -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Leave the job together: every worker meets once more, rank 0 stops the servers and the
        scheduler, and the KVStore is freed, so rank 0 can export afterwards while the others exit
        (MXNet would otherwise hold every worker at exit until rank 0 finished). Every worker must
        call it; a second call does nothing."""
        if self.kv is not None:
            with self.watchdog.guard("leaving the job (all workers meet, rank 0 stops the servers)"):
                free_kvstore(self.kv, wait_for_others=True)
        self.kv = self.trainer = None  # the KVStore is gone: further use must fail loudly, not crash

    def abandon(self) -> None:
        """Leave the job alone, after an error only this worker saw: free the KVStore without the
        meeting at exit (MXNet would wait there forever for the others, and skipping the free
        makes the process abort at exit instead). No-op after :meth:`close`."""
        if self.kv is not None:
            with self.watchdog.guard("leaving the job after an error"):
                free_kvstore(self.kv, wait_for_others=False)
        self.kv = self.trainer = None


def free_kvstore(kvstore, wait_for_others: bool) -> None:
    """Free a ``dist_*`` ``kvstore`` now: with ``wait_for_others`` every worker meets first (all
    must call it) and rank 0 stops the servers; without, this worker just leaves. The Python
    object is left harmless (its ``__del__`` then frees NULL, a no-op)."""
    from vggbench._mxnet import import_mxnet

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


# --- communication volume --------------------------------------------------------------------------

def step_traffic_bytes(params: int, bytes_per_param: int = 4) -> Dict[str, int]:
    """Bytes one worker moves per synchronous step for ``params`` trainable parameters of
    ``bytes_per_param`` (float32: 4): it pushes every gradient and pulls every weight (or summed
    gradient) back, so ``push_bytes == pull_bytes == params * bytes_per_param``."""
    one_way = int(params) * int(bytes_per_param)
    return {"push_bytes": one_way, "pull_bytes": one_way, "total_bytes": 2 * one_way}


def communication_table(model_names: Sequence[str] = ("vgg11", "vgg16"), sizes: Sequence[int] = (96, 224),
                        width_ratio: float = 1.0, classes: int = 10, in_channels: int = 1) -> List[Dict[str, Any]]:
    """One row per model and input size: parameters (from the network's own graph,
    ``models.model_stats``) and :func:`step_traffic_bytes`, plus the step time a 10 Gbit/s and a
    100 Gbit/s link need for that traffic alone (``link_ms_10gbit``, ``link_ms_100gbit``)."""
    from vggbench import models

    rows = []
    for name in model_names:
        for size in sizes:
            stats = models.model_stats(name, size, classes=classes, in_channels=in_channels, width_ratio=width_ratio)
            traffic = step_traffic_bytes(stats["params"])
            rows.append({"model": name, "input_size": size, "width_ratio": width_ratio, "params": stats["params"],
                         **traffic,
                         "link_ms_10gbit": traffic["total_bytes"] * 8 / 10e9 * 1e3,
                         "link_ms_100gbit": traffic["total_bytes"] * 8 / 100e9 * 1e3})
    return rows


# --- scheduler and server processes --------------------------------------------------------------

def serve(role: Optional[str] = None) -> int:
    """Run this process as the job's scheduler or a server until the job ends.

    ``role``: ``scheduler`` or ``server``; None reads ``DMLC_ROLE``. MXNet serves these roles
    while it is imported (the import returns only when rank 0 stops the job). Returns the exit
    status (0), or raises VggbenchError for a missing or wrong role.
    """
    role = (role or os.environ.get("DMLC_ROLE", "")).strip().lower()
    if role not in ("scheduler", "server"):
        raise VggbenchError(f"python -m vggbench.distributed serves the scheduler or a server (DMLC_ROLE); got "
                            f"{role or 'no role'!r}: workers run vggbench train-export")
    os.environ["DMLC_ROLE"] = role
    DistInfo.from_env("dist_sync")  # the same one-line error as a worker for a missing variable
    watchdog = KVStoreWatchdog(timeout_s=None, label=role) if _launcher_parent() is not None else None
    from vggbench._mxnet import import_mxnet

    try:
        import_mxnet()
    except SystemExit as done:  # mxnet's kvstore_server ends the node with sys.exit()
        return int(done.code or 0)
    finally:
        if watchdog is not None:
            watchdog.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m vggbench.distributed [--role scheduler|server]``: see :func:`serve`."""
    parser = argparse.ArgumentParser(prog="python -m vggbench.distributed",
                                     description="run a KVStore scheduler or server (DMLC_* variables set)")
    parser.add_argument("--role", choices=("scheduler", "server"), help="default: $DMLC_ROLE")
    args = parser.parse_args(argv)
    try:
        return serve(args.role)
    except VggbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
