"""Prometheus metrics, one registry per application instance (so tests can build several apps)."""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Sequence

from fastapi import HTTPException, Request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_ingested = Counter(
            "switchboard_messages_ingested",
            "Inbound messages stored, by channel",
            ["channel"],
            registry=self.registry,
        )
        self.messages_duplicate = Counter(
            "switchboard_messages_duplicate",
            "Inbound messages already stored (retries), by channel",
            ["channel"],
            registry=self.registry,
        )
        self.tickets = Gauge("switchboard_tickets", "Tickets by status", ["status"], registry=self.registry)
        self.websocket_clients = Gauge(
            "switchboard_websocket_clients", "Connected websocket clients", ["kind"], registry=self.registry
        )
        self.ingest_batch_size = Histogram(
            "switchboard_ingest_batch_size",
            "Messages committed together by the ingest pipeline",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.webhook_seconds = Histogram(
            "switchboard_webhook_seconds",
            "Time the server took to answer a webhook (first byte in the app to the response's last byte), by path",
            ["path"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.outbox_deliveries = Counter(
            "switchboard_outbox_deliveries",
            "Outbox delivery attempts, by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )


class MetricsGate:
    """Who may read ``/metrics``: a request with ``Authorization: Bearer <token>`` (when a token is set), or one
    from an address in ``allow`` (addresses or networks). Anyone else gets 401 with a ``WWW-Authenticate``
    challenge, as Prometheus' ``authorization`` scrape setting expects."""

    def __init__(self, token: SecretStr | None, allow: Sequence[str]) -> None:
        self._token = token.get_secret_value().encode() if token and token.get_secret_value() else None
        self._allow = [ipaddress.ip_network(a, strict=False) for a in allow]

    def allows(self, *, authorization: str | None, client: str | None) -> bool:
        if self._token is not None and authorization:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token):
                return True
        if client and self._allow:
            try:
                address = ipaddress.ip_address(client)
            except ValueError:
                return False
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            return any(address.version == net.version and address in net for net in self._allow)
        return False

    def check(self, request: Request) -> None:
        """Raise 401 unless the request may read the metrics."""
        if not self.allows(
            authorization=request.headers.get("authorization"), client=request.client.host if request.client else None
        ):
            raise HTTPException(
                401,
                detail="metrics need a bearer token (SWITCHBOARD_METRICS_TOKEN) or an allowed address "
                "(SWITCHBOARD_METRICS_ALLOW)",
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )


class WebhookTimer:
    """Observes ``Metrics.webhook_seconds`` for every answered request under ``/webhooks/``: the server's own
    time, which a caller's latency minus this tells apart from queuing in the network and the client. A path
    nothing answers (404, 405) is not counted, so the label's values stay the app's own paths."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.histogram = metrics.webhook_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and status not in (404, 405):
                self.histogram.labels(scope["path"]).observe(time.perf_counter() - started)

        await self.app(scope, receive, timed)
