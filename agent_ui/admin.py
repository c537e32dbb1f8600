"""The admin pages under ``/admin``: one shell (a header and a navigation listing the pages) around
self-contained pages, each a template that talks to the REST API like any other client.

Adding a page is one entry in ``ADMIN_PAGES`` (CONTRIBUTING.md, "Adding an admin page"): its URL is
``/admin/<slug>``, it appears in the navigation of everyone its ``roles`` let in, and the shell refuses
everyone else *before* the page is sent — from the session cookie, on the server: no login sends you to
``/login``, a role not listed gets 403. The API endpoints a page calls check the same roles again (a page is
only a client of them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hub.channels import CHANNELS
from hub.deps import authenticate
from hub.principals import Principal, Role

ADMINS = frozenset({Role.ADMIN.value})
SUPERVISORS = frozenset({Role.SUPERVISOR.value, Role.ADMIN.value})


@dataclass(frozen=True, slots=True)
class AdminPage:
    """One page of the admin: ``/admin/<slug>``, rendered from ``agent_ui/templates/<template>`` (which
    extends ``admin_base.html``), shown to and served to the ``roles`` given. A page without a template has a
    route of its own elsewhere and is only listed here."""

    slug: str
    title: str
    template: str
    summary: str
    roles: frozenset[str] = ADMINS


# The admin's pages, in the navigation's order. One entry per page; nothing else to change.
ADMIN_PAGES: tuple[AdminPage, ...] = (
    AdminPage("queues", "Queues", "admin_queues.html", "Channels, skills, priority, business hours, SLA, overflow"),
    AdminPage("agents", "Agents", "admin_agents.html", "Roles, queues, skills, capacity, passwords, deactivation"),
    AdminPage("routing", "Routing rules", "admin_routing.html", "Which queue new work goes to, with a dry run"),
    AdminPage("canned", "Canned responses", "admin_canned.html", "Saved answers agents insert with /", SUPERVISORS),
    AdminPage("mailboxes", "Mailboxes", "admin_mailboxes.html", "Email in (IMAP) and out (SMTP), quarantine"),
    # Served by its own route (agent_ui.views: it draws the flows with the hub's Mermaid): listed only.
    AdminPage("phone", "Phone numbers", "", "Numbers and the IVR flow answering each, as diagrams"),
    AdminPage("social", "Social channels", "admin_social.html", "Pages, accounts, numbers, bots: health, webhooks"),
    AdminPage("quarantine", "Quarantine", "admin_quarantine.html", "Messages that could not be stored: look, retry"),
    AdminPage("templates", "Message templates", "admin_templates.html", "Approved WhatsApp templates, their variables"),
    AdminPage("kb", "Knowledge base", "admin_kb.html", "Articles for agents and the help center", SUPERVISORS),
    AdminPage("audit", "Audit log", "admin_audit.html", "Who changed what and when; CSV export"),
)

# Scripts and styles from this origin only (as the console's).
ADMIN_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def pages_for(principal: Principal) -> list[AdminPage]:
    """The pages ``principal`` may open, in the navigation's order."""
    return [p for p in ADMIN_PAGES if principal.role in p.roles]


async def _render(
    request: Request, templates: Jinja2Templates, page: AdminPage | None, roles: frozenset[str]
) -> Response:
    principal = await authenticate(request)
    if principal is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    if principal.role not in roles:
        response = templates.TemplateResponse(
            request, "admin_forbidden.html", {"principal": principal, "title": page.title if page else "Admin"}, 403
        )
    else:
        response = templates.TemplateResponse(
            request,
            page.template if page else "admin_home.html",
            {"principal": principal, "pages": pages_for(principal), "current": page, "channels": CHANNELS},
        )
    response.headers["Content-Security-Policy"] = ADMIN_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def build_router(templates: Jinja2Templates) -> APIRouter:
    """``/admin`` (the list of pages, for admins) and one route per entry of ``ADMIN_PAGES``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/admin", response_class=HTMLResponse)
    async def admin_home(request: Request) -> Response:
        return await _render(request, templates, None, ADMINS)

    for page in ADMIN_PAGES:
        if not page.template:
            continue
        router.add_api_route(
            f"/admin/{page.slug}",
            _page_endpoint(templates, page),
            methods=["GET"],
            response_class=HTMLResponse,
            name=f"admin_{page.slug}",
        )
    return router


def _page_endpoint(templates: Jinja2Templates, page: AdminPage) -> Callable[[Request], Awaitable[Response]]:
    async def admin_page(request: Request) -> Response:
        return await _render(request, templates, page, page.roles)

    admin_page.__doc__ = page.summary
    return admin_page
