"""Parsing and loop detection, fed bytes: no servers involved."""

from __future__ import annotations

from pathlib import Path

import pytest

from channels.email.loop import automatic_reason
from channels.email.parse import (
    MailboxInfo,
    MailParseError,
    decode_bytes,
    generated_message_id,
    parse_mail,
    sanitize_html,
)
from hub.files import FileStore, StoredFileMissing
from tests.channels.email.conftest import message

BOX = MailboxInfo("support", "support@example.org", "support")


def parse(raw: bytes, tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    return parse_mail(raw, mailbox=BOX, store=FileStore(tmp_path), own_domain="switchboard.local", **kw)  # type: ignore[arg-type]


def test_threading_headers_become_references_and_the_subject_tag_a_hint(tmp_path: Path) -> None:
    """References then In-Reply-To (the direct parent last), each once; [#N] in the subject is the hint."""
    raw = message(
        "<m3@example.com>",
        subject="Re: Re: [#42] printer",
        headers={"References": "<m1@x> <m2@x>", "In-Reply-To": "<m2@x>"},
    )
    parsed = parse(raw, tmp_path)
    msg = parsed.message
    assert msg.external_id == "<m3@example.com>"
    assert msg.references == ["<m1@x>", "<m2@x>"]
    assert msg.ticket_hint == 42
    assert msg.sender.value == "ann@example.com" and msg.sender.name == "Ann Customer"
    assert msg.recipient == "support@example.org" and msg.queue == "support"
    assert parsed.automatic is None and not parsed.bounce


def test_the_raw_message_is_kept_by_its_hash(tmp_path: Path) -> None:
    """The exact bytes received can be read back from storage."""
    raw = message("<keep@example.com>")
    parsed = parse(raw, tmp_path)
    assert FileStore(tmp_path).get(parsed.raw_sha256) == raw
    with pytest.raises(StoredFileMissing):
        FileStore(tmp_path).get("../../etc/passwd")


def test_a_missing_message_id_is_generated_from_the_bytes_so_refetches_dedupe(tmp_path: Path) -> None:
    """The same bytes always get the same generated id; different bytes a different one."""
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
    first, again = parse(raw, tmp_path), parse(raw, tmp_path)
    assert first.message.external_id == again.message.external_id == generated_message_id(raw)
    assert parse(raw + b"!", tmp_path).message.external_id != first.message.external_id


@pytest.mark.parametrize(
    ("data", "declared", "expected"),
    [
        ("Grüße".encode(), "utf-8", "Grüße"),
        ("Grüße".encode("latin-1"), "utf-8", "Grüße"),  # a lying charset: cp1252 fallback
        ("Grüße".encode("latin-1"), "x-unknown", "Grüße"),
        (b"plain", "zlib_codec", "plain"),  # a bytes codec is no charset
        ("Привет".encode("koi8-r"), "koi8-r", "Привет"),
        (b"a\x00b\x01c", None, "abc"),
    ],
)
def test_charsets_fall_back_and_never_fail(data: bytes, declared: str | None, expected: str) -> None:
    """Declared charset if the bytes fit it, else UTF-8, Windows-1252, Latin-1; control characters go."""
    assert decode_bytes(data, declared) == expected


def test_html_is_sanitized_and_inline_images_point_at_storage() -> None:
    """Scripts, handlers and javascript: URLs are removed; cid: images are rewritten to stored files."""
    html = (
        '<p onclick="x()">hi</p><script>alert(1)</script>'
        '<img src="cid:Logo@x" onerror="y()"><a href="javascript:z()">l</a>'
    )
    clean = sanitize_html(html, {"logo@x": "a" * 64})
    assert "script" not in clean and "onclick" not in clean and "onerror" not in clean and "javascript" not in clean
    assert f'src="/api/email/attachments/{"a" * 64}"' in clean


def test_html_only_mail_gets_a_text_version_for_previews(tmp_path: Path) -> None:
    """Without a text/plain part the text is derived from the sanitized HTML (never from the scripts)."""
    raw = (
        b"From: a@example.com\r\nMessage-ID: <h@x>\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        b"<p>Hello <b>there</b></p><script>var secret=1</script><p>Line two</p>"
    )
    msg = parse(raw, tmp_path).message
    assert msg.text == "Hello there\n\nLine two"
    assert msg.html is not None and "<script" not in msg.html


def test_oversized_mail_and_mail_without_a_sender_are_refused(tmp_path: Path) -> None:
    """These go to quarantine with a reason instead of becoming messages."""
    with pytest.raises(MailParseError, match="over the limit"):
        parse(message("<big@x>", body="x" * 2000), tmp_path, max_bytes=1000)
    with pytest.raises(MailParseError, match="sender"):
        parse(b"Subject: who\r\nMessage-ID: <w@x>\r\n\r\nbody\r\n", tmp_path)


def test_oversized_attachments_are_skipped_and_recorded(tmp_path: Path) -> None:
    """An attachment over the limit is not stored; the message says it was left out."""
    raw = (
        b"From: a@example.com\r\nMessage-ID: <att@x>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=small.pdf\r\n\r\n"
        b"%PDF small\r\n"
        b"--B\r\nContent-Type: application/zip\r\nContent-Disposition: attachment; filename=big.zip\r\n\r\n"
        + b"z" * 5000
        + b"\r\n--B--\r\n"
    )
    msg = parse(raw, tmp_path, max_attachment_bytes=1000).message
    assert [a.filename for a in msg.attachments] == ["small.pdf"]
    assert msg.metadata["skipped_attachments"][0]["filename"] == "big.zip"
    assert msg.text.strip() == "see attached"


@pytest.mark.parametrize(
    ("headers", "sender", "ctype", "mid", "automatic"),
    [
        ({}, "ann@example.com", "text/plain", "<a@example.com>", False),
        ({"auto-submitted": ["no"]}, "ann@example.com", "text/plain", "<a@x>", False),
        ({"auto-submitted": ["auto-replied"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"auto-submitted": ["auto-generated"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"return-path": ["<>"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"list-unsubscribe": ["<mailto:x>"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"precedence": ["bulk"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"precedence": ["junk"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"x-autoreply": ["yes"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({"x-auto-response-suppress": ["All"]}, "ann@example.com", "text/plain", "<a@x>", True),
        ({}, "ann@example.com", "multipart/report", "<a@x>", True),
        ({}, "MAILER-DAEMON@mx.example.com", "text/plain", "<a@x>", True),
        ({}, "postmaster@example.com", "text/plain", "<a@x>", True),
        ({}, "support@example.org", "text/plain", "<a@x>", True),  # our own mailbox
        ({}, "ann@example.com", "text/plain", "<x1@switchboard.local>", True),  # our own Message-ID
    ],
)
def test_automatic_mail_is_recognized(
    headers: dict[str, list[str]], sender: str, ctype: str, mid: str, automatic: bool
) -> None:
    """RFC 3834 markers, list and bulk headers, bounces, robots and our own mail are automatic."""
    reason = automatic_reason(
        headers,
        sender=sender,
        content_type=ctype,
        message_id=mid,
        own_domain="switchboard.local",
        own_addresses=["support@example.org"],
    )
    assert (reason is not None) is automatic, reason
