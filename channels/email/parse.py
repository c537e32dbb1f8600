"""Raw RFC 5322 bytes → ``ParsedMail``: the normalized ``InboundMessage`` plus what the worker needs to know.

Everything here treats the mail as hostile: sizes are bounded, every header is read defensively (a broken
header falls back to its raw text), charsets that are unknown or lie fall back to UTF-8, then Windows-1252,
then Latin-1, surrogates and NUL bytes never reach the database, and HTML is sanitized with nh3 before any
browser sees it. What still cannot be turned into a message raises ``MailParseError`` and the worker puts
the mail in quarantine. The only I/O is writing attachments and the raw message to ``FileStore``.
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header
from email.message import Message
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses
from html.parser import HTMLParser
from typing import Any

import nh3
from pydantic import ValidationError

from channels.email.loop import automatic_reason, is_bounce
from hub.files import FileStore
from hub.messages import Attachment, Identity, InboundMessage

MAX_HEADER_BYTES = 512 * 1024
MAX_TEXT_CHARS = 1_000_000
MAX_REFERENCES = 50
MAX_ID_CHARS = 500
MAX_ATTACHMENTS = 100
MAX_PARTS = 1000
MAX_DEPTH = 100
TICKET_TAG = re.compile(r"\[#(\d{1,9})\]")
_MSGID = re.compile(r"<([^<>\s]{1,498})>")  # an id fits MAX_ID_CHARS with its brackets
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FALLBACK_CHARSETS = ("utf-8", "cp1252", "latin-1")
ATTACHMENT_URL = "/api/email/attachments/{sha}"


class _RawHeaders(EmailPolicy):
    """``policy.default`` whose headers read back as the raw strings received. We decode headers ourselves
    (RFC 2047 with the charset fallbacks above, which the header registry does not have), and the registry's
    parsing, run again on every ``get``, cost ten times the whole MIME parse."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        return value


POLICY = _RawHeaders()


class MailParseError(Exception):
    """The mail cannot become a message; it goes to quarantine with this reason."""


@dataclass(slots=True)
class ParsedMail:
    message: InboundMessage
    raw_sha256: str
    automatic: str | None  # why no automatic reply may answer it, or None
    bounce: bool
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class MailboxInfo:
    """What parsing needs to know about the mailbox the mail arrived in."""

    name: str
    address: str
    queue: str | None


# --- text helpers ---------------------------------------------------------------------------------------------


def decode_bytes(data: bytes, declared: str | None) -> str:
    """Decode with the declared charset if it is a real text codec and the bytes fit it, else fall back."""
    candidates: list[str] = []
    if declared:
        try:
            info = codecs.lookup(declared.strip().strip('"').lower())
            # bytes-to-bytes codecs (zlib, base64, rot13) are no charsets
            if info.name not in ("base64", "zlib", "bz2", "hex", "uu", "quopri", "rot-13"):
                candidates.append(info.name)
        except (LookupError, ValueError):
            pass
    candidates.extend(c for c in _FALLBACK_CHARSETS if c not in candidates)
    for charset in candidates:
        try:
            return clean(data.decode(charset))
        except (UnicodeDecodeError, LookupError, ValueError, TypeError):
            continue
    return clean(data.decode("latin-1"))  # pragma: no cover - latin-1 decodes every byte


def clean(text: str) -> str:
    """No surrogates (from raw 8-bit headers) and no control characters but tab and newlines."""
    if _SURROGATE.search(text):
        # Raw 8-bit bytes (kept by the parser as surrogate escapes): UTF-8 where they are UTF-8, each
        # leftover byte as Windows-1252 (a header may mix both).
        try:
            mixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            mixed = text.encode("utf-8", "replace").decode("utf-8")
        text = _SURROGATE.sub(_byte_char, mixed)
    return _CONTROL.sub("", text)


def _byte_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return bytes([code - 0xDC00]).decode("cp1252", "replace")
    return "\ufffd"


def _one_line(text: str, limit: int) -> str:
    return " ".join(clean(text).split())[:limit]


def _decode_words(raw: str) -> str:
    """RFC 2047 encoded words, each with the charset fallbacks."""
    try:
        parts = decode_header(raw)
    except Exception:
        return clean(raw)
    out: list[str] = []
    for chunk, charset in parts:
        out.append(decode_bytes(chunk, charset) if isinstance(chunk, bytes) else clean(chunk))
    return "".join(out)


def _raw_headers(msg: Message) -> dict[str, list[str]]:
    """Lower-cased header names → unparsed values (as received, unfolded)."""
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        text = value if isinstance(value, str) else str(value)
        headers.setdefault(clean(name).strip().lower(), []).append(clean(re.sub(r"\r?\n[ \t]", " ", text)))
    return headers


def _header(
    msg: Message, headers: dict[str, list[str]], name: str, limit: int, *, raw_only: bool = False
) -> str | None:
    """A header as text, encoded words decoded with the charset fallbacks, bounded to ``limit``. (Our own
    decoding rather than the policy's header registry: it copes with lying charsets and costs a fraction.)
    ``raw_only``: no decoding at all (ids)."""
    raw = headers.get(name)
    if not raw:
        return None
    if raw_only:
        return clean(raw[0])[: limit * 4]
    return _one_line(_decode_words(raw[0]), limit)


def message_ids(value: str | None) -> list[str]:
    """The ``<id>`` tokens of a Message-ID, In-Reply-To or References header, in order."""
    return [f"<{m}>" for m in _MSGID.findall(value or "")]


def _address(value: str | None) -> tuple[str | None, str | None]:
    """(name, address) of the first usable address in a From-like header."""
    if not value:
        return None, None
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = []
    for name, addr in pairs:
        addr = addr.strip().strip("<>")
        local, at, domain = addr.rpartition("@")
        if at and local and domain and " " not in addr and len(addr) <= 320:
            return (_one_line(name, 200) or None), addr
    found = re.search(r"[^\s<>\"'@,;:]+@[^\s<>\"'@,;:]+\.[^\s<>\"'@,;:]+", value)
    return (None, found.group(0)) if found and len(found.group(0)) <= 320 else (None, None)


class _TextOfHtml(HTMLParser):
    """A plain-text rendering of (already sanitized) HTML, for previews and search."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOfHtml()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        return ""
    lines = [" ".join(line.split()) for line in "".join(parser.out).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def sanitize_html(html: str, cids: dict[str, str] | None = None) -> str:
    """Safe HTML for an agent's browser: no scripts, no event handlers, no javascript: URLs. Inline images
    (``cid:``) point at the stored attachment."""
    if cids:

        def swap(match: re.Match[str]) -> str:
            sha = cids.get(match.group(2).strip().lower())
            return f"{match.group(1)}{ATTACHMENT_URL.format(sha=sha)}" if sha else match.group(0)

        html = re.sub(r"""(src\s*=\s*["']?)cid:([^"'\s>]+)""", swap, html, flags=re.I)
    return nh3.clean(html, link_rel="noopener noreferrer nofollow")


# --- MIME structure -------------------------------------------------------------------------------------------


def _raw(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return value if isinstance(value, str) else str(value)
    return None


def _ctype(part: Message) -> str:
    """The part's content type, lower-cased; invalid or missing gives the default (RFC 2045)."""
    raw = _raw(part, "content-type")
    if raw:
        value = clean(raw).split(";", 1)[0].strip().lower()
        main, slash, sub = value.partition("/")
        if slash and main and sub and " " not in value:
            return value[:255]
    return part.get_default_type()


def _charset(part: Message) -> str | None:
    found = re.search(r"""charset\s*=\s*["']?([^"';\s]+)""", clean(_raw(part, "content-type") or ""), re.I)
    return found.group(1) if found else None


def _leaves(msg: Message, depth: int = 0) -> Iterator[Message]:
    """Leaf parts, in order; an attached message (message/rfc822) is one leaf, not opened."""
    if depth > MAX_DEPTH:
        return
    if _ctype(msg).startswith("multipart/"):
        payload = msg.get_payload()
        if isinstance(payload, list):
            for part in payload:
                if isinstance(part, Message):
                    yield from _leaves(part, depth + 1)
            return
    yield msg


def _payload_bytes(part: Message) -> bytes:
    if _ctype(part).startswith("message/"):
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else payload
        if isinstance(inner, Message):
            try:
                return inner.as_bytes(policy=policy.SMTP.clone(max_line_length=0))
            except Exception:
                return str(inner).encode("utf-8", "replace")
        return str(inner).encode("utf-8", "replace")
    data = part.get_payload(decode=True)
    if isinstance(data, bytes):
        return data
    text = part.get_payload()
    return text.encode("utf-8", "surrogateescape") if isinstance(text, str) else b""


def _part_text(part: Message) -> str:
    return decode_bytes(_payload_bytes(part), _charset(part))


def _is_attachment(part: Message) -> bool:
    disposition = clean(_raw(part, "content-disposition") or "").lower()
    if disposition.split(";", 1)[0].strip() == "attachment":
        return True
    named = "name=" in disposition or "name*=" in disposition
    if not named:
        named = re.search(r";\s*name\*?=", clean(_raw(part, "content-type") or ""), re.I) is not None
    return not _ctype(part).startswith(("text/", "multipart/")) or named


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if not name:
        return None
    name = _one_line(_decode_words(str(name)), 255)
    name = name.replace("/", "_").replace("\\", "_").lstrip(".")
    return name or None


def _content_type(part: Message) -> str:
    return _ctype(part)


# --- the whole mail -----------------------------------------------------------------------------------------


def generated_message_id(raw: bytes) -> str:
    """A stable id for a mail without a usable Message-ID, so a re-fetch finds the stored copy."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@missing-message-id.invalid>"


def parse_mail(
    raw: bytes,
    *,
    mailbox: MailboxInfo,
    store: FileStore,
    own_domain: str,
    own_addresses: Sequence[str] = (),
    max_bytes: int = 50 * 1024 * 1024,
    max_attachment_bytes: int = 25 * 1024 * 1024,
    raw_sha256: str | None = None,
) -> ParsedMail:
    """Turn one raw mail into a ``ParsedMail``; raise ``MailParseError`` when it cannot be done."""
    if len(raw) > max_bytes:
        raise MailParseError(f"the message is {len(raw)} bytes, over the limit of {max_bytes}")
    head_end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=len(raw))
    if head_end > MAX_HEADER_BYTES:
        raise MailParseError(f"the header block is {head_end} bytes, over the limit of {MAX_HEADER_BYTES}")
    sha = raw_sha256 or store.put(raw)
    try:
        msg = BytesParser(policy=POLICY).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; this is a bug in it meeting very strange input
        raise MailParseError(f"the MIME parser failed: {type(exc).__name__}: {exc}") from exc
    warnings = [type(d).__name__ for d in msg.defects][:20]
    headers = _raw_headers(msg)
    if not headers:
        raise MailParseError("no headers: this is not a mail")

    name, sender = _address(_header(msg, headers, "from", 2000))
    if sender is None:
        for fallback in ("sender", "reply-to", "return-path"):
            name, sender = _address(_header(msg, headers, fallback, 2000))
            if sender:
                warnings.append(f"sender taken from {fallback}")
                break
    if sender is None:
        raise MailParseError("no usable sender address (From, Sender, Reply-To, Return-Path)")

    ids = message_ids(_header(msg, headers, "message-id", 5000, raw_only=True))
    message_id = ids[0] if ids else generated_message_id(raw)
    if not ids:
        warnings.append("no Message-ID; generated one from the content")
    refs: list[str] = []
    references = message_ids(_header(msg, headers, "references", 100_000, raw_only=True))
    in_reply_to = message_ids(_header(msg, headers, "in-reply-to", 5000, raw_only=True))
    for ref in [*references[-MAX_REFERENCES:], *in_reply_to[:1]]:
        if ref != message_id and ref not in refs:
            refs.append(ref)
    subject = _header(msg, headers, "subject", 500) or ""
    tag = TICKET_TAG.search(subject)
    ticket_hint = int(tag.group(1)) if tag else None

    content_type = _content_type(msg)
    bounce = is_bounce(sender=sender, content_type=content_type, headers=headers)
    automatic = automatic_reason(
        headers,
        sender=sender,
        content_type=content_type,
        message_id=message_id,
        own_domain=own_domain,
        own_addresses=own_addresses,
    )

    # Bodies and attachments.
    plain_part = html_part = None
    leaves = []
    for i, leaf in enumerate(_leaves(msg)):
        if i >= MAX_PARTS:
            warnings.append(f"more than {MAX_PARTS} MIME parts; the rest ignored")
            break
        leaves.append(leaf)
    # The bodies: the first inline text/plain and text/html leaves (the alternatives of one message).
    for leaf in leaves:
        ctype = _ctype(leaf)
        if ctype.startswith("multipart/"):  # boundaries broken: the payload is all we have
            plain_part = plain_part or leaf
        elif ctype.startswith("text/") and not _is_attachment(leaf):
            if ctype == "text/html":
                html_part = html_part or leaf
            elif ctype == "text/plain" or plain_part is None:
                plain_part = plain_part if plain_part is not None and _ctype(plain_part) == "text/plain" else leaf

    attachments: list[Attachment] = []
    cids: dict[str, str] = {}
    skipped: list[dict[str, Any]] = []
    for leaf in leaves:
        if leaf is plain_part or leaf is html_part:
            continue
        if _ctype(leaf).startswith(("text/", "multipart/")) and not _is_attachment(leaf):
            continue  # another alternative or a text fragment; the chosen bodies carry the content
        if len(attachments) >= MAX_ATTACHMENTS:
            skipped.append({"reason": "too many attachments"})
            continue
        try:
            data = _payload_bytes(leaf)
        except Exception as exc:
            skipped.append({"reason": f"undecodable: {type(exc).__name__}"})
            continue
        ctype = _content_type(leaf)
        filename = _filename(leaf) or f"attachment-{len(attachments) + 1}{mimetypes.guess_extension(ctype) or ''}"
        if ctype == "message/rfc822" and not filename.endswith(".eml"):
            filename = f"{filename.rsplit('.', 1)[0]}.eml"
        if len(data) > max_attachment_bytes:
            skipped.append({"filename": filename, "size": len(data), "reason": "over the size limit"})
            continue
        att_sha = store.put(data)
        cid = message_ids(clean(_raw(leaf, "content-id") or ""))
        inline = clean(_raw(leaf, "content-disposition") or "").strip().lower().startswith("inline") or bool(cid)
        if cid:
            cids[cid[0][1:-1].lower()] = att_sha
        attachments.append(
            Attachment(
                filename=filename[:255],
                content_type=ctype,
                size=len(data),
                sha256=att_sha,
                url=ATTACHMENT_URL.format(sha=att_sha),
                inline=inline,
            )
        )

    text = _part_text(plain_part) if plain_part is not None else ""
    html = None
    if html_part is not None:
        html = sanitize_html(_part_text(html_part), cids)
        if not text.strip():
            text = html_to_text(html)
    if plain_part is None and html_part is None and not msg.is_multipart() and not attachments:
        text = _part_text(msg)
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        warnings.append("text truncated")

    metadata: dict[str, Any] = {
        "mailbox": mailbox.name,
        "message_id": message_id,
        "raw_sha256": sha,
        "size": len(raw),
    }
    if date := _header(msg, headers, "date", 200):
        metadata["date"] = date
    if automatic:
        metadata["automatic"] = automatic
    if bounce:
        metadata["bounce"] = True
        original = _bounced_message_id(msg, raw, own_domain)
        if original and original not in refs:
            refs.append(original)
    if cc := _header(msg, headers, "cc", 2000):
        metadata["cc"] = cc
    if skipped:
        metadata["skipped_attachments"] = skipped[:20]
    if warnings:
        metadata["warnings"] = warnings[:20]
    try:
        message = InboundMessage(
            channel="email",
            external_id=message_id,
            sender=Identity(kind="email", value=sender, name=name),
            recipient=mailbox.address,
            subject=subject or None,
            text=text,
            html=html,
            attachments=attachments,
            references=refs[-MAX_REFERENCES:],
            ticket_hint=ticket_hint,
            queue=mailbox.queue,
            metadata=metadata,
        )
    except ValidationError as exc:
        raise MailParseError(f"the message does not fit: {exc.errors()[0].get('msg')}") from exc
    return ParsedMail(message=message, raw_sha256=sha, automatic=automatic, bounce=bounce, warnings=warnings)


def _bounced_message_id(msg: Message, raw: bytes, own_domain: str) -> str | None:
    """The Message-ID of the mail a bounce reports on: from the returned message or headers part, else the
    first id of our own domain quoted anywhere in the bounce."""
    for leaf in _leaves(msg):
        ctype = _ctype(leaf)
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            try:
                inner = BytesParser(policy=POLICY).parsebytes(_payload_bytes(leaf), headersonly=True)
                ids = message_ids(str(inner.get("message-id") or ""))
            except Exception:
                ids = []
            if ids:
                return ids[0]
    domain = re.escape(own_domain.encode())
    found = re.search(rb"<[^<>\s@]{1,400}@" + domain + rb">", raw, re.I)
    return found.group(0).decode("ascii", "replace") if found else None
