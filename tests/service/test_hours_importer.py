"""The roster importer on the command line, against the test store; and the bounds of a roster over HTTP."""
import io
import uuid

from services.hours import importer
from services.hours.roster import MAX_UNPACKED_BYTES, MIB
from shared.store import connect
from tests.conftest import bearer
from tests.unit.test_hours_roster import CHINESE_HEADER, ZHANG, with_padded_sheet, xlsx


def test_the_command_line_imports_a_roster_reports_bad_rows_and_imports_nothing_twice(mongo_url, tmp_path, monkeypatch,
                                                                                      capsys):
    database = f"test_hours_cli_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("MONGO_URL", mongo_url)
    monkeypatch.setenv("HOURS_DATABASE", database)
    roster = tmp_path / "队员名单.csv"
    # What Excel in China saves: GB18030 text.
    roster.write_bytes("姓名,手机号,所属组织,网格\n周五,13900001111,银雀山街道服务队,lanshan-02\n"
                       "吴六,139-0000-2222,银雀山街道服务队,lanshan-02\n郑七,1390000,银雀山街道服务队,lanshan-02\n"
                       .encode("gb18030"))
    assert importer.main([str(roster), "--by", "association:li"]) == 1
    out = capsys.readouterr()
    assert "3 rows: 2 registered, 0 already registered, 1 refused" in out.out
    assert "row 4: phone" in out.err
    stored = list(connect(mongo_url, database)["volunteers"].find({}, {"name": 1, "phone": 1, "registered_by": 1}))
    assert sorted((v["name"], v["phone"], v["registered_by"]) for v in stored) == [
        ("吴六", "13900002222", "association:li"), ("周五", "13900001111", "association:li")]
    assert importer.main([str(roster)]) == 1
    assert "2 registered" not in capsys.readouterr().out
    assert connect(mongo_url, database)["volunteers"].count_documents({}) == 2


def test_an_unreadable_roster_exits_2_saying_why(mongo_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MONGO_URL", mongo_url)
    roster = tmp_path / "photo.xlsx"
    roster.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert importer.main([str(roster)]) == 2
    assert "photo.xlsx" in capsys.readouterr().err


def test_a_zip_bomb_exits_2_saying_what_it_unpacks_to(mongo_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MONGO_URL", mongo_url)
    roster = tmp_path / "队员名单.xlsx"
    roster.write_bytes(with_padded_sheet(xlsx(CHINESE_HEADER, ZHANG), MAX_UNPACKED_BYTES + 10 * MIB))
    assert importer.main([str(roster)]) == 2
    assert "unpacks to 60 MiB, more than the 50 MiB a roster may" in capsys.readouterr().err


def test_a_zip_bomb_uploaded_is_422_naming_the_bound_and_registers_nobody(fresh_hours):
    bomb = with_padded_sheet(xlsx(CHINESE_HEADER, ZHANG), MAX_UNPACKED_BYTES + 10 * MIB)
    response = fresh_hours.client.post("/v1/volunteers/import", headers=bearer("association"),
                                       data={"file": (io.BytesIO(bomb), "roster.xlsx")},
                                       content_type="multipart/form-data")
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert "unpacks to 60 MiB, more than the 50 MiB a roster may" in response.json["errors"]["file"][0]
    assert fresh_hours.app.extensions["hours"].store.volunteers.count_documents({}) == 0
