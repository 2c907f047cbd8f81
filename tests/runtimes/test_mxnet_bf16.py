"""mxnet-hybrid bf16: the exported graph converted by MXNet's AMP, on a real trained run dir."""

from __future__ import annotations

import numpy as np
import pytest

from vggbench.platform.cpu import bf16_unavailable_reason
from vggbench.runtimes import BackendUnavailable, load_runtime, unavailable_reason

HAS_BF16 = bf16_unavailable_reason() is None


@pytest.fixture(scope="module")
def images(data_dir):
    from vggbench import data

    test_images, _ = data.load_fashion_mnist(str(data_dir), train=False)
    return data.preprocess(test_images[:16], 96)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no amx_bf16/avx512_bf16")
def test_bf16_row_converts_the_weights_and_tracks_fp32(trained_run_dir, images):
    with load_runtime("mxnet-hybrid", trained_run_dir) as fp32:
        reference = fp32.run(images)
    with load_runtime("mxnet-hybrid", trained_run_dir, precision="bf16") as runtime:
        info = runtime.info()
        logits = runtime.run(images)
        runtime.stage(images)
        runtime.run_staged()
        staged = runtime.staged_output()
    assert info["precision"] == "bf16" and info["amp_target_dtype"] == "bfloat16"
    assert info["bf16_params"] >= 8  # every conv / dense weight (batch-norm statistics stay float32)
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    difference = float(np.abs(logits - reference).max())
    assert 0 < difference < 0.05 * max(1.0, float(np.abs(reference).max()))
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.9
    np.testing.assert_allclose(staged, logits, rtol=0, atol=1e-6)


def test_bf16_reasons_per_backend(trained_run_dir):
    assert unavailable_reason("mxnet-hybrid", "bf16") == bf16_unavailable_reason()
    assert "hybridized graph" in unavailable_reason("mxnet", "bf16")
    assert "no x86 bfloat16 kernels" in unavailable_reason("ort-cpu", "bf16")
    with pytest.raises(BackendUnavailable, match="hybridized graph"):
        load_runtime("mxnet", trained_run_dir, precision="bf16")
