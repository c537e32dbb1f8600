"""The admin pages in Chromium: an admin creates, edits and fails validation on each page (the error shown
beside its field); /admin and every admin page refuse agents and supervisors on the server (403), and
send a visitor without a login to /login, which returns them there."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Browser, Locator, Page, expect
from sqlalchemy import select

from agent_ui.admin import ADMIN_PAGES
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import agents as agent_service
from ticketing import canned
from ticketing import queues as queue_service
from ticketing.queue_rules import RuleSet


async def admin_page(browser: Browser, dialogs: Dialogs, live: LiveServer, rt: Runtime, path: str) -> Page:
    """An admin (``root``) logged in through the login page, which brings them to ``path``."""
    await make_agent(rt, "root", role="admin")
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{live.url}{path}")
    await page.wait_for_url(f"{live.url}/login?next={path}")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password", exact=True).fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}{path}")
    await page.locator("body[data-ready]").wait_for(state="attached")
    return page


def field_error(page: Page, field: str) -> Locator:
    """The error shown beside the field of the API's ``field`` (its ``loc`` after ``body``, dotted)."""
    return page.locator(f"[data-field='{field}'] > .field-error, label[data-field='{field}'] + .field-error")


async def routing_rules(rt: Runtime) -> RuleSet:
    async with rt.read() as conn:
        return await queue_service.get_routing_rules(conn)


async def test_roles_on_the_server(rt: Runtime, client: httpx.AsyncClient) -> None:
    """Admins get /admin and every page; supervisors only the pages for them (the knowledge base, canned
    responses); agents none; no login is sent to /login."""
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "alice")
    paths = ["/admin"] + [f"/admin/{p.slug}" for p in ADMIN_PAGES]
    for path in paths:
        r = await client.get(path)
        assert (r.status_code, r.headers["location"]) == (303, f"/login?next={path}")
    for username, role in (("root", "admin"), ("sam", "supervisor"), ("alice", "agent")):
        headers = await login(client, username, "password-123")
        for path in paths:
            page = next((p for p in ADMIN_PAGES if f"/admin/{p.slug}" == path), None)
            allowed = role == "admin" or (page is not None and role in page.roles)
            r = await client.get(path, headers=headers)
            assert r.status_code == (200 if allowed else 403), (username, path)
            assert "script-src 'self'" in r.headers["content-security-policy"]
            if allowed and role == "admin":
                # The navigation lists every page.
                for p in ADMIN_PAGES:
                    assert f'href="/admin/{p.slug}"' in r.text
    supervisor = await login(client, "sam", "password-123")
    nav = (await client.get("/admin/kb", headers=supervisor)).text
    assert 'href="/admin/canned"' in nav and 'href="/admin/queues"' not in nav


async def test_agents_and_supervisors_are_refused_the_admin_endpoints(rt: Runtime, client: httpx.AsyncClient) -> None:
    qid = await make_queue(rt, "support")
    aid = await make_agent(rt, "alice")
    await make_agent(rt, "sam", role="supervisor")
    calls = [
        ("POST", "/api/queues", {"name": "x"}),
        ("PATCH", f"/api/queues/{qid}", {"priority": 1}),
        ("POST", "/api/agents", {"username": "x", "password": "password-123"}),
        ("PATCH", f"/api/agents/{aid}", {"active": False}),
        ("PUT", "/api/routing/rules", {"rules": []}),
        ("POST", "/api/routing/dry-run", {"message": {"channel": "email"}}),
        ("GET", "/api/email/mailboxes", None),
    ]
    for username in ("alice", "sam"):
        headers = await login(client, username, "password-123")
        for method, path, body in calls:
            r = await client.request(method, path, json=body, headers=headers)
            assert r.status_code == 403, (username, method, path, r.text)
    agent = await login(client, "alice", "password-123")
    for method, path, body in [("POST", "/api/canned", {"shortcut": "a", "title": "a", "text": "a"})]:
        assert (await client.request(method, path, json=body, headers=agent)).status_code == 403


async def test_queues_page_creates_edits_and_places_errors(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["email"])
    page = await admin_page(browser, dialogs, live, rt, "/admin/queues")
    await expect(page.locator("#items")).to_contain_text("support")
    # A new queue with hours, SLA targets and an overflow step.
    await page.get_by_label("Name").fill("billing")
    await page.get_by_label("email", exact=True).check()
    await page.get_by_label("webchat", exact=True).check()
    await page.get_by_label("Required skills").fill("billing 2\nlanguage:es 1")
    await page.get_by_label("Open only during these hours").check()
    await page.get_by_label("Timezone").fill("Europe/Madrid")
    await page.get_by_label("Monday").fill("09:00-13:00, 14:00-18:00")
    await page.get_by_label("Holidays").fill("2026-12-25")
    await page.get_by_label("First response within (seconds)", exact=True).fill("3600")
    await page.get_by_label("urgent priority: first response within (seconds)").fill("600")
    await page.get_by_label("Answer this share (%)").fill("150")
    await page.get_by_role("button", name="Add overflow step").click()
    await page.get_by_label("After (seconds of waiting)").fill("120")
    await page.get_by_label("Also offer to queues (comma-separated)").fill("support")
    await page.get_by_label("Maximum wait (seconds)").fill("900")
    await page.get_by_label("Then move the work to").select_option("support")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "service_level_target")).to_contain_text("less than or equal to 100")
    await page.get_by_label("Answer this share (%)").fill("90")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved billing")
    (q,) = [q for q in await queue_service.list_queues(rt) if q.name == "billing"]
    assert q.sla_policies == {"urgent": {"first_response_seconds": 600, "resolution_seconds": None}}
    assert (q.service_level_target, q.service_level_seconds, q.wait_alert_seconds) == (90, 60, 300)
    assert q.channels == ["email", "webchat"] and q.required_skills == {"billing": 2, "language:es": 1}
    assert q.hours == {
        "timezone": "Europe/Madrid",
        "weekly": {"mon": ["09:00-13:00", "14:00-18:00"]},
        "holidays": ["2026-12-25"],
    }
    assert (q.sla_first_response_seconds, q.max_wait_seconds, q.overflow_queue) == (3600, 900, "support")
    assert q.overflow == [{"after_seconds": 120, "widen_to": ["support"], "drop_skills": []}]
    # Edit: priority and an overlapping interval, refused beside Monday's field; then fixed.
    await page.get_by_label(re.compile("^Priority")).fill("5")
    await page.get_by_label("Monday").fill("09:00-13:00, 12:00-18:00")
    await page.get_by_label("Timezone").fill("Mars/Olympus")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "hours.timezone")).to_contain_text("unknown timezone 'Mars/Olympus'")
    await page.get_by_label("Timezone").fill("Europe/Madrid")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "hours.weekly")).to_contain_text("intervals of mon overlap")
    await page.get_by_label("Monday").fill("09:00-18:00")
    await page.get_by_label("Also offer to queues (comma-separated)").fill("nowhere")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "overflow.0.widen_to")).to_have_text("no queue named nowhere")
    await page.get_by_label("Also offer to queues (comma-separated)").fill("support")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved billing")
    (q,) = [q for q in await queue_service.list_queues(rt) if q.name == "billing"]
    assert q.priority == 5 and q.hours is not None and q.hours["weekly"] == {"mon": ["09:00-18:00"]}
    # A second queue of the same name: the 409 lands on the name.
    await page.get_by_role("button", name="New queue").click()
    await page.get_by_label("Name").fill("support")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "name")).to_contain_text("a queue named 'support' exists")
    assert dialogs.seen == []


async def test_agents_page_creates_edits_resets_and_deactivates(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["webchat"])
    await make_queue(rt, "billing", ["email"])
    page = await admin_page(browser, dialogs, live, rt, "/admin/agents")
    await page.get_by_role("button", name="New agent").click()
    await page.get_by_label("Username").fill("bob")
    await page.get_by_label("Display name").fill("Bob B.")
    await page.get_by_role("form", name="Agent").get_by_label("Password").fill("short")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "password")).to_contain_text("at least 8 characters")
    await page.get_by_role("form", name="Agent").get_by_label("Password").fill("password-456")
    await page.get_by_label("support").check()
    await page.get_by_label("Skills").fill("language:es 3\nrefunds 1")
    await page.get_by_label("webchat", exact=True).fill("2")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved bob")
    (bob,) = [a for a in await agent_service.list_agents(rt) if a.username == "bob"]
    assert (bob.display_name, bob.role, bob.skills, bob.capacity) == (
        "Bob B.",
        "agent",
        {"language:es": 3, "refunds": 1},
        {"webchat": 2},
    )
    # Edit: a supervisor in both queues; a bad capacity is refused beside the channel's field.
    await page.get_by_label("Role").select_option("supervisor")
    await page.get_by_label("billing").check()
    await page.get_by_label("email", exact=True).fill("-1")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "capacity.email")).to_contain_text("greater than or equal to 0")
    await page.get_by_label("email", exact=True).fill("4")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved bob")
    bob = await agent_service.get_agent(rt, agent_id=bob.id)
    assert bob.role == "supervisor" and len(bob.queue_ids) == 2 and bob.capacity == {"webchat": 2, "email": 4}
    # Reset the password: too short is refused beside the field; then bob logs in with the new one.
    reset = page.get_by_role("form", name="Reset password")
    await reset.get_by_label("New password").fill("nope")
    await reset.get_by_role("button", name="Reset password").click()
    await expect(reset.locator("[data-field='password'] + .field-error")).to_contain_text("at least 8 characters")
    await reset.get_by_label("New password").fill("brand-new-pass")
    await reset.get_by_role("button", name="Reset password").click()
    await expect(page.locator("#reset-done")).to_have_text("New password set for bob")
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.post("/api/auth/login", json={"username": "bob", "password": "brand-new-pass"})).is_success
        # Deactivated, bob can no longer log in.
        await page.get_by_role("button", name="Deactivate").click()
        await expect(page.locator("#saved")).to_have_text("Deactivated bob")
        r = await client.post("/api/auth/login", json={"username": "bob", "password": "brand-new-pass"})
        assert r.status_code == 401
    await expect(page.locator("#items")).to_contain_text("deactivated")
    # A taken username: the 409 lands beside the username.
    await page.get_by_role("button", name="New agent").click()
    await page.get_by_label("Username").fill("bob")
    await page.get_by_role("form", name="Agent").get_by_label("Password").fill("password-456")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "username")).to_contain_text("username 'bob' is taken")
    assert dialogs.seen == []


async def test_routing_page_validates_dry_runs_and_saves_rules(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["email", "webchat"])
    await make_queue(rt, "billing", ["email"])
    page = await admin_page(browser, dialogs, live, rt, "/admin/routing")
    await page.get_by_role("button", name="Add rule").click()
    rule = page.locator("#rules > li").first
    await rule.get_by_label("Rule name").fill("money")
    await rule.get_by_label("Any of the words").fill("refund, invoice")
    await rule.get_by_label("email").check()
    await rule.get_by_label("Set priority").select_option("high")
    # No queue chosen: refused beside the rule's queue, before anything is saved.
    await page.get_by_role("button", name="Check").click()
    await expect(field_error(page, "rules.0.queue")).to_contain_text("at least 1 character")
    await rule.get_by_label("Send to queue").select_option("billing")
    await page.get_by_role("button", name="Add rule").click()
    second = page.locator("#rules > li").nth(1)
    await second.get_by_label("Rule name").fill("money")
    await second.get_by_label("Send to queue").select_option("support")
    await page.get_by_role("button", name="Save rules").click()
    await expect(page.locator("#editor .form-error")).to_contain_text("two rules are named 'money'")
    await second.get_by_label("Rule name").fill("spanish")
    await second.get_by_label("Language").fill("es")
    await page.get_by_label("Default queue").select_option("support")
    # The dry run answers for the draft, rule by rule, before it is saved.
    dry = page.get_by_role("form", name="Dry run")
    await dry.get_by_label("Channel").select_option("email")
    await dry.get_by_label("Subject").fill("Where is my refund?")
    await dry.get_by_role("button", name="Dry run").click()
    answer = page.locator("#answer")
    await expect(answer).to_contain_text("This message would go to queue billing")
    await expect(answer).to_contain_text("rule 'money' matched: the channel is email and the words refund are in")
    await dry.get_by_label("Channel").select_option("webchat")
    await dry.get_by_label("Language").fill("es")
    await dry.get_by_role("button", name="Dry run").click()
    await expect(answer).to_contain_text("This message would go to queue support")
    await expect(answer).to_contain_text("money: skipped — the channel is webchat, not email")
    await expect(answer).to_contain_text("spanish: matches — the language is es")
    assert (await routing_rules(rt)).rules == []  # nothing saved yet
    await page.get_by_role("button", name="Save rules").click()
    await expect(page.locator("#saved")).to_have_text("Rules saved")
    saved_rules = await routing_rules(rt)
    assert [(r.name, r.queue, r.priority) for r in saved_rules.rules] == [
        ("money", "billing", "high"),
        ("spanish", "support", None),
    ]
    assert saved_rules.default_queue == "support"
    assert saved_rules.rules[0].when.keywords == ["refund", "invoice"]
    # Reloaded, the page shows what was saved.
    await page.reload()
    await expect(page.locator("#rules > li").first.get_by_label("Rule name")).to_have_value("money")
    await expect(page.locator("#rules > li").nth(1).get_by_label("Language")).to_have_value("es")
    assert dialogs.seen == []


async def test_canned_page_creates_edits_deletes_and_refuses(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    page = await admin_page(browser, dialogs, live, rt, "/admin/canned")
    await page.get_by_label("Shortcut").fill("bad shortcut!")
    await page.get_by_label("Title").fill("Hello")
    await page.get_by_label("Text").fill("Hi, how can I help?")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "shortcut")).to_contain_text("should match pattern")
    await page.get_by_label("Shortcut").fill("hello")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved /hello")
    await page.get_by_label("Text").fill("Hello! How can I help you today?")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved /hello")
    (item,) = await canned.search_canned(rt)
    assert (item.shortcut, item.text) == ("hello", "Hello! How can I help you today?")
    await page.get_by_role("button", name="New canned response").click()
    await page.get_by_label("Shortcut").fill("hello")
    await page.get_by_label("Title").fill("Again")
    await page.get_by_label("Text").fill("x")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "shortcut")).to_contain_text("/hello exists")
    await page.get_by_role("button", name="/hello").click()
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#saved")).to_have_text("Deleted /hello")
    assert await canned.search_canned(rt) == []
    assert dialogs.seen == []


async def test_mailboxes_page_creates_edits_and_refuses(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["email"])
    page = await admin_page(browser, dialogs, live, rt, "/admin/mailboxes")
    await page.get_by_label("Name", exact=True).fill("help")
    await page.get_by_label("Address (From)").fill("help@shop.test")
    await page.get_by_label("IMAP host").fill("127.0.0.1")
    await page.get_by_label("IMAP port").fill("99999")
    await page.get_by_label("IMAP over TLS").uncheck()
    await page.get_by_label("IMAP username", exact=True).fill("help")
    await page.get_by_label("IMAP password", exact=True).fill("secret")
    await page.get_by_label("SMTP host").fill("127.0.0.1")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "imap_port")).to_contain_text("less than or equal to 65535")
    await page.get_by_label("IMAP port").fill("1")  # nothing listens there: the worker reports its error
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved help")
    await page.get_by_label("Folder").fill("Support")
    await page.get_by_label("SMTP security").select_option("none")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved help")
    async with httpx.AsyncClient(base_url=live.url) as client:
        headers = await login(client, "root", "password-123")
        box = (await client.get("/api/email/mailboxes/help", headers=headers)).json()
        assert (box["folder"], box["smtp_security"], box["imap_port"], box["imap_tls"]) == ("Support", "none", 1, False)
        await page.get_by_role("button", name="Delete").click()
        await expect(page.locator("#saved")).to_have_text("Deleted help")
        assert (await client.get("/api/email/mailboxes", headers=headers)).json() == []
    assert dialogs.seen == []


async def test_every_admin_change_is_audited_without_secrets(rt: Runtime, client: httpx.AsyncClient) -> None:
    await make_agent(rt, "root", role="admin")
    admin = await login(client, "root", "password-123")

    async def call(method: str, path: str, body: object = None) -> dict[str, object]:
        r = await client.request(method, path, json=body, headers=admin)
        assert r.is_success, r.text
        return r.json() if r.content else {}

    q = await call("POST", "/api/queues", {"name": "support", "channels": ["email"]})
    await call("PATCH", f"/api/queues/{q['id']}", {"priority": 3})
    a = await call("POST", "/api/agents", {"username": "bob", "password": "secret-password-1"})
    await call("PATCH", f"/api/agents/{a['id']}", {"role": "supervisor", "queues": ["support"]})
    await call("PATCH", f"/api/agents/{a['id']}", {"password": "secret-password-2"})
    await call("PATCH", f"/api/agents/{a['id']}", {"active": False})
    await call("PUT", "/api/routing/rules", {"rules": [{"name": "all", "queue": "support"}]})
    c = await call("POST", "/api/canned", {"shortcut": "hi", "title": "Hi", "text": "Hello"})
    await call("PATCH", f"/api/canned/{c['id']}", {"text": "Hello!"})
    await call("DELETE", f"/api/canned/{c['id']}")
    box = {
        "name": "help",
        "address": "help@shop.test",
        "queue": "support",
        "imap_host": "127.0.0.1",
        "imap_port": 1,
        "username": "help",
        "password": "secret-imap",
        "smtp_host": "127.0.0.1",
    }
    await call("POST", "/api/email/mailboxes", box)
    await call("PATCH", "/api/email/mailboxes/help", {"folder": "Support", "password": "secret-imap-2"})
    await call("DELETE", "/api/email/mailboxes/help")
    r = await client.get("/api/audit", headers=admin)
    entries = [e for e in r.json() if e["actor"] == "root"]
    assert [(e["action"], e["target"]) for e in reversed(entries)] == [
        ("queue.create", f"queue:{q['id']}"),
        ("queue.update", f"queue:{q['id']}"),
        ("agent.create", f"agent:{a['id']}"),
        ("agent.update", f"agent:{a['id']}"),
        ("agent.password_reset", f"agent:{a['id']}"),
        ("agent.deactivate", f"agent:{a['id']}"),
        ("routing.rules_update", "routing:rules"),
        ("canned.create", f"canned:{c['id']}"),
        ("canned.update", f"canned:{c['id']}"),
        ("canned.delete", f"canned:{c['id']}"),
        ("mailbox.create", "mailbox:help"),
        ("mailbox.update", "mailbox:help"),
        ("mailbox.delete", "mailbox:help"),
    ]
    by_action = {e["action"]: e["detail"] for e in entries}
    assert by_action["queue.update"]["before"] == {"priority": 0} and by_action["queue.update"]["after"] == {
        "priority": 3
    }
    assert by_action["agent.update"]["after"] == {"role": "supervisor", "queue_ids": [q["id"]]}
    assert by_action["agent.deactivate"] == {
        "username": "bob",
        "before": {"active": True},
        "after": {"active": False},
    }
    assert by_action["mailbox.update"]["after"] == {"folder": "Support", "password": "changed"}
    assert "secret" not in r.text


async def test_audit_page_lists_filters_and_exports(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    qid = await make_queue(rt, "support")
    page = await admin_page(browser, dialogs, live, rt, "/admin/queues")
    await page.get_by_role("button", name="support").click()
    await page.get_by_label(re.compile("^Priority")).fill("7")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved support")
    # Another change, through the API with the page's session: the rules.
    r = await page.request.put(f"{live.url}/api/routing/rules", data={"rules": [], "default_queue": "support"})
    assert r.ok
    await page.get_by_role("link", name="Audit log").click()
    await page.locator("body[data-ready]").wait_for(state="attached")
    rows = page.locator("#entries tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("routing.rules_update")
    await expect(rows.nth(1)).to_contain_text("queue.update")
    await expect(rows.nth(1)).to_contain_text("root")
    await expect(rows.nth(1)).to_contain_text(f"queue:{qid}")
    await expect(rows.nth(1)).to_contain_text('after: {"priority":7}')
    await page.get_by_label("Action starts with").fill("queue.")
    await page.get_by_role("button", name="Show").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("queue.update")
    # The export link carries the filter; the CSV comes with the session cookie.
    href = await page.get_by_role("link", name="Export CSV").get_attribute("href")
    assert href == "/api/audit.csv?action=queue."
    response = await page.request.get(f"{live.url}{href}")
    lines = (await response.text()).splitlines()
    assert response.ok and lines[0] == "id,at,actor_id,actor,action,target,detail"
    assert [line.split(",")[3:6] for line in lines[1:]] == [["root", "queue.update", f"queue:{qid}"]]
    # A range that ends before it starts is refused beside its field.
    await page.get_by_label("From").fill("2026-12-06T10:00")
    await page.get_by_label("Until").fill("2026-12-05T10:00")
    await page.get_by_role("button", name="Show").click()
    await expect(field_error(page, "until")).to_have_text("until is before since")
    assert dialogs.seen == []


async def test_the_console_links_the_admin_for_admins_and_supervisors_only(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "alice")
    for username, href in (("root", "/admin"), ("sam", "/admin/kb"), ("alice", None)):
        _, page = await new_page(browser, dialogs)
        await agent_login(page, live.url, username)
        link = page.get_by_role("link", name="Admin")
        if href is None:
            await expect(link).to_have_count(0)
        else:
            await expect(link).to_have_attribute("href", href)
            await link.click()
            await page.wait_for_url(f"{live.url}{href}")
    assert dialogs.seen == []


async def test_queues_page_deletes_a_free_queue_and_says_why_one_in_use_is_refused(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Delete on a queue with open work shows the API's reason (409) above the Save button and keeps it; on a
    free queue it goes from the list and the audit log has it."""
    from tests.ticketing.routing_helpers import arrive, message

    await make_queue(rt, "busy", ["email"])
    await make_queue(rt, "spare", ["email"])
    await arrive(rt, message("email", queue="busy"))
    page = await admin_page(browser, dialogs, live, rt, "/admin/queues")
    await page.locator("#items button", has_text="busy").click()
    await expect(page.locator("#heading")).to_have_text("Queue busy")
    await page.get_by_role("button", name="Delete queue").click()
    await expect(page.locator(".form-error")).to_contain_text("queue busy has 1 open ticket(s): re-queue them")
    await page.locator("#items button", has_text="spare").click()
    await expect(page.locator("#heading")).to_have_text("Queue spare")
    await page.get_by_role("button", name="Delete queue").click()
    await expect(page.locator("#saved")).to_have_text("Deleted spare")
    await expect(page.locator("#items")).not_to_contain_text("spare")
    assert [q.name for q in await queue_service.list_queues(rt)] == ["busy"]
    from hub import audit

    async with rt.read() as conn:
        actions = [a for (a,) in await conn.execute(select(audit.AuditEntry.__table__.c.action))]  # type: ignore[attr-defined]
    assert actions.count("queue.delete") == 1
    assert dialogs.seen == []
