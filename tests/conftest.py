"""Shared fixtures: the real Fashion-MNIST files and small real exported run dirs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest



# Shared with benchmarks/conftest.py: plain functions in tests/helpers.py.
from helpers import make_untrained_run_dir, real_data_dir  # noqa: E402,F401


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST files (tox sets VGGBENCH_DATA to ../shared/data/fashion-mnist)."""
    return real_data_dir()


@pytest.fixture(scope="session")
def untrained_run_dir(tmp_path_factory) -> Path:
    """vgg11 at 96, width ratio 16, random weights, exported (shared by runtime/bench tests)."""
    return make_untrained_run_dir(tmp_path_factory.mktemp("untrained") / "vgg11-96")


@pytest.fixture
def rng() -> np.random.RandomState:
    return np.random.RandomState(0)


# --- train-export fixtures (tests/test_train.py, tests/test_export.py) -----------------------------

TINY_RECIPE = dict(model="vgg11_bn", input_size=96, width_ratio=32, epochs=2, batch_size=64, lr=0.05,
                   train_limit=1024, test_limit=256, seed=0, parity_images=256)


@pytest.fixture(scope="session")
def trained_run(data_dir, tmp_path_factory):
    """A real tiny training run, interrupted in epoch 2 and finished with ``resume=True``.

    Returns ``SimpleNamespace(run_dir, recipe, interrupted)``; ``interrupted`` records what the
    run dir held after the interruption (files, checkpoint index). One run serves the training,
    resume, manifest and export tests, so the suite trains only once.
    """
    import inspect
    import json
    import types

    from vggbench import train

    out = tmp_path_factory.mktemp("train-export")
    real_train_epoch = train.train_epoch

    def interrupted_in_epoch_2(*args, **kwargs):
        if inspect.signature(real_train_epoch).bind(*args, **kwargs).arguments["epoch"] == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train, "train_epoch", interrupted_in_epoch_2)
        with pytest.raises(KeyboardInterrupt):
            train.train_export(data_dir=str(data_dir), out=str(out), **TINY_RECIPE)
    run_dir = out / "vgg11_bn-96"
    index = run_dir / train.CHECKPOINT_DIR / train.CHECKPOINT_INDEX
    interrupted = {"files": sorted(p.name for p in run_dir.iterdir()),
                   "checkpoint": json.loads(index.read_text()) if index.is_file() else None}
    assert train.train_export(data_dir=str(data_dir), out=str(out), resume=True, **TINY_RECIPE) == run_dir
    return types.SimpleNamespace(run_dir=run_dir, recipe=dict(TINY_RECIPE), interrupted=interrupted)


@pytest.fixture(scope="session")
def trained_run_dir(trained_run) -> Path:
    """A finished, trained (tiny) vgg11_bn-96 run dir with manifest, ONNX and history."""
    return trained_run.run_dir


# --- bench/compare fixtures (tests/test_bench.py, tests/test_report.py) ---------------------------

# Small enough that a whole default sweep (every backend, both modes) takes seconds.
QUICK_BENCH = dict(batch_sizes=[1, 4], warmup=1, iters=3, accuracy_limit=64, peak_size=128)


def add_opt_variant(run_dir: Path) -> Path:
    """Add a real ``model.opt.onnx`` (ORT basic-level offline optimisation) to the manifest, as
    ``vggbench optimize`` would, so the precision plumbing is tested on a real second file."""
    import onnxruntime as ort

    from vggbench import artifacts

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(run_dir / artifacts.ONNX_VARIANT_FILES["opt"])
    ort.InferenceSession(str(run_dir / artifacts.ONNX_VARIANT_FILES["fp32"]), options,
                         providers=["CPUExecutionProvider"])
    manifest = artifacts.read_manifest(run_dir)
    artifacts.record_file(manifest, run_dir, artifacts.ONNX_VARIANT_FILES["opt"])
    artifacts.write_manifest(run_dir, manifest)
    return run_dir


@pytest.fixture(scope="session")
def bench_run_dir(untrained_run_dir, tmp_path_factory) -> Path:
    """A copy of ``untrained_run_dir`` (vgg11 at 96, width ratio 16) plus an ``opt`` ONNX variant."""
    import shutil

    run_dir = tmp_path_factory.mktemp("bench") / "vgg11-96"
    shutil.copytree(untrained_run_dir, run_dir)
    return add_opt_variant(run_dir)


@pytest.fixture(scope="session")
def bench_results(bench_run_dir, data_dir):
    """One real default sweep (all backends; GPU ones unavailable here) of ``bench_run_dir``."""
    from vggbench.bench import sweep

    return sweep([str(bench_run_dir)], data_dir=str(data_dir), log=lambda message: None, **QUICK_BENCH)
