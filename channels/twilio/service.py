"""The running Twilio channel of one hub process: its voice line, its messaging, its REST client, and the
admin side (numbers and the flows answering them)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, insert, select, update

from channels.twilio.flows import e164
from channels.twilio.messaging import Messaging, MessagingSender
from channels.twilio.models import TwilioCall, TwilioNumber
from channels.twilio.rest import Rest
from channels.twilio.voice import VoiceService
from hub import audit
from hub.config import Settings
from hub.db import utcnow
from hub.errors import InvalidInput
from hub.messages import Ingest
from hub.principals import Principal
from hub.runtime import Runtime
from ivr_flows.errors import FlowInvalid
from ivr_flows.graph import mermaid
from ivr_flows.loader import load_flow

CALLS = TwilioCall.__table__  # type: ignore[attr-defined]
NUMBERS = TwilioNumber.__table__  # type: ignore[attr-defined]


class TwilioService:
    def __init__(self, rt: Runtime, ingest: Ingest, settings: Settings, rest: Rest | None = None) -> None:
        self.rt = rt
        self.settings = settings
        self.rest = rest or Rest(settings)
        self.voice = VoiceService(rt, ingest, settings, self.rest)
        self.messaging = Messaging(rt, ingest, settings, self.rest)
        self.sender = MessagingSender(self.messaging)

    async def start(self) -> None:
        await self.voice.start()

    async def stop(self) -> None:
        await self.voice.stop()
        await self.rest.aclose()

    # --- recordings ---------------------------------------------------------------------------------------------

    async def voice_recording(self, call_sid: str) -> tuple[int, str] | None:
        """(ticket id, Twilio's recording URL) of a call's voicemail."""
        async with self.rt.read() as conn:
            row = (
                await conn.execute(select(CALLS.c.ticket_id, CALLS.c.recording_url).where(CALLS.c.call_sid == call_sid))
            ).first()
        if row is None or row.ticket_id is None or not row.recording_url:
            return None
        return row.ticket_id, row.recording_url

    async def fetch_recording(self, url: str) -> bytes:
        """The recording's audio, fetched with the account's credentials."""
        content, _ = await self._fetch(url if url.endswith(".mp3") else url + ".mp3")
        return content

    async def fetch_media(self, url: str) -> tuple[bytes, str]:
        """A message's media and its type, fetched with the account's credentials."""
        return await self._fetch(url)

    async def _fetch(self, url: str) -> tuple[bytes, str]:
        """GET a URL of Twilio's API with the account's credentials (through SWITCHBOARD_TWILIO_API_URL when
        set); only Twilio's own hosts are fetched."""
        parts = urlsplit(url)
        if parts.scheme != "https" or not (parts.hostname or "").endswith(".twilio.com"):
            raise httpx.InvalidURL(f"not a Twilio URL: {url[:100]}")
        token = self.settings.twilio_auth_token.get_secret_value() if self.settings.twilio_auth_token else ""
        target = url
        if self.settings.twilio_api_url:
            target = self.settings.twilio_api_url.rstrip("/") + parts.path
        async with httpx.AsyncClient(timeout=20, follow_redirects=True) as client:
            answer = await client.get(target, auth=(self.settings.twilio_account_sid or "", token))
            answer.raise_for_status()
            return answer.content, answer.headers.get("content-type", "application/octet-stream")

    # --- numbers and flows --------------------------------------------------------------------------------------

    async def numbers(self) -> list[dict[str, Any]]:
        region = self.settings.default_phone_region
        out = [
            {"number": e164(n.number, region) or n.number, "flow": n.flow, "label": n.label, "source": "settings"}
            for n in self.settings.twilio_numbers
        ]
        async with self.rt.read() as conn:
            rows = (await conn.execute(select(NUMBERS).order_by(NUMBERS.c.number))).all()
        out += [{"number": r.number, "flow": r.flow, "label": r.label, "source": "api"} for r in rows]
        return out

    async def set_number(self, number: str, flow: str, label: str, *, actor: Principal | None = None) -> dict[str, Any]:
        path = self.voice.flows.path(flow)
        if path is None:
            raise InvalidInput(f"no flow named {flow!r} in the flows folder", code="unknown_flow", loc=("body", "flow"))
        try:
            load_flow(path)
        except FlowInvalid as exc:
            raise InvalidInput(exc.message, code="flow_invalid", loc=("body", "flow")) from None
        async with self.rt.write() as tx:
            before = (await tx.conn.execute(select(NUMBERS).where(NUMBERS.c.number == number))).first()
            done = await tx.conn.execute(
                update(NUMBERS).where(NUMBERS.c.number == number).values(flow=flow, label=label)
            )
            if not done.rowcount:
                await tx.conn.execute(
                    insert(NUMBERS).values(number=number, flow=flow, label=label, created_at=utcnow())
                )
            if actor is not None:
                await audit.record(
                    tx.conn,
                    actor=actor,
                    action="phone.number_set",
                    target=f"number:{number}",
                    detail={
                        "before": {"flow": before.flow, "label": before.label} if before is not None else None,
                        "after": {"flow": flow, "label": label},
                    },
                )
        return {"number": number, "flow": flow, "label": label, "source": "api"}

    async def delete_number(self, number: str, *, actor: Principal | None = None) -> None:
        async with self.rt.write() as tx:
            gone = await tx.conn.execute(delete(NUMBERS).where(NUMBERS.c.number == number))
            if actor is not None and gone.rowcount:
                await audit.record(tx.conn, actor=actor, action="phone.number_delete", target=f"number:{number}")

    def flow_summaries(self) -> list[dict[str, Any]]:
        out = []
        for name in self.voice.flows.names():
            path = self.voice.flows.path(name)
            if path is None:
                continue
            try:
                flow = load_flow(path)
            except FlowInvalid as exc:
                out.append({"name": name, "valid": False, "errors": exc.message, "mermaid": None})
                continue
            out.append({"name": name, "valid": True, "description": flow.description, "mermaid": mermaid(flow)})
        return out
