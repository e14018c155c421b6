"""Photo intake: the type from the content, the size limit, and EXIF (GPS included) removed.

Re-encoding through Pillow is what strips the metadata: only pixels (and the colour profile) are
written back. The orientation EXIF carried is applied to the pixels first, so nothing turns sideways.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.errors import InvalidFields, TooLarge, UnsupportedMediaType

MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 50_000_000  # refuses decompression bombs long before they reach memory
# MPO is a JPEG carrying extra pictures (phones' HDR gain maps, depth maps): the main one is kept.
FORMATS = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


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


def clean_photo(raw: bytes) -> CleanPhoto:
    if len(raw) > MAX_PHOTO_BYTES:
        raise TooLarge(f"A photo may be at most {MAX_PHOTO_BYTES // (1024 * 1024)} MiB.")
    if not raw:
        raise InvalidFields("The file is empty.", {"file": ["empty file"]})
    try:
        image = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise UnsupportedMediaType("The file is not a JPEG, PNG or WebP image.") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"The image has more than {MAX_PIXELS:,} pixels.") from None
    except (OSError, ValueError) as exc:
        raise InvalidFields("The image is damaged and cannot be read.", {"file": [str(exc)]}) from exc
    if image.format not in FORMATS:
        raise UnsupportedMediaType(f"{image.format} images are not accepted; send JPEG, PNG or WebP.")
    if image.width * image.height > MAX_PIXELS:
        raise TooLarge(f"The image has more than {MAX_PIXELS:,} pixels.")
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
        out = io.BytesIO()
        options = {"icc_profile": image.info.get("icc_profile")} if image.info.get("icc_profile") else {}
        if image.format in ("JPEG", "MPO"):
            upright.save(out, "JPEG", quality=92, optimize=True, **options)
        elif image.format == "WEBP":
            upright.save(out, "WEBP", quality=90, **options)
        else:
            upright.save(out, "PNG", optimize=False, **options)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidFields("The image is damaged and cannot be read.", {"file": [str(exc)]}) from exc
    return CleanPhoto(out.getvalue(), FORMATS[image.format], upright.width, upright.height)
