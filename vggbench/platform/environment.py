"""What machine and software produced a number, so a saved result can be trusted later.
"""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any, Dict, Optional

from vggbench.platform.cpu import cpu_flags, cpu_model

THREAD_VARS = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")


def package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for dist in ("vggbench", "mxnet", "mxnet-cu117", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
                 "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """The timestamp format of every manifest and result file."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def gpus() -> list:
    """GPU name, memory, driver and compute capability for the results' environment; empty when
    there is none. Read by :func:`vggbench.platform.gpu.gpu_inventory`, the one ``nvidia-smi`` reader."""
    from vggbench.platform.gpu import gpu_inventory

    return [{"name": g.name, "memory": f"{g.memory_total_mib} MiB" if g.memory_total_mib else None,
             "driver": g.driver_version, "compute_capability": g.compute_capability} for g in gpu_inventory()]


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
