"""Checkpoints after every epoch, so ``--resume`` continues the same training.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from vggbench import artifacts
from vggbench.artifacts.manifest import HISTORY_ROW_SCHEMA, MAX_CURVE_POINTS, MAX_EPOCHS
from vggbench.artifacts.reader import check_fields, is_regular_file, read_json, short
from vggbench.errors import VggbenchError
from vggbench.platform.environment import utc_now
from vggbench.train.recipe import CHECKPOINT_DIR, CHECKPOINT_INDEX, FLAG_OF, RESUME_MUST_MATCH, Recipe

# checkpoints/last.json: a few kB per epoch (history rows and curve points).
MAX_CHECKPOINT_INDEX_BYTES = 16 << 20
_CHECKPOINT_FILE = re.compile(r"^epoch-\d{4,6}\.(params|states)$")
_INDEX_SCHEMA = {
    "epoch": ((int,), True, lambda v: 1 <= v <= MAX_EPOCHS, f"1..{MAX_EPOCHS}"),
    "params": ((str,), True, None, ""),
    "states": ((str,), True, None, ""),
    "recipe": ((dict,), True, None, ""),
    "history": ((list,), True, lambda v: len(v) <= MAX_EPOCHS, f"at most {MAX_EPOCHS} rows"),
    "steps": ((list,), False, lambda v: len(v) <= MAX_CURVE_POINTS and all(isinstance(p, dict) for p in v),
              f"a list of at most {MAX_CURVE_POINTS} points"),
}

# --- checkpoints -----------------------------------------------------------------------------------

def save_checkpoint(run_dir: Path, net, trainer, recipe: Recipe, history: List[Dict[str, Any]],
                    steps: List[Dict[str, float]]) -> Path:
    """Params + trainer state for the epoch just finished, then ``last.json`` pointing at them.

    ``run_dir``: where ``checkpoints/`` goes; ``net``, ``trainer``: what is saved; ``recipe``,
    ``history`` (one row per finished epoch), ``steps`` (the curve points): recorded in the index,
    whose path is returned. Each file is renamed into place when complete and the index is written last, so an
    interrupted save leaves the previous checkpoint usable; older epochs are then deleted.
    """
    epoch = len(history)
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    params_name, states_name = f"epoch-{epoch:04d}.params", f"epoch-{epoch:04d}.states"
    with artifacts.atomic_path(folder / params_name) as temp:
        net.save_parameters(str(temp))
    with artifacts.atomic_path(folder / states_name) as temp:
        trainer.save_states(str(temp))
    index = folder / CHECKPOINT_INDEX
    artifacts.write_json_atomic(index, {"epoch": epoch, "params": params_name, "states": states_name,
                                        "recipe": recipe.asdict(), "history": history, "steps": steps,
                                        "saved": utc_now()})
    for old in folder.glob("epoch-*"):
        if old.name not in (params_name, states_name):
            old.unlink()
    return index


def read_checkpoint(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The last checkpoint's index in ``run_dir``, or None when it has none; a VggbenchError when
    the index is unreadable or names missing files."""
    index = Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_INDEX
    if not os.path.lexists(index):
        return None
    fix = "start over with --force"
    checkpoint = read_json(index, MAX_CHECKPOINT_INDEX_BYTES, "checkpoint index", follow_symlinks=False,
                                     fix=fix)
    missing = [key for key in ("epoch", "params", "states", "recipe", "history")
               if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise VggbenchError(f"{index}: checkpoint index lacks {', '.join(missing)}; {fix}")
    check_fields(checkpoint, _INDEX_SCHEMA, str(index), "", fix)
    for key in ("params", "states"):  # plain names inside checkpoints/, never a path elsewhere
        if not _CHECKPOINT_FILE.match(checkpoint[key]):
            raise VggbenchError(f"{index}: key {key!r} is {short(checkpoint[key])}, expected a file name "
                                f"like epoch-0003.{key} inside {index.parent}; {fix}")
        if not is_regular_file(index.parent / checkpoint[key]):
            raise VggbenchError(f"{index} names {checkpoint[key]}, which is missing or not a regular file; {fix}")
    for number, row in enumerate(checkpoint["history"]):
        check_fields(row, HISTORY_ROW_SCHEMA, str(index), f"'history'[{number}].", fix)
    return checkpoint


def check_resumable(checkpoint: Dict[str, Any], recipe: Recipe, index: Path) -> None:
    """Refuse (VggbenchError) to resume ``checkpoint`` (read from ``index``) with a ``recipe`` that
    differs from the one it was trained with, or that asks for fewer epochs than it has."""
    saved = checkpoint["recipe"]
    defaults = {field.name: field.default for field in dataclasses.fields(Recipe)}
    for key in RESUME_MUST_MATCH:  # a key an older checkpoint lacks had its default then
        if saved.get(key, defaults.get(key)) != getattr(recipe, key):
            flag = FLAG_OF.get(key, key)
            raise VggbenchError(f"--resume: the checkpoint in {index.parent.parent} was trained with {key} "
                                f"{saved.get(key)!r}, this run asks for {getattr(recipe, key)!r}; resume with "
                                f"the same {flag}, or use --name for a new run")
    if checkpoint["epoch"] > recipe.epochs:
        raise VggbenchError(f"--resume: the checkpoint already has {checkpoint['epoch']} epochs, more than "
                            f"--epochs {recipe.epochs}; ask for at least {checkpoint['epoch']}")


def load_checkpoint(run_dir: Path, checkpoint: Dict[str, Any], net, trainer, contexts: Sequence) -> None:
    """Load ``checkpoint``'s (from :func:`read_checkpoint`) weights into ``net`` on the MXNet
    ``contexts`` and its optimizer state into ``trainer``."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    net.load_parameters(str(folder / checkpoint["params"]), ctx=list(contexts))
    trainer.load_states(str(folder / checkpoint["states"]))
