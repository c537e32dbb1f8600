"""FastAPI dependencies shared by every package's views."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from hub.auth import SESSION_COOKIE, TokenSigner
from hub.runtime import Runtime


def get_runtime(conn: HTTPConnection) -> Runtime:
    return conn.app.state.rt  # type: ignore[no-any-return]


def get_signer(conn: HTTPConnection) -> TokenSigner:
    return conn.app.state.signer  # type: ignore[no-any-return]


def bearer_or_cookie(conn: HTTPConnection) -> str | None:
    """The session token from ``Authorization: Bearer``, the ``?token=`` of a websocket, or the cookie."""
    header = conn.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    if conn.scope["type"] == "websocket" and conn.query_params.get("token"):
        return conn.query_params["token"]
    return conn.cookies.get(SESSION_COOKIE)


# FastAPI runs a plain ``def`` dependency in a worker thread: a thread hop on every request for an attribute
# read. These ``async def`` twins run on the loop.
async def _runtime_dep(conn: HTTPConnection) -> Runtime:
    return get_runtime(conn)


async def _signer_dep(conn: HTTPConnection) -> TokenSigner:
    return get_signer(conn)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dep)]
SignerDep = Annotated[TokenSigner, Depends(_signer_dep)]
