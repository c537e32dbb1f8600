"""The ticketing core. Every state change goes through one action function (``ticket_updates``, ``replies``,
``agents``, ``queues``, ``routing_service``, ``ingest``, ``conversations``, ``canned``) inside
``Runtime.write()``, which commits and then publishes the events the change produced. Views never write rows
themselves. Channels and the knowledge base reach the core through the ports it implements (``ports``, for
``hub.ports``); its commands are in ``cli``."""

# The core's event payload models register as the package loads, before any of its events is appended.
from ticketing import events as events  # noqa: E402
