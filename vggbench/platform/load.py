"""What else the machine was doing while we measured: load, CPU share, steal, clocks, throttling.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from vggbench.platform.cpu import SYS_CPU_DIR, _cpu_dirs, _read_number

# --- what else the machine was doing: load, clocks, throttling ------------------------------------

# A row gets a warning when, before it, the 1-min load not caused by the benchmark is above half a
# core per core: then at least one core in two is wanted by something else, which on a CPU
# benchmark using every core means lost time slices and a low, noisy figure.
BUSY_LOAD_PER_CORE = 0.5
# ... or when, during it, other processes used over a quarter of all CPU time, or the hypervisor
# took (steal) over 5% of it: a VM's vCPUs were then not fully ours.
BUSY_OTHER_CPU_PCT = 25.0
BUSY_STEAL_PCT = 5.0


def load_average() -> Optional[Dict[str, float]]:
    """The 1, 5 and 15 minute load averages (``os.getloadavg``): ``load_1min``, ``load_5min``,
    ``load_15min``; ``None`` where the platform has none (Windows).

    The load counts runnable tasks (on Linux also those in uninterruptible sleep), damped
    exponentially over 1/5/15 minutes: it lags, so a benchmark that just ran still shows in it.
    """
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return {"load_1min": round(one, 2), "load_5min": round(five, 2), "load_15min": round(fifteen, 2)}








def throttling_hints(sys_cpu_dir: str = SYS_CPU_DIR) -> Dict[str, int]:
    """Thermal throttling event counts since boot, where the kernel exposes them (Intel, bare metal).

    Returns ``core_throttle_count`` (summed over CPUs) and ``package_throttle_count`` (summed over
    packages: each package's count is read once, via ``topology/physical_package_id``); an empty
    dict where ``cpuN/thermal_throttle/`` is not readable (AMD, most VMs). Compare the counts before
    and after a row (:func:`throttled_between`): the counts only grow.
    """
    core_total, packages, found = 0, {}, False
    for cpu_dir in _cpu_dirs(sys_cpu_dir):
        core = _read_number(os.path.join(cpu_dir, "thermal_throttle", "core_throttle_count"))
        package = _read_number(os.path.join(cpu_dir, "thermal_throttle", "package_throttle_count"))
        if core is None and package is None:
            continue
        found = True
        core_total += int(core or 0)
        if package is not None:
            package_id = _read_number(os.path.join(cpu_dir, "topology", "physical_package_id"))
            packages[package_id] = int(package)
    if not found:
        return {}
    return {"core_throttle_count": core_total, "package_throttle_count": sum(packages.values())}


def throttled_between(before: Dict[str, int], after: Dict[str, int]) -> Optional[str]:
    """A warning line when a throttle count grew between two :func:`throttling_hints` readings."""
    grown = {key: after[key] - before[key] for key in after if key in before and after[key] > before[key]}
    if not grown:
        return None
    events = ", ".join(f"{count} {key.replace('_count', '')} event(s)" for key, count in sorted(grown.items()))
    return f"CPU thermal throttling during this row ({events}): the figure may be low"


def cpu_times(stat_path: str = "/proc/stat") -> Optional[Dict[str, float]]:
    """Whole-machine CPU time so far, in seconds summed over CPUs, from the ``cpu`` line of /proc/stat.

    Returns ``busy_s`` (user, nice, system, irq, softirq), ``idle_s`` (idle, iowait), ``steal_s``
    (time a VM's vCPUs wanted to run but the hypervisor ran something else); ``None`` off Linux.
    Two readings around a row give :func:`cpu_usage_between`.
    """
    try:
        with open(stat_path) as handle:
            fields = handle.readline().split()
        ticks = [float(value) for value in fields[1:]] + [0.0] * 8
        hz = float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
    return {"busy_s": (user + nice + system + irq + softirq) / hz, "idle_s": (idle + iowait) / hz,
            "steal_s": steal / hz}


def process_cpu_s(pid: int) -> Optional[float]:
    """CPU time (user + system, seconds) used so far by process ``pid``, from /proc/PID/stat; None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (float(fields[11]) + float(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def cpu_usage_between(before: Dict[str, float], after: Dict[str, float], own_cpu_s: float = 0.0) -> Dict[str, float]:
    """How the machine's CPU time was spent between two :func:`cpu_times` readings, in % of all of it.

    Args:
        before, after: :func:`cpu_times` readings around a row.
        own_cpu_s: CPU seconds the benchmark itself used in between (e.g. the worker's
            :func:`process_cpu_s` difference), subtracted to give ``other_busy_pct``.

    Returns ``busy_pct``, ``other_busy_pct`` (busy minus the benchmark's own, >= 0) and ``steal_pct``.
    Unlike the load average this has no lag: it covers exactly the interval.
    """
    deltas = {key: after[key] - before[key] for key in ("busy_s", "idle_s", "steal_s")}
    total = sum(deltas.values())
    if total <= 0:
        return {"busy_pct": 0.0, "other_busy_pct": 0.0, "steal_pct": 0.0}
    return {"busy_pct": round(100.0 * deltas["busy_s"] / total, 1),
            "other_busy_pct": round(100.0 * max(deltas["busy_s"] - own_cpu_s, 0.0) / total, 1),
            "steal_pct": round(100.0 * deltas["steal_s"] / total, 1)}


def machine_busy(load_before: Optional[Dict[str, float]], cores: int, own_load: float = 0.0,
                 usage: Optional[Dict[str, float]] = None) -> Optional[str]:
    """A one-line warning when the machine was busy around a row, else ``None``.

    Args:
        load_before: :func:`load_average` taken just before the row (``None``: not judged).
        cores: the cores the benchmark uses (e.g. :func:`physical_cores`), > 0.
        own_load: load the benchmark itself still contributes to the 1-min average (it lags by about a
            minute): 0 before a sweep's first row; the threads of the workers that ran in the last
            minute when rows follow each other (then prefer ``usage``, which has no lag).
        usage: :func:`cpu_usage_between` over the row, optional.

    Rules (each documented at its constant): ``(load_1min - own_load) / cores`` >
    :data:`BUSY_LOAD_PER_CORE`; ``usage["other_busy_pct"]`` > :data:`BUSY_OTHER_CPU_PCT`;
    ``usage["steal_pct"]`` > :data:`BUSY_STEAL_PCT`.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    reasons = []
    if load_before is not None:
        other_load = load_before["load_1min"] - own_load
        if other_load / cores > BUSY_LOAD_PER_CORE:
            reasons.append(f"1-min load {other_load:.2f} from other work on {cores} core(s) "
                           f"(> {BUSY_LOAD_PER_CORE:g} per core)")
    if usage is not None:
        if usage.get("other_busy_pct", 0.0) > BUSY_OTHER_CPU_PCT:
            reasons.append(f"other processes used {usage['other_busy_pct']:.0f}% of the CPU time")
        if usage.get("steal_pct", 0.0) > BUSY_STEAL_PCT:
            reasons.append(f"the hypervisor took {usage['steal_pct']:.0f}% of the CPU time (steal)")
    if not reasons:
        return None
    return "machine busy: " + "; ".join(reasons) + " -- figures may be low and noisy"
