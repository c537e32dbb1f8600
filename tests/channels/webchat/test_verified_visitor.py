"""A verified visitor's identity joins their existing contact (found by the identity, else by the verified
email address), and two first sessions of one visitor at once make one contact, not a second, empty one."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from hub.db import lock_keys, utcnow
from hub.messages import Identity
from hub.runtime import Runtime, Tx
from tests.conftest import racing
from ticketing.conversations import VERIFIED_IDENTITY_LOCK_SPACE
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C


async def link_verified_visitor(rt: Runtime, *, identity: str, email: str | None, name: str | None) -> int:
    """What the chat channel asks the core for a visitor the site vouched for: their user id, and their email
    address when the site gave it."""
    identities = [Identity(kind="webchat", value=identity)] + ([Identity(kind="email", value=email)] if email else [])
    return await rt.ports.contacts.link_verified(identities=identities, name=name)


async def contacts(rt: Runtime) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(C))).scalar_one())


async def test_a_verified_visitor_joins_the_contact_of_their_identity_or_email(rt: Runtime) -> None:
    first = await link_verified_visitor(rt, identity="user:7", email="Ann@Example.com", name="Ann")
    assert await link_verified_visitor(rt, identity="user:7", email=None, name=None) == first
    # Another site user id with the same verified address: the same person.
    assert await link_verified_visitor(rt, identity="user:8", email="ann@example.com", name=None) == first
    assert await link_verified_visitor(rt, identity="user:9", email=None, name="Bo") != first
    assert await contacts(rt) == 2


async def test_two_first_sessions_at_once_make_one_contact(rt: Runtime) -> None:
    """The other session has created the contact and its identities, not committed: this one waits, then
    joins that contact. PostgreSQL only: SQLite runs one writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    made: list[int] = []

    async def other_session(tx: Tx) -> None:
        await lock_keys(tx.conn, VERIFIED_IDENTITY_LOCK_SPACE, ["webchat\x1fuser:7"])
        now = utcnow()
        contact = (
            await tx.conn.execute(
                C.insert().values(name="Ann", attributes={}, created_at=now, updated_at=now).returning(C.c.id)
            )
        ).scalar_one()
        await tx.conn.execute(I.insert().values(kind="webchat", value="user:7", contact_id=contact, created_at=now))
        made.append(contact)

    assert (
        await racing(rt, other_session, link_verified_visitor(rt, identity="user:7", email=None, name="Ann")) == made[0]
    )
    assert await contacts(rt) == 1
