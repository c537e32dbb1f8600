"""The demo's outgoing mail server: a local SMTP catcher (aiosmtpd) that keeps every message it is handed as a
file, so `switchboard demo` shows the whole email loop (``/demo/mailbox``) without sending anything anywhere.

``MailCatcher(directory).start()`` listens on 127.0.0.1 on a free port (``.port``) in a thread of its own;
``read_mailbox(directory)`` answers what it caught, newest first. The files are plain RFC 5322 messages
(``<time>-<n>.eml``), readable by any mail client.
"""

from __future__ import annotations

import itertools
import socket
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

MAILBOX_LIMIT = 200  # messages read_mailbox answers, newest first


@dataclass(frozen=True, slots=True)
class CaughtMail:
    """One message the catcher was handed, as the mailbox page shows it."""

    name: str
    sender: str
    recipients: str
    subject: str
    date: str
    text: str


class _Keep:
    """aiosmtpd handler: write each message to the directory, accept it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._n = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        name = f"{time.time_ns()}-{next(self._n)}.eml"
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)  # whole files only: the page never reads half a message
        return "250 Message accepted for delivery"


class MailCatcher:
    """An SMTP server on 127.0.0.1 that keeps what it receives in ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.directory = directory
        self.host = host
        self.port = port or _free_port(host)
        self._controller: Any = None

    def start(self) -> MailCatcher:
        from aiosmtpd.controller import Controller

        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(_Keep(self.directory), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def read_mailbox(directory: Path | None, *, limit: int = MAILBOX_LIMIT) -> list[CaughtMail]:
    """The messages in ``directory``, newest first (none when it is unset or missing)."""
    if directory is None or not directory.is_dir():
        return []
    files = sorted(directory.glob("*.eml"), key=lambda p: _order(p.name), reverse=True)[:limit]
    return [_read(p) for p in files]


def _order(name: str) -> tuple[int, int]:
    stamp, _, n = name.removesuffix(".eml").partition("-")
    return (int(stamp) if stamp.isdigit() else 0, int(n) if n.isdigit() else 0)


def _read(path: Path) -> CaughtMail:
    try:
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    except (OSError, ValueError):
        return CaughtMail(path.name, "", "", "(unreadable message)", "", "")
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain", "html"))
    try:
        text = body.get_content() if body is not None else ""
    except (LookupError, ValueError):
        text = ""
    return CaughtMail(
        name=path.name,
        sender=str(msg.get("From", "")),
        recipients=str(msg.get("To", "")),
        subject=str(msg.get("Subject", "")),
        date=str(msg.get("Date", "")),
        text=str(text)[:20_000],
    )
