"""FastAPI dependencies shared by every package's views: the runtime, the token signer, and who is asking
(``CurrentAgent``, ``CurrentAdmin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from hub.auth import SESSION_COOKIE, TokenSigner, password_fingerprint
from hub.principals import Principal, principal_cache
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


# --- who is asking ---------------------------------------------------------------------------------------------


async def authenticate(conn: HTTPConnection) -> Principal | None:
    """The agent behind the request's session token, or None. Every package authenticates here; the agents
    themselves come from the core's ``AgentPort`` (read once every few seconds per agent: ``hub.principals``)."""
    token = bearer_or_cookie(conn)
    if not token:
        return None
    claims = get_signer(conn).verify(token)
    if claims is None:
        return None
    rt = get_runtime(conn)
    cache = principal_cache(rt)
    loaded = cache.get(claims.agent_id)
    if loaded is None:
        record = await rt.ports.agents.principal(claims.agent_id)
        if record is None:
            return None
        loaded = record.principal, record.password_hash
        cache.put(claims.agent_id, *loaded)
    principal, password_hash = loaded
    if password_fingerprint(password_hash) != claims.fingerprint:
        return None  # the password changed since this token was issued
    return principal


async def current_agent(conn: HTTPConnection) -> Principal:
    """The logged-in agent; 401 without one."""
    principal = await authenticate(conn)
    if principal is None:
        raise HTTPException(
            status_code=401, detail="log in first: POST /api/auth/login", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


async def current_admin(conn: HTTPConnection) -> Principal:
    """The logged-in agent if an admin; 401 without a login, 403 (``admin_only``) for anyone else."""
    principal = await current_agent(conn)
    principal.require_admin()
    return principal


CurrentAgent = Annotated[Principal, Depends(current_agent)]
CurrentAdmin = Annotated[Principal, Depends(current_admin)]


async def current_supervisor(conn: HTTPConnection) -> Principal:
    """The logged-in agent if a supervisor or admin; 401 without a login, 403 (``supervisor_only``) for an agent."""
    principal = await current_agent(conn)
    principal.require_supervisor()
    return principal


CurrentSupervisor = Annotated[Principal, Depends(current_supervisor)]
