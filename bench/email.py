"""Email in, end to end: N mails appended to a real Dovecot over IMAP, then one mailbox worker fetches,
parses, stores (attachments and raw mail on disk) and commits them as tickets through the real ingest
pipeline. Prints messages/s from "all appended, worker started" to "all committed" (SQLite WAL with
synchronous=FULL; PostgreSQL with synchronous_commit on).

    .venv/bin/python bench/email.py [--messages 2000] [--db sqlite,postgres] [--database-url URL]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path and "email.py" would shadow the standard
# library's email package: put the repository root there instead.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE), *(p for p in sys.path if os.path.abspath(p or ".") != _HERE)]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from pydantic import SecretStr  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench._common import PG_DEFAULT, fresh_database  # noqa: E402
from channels.email.service import EmailService  # noqa: E402
from hub.config import MailboxSettings, Settings  # noqa: E402
from hub.runtime import standalone  # noqa: E402
from tests.channels.email.servers import Dovecot, imap_append  # noqa: E402
from ticketing import tables  # noqa: E402
from ticketing.ingest import IngestPipeline  # noqa: E402
from ticketing.models import QueueCreate  # noqa: E402
from ticketing.ports import register_ports  # noqa: E402
from ticketing.queues import create_queue  # noqa: E402


def mails(n: int) -> list[bytes]:
    """Realistic small mails: a third are replies to earlier ones, one in ten carries an attachment."""
    out = []
    for i in range(n):
        person = i % max(1, n // 3)
        headers = [
            f"From: Person {person} <person{person}@example.com>",
            "To: support@example.org",
            f"Subject: Question {i}",
            f"Message-ID: <bench-{i}@example.com>",
            "Date: Mon, 23 Nov 2026 07:00:00 +0000",
            "MIME-Version: 1.0",
        ]
        if i >= n // 3:
            headers.append(f"In-Reply-To: <bench-{i - n // 3}@example.com>")
        body = f"Hello, this is mail {i}. " * 20
        if i % 10 == 0:
            raw = "\r\n".join(
                [
                    *headers,
                    'Content-Type: multipart/mixed; boundary="b"',
                    "",
                    "--b",
                    "Content-Type: text/plain; charset=utf-8",
                    "",
                    body,
                    "--b",
                    'Content-Type: application/pdf; name="invoice.pdf"',
                    'Content-Disposition: attachment; filename="invoice.pdf"',
                    "Content-Transfer-Encoding: base64",
                    "",
                    "JVBERi0xLjQK" * 40,
                    "--b--",
                    "",
                ]
            )
        else:
            raw = "\r\n".join([*headers, "Content-Type: text/plain; charset=utf-8", "", body, ""])
        out.append(raw.encode())
    return out


async def append_all(port: int, raws: list[bytes], connections: int = 8) -> None:
    chunks = [raws[i::connections] for i in range(connections)]
    await asyncio.gather(*(imap_append(port, "support", "secret", chunk) for chunk in chunks))


async def run(url: str, n: int, dovecot: Dovecot, attachments: Path, batch: int) -> dict[str, float]:
    box = MailboxSettings(
        name="support",
        address="support@example.org",
        queue="support",
        imap_host="127.0.0.1",
        imap_port=dovecot.port,
        imap_tls=False,
        username="support",
        password=SecretStr("secret"),
        smtp_host="127.0.0.1",
        smtp_port=25,
        smtp_security="none",
    )
    settings = Settings(
        database_url=url,
        mailboxes=[box],
        attachment_dir=attachments,
        email_fetch_batch=batch,
        _env_file=None,  # type: ignore[call-arg]
    )
    raws = mails(n)
    t0 = time.perf_counter()
    await append_all(dovecot.port, raws)
    appended = time.perf_counter() - t0
    async with standalone(settings) as rt:
        register_ports(rt)
        await create_queue(rt, data=QueueCreate(name="support", channels=["email"]))
        pipeline = IngestPipeline(rt)
        await pipeline.start()
        channel = EmailService(rt, pipeline.submit)
        start = time.perf_counter()
        await channel.start()
        first = None
        try:
            while True:
                async with rt.read() as conn:
                    count = (await conn.execute(select(func.count()).select_from(tables.messages))).scalar_one()
                if count and first is None:
                    first = time.perf_counter() - start
                if count >= n:
                    break
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - start
            async with rt.read() as conn:
                tickets = (await conn.execute(select(func.count()).select_from(tables.tickets))).scalar_one()
        finally:
            await channel.stop()
            await pipeline.stop()
    return {
        "append_s": appended,
        "elapsed_s": elapsed,
        "first_s": first or 0.0,
        "rate": n / elapsed,
        "tickets": tickets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--db", default="sqlite", help="comma-separated: sqlite, postgres")
    parser.add_argument("--database-url", default=PG_DEFAULT, help="PostgreSQL server for --db postgres")
    parser.add_argument("--batch", type=int, default=200, help="UIDs fetched per IMAP round trip")
    args = parser.parse_args()
    print(f"email ingest: {args.messages} mails appended to Dovecot, then fetched and committed by one worker")
    for kind in args.db.split(","):
        dovecot = Dovecot(users={"support": "secret"}).start()
        try:
            with fresh_database(kind, args.database_url) as url, tempfile.TemporaryDirectory() as tmp:
                r = asyncio.run(run(url, args.messages, dovecot, Path(tmp), args.batch))
        finally:
            dovecot.stop()
        print(
            f"  {kind:8} appended in {r['append_s']:.1f} s; ingested {args.messages} mails "
            f"({r['tickets']} tickets) in {r['elapsed_s']:.2f} s = {r['rate']:.0f} messages/s "
            f"(first committed after {r['first_s'] * 1000:.0f} ms)"
        )


if __name__ == "__main__":
    main()
