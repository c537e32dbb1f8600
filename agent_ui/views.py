"""The browser pages: the agent console, its login page, and a demo shop page that embeds the chat widget
exactly as a customer's site would. Jinja2 templates and plain ES modules, no build step; the pages talk to
the rest only through the HTTP and websocket API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from hub.errors import NotFound

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


def _page(request: Request, name: str, csp: str | None = CONSOLE_CSP, **context: object) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context)
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


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    """The console's login form."""
    return _page(request, "login.html")


@router.get("/console", response_class=HTMLResponse)
async def console_page(request: Request) -> HTMLResponse:
    """The agent console (sends you to /login when you are not logged in)."""
    return _page(request, "console.html", kb_suggest=_serves(request.app, "GET", "/api/kb/suggest"))


@router.get("/demo", response_class=HTMLResponse)
async def demo_page(request: Request, queue: str = "support") -> HTMLResponse:
    """A pretend shop that embeds the chat widget with one script tag, as any customer's site would."""
    base = str(request.base_url).rstrip("/")
    # The widget styles itself inside a shadow root, so this page allows inline styles; it has no inline script.
    csp = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'"
    )
    return _page(request, "demo.html", csp=csp, widget_src=f"{base}/widget.js", queue=queue[:100])


@router.get("/demo/phone", response_class=HTMLResponse)
async def demo_phone_page(request: Request, number: str = "+14155550199") -> HTMLResponse:
    """A pretend phone into the demo's phone menu (``switchboard demo``): dial pad, prompts read aloud,
    transcript. It posts the very webhooks Twilio would, signed by the demo's own signer."""
    return _page(request, "demo_phone.html", number=number[:20])


# Mermaid draws SVG with inline styles.
PHONE_ADMIN_CSP = CONSOLE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@router.get("/admin/phone", response_class=HTMLResponse)
def admin_phone_page(request: Request) -> HTMLResponse:
    """The phone numbers and the IVR flow answering each, every flow as a diagram (admins; sends you to
    /login when you are not logged in)."""
    settings = request.app.state.settings
    mermaid = settings.mermaid_js is not None and Path(settings.mermaid_js).is_file()
    return _page(request, "admin_phone.html", csp=PHONE_ADMIN_CSP, public_url=settings.public_url, mermaid=mermaid)


@router.get("/admin/phone/mermaid.js")
def mermaid_js(request: Request) -> FileResponse:
    """The hub's own copy of Mermaid (``SWITCHBOARD_MERMAID_JS``), for the flow diagrams: never a CDN."""
    path = request.app.state.settings.mermaid_js
    if path is None or not Path(path).is_file():
        raise NotFound("no copy of Mermaid is configured (SWITCHBOARD_MERMAID_JS)")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"})


@router.get("/admin/kb", response_class=HTMLResponse)
async def admin_kb_page(request: Request) -> HTMLResponse:
    """Write and edit knowledge-base articles with a preview and their versions (sends you to /login when you
    are not logged in; saving is for supervisors and admins)."""
    return _page(request, "admin_kb.html")
