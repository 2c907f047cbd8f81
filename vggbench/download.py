"""Fetch Fashion-MNIST from its publisher or a mirror, and verify a folder of its files.

Each missing file is tried at every source in order: Zalando's original files first (the
publisher), then Gluon's mirror (MXNet's copy, which differs byte-wise and has its own sha1). A
file is streamed into a temporary file beside its final name, hashed as it arrives, refused past
``max_bytes`` or when a read stalls for ``timeout_s``, and renamed into place only when every
checksum its source publishes matches: a dead mirror, a wrong page or a corrupted copy never
leaves a file behind. When no source delivers a file, one line names every source tried, what
went wrong there, and how to point ``--data-dir`` / ``VGGBENCH_DATA`` at a copy.

The source list is a parameter everywhere (tests serve real files on loopback through it).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from vggbench.artifacts.io import atomic_path
from vggbench.errors import VggbenchError

# Zalando's originals: size in bytes, md5 as published (github.com/zalandoresearch/fashion-mnist,
# README) and the sha256 of the same files.
ORIGINAL_FILES: Dict[str, Tuple[int, str, str]] = {
    "train-images-idx3-ubyte.gz": (26421880, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                   "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    "train-labels-idx1-ubyte.gz": (29515, "25c81989df183df01b3e8a0aad5dffbe",
                                   "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    "t10k-images-idx3-ubyte.gz": (4422102, "bef4ecab320f06d8554ea6380940ec79",
                                  "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
    "t10k-labels-idx1-ubyte.gz": (5148, "bb300cfdad3c16e7a12a480ee83cd310",
                                  "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
}
# Gluon's sha1 of its mirror copies (mxnet.gluon.data.vision.FashionMNIST).
GLUON_SHA1 = {
    "train-images-idx3-ubyte.gz": "0cf37b0d40ed5169c6b3aba31069a9770ac9043d",
    "train-labels-idx1-ubyte.gz": "236021d52f1e40852b06a4c3008d8de8aef1e40b",
    "t10k-images-idx3-ubyte.gz": "626ed6a7c06dd17c0eec72fa3be1740f146a2863",
    "t10k-labels-idx1-ubyte.gz": "17f9ab60e7257a1620f4ad76bbbaf857c3920701",
}
# The largest file accepted from any source (the biggest original is 26,421,880 bytes).
MAX_FILE_BYTES = 64 << 20
# Seconds one connect or read may stall, and seconds one whole file may take.
TIMEOUT_S = 30.0
DEADLINE_S = 900.0
CHUNK_BYTES = 1 << 16
ALGORITHMS = ("md5", "sha1", "sha256")


@dataclass(frozen=True)
class Source:
    """A place that serves the files, and the checksums it publishes for them.

    Attributes:
        name: how messages call it ("Zalando (publisher)").
        base_url: the folder URL; a file's URL is ``base_url/<file name>``.
        checksums: file name -> {algorithm ("md5", "sha1", "sha256"): hex digest}; a file must
            match every one given. A file the source has no checksum for is never fetched from it.
        sizes_bytes: file name -> exact size, where published (checked before hashing).
    """

    name: str
    base_url: str
    checksums: Mapping[str, Mapping[str, str]]
    sizes_bytes: Mapping[str, int] = field(default_factory=dict)

    def url(self, file_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/{file_name}"

    def label(self) -> str:
        return f"{self.name} ({self.base_url})"


ORIGINAL_CHECKSUMS = {name: {"md5": md5, "sha256": sha256} for name, (_, md5, sha256) in ORIGINAL_FILES.items()}
ORIGINAL_SIZES = {name: size for name, (size, _, _) in ORIGINAL_FILES.items()}
ZALANDO = Source("Zalando (publisher)", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
                 ORIGINAL_CHECKSUMS, ORIGINAL_SIZES)
# Gluon's repository root; $MXNET_GLUON_REPO replaces it, as it does for Gluon itself.
GLUON_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"
GLUON_REPO_ENV_VAR = "MXNET_GLUON_REPO"


def gluon_mirror(repo_url: Optional[str] = None) -> Source:
    """Gluon's copy of the files under ``repo_url`` (default: ``$MXNET_GLUON_REPO``, else Gluon's own)."""
    repo_url = repo_url or os.environ.get(GLUON_REPO_ENV_VAR) or GLUON_REPO
    return Source("Gluon's mirror", f"{repo_url.rstrip('/')}/gluon/dataset/fashion-mnist",
                  {name: {"sha1": sha1} for name, sha1 in GLUON_SHA1.items()})


def mirror_of_originals(base_url: str) -> Source:
    """A folder URL of the user's own serving Zalando's original files (checked like Zalando's)."""
    if not base_url.lower().startswith(("http://", "https://")):
        raise VggbenchError(f"--mirror {base_url}: not an http(s) URL; give the folder URL that holds the .gz files")
    return Source("--mirror", base_url, ORIGINAL_CHECKSUMS, ORIGINAL_SIZES)


def default_sources() -> Tuple[Source, ...]:
    """The publisher first, then Gluon's mirror."""
    return (ZALANDO, gluon_mirror())


class _Refused(Exception):
    """One source could not deliver one file; the message says why (short, no URL)."""

    def __init__(self, reason: str, source_dead: bool = False):
        super().__init__(reason)
        self.source_dead = source_dead


def _hashers() -> Dict[str, "hashlib._Hash"]:
    return {name: hashlib.new(name) for name in ALGORITHMS}


def _url_error_reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = getattr(err, "reason", err)
    return str(reason) or type(reason).__name__


def _fetch(url: str, target: Path, checksums: Mapping[str, str], size_bytes: Optional[int], max_bytes: int,
           timeout_s: float, deadline_s: float, progress: bool) -> Dict[str, str]:
    """Stream ``url`` into ``target`` atomically; return its digests, or raise :class:`_Refused`."""
    from tqdm import tqdm

    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "vggbench"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as err:
        raise _Refused(_url_error_reason(err)) from None
    except (urllib.error.URLError, OSError) as err:  # refused, no route, DNS, timeout
        raise _Refused(_url_error_reason(err), source_dead=True) from None
    with response:
        announced = response.headers.get("Content-Length")
        announced = int(announced) if announced and announced.isdigit() else None
        if announced is not None and announced > max_bytes:
            raise _Refused(f"announces {announced} bytes, more than the {max_bytes} bytes accepted")
        hashers, received = _hashers(), 0
        with atomic_path(target) as temp, open(temp, "wb") as out, \
                tqdm(total=announced, unit="B", unit_scale=True, unit_divisor=1024, desc=target.name,
                     disable=not progress, file=sys.stderr, leave=False) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as err:  # a stalled read, a dropped connection
                    raise _Refused(f"read failed after {received} bytes: {_url_error_reason(err)}",
                                   source_dead=True) from None
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise _Refused(f"sent more than the {max_bytes} bytes accepted")
                if time.monotonic() - started > deadline_s:
                    raise _Refused(f"took more than {deadline_s:g} s", source_dead=True)
                for hasher in hashers.values():
                    hasher.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            digests = {name: hasher.hexdigest() for name, hasher in hashers.items()}
            _check_digests(received, digests, checksums, size_bytes)
    return digests


def _check_digests(received: int, digests: Mapping[str, str], checksums: Mapping[str, str],
                   size_bytes: Optional[int]) -> None:
    if size_bytes is not None and received != size_bytes:
        raise _Refused(f"got {received} bytes, the published file has {size_bytes}")
    for algorithm, expected in checksums.items():
        if digests[algorithm] != expected.lower():
            raise _Refused(f"{algorithm} {digests[algorithm]} is not the published {expected}")


def download_files(data_dir, file_names: Sequence[str], sources: Optional[Sequence[Source]] = None,
                   max_bytes: int = MAX_FILE_BYTES, timeout_s: float = TIMEOUT_S, deadline_s: float = DEADLINE_S,
                   progress: bool = True, log: Optional[Callable[[str], None]] = None) -> Dict[str, str]:
    """Download each of ``file_names`` missing from ``data_dir`` from the first source that delivers it.

    Parameters:
        data_dir: the folder to fill (created if missing).
        file_names: the files wanted; those already there are left alone.
        sources: tried in order for every file (None: :func:`default_sources`); a source that could not be reached (refused,
            timed out) is not asked again for the next files.
        max_bytes: the largest file accepted; timeout_s: the longest a connect or read may stall;
            deadline_s: the longest one file may take.
        progress: a tqdm bar per file on stderr; log: called with one line per file fetched.

    Returns ``{file name: source name}`` for the files fetched. Raises a one-line
    :class:`VggbenchError` at the first file no source delivers, naming every source tried and why.
    """
    data_dir, sources = Path(data_dir), default_sources() if sources is None else sources
    fetched: Dict[str, str] = {}
    dead: Dict[str, str] = {}
    for position, name in enumerate(file_names):
        target = data_dir / name
        if target.is_file():
            continue
        tried = []
        for source in sources:
            if source.label() in dead:
                tried.append(f"{source.label()}: {dead[source.label()]}")
                continue
            if name not in source.checksums:
                continue
            try:
                _fetch(source.url(name), target, source.checksums[name], source.sizes_bytes.get(name), max_bytes,
                       timeout_s, deadline_s, progress)
            except _Refused as refused:
                tried.append(f"{source.label()}: {refused}")
                if refused.source_dead:
                    dead[source.label()] = str(refused)
                continue
            fetched[name] = source.name
            if log is not None:
                log(f"downloaded {name} from {source.name}, checksums verified")
            break
        else:
            later = [other for other in file_names[position + 1:] if not (data_dir / other).is_file()]
            raise VggbenchError(offline_message(data_dir, name, later, tried))
    return fetched


def offline_message(data_dir: Path, name: str, later: Sequence[str], tried: Sequence[str]) -> str:
    """One line: the file no source delivered (and how many ``later`` missing ones were not tried),
    each source tried and why, and how to use a copy."""
    also = f" (and {len(later)} more after it)" if later else ""
    where = "; ".join(tried) if tried else "no source lists it"
    return (f"cannot download {name}{also} into {data_dir}: {where}; copy the four Fashion-MNIST .gz files "
            f"into a folder and pass --data-dir DIR or set VGGBENCH_DATA=DIR "
            f"(`vggbench data check DIR` verifies them)")


@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_folder` found for one file."""

    name: str
    ok: bool
    size_bytes: Optional[int]
    detail: str

    def line(self) -> str:
        size = "-" if self.size_bytes is None else f"{self.size_bytes:,} bytes"
        return f"{'ok ' if self.ok else 'BAD'} {self.name}  {size}  {self.detail}"


def file_digests(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Tuple[int, Dict[str, str]]:
    """``(size in bytes, {algorithm: hex digest})`` of one file, read in chunks, refused past ``max_bytes``."""
    hashers, size = _hashers(), 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            size += len(chunk)
            if size > max_bytes:
                raise VggbenchError(f"{path}: larger than {max_bytes} bytes; no Fashion-MNIST file is that big")
            for hasher in hashers.values():
                hasher.update(chunk)
    return size, {name: hasher.hexdigest() for name, hasher in hashers.items()}


def check_file(path: Path, sources: Optional[Sequence[Source]] = None, max_bytes: int = MAX_FILE_BYTES) -> FileCheck:
    """Whether ``path`` is byte-identical to a file some source publishes (matched by name; None:
    :func:`default_sources`)."""
    path, name = Path(path), Path(path).name
    sources = default_sources() if sources is None else sources
    if not path.is_file():
        return FileCheck(name, False, None, "missing" if not path.exists() else "not a regular file")
    size = path.stat().st_size
    if size > max_bytes:
        return FileCheck(name, False, size, f"larger than {max_bytes} bytes; no Fashion-MNIST file is that big")
    size, digests = file_digests(path, max_bytes)
    for source in sources:
        published = source.checksums.get(name)
        expected_size = source.sizes_bytes.get(name)
        if published and (expected_size is None or expected_size == size) and all(
                digests[algorithm] == digest.lower() for algorithm, digest in published.items()):
            shown = ", ".join(f"{algorithm} {digest}" for algorithm, digest in published.items())
            return FileCheck(name, True, size, f"matches {source.name} ({shown})")
    known = [source for source in sources if name in source.checksums]
    if not known:
        return FileCheck(name, False, size, "not a Fashion-MNIST file name")
    sizes = [f"{source.name}'s has {source.sizes_bytes[name]:,} bytes" for source in known
             if name in source.sizes_bytes and source.sizes_bytes[name] != size]
    return FileCheck(name, False, size, f"matches no published checksum (sha256 {digests['sha256']}"
                                        f"{'; ' + ', '.join(sizes) if sizes else ''}); replace it with a fresh copy")


def check_folder(data_dir, file_names: Sequence[str], sources: Optional[Sequence[Source]] = None,
                 max_bytes: int = MAX_FILE_BYTES) -> List[FileCheck]:
    """One :class:`FileCheck` per wanted file in ``data_dir``, in ``file_names`` order.

    Raises a one-line :class:`VggbenchError` when ``data_dir`` is not a folder.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        what = "is a file, not a folder" if data_dir.exists() else "does not exist"
        raise VggbenchError(f"{data_dir} {what}; name the folder holding {', '.join(file_names)}")
    return [check_file(data_dir / name, sources, max_bytes) for name in file_names]
