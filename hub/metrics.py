"""Prometheus metrics, one registry per application instance (so tests can build several apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.outbox_deliveries = Counter(
            "switchboard_outbox_deliveries",
            "Outbox delivery attempts, by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
