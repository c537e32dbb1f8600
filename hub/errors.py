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
    status = 400
    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


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
