"""The notify mail as it is written (headers, encoding, one address), the outbox folder's .eml files and the
SMTP_URL forms: pure pieces (sending to a real SMTP server is tests/service/test_notify_mail.py)."""
from __future__ import annotations

import email
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime

import pytest

from services.notify.mail import FileMailer, Mail, MailSettingsError, mailer_from

SENDER = "Woodpecker 啄木鸟 <noreply@woodpecker.example>"


def a_mail(**changes: str) -> Mail:
    notice_id = uuid.uuid4().hex
    fields = {"to": "张三 <zhangsan@volunteers.example>", "subject": "新的案件：井盖缺失（朝阳路 12 号）",
              "body": "您好，\n\n朝阳路 12 号的井盖缺失，已派给市政。\n\n——啄木鸟",
              "message_id": f"<{notice_id}@woodpecker>"}
    return Mail(**{**fields, **changes})


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=default_policy)


def assert_is_the_mail(message: EmailMessage, mail: Mail, raw: bytes) -> None:
    assert str(message["From"]) == SENDER
    assert message["From"].addresses[0].addr_spec == "noreply@woodpecker.example"
    assert str(message["To"]) == mail.to
    assert str(message["Subject"]) == mail.subject
    assert message["Message-ID"] == mail.message_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert abs(parsedate_to_datetime(message["Date"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == mail.body + "\n"
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0], \
        "the Chinese subject travels as a MIME encoded-word"


@pytest.mark.parametrize("to", ["not an address", "zhangsan@volunteers.example, lisi@volunteers.example"])
def test_a_recipient_that_is_not_one_address_is_refused_for_good(tmp_path, to):
    result = mailer_from(None, SENDER, tmp_path).send(a_mail(to=to))

    assert (result.delivered, result.permanent) == (False, True)
    assert list(tmp_path.iterdir()) == []


def test_without_smtp_url_each_mail_becomes_an_eml_file(tmp_path):
    outbox = tmp_path / "var" / "outbox"  # not there yet
    mailer = mailer_from("", SENDER, outbox)
    mail = a_mail()

    result = mailer.send(mail)

    assert (result.delivered, result.error, result.permanent) == (True, None, False)
    assert isinstance(mailer, FileMailer)
    assert str(outbox.resolve()) in mailer.describe()
    [written] = list(outbox.iterdir())  # and no temporary file left behind
    notice_id = mail.message_id.strip("<>")
    assert re.fullmatch(rf"\d{{8}}T\d{{6}}\.\d{{6}}Z-{re.escape(notice_id)}\.eml", written.name), written.name
    raw = written.read_bytes()
    message = parsed(raw)
    assert not message.defects
    assert_is_the_mail(message, mail, raw)


def test_an_eml_file_name_cannot_leave_the_outbox(tmp_path):
    outbox = tmp_path / "outbox"
    mailer = mailer_from(None, SENDER, outbox)

    result = mailer.send(a_mail(message_id="<../../etc/passwd@woodpecker>"))

    assert result.delivered
    [written] = list(outbox.iterdir())
    assert "/" not in written.name and written.name.endswith(".eml")
    assert [path.name for path in tmp_path.iterdir()] == ["outbox"]


def test_a_resent_notice_is_a_second_file_with_the_same_message_id(tmp_path):
    mailer = mailer_from(None, SENDER, tmp_path)
    mail = a_mail()

    assert mailer.send(mail).delivered and mailer.send(mail).delivered

    written = sorted(tmp_path.iterdir())
    assert len(written) == 2
    assert {parsed(path.read_bytes())["Message-ID"] for path in written} == {mail.message_id}


@pytest.mark.parametrize(("url", "description"), [
    ("smtp://user:secret@smtp.example.com", "SMTP smtp.example.com:587 (STARTTLS)"),
    ("smtp://user:secret@smtp.example.com:2525?starttls=true", "SMTP smtp.example.com:2525 (STARTTLS)"),
    ("smtps://user:secret@smtp.example.com", "SMTP smtp.example.com:465 (TLS)"),
    ("smtp://relay.local:25?starttls=false", "SMTP relay.local:25 (no TLS)"),
])
def test_smtp_url_forms(url, description, tmp_path):
    assert mailer_from(url, SENDER, tmp_path).describe() == description


@pytest.mark.parametrize("url", [
    "http://smtp.example.com",
    "smtp.example.com:587",
    "smtp://",
    "smtp://:587",
    "smtp://user:secret@:587",
    "smtp://smtp.example.com:port",
    "smtp://smtp.example.com:99999",
    "smtp://smtp.example.com/inbox",
    "smtp://smtp.example.com?starttls=maybe",
    "smtp://smtp.example.com?tls=false",
    "smtps://smtp.example.com?starttls=false",
    "smtp://user@smtp.example.com",
    "smtp://user:secret%E5%95%84@smtp.example.com",
])
def test_a_malformed_smtp_url_is_refused_at_start_without_echoing_it(url, tmp_path):
    with pytest.raises(MailSettingsError) as refusal:
        mailer_from(url, SENDER, tmp_path)
    assert "secret" not in str(refusal.value)


def test_a_sender_without_an_address_is_refused_at_start(tmp_path):
    with pytest.raises(MailSettingsError):
        mailer_from(None, "Woodpecker 啄木鸟", tmp_path)
