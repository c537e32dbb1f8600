"""The logged-in agent as a dependency: ``CurrentAgent``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from starlette.requests import HTTPConnection

from hub.auth import password_fingerprint
from hub.deps import bearer_or_cookie, get_runtime, get_signer
from ticketing.agents import load_principal
from ticketing.permissions import Principal
from ticketing.principals import principal_cache


async def authenticate(conn: HTTPConnection) -> Principal | None:
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
        loaded = await load_principal(rt, agent_id=claims.agent_id)
        if loaded is None:
            return None
        cache.put(claims.agent_id, *loaded)
    principal, password_hash = loaded
    if password_fingerprint(password_hash) != claims.fingerprint:
        return None  # the password changed since this token was issued
    return principal


async def current_agent(conn: HTTPConnection) -> Principal:
    principal = await authenticate(conn)
    if principal is None:
        raise HTTPException(
            status_code=401, detail="log in first: POST /api/auth/login", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


CurrentAgent = Annotated[Principal, Depends(current_agent)]
