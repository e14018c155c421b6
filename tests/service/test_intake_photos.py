"""POST/GET /v1/photos through HTTP."""
import hashlib
import io

from PIL import Image

from services.intake.photos import PhotoCleaner
from tests.conftest import bearer, run_service, settings_for_test
from tests.service.conftest import jpeg_bytes, upload_photo
from tests.unit.test_photos import near_blank_png


def gps_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825)[2] = (35.0, 3.0, 36.0)  # GPSLatitude
    return exif.tobytes()


def test_upload_records_size_hash_and_dimensions(intake, volunteer):
    photo = upload_photo(intake.client, volunteer, jpeg_bytes((80, 60)))
    assert photo["content_type"] == "image/jpeg"
    assert (photo["width"], photo["height"]) == (80, 60)
    assert len(photo["sha256"]) == 64 and photo["size"] > 0


def test_stored_photo_has_no_exif_and_matches_its_hash(intake, volunteer):
    original = jpeg_bytes(exif=gps_exif())
    assert Image.open(io.BytesIO(original)).getexif()  # the upload really carries GPS EXIF
    photo = upload_photo(intake.client, volunteer, original)
    response = intake.client.get(f"/v1/photos/{photo['id']}", headers=volunteer)
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert dict(Image.open(io.BytesIO(response.data)).getexif()) == {}
    assert hashlib.sha256(response.data).hexdigest() == photo["sha256"]


def test_type_comes_from_content_not_name(intake, volunteer):
    png = io.BytesIO()
    Image.new("RGB", (10, 10)).save(png, "PNG")
    photo = upload_photo(intake.client, volunteer, png.getvalue(), name="looks-like.jpg")
    assert photo["content_type"] == "image/png"


def test_non_image_is_415(intake, volunteer):
    response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                  data={"file": (io.BytesIO(b"GIF89a not really"), "x.jpg")})
    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"


def test_gif_is_415(intake, volunteer):
    gif = io.BytesIO()
    Image.new("RGB", (10, 10)).save(gif, "GIF")
    gif.seek(0)
    response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                  data={"file": (gif, "x.gif")})
    assert response.status_code == 415


def test_over_10_mib_is_413(intake, volunteer):
    big = jpeg_bytes() + b"\0" * (10 * 1024 * 1024)
    response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                  data={"file": (io.BytesIO(big), "big.jpg")})
    assert response.status_code == 413
    assert response.json["status"] == 413


def test_missing_file_field_is_422(intake, volunteer):
    response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                  data={"other": (io.BytesIO(jpeg_bytes()), "x.jpg")})
    assert response.status_code == 422
    assert "file" in response.json["errors"]


def test_json_body_is_415(intake, volunteer):
    assert intake.client.post("/v1/photos", headers=volunteer, json={"file": "x"}).status_code == 415


def test_upload_needs_a_token(intake):
    response = intake.client.post("/v1/photos", content_type="multipart/form-data",
                                  data={"file": (io.BytesIO(jpeg_bytes()), "x.jpg")})
    assert response.status_code == 401


def test_another_volunteer_cannot_see_an_unattached_photo(intake, volunteer):
    photo = upload_photo(intake.client, volunteer)
    assert intake.client.get(f"/v1/photos/{photo['id']}", headers=bearer("volunteer")).status_code == 404
    assert intake.client.get(f"/v1/photos/{photo['id']}", headers=bearer("office")).status_code == 200


def test_unknown_photo_is_404(intake, volunteer):
    assert intake.client.get("/v1/photos/000000000000000000000000", headers=volunteer).status_code == 404


def test_idempotent_upload_returns_the_first_photo(intake, volunteer):
    headers = {**volunteer, "Idempotency-Key": "photo-1"}
    content = jpeg_bytes(color="blue")
    first = upload_photo(intake.client, headers, content)
    second = upload_photo(intake.client, headers, content)
    assert second["id"] == first["id"]
    other = intake.client.post("/v1/photos", headers=headers, content_type="multipart/form-data",
                               data={"file": (io.BytesIO(jpeg_bytes(color="red")), "x.jpg")})
    assert other.status_code == 409


def test_a_large_photo_is_stored_downscaled_and_described_as_stored(intake, volunteer):
    photo = upload_photo(intake.client, volunteer, jpeg_bytes((6000, 4000)))
    assert (photo["width"], photo["height"]) == (2560, 1707)
    response = intake.client.get(f"/v1/photos/{photo['id']}", headers=volunteer)
    assert Image.open(io.BytesIO(response.data)).size == (2560, 1707)
    assert photo["size"] == len(response.data) and hashlib.sha256(response.data).hexdigest() == photo["sha256"]


def test_a_decompression_bomb_is_413_with_the_budget_it_exceeds(intake, volunteer):
    response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                  data={"file": (io.BytesIO(near_blank_png(7000, 7000)), "blank.png")})
    assert response.status_code == 413 and response.mimetype == "application/problem+json"
    assert "a PNG may have at most 24 megapixels" in response.json["detail"]


def test_photos_beyond_the_workers_slots_are_503_with_retry_after(intake, volunteer, monkeypatch):
    cleaner = PhotoCleaner(1, wait_s=0.05)
    monkeypatch.setattr(intake.app.extensions["intake"], "photo_cleaner", cleaner)
    with cleaner.slot():
        response = intake.client.post("/v1/photos", headers=volunteer, content_type="multipart/form-data",
                                      data={"file": (io.BytesIO(jpeg_bytes()), "x.jpg")})
    assert response.status_code == 503 and response.mimetype == "application/problem+json"
    assert int(response.headers["Retry-After"]) > 0
    assert "retry" in response.json["detail"]
    upload_photo(intake.client, volunteer)  # the slot is free again


def test_the_worker_processes_as_many_photos_at_once_as_woodpecker_photo_concurrency(intake, amqp_url, mongo_url):
    assert intake.app.extensions["intake"].photo_cleaner.concurrency == 2
    service = run_service(settings_for_test("intake", amqp_url, mongo_url, photo_concurrency=3))
    try:
        assert service.app.extensions["intake"].photo_cleaner.concurrency == 3
    finally:
        service.stop()
