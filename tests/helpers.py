"""Helpers shared by the test fixtures (tests/conftest.py) and the benchmark suite (benchmarks/).

Plain functions, not fixtures, so both conftests can import them; they stay out of the package.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


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
    import mxnet as mx

    from vggbench import artifacts, export
    from vggbench.models import describe, get_model

    mx.random.seed(seed)
    net = get_model(model, width_ratio=width_ratio)
    net.initialize(mx.init.Xavier())
    export.export_mxnet(net, run_dir, input_size)
    onnx_info = export.export_onnx(run_dir, input_size)
    manifest = {"model": model, "config": describe(model), "input_size": input_size,
                "width_ratio": width_ratio, "classes": 10, "in_channels": 1, "trained": False,
                "onnx": onnx_info, "files": {}}
    for name in (export.SYMBOL_FILE, export.PARAMS_FILE, export.ONNX_FILE):
        artifacts.record_file(manifest, run_dir, name)
    artifacts.write_manifest(run_dir, manifest)
    return run_dir
