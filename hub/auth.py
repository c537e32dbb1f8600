"""Passwords, session tokens and login throttling. Pure: no database, no web framework.

Tokens are signed and timestamped with the secret key (itsdangerous); they carry the agent id and a
password-version fingerprint, so changing a password ends the sessions made with the old one. Neither
passwords nor tokens are ever logged.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_hasher = PasswordHasher()
SESSION_COOKIE = "switchboard_session"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# A hash to verify against when the username is unknown, so both cases take the same time.
_DUMMY_HASH = _hasher.hash("no-such-user-password")


def verify_dummy(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    agent_id: int
    fingerprint: str


class TokenSigner:
    """Session tokens: signed, timestamped claims (itsdangerous).

    Every request and websocket of a console presents its token, and checking a signature costs about 0.1 ms
    (itsdangerous derives the key again for each check). The claims of tokens already checked are kept, up
    to ``remembered`` of them, with their signing time: a kept token is still refused once it is older than
    ``ttl_seconds``. Only a token whose signature was verified is ever kept."""

    remembered = 4096

    def __init__(self, secret: str, ttl_seconds: int, salt: str = "switchboard-session") -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=salt)
        self.ttl_seconds = ttl_seconds
        self._verified: dict[str, tuple[TokenClaims, float]] = {}

    def issue(self, agent_id: int, password_hash: str) -> str:
        return self._serializer.dumps({"a": agent_id, "f": password_fingerprint(password_hash)})

    def verify(self, token: str) -> TokenClaims | None:
        kept = self._verified.get(token)
        if kept is not None:
            claims, signed_at = kept
            if time.time() - signed_at <= self.ttl_seconds:
                return claims
            del self._verified[token]
            return None
        try:
            data, signed = self._serializer.loads(token, max_age=self.ttl_seconds, return_timestamp=True)
        except (BadSignature, SignatureExpired):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("a"), int):
            return None
        claims = TokenClaims(agent_id=data["a"], fingerprint=str(data.get("f", "")))
        if len(self._verified) >= self.remembered:
            del self._verified[next(iter(self._verified))]  # the longest kept
        self._verified[token] = (claims, signed.timestamp())
        return claims


class LoginThrottle:
    """At most ``limit`` failed attempts per key (a username, a client address) in a sliding minute."""

    def __init__(self, limit: int, window_seconds: float = 60.0) -> None:
        self.limit = limit
        self.window = window_seconds
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        attempts = self._failures[key]
        while attempts and attempts[0] <= now - self.window:
            attempts.popleft()
        return attempts

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again; 0 if it may now."""
        now = time.monotonic()
        attempts = self._recent(key, now)
        if len(attempts) < self.limit:
            return 0.0
        return max(0.0, attempts[0] + self.window - now)

    def failed(self, key: str) -> None:
        self._failures[key].append(time.monotonic())

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


_SECRET_PARAM = re.compile(r"((?:token|password|secret)=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every ``token=…``, ``password=…`` and ``secret=…`` value replaced by ``***``."""
    return _SECRET_PARAM.sub(r"\1***", text)


class RedactSecrets(logging.Filter):
    """Keeps tokens out of logs: uvicorn logs websocket URLs, and ``/ws/...?token=`` carries one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)  # type: ignore[assignment]
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    """Attach ``RedactSecrets`` to the loggers that print request lines (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
