"""Tables, files and plots: turn result rows (plain dicts) into what people read."""

from __future__ import annotations

import json
import sys
from typing import Dict, Iterable, List, Optional, Sequence

from tabulate import tabulate

from vggbench.artifacts import write_json_atomic


def format_table(rows: Sequence[Dict], columns: Sequence[tuple], tablefmt: str = "github") -> str:
    """``columns`` is ``[(header, key or callable(row)), ...]``; missing values print as '-'."""
    body = []
    for row in rows:
        line = []
        for _, getter in columns:
            value = getter(row) if callable(getter) else row.get(getter)
            line.append("-" if value is None else value)
        body.append(line)
    return tabulate(body, headers=[header for header, _ in columns], tablefmt=tablefmt,
                    floatfmt=".2f", disable_numparse=False)


def models_rows(sizes: Iterable[int] = (96, 224), width_ratio: float = 1.0, classes: int = 10,
                in_channels: int = 1) -> List[Dict]:
    from vggbench.models import MODEL_NAMES, model_stats

    rows = []
    for name in MODEL_NAMES:
        per_size = [model_stats(name, size, classes, in_channels, width_ratio) for size in sizes]
        row = {"model": name, "config": per_size[0]["config"], "width_ratio": width_ratio,
               "classes": classes, "in_channels": in_channels}
        for stats in per_size:
            row[f"params_{stats['input_size']}"] = stats["params"]
            row[f"gflops_{stats['input_size']}"] = stats["gflops"]
        rows.append(row)
    return rows


def models_table(sizes=(96, 224), width_ratio=1.0, classes=10, in_channels=1,
                 json_path: Optional[str] = None, out=sys.stdout) -> List[Dict]:
    """Print the zoo (params depend on input size through the first Dense layer)."""
    rows = models_rows(sizes, width_ratio, classes, in_channels)
    if json_path == "-":
        json.dump(rows, out, indent=2)
        out.write("\n")
        return rows
    columns = [("model", "model"), ("config", "config")]
    for size in sizes:
        columns += [(f"params @{size}", lambda r, s=size: f"{r[f'params_{s}']:,}"),
                    (f"GFLOPs @{size}", lambda r, s=size: f"{r[f'gflops_{s}']:.3f}")]
    print(format_table(rows, columns), file=out)
    print(f"\nFLOPs = 2 x multiply-adds of conv and dense layers per image; {in_channels} input channel(s), "
          f"{classes} classes, width ratio {width_ratio:g}.", file=out)
    if json_path:
        write_json_atomic(json_path, rows)
    return rows
