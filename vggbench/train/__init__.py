"""Train a zoo model on Fashion-MNIST and export it into a run dir (``vggbench train-export``).

``recipe`` (what decides the weights) -> ``devices`` -> ``loop`` (network, trainer, epochs,
evaluation) -> ``checkpoints`` -> ``job`` (``TrainJob``: one run's checked arguments) -> ``run``
(``run_train(job)`` and its keyword form ``train_export``: the run dir's lifecycle);
``distributed`` holds the KVStore side for multi-worker jobs.
"""

from vggbench.train.checkpoints import (  # noqa: F401
    check_resumable,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from vggbench.train.curves import (  # noqa: F401
    plot_history,
)
from vggbench.train.devices import (  # noqa: F401
    resolve_contexts,
)
from vggbench.train.job import (  # noqa: F401
    RECIPE_OVERRIDES,
    ParityGate,
    TrainJob,
)
from vggbench.train.loop import (  # noqa: F401
    NonFiniteLogits,
    build_network,
    build_trainer,
    check_finite_weights,
    evaluate,
    train_epoch,
)
from vggbench.train.recipe import (  # noqa: F401
    CHECKPOINT_DIR,
    CHECKPOINT_INDEX,
    CURVES_FILE,
    EVAL_BATCH_SIZE,
    FLAG_OF,
    HISTORY_FILE,
    INITIALIZERS,
    LOSSES,
    OPTIMIZERS,
    PARITY_IMAGES,
    RESUME_MUST_MATCH,
    RUN_FILES,
    Recipe,
    epoch_seed,
)
from vggbench.train.run import (  # noqa: F401
    run_train,
    train_export,
)
