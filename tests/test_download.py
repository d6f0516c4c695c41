"""Downloading the full set, against a local fake server with a tiny fake archive: nothing here goes online.

A download either ends with a complete cifar-10-batches-py folder or leaves nothing behind: a wrong MD5, an archive
that tries to write outside its folder, a transfer cut short or no server at all each give one clear message.
"""
from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from resnet_demo import cli
from resnet_demo.data import download
from resnet_demo.data.download import EXPECTED_FILES, FOLDER, DownloadError, download_cifar10


def make_archive(extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        folder = tarfile.TarInfo(FOLDER)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name in EXPECTED_FILES:
            payload = f"fake {name}\n".encode() * 1000
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


class Server:
    """Serves `body` at /cifar-10-python.tar.gz; `length` overrides the Content-Length it announces."""

    def __init__(self, body: bytes, length: int | None = None):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(outer.length))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.body, self.length = body, length if length is not None else len(body)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-10-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("RESNET_DEMO_OFFLINE", raising=False)  # conftest switches downloads off for the session


@pytest.fixture
def served(online):
    servers = []

    def serve(body: bytes, length: int | None = None) -> Server:
        servers.append(Server(body, length))
        return servers[-1]

    yield serve
    for s in servers:
        s.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_download_checks_unpacks_and_reports_progress(served, tmp_path):
    body = make_archive()
    server = served(body)
    seen = []
    folder = download_cifar10(tmp_path / "data", lambda done, total: seen.append((done, total)), server.url, md5(body))
    assert folder == tmp_path / "data" / FOLDER
    assert sorted(p.name for p in folder.iterdir()) == sorted(EXPECTED_FILES)
    assert (folder / "test_batch").read_bytes() == b"fake test_batch\n" * 1000
    assert leftovers(tmp_path / "data") == [FOLDER]  # no temporary folder or archive left
    assert seen[0] == (0, len(body)) and seen[-1] == (len(body), len(body))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # Present already: returns at once, without a server.
    assert download_cifar10(tmp_path / "data", url="http://127.0.0.1:9/nothing", md5="0") == folder


def test_a_wrong_md5_leaves_nothing(served, tmp_path):
    server = served(make_archive())
    with pytest.raises(DownloadError, match="damaged.*try again"):
        download_cifar10(tmp_path / "data", url=server.url, md5="0" * 32)
    assert leftovers(tmp_path / "data") == []


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "outside"])
def test_an_archive_that_reaches_outside_its_folder_is_refused(served, tmp_path, kind):
    bad = tarfile.TarInfo({"traversal": f"{FOLDER}/../../evil", "absolute": "/tmp/evil-cifar",
                           "symlink": f"{FOLDER}/link", "outside": "evil"}[kind])
    if kind == "symlink":
        bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        bad.size = 3
    body = make_archive([bad])
    server = served(body)
    with pytest.raises(DownloadError, match="unexpected entry.*refusing it"):
        download_cifar10(tmp_path / "data", url=server.url, md5=md5(body))
    assert leftovers(tmp_path / "data") == [] and leftovers(tmp_path) == ["data"]
    assert not Path("/tmp/evil-cifar").exists()


def test_a_transfer_cut_short_leaves_nothing(served, tmp_path):
    body = make_archive()
    server = served(body[: len(body) // 2], length=len(body))
    with pytest.raises(DownloadError, match="could not download|stopped after"):
        download_cifar10(tmp_path / "data", url=server.url, md5=md5(body))
    assert leftovers(tmp_path / "data") == []


def test_no_network_is_one_clear_message(online, tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused, like a machine with no network
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"could not download .* is this computer online\?"):
        download_cifar10(tmp_path / "data", url=f"http://127.0.0.1:{port}/x.tar.gz", md5="0" * 32)
    assert leftovers(tmp_path / "data") == []


def test_offline_setting_never_connects(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_DEMO_OFFLINE", "1")
    monkeypatch.setattr(download, "urlopen", lambda *a, **k: pytest.fail("connected while offline"))
    with pytest.raises(DownloadError, match="switched off"):
        download_cifar10(tmp_path / "data")


def test_an_incomplete_folder_is_not_overwritten(online, tmp_path):
    (tmp_path / "data" / FOLDER).mkdir(parents=True)
    (tmp_path / "data" / FOLDER / "data_batch_1").write_bytes(b"mine")
    with pytest.raises(DownloadError, match="incomplete; move it away"):
        download_cifar10(tmp_path / "data", url="http://127.0.0.1:9/x", md5="0")
    assert (tmp_path / "data" / FOLDER / "data_batch_1").read_bytes() == b"mine"


def test_cli_download_draws_a_bar_and_says_where(served, tmp_path, monkeypatch, capsys):
    body = make_archive()
    server = served(body)
    monkeypatch.setattr(download, "URL", server.url)
    monkeypatch.setattr(download, "MD5", md5(body))
    assert cli.main(["download", "--data-dir", str(tmp_path / "d")]) == 0
    out, err = capsys.readouterr()
    assert f"CIFAR-10 is in {tmp_path / 'd' / FOLDER}" in out
    assert "100%" in err  # tqdm's bar reached the end


def test_cli_download_offline_says_what_else_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_DEMO_OFFLINE", "1")
    assert cli.main(["download", "--data-dir", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert "copy torchvision's cifar-10-batches-py folder" in err and "built-in subset" in err
    assert "../" not in err
