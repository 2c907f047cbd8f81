"""Fixtures for the pytest-benchmark suite: small real run dirs, real data, one thread count.

Run with ``tox -e bench`` or ``pytest benchmarks --benchmark-warmup=on --benchmark-json=out.json``
and check the ratios with ``python benchmarks/gate.py out.json`` (see benchmarks/README.md).

Every benchmark runs with the same number of CPU threads (``VGGBENCH_BENCH_THREADS``, default 1)
for MXNet (``OMP_NUM_THREADS``, read once when mxnet is first imported: hence set here, before
any import of it) and ONNX Runtime (``intra_op_num_threads``). One thread keeps the ratios the
gate checks steady on a shared machine, where multi-threaded runs mostly measure the neighbours.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

THREADS = int(os.environ.get("VGGBENCH_BENCH_THREADS") or 1)
if "mxnet" not in sys.modules:
    os.environ["OMP_NUM_THREADS"] = str(THREADS)

sys.path.insert(0, str(REPO / "tests"))
from helpers import make_untrained_run_dir, real_data_dir  # noqa: E402  (tests/helpers.py)


@dataclasses.dataclass(frozen=True)
class Case:
    """One model at one input size: what an inference/training benchmark runs."""

    model: str
    width_ratio: float
    input_size: int

    @property
    def id(self) -> str:
        return f"{self.model}-w{self.width_ratio:g}-{self.input_size}px"


# Small-width VGG-11 at both input sizes the project reports, sized for CI on 2 cores. At width 4
# and 96 INT8 pays off on an AVX2 CPU (~1.5x); at width 16 and 224 the 4-channel first layers over
# 224x224 maps make quantize/dequantize dominate and INT8 is slower than fp32 (see gate.py).
CASES = (Case("vgg11", 4.0, 96), Case("vgg11", 16.0, 224))
BATCH_SIZE = 16
INT8_CALIB_IMAGES = 32
INT8_ACCURACY_IMAGES = 64


def pytest_configure(config):
    if "mxnet" in sys.modules and os.environ.get("OMP_NUM_THREADS") != str(THREADS):
        import warnings

        warnings.warn(f"mxnet was imported before benchmarks/conftest.py could set OMP_NUM_THREADS={THREADS}; "
                      f"MXNet timings use its own thread count")


class Suite:
    """The suite-wide settings, handed to the benchmark modules as the ``suite`` fixture."""

    cases, batch_size, threads = CASES, BATCH_SIZE, THREADS

    def info(self, case=None, **fields):
        """extra_info for one benchmark: the case and suite-wide settings, then ``fields``."""
        base = {"model": None, "width_ratio": None, "input_size": None, "backend": None, "precision": None,
                "batch_size": self.batch_size, "threads": self.threads}
        if case is not None:
            base.update(dataclasses.asdict(case))
        base.update(fields)
        return base


@pytest.fixture(scope="session")
def suite() -> Suite:
    return Suite()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The committed real Fashion-MNIST subset (tests/data: 2,000 training and 1,000 test images)."""
    return real_data_dir()


@pytest.fixture(scope="session")
def test_images(data_dir):
    """The first 512 Fashion-MNIST test images and labels (uint8 / int32)."""
    from vggbench.data import load_fashion_mnist

    images, labels = load_fashion_mnist(str(data_dir), train=False)
    return images[:512], labels[:512]


@pytest.fixture(scope="session", params=CASES, ids=lambda case: case.id)
def case(request) -> Case:
    return request.param


@pytest.fixture(scope="session")
def run_dir(case, tmp_path_factory) -> Path:
    """The case's model with random weights, exported: MXNet symbol/params + ONNX + manifest."""
    return make_untrained_run_dir(tmp_path_factory.mktemp("bench") / case.id, model=case.model,
                                  input_size=case.input_size, width_ratio=case.width_ratio)


@pytest.fixture(scope="session")
def batch(case, test_images):
    """BATCH_SIZE real test images preprocessed like the lesson (float32 NCHW)."""
    from vggbench.data import preprocess

    return preprocess(test_images[0][:BATCH_SIZE], case.input_size)


@pytest.fixture(scope="session")
def int8_skip_reason(run_dir, data_dir):
    """Add ``model.int8.onnx`` to the run dir with ``vggbench.export.variants``; None, or why it could not.

    Every inference benchmark of a case asks for this, so the (slow) quantization happens before
    the case's first timed benchmark and its four variants are timed back to back.
    """
    try:
        from vggbench.export.variants import optimize_run_dir
    except ImportError as err:
        return f"no INT8 variant to time: vggbench.export.variants is not available ({err})"
    from vggbench.errors import VggbenchError

    try:  # few calibration/accuracy images: the weights are random, only the speed matters here
        optimize_run_dir(run_dir, int8=True, fp16=False, opt=False, calib_images=INT8_CALIB_IMAGES,
                         accuracy_limit=INT8_ACCURACY_IMAGES, data_dir=str(data_dir), progress=False,
                         log=lambda message: None)
    except VggbenchError as err:  # e.g. onnxruntime.quantization cannot be imported here
        return f"no INT8 variant to time: vggbench optimize failed: {err}"
    return None
