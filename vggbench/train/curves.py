"""Training curves (loss, accuracy) drawn from the history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

from vggbench import artifacts

# --- history and curves ----------------------------------------------------------------------------

def plot_history(history: List[Dict[str, Any]], steps: List[Dict[str, float]], path: Path,
                 loss_name: str) -> None:
    """``training.png`` at ``path``: loss (left) and train/test accuracy (right) against epochs.

    ``history``: one row per epoch (``train_loss``, ``train_accuracy``, ``test_accuracy``);
    ``steps``: the within-epoch points; ``loss_name``: the loss's name, the left axis label. Uses a
    bare ``Figure`` on the Agg canvas (no pyplot) so nothing global changes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, acc_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    if steps:
        loss_axes.plot([s["epoch"] for s in steps], [s["loss"] for s in steps], color="tab:blue",
                       alpha=0.35, label="train loss (every few batches)")
        acc_axes.plot([s["epoch"] for s in steps], [s["accuracy"] for s in steps], color="tab:blue",
                      alpha=0.35, label="train accuracy (every few batches)")
    loss_axes.plot(epochs, [row["train_loss"] for row in history], "o-", color="tab:blue", label="train loss (epoch)")
    acc_axes.plot(epochs, [row["train_accuracy"] for row in history], "o-", color="tab:blue",
                  label="train accuracy (epoch)")
    acc_axes.plot(epochs, [row["test_accuracy"] for row in history], "s-", color="tab:orange",
                  label="test accuracy (epoch)")
    loss_axes.set(xlabel="epoch", ylabel=loss_name, title="loss")
    acc_axes.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1))
    for axes in (loss_axes, acc_axes):
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    with artifacts.atomic_path(path) as temp:
        figure.savefig(str(temp), format="png")
