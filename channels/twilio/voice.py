"""Calls: each webhook steps the call's IVR flow (``ivr_flows.engine.step``) and answers TwiML.

Per webhook: read the call's row (``twilio_calls``, by CallSid); a request seen already (Twilio retries) gets
the TwiML it was answered; else build the engine's input from the parameters, step, do the adapter's work the
actions ask for (``Lookup``: the caller's contact and open requests through ``rt.ports.contacts``; ``Enqueue``:
the call becomes work in its queue, a ticket through ingest; ``Voicemail``, ``Callback``), render the rest with
``VoiceResponse``, and store the new state with the request's fingerprint and the TwiML. The row is updated
only if no other request stepped the call meanwhile (compare-and-set on ``last_request``): of two racing
copies of one webhook, one steps and the other answers what the first stored.

A call becomes a ticket (channel ``voice``, the caller's contact by E.164, the same person as their SMS and
WhatsApp) when it reaches a person: queued for an agent, a voicemail, a callback. Its timeline (system notes:
IVR path, wait, who answered, duration, voicemail) is written through ``rt.ports.tickets``. A caller who hangs
up while waiting is abandoned (``rt.ports.tickets.abandon``: a ``call.abandoned`` event). When an agent
accepts a waiting call, they are connected (``connect``): dialled on their own phone into the caller's room
when ``SWITCHBOARD_TWILIO_AGENT_NUMBERS`` names it, and the call is answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from twilio.base.exceptions import TwilioRestException

from channels.twilio import twiml
from channels.twilio.flows import DEMO_FLOW, FlowBook, e164
from channels.twilio.models import TwilioCall, TwilioNumber
from channels.twilio.rest import Rest
from hub.config import Settings
from hub.db import utcnow
from hub.events import EventRecord, EventType
from hub.hours import BusinessHours
from hub.messages import (
    Attachment,
    DeliveryError,
    DeliveryResult,
    Identity,
    InboundMessage,
    Ingest,
    OutboundMessage,
)
from hub.runtime import Runtime
from ivr_flows.actions import Action, Callback, Enqueue, Lookup, Voicemail
from ivr_flows.engine import Context, new_call, step
from ivr_flows.inputs import (
    CallStarted,
    DialDone,
    Digits,
    Input,
    LookupResult,
    NoInput,
    Queued,
    RecordingDone,
    Speech,
    TicketSummary,
)
from ivr_flows.schema import Flow
from ivr_flows.state import CallState

log = logging.getLogger(__name__)

CALLS = TwilioCall.__table__  # type: ignore[attr-defined]
NUMBERS = TwilioNumber.__table__  # type: ignore[attr-defined]
CHANNEL = "voice"
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
HOURS_TTL = 15.0
NEVER_OPEN = BusinessHours.parse({"timezone": "UTC", "weekly": {}})
MAX_ADAPTER_STEPS = 10  # Lookup/Enqueue answered in one request, at most this many times
HOLD_TEXT = {"en": "You are number {n} in line. Please hold.", "es": "Usted es el número {n} en la fila."}


class UnknownCall(Exception):
    """A webhook about a CallSid we have no record of."""


@dataclass(slots=True)
class Call:
    """A call's row as the service works with it."""

    sid: str
    caller: str
    called: str
    flow: str
    state: CallState
    steps: int
    last_request: str | None
    ticket_id: int | None
    queue: str | None
    waiting_since: datetime | None
    answered_at: datetime | None
    outcome: str | None
    ended_at: datetime | None


def _call(row: Any, flow: Flow | None) -> Call:
    stored = row.state or {}
    try:
        state = CallState.model_validate(stored["call"])
    except (KeyError, ValidationError, TypeError):
        state = new_call(flow) if flow is not None else CallState(language="en", ended=True, outcome="error")
    return Call(
        sid=row.call_sid,
        caller=row.caller,
        called=row.called,
        flow=row.flow,
        state=state,
        steps=int(stored.get("n", 0)),
        last_request=row.last_request,
        ticket_id=row.ticket_id,
        queue=row.queue,
        waiting_since=row.waiting_since,
        answered_at=row.answered_at,
        outcome=row.outcome,
        ended_at=row.ended_at,
    )


def engine_input(kind: str, params: dict[str, str]) -> Input:
    """The engine's input from an action URL's parameters."""
    if kind == "gather":
        digits = params.get("Digits", "")
        said = params.get("SpeechResult", "").strip()
        if digits:
            return Digits(digits=digits)
        if said:
            try:
                confidence = float(params.get("Confidence", "1") or 1)
            except ValueError:
                confidence = 0.0
            return Speech(text=said[:1000], confidence=min(1.0, max(0.0, confidence)))
        return NoInput()
    if kind == "record":
        url = params.get("RecordingUrl") or None
        try:
            seconds = max(0, int(params.get("RecordingDuration", "0") or 0))
        except ValueError:
            seconds = 0
        return RecordingDone(url=url, duration_seconds=seconds, recording_id=params.get("RecordingSid") or None)
    status = params.get("DialCallStatus", "failed")
    return DialDone(status=status if status in ("completed", "answered", "busy", "no-answer", "canceled") else "failed")  # type: ignore[arg-type]


class VoiceService:
    """The phone line of one hub process (see the module docstring)."""

    def __init__(self, rt: Runtime, ingest: Ingest, settings: Settings, rest: Rest) -> None:
        self.rt = rt
        self.ingest = ingest
        self.settings = settings
        self.rest = rest
        self.flows = FlowBook(settings)
        self._hours: dict[str, tuple[float, BusinessHours | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.step_seconds: list[float] = []  # engine step times, kept by the benchmark (None: not kept)
        self.keep_step_times = False

    async def start(self) -> None:
        self.rt.events.listen(self._on_event)

    async def stop(self) -> None:
        self.rt.events.unlisten(self._on_event)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- URLs ---------------------------------------------------------------------------------------------------

    def urls(self, steps: int) -> twiml.Urls:
        base = f"{self.settings.public_url}/webhooks/twilio/voice"
        return twiml.Urls(
            gather=f"{base}/gather?s={steps}",
            record=f"{base}/record?s={steps}",
            dial=f"{base}/dial?s={steps}",
            wait=f"{base}/wait",
            left=f"{base}/left",
        )

    # --- which flow ---------------------------------------------------------------------------------------------

    async def flow_name_for(self, called: str) -> str | None:
        if self.settings.demo_mode:
            return DEMO_FLOW
        name = self.flows.configured(called)
        if name is None:
            async with self.rt.read() as conn:
                name = (await conn.execute(select(NUMBERS.c.flow).where(NUMBERS.c.number == called))).scalar()
        return name or self.settings.twilio_default_flow

    async def _context(self, flow: Flow) -> Context:
        now = time.monotonic()
        hours: dict[str, BusinessHours | None] = {}
        for queue in _queues_of(flow):
            cached = self._hours.get(queue)
            if cached is None or cached[0] < now:
                available = await self.rt.ports.queues.availability(channel=CHANNEL, queue=queue)
                cached = self._hours[queue] = (now + HOURS_TTL, None if available.open else NEVER_OPEN)
            hours[queue] = cached[1]
        return Context(now=utcnow(), hours=hours)

    # --- webhooks -----------------------------------------------------------------------------------------------

    async def incoming(self, params: dict[str, str], key: str) -> str:
        """The voice webhook: a new call starts its flow (a retried one gets its first answer again)."""
        sid = params.get("CallSid", "")
        row = await self._row(sid)
        if row is not None:
            return row.last_twiml or twiml.goodbye()
        region = self.settings.default_phone_region
        caller = e164(params.get("From", ""), region) or params.get("From", "")[:64]
        called = e164(params.get("To", ""), region) or params.get("To", "")[:64]
        name = await self.flow_name_for(called)
        flow = self.flows.get(name) if name else None
        if flow is None:
            log.warning("call %s to %s: no flow answers this number (flow %r)", sid, called, name)
            return twiml.goodbye("Sorry, this number cannot take calls right now. Goodbye.")
        call = Call(
            sid,
            caller,
            called,
            flow.name if name is None else name,
            new_call(flow),
            0,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        return await self._advance(
            call, flow, CallStarted(caller=caller[:64] or None, called=called[:64] or None), key, new=True
        )

    async def action(self, kind: str, params: dict[str, str], key: str) -> str:
        """A Gather, Record or Dial action URL: the caller's answer steps the flow."""
        sid = params.get("CallSid", "")
        row = await self._row(sid)
        if row is None:
            log.warning("twilio %s webhook for unknown call %r: answered with a goodbye", kind, sid[:64])
            return twiml.goodbye()
        if row.last_request == key:
            return row.last_twiml or twiml.goodbye()
        flow = self.flows.get(row.flow)
        call = _call(row, flow)
        if flow is None or call.state.ended:
            return twiml.goodbye()
        return await self._advance(call, flow, engine_input(kind, params), key)

    async def wait(self, params: dict[str, str]) -> str:
        """The conference's wait URL: the caller's place in line, then hold music."""
        sid = params.get("CallSid", "")
        row = await self._row(sid)
        if row is None:
            log.warning("twilio wait webhook for unknown call %r: answered with a goodbye", sid[:64])
            return twiml.goodbye()
        call = _call(row, None)
        if row.answered_by is not None:  # the agent joined (Twilio stops asking then; the demo phone sees it)
            name = await self.rt.ports.agents.public_name(row.answered_by)
            return twiml.connected(f"You are now connected to {name or 'an agent'}.")
        text = None
        if call.queue and call.waiting_since is not None:
            position = await self.position(call.queue, call.waiting_since)
            template = HOLD_TEXT.get(call.state.language, HOLD_TEXT["en"])
            text = template.format(n=position)
        flow = self.flows.get(row.flow)
        language = (
            flow.languages[call.state.language].locale if flow and call.state.language in flow.languages else "en-US"
        )
        return twiml.hold_music(language=language, music_url=self.settings.twilio_hold_music_url, text=text)

    async def left(self, params: dict[str, str]) -> str:
        """The caller's leg left the room (the agent hung up, or the room ended): the call ends."""
        return twiml.goodbye()

    async def status(self, params: dict[str, str]) -> None:
        """A status callback: the call's status, and at the end its record closed (an unanswered caller who was
        waiting is abandoned)."""
        sid = params.get("CallSid", "")
        status = params.get("CallStatus", "")[:20]
        seen_key = f"{status}:{params.get('SequenceNumber', '')}"
        async with self.rt.read() as conn:
            row = (await conn.execute(select(CALLS).where(CALLS.c.call_sid == sid))).first()
        if row is None:
            log.info("twilio status %s for unknown call %r ignored", status, sid[:64])
            return
        seen = list(row.statuses_seen or [])
        if seen_key in seen or row.ended_at is not None:
            return
        now = utcnow()
        values: dict[str, Any] = {"status": status, "statuses_seen": [*seen, seen_key][-20:], "updated_at": now}
        ending = status in ENDED
        if ending:
            try:
                duration = int(params.get("CallDuration", "") or 0)
            except ValueError:
                duration = 0
            values.update(ended_at=now, duration_seconds=max(0, duration))
            if row.outcome != "callback":  # a callback keeps its place in line after the caller hangs up
                values["waiting_since"] = None
        async with self.rt.write() as tx:
            done = await tx.conn.execute(
                update(CALLS).where(CALLS.c.call_sid == sid, CALLS.c.ended_at.is_(None)).values(**values)
            )
        if not ending or not done.rowcount:
            return
        await self._close(_call(row, None), row, values["duration_seconds"], now)

    async def _close(self, call: Call, row: Any, duration: int, now: datetime) -> None:
        if call.ticket_id is None:
            return
        path = " > ".join(call.state.path)
        waited = int((now - call.waiting_since).total_seconds()) if call.waiting_since is not None else None
        meta = {"call_sid": call.sid, "ivr_path": call.state.path, "duration_seconds": duration}
        if call.outcome == "hold" and call.answered_at is None and call.waiting_since is not None:
            await self.rt.ports.tickets.abandon(ticket_id=call.ticket_id, reason="caller hung up while waiting")
            await self.rt.ports.tickets.add_timeline(
                ticket_id=call.ticket_id,
                text=f"Call abandoned: the caller hung up after waiting {waited} s. IVR: {path}",
                metadata={**meta, "call_event": "abandoned", "wait_seconds": waited},
            )
            return
        who = ""
        if row.answered_by is not None:
            name = await self.rt.ports.agents.public_name(row.answered_by)
            who = f", answered by {name or 'agent #' + str(row.answered_by)}"
        await self.rt.ports.tickets.add_timeline(
            ticket_id=call.ticket_id,
            text=f"Call ended after {duration} s{who}. IVR: {path}",
            metadata={**meta, "call_event": "ended", "answered_by": row.answered_by},
        )

    # --- stepping -----------------------------------------------------------------------------------------------

    async def _row(self, sid: str) -> Any:
        async with self.rt.read() as conn:
            return (await conn.execute(select(CALLS).where(CALLS.c.call_sid == sid))).first()

    def _step(self, flow: Flow, state: CallState, event: Input, context: Context) -> tuple[CallState, list[Action]]:
        if not self.keep_step_times:
            return step(flow, state, event, context)
        t = time.perf_counter()
        out = step(flow, state, event, context)
        self.step_seconds.append(time.perf_counter() - t)
        return out

    async def _advance(self, call: Call, flow: Flow, event: Input, key: str, *, new: bool = False) -> str:
        context = await self._context(flow)
        state, actions = self._step(flow, call.state, event, context)
        values: dict[str, Any] = {}
        for _ in range(MAX_ADAPTER_STEPS):
            last = actions[-1] if actions else None
            answer: Input
            if isinstance(last, Lookup):
                answer = await self._lookup(call)
            elif isinstance(last, Enqueue):
                answer = await self._enqueue(call, last, state, values)
            else:
                break
            state, more = self._step(flow, state, answer, context)
            actions = actions[:-1] + more
        for action in actions:
            if isinstance(action, Voicemail):
                await self._voicemail(call, action, values)
            elif isinstance(action, Callback):
                await self._callback(call, action, values)
        steps = call.steps + 1
        text = twiml.render(actions, self.urls(steps), call_sid=call.sid)
        if state.ended:
            values["outcome"] = state.outcome
        values.update(
            state={"call": state.model_dump(mode="json"), "n": steps},
            last_request=key,
            last_twiml=text,
            updated_at=utcnow(),
        )
        if new:
            try:
                async with self.rt.write() as tx:
                    await tx.conn.execute(
                        insert(CALLS).values(
                            call_sid=call.sid,
                            direction="inbound",
                            caller=call.caller,
                            called=call.called,
                            flow=call.flow,
                            status="in-progress",
                            statuses_seen=[],
                            created_at=utcnow(),
                            **values,
                        )
                    )
            except IntegrityError:  # the same call's webhook, answered by a racing copy: answer as it did
                row = await self._row(call.sid)
                return (row.last_twiml if row is not None else None) or text
            return text
        async with self.rt.write() as tx:
            stored = await tx.conn.execute(
                update(CALLS)
                .where(CALLS.c.call_sid == call.sid, _same(CALLS.c.last_request, call.last_request))
                .values(**values)
            )
        if not stored.rowcount:  # another copy of this request stepped the call first
            row = await self._row(call.sid)
            return (row.last_twiml if row is not None else None) or text
        return text

    async def _lookup(self, call: Call) -> LookupResult:
        summary = await self.rt.ports.contacts.summary(kind="phone", value=call.caller)
        return LookupResult(
            contact_name=(summary.name or None) and summary.name[:200] if summary.name else None,
            open_tickets=[
                TicketSummary(id=t.id, subject=t.subject[:500], status=t.status[:20]) for t in summary.open_tickets
            ],
        )

    async def position(self, queue: str, since: datetime | None) -> int:
        """The caller's place in line: calls waiting in the queue since before them, plus one."""
        conds = [CALLS.c.queue == queue, CALLS.c.waiting_since.is_not(None)]
        if since is not None:
            conds.append(CALLS.c.waiting_since < since)
        async with self.rt.read() as conn:
            ahead = (await conn.execute(select(func.count()).select_from(CALLS).where(*conds))).scalar_one()
        return int(ahead) + 1

    async def _ingest(
        self,
        call: Call,
        *,
        external_id: str,
        queue: str,
        text: str,
        meta: dict[str, Any],
        attachments: list[Attachment] | None = None,
    ) -> int | None:
        message = InboundMessage(
            channel=CHANNEL,
            external_id=external_id,
            sender=Identity(kind="phone", value=call.caller or "unknown"),
            recipient=call.called or None,
            subject=f"Call from {call.caller}",
            text=text,
            queue=queue,
            attachments=attachments or [],
            metadata={"call_sid": call.sid, **meta},
        )
        try:
            result = await self.ingest(message)
        except Exception:
            log.exception("call %s from %r: could not become a ticket", call.sid, call.caller)
            return None
        return result.ticket_id

    async def _enqueue(self, call: Call, action: Enqueue, state: CallState, values: dict[str, Any]) -> Queued:
        """The call becomes work waiting in its queue (once per call: a replay finds its ticket)."""
        meta = action.metadata
        path = " > ".join(str(p) for p in meta.get("ivr_path", []))
        ticket_id = await self._ingest(
            call,
            external_id=call.sid,
            queue=action.queue,
            text=f"Phone call from {call.caller}, waiting in {action.queue}. IVR: {path}",
            meta={**meta, "call_event": "queued", "skills": action.skills, "priority": action.priority},
        )
        since = call.waiting_since or utcnow()
        position = await self.position(action.queue, since if call.waiting_since else None)
        call.ticket_id = ticket_id or call.ticket_id
        call.queue, call.waiting_since = action.queue, since
        values.update(ticket_id=call.ticket_id, queue=action.queue, waiting_since=since)
        return Queued(estimated_wait_seconds=(position - 1) * self.settings.twilio_callback_seconds, position=position)

    async def _voicemail(self, call: Call, action: Voicemail, values: dict[str, Any]) -> None:
        proxy = f"/api/twilio/recordings/{call.sid}"
        ticket_id = await self._ingest(
            call,
            external_id=f"{call.sid}:voicemail",
            queue=action.queue,
            text=f"Voicemail from {call.caller} ({action.duration_seconds} s).",
            meta={
                **action.metadata,
                "call_event": "voicemail",
                "recording": proxy,
                "duration_seconds": action.duration_seconds,
            },
            attachments=[
                Attachment(filename=f"voicemail-{call.sid}.mp3", content_type="audio/mpeg", size=0, url=proxy)
            ],
        )
        call.ticket_id = ticket_id or call.ticket_id
        values.update(
            ticket_id=call.ticket_id,
            queue=action.queue,
            recording_url=action.recording_url[:2000],
            recording_sid=(action.recording_id or "")[:64] or None,
            waiting_since=None,
        )

    async def _callback(self, call: Call, action: Callback, values: dict[str, Any]) -> None:
        """The caller asked to be called back: waiting work in line keeps its place (the call's ticket), else
        new work is queued; an agent who accepts it calls the customer."""
        if not (action.in_line and call.ticket_id is not None):
            call.ticket_id = (
                await self._ingest(
                    call,
                    external_id=f"{call.sid}:callback",
                    queue=action.queue,
                    text=f"Callback requested by {call.caller}.",
                    meta={**action.metadata, "call_event": "callback"},
                )
                or call.ticket_id
            )
            values.update(ticket_id=call.ticket_id, queue=action.queue, waiting_since=call.waiting_since or utcnow())
        if call.ticket_id is not None:
            await self.rt.ports.tickets.add_timeline(
                ticket_id=call.ticket_id,
                text=f"Callback requested: call {call.caller} back"
                + (" (kept their place in line)." if action.in_line else "."),
                metadata={"call_sid": call.sid, "call_event": "callback", "callback_number": call.caller},
            )

    # --- agents -------------------------------------------------------------------------------------------------

    def _on_event(self, event: EventRecord, _text: str) -> None:
        if event.type not in (EventType.TICKET_ASSIGNED, EventType.OFFER_ACCEPTED) or event.ticket_id is None:
            return
        ticket = event.payload.get("ticket") or {}
        if ticket.get("channel") != CHANNEL or not ticket.get("assignee_id"):
            return
        self._spawn(self.connect(event.ticket_id, int(ticket["assignee_id"])))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def connect(self, ticket_id: int, agent_id: int) -> bool:
        """An agent took a call's ticket: the waiting caller is answered by them (once, whichever process hears
        it first), dialled on their own phone into the caller's room when they have one configured, and the
        timeline says who answered after how long. A callback ticket calls the customer back instead."""
        now = utcnow()
        async with self.rt.write() as tx:
            row = (
                await tx.conn.execute(
                    select(CALLS)
                    .where(
                        CALLS.c.ticket_id == ticket_id,
                        CALLS.c.answered_at.is_(None),
                        or_(CALLS.c.ended_at.is_(None), CALLS.c.outcome == "callback"),
                    )
                    .order_by(CALLS.c.created_at.desc())
                    .limit(1)
                )
            ).first()
            if row is None:
                return False
            taken = await tx.conn.execute(
                update(CALLS)
                .where(CALLS.c.call_sid == row.call_sid, CALLS.c.answered_at.is_(None))
                .values(answered_at=now, answered_by=agent_id, waiting_since=None, updated_at=now)
            )
            if not taken.rowcount:
                return False
        name = await self.rt.ports.agents.public_name(agent_id)
        waited = int((now - row.waiting_since).total_seconds()) if row.waiting_since else 0
        call = _call(row, None)
        callback = row.outcome == "callback"
        await self.rt.ports.tickets.add_timeline(
            ticket_id=ticket_id,
            text=(
                f"Callback to {row.caller} taken by {name or 'an agent'} after {waited} s in line."
                if callback
                else f"Answered by {name or 'an agent'} after waiting {waited} s. IVR: {' > '.join(call.state.path)}"
            ),
            metadata={
                "call_sid": row.call_sid,
                "call_event": "callback_taken" if callback else "answered",
                "agent_id": agent_id,
                "wait_seconds": waited,
            },
        )
        await self._dial_agent(row, agent_id, callback=callback)
        return True

    async def _agent_number(self, agent_id: int) -> str | None:
        record = await self.rt.ports.agents.principal(agent_id)
        return self.settings.twilio_agent_numbers.get(record.principal.username) if record else None

    async def _dial_agent(self, row: Any, agent_id: int, *, callback: bool) -> None:
        """Connect the agent: a callback goes through the outbox (``send``: the customer is called, with
        retries while Twilio's API is down); a waiting caller gets the agent's own phone dialled into their
        room, when one is configured (else the agent answers in the console: the demo phone hears it)."""
        if callback:
            await self.rt.ports.tickets.send_as(
                agent_id=agent_id,
                ticket_id=row.ticket_id,
                text=f"Calling {row.caller} back.",
                client_key=f"callback:{row.call_sid}"[:64],
            )
            return
        number = await self._agent_number(agent_id)
        if number is None or not self.rest.configured:
            return
        try:
            await self.rest.call(to=number, from_=row.called or number, twiml=twiml.join_room(row.call_sid))
        except Exception:
            log.exception("dialling agent %s into call %s failed", agent_id, row.call_sid)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """The outbox's deliverer for ``voice``: a callback ticket's message calls the customer back into the
        call's room, and the agent's own phone too when configured. Anything else written on a voice ticket
        cannot be delivered by phone."""
        async with self.rt.read() as conn:
            row = (
                await conn.execute(
                    select(CALLS)
                    .where(CALLS.c.ticket_id == message.ticket_id, CALLS.c.outcome == "callback")
                    .order_by(CALLS.c.created_at.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            raise DeliveryError("a written reply cannot go out on a phone call: answer by SMS or email", permanent=True)
        caller_id = message.sender_address or row.called
        greeting = twiml.join_room(
            row.call_sid, greeting="Hello, this is the call back you asked for. Connecting you now."
        )
        try:
            placed = await self.rest.call(to=row.caller, from_=caller_id, twiml=greeting)
        except TwilioRestException as exc:
            raise DeliveryError(f"Twilio answered {exc.status}: {exc.msg}", permanent=400 <= exc.status < 500) from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Twilio API unreachable: {type(exc).__name__}") from None
        if row.answered_by is not None:
            number = await self._agent_number(row.answered_by)
            if number is not None:
                try:
                    await self.rest.call(to=number, from_=caller_id, twiml=twiml.join_room(row.call_sid))
                except Exception:
                    log.exception("dialling agent %s into callback %s failed", row.answered_by, row.call_sid)
        return DeliveryResult(provider_id=placed)


def _same(column: Any, value: str | None) -> Any:
    return column.is_(None) if value is None else column == value


def _queues_of(flow: Flow) -> list[str]:
    names = {flow.queue} if flow.queue else set()
    for node in flow.nodes.values():
        queue = getattr(node, "queue", None)
        if isinstance(queue, str):
            names.add(queue)
    return sorted(names)


Answer = Callable[[dict[str, str]], Awaitable[str]]
