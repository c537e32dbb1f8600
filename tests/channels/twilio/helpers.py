"""Replaying Twilio: parameters as Twilio sends them, signed with a test token, posted to a live hub; and a
local HTTP server standing in for Twilio's REST API (captures what the hub asks of it)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

import httpx
from twilio.request_validator import RequestValidator

from hub.runtime import Runtime
from tests.conftest import until
from ticketing.ingest import unrouted_ticket_ids

TOKEN = "test-twilio-token"
ACCOUNT = "AC" + "a" * 32
PUBLIC = "http://testserver.local"
FIXTURES = __import__("pathlib").Path(__file__).parents[2] / "fixtures" / "twilio"


def recorded(name: str) -> dict[str, str]:
    """A recorded request's parameters (tests/fixtures/twilio/<name>.json)."""
    return dict(json.loads((FIXTURES / f"{name}.json").read_text()))


def sid(prefix: str, n: int) -> str:
    return f"{prefix}{n:032x}"


@dataclass
class Phone:
    """One caller's call, replayed webhook by webhook."""

    client: httpx.AsyncClient
    call_sid: str
    caller: str = "+14155550142"
    called: str = "+14155550199"
    token: str = TOKEN
    last: ET.Element | None = None
    texts: list[str] = field(default_factory=list)

    def params(self, **extra: str) -> dict[str, str]:
        base = recorded("voice_incoming")
        base.update(CallSid=self.call_sid, From=self.caller, To=self.called, Caller=self.caller, Called=self.called)
        base.update(extra)
        return base

    async def post(
        self, url: str, params: dict[str, str], *, sign: bool = True, token: str | None = None
    ) -> httpx.Response:
        if url.startswith("/"):
            url = PUBLIC + url
        headers = (
            {"X-Twilio-Signature": RequestValidator(token or self.token).compute_signature(url, params)} if sign else {}
        )
        return await self.client.post(url.removeprefix(PUBLIC), data=params, headers=headers)

    async def twiml(self, url: str, params: dict[str, str]) -> ET.Element:
        r = await self.post(url, params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/xml")
        self.last = ET.fromstring(r.text)
        self.texts.extend((e.text or "") for e in self.last.iter("Say"))
        return self.last

    async def dial(self) -> ET.Element:
        return await self.twiml("/webhooks/twilio/voice", self.params(CallStatus="ringing"))

    def action(self, tag: str = "Gather") -> str:
        assert self.last is not None
        found = self.last.find(f".//{tag}")
        assert found is not None, f"no {tag} in {ET.tostring(self.last).decode()}"
        return str(found.get("action"))

    async def press(self, digits: str) -> ET.Element:
        return await self.twiml(self.action(), self.params(CallStatus="in-progress", Digits=digits))

    async def say(self, words: str, confidence: str = "0.92") -> ET.Element:
        return await self.twiml(
            self.action(), self.params(CallStatus="in-progress", SpeechResult=words, Confidence=confidence)
        )

    async def silence(self) -> ET.Element:
        return await self.twiml(self.action(), self.params(CallStatus="in-progress"))

    async def record(self, seconds: int = 12) -> ET.Element:
        return await self.twiml(
            self.action("Record"),
            self.params(
                CallStatus="in-progress",
                RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{sid('RE', 1)}",
                RecordingSid=sid("RE", 1),
                RecordingDuration=str(seconds),
            ),
        )

    async def hang_up(self, duration: int = 30, sequence: int = 3) -> httpx.Response:
        return await self.post(
            "/webhooks/twilio/voice/status",
            self.params(CallStatus="completed", CallDuration=str(duration), SequenceNumber=str(sequence)),
        )

    async def agent_leg(self, placed: dict[str, str], status: str, sequence: int = 1) -> httpx.Response:
        """The status callback Twilio posts for the leg the hub placed to an agent's phone (``placed``: the
        REST request that created it, whose StatusCallback names the caller's call and the agent)."""
        params = recorded("voice_incoming")
        params.update(
            CallSid=sid("CA", 0xE000 + int(placed.get("_n", "0") or 0)),
            From=placed["From"],
            To=placed["To"],
            Caller=placed["From"],
            Called=placed["To"],
            Direction="outbound-api",
            CallStatus=status,
            SequenceNumber=str(sequence),
        )
        return await self.post(placed["StatusCallback"], params)

    def tags(self) -> list[str]:
        assert self.last is not None
        return [e.tag for e in self.last.iter()]


class FakeTwilioApi:
    """A local HTTP server answering Twilio's REST paths (calls, messages, recordings) and keeping each request;
    ``down`` makes it answer 503."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.down = False
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                api.requests.append(("GET", self.path, {}))
                if "/Recordings/" in self.path:
                    self._answer(200, b"ID3fake-mp3", "audio/mpeg")
                elif "/Media/" in self.path:
                    self._answer(200, b"\xff\xd8fake-jpeg", "image/jpeg")
                else:
                    self._answer(404, b"{}")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                api.requests.append(("POST", self.path, form))
                if api.down:
                    self._answer(503, b'{"message": "down", "status": 503}')
                    return
                n = len(api.requests)
                if self.path.endswith("/Calls.json"):
                    body = {"sid": sid("CA", 0xF000 + n), "status": "queued", "to": form.get("To")}
                else:
                    body = {
                        "sid": sid("SM", 0xF000 + n),
                        "status": "queued",
                        "to": form.get("To"),
                        "body": form.get("Body"),
                    }
                self._answer(201, json.dumps(body).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self, suffix: str) -> list[dict[str, str]]:
        return [form for method, path, form in self.requests if method == "POST" and path.endswith(suffix)]

    def start(self) -> FakeTwilioApi:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def routed(rt: Runtime) -> None:
    """Wait until every ticket stored has been through routing (offered, queued or assigned): a call's webhook
    answers once its ticket is stored, and routing runs on (``IngestPipeline.submit(routed=False)``)."""

    async def none_left() -> bool:
        return not await unrouted_ticket_ids(rt)

    await until(none_left, 10, what="the stored calls' routing")
