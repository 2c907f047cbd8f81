"""``vggbench data``: download Fashion-MNIST (checked against its published checksums) or verify a folder."""

from __future__ import annotations

from vggbench.cli.flags import add_command, log
from vggbench.errors import EXIT_OK, VggbenchError

NAME = "data"


def add(sub) -> None:
    p = add_command(sub, NAME, run)
    actions = p.add_subparsers(dest="data_action", metavar="ACTION")
    actions.required = True
    fetch = actions.add_parser(
        "download", help="fetch the missing files, then verify the folder",
        description="Fetch the four Fashion-MNIST files missing from DIR (default: $VGGBENCH_DATA, else "
                    "~/.cache/vggbench/fashion-mnist): Zalando's originals first, Gluon's mirror second, each file "
                    "checked against its source's published checksums; then one line per file.")
    fetch.add_argument("--dir", metavar="DIR", help="download into DIR (created if missing)")
    fetch.add_argument("--mirror", metavar="URL", action="append", default=[],
                       help="a folder URL serving Zalando's original files, tried before the built-in sources "
                            "(repeatable); its files must match Zalando's checksums")
    fetch.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    check = actions.add_parser(
        "check", help="verify a folder: names, sizes, checksums",
        description="Verify that DIR holds the four Fashion-MNIST files, each byte-identical to Zalando's "
                    "originals or to Gluon's mirror copies: one line per file; exit 1 when one is missing or wrong.")
    check.add_argument("dir", metavar="DIR", help="the folder to verify")


def run(args) -> int:
    """Download Fashion-MNIST (checked against its published checksums) or verify a folder.

    `data download [--dir DIR]` fetches what is missing (Zalando's originals, then Gluon's mirror)
    and verifies the folder; `data check DIR` verifies a folder without touching the network. Both
    print one line per file and exit 1 when a file is missing or not a published one.
    """
    from pathlib import Path

    from vggbench import data, download

    sources = download.default_sources()
    if args.data_action == "download":
        sources = tuple(download.mirror_of_originals(url) for url in args.mirror) + sources
        if args.dir:
            Path(args.dir).expanduser().mkdir(parents=True, exist_ok=True)
        folder = data.ensure_data(args.dir, sources=sources, progress=not args.no_progress)
    else:
        folder = Path(args.dir).expanduser()
    checks = download.check_folder(folder, data.ALL_FILES, sources)
    print(folder)
    for check in checks:
        print(check.line())
    bad = [check.name for check in checks if not check.ok]
    if bad:
        raise VggbenchError(f"{len(bad)} of the {len(checks)} Fashion-MNIST files in {folder} are missing or not the "
                            f"published ones ({', '.join(bad)}); remove a wrong file, then `vggbench data download "
                            f"--dir {folder}` fetches it")
    log.info(f"all {len(checks)} files in {folder} match their published checksums")
    return EXIT_OK
