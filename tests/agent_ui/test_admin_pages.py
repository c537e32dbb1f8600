"""The admin pages in Chromium: an admin creates, edits and fails validation on each page (the error shown
beside its field); /admin and every admin page refuse agents and supervisors on the server (403), and
send a visitor without a login to /login, which returns them there."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, Locator, Page, expect

from agent_ui.admin import ADMIN_PAGES
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, new_page
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import queues as queue_service


async def admin_page(browser: Browser, dialogs: Dialogs, live: LiveServer, rt: Runtime, path: str) -> Page:
    """An admin (``root``) logged in through the login page, which brings them to ``path``."""
    await make_agent(rt, "root", role="admin")
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{live.url}{path}")
    await page.wait_for_url(f"{live.url}/login?next={path}")
    await page.get_by_label("Username").fill("root")
    await page.get_by_label("Password").fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}{path}")
    return page


def field_error(page: Page, field: str) -> Locator:
    """The error shown beside the field of the API's ``field`` (its ``loc`` after ``body``, dotted)."""
    return page.locator(f"[data-field='{field}'] > .field-error")


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
    await page.get_by_label("First response within (seconds)").fill("3600")
    await page.get_by_role("button", name="Add overflow step").click()
    await page.get_by_label("After (seconds of waiting)").fill("120")
    await page.get_by_label("Also offer to queues (comma-separated)").fill("support")
    await page.get_by_label("Maximum wait (seconds)").fill("900")
    await page.get_by_label("Then move the work to").select_option("support")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved billing")
    (q,) = [q for q in await queue_service.list_queues(rt) if q.name == "billing"]
    assert q.channels == ["email", "webchat"] and q.required_skills == {"billing": 2, "language:es": 1}
    assert q.hours == {
        "timezone": "Europe/Madrid",
        "weekly": {"mon": ["09:00-13:00", "14:00-18:00"]},
        "holidays": ["2026-12-25"],
    }
    assert (q.sla_first_response_seconds, q.max_wait_seconds, q.overflow_queue) == (3600, 900, "support")
    assert q.overflow == [{"after_seconds": 120, "widen_to": ["support"], "drop_skills": []}]
    # Edit: priority and an overlapping interval, refused beside Monday's field; then fixed.
    await page.get_by_label("Priority").fill("5")
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
