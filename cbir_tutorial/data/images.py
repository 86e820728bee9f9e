"""Reading product photos robustly: any mode to RGB, transparency onto white, bad files reported.

Only the formats a product photo comes in (:data:`FORMATS`) are decoded: Pillow's other decoders (EPS,
which runs Ghostscript, PSD, DDS, ...) are never reached; such a file is refused with its format named.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Images with more pixels than this are refused (decompression-bomb guard): 40 megapixels.
MAX_PIXELS = 40_000_000
RESIZE_POLICIES = ("squash", "pad")
#: The Pillow formats decoded (a JPEG with several pictures, "MPO", is opened as JPEG).
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
_SIGNATURE_BYTES = 16  # what Pillow's format checks look at

ImageSource = Union[str, Path, bytes, BinaryIO, Image.Image]


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class SkippedImage:
    """A catalogue image left out of the index, and why."""

    path: str
    reason: str


def format_of(signature: bytes) -> str | None:
    """The Pillow format whose signature the first 16 bytes of a file have (None: none), decoding nothing."""
    Image.init()
    for name, (_, accept) in Image.OPEN.items():
        try:
            if accept is not None and accept(signature[:_SIGNATURE_BYTES]):
                return name
        except Exception:  # a check that cannot read so short a prefix
            continue
    return None


def _signature(source) -> bytes:
    if isinstance(source, bytes):
        return source[:_SIGNATURE_BYTES]
    if isinstance(source, (str, Path)):
        with open(source, "rb") as file:
            return file.read(_SIGNATURE_BYTES)
    start = source.tell()
    signature = source.read(_SIGNATURE_BYTES)
    source.seek(start)
    return signature


def _unidentified(name: str, signature: bytes) -> ImageError:
    found = format_of(signature)
    if found is None or found in FORMATS:
        return ImageError(f"{name}: not an image file Pillow can read")
    return ImageError(f"{name}: {found} format, not one of the accepted image formats ({', '.join(FORMATS)}); "
                      "convert it to JPEG or PNG")


def _open(source: ImageSource) -> tuple[Image.Image, str]:
    if isinstance(source, Image.Image):
        return source, "<PIL image>"
    if isinstance(source, bytes):
        name = "<uploaded bytes>"
    elif isinstance(source, (str, Path)):
        name = str(source)
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: file not found")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes)")
    else:
        name = getattr(source, "name", "<file object>")
    try:
        signature = _signature(source)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source, formats=FORMATS), name
    except UnidentifiedImageError:
        raise _unidentified(name, signature) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{name}: image too large ({e})") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot open ({e})") from None
    except (ValueError, SyntaxError) as e:  # e.g. a PNG text chunk that decompresses past Pillow's limit
        raise ImageError(f"{name}: corrupt or unsafe image ({e})") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparent pixels composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit greyscale: 0..65535 → 0..255
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(source: ImageSource, size: int | None = None, resize: str = "squash",
             max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image as ``(H, W, 3)`` uint8 RGB; with ``size``, resized to ``(size, size, 3)``.

    ``resize``: ``"squash"`` stretches to a square (as Keras' ``load_img(target_size=...)`` does),
    ``"pad"`` keeps the aspect ratio and pads on white. EXIF rotation is applied. Raises
    :class:`ImageError` naming the file for missing, empty, non-image, truncated or
    over-``max_pixels`` files.
    """
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize={resize!r}: use one of {RESIZE_POLICIES}")
    image, name = _open(source)
    try:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageError(
                f"{name}: image too large ({width}x{height} = {width * height:,} pixels, "
                f"limit {max_pixels:,}); downscale it first"
            )
        if size is not None and image.format == "JPEG":
            image.draft("RGB", (size, size))  # decode at reduced scale: much faster for big JPEGs
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image)
        if size is not None:
            image = _resized(image, size, resize)
        return np.asarray(image, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{name}: corrupt or truncated image ({e})") from None


def decoded_images(paths, size: int, resize: str = "squash") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(pixels (N_ok, size, size, 3) uint8, kept (N,) bool, reasons of the unreadable images)``: every photo
    of ``paths`` decoded in memory (:func:`load_rgb`), the unreadable ones left out with their reason."""
    pixels, kept, reasons = [], np.zeros(len(paths), dtype=bool), []
    for i, path in enumerate(paths):
        try:
            pixels.append(load_rgb(path, size, resize))
            kept[i] = True
        except ImageError as error:
            reasons.append(str(error))
    return np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8), kept, reasons


def _resized(image: Image.Image, size: int, resize: str) -> Image.Image:
    if resize == "squash":
        return image.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    scale = size / max(image.size)
    inner = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image.resize(inner, Image.Resampling.BILINEAR, reducing_gap=3.0),
                 ((size - inner[0]) // 2, (size - inner[1]) // 2))
    return canvas


def resize_from_word(word: str, argument: str = "resize") -> str:
    """``"squash"`` or ``"pad"``; ValueError naming ``argument`` otherwise."""
    text = str(word).strip().lower()
    if text not in RESIZE_POLICIES:
        raise ValueError(f"{argument}={word!r}: use one of {', '.join(RESIZE_POLICIES)}")
    return text
