"""Any image a person brings -> the 32x32 tensor the network sees, or an ImageError that says what is wrong.

Accepts whatever Pillow reads (PNG, JPEG with EXIF orientation, WebP, GIF first frame, BMP, TIFF, ...) in any
mode (L, P, RGBA, CMYK, 16-bit, 32-bit, float); refuses empty, truncated and non-image files and decompression
bombs before decoding them.

Memory is bounded per image, because a classroom server decodes thirty students' uploads at once: a JPEG is
decoded at a reduced scale (libjpeg's DCT scaling), any other format is refused when its decoded pixels would
take more than MAX_DECODED_BYTES, and every image is box-reduced to at most WORK_SIDE pixels a side right after
decoding. Bit-depth and colour conversions happen on that small copy (or band by band), never on the full image.
"""
from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from resnet_demo.data.loader import normalize
from resnet_demo.nets.paper import IMAGE_SIZE

MAX_PIXELS = 50_000_000  # what a header may claim; a 1-gigapixel "bomb" is refused before decoding
MAX_DECODED_BYTES = 32 * 2**20  # one decoded image in memory: an 8-megapixel colour PNG, a 16-megapixel 16-bit one
MAX_BYTES = 50 * 1024 * 1024  # a file read from disk (the command line); the app's uploads are capped lower
WORK_SIDE = 1024  # the longer side of the decoded image once reduced: the 32x32 input and the preview come from it
THUMB_SIDE = 64  # a thumbnail kept beside a taught image, for a person to see what was taught
BAND_PIXELS = 2**21  # pixels converted at a time when a mode must change before it can be reduced

# Modes whose channels can be averaged as they are (Pillow's own reduce() premultiplies RGBA and LA into a second
# full-size copy first, so those are premultiplied here band by band); the others are converted step by step.
_AVERAGEABLE = {"L", "La", "RGB", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "I", "F"}
_CONVERSIONS = {"1": ("L",), "LA": ("La",), "RGBA": ("RGBa",)}  # any other mode: through RGBA to RGBa
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                   7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}
_DECODE_COPIES = {"WEBP": 4}  # libwebp decodes into its own buffer, which Pillow copies twice more


class ImageError(ValueError):
    """A file we cannot turn into an image; the message is meant for the person who supplied it."""


def _bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel once decoded (three-channel modes take four bytes)."""
    return 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4


def _kind(mode: str) -> str:
    if mode.startswith("I;16"):
        return "16-bit grey"
    return {"1": "black-and-white", "L": "grey", "P": "palette", "I": "32-bit grey", "F": "floating-point grey"}.get(
        mode, "colour")


def _conversions(mode: str) -> tuple[str, ...]:
    if mode in _AVERAGEABLE:
        return ()
    return ("I",) if mode.startswith("I;16") else _CONVERSIONS.get(mode, ("RGBA", "RGBa"))


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """A new image, box-averaged by an integer factor. A mode that cannot be averaged as it is gets converted band
    by band, so no second full-size copy is ever made."""
    steps = _conversions(img.mode)
    if not steps:
        return img.reduce(factor) if factor > 1 else img.copy()
    out = Image.new(steps[-1], (-(-img.width // factor), -(-img.height // factor)))
    rows = factor * max(1, BAND_PIXELS // (img.width * factor))
    for top in range(0, img.height, rows):
        band = img.crop((0, top, img.width, min(top + rows, img.height)))
        for mode in steps:
            band = band.convert(mode)
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _to_8bit_rgb(img: Image.Image) -> Image.Image:
    """A small (already reduced) image of any mode -> 8-bit RGB. Deep grey is stretched to 0..255, not clipped."""
    if img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float32)
        finite = a[np.isfinite(a)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
        a = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
        img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "La":
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa"):  # transparency: composite on white, as a viewer shows it
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def _decode_reduced(img: Image.Image, label: str) -> Image.Image:
    """Decode the first frame at a bounded size: the result is at most WORK_SIDE on its longer side, 8-bit RGB,
    EXIF orientation applied, and info["original_size"] holds the size as the photo is viewed."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"{label}: {w}x{h} pixels is too large (over {MAX_PIXELS // 1_000_000} megapixels); "
                         f"it may be a decompression bomb")
    img.seek(0)  # animated GIF/WebP: the first frame
    long_side = max(w, h)
    if long_side > WORK_SIDE:  # JPEG: let libjpeg decode at 1/2, 1/4 or 1/8 scale; other formats ignore this
        img.draft(None, (max(1, w * WORK_SIDE // long_side), max(1, h * WORK_SIDE // long_side)))
    bpp = _bytes_per_pixel(img.mode) * _DECODE_COPIES.get(img.format, 1)
    need = img.width * img.height * bpp
    if need > MAX_DECODED_BYTES:
        raise ImageError(f"{label}: a {w}x{h} {_kind(img.mode)} image needs {need / 2**20:.0f} MB of memory to "
                         f"decode, more than the {MAX_DECODED_BYTES / 2**20:.0f} MB allowed per image. Send a smaller "
                         f"copy (up to {MAX_DECODED_BYTES / bpp / 1e6:.0f} megapixels for this kind), or a JPEG")
    img.load()
    orientation = img.getexif().get(0x0112, 1)  # after load(): a PNG's getexif() would decode it unchecked
    small = _reduce(img, math.ceil(max(img.size) / WORK_SIDE))
    img.close()  # the full-size pixels go now, not when the caller's `with` ends
    if orientation in _EXIF_TRANSPOSE:
        small = small.transpose(_EXIF_TRANSPOSE[orientation])
        if orientation >= 5:
            w, h = h, w
    small = _to_8bit_rgb(small)
    small.info["original_size"] = (w, h)
    return small


def open_image(source: bytes | str | os.PathLike, name: str | None = None) -> Image.Image:
    """Decode to an 8-bit RGB image, at most WORK_SIDE pixels a side, with EXIF orientation applied; the size of
    the original (as viewed) is in .info["original_size"]. Raises ImageError with a clear reason."""
    label = name or (os.fspath(source) if not isinstance(source, (bytes, bytearray)) else "the upload")
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        try:
            if os.path.getsize(source) > MAX_BYTES:
                raise ImageError(f"{label}: the file is larger than {MAX_BYTES // 2**20} MB")
            with open(source, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a folder, not an image file") from None
        except OSError as e:
            raise ImageError(f"{label}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{label}: the file is empty")
    if len(data) > MAX_BYTES:
        raise ImageError(f"{label}: the file is larger than {MAX_BYTES // 2**20} MB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                return _decode_reduced(img, label)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label}: the image is too large (a possible decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
        except MemoryError:
            raise ImageError(f"{label}: there is not enough free memory to decode this image now; "
                             f"try again, or send a smaller copy") from None
        except (OSError, SyntaxError, ValueError, EOFError):
            raise ImageError(f"{label}: the image is damaged or truncated") from None  # no decoder text for students


def to_network_size(img: Image.Image) -> Image.Image:
    """Centre square crop, then an antialiased resize to 32x32: what the network actually sees."""
    square = ImageOps.fit(img, (min(img.size),) * 2, method=Image.Resampling.BICUBIC)
    return square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_tensor(small: Image.Image | np.ndarray) -> torch.Tensor:
    """A 32x32 RGB image (PIL or HWC uint8) -> normalised (1, 3, 32, 32) float tensor."""
    a = np.asarray(small, dtype=np.uint8)
    return normalize(torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0))


def thumbnail(img: Image.Image, side: int = THUMB_SIDE) -> np.ndarray:
    """The centre square of a decoded image at side x side pixels, as HWC uint8: larger than the 32x32 the network
    sees, small enough to keep hundreds of."""
    square = ImageOps.fit(img, (min(img.size),) * 2, method=Image.Resampling.BICUBIC)
    return np.asarray(square.resize((side, side), Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.uint8)


def load_small(source: bytes | str | os.PathLike, name: str | None = None,
               thumb_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(the 32x32 image as HWC uint8, its thumbnail or None): what teaching keeps of an image. ImageError when
    the file is not an image."""
    img = open_image(source, name)
    try:
        return np.asarray(to_network_size(img), dtype=np.uint8), thumbnail(img, thumb_side) if thumb_side else None
    finally:
        img.close()


def load_input(source: bytes | str | os.PathLike,
               name: str | None = None) -> tuple[torch.Tensor, Image.Image, Image.Image]:
    """(network input, the 32x32 image, the decoded original)."""
    img = open_image(source, name)
    small = to_network_size(img)
    return to_tensor(small), small, img


def upscale(a: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor, so every pixel the network saw stays a visible square."""
    f = max(1, size // a.shape[0])
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)
