"""Fixtures for the email channel: a real Dovecot (IMAP) and a real aiosmtpd (SMTP) per test, settings with a
mailbox pointing at them, and a running ``EmailService`` with its ingest pipeline and outbox dispatcher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from channels.email.service import EmailService
from hub.config import MailboxSettings, Settings
from hub.runtime import Runtime
from tests.channels.email.servers import Dovecot, SmtpServer, dovecot_available, imap_append
from ticketing.ingest import IngestPipeline
from ticketing.outbox import OutboxDispatcher

FIXTURES = Path(__file__).parents[2] / "fixtures" / "email"
SUPPORT = "support@example.org"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_available():
        pytest.skip("Debian's dovecot-imapd is not installed (scripts/test installs it)")
    server = Dovecot(users={"support": "secret", "sales": "secret2"}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def mailbox(dovecot: Dovecot, smtp: SmtpServer, **overrides: Any) -> MailboxSettings:
    data: dict[str, Any] = {
        "name": "support",
        "address": SUPPORT,
        "queue": "support",
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.port,
        "imap_tls": False,
        "username": "support",
        "password": SecretStr("secret"),
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_security": "none",
        **overrides,
    }
    return MailboxSettings(**data)


@pytest.fixture
def settings(settings: Settings, dovecot: Dovecot, smtp: SmtpServer, tmp_path: Path) -> Settings:
    """The suite's settings plus one mailbox on the test servers and short timeouts."""
    return settings.model_copy(
        update={
            "mailboxes": [mailbox(dovecot, smtp)],
            "attachment_dir": tmp_path / "attachments",
            "email_timeout_seconds": 10.0,
            "email_reconnect_max_seconds": 1.0,
            "email_election_seconds": 0.5,
            "email_poll_seconds": 0.2,
        }
    )


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``condition`` until it holds; the seconds it took. Fails the test after ``timeout``."""
    start = time.monotonic()
    while True:
        if await condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Mail:
    """A running email channel on the test servers, and helpers to drive and inspect it."""

    rt: Runtime
    pipeline: IngestPipeline
    channel: EmailService
    dispatcher: OutboxDispatcher
    dovecot: Dovecot
    smtp: SmtpServer

    async def append(self, *raws: bytes, user: str = "support", password: str = "secret") -> None:
        await imap_append(self.dovecot.port, user, password, raws)

    async def count(self, table: Any, *where: Any) -> int:
        async with self.rt.read() as conn:
            stmt = select(func.count()).select_from(table)
            if where:
                stmt = stmt.where(*where)
            return int((await conn.execute(stmt)).scalar_one())

    async def rows(self, stmt: Any) -> list[Any]:
        async with self.rt.read() as conn:
            return list((await conn.execute(stmt)).all())

    async def wait_connected(self, name: str = "support", timeout: float = 10.0) -> None:
        async def ready() -> bool:
            worker = self.channel.worker(name)
            return bool(worker and worker.connected and worker.caught_up.is_set())

        await wait_until(ready, timeout, f"mailbox {name} to connect")

    async def stop(self) -> None:
        await self.channel.stop()
        await self.dispatcher.stop()
        await self.pipeline.stop()


async def start_mail(rt: Runtime, dovecot: Dovecot, smtp: SmtpServer) -> Mail:
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    channel = EmailService(rt, pipeline.submit)
    rt.reply_hooks.update(channel.reply_hooks)
    dispatcher = OutboxDispatcher(rt, channel.senders)
    await dispatcher.start()
    await channel.start()
    return Mail(rt, pipeline, channel, dispatcher, dovecot, smtp)


@pytest.fixture
async def mail(rt: Runtime, dovecot: Dovecot, smtp: SmtpServer) -> AsyncIterator[Mail]:
    from tests.conftest import make_queue

    await make_queue(rt, "support", ["email"])
    running = await start_mail(rt, dovecot, smtp)
    try:
        yield running
    finally:
        await running.stop()


def message(
    message_id: str,
    *,
    sender: str = "ann@example.com",
    subject: str = "Printer on fire",
    body: str = "Please help.",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain mail as a customer's client would send it."""
    lines = [
        f"From: Ann Customer <{sender}>",
        f"To: {SUPPORT}",
        f"Subject: {subject}",
        f"Message-ID: {message_id}",
        "Date: Mon, 23 Nov 2026 07:00:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode()
