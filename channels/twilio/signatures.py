"""Who may call the webhooks: every request's ``X-Twilio-Signature`` checked with twilio's ``RequestValidator``
against the URL Twilio called, rebuilt from ``SWITCHBOARD_PUBLIC_URL`` + path + raw query (behind a proxy the
URL the app sees is another), before anything is stored. Parameters are bounded; Twilio adds new ones without
notice, so none is refused for being unknown."""

from __future__ import annotations

import functools
import hashlib

from fastapi import Request
from starlette.datastructures import FormData
from twilio.request_validator import RequestValidator

from hub.config import Settings
from hub.errors import SwitchboardError

# The token `switchboard demo` signs with when SWITCHBOARD_TWILIO_AUTH_TOKEN is unset (the demo phone uses it).
DEMO_TOKEN = "switchboard-demo-twilio-token"
FORM = "application/x-www-form-urlencoded"
MAX_PARAMS = 200


class BadSignature(SwitchboardError):
    status = 403
    code = "twilio_signature_invalid"


class BadParameters(SwitchboardError):
    status = 400
    code = "twilio_parameters_invalid"


def auth_tokens(settings: Settings) -> list[str]:
    """The tokens a request may be signed with: the configured one, and in demo mode the demo's own (the demo
    phone signs with it, whether or not a real token is configured; only ``switchboard demo`` accepts it)."""
    tokens = []
    if settings.twilio_auth_token is not None and settings.twilio_auth_token.get_secret_value():
        tokens.append(settings.twilio_auth_token.get_secret_value())
    if settings.demo_mode:
        tokens.append(DEMO_TOKEN)
    return tokens


@functools.lru_cache(maxsize=8)
def _validator(token: str) -> RequestValidator:
    """One validator per token, built once (not per request)."""
    return RequestValidator(token)


def public_url(settings: Settings, request: Request) -> str:
    """The URL Twilio called: the configured public base, the path, and the raw query string."""
    query = request.url.query
    return settings.public_url + request.url.path + (f"?{query}" if query else "")


async def verified_params(request: Request, settings: Settings) -> dict[str, str]:
    """The request's form parameters once its signature holds (403 otherwise, 400 for a body that is not a
    bounded form)."""
    signature = request.headers.get("x-twilio-signature")
    tokens = auth_tokens(settings)
    if not signature or not tokens:
        raise BadSignature("missing X-Twilio-Signature" if tokens else "Twilio is not configured on this server")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise BadParameters(f"Twilio webhooks are {FORM}")
    try:
        form: FormData = await request.form(max_files=0, max_fields=MAX_PARAMS)
    except Exception as exc:  # a body python-multipart cannot parse, or too many fields
        raise BadParameters(f"malformed form body: {type(exc).__name__}") from None
    params: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str):
            raise BadParameters("files are not accepted")
        params[key] = value
    url = public_url(settings, request)
    if not any(_validator(token).validate(url, form, signature) for token in tokens):
        raise BadSignature("X-Twilio-Signature does not match")
    limit = settings.twilio_max_param_chars
    for key, value in params.items():
        if len(key) > 100 or len(value) > limit:
            raise BadParameters(f"parameter {key[:100]!r} is over {limit} characters", loc=("body", key[:100]))
        if "\x00" in value:
            raise BadParameters(f"parameter {key!r} holds a NUL character", loc=("body", key))
    return params


def fingerprint(request: Request, params: dict[str, str]) -> str:
    """What makes a webhook the same request again (Twilio retries): its idempotency token when it sent one,
    else the path, query and parameters (action URLs carry the step number, so two identical key presses at
    two steps differ)."""
    token = request.headers.get("i-twilio-idempotency-token")
    if token:
        return "t:" + hashlib.sha256(token.encode()).hexdigest()[:60]
    h = hashlib.sha256(request.url.path.encode() + b"?" + request.url.query.encode())
    for key in sorted(params):
        h.update(b"\x00" + key.encode() + b"=" + params[key].encode())
    return "p:" + h.hexdigest()[:60]


def sign(token: str, url: str, params: dict[str, str]) -> str:
    """A signature as Twilio computes it (the demo phone's webhooks; tests)."""
    return str(RequestValidator(token).compute_signature(url, params))
