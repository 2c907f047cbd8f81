"""A GPU's theoretical dense peak per precision: SMs x operations per SM per clock x the highest
SM clock the driver reports.

Per-SM rates are NVIDIA's published dense (no sparsity) figures divided by SM count and boost
clock, by compute capability; where consumer parts halve fp16 tensor math with fp32 accumulation,
the data-centre rate is kept, so the result stays an upper bound (a ceiling). The SM count and
clock come from the CUDA driver (``libcuda.so.1``: ``cuDeviceGetAttribute``); none of this has been
checked on a GPU by this project's tests yet: results mark it unverified.
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, Optional, Tuple

# compute capability -> flops (int8: ops) per SM per clock, dense
PER_SM_PER_CLOCK: Dict[Tuple[int, int], Dict[str, int]] = {
    (7, 0): {"fp32": 128, "fp16": 1024},  # V100
    (7, 5): {"fp32": 128, "fp16": 1024, "int8": 2048},  # T4
    (8, 0): {"fp32": 128, "tf32": 1024, "fp16": 2048, "bf16": 2048, "int8": 4096},  # A100
    (8, 6): {"fp32": 256, "tf32": 512, "fp16": 1024, "bf16": 1024, "int8": 2048},  # A10, RTX 30
    (8, 9): {"fp32": 256, "tf32": 512, "fp16": 1024, "bf16": 1024, "int8": 2048},  # L4, L40, RTX 40
    (9, 0): {"fp32": 256, "tf32": 2048, "fp16": 4096, "bf16": 4096, "int8": 8192},  # H100, H200
}
_SM_COUNT, _CLOCK_RATE_KHZ = 16, 13  # CUdevice_attribute values


def gpu_theoretical_peaks(compute_capability: Tuple[int, int], sm_count: int, max_clock_mhz: float,
                          device: str = "gpu:0") -> Dict[str, Any]:
    """``{"available", "device", "precisions": {p: {"gflops_per_s", "formula"}}}`` (or ``reason``).

    Parameters:
        compute_capability: ``(major, minor)``.
        sm_count: streaming multiprocessors.
        max_clock_mhz: the highest SM clock.
        device: the name rows use for this GPU.
    """
    rates = PER_SM_PER_CLOCK.get(tuple(compute_capability))
    if not rates:
        return {"available": False, "device": device,
                "reason": f"no per-SM rate table for compute capability {compute_capability[0]}.{compute_capability[1]}"}
    ghz = max_clock_mhz / 1000.0
    return {"available": True, "device": device, "unverified": True, "precisions": {
        precision: {"gflops_per_s": round(sm_count * rate * ghz, 1),
                    "formula": f"{sm_count} SMs x {rate} {precision} flop/clock/SM (sm_{compute_capability[0]}"
                               f"{compute_capability[1]} dense) x {ghz:.3f} GHz (CUDA driver max SM clock; unverified)"}
        for precision, rate in rates.items()}}


def cuda_device_facts(index: int = 0) -> Optional[Dict[str, Any]]:
    """``compute_capability``, ``sm_count`` and ``max_clock_mhz`` of CUDA device ``index`` from the
    driver, or None without a usable driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    device, value = ctypes.c_int(), ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None
    facts = {}
    for name, attribute in (("sm_count", _SM_COUNT), ("clock_khz", _CLOCK_RATE_KHZ), ("major", 75), ("minor", 76)):
        if cuda.cuDeviceGetAttribute(ctypes.byref(value), attribute, device) != 0:
            return None
        facts[name] = value.value
    return {"compute_capability": (facts["major"], facts["minor"]), "sm_count": facts["sm_count"],
            "max_clock_mhz": facts["clock_khz"] / 1000.0}


def this_gpu_peaks(index: int = 0) -> Dict[str, Any]:
    """:func:`gpu_theoretical_peaks` of CUDA device ``index`` here, or why not."""
    facts = cuda_device_facts(index)
    if not facts:
        return {"available": False, "device": f"gpu:{index}", "reason": "no CUDA driver answered (libcuda.so.1)"}
    return gpu_theoretical_peaks(facts["compute_capability"], facts["sm_count"], facts["max_clock_mhz"],
                                 device=f"gpu:{index}")
