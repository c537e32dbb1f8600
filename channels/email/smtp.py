"""SMTP out: the ``Sender`` for channel "email", used by the outbox dispatcher, and the mail builders.

A reply carries our Message-ID (the one stored with the message, so a copy fetched back over IMAP is
recognized as ours), In-Reply-To and References (the parent's References plus the parent), the subject tag
``[#N]`` and the From address of the mailbox the customer wrote to. The body comes from Jinja2 templates
(``reply.txt``/``reply.html``, ``ack.txt``), looked up first per queue (``queues/<queue>/reply.txt``) in
``SWITCHBOARD_EMAIL_TEMPLATES_DIR``, then in the built-in ones. Files the agent attached travel as MIME
attachments, read from the shared file store.

Errors: a 5xx answer is permanent (``DeliveryError(permanent=True)``: the dispatcher marks the message
failed); a refused connection, a timeout or a 4xx answer is temporary and retried with backoff.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import aiosmtplib
import jinja2
from pydantic import SecretStr

from hub.config import MailboxSettings, Settings
from hub.db import utcnow
from hub.files import StoredFileMissing
from hub.messages import Attachment, DeliveryError, DeliveryResult, OutboundMessage

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
MAX_REFERENCES_OUT = 20


class Templates:
    """The reply and acknowledgement layouts; per-queue overrides win over the defaults."""

    def __init__(self, directory: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if directory is not None:
            loaders.append(jinja2.FileSystemLoader(str(directory)))
        loaders.append(jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)))
        self.text_env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders), autoescape=False, keep_trailing_newline=True
        )
        self.html_env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True)

    def render(self, template: str, queue: str | None, *, html: bool = False, **context: Any) -> str:
        env = self.html_env if html else self.text_env
        names = [f"queues/{queue}/{template}", template] if queue else [template]
        return env.select_template(names).render(**context)


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


def reply_subject(subject: str, ticket_id: int) -> str:
    """A reply's subject: the ticket's, tagged ``[#N]`` (how an answer that lost its headers finds its ticket),
    with one ``Re:``."""
    tag = f"[#{ticket_id}]"
    base = subject or "Your request"
    if tag not in base:
        base = f"{base} {tag}"
    return base if base.lower().startswith("re:") else f"Re: {base}"


class ReplyHeaders:
    """The email channel's ``hub.messages.ReplyHook``: as the core stores an agent's reply by email, it gets our
    Message-ID (stored as the message's external id, so the copy fetched back over IMAP is recognized as ours,
    and a retried delivery sends the same id), the ticket's subject tagged ``[#N]``, and In-Reply-To: the
    message it answers, the last of its References (none for a conversation moved here from another
    channel)."""

    def __init__(self, domain: str) -> None:
        self.domain = domain

    def __call__(self, reply: OutboundMessage, *, ticket_subject: str) -> None:
        reply.external_id = new_message_id(self.domain)
        reply.subject = reply_subject(ticket_subject, reply.ticket_id)
        reply.in_reply_to = reply.references[-1] if reply.references else None


def build_reply(
    out: OutboundMessage,
    box: MailboxSettings,
    templates: Templates,
    *,
    domain: str,
    quote: Mapping[str, Any] | None = None,
    files: Sequence[tuple[Attachment, bytes]] = (),
) -> EmailMessage:
    """The mail for an agent's reply; ``quote`` (text, sender, date) is the message it answers; ``files`` the
    attachments with their bytes."""
    quote = dict(quote or {})
    if quote.get("text"):
        who = quote.get("sender") or "you"
        quote["intro"] = f"On {quote['date']}, {who} wrote:" if quote.get("date") else f"{who} wrote:"
    context: dict[str, Any] = {
        "text": out.text,
        "agent_name": out.agent_name,
        "ticket_id": out.ticket_id,
        "quote": quote,
    }
    msg = EmailMessage()
    msg["From"] = formataddr((out.agent_name or "", box.address))
    msg["To"] = out.recipient
    msg["Subject"] = out.subject or f"Re: your request [#{out.ticket_id}]"
    msg["Message-ID"] = out.external_id or new_message_id(domain)
    msg["Date"] = format_datetime(utcnow())
    refs = [r for r in out.references if r][-MAX_REFERENCES_OUT:]
    if out.in_reply_to:
        msg["In-Reply-To"] = out.in_reply_to
        if out.in_reply_to not in refs:
            refs.append(out.in_reply_to)
    if refs:
        msg["References"] = " ".join(refs)
    msg["X-Switchboard-Ticket"] = str(out.ticket_id)
    msg.set_content(templates.render("reply.txt", box.queue, **context))
    msg.add_alternative(templates.render("reply.html", box.queue, html=True, **context), subtype="html")
    for attachment, data in files:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream", filename=attachment.filename)
    return msg


def build_ack(
    *,
    box: MailboxSettings,
    recipient: str,
    name: str | None,
    subject: str | None,
    ticket_id: int,
    in_reply_to: str,
    templates: Templates,
    domain: str,
) -> EmailMessage:
    """The automatic acknowledgement of a new ticket; marked so other robots do not answer it."""
    base = subject or "Your request"
    tag = f"[#{ticket_id}]"
    msg = EmailMessage()
    msg["From"] = box.address
    msg["To"] = recipient
    msg["Subject"] = f"{base} {tag}" if tag not in base else base
    msg["Message-ID"] = new_message_id(domain)
    msg["Date"] = format_datetime(utcnow())
    msg["In-Reply-To"] = in_reply_to
    msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["Precedence"] = "auto_reply"
    msg["X-Switchboard-Ticket"] = str(ticket_id)
    msg.set_content(templates.render("ack.txt", box.queue, name=name, ticket_id=ticket_id, subject=base))
    return msg


async def deliver(box: MailboxSettings, msg: EmailMessage, *, timeout_seconds: float = 60.0) -> None:
    """Hand ``msg`` to the mailbox's SMTP server; raise ``DeliveryError`` (permanent for 5xx)."""
    try:
        await aiosmtplib.send(
            msg,
            hostname=box.smtp_host,
            port=box.smtp_port,
            username=box.smtp_username or None,
            password=box.smtp_password.get_secret_value() if box.smtp_password else None,
            use_tls=box.smtp_security == "tls",
            start_tls=True if box.smtp_security == "starttls" else False,
            timeout=timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        raise DeliveryError(f"recipient refused: {detail}", permanent=all(500 <= c < 600 for c in codes)) from exc
    except aiosmtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.code}: {exc.message}", permanent=500 <= exc.code < 600) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from exc


def outgoing_mailbox(settings: Settings) -> MailboxSettings | None:
    """The send-only server for replies when no mailbox is configured (``SWITCHBOARD_OUTGOING_SMTP_HOST``; the
    demo points it at its mail catcher), as a mailbox without IMAP: it is never polled, only sent through."""
    if not settings.outgoing_smtp_host:
        return None
    return MailboxSettings(
        name="outgoing",
        address=settings.outgoing_email_from or f"support@{settings.mail_domain}",
        queue="-",
        imap_host="-",
        username="-",
        password=SecretStr("-"),
        smtp_host=settings.outgoing_smtp_host,
        smtp_port=settings.outgoing_smtp_port,
        smtp_security="none",
    )


class SmtpSender:
    """Delivers email replies through the SMTP server of the mailbox the customer wrote to."""

    def __init__(
        self,
        *,
        mailboxes: Callable[[], Mapping[str, MailboxSettings]],
        templates: Templates,
        domain: str,
        timeout: float,
        quote: Callable[[str], Awaitable[Mapping[str, Any] | None]] | None = None,
        outgoing: MailboxSettings | None = None,
        files: Callable[[str], bytes] | None = None,
    ) -> None:
        self._mailboxes = mailboxes
        self._files = files  # a stored file's bytes by its SHA-256 (``hub.files.FileStore.get``)
        self._outgoing = outgoing
        self._quote = quote
        self.templates = templates
        self.domain = domain
        self.timeout = timeout

    def mailbox_for(self, address: str | None) -> MailboxSettings:
        boxes = self._mailboxes()
        by_address = {b.address.lower(): b for b in boxes.values()}
        if address and address.lower() in by_address:
            return by_address[address.lower()]
        if not boxes and self._outgoing is not None:
            return self._outgoing
        if not boxes:
            raise DeliveryError(
                "no mailbox is configured to send email from (SWITCHBOARD_MAILBOXES, the email admin API, or "
                "SWITCHBOARD_OUTGOING_SMTP_HOST)",
                permanent=True,
            )
        return next(iter(boxes.values()))

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        box = self.mailbox_for(message.sender_address)
        quote = await self._quote(message.in_reply_to) if self._quote and message.in_reply_to else None
        files = await asyncio.to_thread(self._attached, message.attachments)
        msg = build_reply(message, box, self.templates, domain=self.domain, quote=quote, files=files)
        await deliver(box, msg, timeout_seconds=self.timeout)
        return DeliveryResult(provider_id=str(msg["Message-ID"]))

    def _attached(self, attachments: Sequence[Attachment]) -> list[tuple[Attachment, bytes]]:
        """The attachments' bytes; one no longer stored (erased meanwhile) fails the delivery for good."""
        out: list[tuple[Attachment, bytes]] = []
        for attachment in attachments:
            if attachment.sha256 is None or self._files is None:
                raise DeliveryError(f"attachment {attachment.filename!r} has no stored file", permanent=True)
            try:
                out.append((attachment, self._files(attachment.sha256)))
            except StoredFileMissing:
                raise DeliveryError(f"attachment {attachment.filename!r} is no longer stored", permanent=True) from None
        return out
