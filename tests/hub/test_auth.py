"""Passwords, tokens and the log: what hub.auth promises."""

from __future__ import annotations

import logging
import time

import pytest

from hub.auth import RedactSecrets, TokenSigner, hash_password, redact, verify_password


def test_password_hash_verifies_only_the_right_password() -> None:
    """argon2 hashes verify the password they were made from and nothing else."""
    h = hash_password("correct horse")
    assert h.startswith("$argon2")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "Correct horse")
    assert not verify_password("not-a-hash", "correct horse")


def test_token_is_bound_to_secret_and_password_fingerprint() -> None:
    """A token verifies under its secret only, and carries the fingerprint of the password hash it was issued for."""
    signer = TokenSigner("secret-a", 60)
    token = signer.issue(7, "hash-1")
    claims = signer.verify(token)
    assert claims is not None and claims.agent_id == 7
    assert TokenSigner("secret-b", 60).verify(token) is None
    assert signer.verify(token[:-2] + "xx") is None
    assert claims.fingerprint != TokenSigner("secret-a", 60).verify(signer.issue(7, "hash-2")).fingerprint  # type: ignore[union-attr]


def test_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past its time to live a token no longer verifies."""
    import itsdangerous.timed

    signer = TokenSigner("secret", 10)
    token = signer.issue(1, "h")
    real = itsdangerous.timed.time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() + 11)
    assert signer.verify(token) is None


def test_a_kept_token_still_expires_and_only_verified_tokens_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims of a verified token are kept, but a kept token is refused past its time to live too; a token
    that failed its check is refused every time, and a forged one is never taken for a kept one."""
    signer = TokenSigner("secret", 10)
    token = signer.issue(1, "h")
    forged = token[:-2] + "xx"
    assert signer.verify(forged) is None and signer.verify(forged) is None
    assert signer.verify(token) is not None and signer.verify(token) is not None  # the second from what was kept
    assert list(signer._verified) == [token]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 11)
    assert signer.verify(token) is None
    assert signer.verify(token) is None  # and it is no longer kept
    assert signer._verified == {}


def test_kept_tokens_are_bounded() -> None:
    signer = TokenSigner("secret", 60)
    signer.remembered = 3
    tokens = [signer.issue(i, "h") for i in range(5)]
    assert all(signer.verify(t) is not None for t in tokens)
    assert list(signer._verified) == tokens[2:]


def test_tokens_and_passwords_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """The uvicorn loggers redact token= (websocket URLs carry one), password= and secret= values."""
    assert redact("GET /ws/agent?token=abc.def-ghi&last_seq=4") == "GET /ws/agent?token=***&last_seq=4"
    logger = logging.getLogger("test.redaction")
    logger.addFilter(RedactSecrets())
    with caplog.at_level(logging.INFO, logger="test.redaction"):
        logger.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/ws/agent?token=SECRET123")
        logger.info("login with password=hunter2")
    assert "SECRET123" not in caplog.text and "hunter2" not in caplog.text
    assert "token=***" in caplog.text
