"""The audit log: an entry is written in the change's own transaction, admins read and export it (CSV cells a
spreadsheet would run as formulas are escaped), everyone else is refused."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from hub import audit
from hub.csv_export import spreadsheet_safe
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import login, make_agent


async def test_an_entry_exists_exactly_when_its_change_commits(rt: Runtime) -> None:
    ada = Principal(agent_id=7, username="ada", display_name="Ada", role="admin", queue_ids=frozenset())
    async with rt.db.begin() as conn:
        await audit.record(conn, actor=ada, action="queue.update", target="queue:3", detail={"priority": [1, 5]})
    with pytest.raises(RuntimeError):
        async with rt.db.begin() as conn:
            await audit.record(conn, actor=ada, action="queue.delete", target="queue:3")
            raise RuntimeError("the change failed")
    async with rt.db.begin() as conn:
        await audit.record(conn, actor=None, action="contact.erase", target="contact:9")
    async with rt.read() as conn:
        rows = await audit.entries(conn)
        tickets = await audit.entries(conn, action="queue.")
    assert [(r.actor, r.actor_id, r.action, r.target) for r in rows] == [
        ("system", None, "contact.erase", "contact:9"),
        ("ada", 7, "queue.update", "queue:3"),
    ]
    assert rows[1].detail == {"priority": [1, 5]}
    assert [r.action for r in tickets] == ["queue.update"]


async def test_admins_read_and_export_it_and_nobody_else(rt: Runtime, client: httpx.AsyncClient) -> None:
    await make_agent(rt, "ada", role="admin")
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "alice")
    ada = Principal(agent_id=1, username="ada", display_name="Ada", role="admin", queue_ids=frozenset())
    async with rt.db.begin() as conn:
        await audit.record(conn, actor=ada, action="agent.update", target="agent:2", detail={"name": "Bo"})
        await audit.record(conn, actor=ada, action="ticket.reassign", target="=HYPERLINK(1)")
    admin = await login(client, "ada", "password-123")
    for who in ("sam", "alice"):
        headers = await login(client, who, "password-123")
        assert (await client.get("/api/audit", headers=headers)).status_code == 403
        assert (await client.get("/api/audit.csv", headers=headers)).status_code == 403
    client.cookies.clear()  # the logins' session cookies
    assert (await client.get("/api/audit")).status_code == 401

    listed = (await client.get("/api/audit", params={"target": "agent:2"}, headers=admin)).json()
    assert [(e["action"], e["detail"]) for e in listed] == [("agent.update", {"name": "Bo"})]

    r = await client.get("/api/audit.csv", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "at", "actor_id", "actor", "action", "target", "detail"]
    assert [row[4] for row in rows[1:]] == ["ticket.reassign", "agent.update"]
    assert [row[5] for row in rows[1:]] == ["'=HYPERLINK(1)", "agent:2"]
    assert rows[2][3] == "ada" and rows[2][6] == "name=Bo"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-12-06T10:00:00"}, "since"),  # no offset: not guessed
        ({"since": "2026-12-06T10:00:00Z", "until": "2026-12-05T10:00:00Z"}, "until"),
        ({"limit": "0"}, "limit"),
    ],
)
async def test_bad_filters_are_refused_with_the_field(
    rt: Runtime, client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    await make_agent(rt, "ada", role="admin")
    admin = await login(client, "ada", "password-123")
    r = await client.get("/api/audit", params=params, headers=admin)
    assert r.status_code == 422
    assert [e["loc"][-1] for e in r.json()["detail"]] == [field]


def test_cells_a_spreadsheet_would_run_are_escaped() -> None:
    assert [spreadsheet_safe(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "ok", None, 3)] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "ok",
        "",
        "3",
    ]
