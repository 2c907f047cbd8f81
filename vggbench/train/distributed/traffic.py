"""Communication volume per step (push = pull = parameter bytes), from the network's own graph.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

# --- communication volume --------------------------------------------------------------------------

def step_traffic_bytes(params: int, bytes_per_param: int = 4) -> Dict[str, int]:
    """Bytes one worker moves per synchronous step for ``params`` trainable parameters of
    ``bytes_per_param`` (float32: 4): it pushes every gradient and pulls every weight (or summed
    gradient) back, so ``push_bytes == pull_bytes == params * bytes_per_param``."""
    one_way = int(params) * int(bytes_per_param)
    return {"push_bytes": one_way, "pull_bytes": one_way, "total_bytes": 2 * one_way}


def communication_table(model_names: Sequence[str] = ("vgg11", "vgg16"), sizes: Sequence[int] = (96, 224),
                        width_ratio: float = 1.0, classes: int = 10, in_channels: int = 1) -> List[Dict[str, Any]]:
    """One row per model and input size: parameters (from the network's own graph,
    ``models.model_stats``) and :func:`step_traffic_bytes`, plus the step time a 10 Gbit/s and a
    100 Gbit/s link need for that traffic alone (``link_ms_10gbit``, ``link_ms_100gbit``)."""
    from vggbench import models

    rows = []
    for name in model_names:
        for size in sizes:
            stats = models.model_stats(name, size, classes=classes, in_channels=in_channels, width_ratio=width_ratio)
            traffic = step_traffic_bytes(stats["params"])
            rows.append({"model": name, "input_size": size, "width_ratio": width_ratio, "params": stats["params"],
                         **traffic,
                         "link_ms_10gbit": traffic["total_bytes"] * 8 / 10e9 * 1e3,
                         "link_ms_100gbit": traffic["total_bytes"] * 8 / 100e9 * 1e3})
    return rows
