"""What machine and software produced a number, so a saved result can be trusted later."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
from typing import Any, Dict, Optional

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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list:
    """The SIMD features that decide CPU speed here (AVX-512 VNNI makes INT8 fast)."""
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    present = set(line.split(":", 1)[1].split())
                    return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


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
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARS if name in os.environ},
        "gpus": gpus(),
        "versions": package_versions(),
    }
