"""Data-parallel training over MXNet's KVStore: devices on one machine, workers on many.

Everything that depends on a worker's rank lives here, small and testable; ``vggbench.train.run`` calls it
and ``launch`` starts the processes. The semantics, chosen once and recorded in the manifest:

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

Run ``python -m vggbench.train.distributed`` with ``DMLC_ROLE=scheduler`` or ``server`` to serve those
roles (importing mxnet with that role runs the node until the job ends).
"""

from vggbench.train.distributed.kvstore import (  # noqa: F401
    CONTROL_KEY_BASE,
    CONTROL_KEY_LIMIT,
    DEFAULT_TIMEOUT_S,
    DIST_KVSTORES,
    KVSTORES,
    LOCAL_KVSTORES,
    PARENT_PID_ENV,
    REQUIRED_ENV,
    ROLES,
    TIMEOUT_ENV,
    WATCHDOG_EXIT_CODE,
    DistInfo,
    KVStoreWatchdog,
    check_kvstore,
    check_optimizer,
    create_kvstore,
    free_kvstore,
    is_distributed,
    resolve_timeout_s,
    trainer_options,
)
from vggbench.train.distributed.server import (  # noqa: F401
    main,
    serve,
)
from vggbench.train.distributed.shards import (  # noqa: F401
    ShardPlan,
    distributed_recipe_fields,
    epoch_order,
    per_worker_batch,
    plan_shards,
    shard_indices,
)
from vggbench.train.distributed.traffic import (  # noqa: F401
    communication_table,
    step_traffic_bytes,
)
from vggbench.train.distributed.trainer import (  # noqa: F401
    DistributedTrainer,
)
