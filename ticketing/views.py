"""HTTP and websocket API of the ticketing core. Thin: parse, authorize, call a service function."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, Response, UploadFile, WebSocket
from pydantic import BaseModel, Field

from hub.auth import SESSION_COOKIE, verify_dummy, verify_password
from hub.deps import CurrentAgent, RuntimeDep, SignerDep, authenticate
from hub.errors import InvalidInput
from hub.event_stream import serve_event_stream
from hub.inputs import DB_INT_MAX, IdParam, Input
from hub.messages import InboundMessage
from ticketing import (
    agents,
    conversations,
    queues,
    replies,
    reply_files,
    routing_service,
    search,
    ticket_updates,
    tickets,
    workspace,
)
from ticketing.models import (
    AcceptOffersRequest,
    AgentCreate,
    AgentRead,
    AgentUpdate,
    AssignRequest,
    MessageRead,
    NoteCreate,
    OfferAnswer,
    Priority,
    QueueCreate,
    QueueRead,
    QueueUpdate,
    ReplyCreate,
    RoutingExplanation,
    StatusChange,
    TicketDetail,
    TicketPage,
    TicketRead,
    TicketStatus,
    TicketUpdate,
    TransferRequest,
)
from ticketing.queue_rules import DryRunAnswer, DryRunRequest
from ticketing.search import TicketSearchResult
from ticketing.workspace import SlaState, Sort, View, ViewCount, ViewFilters

router = APIRouter(prefix="/api")
ws_router = APIRouter()


class LoginRequest(Input):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=256)


class LoginResponse(BaseModel):
    token: str
    agent: AgentRead


class InboundMessageInput(Input, InboundMessage):
    """A normalized message as the API takes it: the JSON is cleaned before it is validated (``hub.inputs``), for
    what Python's JSON parser lets through and a channel adapter never produces (a lone surrogate)."""


class InboundAccepted(BaseModel):
    message_id: int
    ticket_id: int
    contact_id: int
    created: bool


@router.post("/auth/login", response_model=LoginResponse, tags=["auth"])
async def login(
    body: LoginRequest, request: Request, response: Response, rt: RuntimeDep, signer: SignerDep
) -> LoginResponse:
    """Log in with username and password: answers a bearer token and sets the session cookie."""
    throttle = request.app.state.login_throttle
    # Failures count against the username (whoever tries it, from wherever) and against the client (whatever
    # username it tries). The client's address is the connection's peer, or what a trusted proxy forwarded
    # (SWITCHBOARD_TRUSTED_PROXIES): never a header anyone can set.
    keys = (f"user:{body.username.lower()}", f"client:{request.client.host if request.client else '-'}")
    wait = max(throttle.retry_after(key) for key in keys)
    if wait > 0:
        raise HTTPException(
            429,
            detail=f"too many failed logins; try again in {int(wait) + 1} s",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    row = await agents.agent_for_login(rt, username=body.username)
    if row is None:
        verify_dummy(body.password)
        ok = False
    else:
        ok = verify_password(row.password_hash, body.password)
    if not ok:
        for key in keys:
            throttle.failed(key)
        raise HTTPException(401, detail="wrong username or password")
    throttle.succeeded(keys[0])
    token = signer.issue(row.id, row.password_hash)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=rt.settings.public_url.startswith("https"),
        max_age=signer.ttl_seconds,
    )
    return LoginResponse(token=token, agent=await agents.get_agent(rt, agent_id=row.id))


@router.post("/auth/logout", status_code=204, tags=["auth"])
async def logout(response: Response) -> Response:
    response.delete_cookie(SESSION_COOKIE)
    response.status_code = 204
    return response


@router.get("/auth/me", response_model=AgentRead, tags=["auth"])
async def me(agent: CurrentAgent, rt: RuntimeDep) -> AgentRead:
    return await agents.get_agent(rt, agent_id=agent.agent_id)


# --- tickets -----------------------------------------------------------------------------------------


@router.get("/tickets", response_model=TicketPage, tags=["tickets"])
async def list_tickets(
    agent: CurrentAgent,
    rt: RuntimeDep,
    status: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    queue_id: IdParam | None = None,
    assignee_id: IdParam | None = None,
    channel: str | None = None,
    contact_id: IdParam | None = None,
    mine: bool = False,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TicketPage:
    """Tickets you may see, most recent activity first; filter by status (repeatable), queue, assignee,
    channel or contact."""
    return await tickets.list_tickets(
        rt,
        principal=agent,
        status=status,
        queue_id=queue_id,
        assignee_id=assignee_id,
        channel=channel,
        contact_id=contact_id,
        mine=mine,
        offset=offset,
        limit=limit,
    )


ChannelFilter = Annotated[str | None, Query(max_length=20, description="only this channel")]
TagFilter = Annotated[str | None, Query(max_length=50, description="only tickets with this tag")]


def _view_filters(
    channel: ChannelFilter = None,
    queue_id: IdParam | None = None,
    priority: Priority | None = None,
    tag: TagFilter = None,
    sla: SlaState | None = None,
) -> ViewFilters:
    return ViewFilters(channel=channel, queue_id=queue_id, priority=priority, tag=tag, sla=sla)


ViewFiltersDep = Annotated[ViewFilters, Depends(_view_filters)]


@router.get("/views", response_model=list[ViewCount], tags=["views"])
async def list_views(agent: CurrentAgent, rt: RuntimeDep, filters: ViewFiltersDep) -> list[ViewCount]:
    """Your views (waiting in your queues, unassigned, mine, pending on the customer, solved recently; all open
    for supervisors), each with how many tickets it holds under the filters."""
    return await workspace.view_counts(rt, principal=agent, filters=filters)


@router.get("/views/{view}", response_model=TicketPage, tags=["views"])
async def view_tickets(
    view: View,
    agent: CurrentAgent,
    rt: RuntimeDep,
    filters: ViewFiltersDep,
    sort: Sort = Sort.NEWEST,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TicketPage:
    """A view's tickets, filtered by channel, queue, priority, tag and SLA state, sorted newest (activity),
    oldest, priority or due (SLA deadline)."""
    return await workspace.view_tickets(
        rt, principal=agent, view=view, filters=filters, sort=sort, offset=offset, limit=limit
    )


@router.get("/search/tickets", response_model=TicketSearchResult, tags=["views"])
async def search_tickets(
    agent: CurrentAgent,
    rt: RuntimeDep,
    q: Annotated[str, Query(max_length=search.MAX_QUERY_CHARS, description="words, or a ticket number (#12)")] = "",
    status: Annotated[list[TicketStatus], Query()] = [],  # noqa: B006 - FastAPI copies defaults
    contact_id: IdParam | None = None,
    tag: TagFilter = None,
    channel: ChannelFilter = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> TicketSearchResult:
    """Tickets you may see whose subject or messages hold every word of ``q`` (the last one also as a prefix),
    or whose number it is, newest first; filtered by status (repeatable), contact, tag and channel. Each hit
    carries HTML-escaped highlights (``<mark>`` around the matches)."""
    return await search.search_tickets(
        rt,
        principal=agent,
        query=q,
        status=[s.value for s in status],
        contact_id=contact_id,
        tag=tag,
        channel=channel,
        limit=limit,
    )


@router.post("/tickets/{ticket_id}/pull", response_model=TicketRead, tags=["views"])
async def pull(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> TicketRead:
    """Take a waiting ticket of your queues (from a view): within your capacity on its channel, and only while
    nobody holds it; 409 with the reason otherwise."""
    return await routing_service.pull_ticket(rt, ticket_id=ticket_id, principal=agent)


@router.get("/tickets/{ticket_id}", response_model=TicketDetail, tags=["tickets"])
async def get_ticket(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> TicketDetail:
    return await tickets.get_ticket(rt, ticket_id=ticket_id, principal=agent)


@router.patch("/tickets/{ticket_id}", response_model=TicketRead, tags=["tickets"])
async def update_ticket(ticket_id: IdParam, body: TicketUpdate, agent: CurrentAgent, rt: RuntimeDep) -> TicketRead:
    """Change status, priority, tags or subject."""
    return await ticket_updates.update_ticket(rt, ticket_id=ticket_id, principal=agent, data=body)


@router.post("/tickets/{ticket_id}/reply", response_model=MessageRead, status_code=201, tags=["tickets"])
async def reply(ticket_id: IdParam, body: ReplyCreate, agent: CurrentAgent, rt: RuntimeDep) -> MessageRead:
    """Reply to the customer on the channel they used; delivered through the outbox. Sent again with the same
    ``client_key``, it answers the reply already stored (201 again) instead of storing another."""
    files = await reply_files.resolve(rt, principal=agent, ticket_id=ticket_id, named=body.attachments)
    return await replies.reply(
        rt,
        ticket_id=ticket_id,
        principal=agent,
        text=body.text,
        client_key=body.client_key,
        template=body.template,
        private=body.private,
        attachments=files,
    )


@router.post(
    reply_files.UPLOAD_PATH.removeprefix("/api"),
    response_model=reply_files.UploadedFile,
    status_code=201,
    tags=["tickets"],
)
async def upload_reply_attachment(
    ticket_id: Annotated[IdParam, Form()],
    file: Annotated[UploadFile, File()],
    agent: CurrentAgent,
    rt: RuntimeDep,
) -> reply_files.UploadedFile:
    """Upload a file to attach to a reply on ``ticket_id`` (one the agent may see): an image (PNG, JPEG, GIF,
    WebP) or a PDF, checked by its content (415 otherwise), up to ``SWITCHBOARD_REPLY_ATTACHMENT_MAX_BYTES``
    (413 beyond). Its ``id`` goes in the reply's ``attachments``; it is valid for this ticket only."""
    data = await file.read(rt.settings.reply_attachment_max_bytes + 1)
    return await reply_files.upload(rt, principal=agent, ticket_id=ticket_id, data=data, filename=file.filename)


@router.get("/tickets/{ticket_id}/window", response_model=replies.ReplyWindow, tags=["tickets"])
async def reply_window(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> replies.ReplyWindow:
    """The customer's messaging window on the ticket's channel (WhatsApp, Messenger, Instagram): open (free text
    until ``closes_at``), tagged (a human agent's reply, until ``closes_at``) or closed (only ``templates``); a
    channel without one answers ``none``."""
    return await replies.reply_window(rt, ticket_id=ticket_id, principal=agent)


@router.post("/tickets/{ticket_id}/notes", response_model=MessageRead, status_code=201, tags=["tickets"])
async def add_note(ticket_id: IdParam, body: NoteCreate, agent: CurrentAgent, rt: RuntimeDep) -> MessageRead:
    """An internal note, never sent to the customer; idempotent on ``client_key`` as replies are."""
    return await replies.add_note(rt, ticket_id=ticket_id, principal=agent, text=body.text, client_key=body.client_key)


@router.post("/tickets/{ticket_id}/assign", response_model=TicketRead, tags=["tickets"])
async def assign(ticket_id: IdParam, body: AssignRequest, agent: CurrentAgent, rt: RuntimeDep) -> TicketRead:
    """Supervisors: assign to an agent, or unassign (``agent_id: null``) to route it again."""
    return await ticket_updates.assign(rt, ticket_id=ticket_id, principal=agent, agent_id=body.agent_id)


@router.post("/tickets/{ticket_id}/transfer", response_model=TicketRead, tags=["tickets"])
async def transfer(ticket_id: IdParam, body: TransferRequest, agent: CurrentAgent, rt: RuntimeDep) -> TicketRead:
    """Hand the ticket to another queue or agent."""
    if body.queue_id is None and body.agent_id is None:
        raise InvalidInput("give queue_id, agent_id or both", code="transfer_target_missing")
    return await ticket_updates.transfer(
        rt, ticket_id=ticket_id, principal=agent, queue_id=body.queue_id, agent_id=body.agent_id
    )


@router.post("/tickets/{ticket_id}/accept", response_model=TicketRead, tags=["routing"])
async def accept(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> TicketRead:
    """Accept the ticket offered to you."""
    return await routing_service.accept_offer(rt, ticket_id=ticket_id, principal=agent)


@router.post("/offers/accept", response_model=list[OfferAnswer], tags=["routing"])
async def accept_offers(body: AcceptOffersRequest, agent: CurrentAgent, rt: RuntimeDep) -> list[OfferAnswer]:
    """Accept several offers made to you in one call (a burst's "accept all"): one answer per ticket, in the
    order given. Each is taken or refused on its own (``accepted: false`` with the ``code`` and ``detail`` a
    single accept would answer), so one that expired meanwhile does not keep the others from you."""
    return await routing_service.accept_offers(rt, ticket_ids=body.ticket_ids, principal=agent)


@router.post("/tickets/{ticket_id}/decline", status_code=204, tags=["routing"])
async def decline(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> Response:
    """Decline the ticket offered to you; it is offered to the next agent."""
    await routing_service.decline_offer(rt, ticket_id=ticket_id, principal=agent)
    return Response(status_code=204)


@router.get("/tickets/{ticket_id}/routing", response_model=RoutingExplanation, tags=["routing"])
async def explain_routing(ticket_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> RoutingExplanation:
    """Why the ticket went to its agent (the last routing decision and its reason), or why it still waits."""
    return await routing_service.explain_routing(rt, ticket_id=ticket_id, principal=agent)


@router.get("/routing/rules", tags=["routing"])
async def get_routing_rules(agent: CurrentAgent, rt: RuntimeDep) -> dict[str, Any]:
    """The queue-selection rules in force (see the README's routing section)."""
    async with rt.read() as conn:
        rules = await queues.get_routing_rules(conn)
    return rules.model_dump(mode="json", exclude_none=True)


@router.put("/routing/rules", tags=["routing"])
async def put_routing_rules(body: dict[str, Any], agent: CurrentAgent, rt: RuntimeDep) -> dict[str, Any]:
    """Admins: replace the queue-selection rules; refused with the reason when they do not validate."""
    agent.require_admin()
    rules = queues.validate_rules(body)
    await queues.set_routing_rules(rt, rules=rules, actor=agent)
    return rules.model_dump(mode="json", exclude_none=True)


@router.post("/routing/dry-run", response_model=DryRunAnswer, tags=["routing"])
async def routing_dry_run(body: DryRunRequest, agent: CurrentAgent, rt: RuntimeDep) -> DryRunAnswer:
    """Admins: which queue a message would go to, and why, under the rules in force or a draft given as
    ``rules`` (checked as ``PUT /api/routing/rules`` checks them, without saving)."""
    agent.require_admin()
    return await queues.dry_run(rt, data=body)


# --- queues, agents (contacts: ticketing.contact_views) ----------------------------------------------------


@router.get("/queues", response_model=list[QueueRead], tags=["queues"])
async def list_queues(agent: CurrentAgent, rt: RuntimeDep) -> list[QueueRead]:
    return await queues.list_queues(rt)


@router.post("/queues", response_model=QueueRead, status_code=201, tags=["queues"])
async def create_queue(body: QueueCreate, agent: CurrentAgent, rt: RuntimeDep) -> QueueRead:
    agent.require_admin()
    return await queues.create_queue(rt, data=body, actor=agent)


@router.get("/agents", response_model=list[AgentRead], tags=["agents"])
async def list_agents(agent: CurrentAgent, rt: RuntimeDep) -> list[AgentRead]:
    return await agents.list_agents(rt)


@router.post("/agents", response_model=AgentRead, status_code=201, tags=["agents"])
async def create_agent(body: AgentCreate, agent: CurrentAgent, rt: RuntimeDep) -> AgentRead:
    agent.require_admin()
    return await agents.create_agent(rt, data=body, actor=agent)


@router.patch("/queues/{queue_id}", response_model=QueueRead, tags=["queues"])
async def update_queue(queue_id: IdParam, body: QueueUpdate, agent: CurrentAgent, rt: RuntimeDep) -> QueueRead:
    """Admins: change a queue's skills, priority, business hours, SLA targets or overflow."""
    agent.require_admin()
    return await queues.update_queue(rt, queue_id=queue_id, data=body, actor=agent)


@router.delete("/queues/{queue_id}", status_code=204, tags=["queues"])
async def delete_queue(queue_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> None:
    """Admins: delete a queue. Refused (409) while it holds open tickets, while another queue's overflow or a
    routing rule names it; its closed tickets stay, in no queue."""
    agent.require_admin()
    await queues.delete_queue(rt, queue_id=queue_id, actor=agent)


@router.post("/agents/{agent_id}/requeue", response_model=list[int], tags=["routing"])
async def requeue_agent_work(agent_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> list[int]:
    """Supervisors: put the agent's open conversations back in their queues; answers the ticket ids."""
    return await routing_service.requeue_agent_work(rt, agent_id=agent_id, principal=agent)


@router.put("/agents/me/status", response_model=AgentRead, tags=["agents"])
async def set_my_status(body: StatusChange, agent: CurrentAgent, rt: RuntimeDep) -> AgentRead:
    """Set your own status: available, away, wrap_up or offline."""
    return await routing_service.set_agent_status(rt, agent_id=agent.agent_id, status=body.status)


@router.put("/agents/{agent_id}/status", response_model=AgentRead, tags=["agents"])
async def set_status(agent_id: IdParam, body: StatusChange, agent: CurrentAgent, rt: RuntimeDep) -> AgentRead:
    """Supervisors: set an agent's status."""
    if agent_id != agent.agent_id:
        agent.require_supervisor()
    return await routing_service.set_agent_status(rt, agent_id=agent_id, status=body.status)


@router.patch("/agents/{agent_id}", response_model=AgentRead, tags=["agents"])
async def update_agent(agent_id: IdParam, body: AgentUpdate, agent: CurrentAgent, rt: RuntimeDep) -> AgentRead:
    agent.require_admin()
    return await agents.update_agent(rt, agent_id=agent_id, data=body, actor=agent)


@router.post("/inbound", response_model=InboundAccepted, tags=["integrations"])
async def inbound(body: InboundMessageInput, agent: CurrentAgent, request: Request) -> InboundAccepted:
    """Admins and integrators: ingest a normalized message (idempotent on channel + external_id)."""
    agent.require_admin()
    result = await request.app.state.ingest.submit(body)
    return InboundAccepted(
        message_id=result.message_id, ticket_id=result.ticket_id, contact_id=result.contact_id, created=result.created
    )


# --- the live console stream --------------------------------------------------------------------------------


@ws_router.websocket("/ws/agent")
async def agent_stream(ws: WebSocket, last_seq: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None) -> None:
    """Console events: see ``hub.event_stream`` for the protocol."""
    principal = await authenticate(ws)
    if principal is None:
        # Accept first so a browser can read why (a refused handshake shows no reason to scripts).
        await ws.accept()
        await ws.send_json({"type": "error", "code": "unauthorized", "message": "log in first"})
        await ws.close(code=4401, reason="log in first")
        return
    rt = ws.app.state.rt
    await ws.accept()
    gauge = rt.metrics.websocket_clients.labels("agent")
    gauge.inc()
    hello: dict[str, Any] = {
        "agent_id": principal.agent_id,
        "role": principal.role,
        "queue_ids": sorted(principal.queue_ids),
    }
    try:
        await serve_event_stream(
            ws,
            rt.events,
            principal.viewer,
            last_seq,
            heartbeat_seconds=rt.settings.heartbeat_seconds,
            hello=hello,
            on_message=lambda data: conversations.on_console_frame(rt, principal, data),
        )
    finally:
        gauge.dec()
