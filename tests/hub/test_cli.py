"""The command line: `switchboard demo` serves seeded data with the printed logins, `agent create` adds to the
same database, and the migrations build exactly the schema the models describe."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from hub.cli import GIL_SWITCH_INTERVAL, run_server
from hub.config import Settings
from hub.db import Database, create_engine
from hub.websocket import ReadAheadWebSocketProtocol
from tests.conftest import free_port


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    """`python -m hub --help` runs the same CLI as `switchboard` and lists its commands."""
    out = run_cli("--help", cwd=tmp_path).stdout
    for command in ("serve", "demo", "migrate", "agent"):
        assert command in out


def test_demo_serves_seeded_data_and_agent_create_adds_to_it(tmp_path: Path) -> None:
    """`switchboard demo` in an empty directory migrates a SQLite file, seeds it, prints URLs and logins, and
    serves them; `agent create` run beside it adds a login that works at once."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    log = open(tmp_path / "demo.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
            time.sleep(0.2)
        printed = (tmp_path / "demo.log").read_text()
        assert f"{base}/docs" in printed
        # the help center's links for search engines name the port the demo serves on
        assert f'<link rel="canonical" href="{base}/help">' in httpx.get(f"{base}/help").text
        logins = dict(re.findall(r"^\s+(\w+)\s+/\s+(\S+)\s+\(", printed, flags=re.M))
        assert {"admin", "supervisor", "alice", "bob", "carol"} <= set(logins)
        assert (tmp_path / "switchboard.db").exists()
        r = httpx.post(f"{base}/api/auth/login", json={"username": "supervisor", "password": logins["supervisor"]})
        token = r.json()["token"]
        # (the open samples among the weeks of history seeded for the wallboard and reports)
        tickets = httpx.get(
            f"{base}/api/tickets", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert tickets["total"] >= 4
        assert {t["channel"] for t in tickets["items"]} >= {"email", "sms", "whatsapp", "telegram"}
        # the demo phone, and the number it calls, answered by the demo flow
        assert f"{base}/demo/phone" in printed and f"{base}/admin/phone" in printed
        r = httpx.post(f"{base}/api/auth/login", json={"username": "admin", "password": logins["admin"]})
        numbers = httpx.get(f"{base}/api/twilio/numbers", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert [(n["number"], n["flow"]) for n in numbers.json()] == [("+14155550199", "demo")]
        # the demo's own social accounts, configured and healthy, and the pretend app that writes to them
        assert f"{base}/demo/social" in printed
        accounts = httpx.get(f"{base}/api/social/accounts", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert sorted((a["channel"], a["status"]) for a in accounts.json()) == [
            ("instagram", "ok"),
            ("messenger", "ok"),
            ("telegram", "ok"),
            ("whatsapp", "ok"),
        ]
        assert 'data-app="telegram" data-account="demo_bot"' in httpx.get(f"{base}/demo/social").text
        # the demo shop's knowledge base: on the help center, and suggested for a customer's words
        assert f"{base}/help" in printed
        assert '<a href="/help/track-your-order">Track your order</a>' in httpx.get(f"{base}/help").text
        answers = httpx.get(f"{base}/api/kb/public/answers", params={"q": "how do I track my parcel"}, timeout=30)
        assert answers.json()[0]["slug"] == "track-your-order"

        created = run_cli(
            "agent",
            "create",
            "dave",
            "--password",
            "dave-password-1",
            "--role",
            "agent",
            "--queue",
            "support",
            cwd=tmp_path,
            env=env,
        )
        assert created.returncode == 0, created.stderr
        assert "created agent dave" in created.stdout
        r = httpx.post(f"{base}/api/auth/login", json={"username": "dave", "password": "dave-password-1"})
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_agent_create_rejects_bad_input_clearly(tmp_path: Path) -> None:
    """A short password or an unknown queue is refused with a message, and nothing is created."""
    env = {"SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    short = run_cli("agent", "create", "eve", "--password", "short", cwd=tmp_path, env=env)
    assert short.returncode == 2 and "password" in short.stderr
    no_queue = run_cli(
        "agent", "create", "eve", "--password", "long-enough-1", "--queue", "nope", cwd=tmp_path, env=env
    )
    assert no_queue.returncode == 1 and "no queue named nope" in no_queue.stderr
    bad_role = run_cli("agent", "create", "eve", "--password", "long-enough-1", "--role", "boss", cwd=tmp_path, env=env)
    assert bad_role.returncode == 2 and "role" in bad_role.stderr


def test_a_command_says_which_migrations_it_ran_and_nothing_else_of_alembics(tmp_path: Path) -> None:
    """Every command brings the database up to date first: on a new database it names each migration it runs,
    on an up-to-date one it prints nothing but its own output (Alembic's plugin, dialect and DDL-mode lines
    were printed before every command's answer)."""
    env = {"SWITCHBOARD_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}
    first = run_cli("kb", "export", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "Running upgrade  -> 0001" in first.stderr
    assert "alembic" in first.stderr and "setup plugin" not in first.stderr and "Context impl" not in first.stderr
    again = run_cli("kb", "export", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert "0 articles written" in again.stdout


def test_a_database_url_without_its_async_driver_is_completed(tmp_path: Path) -> None:
    """`sqlite:///file` and `postgresql://` / `postgres://` (as hosting platforms write them) run on the async
    drivers Switchboard uses."""
    from hub.config import Settings

    assert (
        Settings(database_url="postgres://u:p%40ss@db:5432/sb").database_url
        == "postgresql+asyncpg://u:p%40ss@db:5432/sb"
    )
    assert Settings(database_url="postgresql://u@db/sb").database_url == "postgresql+asyncpg://u@db/sb"
    migrated = run_cli("migrate", cwd=tmp_path, env={"SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert migrated.returncode == 0, migrated.stderr
    assert f"sqlite+aiosqlite:///{tmp_path / 'x.db'}" in migrated.stdout and (tmp_path / "x.db").exists()


def test_bad_settings_and_an_unreachable_database_end_with_one_clear_line(tmp_path: Path) -> None:
    """No traceback: the setting that does not parse is named (its value, maybe a password, is not echoed),
    and a database that cannot be reached is named with the reason, and what to check."""
    other = run_cli("migrate", cwd=tmp_path, env={"SWITCHBOARD_DATABASE_URL": "mysql://root:hunter2@db/sb"})
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "SWITCHBOARD_DATABASE_URL" in other.stderr and "postgresql+asyncpg://" in other.stderr
    assert "hunter2" not in other.stderr
    not_a_number = run_cli("migrate", cwd=tmp_path, env={"SWITCHBOARD_TOKEN_TTL_SECONDS": "twelve hours"})
    assert not_a_number.returncode == 2 and "SWITCHBOARD_TOKEN_TTL_SECONDS" in not_a_number.stderr
    assert "Traceback" not in not_a_number.stderr
    # A required pre-chat field the form does not show would refuse every chat: refused at start instead.
    unshown = run_cli(
        "migrate",
        cwd=tmp_path,
        env={"SWITCHBOARD_CHAT_PRECHAT_FIELDS": '["name"]', "SWITCHBOARD_CHAT_PRECHAT_REQUIRED": '["email"]'},
    )
    assert unshown.returncode == 2 and "SWITCHBOARD_CHAT_PRECHAT_REQUIRED: " in unshown.stderr
    unknown = run_cli("migrate", cwd=tmp_path, env={"SWITCHBOARD_CHAT_PRECHAT_FIELDS": '["name", "order_number"]'})
    assert unknown.returncode == 2 and "unknown pre-chat field order_number" in unknown.stderr
    down = run_cli(
        "migrate",
        cwd=tmp_path,
        env={"SWITCHBOARD_DATABASE_URL": f"postgresql://sb:hunter2@127.0.0.1:{free_port()}/sb"},
    )
    assert down.returncode == 1 and "Traceback" not in down.stderr and "hunter2" not in down.stderr
    assert "cannot open the database postgresql+asyncpg://sb:***@127.0.0.1" in down.stderr
    assert "SWITCHBOARD_DATABASE_URL" in down.stderr


async def test_migrations_match_the_models(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to change between the migrated database and the models, so no
    model change ships without its migration. The knowledge base's full-text index (an FTS5 virtual table on
    SQLite, a generated tsvector column on PostgreSQL) and ticket search's (FTS5 tables, tsvector columns)
    are made by their migrations and have no model: only those named objects are left out of the comparison."""
    from knowledge_base.models import SEARCH_INDEX_COLUMNS, SEARCH_INDEX_INDEXES, SEARCH_INDEX_TABLES
    from ticketing.search import TICKET_SEARCH_COLUMNS, TICKET_SEARCH_INDEXES, TICKET_SEARCH_TABLES

    def modelled(obj: object, name: str | None, kind: str, reflected: bool, _other: object) -> bool:
        if kind == "table":
            return name not in SEARCH_INDEX_TABLES | TICKET_SEARCH_TABLES
        if kind == "column":
            table = getattr(getattr(obj, "table", None), "name", None)
            return (table, name) not in SEARCH_INDEX_COLUMNS | TICKET_SEARCH_COLUMNS
        if kind == "index":
            return name not in SEARCH_INDEX_INDEXES | TICKET_SEARCH_INDEXES
        return True

    opts = {"compare_type": True, "include_object": modelled}
    db = Database(database_url)
    try:
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts=opts), SQLModel.metadata)
            )
    finally:
        await db.dispose()
    assert diff == []


def test_a_database_at_the_three_old_heads_upgrades_to_one_history(tmp_path: Path) -> None:
    """Installations migrated before the merge revision stand at three heads (email, webchat, routing with its
    indexes); `switchboard migrate` brings them to the single head that later migrations build on."""
    import sqlite3

    from alembic.script import ScriptDirectory

    from hub.migrate import alembic_config, upgrade

    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    for old_head in ("0002_email", "0004_webchat", "0005_ticket_indexes"):
        upgrade(url, old_head)

    def versions() -> set[str]:
        with sqlite3.connect(path) as conn:
            return {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")}

    assert versions() == {"0002_email", "0004_webchat", "0005_ticket_indexes"}
    upgrade(url)
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = script.get_heads()
    assert len(heads) == 1 and versions() == set(heads)
    # the one head builds on the merge revision (later migrations, such as the knowledge base's, follow it)
    assert "0006_merge_heads" in {rev.revision for rev in script.walk_revisions("base", heads[0])}


async def test_serve_on_sqlite_shortens_the_gil_switch_interval_and_creating_an_engine_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite runs statements in threads: with the interpreter's default switch interval (5 ms) a busy event
    loop kept each of them waiting that long for the GIL, twice per statement. The interval is the process's:
    `serve` shortens it on SQLite; creating an engine leaves it alone, and so does `serve` on PostgreSQL."""
    served: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets=None: served.append(server.config))
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        await create_engine(sqlite_url).dispose()
        assert sys.getswitchinterval() == 0.005
        run_server(_settings("postgresql+asyncpg://sb@127.0.0.1/sb"), host="127.0.0.1", port=free_port())
        assert sys.getswitchinterval() == 0.005
        run_server(_settings(sqlite_url), host="127.0.0.1", port=free_port())
        assert sys.getswitchinterval() <= GIL_SWITCH_INTERVAL <= 0.001
    finally:
        sys.setswitchinterval(before)
    assert len(served) == 2


def test_serve_runs_the_read_ahead_websocket_protocol_only_with_the_fast_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read-ahead protocol subclasses uvicorn's internals: with SWITCHBOARD_FAST_PATHS off, `serve` runs
    uvicorn's own protocol on the same websockets core instead."""
    served: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets=None: served.append(server.config))
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    for fast in (True, False):
        run_server(_settings(url, fast_paths=fast), host="127.0.0.1", port=free_port())
    assert [config.ws for config in served] == [ReadAheadWebSocketProtocol, "websockets-sansio"]


def _settings(database_url: str, **values: object) -> Settings:
    return Settings(database_url=database_url, _env_file=None, **values)  # type: ignore[call-arg, arg-type]
