"""Files that are never half-written: temp file in the same folder, fsync, os.replace."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

from resnet_demo.base import faults

# The folder that holds the package: its weights/ has the shipped models and the built-in data.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_WEIGHTS = PROJECT_ROOT / "weights"

_UMASK = os.umask(0)
os.umask(_UMASK)


TEMP_SUFFIX = ".tmp"  # an atomic write's file before it takes its name: `.<name>.<random>.tmp`


class StorageError(OSError):
    """A save failed (disk full, read-only folder); the previous file at that path is untouched."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved file gets the usual permissions
        faults.point(f"write/{path.name}")
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        why = "the disk is full" if e.errno == errno.ENOSPC else str(e)
        raise StorageError(e.errno, f"could not save {path}: {why}; the previous file there is unchanged") from e


def remove_temp_files(folder: str | os.PathLike) -> int:
    """Remove the temporary files that writes killed before their `os.replace` left in `folder` (a kill -9, a
    power cut); returns how many. Call it only where no write into `folder` can be under way."""
    removed = 0
    try:
        leftovers = [p for p in Path(folder).iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return 0
    for p in leftovers:
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
