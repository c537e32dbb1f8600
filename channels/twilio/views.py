"""The Twilio channel's endpoints: the signed webhooks (voice, the flow's action URLs, status callbacks,
messaging), the recordings proxy, the admin API of numbers and flows, and the demo phone's signer.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations."""

import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from channels.twilio import twiml
from channels.twilio.flows import FLOW_NAME, e164
from channels.twilio.service import TwilioService
from channels.twilio.signatures import DEMO_TOKEN, BadParameters, fingerprint, sign, verified_params
from hub.deps import CurrentAdmin, CurrentAgent
from hub.errors import InvalidInput, NotFound, PermissionDenied
from hub.inputs import IdParam, Input

log = logging.getLogger(__name__)
XML = "application/xml"
SID = re.compile(r"^[A-Za-z]{2}[0-9a-fA-F]{32}$")


class NumberSet(Input):
    """A number of the hub's and the flow (by name) answering it."""

    flow: str = Field(min_length=1, max_length=100, pattern=FLOW_NAME.pattern)
    label: str = Field(default="", max_length=200)


class DemoSignRequest(Input):
    """A pretend webhook the demo phone is about to post: its path under the hub and its parameters."""

    path: str = Field(min_length=1, max_length=200, pattern=r"^/webhooks/twilio/voice(/[a-z]+)?(\?s=[0-9]{1,6})?$")
    params: dict[str, Annotated[str, Field(max_length=1000)]] = Field(max_length=30)


def _xml(text: str) -> Response:
    return Response(text, media_type=XML)


def _check_sid(params: dict[str, str], name: str = "CallSid") -> None:
    if not SID.match(params.get(name, "")):
        raise BadParameters(f"{name} is missing or not a Twilio id", loc=("body", name))


def build_router(running: Callable[[], TwilioService]) -> APIRouter:
    """The channel's endpoints; ``running`` answers the channel's service once it has started."""
    router = APIRouter()

    async def service() -> TwilioService:
        return running()

    Service = Annotated[TwilioService, Depends(service)]

    async def params_of(request: Request, svc: TwilioService, sid: str = "CallSid") -> dict[str, str]:
        params = await verified_params(request, svc.settings)
        _check_sid(params, sid)
        return params

    # --- voice ------------------------------------------------------------------------------------------------

    @router.post("/webhooks/twilio/voice", tags=["twilio"], response_class=Response)
    async def voice(request: Request, svc: Service) -> Response:
        """Twilio's voice webhook for an incoming call (signed): the TwiML of the number's flow."""
        params = await params_of(request, svc)
        return _xml(await svc.voice.incoming(params, fingerprint(request, params)))

    @router.post("/webhooks/twilio/voice/{kind}", tags=["twilio"], response_class=Response)
    async def voice_action(kind: str, request: Request, svc: Service) -> Response:
        """The flow's action URLs (gather, record, dial), the hold loop (wait), the caller leaving the room
        (left) and status callbacks (status); all signed."""
        if kind not in ("gather", "record", "dial", "wait", "left", "status"):
            raise NotFound(f"no Twilio voice webhook {kind!r}")
        params = await params_of(request, svc)
        if kind == "status":
            await svc.voice.status(params)
            return _xml(twiml.empty())
        if kind == "wait":
            return _xml(await svc.voice.wait(params))
        if kind == "left":
            return _xml(await svc.voice.left(params))
        return _xml(await svc.voice.action(kind, params, fingerprint(request, params)))

    # --- messaging --------------------------------------------------------------------------------------------

    @router.post("/webhooks/twilio/messaging", tags=["twilio"], response_class=Response)
    async def messaging(request: Request, svc: Service) -> Response:
        """Twilio's messaging webhook (SMS and WhatsApp, signed): the message becomes a ticket's message."""
        params = await params_of(request, svc, "MessageSid")
        await svc.messaging.inbound(params)
        return _xml(svc.messaging.empty_reply())

    @router.post("/webhooks/twilio/messaging/status", tags=["twilio"], response_class=Response)
    async def messaging_status(request: Request, svc: Service) -> Response:
        """A message's status callback (signed): its delivery status moves forward, never back."""
        params = await params_of(request, svc, "MessageSid")
        await svc.messaging.status(params)
        return _xml(twiml.empty())

    # --- recordings -------------------------------------------------------------------------------------------

    @router.get("/api/twilio/recordings/{call_sid}", tags=["twilio"], response_class=Response)
    async def recording(call_sid: Annotated[str, Field(max_length=64)], agent: CurrentAgent, svc: Service) -> Response:
        """A voicemail's recording, for agents who may see its ticket: fetched from Twilio with the account's
        credentials and passed through (the recording's own URL is never shown)."""
        found = await svc.voice_recording(call_sid)
        if found is None or not await svc.rt.ports.tickets.may_see(principal=agent, ticket_id=found[0]):
            raise NotFound("no such recording")
        if not svc.rest.configured:
            raise NotFound("recordings are kept at Twilio, and Twilio is not configured on this server")
        try:
            audio = await svc.fetch_recording(found[1])
        except httpx.HTTPError as exc:
            log.warning("fetching recording of %s failed: %s", call_sid, exc)
            raise NotFound("the recording could not be fetched from Twilio") from None
        return Response(audio, media_type="audio/mpeg", headers={"Cache-Control": "private, max-age=300"})

    @router.get("/api/twilio/media/{message_sid}/{n}", tags=["twilio"], response_class=Response)
    async def media(
        message_sid: Annotated[str, Field(max_length=64)],
        n: Annotated[int, Field(ge=0, le=9)],
        agent: CurrentAgent,
        svc: Service,
    ) -> Response:
        """A picture or file a customer sent by SMS or WhatsApp, for agents who may see its ticket: fetched
        from Twilio with the account's credentials (Twilio's media URL is never shown)."""
        found = None
        for channel in ("whatsapp", "sms"):
            found = await svc.rt.ports.tickets.message_by_external_id(channel=channel, external_id=message_sid)
            if found is not None:
                break
        url = (found.metadata.get("twilio_media") or {}).get(str(n)) if found is not None else None
        if (
            found is None
            or not url
            or not await svc.rt.ports.tickets.may_see(principal=agent, ticket_id=found.ticket_id)
        ):
            raise NotFound("no such media")
        if not svc.rest.configured:
            raise NotFound("media is kept at Twilio, and Twilio is not configured on this server")
        try:
            content, kind = await svc.fetch_media(url)
        except httpx.HTTPError as exc:
            log.warning("fetching media of %s failed: %s", message_sid, exc)
            raise NotFound("the media could not be fetched from Twilio") from None
        return Response(content, media_type=kind, headers={"Cache-Control": "private, max-age=300"})

    @router.get("/api/twilio/whatsapp/window/{ticket_id}", tags=["twilio"])
    async def whatsapp_window(ticket_id: IdParam, agent: CurrentAgent, svc: Service) -> dict[str, Any]:
        """WhatsApp's 24-hour window of a ticket: open or not, and the seconds left (the composer shows it)."""
        if not await svc.rt.ports.tickets.may_see(principal=agent, ticket_id=ticket_id):
            raise NotFound("no such ticket")
        return await svc.messaging.whatsapp_window(ticket_id)

    # --- admin: numbers and flows -----------------------------------------------------------------------------

    @router.get("/api/twilio/numbers", tags=["twilio"])
    async def list_numbers(agent: CurrentAdmin, svc: Service) -> list[dict[str, Any]]:
        """The hub's numbers and the flow answering each (from the settings, and set through this API)."""
        return await svc.numbers()

    @router.put("/api/twilio/numbers/{number}", tags=["twilio"])
    async def set_number(
        number: Annotated[str, Field(max_length=32)], body: NumberSet, agent: CurrentAdmin, svc: Service
    ) -> dict[str, Any]:
        """Answer ``number`` (E.164) with the flow named ``flow``: a flow file that exists and lints."""
        normal = e164(number, svc.settings.default_phone_region)
        if normal is None:
            raise InvalidInput(f"{number[:32]!r} is not a phone number", code="invalid_number", loc=("path", "number"))
        return await svc.set_number(normal, body.flow, body.label)

    @router.delete("/api/twilio/numbers/{number}", tags=["twilio"], status_code=204)
    async def delete_number(
        number: Annotated[str, Field(max_length=32)], agent: CurrentAdmin, svc: Service
    ) -> Response:
        """Stop answering ``number`` with a flow set through the API."""
        await svc.delete_number(e164(number, svc.settings.default_phone_region) or number)
        return Response(status_code=204)

    @router.get("/api/twilio/flows", tags=["twilio"])
    async def list_flows(agent: CurrentAdmin, svc: Service) -> list[dict[str, Any]]:
        """The flows in the flows folder, each with its Mermaid diagram and whether it lints."""
        return svc.flow_summaries()

    # --- the demo phone -------------------------------------------------------------------------------------------

    @router.post("/api/twilio/demo/sign", tags=["twilio"])
    async def demo_sign(body: DemoSignRequest, svc: Service) -> dict[str, str]:
        """Only in ``switchboard demo``: the signature of a pretend webhook, with the demo's own token (the
        demo phone posts through the very same signed webhooks as Twilio)."""
        if not svc.settings.demo_mode:
            raise PermissionDenied("the demo phone signs only in switchboard demo", code="demo_only")
        url = svc.settings.public_url + body.path
        return {"url": url, "signature": sign(DEMO_TOKEN, url, body.params)}

    return router
