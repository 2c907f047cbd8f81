"""What a process costs besides time: resident memory, energy counters, GPU memory.

Every reader returns a measurement or says why there is none; nothing here estimates.

- Memory: ``VmRSS`` (resident now) and ``VmHWM`` (resident high-water mark) from
  ``/proc/<pid>/status``. Writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0) resets the
  high-water mark to the current RSS, so a peak can be taken over one interval (one timed round)
  instead of over the whole life of the process.
- Energy: Intel RAPL through the powercap interface (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  one counter per CPU package, in microjoules, wrapping at ``max_energy_range_uj``). Since Linux
  5.10 the file is readable by root only; then :func:`rapl_reason` says so.
- GPU: NVML through ``libnvidia-ml.so.1`` (ctypes, no extra package): the device's memory in use
  and its total-energy counter (millijoules, Volta and later).
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any, Dict, List, Optional, Tuple

POWERCAP_DIR = "/sys/class/powercap"


# --- resident memory -----------------------------------------------------------------------------------

def _status_kib(field: str, pid: Optional[int] = None) -> Optional[int]:
    path = f"/proc/{pid or 'self'}/status"
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes(pid: Optional[int] = None) -> Optional[int]:
    """Resident memory of ``pid`` (None: this process) now, in bytes; None off Linux."""
    kib = _status_kib("VmRSS", pid)
    return None if kib is None else kib * 1024


def peak_rss_bytes(pid: Optional[int] = None) -> Optional[int]:
    """The resident high-water mark (``VmHWM``) of ``pid`` since it started or since the last
    :func:`reset_peak_rss`, in bytes; None off Linux."""
    kib = _status_kib("VmHWM", pid)
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (``/proc/self/clear_refs`` ``5``);
    False where the kernel does not allow it (then the peak covers the whole process life)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


# --- energy: RAPL powercap ------------------------------------------------------------------------------

def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def rapl_packages(powercap_dir: str = POWERCAP_DIR) -> List[str]:
    """The package-level RAPL zones (``intel-rapl:N``, not their ``:N:M`` subzones, which the
    package counter already includes), sorted."""
    zones = [path for path in glob.glob(os.path.join(powercap_dir, "intel-rapl:*"))
             if os.path.basename(path).count(":") == 1]
    return sorted(zones)


def rapl_reason(powercap_dir: str = POWERCAP_DIR) -> Optional[str]:
    """Why the CPU package energy cannot be read here, or None when it can."""
    if not os.path.isdir(powercap_dir):
        return f"no RAPL powercap interface ({powercap_dir} absent: a VM, or not an Intel/AMD RAPL CPU)"
    zones = rapl_packages(powercap_dir)
    if not zones:
        return f"no intel-rapl package zone under {powercap_dir}"
    for zone in zones:
        if not os.access(os.path.join(zone, "energy_uj"), os.R_OK):
            return f"{zone}/energy_uj is not readable (root only since Linux 5.10)"
        if _read_int(os.path.join(zone, "energy_uj")) is None:
            return f"{zone}/energy_uj could not be read"
    return None


def rapl_read(powercap_dir: str = POWERCAP_DIR) -> Optional[List[Tuple[int, int]]]:
    """One reading: ``[(energy_uj, max_energy_range_uj), ...]`` per package; None when unreadable."""
    readings = []
    for zone in rapl_packages(powercap_dir):
        energy = _read_int(os.path.join(zone, "energy_uj"))
        limit = _read_int(os.path.join(zone, "max_energy_range_uj"))
        if energy is None:
            return None
        readings.append((energy, limit or 0))
    return readings or None


def rapl_joules_between(before: List[Tuple[int, int]], after: List[Tuple[int, int]]) -> float:
    """Joules used by all packages between two :func:`rapl_read` readings; a counter that wrapped
    (after < before) adds its range once (two wraps in one interval take minutes at full power,
    far longer than one timed round)."""
    total_uj = 0
    for (start, limit), (end, _) in zip(before, after):
        delta = end - start
        if delta < 0:
            delta += limit + 1 if limit else 0
        total_uj += max(delta, 0)
    return total_uj / 1e6


# --- GPU: NVML through ctypes ---------------------------------------------------------------------------

class _NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class Nvml:
    """A handle on one GPU through NVML (``libnvidia-ml.so.1``); ``reason`` says why not when it
    cannot be opened. Readings here have not been checked on a GPU by this project's tests:
    results mark them unverified.

    Parameters:
        index: the GPU's NVML index (PCI order, which ``CUDA_VISIBLE_DEVICES`` does not change).
    """

    def __init__(self, index: int = 0):
        self.reason: Optional[str] = None
        self._handle = ctypes.c_void_p()
        try:
            self._lib = ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            self.reason = "NVML (libnvidia-ml.so.1) not found: no NVIDIA driver here"
            return
        if self._lib.nvmlInit_v2() != 0:
            self.reason = "nvmlInit failed"
            return
        if self._lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(self._handle)) != 0:
            self.reason = f"NVML has no GPU {index}"

    def memory_used_bytes(self) -> Optional[int]:
        """Device memory in use on the whole GPU (every process), bytes; None when unreadable."""
        if self.reason:
            return None
        memory = _NvmlMemory()
        if self._lib.nvmlDeviceGetMemoryInfo(self._handle, ctypes.byref(memory)) != 0:
            return None
        return int(memory.used)

    def energy_mj(self) -> Optional[int]:
        """The GPU's total energy since the driver loaded, millijoules (Volta and later); None when
        the GPU does not report it."""
        if self.reason:
            return None
        value = ctypes.c_ulonglong()
        if self._lib.nvmlDeviceGetTotalEnergyConsumption(self._handle, ctypes.byref(value)) != 0:
            return None
        return int(value.value)


def energy_counter(device: str) -> Tuple[Optional[Any], Optional[str]]:
    """``(read, reason)``: a function returning a cumulative energy reading in joules for
    ``device`` (``cpu``: RAPL package energy, all packages; ``gpu:N``: NVML total energy), or None
    and why not. Differences of two readings are energy; RAPL wraparound is handled by reading
    pairs through :func:`rapl_joules_between`."""
    if device == "cpu":
        reason = rapl_reason()
        return (None, reason) if reason else (rapl_read, None)
    index = int(device.partition(":")[2] or 0)
    nvml = Nvml(index)
    if nvml.reason:
        return None, nvml.reason
    if nvml.energy_mj() is None:
        return None, "NVML reports no total-energy counter for this GPU (before Volta?)"
    return nvml.energy_mj, None


def energy_source(device: str) -> str:
    """What :func:`energy_counter` reads for ``device``, in words (for the row and the footer)."""
    if device == "cpu":
        zones = ", ".join(os.path.basename(zone) for zone in rapl_packages())
        return f"RAPL package energy ({zones}): the whole CPU package, idle cores and other processes included"
    return "NVML total energy of the whole GPU (unverified: not yet checked on a GPU)"


def energy_between(device: str, before: Any, after: Any) -> float:
    """Joules between two readings of :func:`energy_counter`'s function for ``device``."""
    if device == "cpu":
        return rapl_joules_between(before, after)
    return (after - before) / 1e3


def process_memory() -> Dict[str, Any]:
    """This process's ``rss_bytes`` and ``peak_rss_bytes`` now (for training history)."""
    return {"rss_bytes": rss_bytes(), "peak_rss_bytes": peak_rss_bytes()}
