"""SMTP out through the outbox against a real aiosmtpd, and loop protection of automatic acknowledgements."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.email.models import AR
from channels.email.service import AUTO_REPLY_LOCK_SPACE
from channels.email.smtp import ReplyHeaders, Templates, build_reply
from hub.config import MailboxSettings, Settings
from hub.db import lock_keys, utcnow
from hub.messages import OutboundMessage
from hub.principals import Principal
from hub.runtime import Runtime, Tx
from tests.channels.email.conftest import Mail, message, start_mail, wait_until
from tests.channels.email.servers import Dovecot, SmtpServer
from tests.conftest import make_agent, make_queue, racing
from ticketing import tables
from ticketing.models import OutboxStatus
from ticketing.replies import reply
from ticketing.tickets import get_ticket


async def _ticket_and_agent(mail: Mail) -> tuple[int, Principal]:
    await mail.wait_connected()
    await mail.append(message("<s1@example.com>"))
    await wait_until(lambda: _count_at_least(mail, tables.tickets, 1), what="the ticket")
    [ticket] = await mail.rows(select(tables.tickets.c.id))
    agent_id = await make_agent(mail.rt, "zoe", queues=["support"])
    return ticket.id, Principal(
        agent_id=agent_id, username="zoe", display_name="Zoe", role="admin", queue_ids=frozenset()
    )


async def _count_at_least(mail: Mail, table: object, n: int, *where: object) -> bool:
    return await mail.count(table, *where) >= n


async def test_smtp_down_then_up_delivers_the_reply_exactly_once(mail: Mail) -> None:
    """While the SMTP server is down the outbox retries with backoff; once it is back the reply is delivered,
    once, and the message is marked sent."""
    ticket_id, agent = await _ticket_and_agent(mail)
    mail.smtp.stop()
    sent = await reply(mail.rt, ticket_id=ticket_id, principal=agent, text="On its way.")

    async def retried() -> bool:
        rows = await mail.rows(select(tables.outbox.c.attempts).where(tables.outbox.c.message_id == sent.id))
        return bool(rows) and rows[0].attempts >= 2

    await wait_until(retried, what="two failed attempts")
    [row] = await mail.rows(select(tables.outbox).where(tables.outbox.c.message_id == sent.id))
    assert row.status == OutboxStatus.PENDING and "unreachable" in (row.last_error or "")
    mail.smtp.start()
    await wait_until(
        lambda: _count_at_least(mail, tables.outbox, 1, tables.outbox.c.status == OutboxStatus.SENT), what="delivery"
    )
    await asyncio.sleep(0.3)  # a second delivery would show up here
    assert len(mail.smtp.handler.messages) == 1
    out = message_from_bytes(mail.smtp.handler.messages[0].data, policy=policy.default)
    assert out["Message-ID"] == sent.external_id
    [msg] = await mail.rows(select(tables.messages).where(tables.messages.c.id == sent.id))
    assert msg.delivery_status == "sent"


async def test_a_permanent_smtp_failure_marks_the_reply_failed_for_the_agent(mail: Mail) -> None:
    """A 5xx answer is not retried: the message is failed with the server's reason, visible on the ticket."""
    ticket_id, agent = await _ticket_and_agent(mail)
    mail.smtp.handler.refuse_with = "554 5.7.1 message rejected as spam"
    sent = await reply(mail.rt, ticket_id=ticket_id, principal=agent, text="Hello")
    await wait_until(
        lambda: _count_at_least(
            mail, tables.messages, 1, tables.messages.c.id == sent.id, tables.messages.c.delivery_status == "failed"
        ),
        what="the failure",
    )
    detail = await get_ticket(mail.rt, ticket_id=ticket_id, principal=agent)
    [failed] = [m for m in detail.messages if m.id == sent.id]
    assert failed.delivery_status == "failed" and "554" in (failed.delivery_error or "")
    [row] = await mail.rows(select(tables.outbox).where(tables.outbox.c.message_id == sent.id))
    assert row.status == OutboxStatus.FAILED and row.attempts == 1


async def test_new_tickets_are_acknowledged_once_and_an_auto_reply_ping_pong_never_starts(
    rt: Runtime, settings: Settings, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    """A person's mail that opens a ticket gets one acknowledgement marked Auto-Submitted; a robot's
    auto-replies to it (marked or not) and mail from lists, bulk senders, bounces or ourselves get none."""
    rt.settings = settings.model_copy(update={"email_ack_queues": ["support"]})
    await make_queue(rt, "support", ["email"])
    mail = await start_mail(rt, dovecot, smtp)
    try:
        await mail.wait_connected()
        await mail.append(message("<p1@example.com>", sender="robot@example.com"))
        await wait_until(lambda: _captured(mail, 1), what="the acknowledgement")
        ack = message_from_bytes(smtp.handler.messages[0].data, policy=policy.default)
        assert ack["Auto-Submitted"] == "auto-replied"
        assert ack["In-Reply-To"] == "<p1@example.com>"
        assert smtp.handler.messages[0].recipients == ["robot@example.com"]
        [ticket] = await mail.rows(select(tables.tickets.c.id))
        assert f"[#{ticket.id}]" in ack["Subject"]

        # The robot answers our acknowledgement, several times, with and without marking itself.
        robot_replies = [
            message(
                f"<p-auto{i}@example.com>",
                sender="robot@example.com",
                subject=f"Re: {ack['Subject']}",
                headers={"In-Reply-To": ack["Message-ID"], **({"Auto-Submitted": "auto-replied"} if i % 2 else {})},
            )
            for i in range(4)
        ]
        automatic = [
            message("<list@example.com>", sender="list-user@example.net", headers={"List-Id": "<x.lists.example>"}),
            message("<bulk@example.com>", sender="news@example.net", headers={"Precedence": "bulk"}),
            message("<daemon@example.com>", sender="MAILER-DAEMON@example.net", subject="Undelivered Mail"),
            message("<ooo@example.com>", sender="boss@example.net", headers={"X-Autoreply": "yes"}),
            message("<own@switchboard.local>", sender="someone@example.net", subject="looks like ours"),
            message("<rp@example.com>", sender="bounce@example.net", headers={"Return-Path": "<>"}),
        ]
        await mail.append(*robot_replies, *automatic)
        await wait_until(lambda: _count_at_least(mail, tables.messages, 11), what="every mail")
        await asyncio.sleep(0.5)  # an acknowledgement would be sent by now
        assert len(smtp.handler.messages) == 1
        assert await mail.count(AR) == 1
        # The robot's answers stayed in its ticket (the subject tag names it and it takes part).
        tickets = {
            r.ticket_id
            for r in await mail.rows(
                select(tables.messages.c.ticket_id).where(tables.messages.c.sender == "robot@example.com")
            )
        }
        assert tickets == {ticket.id}
    finally:
        await mail.stop()


async def _captured(mail: Mail, n: int) -> bool:
    return len(mail.smtp.handler.messages) >= n


async def test_automatic_replies_are_rate_limited_per_recipient(mail: Mail) -> None:
    """However many tickets one address opens, it gets at most the configured number of automatic replies
    per window; other recipients are not affected."""
    limit = mail.rt.settings.email_auto_reply_limit
    results = [await mail.channel.take_auto_reply_slot("loop@example.com", None) for _ in range(limit + 3)]
    assert results == [True] * limit + [False] * 3
    assert await mail.channel.take_auto_reply_slot("other@example.com", None)


async def test_automatic_replies_counted_at_the_same_moment_keep_to_the_limit(mail: Mail) -> None:
    """Another acknowledgement to the same address is being recorded (not committed) when this one counts:
    this one waits for it, counts it, and stays within the limit. PostgreSQL only: SQLite runs one writer
    at a time."""
    rt = mail.rt
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    limit = rt.settings.email_auto_reply_limit
    for _ in range(limit - 1):
        assert await mail.channel.take_auto_reply_slot("loop@example.com", None)

    async def last_slot_elsewhere(tx: Tx) -> None:
        await lock_keys(tx.conn, AUTO_REPLY_LOCK_SPACE, ["loop@example.com"])
        await tx.conn.execute(AR.insert().values(recipient="loop@example.com", ticket_id=None, sent_at=utcnow()))

    assert await racing(rt, last_slot_elsewhere, mail.channel.take_auto_reply_slot("loop@example.com", None)) is False


async def test_a_bounce_attaches_to_the_ticket_of_the_message_it_reports(mail: Mail) -> None:
    """A delivery failure report about one of our replies lands in that reply's ticket, not a new one."""
    ticket_id, agent = await _ticket_and_agent(mail)
    sent = await reply(mail.rt, ticket_id=ticket_id, principal=agent, text="Hello")
    await wait_until(lambda: _captured(mail, 1), what="the reply")
    bounce = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        "To: support@example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nThe mail system: <ann@example.com>: mailbox full\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.com\r\nAction: failed\r\nStatus: 5.2.2\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@example.org\r\nTo: ann@example.com\r\nMessage-ID: {sent.external_id}\r\nSubject: Re: x\r\n"
        "--B--\r\n"
    ).encode()
    await mail.append(bounce)
    await wait_until(lambda: _count_at_least(mail, tables.messages, 3), what="the bounce")
    [stored] = await mail.rows(
        select(tables.messages).where(tables.messages.c.external_id == "<bounce-1@mx.example.com>")
    )
    assert stored.ticket_id == ticket_id and stored.meta.get("bounce") is True
    assert await mail.count(tables.tickets) == 1


def test_templates_are_overridden_per_queue_then_globally(tmp_path: Path) -> None:
    """SWITCHBOARD_EMAIL_TEMPLATES_DIR/queues/<queue>/ack.txt wins for that queue, ack.txt there for the
    others, the built-in layout otherwise."""
    (tmp_path / "queues" / "vip").mkdir(parents=True)
    (tmp_path / "queues" / "vip" / "ack.txt").write_text("VIP #{{ ticket_id }}")
    templates = Templates(tmp_path)
    assert templates.render("ack.txt", "vip", name=None, ticket_id=7) == "VIP #7"
    assert "#7" in templates.render("ack.txt", "support", name=None, ticket_id=7)
    (tmp_path / "ack.txt").write_text("Everyone #{{ ticket_id }}")
    assert Templates(tmp_path).render("ack.txt", "support", name=None, ticket_id=7) == "Everyone #7"


def test_a_reply_quotes_the_message_it_answers_and_escapes_it_in_html() -> None:
    """The text part quotes the customer line by line; the HTML part escapes whatever the customer wrote."""
    box = MailboxSettings(
        name="support",
        address="support@example.org",
        queue="support",
        imap_host="h",
        username="u",
        password="p",  # type: ignore[arg-type]
        smtp_host="h",
    )
    out = OutboundMessage(
        message_id=1,
        ticket_id=9,
        channel="email",
        recipient="ann@example.com",
        text="Thanks!",
        subject="Re: Help [#9]",
        external_id="<ours@switchboard.local>",
        in_reply_to="<theirs@example.com>",
        references=["<first@example.com>"],
        agent_name="Zoe",
    )
    quote = {"text": "line one\n<script>alert(1)</script>", "sender": "ann@example.com", "date": "2026-11-23"}
    msg = build_reply(out, box, Templates(), domain="switchboard.local", quote=quote)
    assert msg["References"] == "<first@example.com> <theirs@example.com>"
    assert msg["From"] == "Zoe <support@example.org>"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert "> line one\n> <script>alert(1)</script>" in text and "ann@example.com wrote:" in text
    html = msg.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_the_channel_sets_a_replys_message_id_subject_tag_and_in_reply_to() -> None:
    """What the email channel adds to a reply as the core stores it (``ReplyHeaders``, its reply hook): our own
    Message-ID on the mail domain, the ticket's subject tagged once with one ``Re:``, and In-Reply-To the message
    it answers (the last of the references the core gave); a chat moved to email answers nothing by id."""
    hook = ReplyHeaders("mail.example.org")
    answering = OutboundMessage(
        message_id=0,
        ticket_id=9,
        channel="email",
        recipient="ann@example.com",
        text="Thanks!",
        references=["<first@example.com>", "<theirs@example.com>"],
    )
    hook(answering, ticket_subject="Printer on fire")
    assert answering.external_id is not None and answering.external_id.endswith("@mail.example.org>")
    assert answering.subject == "Re: Printer on fire [#9]"
    assert answering.in_reply_to == "<theirs@example.com>"
    moved = OutboundMessage(message_id=0, ticket_id=9, channel="email", recipient="ann@example.com", text="Hi")
    hook(moved, ticket_subject="Re: Help [#9]")
    assert (moved.subject, moved.in_reply_to) == ("Re: Help [#9]", None)
    assert moved.external_id != answering.external_id
