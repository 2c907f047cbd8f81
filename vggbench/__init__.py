"""vggbench: the VGG lesson, from Gluon blocks to deployment numbers.

The public API (each name is imported on first use, so ``import vggbench`` stays light and never
imports mxnet)::

    import vggbench
    run_dir = vggbench.train_export("vgg11_bn", width_ratio=8, epochs=2, train_limit=40000)
    # typed: vggbench.run_train(vggbench.TrainJob("vgg11_bn", overrides={"width_ratio": 8, "epochs": 2}))
    vggbench.optimize(run_dir)                                  # opt / int8 / fp16 variants
    results = vggbench.sweep([run_dir], backends=["mxnet-hybrid", "ort-cpu"])
    # the same as a typed job: vggbench.run_sweep(vggbench.SweepJob((run_dir,), ("mxnet-hybrid", "ort-cpu")))
    runtime = vggbench.load_runtime("ort-cpu", run_dir, precision="int8")
    row = results["rows"][0]                                    # a vggbench.Row: row.images_per_s, row.status
"""

from importlib import import_module
from typing import Any

from vggbench.errors import VggbenchError

__version__ = "0.1.0"

# public name -> (module, attribute)
_API = {
    "train_export": ("vggbench.train.run", "train_export"),
    "Recipe": ("vggbench.train.recipe", "Recipe"),
    "TrainJob": ("vggbench.train.job", "TrainJob"),
    "ParityGate": ("vggbench.train.job", "ParityGate"),
    "run_train": ("vggbench.train.run", "run_train"),
    "optimize": ("vggbench.export.variants", "optimize_run_dir"),
    "sweep": ("vggbench.bench.sweep", "sweep"),
    "SweepJob": ("vggbench.bench.sweep", "SweepJob"),
    "run_sweep": ("vggbench.bench.sweep", "run_sweep"),
    "RoundSettings": ("vggbench.bench.stats", "RoundSettings"),
    "Row": ("vggbench.bench.row", "Row"),
    "Status": ("vggbench.bench.row", "Status"),
    "OrtOptions": ("vggbench.runtimes.ort_session", "OrtOptions"),
    "compare": ("vggbench.workflows", "compare"),
    "load_runtime": ("vggbench.runtimes", "load_runtime"),
}
__all__ = ["VggbenchError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        module, attribute = _API[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'vggbench' has no attribute {name!r}")
