"""The one channel for progress and messages: the ``vggbench`` logger, to stderr, tqdm-safe.

Results go to stdout (the CLI prints them); everything a command says while it works goes through
:func:`say` (or ``logging.getLogger("vggbench")``) to stderr, written with ``tqdm.write`` so a
line never tears a progress bar. ``vggbench -q`` raises the level to warnings only.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "vggbench"


class _TqdmHandler(logging.Handler):
    """A handler that writes each record on its own line to stderr through ``tqdm.write``."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the command
            self.handleError(record)


def logger() -> logging.Logger:
    """The ``vggbench`` logger, with its stderr handler on first use (level INFO)."""
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers:
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def say(message: str) -> None:
    """Tell the user ``message`` (a progress or status line) on stderr.

    Parameters:
        message: one line.
    """
    logger().info(message)


def set_quiet(quiet: bool) -> None:
    """Only warnings and errors when ``quiet`` (``vggbench -q``), else every progress line."""
    logger().setLevel(logging.WARNING if quiet else logging.INFO)
