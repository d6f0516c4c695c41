"""A teach project as one file: the class names, the images (32x32, and a thumbnail each) and the taught model,
so a page can save its work and open it again, and the command line can read it.

The file is a zip that holds exactly these members, nothing else:
  project.json       {"format", "classes", "images", "thumb_side", "model": {"sha256", "bytes"} or null,
                      "record": the teach's record (metrics) or null}
  images.npy         (N, 32, 32, 3) uint8, RGB
  labels.npy         (N,) integers, indices into "classes"
  thumbnails.npy     (N, T, T, 3) uint8, when the project keeps thumbnails
  model.safetensors  the taught network (store/weights.py's format), when there is one
It is written deterministically (fixed member order and timestamps) and atomically. Reading trusts nothing: a
file over MAX_FILE_BYTES, a member that is not one of the above (a path such as "../x" included: nothing is ever
extracted to disk), a member twice, an encrypted one, a member whose declared size is over its cap (a zip bomb is
refused before it is inflated), an array whose header disagrees with its size, dtype or the counts, names that
cannot be class names, labels out of range, a model whose sha256 differs from the one recorded or that does not
fit its classes: each is a ProjectError with one sentence saying which.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resnet_demo.base.storage import atomic_write_bytes, sha256_bytes
from resnet_demo.data.cifar import Split
from resnet_demo.nets.classes import ClassNameError, check_names, shown
from resnet_demo.nets.model import CifarResNet
from resnet_demo.store.weights import WeightsError, load_model_bytes

FORMAT = "resnet-demo-teach/1"
SUFFIX = ".teach.zip"
MAX_IMAGES = 5000
MAX_THUMB_SIDE = 128
MAX_MODEL_BYTES = 32 * 2**20  # a ResNet-110 in fp32 is 7 MB
MAX_MANIFEST_BYTES = 2**20
MAX_FILE_BYTES = 160 * 2**20
MEMBERS = ("project.json", "images.npy", "labels.npy", "thumbnails.npy", "model.safetensors")
_DATE = (1980, 1, 1, 0, 0, 0)


class ProjectError(ValueError):
    """A project file that cannot be read or written; the message says what is wrong, never a server path."""


@dataclass
class Project:
    """Classes, images and (once taught) the model. `model`: a model file's bytes (weights.model_bytes), knowing
    `classes`; `record`: what the teach reported (TeachResult.record), plain JSON."""

    classes: tuple[str, ...]
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    thumbnails: np.ndarray | None = None  # (N, T, T, 3) uint8
    model: bytes | None = None
    record: dict | None = None

    def split(self) -> Split:
        return Split(self.images, self.labels, self.classes)

    def load_model(self) -> CifarResNet | None:
        """The taught network (eval mode, CPU), or None before any teach."""
        return None if self.model is None else _load_model(self.model, self.classes)

    def validate(self) -> Project:
        """The project itself with its classes checked and its labels as int64, or a ProjectError."""
        try:
            self.classes = check_names(self.classes)
        except ClassNameError as e:
            raise ProjectError(f"the project's classes: {e}") from None
        n = len(self.images)
        _expect(self.images, (n, 32, 32, 3), "images")
        if n > MAX_IMAGES:
            raise ProjectError(f"{n:,} images is more than the {MAX_IMAGES:,} a project may hold")
        labels = np.asarray(self.labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iu":
            raise ProjectError(f"the project has {n} images but its labels are {labels.dtype} {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise ProjectError(f"a label is outside 0..{len(self.classes) - 1}, the project's classes")
        self.labels = labels.astype(np.int64)
        if self.thumbnails is not None:
            side = self.thumbnails.shape[1] if self.thumbnails.ndim == 4 else 0
            if not 8 <= side <= MAX_THUMB_SIDE:
                raise ProjectError(f"thumbnails must be 8 to {MAX_THUMB_SIDE} pixels a side")
            _expect(self.thumbnails, (n, side, side, 3), "thumbnails")
        if self.model is not None and len(self.model) > MAX_MODEL_BYTES:
            raise ProjectError(f"the model is larger than {MAX_MODEL_BYTES // 2**20} MB")
        return self


def _expect(a: np.ndarray, shape: tuple, what: str) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.shape != shape:
        got = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
        raise ProjectError(f"the project's {what} should be uint8 {shape}, not {got}")


def _load_model(data: bytes, classes: tuple[str, ...]) -> CifarResNet:
    try:
        model, meta = load_model_bytes(data, "the project's model")
    except WeightsError as e:
        raise ProjectError(str(e)) from None
    if tuple(meta["classes"]) != classes:
        raise ProjectError("the project's model knows other classes than the project names")
    return model


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def project_bytes(project: Project) -> bytes:
    """The project as a zip's bytes; the same project gives the same bytes."""
    project.validate()
    if project.model is not None:
        _load_model(project.model, project.classes)  # never save a model that would not open again
    manifest = {"format": FORMAT, "classes": list(project.classes), "images": len(project.images),
                "thumb_side": None if project.thumbnails is None else int(project.thumbnails.shape[1]),
                "model": None if project.model is None else {"sha256": sha256_bytes(project.model),
                                                             "bytes": len(project.model)},
                "record": project.record}
    try:
        members = {"project.json": json.dumps(manifest, sort_keys=True, allow_nan=False).encode()}
    except (TypeError, ValueError) as e:
        raise ProjectError(f"the project's record is not plain JSON: {e}") from None
    members["images.npy"] = _npy(project.images)
    members["labels.npy"] = _npy(project.labels.astype(np.int64))
    if project.thumbnails is not None:
        members["thumbnails.npy"] = _npy(project.thumbnails)
    if project.model is not None:
        members["model.safetensors"] = project.model
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def save_project(path: str | os.PathLike, project: Project) -> None:
    """Write the project file atomically: the previous file at `path` stays whole until the new one is."""
    atomic_write_bytes(path, project_bytes(project))


def load_project(path: str | os.PathLike) -> Project:
    """read_project of a file on disk."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ProjectError(f"the project file is {size / 2**20:.0f} MB, more than the "
                               f"{MAX_FILE_BYTES // 2**20} MB allowed")
        data = path.read_bytes()
    except OSError as e:
        raise ProjectError(f"cannot read the project file {path.name}: {e.strerror or e}") from None
    return read_project(data)


def _caps(manifest_images: int | None = None) -> dict[str, int]:
    n = MAX_IMAGES if manifest_images is None else manifest_images
    npy = 4096  # room for an .npy header
    return {"project.json": MAX_MANIFEST_BYTES, "images.npy": n * 32 * 32 * 3 + npy, "labels.npy": n * 8 + npy,
            "thumbnails.npy": n * MAX_THUMB_SIDE ** 2 * 3 + npy, "model.safetensors": MAX_MODEL_BYTES}


def _members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's members by name, after refusing anything a project file does not hold."""
    infos = zf.infolist()
    if len(infos) > 4 * len(MEMBERS):
        raise ProjectError(f"the file holds {len(infos):,} members; a project file holds at most {len(MEMBERS)}")
    found: dict[str, zipfile.ZipInfo] = {}
    caps = _caps()
    for info in infos:
        if info.filename not in MEMBERS:
            raise ProjectError(f"the file holds {shown(info.filename, 60)}, which is not part of a project file")
        if info.filename in found:
            raise ProjectError(f"the file holds {info.filename} twice")
        if info.flag_bits & 0x1:
            raise ProjectError(f"{info.filename} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ProjectError(f"{info.filename} is compressed in a way a project file never is")
        if info.file_size > caps[info.filename]:
            raise ProjectError(f"{info.filename} would unpack to {info.file_size / 2**20:.0f} MB, more than a "
                               f"project may hold")
        found[info.filename] = info
    for required in ("project.json", "images.npy", "labels.npy"):
        if required not in found:
            raise ProjectError(f"the file has no {required}: it is not a project file, or it is damaged")
    return found


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    if info.file_size > cap:
        raise ProjectError(f"{info.filename} is larger than the {cap:,} bytes this project allows it")
    with zf.open(info) as f:
        data = f.read(cap + 1)  # zipfile stops at the declared size and checks the CRC there
    if len(data) > cap:
        raise ProjectError(f"{info.filename} is larger than it says")
    return data


def _read_npy(data: bytes, name: str, kinds: str, shape: tuple) -> np.ndarray:
    """An .npy member, its header checked before any memory is set aside for it: the dtype's kind in `kinds`, the
    given shape (None entries: any size), and exactly as many bytes as the header claims."""
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        got_shape, fortran, dtype = read_header(f)
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise ProjectError(f"{name} is not a readable array: {e}") from None
    ok_shape = len(got_shape) == len(shape) and all(s is None or s == g for s, g in zip(shape, got_shape, strict=True))
    if dtype.kind not in kinds or dtype.hasobject or fortran or not ok_shape or dtype.itemsize > 8:
        raise ProjectError(f"{name} holds {dtype} {got_shape}, not what a project file holds there")
    need = int(np.prod(got_shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - f.tell() != need:
        raise ProjectError(f"{name} is truncated or has trailing bytes")
    return np.frombuffer(data, dtype=dtype, offset=f.tell()).reshape(got_shape).copy()


def read_project(data: bytes) -> Project:
    """A project from a file's bytes (an upload), everything checked; ProjectError when it is not a sound one."""
    if len(data) > MAX_FILE_BYTES:
        raise ProjectError(f"the project file is larger than {MAX_FILE_BYTES // 2**20} MB")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = _members(zf)
            manifest = _manifest(_read(zf, members["project.json"], MAX_MANIFEST_BYTES))
            caps = _caps(manifest["images"])
            raw = {name: _read(zf, info, caps[name]) for name, info in members.items() if name != "project.json"}
    except zipfile.BadZipFile as e:
        raise ProjectError(f"not a project file (not a readable zip: {e})") from None
    except (zipfile.LargeZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as e:
        raise ProjectError(f"the project file is damaged: {e}") from None
    return _assemble(manifest, raw)


def _manifest(data: bytes) -> dict:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProjectError("project.json is not JSON: the file is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ProjectError(f"not a project file of this version (expected format {FORMAT})")
    n = manifest.get("images")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_IMAGES:
        raise ProjectError(f"the project says it holds {shown(n)} images; at most {MAX_IMAGES:,} are allowed")
    model = manifest.get("model")
    if model is not None and (not isinstance(model, dict) or not isinstance(model.get("sha256"), str)):
        raise ProjectError("the project's record of its model is damaged")
    if manifest.get("record") is not None and not isinstance(manifest["record"], dict):
        raise ProjectError("the project's record of its teach is damaged")
    return manifest


def _assemble(manifest: dict, raw: dict[str, bytes]) -> Project:
    n, side = manifest["images"], manifest.get("thumb_side")
    images = _read_npy(raw["images.npy"], "images.npy", "u", (n, 32, 32, 3))
    labels = _read_npy(raw["labels.npy"], "labels.npy", "iu", (n,))
    thumbs = None
    if "thumbnails.npy" in raw:
        if not isinstance(side, int) or isinstance(side, bool):
            raise ProjectError("the project has thumbnails but does not say their size")
        thumbs = _read_npy(raw["thumbnails.npy"], "thumbnails.npy", "u", (n, side, side, 3))
    model = raw.get("model.safetensors")
    if (model is None) != (manifest.get("model") is None):
        raise ProjectError("the project's model is listed but missing, or present but not listed")
    if model is not None and sha256_bytes(model) != manifest["model"]["sha256"]:
        raise ProjectError("the project's model does not match its recorded sha256: the file is damaged or was "
                           "changed")
    if not isinstance(manifest.get("classes"), list):
        raise ProjectError("the project does not list its classes")
    project = Project(tuple(manifest["classes"]), images, labels, thumbs, model, manifest.get("record")).validate()
    if model is not None:
        _load_model(model, project.classes)
    return project
