"""Any image file -> the 32x32 network input, or one clear ImageError; and the predict CLI over many files."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_demo.data.images import ImageError, load_input, open_image

ROOT = Path(__file__).resolve().parent.parent


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def _bomb_png(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A valid PNG signature + IHDR claiming w x h, and a few bytes of data: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path


def _exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40 wide x 20 tall, left half red; EXIF orientation 6 says 'rotate 90 degrees clockwise to view'."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(a), path, format="JPEG", exif=exif.tobytes(), quality=95)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    good = {
        "png": _save(rgb, d / "a.png"),
        "jpeg": _save(rgb, d / "a.jpg", quality=90),
        "jpeg-exif": _exif_rotated_jpeg(d / "rotated.jpg"),
        "webp": _save(rgb, d / "a.webp"),
        "bmp": _save(rgb, d / "a.bmp"),
        "tiff": _save(rgb, d / "a.tiff"),
        "L": _save(rgb.convert("L"), d / "grey.png"),
        "CMYK": _save(rgb.convert("CMYK"), d / "cmyk.jpg"),
        "RGBA": _save(Image.fromarray(rng.integers(0, 256, (30, 30, 4), dtype=np.uint8), "RGBA"), d / "rgba.png"),
        "I;16": _save(Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)), d / "deep.png"),
        "1x1": _save(Image.new("RGB", (1, 1), (10, 200, 30)), d / "dot.png"),
        "wide": _save(Image.new("RGB", (3000, 2), (0, 0, 255)), d / "wide.png"),
        "tall": _save(Image.new("RGB", (1, 900), (255, 255, 0)), d / "tall.png"),
    }
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    pal.paste(0, (0, 0, 8, 16))
    good["P-transparent"] = _save(pal, d / "pal.png", transparency=0)
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    good["gif-animated"] = _save(frames[0], d / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    jpeg_bytes, png_bytes = good["jpeg"].read_bytes(), good["png"].read_bytes()
    (d / "empty.png").write_bytes(b"")
    (d / "cut.jpg").write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    (d / "cut.png").write_bytes(png_bytes[: len(png_bytes) // 2])
    (d / "notes.png").write_text("this is not an image\n")
    (d / "folder.png").mkdir()
    bad = {
        "empty": d / "empty.png", "truncated-jpeg": d / "cut.jpg", "truncated-png": d / "cut.png",
        "text": d / "notes.png", "bomb": _bomb_png(d / "bomb.png"), "directory": d / "folder.png",
        "missing": d / "no-such-file.png",
    }
    return {**{f"good:{k}": v for k, v in good.items()}, **{f"bad:{k}": v for k, v in bad.items()}}


GOOD = ["png", "jpeg", "jpeg-exif", "webp", "bmp", "tiff", "L", "CMYK", "RGBA", "I;16", "1x1", "wide", "tall",
        "P-transparent", "gif-animated"]
BAD = {"empty": "empty", "truncated-jpeg": "damaged or truncated", "truncated-png": "damaged or truncated",
       "text": "not an image", "bomb": "decompression bomb", "directory": "folder", "missing": "no such file"}


@pytest.mark.parametrize("kind", GOOD)
def test_every_format_and_mode_becomes_a_32x32_input(image_files, kind):
    x, small, original = load_input(image_files[f"good:{kind}"])
    assert x.shape == (1, 3, 32, 32) and small.size == (32, 32) and small.mode == "RGB" and original.mode == "RGB"
    assert np.isfinite(x.numpy()).all()


def test_exif_orientation_is_honoured(image_files):
    img = open_image(image_files["good:jpeg-exif"])
    assert img.size == (20, 40)  # rotated to portrait
    a = np.asarray(img).astype(int)
    # 90 degrees clockwise: the stored left (red) half ends up on top
    assert a[5, 10, 0] > 200 and a[5, 10, 2] < 60 and a[35, 10, 2] > 200 and a[35, 10, 0] < 60


def test_animated_gif_gives_its_first_frame(image_files):
    assert np.asarray(open_image(image_files["good:gif-animated"]))[10, 10].tolist() == [255, 0, 0]


def test_transparency_is_composited_on_white(image_files):
    a = np.asarray(open_image(image_files["good:P-transparent"]))
    assert a[8, 2].tolist() == [255, 255, 255] and a[8, 12].tolist() == [0, 255, 0]


def test_16_bit_grey_is_rescaled_not_clipped(image_files):
    a = np.asarray(open_image(image_files["good:I;16"]))
    assert a.min() == 0 and a.max() == 255 and len(np.unique(a)) > 100



def test_a_large_photo_is_reduced_with_its_orientation_and_original_size(tmp_path):
    a = np.zeros((1500, 3000, 3), np.uint8)  # stored landscape, left half red; EXIF 6 turns it to portrait
    a[:, :1500] = (255, 0, 0)
    a[:, 1500:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    img = open_image(_save(Image.fromarray(a), tmp_path / "big.jpg", quality=90, exif=exif.tobytes()))
    assert img.info["original_size"] == (1500, 3000) and max(img.size) <= 1024 and img.height > img.width
    b = np.asarray(img).astype(int)
    assert b[10, img.width // 2, 0] > 200 and b[-10, img.width // 2, 2] > 200  # red on top, as viewed


def test_float_images_with_nan_and_infinity_become_8_bit(tmp_path):
    a = np.linspace(-5, 5, 400, dtype=np.float32).reshape(20, 20)
    a[0, 0], a[0, 1], a[0, 2] = np.nan, np.inf, -np.inf
    img = open_image(_save(Image.fromarray(a, "F"), tmp_path / "f.tiff"))
    b = np.asarray(img)
    assert img.mode == "RGB" and b.min() == 0 and b.max() == 255

@pytest.mark.parametrize("kind", list(BAD))
def test_bad_files_raise_a_clear_image_error(image_files, kind):
    path = image_files[f"bad:{kind}"]
    with pytest.raises(ImageError) as e:
        load_input(path)
    assert BAD[kind] in str(e.value) and str(path) in str(e.value)


def test_bomb_is_refused_without_decoding_and_bytes_work_too(image_files):
    data = image_files["bad:bomb"].read_bytes()
    assert len(data) < 200  # a 900-megapixel claim in a tiny file
    with pytest.raises(ImageError, match="too large"):
        open_image(data, name="upload.png")
    with pytest.raises(ImageError, match="the upload: the file is empty"):
        open_image(b"")


def test_predict_cli_one_json_line_per_file(image_files, tiny_weights_dir, tmp_path, monkeypatch, capsys):
    """The first call is a new process, as a person runs it (exit status 1 when some files failed); the second
    calls cli.main, which `python -m resnet_demo` runs and whose return value is its exit status, in this
    process: the same code without a second interpreter importing torch."""
    good = [str(image_files[f"good:{k}"]) for k in GOOD]
    bad = [str(image_files[f"bad:{k}"]) for k in BAD]
    files = good[:3] + bad + good[3:]
    env = {**os.environ, "RESNET_DEMO_WEIGHTS": str(tiny_weights_dir), "RESNET_DEMO_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", "resnet_demo", "predict", *files, "--model", "resnet8", "--top", "3",
                           "--json"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 1, proc.stderr  # some files failed
    assert "Traceback" not in proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [r["file"] for r in lines] == files
    for r in lines:
        if r["file"] in bad:
            assert set(r) == {"file", "model", "error"} and r["error"] and r["model"] == "resnet8"
        else:
            assert set(r) == {"file", "model", "top"} and len(r["top"]) == 3
            assert all(set(t) == {"label", "prob"} for t in r["top"])
            probs = [t["prob"] for t in r["top"]]
            assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # all good files, by path to the weights file: exit code 0
    from resnet_demo import cli

    monkeypatch.setenv("RESNET_DEMO_WEIGHTS", str(tiny_weights_dir))
    monkeypatch.setenv("RESNET_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.chdir(ROOT)
    code = cli.main(["predict", good[0], "--model", str(tiny_weights_dir / "resnet8.safetensors"), "--top", "1",
                     "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (rec,) = [json.loads(ln) for ln in captured.out.splitlines()]
    assert len(rec["top"]) == 1


# ------------------------------------------------------------------ memory: hostile but small files

MEMORY_PROBE = r"""
import gc, json, sys
from pathlib import Path

from resnet_demo.data.images import ImageError, load_input


def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])


out = {}
for path in sys.argv[1:]:
    data = Path(path).read_bytes()
    gc.collect()
    open("/proc/self/clear_refs", "w").write("5")  # VmHWM := VmRSS, so the peak below is this file's alone
    base = kb("VmRSS")
    try:
        x, small, original = load_input(data, Path(path).name)
        result = {"size": list(original.size), "original_size": list(original.info.get("original_size", original.size))}
    except ImageError as e:
        result = {"error": str(e)}
    x = small = original = None
    gc.collect()
    result.update(peak_mb=(kb("VmHWM") - base) / 1024, after_mb=(kb("VmRSS") - base) / 1024)
    out[Path(path).name] = result
print(json.dumps(out))
"""


def _gradient(w: int, h: int, dtype=np.uint8) -> np.ndarray:
    """A smooth picture that compresses well (the issue's 16-bit PNG was 460 KB), built without big temporaries."""
    top = np.iinfo(dtype).max
    return (np.arange(w, dtype=np.float32)[None, :] * (top / w) / 2
            + np.arange(h, dtype=np.float32)[:, None] * (top / h) / 2).astype(dtype)


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> dict[str, Path]:
    """Small files that decode huge: the issue's 7000x7000 16-bit grey PNG, and the largest of each kind we accept."""
    d = tmp_path_factory.mktemp("hostile")
    grey16 = Image.fromarray(_gradient(7000, 7000, np.uint16))
    files = {"grey16-7000.png": _save(grey16, d / "grey16-7000.png")}
    grey16 = None
    g = _gradient(4000, 4000)
    files["grey16-4000.png"] = _save(Image.fromarray(_gradient(4000, 4000, np.uint16)), d / "grey16-4000.png")
    files["rgb-2800.png"] = _save(Image.merge("RGB", [Image.fromarray(g).resize((2800, 2800))] * 3), d / "rgb-2800.png")
    files["rgb-8000x6000.jpg"] = _save(Image.merge("RGB", [Image.fromarray(g).resize((8000, 6000))] * 3),
                                       d / "rgb-8000x6000.jpg", quality=80)
    files["float-3500.tiff"] = _save(Image.fromarray(_gradient(3500, 2000).astype(np.float32)), d / "float-3500.tiff")
    return files


def test_a_small_file_that_decodes_huge_costs_bounded_memory(hostile_files):
    """Issue 29: a 460 KB 16-bit PNG of 7000x7000 added ~780 MB (a full-size float64 copy). Now every file either
    decodes at a reduced size within MAX_DECODED_BYTES, or is refused before decoding, with a clear message."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident set")
    assert hostile_files["grey16-7000.png"].stat().st_size < 2_000_000  # a small upload
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, *map(str, hostile_files.values())],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for name, r in results.items():
        assert r["peak_mb"] < 100, (name, r)  # the target: an accepted upload adds at most 100 MB
        assert r["after_mb"] < 50, (name, r)
    assert "7000x7000" in results["grey16-7000.png"]["error"] and "megapixels" in results["grey16-7000.png"]["error"]
    for name in ("grey16-4000.png", "rgb-2800.png", "rgb-8000x6000.jpg", "float-3500.tiff"):
        assert "error" not in results[name], (name, results[name])
        assert max(results[name]["size"]) <= 1024, (name, results[name])
    assert results["rgb-8000x6000.jpg"]["original_size"] == [8000, 6000]
