"""The browser pages: the agent console, its login page, and a demo shop page that embeds the chat widget
exactly as a customer's site would. Jinja2 templates and plain ES modules, no build step; the pages talk to
the rest only through the HTTP and websocket API."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from agent_ui.admin import ADMIN_PAGES, pages_for
from agent_ui.admin import build_router as build_admin_router
from hub.deps import authenticate
from hub.errors import NotFound
from hub.inputs import IdParam
from hub.mail_catcher import read_mailbox

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
static_files = StaticFiles(directory=HERE / "static")
router = APIRouter(include_in_schema=False)

# Scripts and styles come from this origin only: even if customer text slipped into markup, no inline script
# could run.
CONSOLE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; media-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def _page(
    request: Request, name: str, csp: str | None = CONSOLE_CSP, status_code: int = 200, **context: object
) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    if csp:
        response.headers["Content-Security-Policy"] = csp
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _serves(app: FastAPI, method: str, path: str) -> bool:
    """Whether ``app`` has a route for ``method path``: the console asks for a feature only where it is
    mounted (the knowledge base's suggestions, say), so the browser never logs a 404 for one not there."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.routes)


@router.get("/")
async def index() -> RedirectResponse:
    return RedirectResponse("/console")


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """The icon browsers ask every page's origin for: an SVG (every current browser takes one by its type)."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml", headers=_LONG_CACHE)


_LONG_CACHE = {"Cache-Control": "public, max-age=86400"}


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    """The console's login form."""
    return _page(request, "login.html")


@router.get("/console", response_class=HTMLResponse)
async def console_page(request: Request) -> HTMLResponse:
    """The agent console (sends you to /login when you are not logged in)."""
    return _page(request, "console.html", kb_suggest=_serves(request.app, "GET", "/api/kb/suggest"))


@router.get("/console/contacts", response_class=HTMLResponse)
async def contacts_page(request: Request, q: str = "") -> HTMLResponse:
    """Contact search (name, email, phone in any format, handle; typos forgiven), and for supervisors the
    possible duplicates (sends you to /login when you are not logged in)."""
    return _page(request, "contacts.html", contact_id=None, query=q[:200])


@router.get("/console/contacts/{contact_id}", response_class=HTMLResponse)
async def contact_page(request: Request, contact_id: IdParam) -> HTMLResponse:
    """One contact across every channel: identities, attributes, notes, one timeline, duplicates and merges."""
    return _page(request, "contacts.html", contact_id=contact_id, query="")


@router.get("/demo", response_class=HTMLResponse)
async def demo_page(request: Request, queue: str = "support") -> HTMLResponse:
    """A pretend shop that embeds the chat widget with one script tag, as any customer's site would."""
    base = str(request.base_url).rstrip("/")
    # The widget styles itself inside a shadow root, so this page allows inline styles; it has no inline script.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'"
    )
    return _page(
        request,
        "demo.html",
        csp=csp,
        widget_src=f"{base}/widget.js",
        queue=queue[:100],
        demo_mode=request.app.state.settings.demo_mode,
    )


@router.get("/demo/mailbox", response_class=HTMLResponse)
async def demo_mailbox_page(request: Request) -> HTMLResponse:
    """The mail the demo sent: what its local SMTP catcher received (``switchboard demo`` runs one; a server
    without one shows an empty page saying so)."""
    directory = request.app.state.settings.demo_mailbox_dir
    return _page(request, "demo_mailbox.html", catching=directory is not None, mails=read_mailbox(directory))


@router.get("/demo/phone", response_class=HTMLResponse)
async def demo_phone_page(request: Request, number: str = "+14155550199") -> HTMLResponse:
    """A pretend phone into the demo's phone menu (``switchboard demo``): dial pad, prompts read aloud,
    transcript. It posts the very webhooks Twilio would, signed by the demo's own signer."""
    return _page(request, "demo_phone.html", number=number[:20])


@router.get("/demo/social", response_class=HTMLResponse)
async def demo_social_page(request: Request) -> HTMLResponse:
    """A pretend messaging app (``switchboard demo``): write as a Messenger, Instagram, WhatsApp or Telegram
    customer. Its messages go through the real, signed webhooks; the agent's replies come back from the demo's
    stand-in for the providers' send APIs."""
    settings = request.app.state.settings
    pages = {p.kind: p.page_id for p in reversed(settings.meta_pages)}  # the first of each kind
    apps = {
        "messenger": pages.get("messenger"),
        "instagram": pages.get("instagram"),
        "whatsapp": settings.whatsapp_numbers[0].phone_number_id if settings.whatsapp_numbers else None,
        "telegram": settings.telegram_bots[0].name if settings.telegram_bots else None,
    }
    return _page(
        request, "demo_social.html", apps=apps, ready=settings.demo_mode and settings.demo_social_dir is not None
    )


@router.get("/supervisor", response_class=HTMLResponse)
async def supervisor_page(request: Request) -> Response:
    """The supervisor's wallboard, actions, reports and forecast: supervisors and admins (sends you to /login
    when you are not logged in; an agent gets 403)."""
    principal = await authenticate(request)
    if principal is None:
        return RedirectResponse("/login?next=/supervisor", status_code=303)
    if not principal.sees_all:
        return HTMLResponse(
            "<!doctype html><title>Forbidden</title><p>Only supervisors and admins may see this page. "
            '<a href="/console">Back to the console</a></p>',
            status_code=403,
        )
    return _page(request, "supervisor.html", who=principal.display_name)


# /admin and its pages (the knowledge base's editor among them): agent_ui/admin.py, one list of pages.
router.include_router(build_admin_router(templates))

# Mermaid draws SVG with inline styles.
PHONE_ADMIN_CSP = CONSOLE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@router.get("/admin/phone", response_class=HTMLResponse)
async def admin_phone_page(request: Request) -> Response:
    """The phone numbers and the IVR flow answering each, every flow as a diagram (admins, checked on the
    server as the admin shell's pages are: no login is sent to /login, another role gets 403)."""
    principal = await authenticate(request)
    if principal is None:
        return RedirectResponse("/login?next=/admin/phone", status_code=303)
    if principal.role != "admin":
        return _page(request, "admin_forbidden.html", principal=principal, title="Phone numbers", status_code=403)
    settings = request.app.state.settings
    mermaid = settings.mermaid_js is not None and await asyncio.to_thread(Path(settings.mermaid_js).is_file)
    return _page(
        request,
        "admin_phone.html",
        csp=PHONE_ADMIN_CSP,
        public_url=settings.public_url,
        mermaid=mermaid,
        # the admin shell's header and navigation
        principal=principal,
        pages=pages_for(principal),
        current=next(p for p in ADMIN_PAGES if p.slug == "phone"),
    )


@router.get("/admin/phone/mermaid.js")
def mermaid_js(request: Request) -> FileResponse:
    """The hub's own copy of Mermaid (``SWITCHBOARD_MERMAID_JS``), for the flow diagrams: never a CDN."""
    path = request.app.state.settings.mermaid_js
    if path is None or not Path(path).is_file():
        raise NotFound("no copy of Mermaid is configured (SWITCHBOARD_MERMAID_JS)")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
