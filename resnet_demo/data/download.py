"""Download the full CIFAR-10 (the python version torchvision reads) with a progress callback.

Atomic: the archive is fetched and unpacked inside a hidden temporary folder beside the destination, checked
against torchvision's published MD5, and only then renamed into place as `cifar-10-batches-py`; a failed or
interrupted download leaves nothing behind. The archive is unpacked member by member, refusing anything but
plain files inside `cifar-10-batches-py/` (no absolute paths, no `..`, no links).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.error import URLError
from urllib.request import urlopen

from resnet_demo.data.cifar import ENV_DATA, Cifar10, DataError, candidate_dirs, find_cifar10, how_to_get, load_cifar10, \
    offline, read_torchvision

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # torchvision.datasets.CIFAR10.tgz_md5
FOLDER = "cifar-10-batches-py"
EXPECTED_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
MAX_UNPACKED_BYTES = 400_000_000  # the real archive unpacks to 186 MB; refuse a decompression bomb
CHUNK = 1 << 20
TIMEOUT_S = 30

Progress = Callable[[int, "int | None"], None]  # (bytes so far, total bytes or None when the server does not say)


class DownloadError(DataError):
    """The download could not be made or checked; nothing was left behind."""


def complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in EXPECTED_FILES)


def offline_help(dest: str | os.PathLike) -> str:
    """What to do when the download cannot be made, for the CLI and the Train page."""
    return (f"Without internet, copy torchvision's cifar-10-batches-py folder (unpacked from cifar-10-python.tar.gz) "
            f"into {dest}, or set {ENV_DATA} to a folder that holds it; until then the classroom preset trains on "
            f"the built-in subset.")


def download_cifar10(dest: str | os.PathLike, progress: Progress | None = None, url: str | None = None,
                     md5: str | None = None) -> Path:
    """Fetch, check and unpack CIFAR-10 into dest/cifar-10-batches-py; returns that folder (at once if present)."""
    url, md5 = url or URL, md5 or MD5
    dest = Path(dest)
    final = dest / FOLDER
    if complete(final):
        return final
    if final.exists():
        raise DownloadError(f"{final} exists but is incomplete; move it away and download again.")
    if offline():
        raise DownloadError("downloads are switched off here (RESNET_DEMO_OFFLINE=1).")
    try:
        dest.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".cifar10-download-", dir=dest))
    except OSError as e:
        raise DownloadError(f"cannot write to {dest}: {e}.") from e
    try:
        archive = tmp / "cifar-10-python.tar.gz"
        digest = _fetch(url, archive, progress)
        if digest != md5:
            raise DownloadError(f"the downloaded archive is damaged (MD5 {digest}, expected {md5}); try again.")
        _unpack(archive, tmp / "unpacked")
        if not complete(tmp / "unpacked" / FOLDER):
            raise DownloadError(f"the archive does not hold {FOLDER}/ with {', '.join(EXPECTED_FILES)}.")
        os.replace(tmp / "unpacked" / FOLDER, final)
    except OSError as e:  # a full disk, a permission: say so, and leave nothing half-written
        raise DownloadError(f"could not save CIFAR-10 into {dest}: {e}.") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_or_download(data_dir: str | os.PathLike | None = None, download: bool | None = None) -> Cifar10:
    """The full set; when it is nowhere to be found, downloaded into the first candidate folder (unless offline or
    `download` is False)."""
    if download is None:
        download = not offline()
    if find_cifar10(data_dir) is not None or not download:
        return load_cifar10(data_dir)
    root = candidate_dirs(data_dir)[0]
    print(f"The full CIFAR-10 was not found; downloading it into {root} ...", file=sys.stderr, flush=True)
    try:
        return read_torchvision(download_cifar10(root, progress_lines()).parent)
    except DataError as e:
        raise DataError(f"{how_to_get(data_dir)} The download failed: {e}") from None


def progress_lines() -> Progress:
    """A callback that prints a plain line every 10 %, for logs (the CLI's `download` draws a tqdm bar instead)."""
    last = [-1]

    def show(done: int, total: int | None) -> None:
        if total and 10 * done // total != last[0]:
            last[0] = 10 * done // total
            print(f"  {done / 1e6:.0f} of {total / 1e6:.0f} MB", file=sys.stderr, flush=True)

    return show


def _fetch(url: str, path: Path, progress: Progress | None) -> str:
    """Stream url into path; returns the MD5 of what arrived."""
    h = hashlib.md5()
    try:
        with urlopen(url, timeout=TIMEOUT_S) as response, open(path, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            if progress:
                progress(0, total)
            while chunk := response.read(CHUNK):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    except (URLError, http.client.HTTPException, OSError) as e:  # no network, DNS, proxy, a dropped line, a full disk
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"could not download {url} ({reason}); is this computer online?") from e
    if total is not None and done != total:
        raise DownloadError(f"the download stopped after {done:,} of {total:,} bytes; try again.")
    return h.hexdigest()


def _unpack(archive: Path, into: Path) -> None:
    """Extract only regular files under FOLDER/, by hand: no member can land outside `into`."""
    into.mkdir()
    written = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if member.isdir() and parts == (FOLDER,):
                    continue
                if (not member.isfile() or len(parts) != 2 or parts[0] != FOLDER
                        or parts[1] in ("", ".", "..") or member.name.startswith("/")):
                    raise DownloadError(f"the archive holds an unexpected entry {member.name!r}; refusing it.")
                written += member.size
                if written > MAX_UNPACKED_BYTES:
                    raise DownloadError("the archive unpacks to far more than CIFAR-10 does; refusing it.")
                (into / FOLDER).mkdir(exist_ok=True)
                with tar.extractfile(member) as src, open(into / FOLDER / parts[1], "xb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"the downloaded archive could not be unpacked ({e}); try again.") from e
