"""HTTP API for contacts: search, the contact page, editing, notes, duplicates, merge and undo, GDPR export and
erase. Thin: parse, authorize, call a service function (``ticketing.contacts``, ``ticketing.contact_index``,
``ticketing.gdpr``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hub.db import json_dumps
from hub.deps import CurrentAgent, RuntimeDep
from hub.inputs import IdParam
from ticketing import contacts, gdpr
from ticketing.contact_index import all_duplicates, index_state, search_contacts
from ticketing.models import (
    ContactHistory,
    ContactHit,
    ContactIndexState,
    ContactNoteCreate,
    ContactNoteRead,
    ContactRead,
    ContactUpdate,
    DuplicateRead,
    MergeRead,
    MergeRequest,
)

router = APIRouter(prefix="/api/contacts", tags=["contacts"])


@router.get("", response_model=list[ContactHit])
async def search(
    agent: CurrentAgent,
    rt: RuntimeDep,
    q: Annotated[str, Query(max_length=1000)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[ContactHit]:
    """Contacts by name, email address, phone number (any format) or handle, typos forgiven; best first. An agent
    finds the contacts they may open (with a ticket in their queues, assigned or offered to them, or with no
    ticket); supervisors and admins every contact. While the index is first built (``GET
    /api/contacts/index``), exact addresses, numbers, handles and whole name words only."""
    return await search_contacts(rt, query=q, principal=agent, limit=limit)


@router.get("/index", response_model=ContactIndexState)
async def index(agent: CurrentAgent, rt: RuntimeDep) -> ContactIndexState:
    """Whether contact search uses its index yet, or how far its first build (in the background) got."""
    return index_state(rt)


@router.get("/duplicates", response_model=list[DuplicateRead])
async def duplicates(
    agent: CurrentAgent, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> list[DuplicateRead]:
    """Supervisors: every pair of contacts that may be one person, most likely first (suggestions only)."""
    agent.require_supervisor()
    return await all_duplicates(rt, limit=limit)


@router.post("/merges/{merge_id}/undo", response_model=MergeRead)
async def undo_merge(merge_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> MergeRead:
    """Supervisors: undo a merge (what moved goes back; the merged contact returns)."""
    return await contacts.undo_merge(rt, merge_id=merge_id, principal=agent)


@router.get("/{contact_id}", response_model=ContactHistory)
async def contact_page(contact_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> ContactHistory:
    """A contact: identities (channel, verified), attributes, every ticket and message across channels, notes,
    merges, suggested duplicates."""
    return await contacts.contact_page(rt, contact_id=contact_id, principal=agent)


@router.patch("/{contact_id}", response_model=ContactRead)
async def update_contact(contact_id: IdParam, body: ContactUpdate, agent: CurrentAgent, rt: RuntimeDep) -> ContactRead:
    """Change the name; ``attributes`` replaces them all."""
    return await contacts.update_contact(rt, contact_id=contact_id, principal=agent, data=body)


@router.post("/{contact_id}/notes", response_model=ContactNoteRead, status_code=201)
async def add_note(
    contact_id: IdParam, body: ContactNoteCreate, agent: CurrentAgent, rt: RuntimeDep
) -> ContactNoteRead:
    """An internal note on the contact, never sent to the customer."""
    return await contacts.add_contact_note(rt, contact_id=contact_id, principal=agent, text=body.text)


@router.post("/{contact_id}/merge", response_model=MergeRead, status_code=201)
async def merge(contact_id: IdParam, body: MergeRequest, agent: CurrentAgent, rt: RuntimeDep) -> MergeRead:
    """Supervisors: merge contact ``contact_id`` of the body into this one (this one survives). 409 for a
    contact merged into itself or into one merged or erased already."""
    return await contacts.merge_contacts(rt, survivor_id=contact_id, merged_id=body.contact_id, principal=agent)


@router.get("/{contact_id}/export", responses={200: {"content": {"application/json": {}}}})
async def export(contact_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> Response:
    """Supervisors: everything stored about the contact as a JSON download, attachments included (base64)."""
    data = await gdpr.export_contact(rt, contact_id=contact_id, principal=agent)
    return Response(
        json_dumps(data),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="contact-{contact_id}.json"'},
    )


@router.post("/{contact_id}/erase", response_model=gdpr.ErasedSummary)
async def erase(contact_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> gdpr.ErasedSummary:
    """Admins: erase the contact's personal data (messages' text and files, identities, notes); its tickets stay
    as anonymous counts. 409 while the contact is in an open call or chat."""
    return await gdpr.erase_contact(rt, contact_id=contact_id, principal=agent)
