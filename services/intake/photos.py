"""Photo intake: the type from the content, the size and pixel limits, a downscaled copy without EXIF.

Re-encoding through Pillow is what strips the metadata: only pixels (and the colour profile) are
written back. The orientation EXIF carried is applied to the pixels first, so nothing turns sideways.

What a photo costs is memory: a decoded image is held at 4 bytes a pixel (Pillow pads RGB), and each
decoder adds buffers of its own. So the pixel count from the header is checked against a budget for
its format before anything is decoded, a JPEG is decoded straight at a reduced scale, and
`PhotoCleaner` bounds how many photos one process decodes at once. bench/photo_memory.py measures
the time and the peak memory of one upload of each kind.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from shared.errors import InvalidFields, ServiceBusy, TooLarge, UnsupportedMediaType

MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Enough to judge a fix on a phone or a desk screen; a 12 MP photo stored this way has 40% of its pixels.
STORED_LONG_SIDE = 2560

# Pixel budgets by format, checked from the header before decoding. Each keeps one upload's peak memory
# at about 250 MB or below (measured by bench/photo_memory.py; before them a 48 MP JPEG took 513 MB).
# A baseline JPEG is drafted: libjpeg decodes it at 1/2, 1/4 or 1/8 scale, never below the stored size,
# so its memory does not grow with its pixels (135 MB at most). Its budget fits every 48-50 MP phone
# mode (8000x6000, 8160x6120, 8192x6144) with room, and bounds the decoding time (about 0.5 s).
JPEG_PIXELS = 64_000_000
# A progressive JPEG is drafted too, but libjpeg keeps the full image's DCT coefficients until its
# last scan: 3 bytes a pixel at 4:2:0, 6 at 4:4:4, 8 for CMYK (about 210 MB at 24 MP).
PROGRESSIVE_JPEG_PIXELS = 24_000_000
# PNG cannot be drafted: it is decoded whole, and RGBA is copied once more (premultiplied) to be
# resized: about 150 MB at 24 MP in RGB, 240 MB in RGBA.
PNG_PIXELS = 24_000_000
# WebP cannot be drafted and costs most: libwebp's two canvases, the copy handed to Pillow and Pillow's
# image, 16 bytes a pixel (20 with alpha). Enough for a 12 MP phone photo (4032x3024); about 240 MB.
WEBP_PIXELS = 12_500_000

# MPO is a JPEG carrying extra pictures (phones' HDR gain maps, depth maps): the main one is kept.
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# Pillow resizes palette and 1-bit images by picking nearest pixels: they are converted first.
_CONVERTED_TO_RESIZE = ("1", "P", "PA")

# A slot is held for one decode and re-encode: under a second for a phone's JPEG, up to about 3 s for a
# large PNG. A wait this long means the process is saturated, and the client is better told so.
SLOT_WAIT_S = 10.0
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class CleanPhoto:
    content: bytes
    content_type: str
    width: int
    height: int

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class PhotoCleaner:
    """`clean_photo` with at most `concurrency` photos decoded at once in this process.

    The checks that need no decoding (size, type, pixel budget) run before a slot is taken, so a
    refused photo never waits behind the others.
    """

    def __init__(self, concurrency: int, wait_s: float = SLOT_WAIT_S):
        if concurrency < 1:
            raise ValueError(f"a photo cleaner needs at least one slot, got {concurrency}")
        self.concurrency = concurrency
        self.wait_s = wait_s
        self._slots = threading.BoundedSemaphore(concurrency)

    def clean(self, raw: bytes) -> CleanPhoto:
        image = open_within_budget(raw)
        with self.slot():
            return reencoded(image)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self.wait_s):
            raise ServiceBusy(f"Too many photos are being processed (at most {self.concurrency} at once here, "
                              f"none done within {self.wait_s:g} s); retry shortly.", RETRY_AFTER_S)
        try:
            yield
        finally:
            self._slots.release()


def clean_photo(raw: bytes) -> CleanPhoto:
    """The photo to store: checked, downscaled to STORED_LONG_SIDE, upright, without EXIF."""
    return reencoded(open_within_budget(raw))


def open_within_budget(raw: bytes) -> ImageFile.ImageFile:
    """The image opened from its header only, once its bytes, its type and its pixels are accepted."""
    if len(raw) > MAX_PHOTO_BYTES:
        raise TooLarge(f"A photo may be at most {MAX_PHOTO_BYTES // (1024 * 1024)} MiB.")
    if not raw:
        raise InvalidFields("The file is empty.", {"file": ["empty file"]})
    try:
        image = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise UnsupportedMediaType("The file is not a JPEG, PNG or WebP image.") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"The image has far more pixels than a photo may have (at most "
                       f"{_megapixels(JPEG_PIXELS)} megapixels).") from None
    except (OSError, ValueError) as exc:
        raise InvalidFields("The image is damaged and cannot be read.", {"file": [str(exc)]}) from exc
    if image.format not in FORMATS:
        raise UnsupportedMediaType(f"{image.format} images are not accepted; send JPEG, PNG or WebP.")
    kind, budget = pixel_budget(image)
    if image.width * image.height > budget:
        raise TooLarge(f"The image is {image.width}×{image.height} ({image.width * image.height / 1e6:.1f} "
                       f"megapixels); a {kind} may have at most {_megapixels(budget)} megapixels.")
    return image


def pixel_budget(image: ImageFile.ImageFile) -> tuple[str, int]:
    """(what the image is, in words; how many pixels it may have)."""
    if image.format == "PNG":
        return "PNG", PNG_PIXELS
    if image.format == "WEBP":
        return "WebP", WEBP_PIXELS
    if image.info.get("progressive"):
        return "progressive JPEG", PROGRESSIVE_JPEG_PIXELS
    return "JPEG", JPEG_PIXELS


def stored_size(width: int, height: int) -> tuple[int, int]:
    """The size kept: the long side at most STORED_LONG_SIDE, the proportions unchanged."""
    scale = STORED_LONG_SIDE / max(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def reencoded(image: ImageFile.ImageFile) -> CleanPhoto:
    """Decode at most what the stored size needs, downscale, turn upright, and encode without metadata."""
    fmt, icc_profile = image.format, image.info.get("icc_profile")
    target = stored_size(image.width, image.height)
    try:
        if fmt in ("JPEG", "MPO"):
            image.draft(None, target)
        image.load()
        upright = _resized(image, target)
        ImageOps.exif_transpose(upright, in_place=True)
        # Nothing of the original's metadata is carried over (a JPEG comment can hold a place or a name):
        # only the pixels and the colour profile are written.
        upright.info = {}
        out = io.BytesIO()
        options = {"icc_profile": icc_profile} if icc_profile else {}
        if fmt in ("JPEG", "MPO"):
            upright.save(out, "JPEG", quality=92, optimize=True, **options)
        elif fmt == "WEBP":
            upright.save(out, "WEBP", quality=90, **options)
        else:
            upright.save(out, "PNG", optimize=False, **options)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidFields("The image is damaged and cannot be read.", {"file": [str(exc)]}) from exc
    return CleanPhoto(out.getvalue(), FORMATS[fmt], upright.width, upright.height)


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    if image.mode in _CONVERTED_TO_RESIZE:
        image = image.convert("RGBA" if image.has_transparency_data else "RGB")
    # reducing_gap: a box reduction first, then Lanczos; indistinguishable from Lanczos alone, faster.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"
