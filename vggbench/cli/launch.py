"""``vggbench launch``: run data-parallel training over MXNet's KVStore: scheduler, servers and workers."""

from __future__ import annotations

import argparse

from vggbench.cli.flags import add_command, positive_float, positive_int
from vggbench.errors import VggbenchError

NAME = "launch"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    p.add_argument("--workers", type=positive_int, required=True, metavar="N", help="worker processes")
    p.add_argument("--servers", type=positive_int, default=1, metavar="M", help="KVStore server processes (default 1)")
    p.add_argument("--hosts", metavar="FILE", help="one host per line: print (or with --ssh run) each host's command")
    p.add_argument("--ssh", action="store_true", help="with --hosts: start the per-host commands over ssh")
    p.add_argument("--port", type=positive_int, metavar="P", help="the scheduler's port (default: a free one locally)")
    p.add_argument("--timeout", type=positive_float, metavar="S", help="end the whole job after S seconds")
    p.add_argument("--workdir", metavar="DIR", help="folder the commands run in on each host (default: this one)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                   help="the worker command, e.g. -- vggbench train-export vgg11 --kvstore dist_sync")


def run(args) -> int:
    """Run data-parallel training over MXNet's KVStore: scheduler, servers and workers.

    On this machine it starts the scheduler, M servers and N workers as local processes with the
    DMLC_* variables on loopback, prefixes their output, and ends every process when one fails
    (exit non-zero naming the role and rank). With --hosts FILE it prints the exact command for each
    host (or runs them with --ssh). Everything after -- is the worker command.
    """
    from vggbench.train.distributed.launch import launch

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    if not job:
        raise VggbenchError("give the worker command after --, e.g. -- vggbench train-export vgg11 --kvstore dist_sync")
    return launch(args.workers, args.servers, job, hosts_file=args.hosts, port=args.port, ssh=args.ssh,
                  timeout_s=args.timeout, workdir=args.workdir)
