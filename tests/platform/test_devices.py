"""The one device vocabulary: parse and print round trip, and the errors a user sees."""

from __future__ import annotations

import pytest

from vggbench.errors import VggbenchError
from vggbench.platform import gpu
from vggbench.platform.devices import Device
from vggbench.runtimes import backend_device
from vggbench.runtimes.backends import BACKENDS


@pytest.mark.parametrize("text, kind, index, printed", [
    ("cpu", "cpu", 0, "cpu"), ("CPU", "cpu", 0, "cpu"), ("cpu:1", "cpu", 1, "cpu:1"),
    ("gpu", "gpu", 0, "gpu:0"), ("gpu:0", "gpu", 0, "gpu:0"), (" gpu:3 ", "gpu", 3, "gpu:3")])
def test_device_strings_parse_and_print_back(text, kind, index, printed):
    device = Device.parse(text)
    assert (device.kind, device.index, str(device)) == (kind, index, printed)
    assert Device.parse(str(device)) == device
    assert device.is_gpu == (kind == "gpu")


@pytest.mark.parametrize("text", ["tpu", "gpu:", "gpu:x", "gpu:-1", "cuda:0", ""])
def test_bad_device_strings_are_one_line_user_errors(text):
    with pytest.raises(VggbenchError, match="is not one of cpu, gpu, gpu:N"):
        Device.parse(text)


def test_a_device_checks_its_fields():
    with pytest.raises(VggbenchError, match="kind"):
        Device("npu", 0)
    with pytest.raises(VggbenchError, match="index"):
        Device("gpu", -1)


def test_every_backend_names_its_device_through_the_one_type():
    for name, spec in BACKENDS.items():
        assert str(backend_device(name, 2)) == ("gpu:2" if spec.device_kind == "gpu" else "cpu")
    assert Device.of_kind("cpu", 5) == Device("cpu")


def test_ctx_lists_use_the_same_spelling():
    assert gpu._parse_ctx("gpu,gpu:2") == [0, 2]
    assert gpu._parse_ctx("cpu") == [] and gpu._parse_ctx("auto") is None
    with pytest.raises(VggbenchError, match="cannot read 'cpu:1'"):
        gpu._parse_ctx("gpu:0,cpu:1")
    with pytest.raises(VggbenchError, match="lists gpu:1 twice"):
        gpu._parse_ctx("gpu:1,gpu:1")


def test_the_one_mxnet_gpu_decision_from_facts():
    hopper = gpu.GpuInfo(0, "NVIDIA H100", "9.0", "550.54", 81559)
    ampere = gpu.GpuInfo(1, "NVIDIA A10", "8.6", "550.54", 23028)
    decide = gpu.mxnet_device_unavailable_reason
    assert "CPU build" in decide(0, 0, [ampere], mxnet_has_cuda=False)
    assert "has no kernels for NVIDIA H100" in decide(0, 2, [hopper, ampere])
    assert decide(1, 2, [hopper, ampere]) is None
    assert decide(2, 2, [hopper, ampere]) == "MXNet sees 2 GPU(s), gpu:2 requested (no driver or no device?)"
    assert decide(0, 0, [], count_error="MXNet cannot count GPUs: no driver") == "MXNet cannot count GPUs: no driver"
    assert decide(0, 1, []) is None  # unknown facts are no reason: the kernel launch decides
