"""Downloads and folder checks against a loopback HTTP server serving the real committed files.

The server (127.0.0.1 only, an ephemeral port) serves the real Fashion-MNIST subset of tests/data
under ``/real/``, the same files with one byte flipped under ``/corrupt/``, and headers followed by
silence under ``/stall/``; a "dead" source is a port nobody listens on. The sources handed to the
downloader carry the subset's recorded sha256 (tests/data/SHA256SUMS), as a mirror publishes its own.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import SUBSET_DATA

from vggbench import VggbenchError, data, download

FILES = data.ALL_FILES


def one_line(message) -> str:
    text = str(message)
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


def _recorded_sha256() -> dict:
    lines = (SUBSET_DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


def _recorded_sizes() -> dict:
    record = json.loads((SUBSET_DATA / "subset.json").read_text())
    return {name: info["bytes"] for name, info in record["outputs"].items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "full" and self.server.full_dir is not None and name in FILES:
            body = (self.server.full_dir / name).read_bytes()
        else:
            body = self.server.files.get(name)
        if body is None or kind not in ("real", "corrupt", "stall", "unsized", "full"):
            self.send_error(404)
            return
        if kind == "corrupt":
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
        self.send_response(200)
        if kind != "unsized":  # unsized: no Content-Length, the body ends when the connection closes
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if kind == "stall":
            self.server.release.wait(10)
            return
        try:
            self.wfile.write(bytes(body))
        except (BrokenPipeError, ConnectionResetError):  # the client refused it mid-way
            pass

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.files = {name: (SUBSET_DATA / name).read_bytes() for name in FILES}
    httpd.requests = []
    httpd.release = threading.Event()
    httpd.full_dir = None  # set by a full_data test to serve the published files under /full/
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def _dead_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/files"


def _source(name: str, url: str) -> download.Source:
    return download.Source(name, url, {n: {"sha256": d} for n, d in _recorded_sha256().items()}, _recorded_sizes())


def _sources(server, *kinds):
    base = f"http://127.0.0.1:{server.server_address[1]}"
    return [_source(kind, _dead_url() if kind == "dead" else f"{base}/{kind}") for kind in kinds]


def _no_leftovers(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name not in FILES)


def test_the_first_source_with_verified_files_wins_and_later_mirrors_are_not_asked(server, tmp_path):
    server.requests.clear()
    said = []
    fetched = download.download_files(tmp_path / "new", FILES, _sources(server, "real", "corrupt", "dead"),
                                      progress=False, log=said.append)
    assert fetched == {name: "real" for name in FILES}
    assert server.requests == [f"/real/{name}" for name in FILES]
    for name in FILES:
        assert (tmp_path / "new" / name).read_bytes() == (SUBSET_DATA / name).read_bytes()
    assert _no_leftovers(tmp_path / "new") == [] and len(said) == len(FILES)
    # What came down is the real subset: it loads with its documented first labels.
    _, labels = data.load_fashion_mnist(str(tmp_path / "new"), train=False)
    assert labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]


def test_a_dead_source_and_a_corrupted_copy_fall_through_to_the_next_mirror(server, tmp_path):
    server.requests.clear()
    fetched = download.download_files(tmp_path, FILES, _sources(server, "dead", "corrupt", "real"), progress=False)
    assert fetched == {name: "real" for name in FILES}
    # Every file was refused from the corrupted copy (checksum) before the real mirror delivered it.
    assert server.requests == [path for name in FILES for path in (f"/corrupt/{name}", f"/real/{name}")]
    assert all((tmp_path / name).read_bytes() == (SUBSET_DATA / name).read_bytes() for name in FILES)
    assert _no_leftovers(tmp_path) == []


def test_with_no_good_source_one_line_names_every_source_and_how_to_use_a_copy(server, tmp_path):
    sources = _sources(server, "dead", "corrupt")
    with pytest.raises(VggbenchError) as caught:
        download.download_files(tmp_path, FILES, sources, progress=False)
    message = one_line(caught.value)
    assert f"cannot download {FILES[0]} (and 3 more after it)" in message
    assert all(source.base_url in message for source in sources)
    assert "Connection refused" in message and "sha256" in message and "is not the published" in message
    assert "--data-dir" in message and "VGGBENCH_DATA" in message
    assert list(tmp_path.iterdir()) == []  # no partial or unverified file left behind


def test_files_already_there_are_not_downloaded_again(server, tmp_path):
    shutil.copy(SUBSET_DATA / FILES[0], tmp_path / FILES[0])
    server.requests.clear()
    fetched = download.download_files(tmp_path, FILES, _sources(server, "real"), progress=False)
    assert sorted(fetched) == sorted(FILES[1:]) and server.requests == [f"/real/{name}" for name in FILES[1:]]


@pytest.mark.parametrize("kind, fragment", [("real", "announces 867002 bytes, more than the 1000 bytes accepted"),
                                             ("unsized", "sent more than the 1000 bytes accepted")])
def test_an_oversized_file_is_refused_and_nothing_is_written(server, tmp_path, kind, fragment):
    with pytest.raises(VggbenchError, match=fragment):
        download.download_files(tmp_path, FILES, _sources(server, kind), max_bytes=1000, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_stalled_source_times_out_and_the_next_one_serves(server, tmp_path):
    started = time.monotonic()
    fetched = download.download_files(tmp_path, FILES[:1], _sources(server, "stall", "real"), timeout_s=0.5,
                                      progress=False)
    assert fetched == {FILES[0]: "real"} and time.monotonic() - started < 8
    with pytest.raises(VggbenchError, match="timed out"):
        download.download_files(tmp_path / "b", FILES[:1], _sources(server, "stall"), timeout_s=0.5, progress=False)


def test_check_folder_says_one_line_per_file_and_finds_a_flipped_byte(tmp_path):
    sources = [_source("subset", "http://unused.invalid")]
    good = download.check_folder(SUBSET_DATA, FILES, sources)
    assert [check.ok for check in good] == [True] * 4
    assert all(check.line().startswith(f"ok  {check.name}") and "matches subset" in check.line() for check in good)
    shutil.copytree(SUBSET_DATA, tmp_path / "copy")
    target = tmp_path / "copy" / FILES[2]
    raw = bytearray(target.read_bytes())
    raw[100] ^= 1
    target.write_bytes(bytes(raw))
    (tmp_path / "copy" / FILES[3]).unlink()
    checks = download.check_folder(tmp_path / "copy", FILES, sources)
    assert [check.ok for check in checks] == [True, True, False, False]
    assert "matches no published checksum" in checks[2].line() and checks[3].line().endswith("missing")
    # The committed subset is not the published data set: the default sources say so.
    assert not any(check.ok for check in download.check_folder(SUBSET_DATA, FILES))
    with pytest.raises(VggbenchError, match="does not exist"):
        download.check_folder(tmp_path / "nowhere", FILES)


def test_ensure_data_creates_the_default_cache_dir_and_fills_it(server, tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cache = tmp_path / "cache" / "vggbench" / "fashion-mnist"
    assert data.ensure_data(None, sources=_sources(server, "dead", "real"), progress=False) == cache
    assert all((cache / name).read_bytes() == (SUBSET_DATA / name).read_bytes() for name in FILES)
    images, labels = data.load_fashion_mnist(None, train=True)
    assert images.shape == (2000, 28, 28) and labels[:3].tolist() == [9, 0, 0]


def test_the_published_checksums_match_the_full_set(full_data):
    """The built-in tables (Zalando's md5 + sha256 + size) accept the real files and name Zalando."""
    checks = download.check_folder(full_data, FILES)
    assert [check.ok for check in checks] == [True] * 4, [check.line() for check in checks]
    assert all("matches Zalando (publisher) (md5 " in check.line() for check in checks)
    assert [check.size_bytes for check in checks] == [download.ORIGINAL_SIZES[name] for name in FILES]


def test_cli_data_download_from_a_mirror_then_check(server, full_data, tmp_path, capsys):
    """`vggbench data download --mirror URL` fetches the published files from a loopback mirror of
    the originals (verified against Zalando's checksums) and `data check` passes the folder."""
    from vggbench.cli import main

    server.full_dir = full_data
    target = tmp_path / "fresh"
    url = f"http://127.0.0.1:{server.server_address[1]}/full"
    try:
        assert main(["data", "download", "--dir", str(target), "--mirror", url, "--no-progress"]) == 0
    finally:
        server.full_dir = None
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == str(target) and [line.split()[:2] for line in lines[1:]] == [["ok", name] for name in FILES]
    assert main(["data", "check", str(target)]) == 0
    assert "all 4 files in" in capsys.readouterr().err
    (target / FILES[3]).write_bytes((target / FILES[3]).read_bytes()[:-1])
    assert main(["data", "check", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out.strip().splitlines()[-1].startswith(f"BAD {FILES[3]}  5,147 bytes  matches no published checksum")
    assert one_line(err) and "1 of the 4 Fashion-MNIST files" in err


def test_cli_data_check_exits_1_on_the_subset_and_on_a_missing_folder(tmp_path, capsys):
    from vggbench.cli import main

    assert main(["data", "check", str(SUBSET_DATA)]) == 1
    out, err = capsys.readouterr()
    assert [line.split()[:2] for line in out.strip().splitlines()[1:]] == [["BAD", name] for name in FILES]
    assert "4 of the 4 Fashion-MNIST files" in one_line(err)
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in one_line(capsys.readouterr().err)
