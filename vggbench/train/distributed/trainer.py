"""The trainer on a distributed worker: gradient push/pull with a per-step image count, so a
``dist_sync`` step equals the single-process step.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from vggbench.errors import VggbenchError
from vggbench.train.distributed.kvstore import (
    CONTROL_KEY_BASE,
    CONTROL_KEY_LIMIT,
    DistInfo,
    KVStoreWatchdog,
    free_kvstore,
)
from vggbench.train.distributed.shards import ShardPlan, per_worker_batch

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
        with ``update_on_kvstore=False`` the weight pull can race the first gradient push (observed:
        docs/distributed.md)."""
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
        from vggbench.platform.mxnet import import_mxnet

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
        from vggbench.platform.mxnet import import_mxnet

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
        from vggbench.platform.mxnet import import_mxnet

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
