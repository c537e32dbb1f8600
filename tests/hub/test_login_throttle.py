"""The login throttle behind (and without) a reverse proxy, on the server ``switchboard serve`` runs: forwarded
headers are believed only from SWITCHBOARD_TRUSTED_PROXIES, and failures count per username and per client,
so a new X-Forwarded-For per attempt buys nothing (issue 19)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from hub.cli import server_config
from hub.config import Settings
from hub.runtime import Runtime
from tests.conftest import free_port, make_agent

LIMIT = 10


class ServedAsByTheCli:
    """uvicorn with ``switchboard serve``'s configuration (``hub.cli.server_config``), in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        config = server_config(settings, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "server did not stop"


@pytest.fixture
def direct(settings: Settings) -> Iterator[str]:
    with ServedAsByTheCli(settings.model_copy(update={"login_attempts_per_minute": LIMIT})) as url:
        yield url


async def wrong(client: httpx.AsyncClient, username: str, forwarded_for: str) -> int:
    r = await client.post(
        "/api/auth/login",
        json={"username": username, "password": "not-the-password"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return r.status_code


async def test_forwarded_for_is_not_believed_without_a_trusted_proxy(rt: Runtime, direct: str) -> None:
    """With no proxy configured, a new X-Forwarded-For per attempt is throttled all the same, and a locked-out
    user's correct password is refused with 429 whatever the header says."""
    await make_agent(rt, "ada", role="admin")
    async with httpx.AsyncClient(base_url=direct, timeout=10) as client:
        codes = [await wrong(client, "ada", f"10.0.0.{i}") for i in range(15)]
        assert codes[:LIMIT] == [401] * LIMIT and set(codes[LIMIT:]) == {429}, codes
        r = await client.post(
            "/api/auth/login",
            json={"username": "ada", "password": "password-123"},
            headers={"X-Forwarded-For": "192.0.2.77"},
        )
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0, r.text


async def test_behind_a_trusted_proxy_failures_count_per_client_and_per_username(
    rt: Runtime, settings: Settings
) -> None:
    """Behind a configured proxy the forwarded address is the client: one client trying many usernames is
    throttled, another client is not; one username tried from many clients is throttled for all of them, and
    other users still log in."""
    await make_agent(rt, "ada", role="admin")
    await make_agent(rt, "bob")
    proxied = settings.model_copy(update={"login_attempts_per_minute": LIMIT, "trusted_proxies": ["127.0.0.1"]})
    with ServedAsByTheCli(proxied) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            codes = [await wrong(client, f"nobody{i}", "198.51.100.1") for i in range(LIMIT + 1)]
            assert codes[-1] == 429 and codes[:LIMIT] == [401] * LIMIT, codes
            assert await wrong(client, "nobody-else", "198.51.100.2") == 401  # another client
            codes = [await wrong(client, "ada", f"203.0.113.{i}") for i in range(LIMIT + 1)]
            assert codes[-1] == 429, codes
            r = await client.post(
                "/api/auth/login",
                json={"username": "bob", "password": "password-123"},
                headers={"X-Forwarded-For": "203.0.113.200"},
            )
            assert r.status_code == 200, r.text


def test_uvicorn_believes_forwarded_headers_only_from_the_configured_proxies(settings: Settings) -> None:
    """``serve`` and ``demo`` hand SWITCHBOARD_TRUSTED_PROXIES to uvicorn: none by default (uvicorn's own
    default believes 127.0.0.1)."""
    config = server_config(settings, host="127.0.0.1", port=1)
    assert config.proxy_headers is False
    proxied = server_config(settings.model_copy(update={"trusted_proxies": ["10.1.2.3"]}), host="127.0.0.1", port=1)
    assert proxied.proxy_headers is True and proxied.forwarded_allow_ips == ["10.1.2.3"]
