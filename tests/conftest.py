"""Shared fixtures: the real Fashion-MNIST files and small real exported run dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    QUICK_BENCH,
    TINY_RECIPE,
    TINY_RUN_NAME,
    add_opt_variant,
    full_data_dir,
    make_untrained_run_dir,
    real_data_dir,
)

# Tests import what they share from tests/helpers.py, never from this file.


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The committed real Fashion-MNIST subset (tests/data: 2,000 training and 1,000 test images)."""
    return real_data_dir()


@pytest.fixture(scope="session")
def full_data() -> Path:
    """The full published Fashion-MNIST ($VGGBENCH_DATA, else the download cache); the test is
    skipped, with the reason, when neither holds it. Tests using it carry the ``full_data`` marker."""
    return full_data_dir()


def pytest_collection_modifyitems(items):
    for item in items:
        if "full_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)


@pytest.fixture(scope="session")
def untrained_run_dir(tmp_path_factory) -> Path:
    """vgg11 at 96, width ratio 16, random weights, exported (shared by runtime/bench tests)."""
    return make_untrained_run_dir(tmp_path_factory.mktemp("untrained") / "vgg11-96")


# --- train-export fixtures (tests/train/test_run.py, tests/export/test_onnx.py) -----------------------------

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
    from vggbench.train import run as train_run

    out = tmp_path_factory.mktemp("train-export")
    real_train_epoch = train.train_epoch

    def interrupted_in_epoch_2(*args, **kwargs):
        if inspect.signature(real_train_epoch).bind(*args, **kwargs).arguments["epoch"] == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_run, "train_epoch", interrupted_in_epoch_2)  # where run.py looks it up
        with pytest.raises(KeyboardInterrupt):
            train.train_export(data_dir=str(data_dir), out=str(out), **TINY_RECIPE)
    run_dir = out / TINY_RUN_NAME
    index = run_dir / train.CHECKPOINT_DIR / train.CHECKPOINT_INDEX
    interrupted = {"files": sorted(p.name for p in run_dir.iterdir()),
                   "checkpoint": json.loads(index.read_text()) if index.is_file() else None}
    assert train.train_export(data_dir=str(data_dir), out=str(out), resume=True, **TINY_RECIPE) == run_dir
    return types.SimpleNamespace(run_dir=run_dir, recipe=dict(TINY_RECIPE), interrupted=interrupted)


@pytest.fixture(scope="session")
def trained_run_dir(trained_run) -> Path:
    """A finished, trained (tiny) vgg11_bn-w32-96 run dir with manifest, ONNX and history."""
    return trained_run.run_dir


# --- bench/compare fixtures (tests/bench/test_sweep.py, tests/bench/test_report.py) ---------------------------

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
    from vggbench.bench.sweep import sweep

    return sweep([str(bench_run_dir)], data_dir=str(data_dir), log=lambda message: None, **QUICK_BENCH)


@pytest.fixture(scope="session")
def int8_run_dir(trained_run_dir, data_dir, tmp_path_factory) -> Path:
    """A copy of ``trained_run_dir`` plus its real ``model.int8.onnx`` (static QDQ, calibrated on
    64 training images): the OpenVINO and recommendation tests run all three CPU precisions on it."""
    import shutil

    from vggbench.export import variants

    run_dir = tmp_path_factory.mktemp("int8") / trained_run_dir.name
    shutil.copytree(trained_run_dir, run_dir)
    variants.optimize_run_dir(run_dir, opt=False, int8=True, fp16=False, calib_images=64, data_dir=str(data_dir),
                              accuracy_limit=128, progress=False, log=lambda line: None)
    return run_dir
