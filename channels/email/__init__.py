"""The email channel: IMAP in (IDLE, exactly once), SMTP out through the outbox.

::

    parse.py    raw bytes -> ParsedMail (InboundMessage + attachments + loop facts); pure but for storage
    loop.py     is this mail automatic (auto-reply, list, bulk, bounce, ours)? pure
    imap.py     one worker per mailbox: IDLE or poll, exactly-once bookkeeping, reconnect with backoff
    smtp.py     the Sender for channel "email": templates, threading headers, 5xx = permanent
    models.py   the channel's tables (mailboxes, their IMAP state, quarantine, automatic replies) and schemas
    service.py  EmailService: workers, leader election, auto-acknowledgements, quarantine, mailbox CRUD
    views.py    /api/email/... for admins, stored attachments for agents
    channel.py  EmailChannel: the channels.base.Channel the hub runs

Attachments and raw mails are kept in the hub's content-addressed store (``hub.files``).

Exceptions (``hub.errors.SwitchboardError`` subclasses): ``QuarantineNotFound``, ``MailboxNotFound`` and
``AttachmentNotFound`` (404), ``MailboxNameTaken`` and ``MailboxReadOnly`` (409), ``InvalidMailbox`` (422);
parse failures raise ``MailParseError`` (a plain ``Exception``: it never reaches HTTP, it sends the mail to
quarantine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from channels.base import Channel
    from hub.config import Settings


def create_channel(settings: Settings) -> Channel:
    """The email channel (``hub/app.py``'s registry builds it through this)."""
    from channels.email.channel import EmailChannel

    return EmailChannel(settings)
