"""Photo intake (services/intake/photos.py): type by content, size limit, EXIF removed, orientation applied."""
from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from PIL import ExifTags, Image

from services.intake.photos import MAX_PHOTO_BYTES, clean_photo
from shared.errors import InvalidFields, TooLarge, UnsupportedMediaType

ORIENTATION = 0x0112
GPS_LATITUDE_REF, GPS_LATITUDE = 1, 2


# --- builders ---------------------------------------------------------------------------------

def exif_with_gps(orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    if orientation:
        exif[ORIENTATION] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[GPS_LATITUDE_REF] = "N"
    gps[GPS_LATITUDE] = (35.0, 3.0, 36.0)
    return exif


def image_bytes(fmt: str, size: tuple[int, int] = (40, 30), exif: Image.Exif | None = None,
                noise: bool = False) -> bytes:
    image = (Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)) if noise
             else Image.new("RGB", size, (200, 30, 30)))
    out = io.BytesIO()
    image.save(out, fmt, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming a size it never delivers: what a decompression bomb's header looks like."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def reopened(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


# --- accepted formats -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, content_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                               ("WEBP", "image/webp")])
def test_the_type_is_detected_from_the_content(fmt, content_type):
    photo = clean_photo(image_bytes(fmt))
    assert photo.content_type == content_type
    assert reopened(photo.content).format == fmt
    assert (photo.width, photo.height) == (40, 30)
    assert photo.size == len(photo.content) and len(photo.sha256) == 64


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_including_gps_is_removed(fmt):
    raw = image_bytes(fmt, exif=exif_with_gps())
    assert reopened(raw).getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input really carries GPS
    exif = reopened(clean_photo(raw).content).getexif()
    assert len(exif) == 0
    assert not exif.get_ifd(ExifTags.IFD.GPSInfo)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_exif_orientation_is_applied_to_the_pixels(fmt):
    photo = clean_photo(image_bytes(fmt, size=(40, 30), exif=exif_with_gps(orientation=6)))
    assert (photo.width, photo.height) == (30, 40)
    out = reopened(photo.content)
    assert out.size == (30, 40)
    assert ORIENTATION not in out.getexif()


# --- refused ----------------------------------------------------------------------------------

def test_a_gif_is_unsupported():
    with pytest.raises(UnsupportedMediaType):
        clean_photo(image_bytes("GIF"))


def test_random_bytes_are_unsupported():
    with pytest.raises(UnsupportedMediaType):
        clean_photo(os.urandom(2048))


def test_more_than_10_mib_is_too_large():
    with pytest.raises(TooLarge):
        clean_photo(b"\xff\xd8\xff" + b"\x00" * MAX_PHOTO_BYTES)


def test_more_than_50_megapixels_is_too_large_before_decoding():
    with pytest.raises(TooLarge):
        clean_photo(png_header_only(8000, 8000))


def test_a_decompression_bomb_header_is_too_large_not_a_crash():
    with pytest.raises(TooLarge):
        clean_photo(png_header_only(20000, 20000))


def test_an_empty_file_is_invalid():
    errors = pytest.raises(InvalidFields, clean_photo, b"").value.errors
    assert set(errors) == {"file"}


def test_a_jpeg_truncated_in_its_image_data_is_invalid_not_a_crash():
    raw = image_bytes("JPEG", size=(120, 90), noise=True)
    with pytest.raises(InvalidFields):
        clean_photo(raw[: len(raw) // 2])


def test_a_damaged_png_is_invalid():
    raw = bytearray(image_bytes("PNG", size=(120, 90), noise=True))
    raw[len(raw) // 2] ^= 0xFF
    with pytest.raises(InvalidFields):
        clean_photo(bytes(raw))


def test_a_jpeg_truncated_in_its_headers_is_invalid_not_a_crash():
    raw = image_bytes("JPEG")
    with pytest.raises(InvalidFields):
        clean_photo(raw[: raw.index(b"\xff\xc4") + 10])  # inside the first Huffman table


def test_a_truncated_webp_is_invalid_not_a_crash():
    raw = image_bytes("WEBP", size=(120, 90), noise=True)
    with pytest.raises(InvalidFields):
        clean_photo(raw[: len(raw) // 2])


def test_a_multi_picture_jpeg_is_accepted_as_jpeg():
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(out, "MPO", save_all=True, append_images=[Image.new("RGB", (40, 30))])
    assert out.getvalue()[:3] == b"\xff\xd8\xff"  # a JPEG by its magic bytes
    assert clean_photo(out.getvalue()).content_type == "image/jpeg"
