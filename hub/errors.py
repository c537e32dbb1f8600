"""The root of every package's exception tree. ``hub/app.py`` maps each to an HTTP answer by its
``status`` and stable ``code``::

    SwitchboardError
    ├── NotFound            404  not_found
    ├── PermissionDenied    403  forbidden
    ├── Conflict            409  conflict
    └── InvalidInput        422  invalid_input

Packages subclass these with their own codes (see ``ticketing/exceptions.py``).
"""

from __future__ import annotations


class SwitchboardError(Exception):
    """``loc`` names the input at fault, as FastAPI's validation errors do (``("body", "agent_id")``): a 422
    answers ``{"detail": [{"loc", "msg", "type"}], "code"}``, the shape of every 422 in the OpenAPI schema;
    other statuses answer ``{"detail": message, "code"}``."""

    status = 400
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, loc: tuple[str | int, ...] = ("body",)) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        if code:
            self.code = code

    def answer(self) -> dict[str, object]:
        """The JSON body of the HTTP answer."""
        if self.status == 422:
            return {"detail": [{"loc": list(self.loc), "msg": self.message, "type": self.code}], "code": self.code}
        return {"detail": self.message, "code": self.code}


class NotFound(SwitchboardError):
    status = 404
    code = "not_found"


class PermissionDenied(SwitchboardError):
    status = 403
    code = "forbidden"


class Conflict(SwitchboardError):
    status = 409
    code = "conflict"


class InvalidInput(SwitchboardError):
    status = 422
    code = "invalid_input"
