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
accepts a waiting call, they are connected (``connect``): their browser phone or their own number is dialled into
the caller's room (``phones.py``), and the call is answered when that leg picks up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import ValidationError
from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from twilio.base.exceptions import TwilioRestException

from channels.twilio import twiml
from channels.twilio.flows import DEMO_FLOW, FlowBook, e164
from channels.twilio.inputs import engine_input
from channels.twilio.models import TwilioCall, TwilioNumber
from channels.twilio.phones import Phones
from channels.twilio.rest import Rest
from hub import audit
from hub.config import Settings
from hub.db import UTCDateTime, fetch_all, fetch_records, utcnow
from hub.errors import InvalidInput, NotFound
from hub.events import EventRecord, EventType
from hub.hours import BusinessHours
from hub.messages import (
    AlsoInTransaction,
    Attachment,
    DeliveryError,
    DeliveryResult,
    Identity,
    InboundMessage,
    Ingest,
    IngestResult,
    OutboundMessage,
)
from hub.ports import TimelineNote
from hub.principals import Principal
from hub.runtime import Runtime
from ivr_flows.actions import Action, Callback, Dial, Enqueue, Handoff, Lookup, Voicemail
from ivr_flows.engine import Context, new_call, step
from ivr_flows.inputs import (
    CallStarted,
    DialDone,
    Input,
    LookupResult,
    Queued,
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
PRIORITIES: dict[str, Literal["low", "normal", "high", "urgent"]] = {
    "low": "low",
    "normal": "normal",
    "high": "high",
    "urgent": "urgent",
}
SKILL_MAX = 2**31 - 1
HOLD_TEXT = {"en": "You are number {n} in line. Please hold.", "es": "Usted es el número {n} en la fila."}


# The statements every webhook runs, built once and sent to the driver directly (``hub.db.fast``): through
# SQLAlchemy's execution each cost a statement build, its cache key, and on SQLite four hand-offs to the reader's
# thread instead of one.
_ROW = select(CALLS).where(CALLS.c.call_sid == bindparam("sid"))
_NUMBER_FLOW = select(NUMBERS.c.flow).where(NUMBERS.c.number == bindparam("number"))
_WAITING = (
    select(func.count())
    .select_from(CALLS)
    .where(CALLS.c.queue == bindparam("queue"), CALLS.c.waiting_since.is_not(None))
)
_AHEAD = _WAITING.where(CALLS.c.waiting_since < bindparam("since", type_=UTCDateTime()))
# The call of a ticket an agent took that nobody answered yet (the newest; a callback's ended already).
_UNANSWERED = (
    select(CALLS)
    .where(
        CALLS.c.ticket_id == bindparam("ticket_id"),
        CALLS.c.answered_at.is_(None),
        CALLS.c.answered_by.is_(None),
        or_(CALLS.c.ended_at.is_(None), CALLS.c.outcome == "callback"),
    )
    .order_by(CALLS.c.created_at.desc())
    .limit(1)
)
_OTHERS = CALLS.alias("others")
_ROW_AND_AHEAD = select(
    CALLS,
    select(func.count())
    .select_from(_OTHERS)
    .where(_OTHERS.c.queue == CALLS.c.queue, _OTHERS.c.waiting_since < CALLS.c.waiting_since)
    .scalar_subquery()
    .label("ahead"),
).where(CALLS.c.call_sid == bindparam("sid"))


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
    last_request: str | None = None
    ticket_id: int | None = None
    queue: str | None = None
    waiting_since: datetime | None = None
    answered_at: datetime | None = None
    outcome: str | None = None
    ended_at: datetime | None = None
    rejoined: bool = False  # this request queued the call on a ticket an agent already holds (a repeat call)
    queued: bool = False  # this request put the call in line (its ticket may be taken before the row says so)


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


class VoiceService:
    """The phone line of one hub process (see the module docstring)."""

    def __init__(self, rt: Runtime, ingest: Ingest, settings: Settings, rest: Rest) -> None:
        self.rt = rt
        self.ingest = ingest
        self.settings = settings
        self.rest = rest
        self.flows = FlowBook(settings)
        self.phones = Phones(rt, settings, rest)
        self._hours: dict[str, tuple[float, BusinessHours | None]] = {}
        self._hours_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.rt.events.listen(self._on_event)
        # The flows the numbers name, loaded (and linted) now rather than by the first caller of each.
        names = {n.flow for n in self.settings.twilio_numbers} | {self.settings.twilio_default_flow or ""}
        if self.settings.demo_mode:
            names.add(DEMO_FLOW)
        for name in sorted(names - {""}):
            if self.flows.get(name) is None:
                log.warning("the flow %r that SWITCHBOARD_TWILIO_* names is not in %s", name, self.flows.names())

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
                found = await fetch_all(conn, _NUMBER_FLOW, {"number": called})
            name = found[0][0] if found else None
        return name or self.settings.twilio_default_flow

    async def _context(self, flow: Flow) -> Context:
        """The time and the flow's queues' opening hours (whether each is open, asked of the core at most every
        ``HOURS_TTL`` seconds, by one webhook while the others wait for its answer)."""
        queues = _queues_of(flow)
        if any(self._stale(q) for q in queues):
            async with self._hours_lock:
                for queue in queues:
                    if self._stale(queue):
                        available = await self.rt.ports.queues.availability(channel=CHANNEL, queue=queue)
                        expires = time.monotonic() + HOURS_TTL
                        self._hours[queue] = (expires, None if available.open else NEVER_OPEN)
        return Context(now=utcnow(), hours={q: self._hours[q][1] for q in queues})

    def _stale(self, queue: str) -> bool:
        cached = self._hours.get(queue)
        return cached is None or cached[0] < time.monotonic()

    # --- webhooks -----------------------------------------------------------------------------------------------

    async def incoming(self, params: dict[str, str], key: str) -> str:
        """The voice webhook: a new call starts its flow (a retried one gets its first answer again).

        The call's row is not read first: a new call has none, and the insert that stores it refuses a retried
        call's (its CallSid is the key), which then answers as its row says (``_advance``)."""
        sid = params.get("CallSid", "")
        region = self.settings.default_phone_region
        caller = e164(params.get("From", ""), region) or params.get("From", "")[:64]
        called = e164(params.get("To", ""), region) or params.get("To", "")[:64]
        name = await self.flow_name_for(called)
        flow = self.flows.get(name) if name else None
        if flow is None:
            row = await self._row(sid)  # a retry of a call whose number lost its flow since
            if row is not None:
                return row.last_twiml or twiml.goodbye()
            log.warning("call %s to %s: no flow answers this number (flow %r)", sid, called, name)
            return twiml.goodbye("Sorry, this number cannot take calls right now. Goodbye.")
        call = Call(sid, caller, called, flow.name if name is None else name, new_call(flow), 0)
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
        async with self.rt.read() as conn:  # the call and its place in line, in one statement
            rows = await fetch_records(conn, _ROW_AND_AHEAD, {"sid": sid})
        row = rows[0] if rows else None
        if row is None:
            log.warning("twilio wait webhook for unknown call %r: answered with a goodbye", sid[:64])
            return twiml.goodbye()
        call = _call(row, None)
        if row.answered_at is not None:  # the agent joined (Twilio stops asking then; the demo phone sees it)
            name = await self.rt.ports.agents.public_name(row.answered_by)
            return twiml.connected(f"You are now connected to {name or 'an agent'}.")
        text = None
        if call.queue and call.waiting_since is not None:
            position = int(row.ahead or 0) + 1
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
        row = await self._row(sid)
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
        closing = update(CALLS).where(CALLS.c.call_sid == sid, CALLS.c.ended_at.is_(None)).values(**values)
        if ending and row.ticket_id is not None:
            try:
                await self._close(_call(row, None), row, closing, values["duration_seconds"], now)
                return
            except _Stale:  # another copy of this callback closed the call first
                return
            except NotFound:  # the ticket is gone (erased): the call's record is closed all the same
                log.warning("call %s ended: its ticket %s is gone", sid[:64], row.ticket_id)
        async with self.rt.write() as tx:
            await tx.conn.execute(closing)

    async def _close(self, call: Call, row: Any, closing: Any, duration: int, now: datetime) -> None:
        """The call ended: its row is closed (``closing``, an update of a row not closed yet: ``_Stale`` when
        another copy of the callback closed it) in the transaction of the timeline's line that says how it ended,
        so that neither is kept without the other (Twilio retries a callback that failed; a retry of one that
        was answered changes nothing). An unanswered caller who was waiting is abandoned first (which a retry
        does again harmlessly: the ticket is abandoned once)."""
        assert call.ticket_id is not None
        path = " > ".join(call.state.path)
        waited = int((now - call.waiting_since).total_seconds()) if call.waiting_since is not None else None
        meta = {"call_sid": call.sid, "ivr_path": call.state.path, "duration_seconds": duration}
        if call.outcome != "callback" and call.answered_at is None and call.waiting_since is not None:
            await self.rt.ports.tickets.abandon(ticket_id=call.ticket_id, reason="caller hung up while waiting")
            await self.rt.ports.tickets.add_timeline(
                ticket_id=call.ticket_id,
                text=f"Call abandoned: the caller hung up after waiting {waited} s. IVR: {path}",
                metadata={**meta, "call_event": "abandoned", "wait_seconds": waited},
                also=_changing(closing.values(outcome="abandoned")),
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
            also=_changing(closing),
        )

    # --- stepping -----------------------------------------------------------------------------------------------

    async def _row(self, sid: str) -> Any:
        """The call's row (None: unknown), read with a statement built once (every webhook reads it)."""
        async with self.rt.read() as conn:
            rows = await fetch_records(conn, _ROW, {"sid": sid})
        return rows[0] if rows else None

    def _step(self, flow: Flow, state: CallState, event: Input, context: Context) -> tuple[CallState, list[Action]]:
        return step(flow, state, event, context)

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
            elif isinstance(last, Dial) and not last.number:
                number = self.settings.twilio_dial_numbers.get(last.number_name or "")
                if number:
                    actions = [*actions[:-1], last.model_copy(update={"number": number})]
                    break
                log.warning(
                    "call %s: the flow dials %r, which SWITCHBOARD_TWILIO_DIAL_NUMBERS does not name",
                    call.sid,
                    last.number_name,
                )
                answer = DialDone(status="failed")
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
            except IntegrityError:  # the call's row is there: a retry, or a racing copy. Answer as it was answered
                row = await self._row(call.sid)
                return (row.last_twiml if row is not None else None) or text
            await self._stored(call)
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
        await self._stored(call)
        return text

    async def _stored(self, call: Call) -> None:
        """The call's row is stored. If this request queued it on a ticket an agent already holds (a repeat
        call), no offer or accept will connect it: the holder takes it when available, else the ticket goes
        back to routing (whose accept connects it). If it queued it on a new ticket, an agent may have taken
        that ticket between the ingest's commit and this row's (under load, seconds): ``connect`` then found
        no call of the ticket, so it is connected now (``connect`` connects a call once, whoever calls it)."""
        if call.ticket_id is None:
            return
        if call.rejoined:
            reason = f"the customer called again ({call.sid})"
            holder = await self.rt.ports.tickets.call_again(ticket_id=call.ticket_id, reason=reason)
            if holder is not None:
                self._spawn(self.connect(call.ticket_id, holder))
        elif call.queued:
            brief = await self.rt.ports.tickets.brief(ticket_id=call.ticket_id)
            if brief is not None and brief.assignee_id is not None:
                self._spawn(self.connect(call.ticket_id, brief.assignee_id))

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
        async with self.rt.read() as conn:
            if since is None:
                rows = await fetch_all(conn, _WAITING, {"queue": queue})
            else:
                rows = await fetch_all(conn, _AHEAD, {"queue": queue, "since": since})
        return int(rows[0][0]) + 1

    async def _ingest(
        self,
        call: Call,
        *,
        external_id: str,
        queue: str,
        text: str,
        meta: dict[str, Any],
        handoff: Handoff,
        attachments: list[Attachment] | None = None,
        routed: bool = True,
    ) -> IngestResult | None:
        message = InboundMessage(
            channel=CHANNEL,
            external_id=external_id,
            sender=Identity(kind="phone", value=call.caller or "unknown"),
            recipient=call.called or None,
            subject=f"Call from {call.caller}",
            text=text,
            queue=queue,
            priority=PRIORITIES.get(handoff.priority or ""),
            skills={k[:100]: min(v, SKILL_MAX) for k, v in list(handoff.skills.items())[:20] if k and v > 0},
            attachments=attachments or [],
            metadata={"call_sid": call.sid, **meta},
        )
        try:
            result = await self.ingest(message, routed=routed)
        except Exception:
            log.exception("call %s from %r: could not become a ticket", call.sid, call.caller)
            return None
        return result

    async def _enqueue(self, call: Call, action: Enqueue, state: CallState, values: dict[str, Any]) -> Queued:
        """The call becomes work waiting in its queue (once per call: a replay finds its ticket)."""
        meta = action.metadata
        path = " > ".join(str(p) for p in meta.get("ivr_path", []))
        result = await self._ingest(
            call,
            external_id=call.sid,
            queue=action.queue,
            text=f"Phone call from {call.caller}, waiting in {action.queue}. IVR: {path}",
            meta={**meta, "call_event": "queued", "skills": action.skills, "priority": action.priority},
            handoff=action,
            # The caller hears the queue's announcement once the ticket is stored, not after an agent's offer
            # (routing runs on; an agent who takes the ticket before this call's row is stored: ``_stored``).
            routed=False,
        )
        ticket_id = result.ticket_id if result is not None else None
        # A ticket this call opened is nobody's yet (one an agent took already was taken from this call's offer:
        # ``_stored``); one it joined may be held by an agent.
        if result is not None and not result.ticket_created:
            brief = await self.rt.ports.tickets.brief(ticket_id=result.ticket_id)
            call.rejoined = brief is not None and brief.assignee_id is not None
        call.queued = True
        since = call.waiting_since or utcnow()
        position = await self.position(action.queue, since if call.waiting_since else None)
        call.ticket_id = ticket_id or call.ticket_id
        call.queue, call.waiting_since = action.queue, since
        values.update(ticket_id=call.ticket_id, queue=action.queue, waiting_since=since)
        return Queued(estimated_wait_seconds=(position - 1) * self.settings.twilio_callback_seconds, position=position)

    async def _voicemail(self, call: Call, action: Voicemail, values: dict[str, Any]) -> None:
        proxy = f"/api/twilio/recordings/{call.sid}"
        result = await self._ingest(
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
            handoff=action,
            attachments=[
                Attachment(filename=f"voicemail-{call.sid}.mp3", content_type="audio/mpeg", size=0, url=proxy)
            ],
        )
        call.ticket_id = result.ticket_id if result is not None else call.ticket_id
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
            result = await self._ingest(
                call,
                external_id=f"{call.sid}:callback",
                queue=action.queue,
                text=f"Callback requested by {call.caller}.",
                meta={**action.metadata, "call_event": "callback"},
                handoff=action,
            )
            call.ticket_id = result.ticket_id if result is not None else call.ticket_id
            values.update(ticket_id=call.ticket_id, queue=action.queue, waiting_since=call.waiting_since or utcnow())
        if call.ticket_id is not None:
            await self.rt.ports.tickets.add_timeline(
                ticket_id=call.ticket_id,
                text=f"Callback requested: call {call.caller} back"
                + (" (kept their place in line)." if action.in_line else "."),
                metadata={"call_sid": call.sid, "call_event": "callback", "callback_number": call.caller},
            )

    async def call_of_ticket(self, ticket_id: int) -> dict[str, Any] | None:
        """The newest call of a ticket, with the caller's contact (the console's screen pop)."""
        async with self.rt.read() as conn:
            row = (
                await conn.execute(
                    select(CALLS).where(CALLS.c.ticket_id == ticket_id).order_by(CALLS.c.created_at.desc()).limit(1)
                )
            ).first()
        if row is None:
            return None
        call = _call(row, None)
        contact = await self.rt.ports.contacts.summary(kind="phone", value=row.caller)
        return {
            "call_sid": row.call_sid,
            "caller": row.caller,
            "called": row.called,
            "flow": row.flow,
            "ivr_path": call.state.path,
            "language": call.state.language,
            "queue": row.queue,
            "outcome": row.outcome,
            "status": row.status,
            "waiting_since": row.waiting_since.isoformat() if row.waiting_since else None,
            "answered_at": row.answered_at.isoformat() if row.answered_at else None,
            "answered_by": row.answered_by,
            "duration_seconds": row.duration_seconds,
            "contact": contact.model_dump(mode="json") if contact.contact_id is not None else None,
        }

    async def summary(self, since: datetime) -> dict[str, Any]:
        """Calls that started since ``since``: how many, by how they ended (``abandoned``: hung up waiting for
        an agent), answered, and the average wait of the answered ones."""
        async with self.rt.read() as conn:
            rows = (
                await conn.execute(
                    select(CALLS.c.outcome, CALLS.c.answered_at, CALLS.c.created_at, CALLS.c.ended_at).where(
                        CALLS.c.created_at >= since
                    )
                )
            ).all()
        outcomes: dict[str, int] = {}
        for r in rows:
            key = r.outcome or ("in progress" if r.ended_at is None else "ended in the menu")
            outcomes[key] = outcomes.get(key, 0) + 1
        return {
            "since": since.isoformat(),
            "calls": len(rows),
            "answered": sum(1 for r in rows if r.answered_at is not None),
            "abandoned": outcomes.get("abandoned", 0),
            "outcomes": outcomes,
        }

    # --- agents -------------------------------------------------------------------------------------------------

    async def bring_in(
        self, ticket_id: int, agent_id: int, *, listen_only: bool, actor: Principal | None = None
    ) -> str:
        """Dial another agent into a live call's room: a supervisor listening in (muted), or a colleague taking
        a warm transfer (they talk with the caller and the first agent, who may then leave). Answers the new
        leg's CallSid; the agent needs their own number (``SWITCHBOARD_TWILIO_AGENT_NUMBERS``). A supervisor's
        listening in (``actor``) is written to the audit log, as the other supervisor actions are."""
        async with self.rt.read() as conn:
            row = (
                await conn.execute(
                    select(CALLS)
                    .where(CALLS.c.ticket_id == ticket_id, CALLS.c.answered_at.is_not(None), CALLS.c.ended_at.is_(None))
                    .order_by(CALLS.c.created_at.desc())
                    .limit(1)
                )
            ).first()
        if row is None:
            raise NotFound("no call in progress on this ticket")
        number = await self._agent_number(agent_id)
        if number is None:
            raise InvalidInput(
                "that agent has no phone of their own (SWITCHBOARD_TWILIO_AGENT_NUMBERS) and no browser phone",
                code="no_agent_phone",
            )
        if not self.rest.configured:
            raise InvalidInput("Twilio is not configured on this server", code="twilio_not_configured")
        greeting = None if listen_only else twiml.JOINING
        placed = await self.rest.call(
            to=number,
            from_=row.called or number,
            twiml=twiml.join_room(row.call_sid, greeting=greeting, listen_only=listen_only),
        )
        name = await self.rt.ports.agents.public_name(agent_id)
        await self.rt.ports.tickets.add_timeline(
            ticket_id=ticket_id,
            text=f"{name or 'An agent'} {'listens in' if listen_only else 'joins the call (warm transfer)'}.",
            metadata={
                "call_sid": row.call_sid,
                "call_event": "listen" if listen_only else "warm_transfer",
                "agent_id": agent_id,
            },
        )
        if actor is not None:
            async with self.rt.write() as tx:
                await audit.record(
                    tx.conn,
                    actor=actor,
                    action="ticket.listen_in" if listen_only else "ticket.bring_in",
                    target=f"ticket:{ticket_id}",
                    detail={"call_sid": row.call_sid, "leg_sid": placed, "agent_id": agent_id},
                )
        return placed

    def _on_event(self, event: EventRecord, _text: str) -> None:
        """An agent took a call's ticket: accepted it, was assigned it, or had it transferred to them (a call
        already answered stays with whoever answered it: ``connect`` then does nothing)."""
        taken = event.type in (EventType.TICKET_ASSIGNED, EventType.OFFER_ACCEPTED) or (
            event.type == EventType.TICKET_UPDATED and "transfer" in (event.payload.get("changes") or [])
        )
        if not taken or event.ticket_id is None:
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
        """An agent took a call's ticket (once, whichever process hears it first). When they have a phone of
        their own (``SWITCHBOARD_TWILIO_AGENT_NUMBERS``) it is dialled into the caller's room and the call is
        answered when that leg picks up (``agent_leg``: its status callback); otherwise (they answer in the
        console, the demo phone) it is answered now. A callback ticket calls the customer back instead."""
        now = utcnow()
        number = await self._agent_number(agent_id)
        async with self.rt.read() as conn:
            rows = await fetch_records(conn, _UNANSWERED, {"ticket_id": ticket_id})
        if not rows:
            return False
        row = rows[0]
        callback = row.outcome == "callback"
        ringing = not callback and number is not None and self.rest.configured
        values: dict[str, Any] = {"answered_by": agent_id, "updated_at": now}
        if not ringing:
            values.update(answered_at=now, waiting_since=None)
        # Taken once: by the request that changes the row while no agent has it (whoever read it first).
        taking = _changing(
            update(CALLS)
            .where(CALLS.c.call_sid == row.call_sid, CALLS.c.answered_at.is_(None), CALLS.c.answered_by.is_(None))
            .values(**values)
        )
        try:
            if ringing:
                async with self.rt.write() as tx:
                    await taking(tx.conn)
            else:  # answered now: the row taken, the ticket answered and its timeline's line, in one transaction
                await self._answered(row, agent_id, now, callback=callback, also=taking)
        except _Stale:
            return False
        if callback:
            await self._call_back(row, agent_id)
        elif ringing:
            await self._ring_agent(row, agent_id, number or "")
        return True

    async def _answered(
        self, row: Any, agent_id: int, now: datetime, *, callback: bool, also: AlsoInTransaction | None = None
    ) -> None:
        """The call is answered by the agent: the ticket's ``answered_at`` and a line on its timeline, after
        ``also``, in one transaction."""
        name = await self.rt.ports.agents.public_name(agent_id)
        waited = int((now - row.waiting_since).total_seconds()) if row.waiting_since else 0
        path = " > ".join(_call(row, None).state.path)
        note = TimelineNote(
            text=(
                f"Callback to {row.caller} taken by {name or 'an agent'} after {waited} s in line."
                if callback
                else f"Answered by {name or 'an agent'} after waiting {waited} s. IVR: {path}"
            ),
            metadata={
                "call_sid": row.call_sid,
                "call_event": "callback_taken" if callback else "answered",
                "agent_id": agent_id,
                "wait_seconds": waited,
            },
        )
        await self.rt.ports.tickets.call_answered(ticket_id=row.ticket_id, at=now, note=note, also=also)

    async def _ring_agent(self, row: Any, agent_id: int, number: str) -> None:
        """Dial the agent's own phone into the caller's room; its status callback says whether they picked up.
        A dial Twilio refuses is a leg that did not answer."""
        report = f"{self.settings.public_url}/webhooks/twilio/voice/agent?call={row.call_sid}&agent={agent_id}"
        try:
            await self.rest.call(
                to=number, from_=row.called or number, twiml=twiml.join_room(row.call_sid), status_callback=report
            )
        except Exception:
            log.exception("dialling agent %s into call %s failed", agent_id, row.call_sid)
            await self.agent_leg({"CallStatus": "failed"}, call_sid=row.call_sid, agent_id=agent_id)

    async def agent_leg(self, params: dict[str, str], *, call_sid: str, agent_id: int) -> None:
        """A status callback of the leg that rings an agent's phone for a waiting caller: picked up (in-progress)
        answers the call now; busy, no answer, failed or canceled puts the caller back in line, keeping their
        place, for the next agent. Repeats (Twilio retries) change nothing."""
        status = params.get("CallStatus", "")[:20]
        now = utcnow()
        if status in ("in-progress", "answered"):
            values: dict[str, Any] = {"answered_at": now, "waiting_since": None, "updated_at": now}
        elif status in ENDED:
            values = {"answered_by": None, "updated_at": now}
        else:
            return
        async with self.rt.write() as tx:
            row = (await tx.conn.execute(select(CALLS).where(CALLS.c.call_sid == call_sid))).first()
            if row is None or row.ticket_id is None:
                log.info("twilio agent leg status %s for unknown call %r ignored", status, call_sid[:64])
                return
            done = await tx.conn.execute(
                update(CALLS)
                .where(
                    CALLS.c.call_sid == call_sid,
                    CALLS.c.answered_by == agent_id,
                    CALLS.c.answered_at.is_(None),
                    CALLS.c.ended_at.is_(None),
                )
                .values(**values)
            )
        if not done.rowcount:
            return
        if "answered_at" in values:
            await self._answered(row, agent_id, now, callback=False)
            return
        name = await self.rt.ports.agents.public_name(agent_id)
        reason = f"{name or 'the agent'} did not pick up ({status})"
        await self.rt.ports.tickets.add_timeline(
            ticket_id=row.ticket_id,
            text=f"{reason[:1].upper()}{reason[1:]}: the caller is back in line.",
            metadata={"call_sid": call_sid, "call_event": "agent_missed", "agent_id": agent_id, "status": status},
        )
        await self.rt.ports.tickets.call_missed(ticket_id=row.ticket_id, agent_id=agent_id, reason=reason)

    async def _agent_number(self, agent_id: int) -> str | None:
        """Where a call to the agent rings: their browser (``client:agent-<id>``) or their own number
        (``phones.Phones.address``)."""
        return await self.phones.address(agent_id)

    async def _call_back(self, row: Any, agent_id: int) -> None:
        """A callback goes through the outbox (``send``: the customer is called, with retries while Twilio's
        API is down)."""
        await self.rt.ports.tickets.send_as(
            agent_id=agent_id,
            ticket_id=row.ticket_id,
            text=f"Calling {row.caller} back.",
            client_key=f"callback:{row.call_sid}"[:64],
        )

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
            row.call_sid, greeting="Hello, this is the call back you asked for. Connecting you now.", customer=True
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


class _Stale(Exception):
    """The call's row was changed by another request first: what this one was to write with it is not written."""


def _changing(statement: Any) -> AlsoInTransaction:
    """Run ``statement`` (an update of the call's row, conditional on what this request read) in the caller's
    transaction, raising ``_Stale`` (which rolls that transaction back) when it changed no row."""

    async def run(conn: AsyncConnection) -> None:
        if not (await conn.execute(statement)).rowcount:
            raise _Stale

    return run
