"""Helpers shared by the test fixtures (tests/conftest.py) and the benchmark suite (benchmarks/).

Plain functions, not fixtures, so both conftests can import them; they stay out of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"

# A real training run small enough for the test suite: vgg11_bn at width 1/32, 96x96, 1024 training
# and 256 test images, 2 epochs (tests/conftest.py ``trained_run``).
TINY_RECIPE = dict(model="vgg11_bn", input_size=96, width_ratio=32, epochs=2, batch_size=64, lr=0.05,
                   train_limit=1024, test_limit=256, seed=0, parity_images=256)
TINY_RUN_NAME = "vgg11_bn-w32-96"
# Small enough that a whole default sweep (every backend, both modes) takes seconds.
QUICK_BENCH = dict(batch_sizes=[1, 4], warmup=1, rounds=3, iters=2, accuracy_limit=64, peak_sizes=[128])


def real_data_dir() -> Path:
    """The real Fashion-MNIST files: $VGGBENCH_DATA (tox sets it), else ../shared beside the repo.

    Fails the session (not skips it) when the files are missing: every data test needs them.
    """
    import pytest

    from vggbench.data import missing_files

    path = Path(os.environ.get("VGGBENCH_DATA") or DEFAULT_DATA)
    if missing_files(path):
        pytest.fail(f"real Fashion-MNIST files missing in {path}; set VGGBENCH_DATA")
    os.environ["VGGBENCH_DATA"] = str(path)
    return path


def make_untrained_run_dir(run_dir: Path, model: str = "vgg11", input_size: int = 96,
                           width_ratio: float = 16.0, seed: int = 0) -> Path:
    """A real exported run dir (MXNet + ONNX + manifest) of a randomly initialised model.

    For tests of the runtimes and the timing method, which need real artifacts but not a trained
    network; accuracy tests use a trained run dir instead.
    """
    from vggbench import artifacts
    from vggbench.export import onnx as export
    from vggbench.models import describe, get_model
    from vggbench.platform.mxnet import import_mxnet

    mx = import_mxnet()
    mx.random.seed(seed)
    net = get_model(model, width_ratio=width_ratio)
    net.initialize(mx.init.Xavier())
    export.export_mxnet(net, run_dir, input_size)
    onnx_info = export.export_onnx(run_dir, input_size)
    manifest = {"model": model, "config": describe(model), "input_size": input_size,
                "width_ratio": width_ratio, "classes": 10, "in_channels": 1, "trained": False,
                "onnx": onnx_info, "model_stats": export.exported_model_stats(run_dir, input_size), "files": {}}
    for name in (export.SYMBOL_FILE, export.PARAMS_FILE, export.ONNX_FILE):
        artifacts.record_file(manifest, run_dir, name)
    artifacts.write_manifest(run_dir, manifest)
    return run_dir


def add_opt_variant(run_dir: Path) -> Path:
    """Add a real ``model.opt.onnx`` (ORT basic-level offline optimisation) to the manifest, as
    ``vggbench optimize`` would, so the precision plumbing is tested on a real second file."""
    from vggbench import artifacts
    from vggbench.runtimes.ort_runtime import make_session

    make_session(run_dir / artifacts.ONNX_VARIANT_FILES["fp32"], graph_optimization="basic",
                 optimized_model_path=run_dir / artifacts.ONNX_VARIANT_FILES["opt"])
    manifest = artifacts.read_manifest(run_dir)
    artifacts.record_file(manifest, run_dir, artifacts.ONNX_VARIANT_FILES["opt"])
    artifacts.write_manifest(run_dir, manifest)
    return run_dir
