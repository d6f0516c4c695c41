"""Any image a person brings -> the 32x32 tensor the network sees, or an ImageError that says what is wrong.

Accepts whatever Pillow reads (PNG, JPEG with EXIF orientation, WebP, GIF first frame, BMP, TIFF, ...) in any
mode (L, P, RGBA, CMYK, 16-bit, float) and size, up to MAX_PIXELS; refuses empty, truncated and non-image
files and decompression bombs before decoding them.
"""
from __future__ import annotations

import io
import os
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import normalize
from .paper import IMAGE_SIZE

MAX_PIXELS = 50_000_000   # a 50-megapixel photo is fine; a 1-gigapixel "bomb" is refused before decoding
MAX_BYTES = 50 * 1024 * 1024


class ImageError(ValueError):
    """A file we cannot turn into an image; the message is meant for the person who supplied it."""


def _to_8bit_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16-bit / 32-bit grey: rescale, don't clip
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        img = Image.fromarray(a.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # transparency: composite on white, as a viewer shows it
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def open_image(source: bytes | str | os.PathLike, name: str | None = None) -> Image.Image:
    """Decode to an RGB image with EXIF orientation applied; raises ImageError with a clear reason."""
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
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{label}: {w}x{h} pixels is too large (over {MAX_PIXELS // 1_000_000} megapixels); "
                                 f"it may be a decompression bomb")
            img.seek(0)  # animated GIF/WebP: the first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_8bit_rgb(img)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label}: the image is too large (a possible decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageError(f"{label}: not an image, or a format Pillow cannot read") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{label}: the image is damaged or truncated ({e})") from None


def to_network_size(img: Image.Image) -> Image.Image:
    """Centre square crop, then an antialiased resize to 32x32: what the network actually sees."""
    square = ImageOps.fit(img, (min(img.size),) * 2, method=Image.Resampling.BICUBIC)
    return square.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_tensor(small: Image.Image | np.ndarray) -> torch.Tensor:
    """A 32x32 RGB image (PIL or HWC uint8) -> normalised (1, 3, 32, 32) float tensor."""
    a = np.asarray(small, dtype=np.uint8)
    return normalize(torch.from_numpy(a.copy()).permute(2, 0, 1).unsqueeze(0))


def load_input(source: bytes | str | os.PathLike, name: str | None = None) -> tuple[torch.Tensor, Image.Image, Image.Image]:
    """(network input, the 32x32 image, the decoded original)."""
    img = open_image(source, name)
    small = to_network_size(img)
    return to_tensor(small), small, img


def upscale(a: np.ndarray, size: int = 256) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor, so every pixel the network saw stays a visible square."""
    f = max(1, size // a.shape[0])
    return np.repeat(np.repeat(a, f, axis=0), f, axis=1)
