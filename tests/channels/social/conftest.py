"""Fixtures of the social channels: settings with a page, an Instagram account, a WhatsApp number and a bot;
a local HTTP server standing in for Meta's Graph API and Telegram's Bot API (it records every call and answers
what the test scripted); signing helpers; a running hub."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.social.service import SocialService
from hub.config import Settings
from hub.messages import InboundMessage, IngestResult
from hub.runtime import Runtime
from tests.conftest import LiveServer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "social"
APP_SECRET = "meta-app-secret-for-tests"
VERIFY_TOKEN = "verify-me-please"
TG_SECRET = "tg-secret_token-1"
PAGE, IG, NUMBER, BOT = "PAGE_ID", "IG_ID", "106540352242922", "shop"
MEDIA = b"\xff\xd8\xff\xe0 a customer's photo " + bytes(range(256))


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


def sign(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    """The headers Meta sends with ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def whatsapp_text(wamid: str, text: str, sender: str = "4915112345678") -> dict[str, Any]:
    """A WhatsApp Cloud API webhook carrying one text message to the test number."""
    message = {"from": sender, "id": wamid, "timestamp": "1749416383", "type": "text", "text": {"body": text}}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001", "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": "Bars Tester"}, "wa_id": sender}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Provider:
    """A local stand-in for Graph and the Bot API: records calls; answers scripted (status, body) pairs in
    order, then the default success answer for the path."""

    calls: list[Call] = field(default_factory=list)
    script: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    server: ThreadingHTTPServer | None = None
    counter: int = 0

    @property
    def sent(self) -> list[Call]:
        """The send-API calls (POSTs), without the lookups (profile names, media)."""
        return [c for c in self.calls if c.method == "POST"]

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if self.script:
            return self.script.popleft()
        self.counter += 1
        n = self.counter
        if path.startswith("/tg/"):
            return 200, {"ok": True, "result": {"message_id": 500 + n, "chat": {"id": 1}}}
        if path.endswith(f"/{NUMBER}/messages"):
            return 200, {"messaging_product": "whatsapp", "messages": [{"id": f"wamid.OUT{n}"}]}
        if path.endswith("/messages"):
            return 200, {"recipient_id": "x", "message_id": f"m_out_{n}"}
        return 200, {"id": f"comment_out_{n}"}


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.calls.append(Call("POST", self.path, dict(self.headers), body))
            status, answer = state.answer(self.path)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            """Media: Graph's media lookup, Telegram's getFile, and the files themselves (``MEDIA``)."""
            state.calls.append(Call("GET", self.path, dict(self.headers), b""))
            path = self.path.split("?")[0]
            if path.startswith("/media/") or path.startswith("/tg/file/"):
                data, kind = MEDIA, "image/jpeg"
            elif path.startswith("/tg/") and path.endswith("/getFile"):
                data, kind = (
                    json.dumps({"ok": True, "result": {"file_path": "photos/file_1.jpg"}}).encode(),
                    "application/json",
                )
            elif path.startswith("/graph/") and "fields=" in self.path:
                user = path.rsplit("/", 1)[-1]  # a profile: Instagram's has a username only
                answer = {"username": f"ig_{user}"} if "username" in self.path else {"name": f"Profile {user}"}
                data, kind = json.dumps({**answer, "id": user}).encode(), "application/json"
            elif path.startswith("/graph/"):
                media_id = path.rsplit("/", 1)[-1]
                answer = {"url": f"{state.url}/media/{media_id}", "mime_type": "image/jpeg", "id": media_id}
                data, kind = json.dumps(answer).encode(), "application/json"
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.server.shutdown()
        state.server.server_close()


SOCIAL = {
    "meta_app_secret": APP_SECRET,
    "meta_verify_token": VERIFY_TOKEN,
    "meta_pages": [
        {"page_id": PAGE, "access_token": "page-token", "queue": "social", "kind": "messenger"},
        {"page_id": IG, "access_token": "ig-token", "queue": "social", "kind": "instagram"},
    ],
    "whatsapp_numbers": [{"phone_number_id": NUMBER, "access_token": "wa-token", "queue": "social"}],
    "telegram_bots": [{"name": BOT, "token": "123456:ABC", "secret_token": TG_SECRET, "queue": "social"}],
    "whatsapp_templates": [
        {"name": "order_update", "language": "en_US", "body": "Hello {{1}}, your order {{2}} has news."}
    ],
    "outbox_max_attempts": 4,
}


def with_social(settings: Settings, provider_url: str, **more: Any) -> Settings:
    """``settings`` with the social accounts, sending to ``provider_url``."""
    data = settings.model_dump()
    data.update(SOCIAL, meta_graph_url=provider_url + "/graph", telegram_api_url=provider_url + "/tg", **more)
    return Settings(**data, _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def social_settings(settings: Settings, provider: Provider, tmp_path: Path) -> Settings:
    return with_social(settings, provider.url, attachment_dir=tmp_path / "attachments")


@pytest.fixture
def social_server(social_settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(social_settings).start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
async def hub(social_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=social_server.url, timeout=30) as c:
        yield c


async def no_ingest(message: InboundMessage, **_: object) -> IngestResult:
    """The ingest of a ``SocialService`` whose test stores nothing inbound (senders, receipts, health)."""
    raise AssertionError("nothing is ingested here")


@pytest.fixture
async def service(rt: Runtime, social_settings: Settings) -> AsyncIterator[SocialService]:
    """A ``SocialService`` on the test's runtime, talking to the provider stand-in; it ingests nothing."""
    rt.settings = social_settings
    svc = SocialService(rt, no_ingest, social_settings)
    yield svc
    await svc.stop()
