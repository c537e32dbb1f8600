"""The defects a new user hit trying the demo (issue 24), on the server side: each test fails without its fix."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from hub.config import Settings
from hub.mail_catcher import MailCatcher, read_mailbox
from hub.messages import Identity, InboundMessage
from hub.metrics import MetricsGate
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import tables
from ticketing.ingest import ingest_batch, subject_key
from ticketing.models import TicketStatus, TicketUpdate
from ticketing.ticket_updates import update_ticket

ADMIN = Principal(agent_id=0, username="root", display_name="Root", role="admin", queue_ids=frozenset())


def email(ext: str, subject: str, **kw: object) -> InboundMessage:
    return InboundMessage(
        channel="email",
        external_id=ext,
        sender=Identity(kind="email", value="ann@example.com"),
        subject=subject,
        text="hello",
        **kw,
    )  # type: ignore[arg-type]


async def ticket_of(rt: Runtime, msg: InboundMessage) -> int:
    [result] = await ingest_batch(rt, [msg])
    assert not isinstance(result, Exception), result
    return result.ticket_id


# --- 2. a new email about a new matter opens a new ticket ------------------------------------------------------------


async def test_a_new_email_with_a_new_subject_opens_a_new_ticket(rt: Runtime) -> None:
    """A sender with an open ticket who writes again with another subject and no In-Reply-To, References or [#N]
    gets a second ticket; the same subject (with Re:) still joins the first; a tagged one joins its ticket."""
    await make_queue(rt, "support", ["email"])
    first = await ticket_of(rt, email("<a@x>", "Where is my order?"))
    second = await ticket_of(rt, email("<b@x>", "Invoice address is wrong"))
    assert second != first
    assert await ticket_of(rt, email("<c@x>", "RE: Fwd: where is my  order?")) == first
    assert await ticket_of(rt, email("<d@x>", "Another thing", ticket_hint=first)) == first
    assert await ticket_of(rt, email("<e@x>", "Re: whatever", references=["<b@x>"])) == second


async def test_two_new_matters_in_one_batch_open_two_tickets(rt: Runtime) -> None:
    """Threading inside one batch keys email by subject too."""
    await make_queue(rt, "support", ["email"])
    results = await ingest_batch(rt, [email("<a@x>", "Order"), email("<b@x>", "Refund"), email("<c@x>", "Re: Order")])
    ids = [r.ticket_id for r in results]  # type: ignore[union-attr]
    assert ids[0] != ids[1] and ids[2] == ids[0]


async def test_sms_keeps_threading_by_conversation(rt: Runtime) -> None:
    """Chat, SMS and messaging have no subject: the contact's open conversation on the channel holds them."""
    await make_queue(rt, "support", ["sms"])

    def sms(ext: str, text: str) -> InboundMessage:
        return InboundMessage(
            channel="sms", external_id=ext, sender=Identity(kind="phone", value="+14155550123"), text=text
        )

    assert await ticket_of(rt, sms("SM1", "Order 1")) == await ticket_of(rt, sms("SM2", "Something else entirely"))


def test_subject_key_ignores_prefixes_tags_case_and_spacing() -> None:
    assert subject_key("Re: AW: [#12] Where is  my Order?") == subject_key("where is my order?")
    assert subject_key("Re[2]: Fwd: x") == "x"
    assert subject_key(None) == subject_key("") == ""


# --- 3. the core sanitizes HTML whatever the adapter did ------------------------------------------------------------


HOSTILE = '<p>hi</p><script>alert(1)</script><img src=x onerror=alert(2)><a href="javascript:alert(3)">x</a>'


async def test_inbound_api_html_is_sanitized(rt: Runtime, client: httpx.AsyncClient) -> None:
    """HTML handed to /api/inbound is stored without script, event handlers or javascript: URLs."""
    await make_queue(rt, "support", ["email"])
    await make_agent(rt, "root", role="admin", queues=["support"])
    auth = await login(client, "root", "password-123")
    r = await client.post(
        "/api/inbound",
        json={
            "channel": "email",
            "external_id": "<html@x>",
            "sender": {"kind": "email", "value": "h@example.com"},
            "subject": "html",
            "text": "see html",
            "html": HOSTILE,
        },
        headers=auth,
    )
    assert r.status_code == 200, r.text
    detail = (await client.get(f"/api/tickets/{r.json()['ticket_id']}", headers=auth)).json()
    html = detail["messages"][0]["html"].lower()
    assert "<p>hi</p>" in html
    for bad in ("<script", "onerror", "javascript:"):
        assert bad not in html


# --- 6. after solve: the conversation's next ticket is linked to the solved one ---------------------------------------


async def test_a_chat_after_solve_opens_a_ticket_linked_to_the_solved_one(rt: Runtime) -> None:
    """The visitor writing again in a solved chat opens a new ticket whose linked_ticket_id is the solved one."""
    await make_queue(rt, "support", ["webchat"])

    def chat(ext: str) -> InboundMessage:
        return InboundMessage(
            channel="webchat",
            external_id=ext,
            thread_key="conv-1",
            sender=Identity(kind="webchat", value="visitor:v1"),
            text="hi",
        )

    first = await ticket_of(rt, chat("c1"))
    await update_ticket(rt, ticket_id=first, principal=ADMIN, data=TicketUpdate(status=TicketStatus.SOLVED))
    second = await ticket_of(rt, chat("c2"))
    assert second != first
    async with rt.read() as conn:
        linked = (
            await conn.execute(select(tables.tickets.c.linked_ticket_id).where(tables.tickets.c.id == second))
        ).scalar_one()
        fresh = (
            await conn.execute(select(tables.tickets.c.linked_ticket_id).where(tables.tickets.c.id == first))
        ).scalar_one()
    assert linked == first and fresh is None


# --- 7. /metrics is not open to anyone; /favicon.ico is served -----------------------------------------------------


def test_metrics_gate() -> None:
    """A token or an allowed address opens /metrics; nothing else does."""
    from pydantic import SecretStr

    gate = MetricsGate(SecretStr("s3cret"), ["10.0.0.0/8"])
    assert gate.allows(authorization="Bearer s3cret", client="192.0.2.1")
    assert gate.allows(authorization=None, client="10.1.2.3")
    assert gate.allows(authorization=None, client="::ffff:10.1.2.3")
    assert not gate.allows(authorization="Bearer wrong", client="192.0.2.1")
    assert not gate.allows(authorization="Basic s3cret", client="192.0.2.1")
    assert not gate.allows(authorization=None, client="not-an-address")
    assert not MetricsGate(None, []).allows(authorization="Bearer ", client="127.0.0.1")
    local = MetricsGate(None, Settings.model_fields["metrics_allow"].default_factory())  # type: ignore[misc]
    assert local.allows(authorization=None, client="127.0.0.1") and local.allows(authorization=None, client="::1")
    assert not local.allows(authorization=None, client="192.0.2.1")


async def test_metrics_need_the_token_when_no_address_is_allowed(settings: Settings) -> None:
    """With SWITCHBOARD_METRICS_ALLOW empty, /metrics answers 401 without the token and Prometheus text with it."""
    from pydantic import SecretStr

    server = LiveServer(settings.model_copy(update={"metrics_token": SecretStr("tok"), "metrics_allow": []})).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            refused = await c.get("/metrics")
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
            ok = await c.get("/metrics", headers={"Authorization": "Bearer tok"})
            assert ok.status_code == 200 and "switchboard_tickets" in ok.text
            assert ok.headers["content-type"].startswith("text/plain")
    finally:
        server.stop()


async def test_favicon_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml" and r.text.startswith("<svg")
    page = await client.get("/login")
    assert '<link rel="icon" href="/favicon.ico" type="image/svg+xml">' in page.text


# --- 4. the demo's mail goes to a local catcher, listed at /demo/mailbox ----------------------------------------------


async def test_replies_by_email_reach_the_catcher_and_the_mailbox_page(
    rt: Runtime, settings: Settings, tmp_path: Path
) -> None:
    """With no mailbox but SWITCHBOARD_OUTGOING_SMTP_HOST, an email reply goes out through that server; the
    demo's catcher keeps it and /demo/mailbox lists it, escaped."""
    catcher = MailCatcher(tmp_path / "mailbox").start()
    configured = settings.model_copy(
        update={
            "outgoing_smtp_host": catcher.host,
            "outgoing_smtp_port": catcher.port,
            "demo_mailbox_dir": catcher.directory,
            "attachment_dir": tmp_path / "files",
        }
    )
    await make_queue(rt, "support", ["email"])
    await make_agent(rt, "root", role="admin", queues=["support"])
    ticket_id = await ticket_of(rt, email("<m@x>", "Kettle <b>broken</b>"))
    server = LiveServer(configured).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            auth = await login(c, "root", "password-123")
            sent = await c.post(
                f"/api/tickets/{ticket_id}/reply", json={"text": "We send a new one <script>x</script>"}, headers=auth
            )
            assert sent.status_code == 201, sent.text
            for _ in range(200):
                if read_mailbox(catcher.directory):
                    break
                await asyncio.sleep(0.05)
            [mail] = read_mailbox(catcher.directory)
            assert "ann@example.com" in mail.recipients and "We send a new one" in mail.text
            page = await c.get("/demo/mailbox")
            assert page.status_code == 200
            assert "We send a new one &lt;script&gt;x&lt;/script&gt;" in page.text
            assert "Kettle &lt;b&gt;broken&lt;/b&gt;" in page.text
            detail = (await c.get(f"/api/tickets/{ticket_id}", headers=auth)).json()
            assert detail["messages"][-1]["delivery_status"] == "sent"
    finally:
        server.stop()
        catcher.stop()


async def test_the_mailbox_page_says_when_no_catcher_runs(client: httpx.AsyncClient) -> None:
    page = await client.get("/demo/mailbox")
    assert page.status_code == 200 and "No mail catcher runs on this server" in page.text


# --- 5. the demo says how to answer as an agent, and one agent is available -------------------------------------------


async def test_the_demo_starts_with_an_agent_available_and_says_so(
    rt: Runtime, settings: Settings, tmp_path: Path
) -> None:
    """``seed_demo`` leaves the demo's agent available (at every start); the demo page names that login."""
    from hub.app import seed_demo
    from hub.cli import demo_settings
    from ticketing.demo import DEMO_AVAILABLE

    seed = await seed_demo(rt)
    assert seed.available == DEMO_AVAILABLE
    async with rt.read() as conn:
        status = (
            await conn.execute(select(tables.agents.c.status).where(tables.agents.c.username == DEMO_AVAILABLE[0]))
        ).scalar_one()
    assert status == "available"
    demo, catcher = demo_settings(settings.model_copy(update={"attachment_dir": tmp_path / "files"}))
    try:
        assert catcher is not None and demo.outgoing_smtp_port == catcher.port and demo.demo_mode
        assert demo.max_missed_offers == 0
        server = LiveServer(demo).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                page = (await c.get("/demo")).text
        finally:
            server.stop()
        username, password = DEMO_AVAILABLE
        assert f"<code>{username}</code> / <code>{password}</code>" in page and "/demo/mailbox" in page
    finally:
        if catcher is not None:
            catcher.stop()


async def test_the_demos_support_queue_is_open_at_night_and_at_weekends(rt: Runtime) -> None:
    """A newcomer tries the demo whenever they like: its support queue (the widget's and the phone's line to an
    agent) is open on a Saturday night, while sales keeps weekday hours for the phone's closed path."""
    from hub.hours import BusinessHours
    from ticketing.demo import seed
    from ticketing.queues import list_queues

    assert await seed(rt)
    hours = {q.name: BusinessHours.parse(q.hours) for q in await list_queues(rt)}
    saturday_night, monday_noon = datetime(2026, 12, 5, 3, 0, tzinfo=UTC), datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    support, sales = hours["support"], hours["sales"]
    assert support is None or support.is_open(saturday_night)
    assert sales is not None and not sales.is_open(saturday_night) and sales.is_open(monday_noon)


@pytest.mark.parametrize("given", [{"max_missed_offers": 5}])
def test_demo_settings_keep_what_the_operator_set(settings: Settings, given: dict[str, int], tmp_path: Path) -> None:
    """Mail configured and max_missed_offers set: the demo keeps them and starts no catcher."""
    chosen = Settings(
        **{**settings.model_dump(), **given, "outgoing_smtp_host": "relay.local", "attachment_dir": tmp_path}
    )
    demo, catcher = demo_settings_of(chosen)
    assert catcher is None and demo.max_missed_offers == 5 and demo.outgoing_smtp_host == "relay.local"


def demo_settings_of(settings: Settings) -> tuple[Settings, object]:
    from hub.cli import demo_settings

    return demo_settings(settings)
