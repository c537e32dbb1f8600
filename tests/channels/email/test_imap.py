"""IMAP in against a real Dovecot: IDLE latency, threading, restarts, crashes, UIDVALIDITY, failing mailboxes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select, update

from channels.email.imap import by_budget
from channels.email.models import QT, S
from hub.config import Settings
from hub.db import Database
from hub.metrics import Metrics
from hub.principals import Principal
from hub.runtime import Runtime
from tests.channels.email.conftest import SUPPORT, Mail, mailbox, message, start_mail, wait_until
from tests.channels.email.servers import Dovecot, SmtpServer
from tests.conftest import make_agent, make_queue
from ticketing import tables
from ticketing.models import TicketStatus, TicketUpdate
from ticketing.replies import reply
from ticketing.ticket_updates import update_ticket

ROOT = Path(__file__).parents[3]
ADMIN = Principal(agent_id=0, username="root", display_name="Root", role="admin", queue_ids=frozenset())


async def test_appended_mail_becomes_a_ticket_within_two_seconds_through_idle(mail: Mail) -> None:
    """With the worker IDLE, a mail delivered to the mailbox is a committed ticket in under 2 s."""
    await mail.wait_connected()
    worker = mail.channel.worker("support")
    assert worker is not None and worker.idle_supported
    await asyncio.sleep(0.2)  # let the worker enter IDLE
    start = time.monotonic()
    await mail.append(message("<first@example.com>"))
    await wait_until(lambda: _has_ticket(mail), timeout=5, what="the ticket")
    assert time.monotonic() - start < 2.0
    [ticket] = await mail.rows(select(tables.tickets))
    assert ticket.channel == "email" and ticket.subject == "Printer on fire"
    [msg] = await mail.rows(select(tables.messages))
    assert msg.external_id == "<first@example.com>" and msg.recipient == SUPPORT
    assert msg.meta["mailbox"] == "support" and msg.meta["raw_sha256"]
    [queue] = await mail.rows(select(tables.queues.c.id).where(tables.queues.c.name == "support"))
    assert ticket.queue_id == queue.id


async def _has_ticket(mail: Mail) -> bool:
    return await mail.count(tables.tickets) > 0


async def test_agent_reply_carries_threading_headers_and_the_customer_answer_threads_back(mail: Mail) -> None:
    """The reply leaves over SMTP with our Message-ID, In-Reply-To, References, [#N] and the mailbox's From,
    quoting the customer; the customer's answer to it lands in the same ticket, not a new one."""
    await mail.wait_connected()
    await mail.append(message("<q1@example.com>", body="My printer is on fire."))
    await wait_until(lambda: _has_ticket(mail), what="the ticket")
    [ticket] = await mail.rows(select(tables.tickets))
    agent_id = await make_agent(mail.rt, "zoe", queues=["support"])
    agent = Principal(agent_id=agent_id, username="zoe", display_name="Zoe", role="admin", queue_ids=frozenset())
    sent = await reply(mail.rt, ticket_id=ticket.id, principal=agent, text="Unplug it, please.")
    await wait_until(lambda: _captured(mail, 1), what="the reply at the SMTP server")
    out = message_from_bytes(mail.smtp.handler.messages[0].data, policy=policy.default)
    assert out["Message-ID"] == sent.external_id
    assert out["In-Reply-To"] == "<q1@example.com>"
    assert "<q1@example.com>" in out["References"]
    assert f"[#{ticket.id}]" in out["Subject"]
    assert SUPPORT in out["From"]
    assert mail.smtp.handler.messages[0].recipients == ["ann@example.com"]
    body = out.get_body(preferencelist=("plain",)).get_content()
    assert "Unplug it, please." in body and "> My printer is on fire." in body
    await wait_until(lambda: _status(mail, sent.id, "sent"), what="delivery status sent")

    answer = message(
        "<q2@example.com>",
        subject=f"Re: {out['Subject']}",
        body="Done, thanks.",
        headers={"In-Reply-To": sent.external_id, "References": f"<q1@example.com> {sent.external_id}"},
    )
    await mail.append(answer)
    await wait_until(lambda: _messages(mail, 3), what="the answer")
    assert await mail.count(tables.tickets) == 1
    # Our own reply fetched back (a Bcc to the mailbox) is recognized as already stored.
    await mail.append(mail.smtp.handler.messages[0].data)
    await mail.append(message("<q3@example.com>", subject="unrelated, new"))
    await wait_until(lambda: _messages(mail, 4), what="the next mail")
    assert await mail.count(tables.messages) == 4


async def _captured(mail: Mail, n: int) -> bool:
    return len(mail.smtp.handler.messages) >= n


async def _messages(mail: Mail, n: int) -> bool:
    return await mail.count(tables.messages) >= n


async def _status(mail: Mail, message_id: int, status: str) -> bool:
    return (
        await mail.count(
            tables.messages, tables.messages.c.id == message_id, tables.messages.c.delivery_status == status
        )
        == 1
    )


async def test_subject_tag_threads_only_when_the_sender_takes_part(mail: Mail) -> None:
    """[#N] in the subject joins ticket N for its customer; a stranger naming the same number opens a new
    ticket instead of reading or writing into someone else's conversation."""
    await mail.wait_connected()
    await mail.append(message("<t1@example.com>"))
    await wait_until(lambda: _has_ticket(mail), what="the ticket")
    [ticket] = await mail.rows(select(tables.tickets))
    await update_ticket(mail.rt, ticket_id=ticket.id, principal=ADMIN, data=TicketUpdate(status=TicketStatus.SOLVED))
    await mail.append(
        message("<t2@example.com>", sender="eve@example.net", subject=f"Re: [#{ticket.id}] let me in"),
        message("<t3@example.com>", subject=f"More on [#{ticket.id}]"),
    )
    await wait_until(lambda: _messages(mail, 3), what="both mails")
    rows = {r.external_id: r.ticket_id for r in await mail.rows(select(tables.messages))}
    assert rows["<t3@example.com>"] == ticket.id  # Ann is in ticket N: threads, and reopens it
    assert rows["<t2@example.com>"] != ticket.id
    [reopened] = await mail.rows(select(tables.tickets.c.status).where(tables.tickets.c.id == ticket.id))
    assert reopened.status == TicketStatus.OPEN


async def test_answer_to_a_closed_ticket_opens_a_new_one_linked_to_it(mail: Mail) -> None:
    """A closed ticket stays closed; the customer's answer opens a new ticket that links back to it."""
    await mail.wait_connected()
    await mail.append(message("<c1@example.com>"))
    await wait_until(lambda: _has_ticket(mail), what="the ticket")
    [ticket] = await mail.rows(select(tables.tickets))
    await update_ticket(mail.rt, ticket_id=ticket.id, principal=ADMIN, data=TicketUpdate(status=TicketStatus.CLOSED))
    await mail.append(message("<c2@example.com>", headers={"In-Reply-To": "<c1@example.com>"}))
    await wait_until(lambda: _messages(mail, 2), what="the answer")
    tickets = {t.id: t for t in await mail.rows(select(tables.tickets))}
    assert len(tickets) == 2
    [new] = [t for t in tickets.values() if t.id != ticket.id]
    assert new.linked_ticket_id == ticket.id and tickets[ticket.id].status == TicketStatus.CLOSED


async def test_restart_resumes_after_the_last_committed_uid(rt: Runtime, dovecot: Dovecot, smtp: SmtpServer) -> None:
    """Mail that arrives while no worker runs is fetched on restart; nothing is ingested twice."""
    await make_queue(rt, "support", ["email"])
    first = await start_mail(rt, dovecot, smtp)
    await first.wait_connected()
    await first.append(*(message(f"<r{i}@example.com>", sender=f"r{i}@example.com") for i in range(5)))
    await wait_until(lambda: _messages(first, 5), what="five messages")
    await first.stop()
    await first.append(*(message(f"<r{i}@example.com>", sender=f"r{i}@example.com") for i in range(5, 12)))
    second = await start_mail(rt, dovecot, smtp)
    try:
        await second.wait_connected()
        await wait_until(lambda: _messages(second, 12), what="twelve messages")
        await asyncio.sleep(0.2)
        assert await second.count(tables.messages) == 12
        [state] = await second.rows(select(S))
        assert state.last_uid == 12
    finally:
        await second.stop()


async def test_changed_uidvalidity_rescans_without_duplicates(mail: Mail) -> None:
    """When the server's UIDVALIDITY differs from the stored one, the worker reads the folder again from
    the start and ingest's Message-ID dedupe keeps every mail single."""
    await mail.wait_connected()
    await mail.append(*(message(f"<u{i}@example.com>") for i in range(4)))
    await wait_until(lambda: _messages(mail, 4), what="four messages")
    await mail.channel.stop()
    async with mail.rt.db.begin() as conn:
        await conn.execute(update(S).values(uidvalidity=1, last_uid=999))
    await mail.channel.start()
    await mail.wait_connected()
    await mail.append(message("<u-new@example.com>"))
    await wait_until(lambda: _messages(mail, 5), what="the new message")
    [state] = await mail.rows(select(S))
    assert state.uidvalidity != 1 and state.last_uid == 5
    assert await mail.count(tables.messages) == 5


async def test_a_failing_mailbox_never_stops_the_others(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    """A mailbox with a wrong password keeps retrying on its own while the other mailbox works normally."""
    broken = mailbox(dovecot, smtp, name="broken", username="sales", password="wrong", address="sales@example.org")
    sales = mailbox(dovecot, smtp, name="sales", username="sales", password="secret2", address="sales@example.org")
    rt.settings = settings.model_copy(update={"mailboxes": [broken, *settings.mailboxes, sales]})
    await make_queue(rt, "support", ["email"])
    mail = await start_mail(rt, dovecot, smtp)
    try:
        await mail.wait_connected("support")
        await mail.wait_connected("sales")
        await mail.append(message("<ok@example.com>"))
        await mail.append(message("<sales@example.com>", sender="bob@example.com"), user="sales", password="secret2")
        await wait_until(lambda: _messages(mail, 2), what="mail of both working mailboxes")
        worker = mail.channel.worker("broken")
        assert worker is not None and not worker.connected
        assert worker.last_error and "login" in worker.last_error.lower()
    finally:
        await mail.stop()


async def test_polling_when_the_server_offers_no_idle(rt: Runtime, settings: Settings, smtp: SmtpServer) -> None:
    """Against a server without IDLE the worker polls, and mail still arrives."""
    server = Dovecot(users={"support": "secret"}, capability="IMAP4rev1 LITERAL+ UIDPLUS").start()
    try:
        rt.settings = settings.model_copy(update={"mailboxes": [mailbox(server, smtp)]})
        await make_queue(rt, "support", ["email"])
        mail = await start_mail(rt, server, smtp)
        try:
            await mail.wait_connected()
            worker = mail.channel.worker("support")
            assert worker is not None and worker.idle_supported is False
            await mail.append(message("<poll@example.com>"))
            await wait_until(lambda: _messages(mail, 1), timeout=5, what="the polled message")
        finally:
            await mail.stop()
    finally:
        server.stop()


async def test_a_crash_in_the_middle_of_a_batch_loses_nothing_and_ingests_nothing_twice(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    """A worker process killed with SIGKILL while committing a batch leaves a consistent state: after a restart
    every mail is stored exactly once and the stored position covers them all."""
    await make_queue(rt, "support", ["email"])
    total = 400
    await Mail(rt, None, None, None, dovecot, smtp).append(  # type: ignore[arg-type]
        *(message(f"<k{i}@example.com>", sender=f"k{i % 40}@example.com") for i in range(total))
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SWITCHBOARD_DATABASE_URL": settings.database_url,
        "SWITCHBOARD_MAILBOXES": json.dumps([{**settings.mailboxes[0].model_dump(mode="json"), "password": "secret"}]),
        "SWITCHBOARD_ATTACHMENT_DIR": str(settings.attachment_dir),
        "SWITCHBOARD_INGEST_BATCH_MAX": "7",
        "SWITCHBOARD_EMAIL_FETCH_BATCH": "60",
    }
    proc = subprocess.Popen([sys.executable, "-m", "tests.channels.email.worker_process"], env=env, cwd=ROOT)
    probe = Mail(rt, None, None, None, dovecot, smtp)  # type: ignore[arg-type]
    try:
        await wait_until(lambda: _messages(probe, 30), timeout=30, what="the worker process to commit some mail")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    stored = await probe.count(tables.messages)
    assert 0 < stored < total, f"the crash should come mid-way, but {stored} of {total} were stored"
    [state] = await probe.rows(select(S))
    assert state.last_uid <= stored  # the position never runs ahead of what is committed

    mail = await start_mail(rt, dovecot, smtp)
    try:
        await wait_until(lambda: _messages(mail, total), timeout=30, what="every message after the restart")
        await asyncio.sleep(0.3)
        ids = [r.external_id for r in await mail.rows(select(tables.messages.c.external_id))]
        assert len(ids) == total and len(set(ids)) == total
        [state] = await mail.rows(select(S))
        assert state.last_uid == total
        assert await mail.count(QT) == 0
    finally:
        await mail.stop()


async def test_the_worker_reconnects_after_the_imap_server_goes_away(mail: Mail) -> None:
    """When the IMAP server dies the worker notices (even in IDLE), retries with backoff, and picks up where it
    left off once the server is back."""
    await mail.wait_connected()
    await mail.append(message("<before@example.com>"))
    await wait_until(lambda: _messages(mail, 1), what="the first mail")
    worker = mail.channel.worker("support")
    assert worker is not None
    mail.dovecot.kill()

    async def noticed() -> bool:
        return not worker.connected

    await wait_until(noticed, what="the worker to notice the dead server")
    mail.dovecot.start()
    worker.caught_up.clear()
    await mail.wait_connected(timeout=15)
    await mail.append(message("<after@example.com>"))
    await wait_until(lambda: _messages(mail, 2), what="the mail after the restart")
    assert await mail.count(tables.messages) == 2


async def test_with_several_processes_each_mailbox_is_fetched_by_one_leader(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer, is_postgres: bool
) -> None:
    """On PostgreSQL two processes (here: two runtimes with their own connection pools) elect one worker per
    mailbox with an advisory lock; when the leader stops, the other takes over and nothing is fetched twice."""
    if not is_postgres:
        pytest.skip("leader election needs PostgreSQL advisory locks; SQLite runs a single process")
    await make_queue(rt, "support", ["email"])
    other_rt = Runtime(settings=settings, db=Database(settings.database_url), events=rt.events, metrics=Metrics())
    first = await start_mail(rt, dovecot, smtp)
    try:
        await first.wait_connected()
        second = await start_mail(other_rt, dovecot, smtp)
        try:
            await asyncio.sleep(3 * settings.email_election_seconds)
            standby = second.channel.worker("support")
            assert standby is not None and not standby.connected
            await first.append(*(message(f"<l{i}@example.com>") for i in range(5)))
            await wait_until(lambda: _messages(first, 5), what="the leader's mail")
            await first.stop()
            await second.wait_connected(timeout=10)
            await second.append(*(message(f"<l{i}@example.com>") for i in range(5, 8)))
            await wait_until(lambda: _messages(second, 8), what="the new leader's mail")
            await asyncio.sleep(0.3)
            assert await second.count(tables.messages) == 8
        finally:
            await second.stop()
    finally:
        await first.stop()
        await other_rt.db.dispose()


async def test_one_mail_sent_to_two_of_our_mailboxes_is_stored_once(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    """A customer who writes to support@ and sales@ at once gets one message, not two (dedupe on the
    Message-ID across mailboxes)."""
    sales = mailbox(dovecot, smtp, name="sales", username="sales", password="secret2", address="sales@example.org")
    rt.settings = settings.model_copy(update={"mailboxes": [*settings.mailboxes, sales]})
    await make_queue(rt, "support", ["email"])
    mail = await start_mail(rt, dovecot, smtp)
    try:
        await mail.wait_connected("support")
        await mail.wait_connected("sales")
        both = message("<both@example.com>", headers={"Cc": "sales@example.org"})
        await mail.append(both)
        await mail.append(both, user="sales", password="secret2")

        async def both_fetched() -> bool:
            states = {r.mailbox: r.last_uid for r in await mail.rows(select(S))}
            return states.get("support") == 1 and states.get("sales") == 1

        await wait_until(both_fetched, what="both mailboxes to fetch the mail")
        assert await mail.count(tables.messages) == 1
    finally:
        await mail.stop()


async def test_idle_is_renewed_periodically_and_mail_still_arrives(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    """IDLE ends after email_idle_seconds (servers drop IDLE after 30 minutes) and is entered again; mail
    arriving after several renewals is still picked up."""
    rt.settings = settings.model_copy(update={"email_idle_seconds": 0.2})
    await make_queue(rt, "support", ["email"])
    mail = await start_mail(rt, dovecot, smtp)
    try:
        await mail.wait_connected()
        await asyncio.sleep(1.0)
        worker = mail.channel.worker("support")
        assert worker is not None and worker.connected
        await mail.append(message("<late@example.com>"))
        await wait_until(lambda: _messages(mail, 1), timeout=5, what="the mail after IDLE renewals")
    finally:
        await mail.stop()


def test_fetch_chunks_are_bounded_in_bytes() -> None:
    """UIDs are grouped so no round trip fetches more than the budget; a mail over the limit counts as its
    header only; a single mail bigger than the budget still gets a chunk of its own."""
    sizes = {1: 40, 2: 40, 3: 40, 4: 500, 5: 90, 6: 10}
    assert by_budget([1, 2, 3, 4, 5, 6], sizes, budget=100, limit=200) == [[1, 2], [3, 4], [5, 6]]
    assert by_budget([1, 5], {1: 150, 5: 150}, budget=100, limit=200) == [[1], [5]]


async def test_a_failed_connection_is_logged_once_as_a_warning(
    rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A mailbox whose server refuses the connection logs a warning per attempt and retries; no error with a
    traceback claiming its session "failed while stopping" (the session had ended by itself)."""
    from channels.email.imap import MailboxWorker
    from hub.config import MailboxSettings
    from hub.files import FileStore
    from tests.conftest import free_port

    box = MailboxSettings.model_validate(
        {
            "name": "refused",
            "address": "refused@example.com",
            "queue": "support",
            "imap_host": "127.0.0.1",
            "imap_port": free_port(),  # nothing listens there
            "imap_tls": False,
            "username": "u",
            "password": "p",
            "smtp_host": "127.0.0.1",
        }
    )

    async def never(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("nothing can be ingested")

    worker = MailboxWorker(box, rt=rt, ingest=never, store=FileStore(tmp_path), own_addresses=lambda: [])
    caplog.set_level("WARNING")
    task = asyncio.create_task(worker.run())

    async def failed() -> bool:
        return worker.last_error is not None

    try:
        await wait_until(failed, what="the refused connection")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert any("refused" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records), caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
