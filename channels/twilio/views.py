"""The Twilio channel's endpoints: the signed webhooks (voice, the flow's action URLs, status callbacks,
messaging), the recordings proxy, the admin API of numbers and flows, and the demo phone's signer.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations."""

import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from channels.twilio import twiml
from channels.twilio.flows import FLOW_NAME, e164
from channels.twilio.service import TwilioService
from channels.twilio.signatures import DEMO_TOKEN, BadParameters, fingerprint, sign, verified_params
from hub.db import utcnow
from hub.deps import CurrentAdmin, CurrentAgent
from hub.errors import InvalidInput, NotFound, PermissionDenied
from hub.inputs import Id, IdParam, Input

log = logging.getLogger(__name__)
XML = "application/xml"
SID = re.compile(r"^[A-Za-z]{2}[0-9a-fA-F]{32}$")


class NumberSet(Input):
    """A number of the hub's and the flow (by name) answering it."""

    flow: str = Field(min_length=1, max_length=100, pattern=FLOW_NAME.pattern)
    label: str = Field(default="", max_length=200)


class WarmTransfer(Input):
    """The colleague to bring into the call."""

    agent_id: Id


class PhoneChoice(Input):
    """Where the agent answers the calls they accept: in the console (browser) or on their own phone."""

    answer_on: Literal["browser", "phone"]


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
        (left), status callbacks (status) and those of the leg ringing an agent's phone (agent); all signed."""
        if kind not in ("gather", "record", "dial", "wait", "left", "status", "agent"):
            raise NotFound(f"no Twilio voice webhook {kind!r}")
        params = await params_of(request, svc)
        if kind == "agent":  # the status callback of the leg ringing an agent's phone (the URL names both)
            call, agent = request.query_params.get("call", ""), request.query_params.get("agent", "")
            if not SID.match(call) or not agent.isdigit() or len(agent) > 9:
                raise BadParameters("the agent leg's URL names no call and agent", loc=("query", "call"))
            await svc.voice.agent_leg(params, call_sid=call, agent_id=int(agent))
            return _xml(twiml.empty())
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
    async def recording(call_sid: Annotated[str, Path(max_length=64)], agent: CurrentAgent, svc: Service) -> Response:
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
        message_sid: Annotated[str, Path(max_length=64)],
        n: Annotated[int, Path(ge=0, le=9)],
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

    @router.post("/api/twilio/tickets/{ticket_id}/listen", tags=["twilio"])
    async def listen_in(ticket_id: IdParam, agent: CurrentAgent, svc: Service) -> dict[str, str]:
        """A supervisor listens in on a live call: their own phone is dialled into the call's room, muted."""
        agent.require_supervisor()
        return {"call_sid": await svc.voice.bring_in(ticket_id, agent.agent_id, listen_only=True, actor=agent)}

    @router.post("/api/twilio/tickets/{ticket_id}/warm-transfer", tags=["twilio"])
    async def warm_transfer(
        ticket_id: IdParam, body: WarmTransfer, agent: CurrentAgent, svc: Service
    ) -> dict[str, str]:
        """The agent on a call brings a colleague into the room (their own phone) to hand the caller over."""
        if not await svc.rt.ports.tickets.may_see(principal=agent, ticket_id=ticket_id):
            raise NotFound("no such ticket")
        return {"call_sid": await svc.voice.bring_in(ticket_id, body.agent_id, listen_only=False)}

    @router.get("/api/twilio/tickets/{ticket_id}/call", tags=["twilio"])
    async def ticket_call(ticket_id: IdParam, agent: CurrentAgent, svc: Service) -> dict[str, Any]:
        """The newest call of a voice ticket, for the console's screen pop: the caller, the IVR path, the wait,
        who answered, and the caller's contact with their open tickets."""
        if not await svc.rt.ports.tickets.may_see(principal=agent, ticket_id=ticket_id):
            raise NotFound("no such ticket")
        found = await svc.voice.call_of_ticket(ticket_id)
        if found is None:
            raise NotFound("no call on this ticket")
        return found

    @router.get("/api/twilio/calls/summary", tags=["twilio"])
    async def calls_summary(
        agent: CurrentAgent, svc: Service, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24
    ) -> dict[str, Any]:
        """Supervisors: the calls of the last ``hours`` hours — answered, abandoned (hung up waiting for an
        agent), and how the others ended."""
        agent.require_supervisor()
        return await svc.voice.summary(utcnow() - timedelta(hours=hours))

    # --- the agent's phone ------------------------------------------------------------------------------------

    @router.get("/api/twilio/phone", tags=["twilio"])
    async def my_phone(agent: CurrentAgent, svc: Service) -> dict[str, Any]:
        """Where the calls the agent accepts ring (browser, phone, or console alone), and whether the browser
        phone works on this server (and why not)."""
        return await svc.voice.phones.describe(agent.agent_id)

    @router.put("/api/twilio/phone", tags=["twilio"])
    async def choose_phone(body: PhoneChoice, agent: CurrentAgent, svc: Service) -> dict[str, Any]:
        """The agent answers their calls in the browser or on their own phone from now on."""
        return await svc.voice.phones.choose(agent.agent_id, body.answer_on)

    @router.post("/api/twilio/phone/token", tags=["twilio"])
    async def phone_token(agent: CurrentAgent, svc: Service) -> dict[str, Any]:
        """An access token for the agent's browser phone (Twilio's Voice JavaScript SDK): incoming calls to
        ``client:agent-<id>`` only, for ``SWITCHBOARD_TWILIO_BROWSER_TOKEN_SECONDS``."""
        return svc.voice.phones.token(agent.agent_id)

    # --- admin: numbers and flows -----------------------------------------------------------------------------

    @router.get("/api/twilio/numbers", tags=["twilio"])
    async def list_numbers(agent: CurrentAdmin, svc: Service) -> list[dict[str, Any]]:
        """The hub's numbers and the flow answering each (from the settings, and set through this API)."""
        return await svc.numbers()

    @router.put("/api/twilio/numbers/{number}", tags=["twilio"])
    async def set_number(
        number: Annotated[str, Path(max_length=32)], body: NumberSet, agent: CurrentAdmin, svc: Service
    ) -> dict[str, Any]:
        """Answer ``number`` (E.164) with the flow named ``flow``: a flow file that exists and lints."""
        normal = e164(number, svc.settings.default_phone_region)
        if normal is None:
            raise InvalidInput(f"{number[:32]!r} is not a phone number", code="invalid_number", loc=("path", "number"))
        return await svc.set_number(normal, body.flow, body.label, actor=agent)

    @router.delete("/api/twilio/numbers/{number}", tags=["twilio"], status_code=204)
    async def delete_number(number: Annotated[str, Path(max_length=32)], agent: CurrentAdmin, svc: Service) -> Response:
        """Stop answering ``number`` with a flow set through the API."""
        await svc.delete_number(e164(number, svc.settings.default_phone_region) or number, actor=agent)
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
