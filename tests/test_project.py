"""The teach project file: a round trip keeps everything (and gives the same bytes), and a bad or hostile file is
refused whole with one clear message (zip bombs, paths, lies in headers, a swapped model)."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from resnet_demo.nets.model import build_model
from resnet_demo.store import project as proj
from resnet_demo.store.project import Project, ProjectError, load_project, project_bytes, read_project, save_project
from resnet_demo.store.weights import model_bytes

NAMES = ("mug", "plant", "Lamp shade")


def sample(n: int = 6, thumbs: bool = True, model: bool = True) -> Project:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = build_model(8, classes=NAMES)
    return Project(NAMES, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 3,
                   rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8) if thumbs else None,
                   model_bytes(net, net.arch) if model else None, {"holdout_accuracy": 0.5, "steps": 3})


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def rezip(files: dict[str, bytes] | list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (files.items() if isinstance(files, dict) else files):
            zf.writestr(name, data)
    return buf.getvalue()


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_round_trip_keeps_everything_and_the_same_project_gives_the_same_bytes(tmp_path):
    p = sample()
    save_project(tmp_path / "k.teach.zip", p)
    q = load_project(tmp_path / "k.teach.zip")
    assert q.classes == NAMES and np.array_equal(q.images, p.images) and np.array_equal(q.labels, p.labels)
    assert np.array_equal(q.thumbnails, p.thumbnails) and q.model == p.model and q.record == p.record
    assert q.load_model().classes == NAMES and q.split().classes == NAMES
    assert project_bytes(q) == (tmp_path / "k.teach.zip").read_bytes()
    bare = read_project(project_bytes(sample(0, thumbs=False, model=False)))  # classes named, nothing added yet
    assert len(bare.images) == 0 and bare.thumbnails is None and bare.load_model() is None


def test_a_project_that_would_not_open_again_is_not_saved(tmp_path):
    other = build_model(8, classes=("a", "b", "c"))
    with pytest.raises(ProjectError, match="other classes"):
        save_project(tmp_path / "x.zip", Project(NAMES, sample().images, sample().labels,
                                                 model=model_bytes(other, other.arch)))
    with pytest.raises(ProjectError, match="'mug' appears twice"):
        project_bytes(Project(("mug", "mug"), np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)))
    with pytest.raises(ProjectError, match="outside 0..2"):
        project_bytes(Project(NAMES, np.zeros((1, 32, 32, 3), np.uint8), np.array([3])))
    assert not (tmp_path / "x.zip").exists()


def _with(change) -> bytes:
    files = members(project_bytes(sample()))
    change(files)
    return rezip(files)


def _manifest(files: dict, **edits) -> None:
    m = json.loads(files["project.json"])
    m.update(edits)
    files["project.json"] = json.dumps(m).encode()


HOSTILE = {
    "not a zip": (lambda: b"PK\x03\x04 certainly not", "not a readable zip"),
    "empty": (lambda: b"", "not a readable zip"),
    "random bytes": (lambda: np.random.default_rng(0).bytes(5000), "not a readable zip"),
    "truncated": (lambda: project_bytes(sample())[:3000], "not a readable zip|damaged"),
    "path traversal": (lambda: _with(lambda f: f.update({"../../etc/evil.sh": b"rm -rf"})), "not part of a project"),
    "absolute path": (lambda: _with(lambda f: f.update({"/tmp/evil": b"x"})), "not part of a project"),
    "a member twice": (lambda: rezip(list(members(project_bytes(sample())).items()) + [("labels.npy", b"x")]),
                       "labels.npy twice"),
    "no manifest": (lambda: _with(lambda f: f.pop("project.json")), "no project.json"),
    "manifest not json": (lambda: _with(lambda f: f.update({"project.json": b"{nope"})), "not JSON"),
    "another format": (lambda: _with(lambda f: _manifest(f, format="something/2")), "not a project file of"),
    "too many images claimed": (lambda: _with(lambda f: _manifest(f, images=10 ** 9)), "at most 5,000"),
    "images disagree with the count": (lambda: _with(lambda f: _manifest(f, images=5)), "not what a project"),
    "labels out of range": (lambda: _with(lambda f: f.update({"labels.npy": npy(np.full(6, 7))})), "outside 0..2"),
    "signed images": (lambda: _with(lambda f: f.update({"images.npy": npy(np.zeros((6, 32, 32, 3), np.int8))})),
                      "not what a project"),
    "float images": (lambda: _with(lambda f: f.update({"images.npy": npy(np.zeros((6, 32, 32, 3)))})),
                     "larger than"),
    "many members": (lambda: rezip({f"m{i}": b"" for i in range(100)}), "100 members"),
    "object array": (lambda: _with(lambda f: f.update({"labels.npy": npy(np.array([None] * 6))})),
                     "not what a project|not a readable array"),
    "header lies about the size": (lambda: _with(lambda f: f.update(
        {"images.npy": f["images.npy"][:-100]})), "truncated or has trailing"),
    "bad class names": (lambda: _with(lambda f: _manifest(f, classes=["mug", "MUG", "x"])), "ignoring case"),
    "a path as a class name": (lambda: _with(lambda f: _manifest(f, classes=["../mug", "b", "c"])),
                               "path separator"),
    "model swapped": (lambda: _with(lambda f: f.update({"model.safetensors": f["model.safetensors"][:-8] + b"\0" * 8})),
                      "sha256"),
    "model missing": (lambda: _with(lambda f: f.pop("model.safetensors")), "listed but missing"),
    "not a model": (lambda: _with(lambda f: (f.update({"model.safetensors": b"hello"}),
                                             _manifest(f, model={"sha256": __import__("hashlib").sha256(
                                                 b"hello").hexdigest(), "bytes": 5}))), "not a safetensors"),
    "record not a table": (lambda: _with(lambda f: _manifest(f, record=[1, 2])), "record of its teach"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("case", HOSTILE)
def test_a_bad_or_hostile_file_is_refused_with_one_message(case):
    make, message = HOSTILE[case]
    with pytest.raises(ProjectError, match=message) as e:
        read_project(make())
    assert "\n" not in str(e.value) and "/tmp/pytest" not in str(e.value)


def test_a_zip_bomb_is_refused_before_it_is_inflated(monkeypatch):
    """A member that claims (or unpacks to) more than a project of its size may hold is never read."""
    bomb = rezip({"project.json": json.dumps({"format": proj.FORMAT, "classes": list(NAMES), "images": 1,
                                              "model": None, "record": None}).encode(),
                  "labels.npy": npy(np.zeros(1, np.int64)), "images.npy": b"\0" * (64 * 2 ** 20)})
    assert len(bomb) < 200_000  # 64 MB of zeros deflate to almost nothing
    reads = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: reads.append(getattr(
        name, "filename", name)) or real_open(self, name, *a, **k))
    with pytest.raises(ProjectError, match="images.npy would unpack to 64 MB"):
        read_project(bomb)
    assert "images.npy" not in reads
    with pytest.raises(ProjectError, match="larger than"):
        read_project(b"\0" * (proj.MAX_FILE_BYTES + 1))


def test_a_file_on_disk_that_is_too_large_or_missing_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ProjectError, match="cannot read the project file nothing.zip"):
        load_project(tmp_path / "nothing.zip")
    monkeypatch.setattr(proj, "MAX_FILE_BYTES", 100)
    (tmp_path / "big.zip").write_bytes(b"\0" * 200)
    with pytest.raises(ProjectError, match="more than the 0 MB allowed"):
        load_project(tmp_path / "big.zip")
