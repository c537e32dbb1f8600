"""Reports from seeded tickets against hand-computed figures; CSV export safe for spreadsheets; charts as
SVG; absurd ranges refused with a clear 422."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from hub.runtime import Runtime
from tests.conftest import login, make_agent
from tests.ticketing.routing_helpers import arrive, message, queue
from ticketing import report_rollup, tables
from ticketing.models import QueueUpdate
from ticketing.queues import update_queue


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=UTC)


@pytest.fixture
async def seeded(rt: Runtime) -> dict[str, Any]:
    """Five tickets in queue "=SUM(A1)" (a name a spreadsheet would run), T = 60 s:
    2 Nov: t1 answered in 30 s, first reply at 120 s, solved 600 s after the answer, rated 5;
           t2 answered in 90 s, first reply at 300 s, rated 3;
           t3 abandoned after 10 s (within T: counts on neither side); t4 abandoned after 120 s;
    3 Nov: t5 answered in 20 s."""
    qid = await queue(rt, "=SUM(A1)", channels=["email"])
    await update_queue(rt, queue_id=qid, data=QueueUpdate(service_level_seconds=60))
    await make_agent(rt, "sam", role="supervisor")
    ids = await arrive(rt, *(message("email", queue="=SUM(A1)") for _ in range(5)))
    rows = [
        dict(created_at=at(2, 10), queued_at=at(2, 10), answered_at=at(2, 10, 0, 30), first_response_at=at(2, 10, 2),
             solved_at=at(2, 10, 10, 30), status="solved", rating=5),
        dict(created_at=at(2, 10), queued_at=at(2, 10), answered_at=at(2, 10, 1, 30), first_response_at=at(2, 10, 5),
             rating=3),
        dict(created_at=at(2, 11), queued_at=at(2, 11), abandoned_at=at(2, 11, 0, 10), status="closed"),
        dict(created_at=at(2, 11), queued_at=at(2, 11), abandoned_at=at(2, 11, 2), status="closed"),
        dict(created_at=at(3, 9), queued_at=at(3, 9), answered_at=at(3, 9, 0, 20)),
    ]  # fmt: skip
    async with rt.write() as tx:
        for ticket_id, values in zip(ids, rows, strict=True):
            await tx.conn.execute(update(tables.tickets).where(tables.tickets.c.id == ticket_id).values(**values))
    # written behind the event log's back, as bulk seeding does: the rollup is counted afresh
    await report_rollup.rebuild(rt)
    return {"queue": qid, "tickets": ids}


async def test_report_figures_match_the_hand_computed_ones(seeded: dict[str, Any], client: httpx.AsyncClient) -> None:
    sam = await login(client, "sam", "password-123")
    r = await client.get("/api/reports/summary", params={"start": "2026-11-02", "end": "2026-11-03"}, headers=sam)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["labels"] == ["2026-11-02", "2026-11-03"]
    t = report["totals"]
    assert (t["volume"], t["answered"], t["abandoned"], t["solved"]) == (5, 3, 2, 1)
    assert t["service_level"] == pytest.approx(2 / 4)  # answered within 60 s: t1, t5; over 3 answered + t4
    assert t["abandonment"] == pytest.approx(2 / 5)
    assert t["asa"] == pytest.approx((30 + 90 + 20) / 3)
    assert t["first_response_avg"] == pytest.approx((120 + 300) / 2)
    assert t["handle_avg"] == pytest.approx(600)
    assert t["resolution_avg"] == pytest.approx(630)
    assert t["csat"] == pytest.approx(4.0)
    day1, day2 = report["series"]
    assert day1["volume"] == 4 and day1["service_level"] == pytest.approx(1 / 3)
    assert day2["volume"] == 1 and day2["service_level"] == 1.0
    assert report["volume_by_channel"] == {"email": [4, 1]}
    assert report["volume_by_queue"] == {"=SUM(A1)": [4, 1]}
    # by hour: 2 Nov 10:00 holds t1 and t2
    r = await client.get(
        "/api/reports/summary", params={"start": "2026-11-02", "end": "2026-11-02", "bucket": "hour"}, headers=sam
    )
    hourly = r.json()
    assert (
        len(hourly["labels"]) == 24 and hourly["series"][10]["volume"] == 2 and hourly["series"][11]["abandoned"] == 2
    )


async def test_csv_export_makes_formula_cells_text(seeded: dict[str, Any], client: httpx.AsyncClient) -> None:
    sam = await login(client, "sam", "password-123")
    r = await client.get("/api/reports/summary.csv", params={"start": "2026-11-02", "end": "2026-11-03"}, headers=sam)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["queue"] for row in rows] == ["'=SUM(A1)", "'=SUM(A1)"]
    assert rows[0]["volume"] == "4.0" and rows[0]["service_level"] == "0.3333"
    assert not any(cell[:1] in "=+-@" for row in rows for cell in row.values() if cell)


async def test_charts_are_svg_drawn_on_the_server(seeded: dict[str, Any], client: httpx.AsyncClient) -> None:
    sam = await login(client, "sam", "password-123")
    for name in ("volume", "service_level", "answered_abandoned", "times"):
        r = await client.get(
            f"/api/reports/chart/{name}.svg", params={"start": "2026-11-02", "end": "2026-11-03"}, headers=sam
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.startswith("<svg") and "<script" not in r.text
        assert "http" not in r.text.replace("http://www.w3.org/2000/svg", "")
    # a queue name with markup is escaped in the chart
    r = await client.get(
        "/api/reports/chart/volume.svg", params={"start": "2026-11-02", "end": "2026-11-03"}, headers=sam
    )
    assert "2026-11-02" in r.text


async def test_absurd_ranges_are_refused_with_a_clear_422(rt: Runtime, client: httpx.AsyncClient) -> None:
    await make_agent(rt, "sam", role="supervisor")
    sam = await login(client, "sam", "password-123")
    cases = [
        ({"start": "2026-01-01", "end": "2026-03-01", "bucket": "hour"}, "at most 31 days"),
        ({"start": "2000-01-01", "end": "2026-01-01", "bucket": "day"}, "at most 366 days"),
        ({"start": "0001-01-01", "end": "9999-12-31", "bucket": "week"}, "at most 1830 days"),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "end is before start"),
    ]
    for params, reason in cases:
        for path in ("/api/reports/summary", "/api/reports/summary.csv", "/api/reports/chart/volume.svg"):
            r = await client.get(path, params=params, headers=sam)
            assert r.status_code == 422, (path, params, r.text)
            assert r.json()["detail"][0]["loc"] == ["query", "end"] and reason in r.json()["detail"][0]["msg"]
    r = await client.get("/api/reports/summary", params={"start": "2026-13-01", "end": "2026-01-01"}, headers=sam)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "start"]
    r = await client.get(
        "/api/reports/summary", params={"start": "2026-01-01", "end": "2026-01-02", "bucket": "year"}, headers=sam
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "bucket"]
