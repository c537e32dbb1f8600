"""The ticketing tables, each named as in SQL, for Core statements; and the stored values of the open statuses."""

from ticketing.models import (
    OPEN_STATUSES,
    Agent,
    AgentQueue,
    Contact,
    ContactIdentity,
    ContactMerge,
    ContactNote,
    FileUpload,
    Message,
    MessageFile,
    Outbox,
    Queue,
    ReportCursor,
    ReportHour,
    ReportRecount,
    ReportTicket,
    RoutingRules,
    Ticket,
)

tickets = Ticket.__table__  # type: ignore[attr-defined]
messages = Message.__table__  # type: ignore[attr-defined]
message_files = MessageFile.__table__  # type: ignore[attr-defined]
file_uploads = FileUpload.__table__  # type: ignore[attr-defined]
contacts = Contact.__table__  # type: ignore[attr-defined]
contact_identities = ContactIdentity.__table__  # type: ignore[attr-defined]
contact_notes = ContactNote.__table__  # type: ignore[attr-defined]
contact_merges = ContactMerge.__table__  # type: ignore[attr-defined]
queues = Queue.__table__  # type: ignore[attr-defined]
agents = Agent.__table__  # type: ignore[attr-defined]
agent_queues = AgentQueue.__table__  # type: ignore[attr-defined]
outbox = Outbox.__table__  # type: ignore[attr-defined]
report_hours = ReportHour.__table__  # type: ignore[attr-defined]
report_tickets = ReportTicket.__table__  # type: ignore[attr-defined]
report_cursor = ReportCursor.__table__  # type: ignore[attr-defined]
report_recounts = ReportRecount.__table__  # type: ignore[attr-defined]
routing_rules = RoutingRules.__table__  # type: ignore[attr-defined]

OPEN_STATUS_VALUES = [s.value for s in OPEN_STATUSES]
