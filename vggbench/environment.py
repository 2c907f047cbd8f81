"""What machine and software produced a number, so a saved result can be trusted later."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from typing import Any, Dict, List, Optional

THREAD_VARS = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist in ("vggbench", "mxnet", "mxnet-cu117", "onnx", "onnxruntime", "onnxruntime-gpu", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """The timestamp format of every manifest and result file."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cpuinfo_processors() -> List[Dict[str, str]]:
    """/proc/cpuinfo as one ``{key: value}`` dict per logical processor (empty off Linux)."""
    processors, current = [], {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip():
                    current[key.strip()] = value.strip()
                elif current:
                    processors.append(current)
                    current = {}
    except OSError:
        pass
    if current:
        processors.append(current)
    return processors


def cpu_model() -> str:
    for processor in _cpuinfo_processors():
        if "model name" in processor:
            return processor["model name"]
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The SIMD features that decide CPU speed here (AVX-512 VNNI makes INT8 fast)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
    for processor in _cpuinfo_processors():
        if "flags" in processor:
            present = set(processor["flags"].split())
            return [flag for flag in wanted if flag in present]
    return []


def physical_cores() -> int:
    """Physical CPU cores (distinct physical id/core id pairs in /proc/cpuinfo), else os.cpu_count()."""
    cores = {(p.get("physical id"), p["core id"]) for p in _cpuinfo_processors() if "core id" in p}
    return len(cores) or os.cpu_count() or 1


def gpus() -> list:
    """GPU name, memory and driver from nvidia-smi; empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) >= 3:
            rows.append({"name": parts[0], "memory": parts[1], "driver": parts[2],
                         "compute_capability": parts[3] if len(parts) > 3 else None})
    return rows


def collect_environment() -> Dict[str, Any]:
    return {
        "timestamp": utc_now(),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARS if name in os.environ},
        "gpus": gpus(),
        "versions": package_versions(),
    }
