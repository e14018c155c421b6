"""Photo intake (services/intake/photos.py): type by content, size and pixel limits, downscaling, EXIF
removed, orientation applied, and how many photos are processed at once."""
from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib

import pytest
from PIL import ExifTags, Image, ImageCms

from services.intake.photos import (
    MAX_PHOTO_BYTES,
    STORED_LONG_SIDE,
    PhotoCleaner,
    clean_photo,
    open_within_budget,
    reencoded,
)
from shared.config import Settings
from shared.errors import InvalidFields, ServiceBusy, TooLarge, UnsupportedMediaType

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


def jpeg_header_only(width: int, height: int, progressive: bool = False) -> bytes:
    """A JPEG's markers up to its scan (4:2:0, baseline or progressive), claiming a size, without image data."""
    def segment(marker: int, data: bytes) -> bytes:
        return struct.pack(">HH", marker, len(data) + 2) + data
    frame = struct.pack(">BHHB", 8, height, width, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    scan = bytes([3, 1, 0x00, 2, 0x11, 3, 0x11, 0, 63, 0])
    return b"\xff\xd8" + segment(0xFFC2 if progressive else 0xFFC0, frame) + segment(0xFFDA, scan) + b"\xff\xd9"


def near_blank_png(width: int, height: int) -> bytes:
    """A complete, valid white RGB PNG: a few hundred KB that decode to width x height x 4 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    deflate = zlib.compressobj(1)
    row = b"\x00" + b"\xff" * (3 * width)
    pixels = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def reopened(content: bytes) -> Image.Image:
    return Image.open(io.BytesIO(content))


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
RED = (220, 0, 0)


@pytest.fixture(scope="module")
def large_phone_jpeg() -> bytes:
    """6000x4000 with a red block in its top-left corner, shot sideways (orientation 6), GPS and sRGB."""
    image = Image.new("RGB", (6000, 4000), "white")
    image.paste(RED, (0, 0, 600, 400))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif_with_gps(orientation=6), icc_profile=SRGB)
    return out.getvalue()


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


# --- pixel budgets (refused from the header: decoding these headers would fail as damaged) -------

@pytest.mark.parametrize("size", [(4000, 3000), (4032, 3024), (8000, 6000), (8160, 6120), (8192, 6144)])
def test_every_phone_camera_mode_fits_the_jpeg_budget(size):
    assert open_within_budget(jpeg_header_only(*size)).size == size


def test_a_jpeg_over_its_budget_is_too_large_before_decoding():
    detail = pytest.raises(TooLarge, clean_photo, jpeg_header_only(9600, 7200)).value.detail
    assert "9600×7200" in detail and "a JPEG may have at most 64 megapixels" in detail


def test_a_progressive_jpeg_has_a_lower_budget_than_a_baseline_one():
    assert open_within_budget(jpeg_header_only(6000, 4000, progressive=True)).size == (6000, 4000)
    detail = pytest.raises(TooLarge, clean_photo, jpeg_header_only(8000, 6000, progressive=True)).value.detail
    assert "a progressive JPEG may have at most 24 megapixels" in detail


def test_a_png_over_its_budget_is_too_large_before_decoding():
    assert open_within_budget(png_header_only(6000, 4000)).size == (6000, 4000)
    detail = pytest.raises(TooLarge, clean_photo, png_header_only(6000, 4001)).value.detail
    assert "a PNG may have at most 24 megapixels" in detail


def test_a_webp_over_its_budget_is_too_large():
    assert open_within_budget(image_bytes("WEBP", size=(4032, 3024))).size == (4032, 3024)
    detail = pytest.raises(TooLarge, clean_photo, image_bytes("WEBP", size=(4096, 3072))).value.detail
    assert "a WebP may have at most 12.5 megapixels" in detail


def test_issue_7s_near_blank_7000_by_7000_png_is_refused_without_decoding_it():
    raw = near_blank_png(7000, 7000)
    assert len(raw) < 1024 * 1024
    started = time.perf_counter()
    with pytest.raises(TooLarge):
        clean_photo(raw)
    assert time.perf_counter() - started < 0.5  # decoding it took 2.4 s and 375 MB (bench/photo_memory.py)


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


# --- downscaling --------------------------------------------------------------------------------

def test_a_large_jpeg_is_stored_upright_with_its_long_side_at_2560_and_no_exif(large_phone_jpeg):
    photo = clean_photo(large_phone_jpeg)
    assert (photo.width, photo.height) == (1707, 2560)  # turned upright: portrait
    out = reopened(photo.content)
    assert out.format == "JPEG" and out.size == (1707, 2560)
    # Orientation 6 is shown turned a quarter clockwise: the top-left corner goes to the top right.
    assert out.getpixel((1700, 5)) == pytest.approx(RED, abs=40)
    assert out.getpixel((5, 5)) == pytest.approx((255, 255, 255), abs=40)
    assert len(out.getexif()) == 0 and not out.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert out.info.get("icc_profile") == SRGB


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_not_at_full_size(large_phone_jpeg):
    image = open_within_budget(large_phone_jpeg)
    reencoded(image)
    assert image.size == (3000, 2000)  # libjpeg decoded it at 1/2 scale: the least that still covers 2560


@pytest.mark.parametrize("fmt, mode", [("PNG", "RGBA"), ("WEBP", "RGB")])
def test_a_large_png_or_webp_is_stored_downscaled_in_its_format(fmt, mode):
    out = io.BytesIO()
    Image.new(mode, (3000, 2000), (10, 120, 200, 128)[: len(mode)]).save(out, fmt)
    photo = clean_photo(out.getvalue())
    stored = reopened(photo.content)
    assert (photo.width, photo.height) == stored.size == (STORED_LONG_SIDE, 1707)
    assert stored.format == fmt and stored.mode == mode


def test_a_palette_png_is_downscaled_smoothly_not_by_picking_pixels():
    stripes = Image.frombytes("P", (3000, 10), bytes([0, 1]) * 1500 * 10)  # one-pixel black and white columns
    stripes.putpalette([0, 0, 0, 255, 255, 255])
    out = io.BytesIO()
    stripes.save(out, "PNG")
    stored = reopened(clean_photo(out.getvalue()).content).convert("L")
    assert stored.width == STORED_LONG_SIDE
    assert len({value for _, value in stored.getcolors()} - {0, 255}) > 10  # greys: the columns averaged


def test_a_photo_within_the_stored_size_keeps_its_size():
    photo = clean_photo(image_bytes("JPEG", size=(STORED_LONG_SIDE, 1000)))
    assert (photo.width, photo.height) == (STORED_LONG_SIDE, 1000)


def test_a_multi_picture_jpeg_is_accepted_as_jpeg():
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(out, "MPO", save_all=True, append_images=[Image.new("RGB", (40, 30))])
    assert out.getvalue()[:3] == b"\xff\xd8\xff"  # a JPEG by its magic bytes
    assert clean_photo(out.getvalue()).content_type == "image/jpeg"


# --- how many at once ---------------------------------------------------------------------------

def test_with_one_slot_a_second_photo_waits_until_the_first_is_done():
    cleaner = PhotoCleaner(1, wait_s=30)
    cleaned: list = []
    done = threading.Event()

    def upload():
        cleaned.append(cleaner.clean(image_bytes("JPEG")))
        done.set()

    with cleaner.slot():  # the first photo, being processed
        threading.Thread(target=upload, daemon=True).start()
        assert not done.wait(0.3)  # a 40x30 JPEG takes a few ms: it is waiting for the slot
    assert done.wait(10)
    assert cleaned[0].content_type == "image/jpeg"


def test_a_photo_that_waits_past_the_timeout_is_refused_as_busy():
    cleaner = PhotoCleaner(1, wait_s=0.05)
    with cleaner.slot():
        busy = pytest.raises(ServiceBusy, cleaner.clean, image_bytes("JPEG")).value
    assert busy.retry_after_s > 0
    assert cleaner.clean(image_bytes("JPEG")).content_type == "image/jpeg"


def test_two_slots_let_two_photos_be_processed_at_once_but_not_three():
    cleaner = PhotoCleaner(2, wait_s=0.05)
    with cleaner.slot():
        assert cleaner.clean(image_bytes("PNG")).content_type == "image/png"
        with cleaner.slot(), pytest.raises(ServiceBusy):
            cleaner.clean(image_bytes("PNG"))


def test_a_photo_over_budget_is_refused_without_waiting_for_a_slot():
    cleaner = PhotoCleaner(1, wait_s=5)
    with cleaner.slot():
        started = time.perf_counter()
        with pytest.raises(TooLarge):
            cleaner.clean(png_header_only(7000, 7000))
        assert time.perf_counter() - started < 1


def test_a_damaged_photo_gives_its_slot_back():
    cleaner = PhotoCleaner(1, wait_s=0.05)
    raw = image_bytes("JPEG", size=(120, 90), noise=True)
    with pytest.raises(InvalidFields):
        cleaner.clean(raw[: len(raw) // 2])
    assert cleaner.clean(raw).width == 120


def test_many_threads_at_once_all_get_their_photo_through_the_slots():
    cleaner = PhotoCleaner(2, wait_s=30)
    start = threading.Barrier(6)
    sizes: list[tuple[int, int]] = []

    def upload(width: int):
        start.wait()
        photo = cleaner.clean(image_bytes("JPEG", size=(width, 30)))
        sizes.append((photo.width, photo.height))

    threads = [threading.Thread(target=upload, args=(40 + i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(sizes) == [(40 + i, 30) for i in range(6)]


def test_a_cleaner_needs_a_slot():
    with pytest.raises(ValueError):
        PhotoCleaner(0)


# --- the per-worker bound from the environment ----------------------------------------------------

def test_photo_concurrency_is_2_unless_the_environment_says_otherwise():
    assert Settings.from_env("intake", {}).photo_concurrency == 2
    assert Settings.from_env("intake", {"WOODPECKER_PHOTO_CONCURRENCY": "3"}).photo_concurrency == 3


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_photo_concurrency_that_is_not_a_positive_whole_number_is_refused(raw):
    with pytest.raises(ValueError, match="WOODPECKER_PHOTO_CONCURRENCY"):
        Settings.from_env("intake", {"WOODPECKER_PHOTO_CONCURRENCY": raw})


def test_a_jpeg_comment_is_not_carried_into_the_stored_photo():
    """A comment can say where a photo was taken as plainly as GPS EXIF can."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(out, "JPEG", comment=b"shot at 35.06N 118.31E")
    stored = clean_photo(out.getvalue()).content
    assert b"35.06N" not in stored and "comment" not in Image.open(io.BytesIO(stored)).info
