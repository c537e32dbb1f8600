"""Ticketing's exceptions, each with a stable code (the tree is drawn in ``hub/errors.py``)."""

from __future__ import annotations

from hub.errors import Conflict, InvalidInput, NotFound, PermissionDenied, SwitchboardError


class TicketNotFound(NotFound):
    code = "ticket_not_found"


class ContactNotFound(NotFound):
    code = "contact_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class QueueNotFound(NotFound):
    code = "queue_not_found"


class NotYourTicket(PermissionDenied):
    code = "ticket_forbidden"


class InvalidIdentity(InvalidInput):
    code = "invalid_identity"


class UnknownChannel(InvalidInput):
    code = "unknown_channel"


class OfferNotPending(Conflict):
    code = "offer_not_pending"


class UsernameTaken(Conflict):
    code = "username_taken"


class QueueNameTaken(Conflict):
    code = "queue_name_taken"


class QueueInUse(Conflict):
    """A queue that still holds open work, or that another queue's overflow or a routing rule names."""

    code = "queue_in_use"


class ClientKeyReused(Conflict):
    code = "client_key_reused"


class TicketNotOpen(Conflict):
    """A reply to a solved or closed ticket: it takes no reply until it is reopened (as the console says); an
    internal note still goes on it."""

    code = "ticket_not_open"


class NoRecipient(InvalidInput):
    code = "no_recipient"


class OutsideWindow(InvalidInput):
    """Free text refused: the customer's messaging window on the channel is closed (``hub.windows``)."""

    code = "outside_messaging_window"


class UnknownTemplate(InvalidInput):
    code = "unknown_template"


class InvalidRoutingConfig(InvalidInput):
    """Routing configuration that does not hold; ``errors`` may name several fields at fault, each as
    ``(loc, msg)``, answered as one 422 listing them all."""

    code = "invalid_routing_config"

    def __init__(
        self,
        message: str,
        *,
        loc: tuple[str | int, ...] = ("body",),
        errors: list[tuple[tuple[str | int, ...], str]] | None = None,
    ) -> None:
        super().__init__(message, loc=loc)
        self.errors = errors or [(loc, message)]

    def answer(self) -> dict[str, object]:
        detail = [{"loc": list(loc), "msg": msg, "type": self.code} for loc, msg in self.errors]
        return {"detail": detail, "code": self.code}


class AlreadyRated(Conflict):
    code = "already_rated"


class NotRateable(Conflict):
    code = "not_rateable"


class InvalidRating(InvalidInput):
    code = "invalid_rating"


class AtCapacity(Conflict):
    code = "at_capacity"


class TicketTaken(Conflict):
    code = "ticket_taken"


class AttachmentTooLarge(SwitchboardError):
    status = 413
    code = "attachment_too_large"


class UnsupportedAttachment(SwitchboardError):
    status = 415
    code = "unsupported_attachment"


class InvalidAttachment(InvalidInput):
    code = "invalid_attachment"
