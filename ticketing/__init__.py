"""The ticketing core. Every state change goes through one action function (``ticket_updates``, ``replies``,
``agents``, ``queues``, ``routing_service``, ``ingest``, ``chat``, ``canned``) inside ``Runtime.write()``, which
commits and then publishes the events the change produced. Views never write rows themselves."""
