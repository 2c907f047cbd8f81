"""Helpers shared by the test fixtures (tests/conftest.py) and the benchmark suite (benchmarks/).

Plain functions, not fixtures, so both conftests can import them; they stay out of the package.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

# The committed real subset of Fashion-MNIST (tests/data/README.md): the first 200 training and the
# first 100 test images of each class, in the original order and IDX gzip format.
SUBSET_DATA = Path(__file__).resolve().parent / "data"
SUBSET_TRAIN_IMAGES, SUBSET_TEST_IMAGES = 2000, 1000
# The user's own choice of the full set, read before real_data_dir() points VGGBENCH_DATA at the subset.
FULL_DATA_ENV = os.environ.get("VGGBENCH_DATA")

# A real training run small enough for the test suite: vgg11_bn at width 1/32, 96x96, 1024 training
# and 256 test images, 2 epochs (tests/conftest.py ``trained_run``).
TINY_RECIPE = dict(model="vgg11_bn", input_size=96, width_ratio=32, epochs=2, batch_size=64, lr=0.05,
                   train_limit=1024, test_limit=256, seed=0, parity_images=256)
TINY_RUN_NAME = "vgg11_bn-w32-96"
# Small enough that a whole default sweep (every backend, both modes) takes seconds.
QUICK_BENCH = dict(batch_sizes=[1, 4], warmup=1, rounds=3, iters=2, accuracy_limit=64, peak_sizes=[128])


def real_data_dir() -> Path:
    """The committed real Fashion-MNIST subset (tests/data), what every data test reads by default.

    Also sets ``VGGBENCH_DATA`` to it, so child processes and commands run without ``--data-dir``
    read it too. Fails the session (not skips it) when a file is missing: the repository is broken.
    """
    import pytest

    from vggbench.data import missing_files

    if missing_files(SUBSET_DATA):
        pytest.fail(f"the committed test data in {SUBSET_DATA} is incomplete: {', '.join(missing_files(SUBSET_DATA))}")
    os.environ["VGGBENCH_DATA"] = str(SUBSET_DATA)
    return SUBSET_DATA


@functools.lru_cache(maxsize=None)
def _find_full_data():
    """``(folder, None)`` for a verified full set, else ``(None, why not)``."""
    from vggbench.data import ALL_FILES, default_data_dir
    from vggbench.download import check_folder

    folder, named = (Path(FULL_DATA_ENV), "VGGBENCH_DATA") if FULL_DATA_ENV else (default_data_dir(), "the download cache")
    if not folder.is_dir():
        return None, f"VGGBENCH_DATA is not set and {named} {folder} does not exist" if not FULL_DATA_ENV \
            else f"{named} {folder} is not a folder"
    bad = [check.line() for check in check_folder(folder, ALL_FILES) if not check.ok]
    if bad:
        return None, f"{named} {folder} does not hold the published files ({bad[0]}{' ...' if len(bad) > 1 else ''})"
    return folder, None


def full_data_dir() -> Path:
    """The full published Fashion-MNIST (60,000 + 10,000 images): ``$VGGBENCH_DATA`` as the session
    started, else the download cache, every file checked against its published checksums.

    Skips the test, saying why and how to get the set, when neither holds it. For ``full_data``
    tests only: the rest read :func:`real_data_dir`.
    """
    import pytest

    folder, why_not = _find_full_data()
    if folder is None:
        pytest.skip(f"needs the full Fashion-MNIST: {why_not}; run `vggbench data download` or set VGGBENCH_DATA")
    return folder


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


def tampered_copy(run_dir: Path, tmp_path: Path, name: str) -> Path:
    """A copy of ``run_dir`` whose file ``name`` has one byte appended (its sha256 no longer matches)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    with open(copy / name, "ab") as handle:
        handle.write(b"\0")
    return copy
