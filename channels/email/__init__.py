"""The email channel: IMAP in (IDLE, exactly once), SMTP out through the outbox.

::

    parse.py    raw bytes -> ParsedMail (InboundMessage + attachments + loop facts); pure but for storage
    loop.py     is this mail automatic (auto-reply, list, bulk, bounce, ours)? pure
    storage.py  content-addressed files for attachments and raw messages
    imap.py     one worker per mailbox: IDLE or poll, exactly-once bookkeeping, reconnect with backoff
    smtp.py     the Sender for channel "email": templates, threading headers, 5xx = permanent
    service.py  EmailChannel: workers, leader election, auto-acknowledgements, quarantine, mailbox CRUD
    views.py    /api/email/... for admins

Exceptions: ``EmailError`` (hub.errors.SwitchboardError) with ``QuarantineNotFound`` and
``MailboxNotFound`` (404) and ``MailboxNameTaken`` (409); parse failures raise ``MailParseError`` (a plain
``Exception``: it never reaches HTTP, it sends the mail to quarantine).
"""
