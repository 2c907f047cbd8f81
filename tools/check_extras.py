#!/usr/bin/env python3
"""Check that each extra in pyproject.toml installs a consistent set of wheels, without installing.

For every extra (or the sets named with --set, e.g. ``gpu+trt``) pip resolves the full wheel set
(``pip install --dry-run --ignore-installed --report``; metadata only), then this script lists every
wheel's files from its zip central directory: a few HTTP range requests per wheel instead of the
whole download (the gpu extra's wheels are about 2 GB). The file lists are cached by wheel URL, so a
second run costs only the resolution. A path installed by two wheels of one set is a clash: the
wheel installed last overwrites the other's file, and uninstalling either deletes it.

Exit status: 0 no clash, 1 some set has a clash, 2 the check itself could not run (resolution or
download failed).

    python tools/check_extras.py                       # every extra, alone
    python tools/check_extras.py --set gpu --set gpu+trt --json out.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import ssl
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vggbench-check-extras"
# The extras that are added on top of an exclusive one, not installed alone.
ADD_ON_EXTRAS = {"test", "trt", "trt-cu13"}
MAX_CENTRAL_DIRECTORY_BYTES = 64 * 1024 * 1024
_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_CENTRAL_ENTRY = b"PK\x01\x02"
_CACHE_FORMAT = 2


class CheckError(Exception):
    """The check could not run (a resolution or a download failed); not a finding."""


def load_pyproject(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def requirements_for(project: dict, extras: list[str]) -> list[str]:
    """The base dependencies plus every named extra's requirements (self-references expanded)."""
    name = project["name"].lower().replace("_", "-")
    optional = project.get("optional-dependencies", {})
    requirements: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise CheckError(f"pyproject.toml has no extra {extra!r} (it has: {', '.join(optional)})")
        for requirement in optional[extra]:
            match = re.match(r"\s*([A-Za-z0-9._-]+)\s*\[([^\]]+)\]\s*$", requirement)
            if match and match.group(1).lower().replace("_", "-") == name:
                pending.extend(part.strip() for part in match.group(2).split(","))
            else:
                requirements.append(requirement)
    return requirements


def resolve(requirements: list[str], python_version: str | None) -> list[dict]:
    """pip's resolution of `requirements` for this platform: [{name, version, url}] per wheel."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                   "--only-binary=:all:", "--quiet", "--report", str(report)]
        if python_version:
            command += ["--python-version", python_version, "--target", str(Path(scratch) / "t")]
        completed = subprocess.run(command + requirements, capture_output=True, text=True)
        if completed.returncode != 0:
            errors = [line for line in completed.stderr.splitlines() if line.startswith("ERROR")]
            raise CheckError("pip could not resolve " + " ".join(requirements) + ": "
                             + (" ".join(errors) or completed.stderr.strip()[-500:]))
        data = json.loads(report.read_text())
    wheels = []
    for item in data["install"]:
        url = item["download_info"]["url"]
        if not url.split("#")[0].endswith(".whl"):
            raise CheckError(f"{item['metadata']['name']} resolved to a non-wheel file {url}")
        wheels.append({"name": item["metadata"]["name"], "version": item["metadata"]["version"],
                       "url": url.split("#")[0]})
    return sorted(wheels, key=lambda wheel: wheel["name"].lower())


class _RemoteFile:
    """A seekable read-only view of an HTTP(S) file through range requests."""

    def __init__(self, url: str):
        self.url = url
        self._context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
        self.size = int(self._fetch(-1)[1])

    def _fetch(self, start: int, end: int | None = None) -> tuple[bytes, int]:
        byte_range = "bytes=-1" if start < 0 else f"bytes={start}-{'' if end is None else end - 1}"
        request = urllib.request.Request(self.url, headers={"Range": byte_range})
        with urllib.request.urlopen(request, timeout=120, context=self._context) as response:
            if response.status != 206:
                raise CheckError(f"{self.url} does not answer range requests (HTTP {response.status})")
            total = int(response.headers["Content-Range"].rsplit("/", 1)[1])
            return response.read(), total

    def read(self, start: int, length: int) -> bytes:
        return self._fetch(start, start + length)[0] if length else b""


class _LocalFile:
    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)

    def read(self, start: int, length: int) -> bytes:
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(length)


def _central_directory(source) -> dict[str, int]:
    """{member name: uncompressed bytes} of the zip `source`, read from its central directory only
    (a size of 0xFFFFFFFF means "in the zip64 extra field": large, never empty)."""
    tail_length = min(source.size, 65536 + 22)
    tail = source.read(source.size - tail_length, tail_length)
    eocd_at = tail.rfind(_EOCD)
    if eocd_at < 0:
        raise CheckError("not a zip file (no end-of-central-directory record)")
    entries, directory_size, directory_offset = struct.unpack_from("<HII", tail, eocd_at + 10)
    locator_at = eocd_at - 20
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == _EOCD64_LOCATOR:  # zip64
        (eocd64_offset,) = struct.unpack_from("<Q", tail, locator_at + 8)
        record = source.read(eocd64_offset, 56)
        entries, directory_size, directory_offset = struct.unpack_from("<QQQ", record, 32)
    if directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise CheckError(f"central directory of {directory_size} bytes is larger than the bound")
    directory = source.read(directory_offset, directory_size)
    members, at = {}, 0
    for _ in range(entries):
        if directory[at:at + 4] != _CENTRAL_ENTRY:
            raise CheckError("corrupt zip central directory")
        (size,) = struct.unpack_from("<I", directory, at + 24)
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", directory, at + 28)
        members[directory[at + 46:at + 46 + name_length].decode("utf-8")] = size
        at += 46 + name_length + extra_length + comment_length
    return members


def wheel_members(url: str, cache: Path | None) -> dict:
    """{"bytes": wheel size, "members": {name: uncompressed bytes}} for the wheel at `url`, cached by URL."""
    parsed = urllib.parse.urlparse(url)
    key_text = f"{_CACHE_FORMAT}:{url}"
    if parsed.scheme == "file":
        path = urllib.request.url2pathname(parsed.path)
        stat = os.stat(path)
        key_text = f"{_CACHE_FORMAT}:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_file = None
    if cache is not None:
        cache_file = cache / (hashlib.sha256(key_text.encode()).hexdigest() + ".json")
        if cache_file.is_file():
            return json.loads(cache_file.read_text())
    try:
        if parsed.scheme == "file":
            source = _LocalFile(urllib.request.url2pathname(parsed.path))
        else:
            source = _RemoteFile(url)
        listing = {"url": url, "bytes": source.size, "members": _central_directory(source)}
    except (OSError, CheckError) as error:
        raise CheckError(f"cannot list {url}: {error}") from error
    if cache_file is not None:
        cache.mkdir(parents=True, exist_ok=True)
        scratch = cache_file.with_suffix(f".{os.getpid()}.tmp")
        scratch.write_text(json.dumps(listing))
        os.replace(scratch, cache_file)
    return listing


def installed_path(member: str) -> str | None:
    """Where a wheel member lands, relative to the install scheme (None: a directory entry).

    ``*.data/purelib`` and ``platlib`` go to site-packages like top-level members; ``scripts``,
    ``headers`` and ``data`` go to their own scheme directories.
    """
    if member.endswith("/"):
        return None
    head, _, rest = member.partition("/")
    if head.endswith(".data") and rest:
        scheme, _, inner = rest.partition("/")
        if scheme in ("purelib", "platlib"):
            return inner
        return f"<{scheme}>/{inner}"
    return member


def find_clashes(files_by_distribution: dict[str, dict[str, int]]) -> tuple[dict, dict]:
    """({path: [distributions]}, {path: [distributions]}): paths that more than one distribution
    installs with content, and those where every copy is an empty file (``nvidia/__init__.py`` of
    the namespace package: overwriting it changes nothing, so it is reported apart, not failed)."""
    owners: dict[str, list[str]] = {}
    sizes: dict[str, set[int]] = {}
    for distribution, files in files_by_distribution.items():
        for path, size in files.items():
            owners.setdefault(path, []).append(distribution)
            sizes.setdefault(path, set()).add(size)
    shared = {path: sorted(names) for path, names in sorted(owners.items()) if len(names) > 1}
    empty = {path: names for path, names in shared.items() if sizes[path] == {0}}
    return {path: names for path, names in shared.items() if path not in empty}, empty


def check_set(project: dict, extras: list[str], cache: Path | None, python_version: str | None) -> dict:
    wheels = resolve(requirements_for(project, extras), python_version)
    files: dict[str, dict[str, int]] = {}
    total_bytes = 0
    for wheel in wheels:
        listing = wheel_members(wheel["url"], cache)
        wheel["bytes"] = listing["bytes"]
        total_bytes += listing["bytes"]
        label = f"{wheel['name']}=={wheel['version']}"
        files[label] = {installed_path(name): size for name, size in listing["members"].items()
                        if installed_path(name)}
        wheel["files"] = len(files[label])
    clashes, empty_shared = find_clashes(files)
    return {"set": "+".join(extras), "wheels": wheels, "download_bytes": total_bytes,
            "clashes": clashes, "shared_empty_files": empty_shared}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--set", dest="sets", action="append", metavar="EXTRA[+EXTRA]",
                        help="an install set to check (repeatable); default: every extra that is "
                             f"not an add-on ({', '.join(sorted(ADD_ON_EXTRAS))}) alone")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="folder for wheel file lists (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--python-version", help="resolve for this Python (e.g. 3.11) instead of this one")
    parser.add_argument("--json", type=Path, help="also write the findings (wheels, sizes, clashes) here")
    parser.add_argument("--list", action="store_true", help="print every wheel's installed paths")
    args = parser.parse_args(argv)

    project = load_pyproject(args.pyproject)["project"]
    sets = args.sets or [name for name in project.get("optional-dependencies", {})
                         if name not in ADD_ON_EXTRAS]
    cache = None if args.no_cache else args.cache
    findings, clashing = [], 0
    for install_set in sets:
        extras = [part for part in install_set.split("+") if part]
        try:
            finding = check_set(project, extras, cache, args.python_version)
        except CheckError as error:
            print(f"check_extras: {install_set}: {error}", file=sys.stderr)
            return 2
        findings.append(finding)
        megabytes = finding["download_bytes"] / 1e6
        print(f"{finding['set']}: {len(finding['wheels'])} wheels, {megabytes:.0f} MB download, "
              f"{len(finding['clashes'])} clashing paths"
              + (f" ({len(finding['shared_empty_files'])} empty file(s) shared)" if finding["shared_empty_files"] else ""))
        if args.list:
            for wheel in finding["wheels"]:
                print(f"  {wheel['name']}=={wheel['version']}  {wheel['files']} files  {wheel['bytes']} bytes")
        for path, owners in finding["clashes"].items():
            print(f"  CLASH {path}: installed by {' and '.join(owners)}")
        clashing += bool(finding["clashes"])
    if args.json:
        args.json.write_text(json.dumps(findings, indent=1))
    return 1 if clashing else 0


if __name__ == "__main__":
    sys.exit(main())
