"""Secrets that Switchboard must store and later use itself (a mailbox's IMAP and SMTP passwords), sealed
at rest with a key derived from ``SWITCHBOARD_SECRET_KEY``: a copy of the database alone does not give them
away.

A sealed value is ``sealed:v1:`` followed by a Fernet token (AES-128-CBC with an HMAC-SHA256, from the
``cryptography`` package). The key is HKDF-SHA256 of the secret key, so it is not the key that signs sessions.
A value without the prefix is a legacy plain value and is read as it is.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "sealed:v1:"


class SealedUnreadable(Exception):
    """A sealed value that the current secret key cannot open (the key changed, or the value was altered)."""


class Sealer:
    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"switchboard stored secrets").derive(
            secret_key.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, value: str) -> str:
        return PREFIX + self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, value: str) -> str:
        if not is_sealed(value):
            return value
        try:
            return self._fernet.decrypt(value[len(PREFIX) :].encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SealedUnreadable(
                "a stored secret cannot be opened with the current SWITCHBOARD_SECRET_KEY (it changed since the "
                "secret was saved); set the secret again"
            ) from None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
