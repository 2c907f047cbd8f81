"""Scheduler and server processes: ``python -m vggbench.train.distributed.server`` with ``DMLC_ROLE`` set.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from vggbench.errors import VggbenchError
from vggbench.train.distributed.kvstore import DistInfo, KVStoreWatchdog, PeerWatchdog, _launcher_parent

# --- scheduler and server processes --------------------------------------------------------------

def serve(role: Optional[str] = None) -> int:
    """Run this process as the job's scheduler or a server until the job ends.

    ``role``: ``scheduler`` or ``server``; None reads ``DMLC_ROLE``. MXNet serves these roles
    while it is imported (the import returns only when rank 0 stops the job). Returns the exit
    status (0), or raises VggbenchError for a missing or wrong role.
    """
    role = (role or os.environ.get("DMLC_ROLE", "")).strip().lower()
    if role not in ("scheduler", "server"):
        raise VggbenchError(f"python -m vggbench.train.distributed serves the scheduler or a server (DMLC_ROLE); got "
                            f"{role or 'no role'!r}: workers run vggbench train-export")
    os.environ["DMLC_ROLE"] = role
    DistInfo.from_env("dist_sync")  # the same one-line error as a worker for a missing variable
    watchdog = KVStoreWatchdog(timeout_s=None, label=role) if _launcher_parent() is not None else None
    peers = PeerWatchdog(timeout_s=None, label=role)  # launched by hand or not: a dead worker ends us too
    from vggbench.platform.mxnet import import_mxnet

    try:
        import_mxnet()
    except SystemExit as done:  # mxnet's kvstore_server ends the node with sys.exit()
        return int(done.code or 0)
    finally:
        peers.close()
        if watchdog is not None:
            watchdog.close()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m vggbench.train.distributed [--role scheduler|server]``: see :func:`serve`."""
    parser = argparse.ArgumentParser(prog="python -m vggbench.train.distributed",
                                     description="run a KVStore scheduler or server (DMLC_* variables set)")
    parser.add_argument("--role", choices=("scheduler", "server"), help="default: $DMLC_ROLE")
    args = parser.parse_args(argv)
    try:
        return serve(args.role)
    except VggbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
