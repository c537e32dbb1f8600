"""The application factory: the one place that wires every package together.

The channels are named here once, in ``CHANNEL_PACKAGES``; everything else about a channel comes through the
``channels.base.Channel`` protocol, in a loop. The core registers its ports (``hub.ports``) on the runtime
before anything starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.auth import LoginThrottle, TokenSigner, install_log_redaction
from hub.bus import EventHub, LocalTransport, RedisTransport, Transport
from hub.channels import SPECS
from hub.config import Settings, get_settings
from hub.db import Database, utcnow
from hub.docs import install_docs
from hub.errors import SwitchboardError
from hub.events import prune_events
from hub.inputs import clean
from hub.messages import Sender
from hub.metrics import Metrics, MetricsGate, WebhookTimer
from hub.runtime import Runtime
from hub.workers import FreezeSurvivors, Periodic, freeze_heap

if TYPE_CHECKING:
    from channels.base import Channel

log = logging.getLogger(__name__)

# The channels this hub carries, one line each: a package under channels/ whose ``create_channel(settings)``
# builds its ``channels.base.Channel``. The only place a channel is named (CONTRIBUTING.md: adding a channel).
CHANNEL_PACKAGES: tuple[str, ...] = (
    "channels.webchat",
    "channels.email",
    "channels.twilio",
    "channels.social",
)


def import_all_models() -> None:
    """Register every table on SQLModel's metadata (for Alembic and tests): the core's, and the ``models``
    module of each registered channel package that has one."""
    import hub.audit  # noqa: F401
    import hub.events  # noqa: F401
    import knowledge_base.models  # noqa: F401
    import ticketing.models  # noqa: F401

    for package in CHANNEL_PACKAGES:
        if importlib.util.find_spec(f"{package}.models") is not None:
            importlib.import_module(f"{package}.models")


def build_channels(settings: Settings) -> list[Channel]:
    """Every registered channel, built with ``settings``; refuses a channel name that ``hub.channels.SPECS``
    does not declare, or that two channels bring."""
    from channels.base import build_channel

    channels: list[Channel] = []
    brought: dict[str, str] = {}
    for package in CHANNEL_PACKAGES:
        channel = build_channel(getattr(importlib.import_module(package), "create_channel", None), settings)
        for spec in channel.specs:
            if SPECS.get(spec.name) != spec:
                raise RuntimeError(f"{package} brings channel {spec.name!r}, which hub.channels.SPECS does not declare")
            if spec.name in brought:
                raise RuntimeError(f"channel {spec.name!r} is brought by both {brought[spec.name]} and {package}")
            brought[spec.name] = package
        channels.append(channel)
    return channels


@dataclass(frozen=True, slots=True)
class DemoSeed:
    """What ``seed_demo`` did: whether the core's data was seeded now (False: the database had it already),
    and the logins to print (username, password, role)."""

    seeded: bool
    logins: list[tuple[str, str, str]]
    available: tuple[str, str] | None = None  # the login of the agent the demo starts available


async def seed_demo(rt: Runtime) -> DemoSeed:
    """``switchboard demo``'s data: the core's (queues, agents, conversations; once), then each channel's."""
    from knowledge_base.demo import seed as seed_articles
    from ticketing.demo import DEMO_LOGINS, make_available, seed
    from ticketing.ports import register_ports

    register_ports(rt)
    seeded = await seed(rt)
    await seed_articles(rt)  # the shop's knowledge base, into an empty one
    for channel in build_channels(rt.settings):
        await channel.seed_demo(rt)
    available = await make_available(rt)
    return DemoSeed(
        seeded, [(username, password, role.value) for username, password, role, *_ in DEMO_LOGINS], available
    )


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, whether or not Content-Length is honest or given at
    all (a chunked body). ``overrides`` gives some paths a limit of their own (attachment uploads).

    A body that turns out too large while the app reads it raises ``BodyTooLarge`` from ``receive``: an
    ``HTTPException``, so FastAPI, which answers 400 to anything else going wrong while it reads a body,
    passes it on, and the app's handler answers 413."""

    def __init__(self, app: ASGIApp, limit: int, overrides: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.overrides = dict(overrides or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        await too_large_response(BodyTooLarge(limit))({"type": "http"}, _noop_receive, send)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=f"request body is over the limit of {limit} bytes")


def too_large_response(exc: BodyTooLarge) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, "code": "body_too_large"}, status_code=413)


class CleanURL:
    """NUL characters in the URL, which no database can store: a path holding one names nothing (404), and they
    are dropped from the query string. (Text in bodies and websocket frames is cleaned by ``hub.inputs``.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            if "\x00" in scope["path"]:
                if scope["type"] == "http":
                    await JSONResponse({"detail": "Not Found"}, status_code=404)(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
            query: bytes = scope.get("query_string", b"")
            if b"%00" in query or b"\x00" in query:
                scope = {**scope, "query_string": query.replace(b"%00", b"").replace(b"\x00", b"")}
        await self.app(scope, receive, send)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class AllowedMethods:
    """``OPTIONS`` answers 204 with ``Allow`` naming every method the path's routes take, and a 405 names them
    all too (Starlette's names only those of the first route that matched the path)."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list: routes added later count too

    def allowed(self, scope: Scope) -> set[str]:
        # Each method is tried as the router would dispatch it: routes may sit inside included routers.
        return {
            method
            for method in _METHODS
            if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in self.routes)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            methods = self.allowed(scope)
            if methods:
                allow = ", ".join(sorted(methods | {"OPTIONS"}))
                await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)
                return

        async def allow_all(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = self.allowed(scope)
                if methods:
                    MutableHeaders(scope=message)["Allow"] = ", ".join(sorted(methods | {"OPTIONS"}))
            await send(message)

        await self.app(scope, receive, allow_all)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationAnswer(BaseModel):
    """A 422: each input at fault (``loc``: where, ``msg``: what is wrong), as FastAPI's validation errors say it;
    the domain's 422s add their stable ``code``."""

    detail: list[FieldError]
    code: str | None = None


class ErrorAnswer(BaseModel):
    """Every error answer: ``detail`` says what is wrong (for a 422, a list naming each field at fault, as
    FastAPI's validation errors do), ``code`` is stable for programs (not on every error)."""

    detail: str | list[dict[str, Any]]
    code: str | None = None


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings | None = None, *, senders: Mapping[str, Sender] | None = None) -> FastAPI:
    """Build the application. ``senders`` overrides the channels' senders (a test seam)."""
    import_all_models()
    from agent_ui.views import router as agent_ui_router
    from agent_ui.views import static_files as agent_ui_static
    from channels.base import ChannelContext
    from hub.audit import router as audit_router
    from knowledge_base.help import router as help_router
    from knowledge_base.suggest import knowledge_index
    from knowledge_base.views import public_router as kb_public_router
    from knowledge_base.views import router as kb_router
    from ticketing.canned import router as canned_router
    from ticketing.contact_views import router as contacts_router
    from ticketing.gdpr import erase_expired_tickets
    from ticketing.ingest import IngestPipeline
    from ticketing.models import Ticket
    from ticketing.outbox import OutboxDispatcher
    from ticketing.ports import register_ports
    from ticketing.queues import load_rules_file
    from ticketing.report_rollup import catch_up as catch_up_reports
    from ticketing.routing_service import routing_tick
    from ticketing.sla_service import check_breaches
    from ticketing.supervisor_views import reports_router
    from ticketing.supervisor_views import router as supervisor_router
    from ticketing.templates import router as templates_router
    from ticketing.templates import seed_from_settings as seed_templates
    from ticketing.views import router as ticketing_router
    from ticketing.views import ws_router as ticketing_ws
    from ticketing.wallboard import start_wallboard

    settings = settings or get_settings()
    channels = build_channels(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.of(settings)
        transport: Transport = (
            RedisTransport(settings.redis_url, settings.redis_channel) if settings.redis_url else LocalTransport()
        )
        hub = EventHub(
            db,
            transport,
            queue_size=settings.ws_send_queue,
            catch_up_seconds=settings.event_catch_up_seconds,
            coalesce_seconds=settings.ws_coalesce_seconds,
        )
        rt = Runtime(settings=settings, db=db, events=hub, metrics=app.state.metrics)
        register_ports(rt)
        ingest = IngestPipeline(rt)
        context = ChannelContext(rt=rt, ingest=ingest.submit, ingest_all=ingest.submit_all)

        async def prune() -> None:
            async with db.begin() as conn:
                await prune_events(conn, utcnow() - timedelta(seconds=settings.event_retention_seconds))

        async def freeze() -> None:
            freeze_heap()

        jobs = [
            Periodic("routing", settings.routing_tick_seconds, lambda: routing_tick(rt)),
            Periodic("event-pruning", 3600.0, prune),
            Periodic("report-rollup", settings.report_rollup_seconds, lambda: catch_up_reports(rt, build=True)),
        ]
        if settings.sla_check_seconds > 0:
            jobs.append(Periodic("sla-breaches", settings.sla_check_seconds, lambda: check_breaches(rt)))
        if settings.gc_freeze_seconds > 0:
            jobs.append(Periodic("gc-freeze", settings.gc_freeze_seconds, freeze))
        if settings.retention_days is not None:
            older_than = timedelta(days=settings.retention_days)
            jobs.append(
                Periodic(
                    "retention",
                    settings.retention_check_seconds,
                    lambda: erase_expired_tickets(rt, older_than=older_than),
                )
            )
        app.state.rt = rt
        app.state.ingest = ingest
        kb_index = knowledge_index(rt)
        await hub.start()
        board = await start_wallboard(rt) if settings.wallboard else None
        if settings.routing_rules is not None:
            # A rules file that does not validate stops the start with a message naming the bad field.
            await load_rules_file(rt, path=settings.routing_rules)
        for warning in settings.deprecations():
            log.warning(warning)
        await seed_templates(rt)  # SWITCHBOARD_WHATSAPP_TEMPLATES: the ones the table does not have yet
        await ingest.start()
        for channel in channels:
            await channel.start(context)
        delivering = {name: sender for channel in channels for name, sender in channel.senders.items()}
        for channel in channels:
            rt.reply_hooks.update(channel.reply_hooks)
        dispatcher = OutboxDispatcher(rt, {**delivering, **dict(senders or {})})
        await dispatcher.start()
        for job in jobs:
            await job.start()
        await kb_index.start()
        survivors = FreezeSurvivors()
        if settings.gc_freeze_seconds > 0:
            freeze_heap()  # what the start built lives as long as the process
            survivors.install()
        try:
            yield
        finally:
            survivors.remove()
            await kb_index.stop()
            for job in jobs:
                await job.stop()
            await dispatcher.stop()
            for channel in reversed(channels):
                await channel.stop()
            await ingest.stop()
            if board is not None:
                board.stop()
            await rt.stop_tasks()
            await hub.stop()
            await db.dispose()

    app = FastAPI(
        title="Switchboard",
        summary="Self-hosted contact center: one ticketing core for every channel.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # hub.docs serves /docs and /redoc with their assets from this hub (no CDN)
        redoc_url=None,
        responses={
            "4XX": {"model": ErrorAnswer, "description": "The request cannot be done: `detail` says why"},
            422: {"model": ValidationAnswer, "description": "Invalid input: `detail` names each field at fault"},
        },
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.signer = TokenSigner(settings.secret_key.get_secret_value(), settings.token_ttl_seconds)
    app.state.login_throttle = LoginThrottle(settings.login_attempts_per_minute)
    # Each channel by the names it brings (tests and operators reach a running channel here).
    app.state.channels = {spec.name: channel for channel in channels for spec in channel.specs}
    install_log_redaction()

    @app.exception_handler(SwitchboardError)
    async def _domain_error(_request: Request, exc: SwitchboardError) -> JSONResponse:
        return JSONResponse(exc.answer(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's answer, with the input it echoes cleaned: a lone surrogate in it cannot be encoded (a 500).
        return JSONResponse({"detail": clean(jsonable_encoder(exc.errors()))}, status_code=422)

    @app.exception_handler(PoolTimeout)
    async def _busy(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection stayed in use for SWITCHBOARD_DATABASE_POOL_TIMEOUT_SECONDS: the server is
        # overloaded, not broken. The client (Twilio, Meta, a console) is told to come back.
        log.warning("%s %s: no free database connection, answered 503: %s", request.method, request.url.path, exc)
        return JSONResponse(
            {"detail": "the server is busy: every database connection is in use; try again in a moment"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large_response(exc)

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, Any]:
        rt: Runtime = request.app.state.rt
        async with rt.read() as conn:
            await conn.execute(select(1))
        return {"status": "ok", "database": rt.db.engine.dialect.name, "last_seq": rt.events.last_seq}

    metrics_gate = MetricsGate(settings.metrics_token, settings.metrics_allow)

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        """Prometheus metrics, for a scraper with the bearer token (SWITCHBOARD_METRICS_TOKEN) or from an address
        in SWITCHBOARD_METRICS_ALLOW (this machine by default)."""
        metrics_gate.check(request)
        rt: Runtime = request.app.state.rt
        table = Ticket.__table__  # type: ignore[attr-defined]
        async with rt.read() as conn:
            counts: dict[str, int] = dict(
                (await conn.execute(select(table.c.status, func.count()).group_by(table.c.status))).all()
            )
        for status in ("new", "open", "pending", "solved", "closed"):
            rt.metrics.tickets.labels(status).set(counts.get(status, 0))
        return PlainTextResponse(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The channels' routers first: a request's route is found by trying the routes in order, and the webhooks
    # (a phone call's every step) are the hottest paths; behind the core's routers each tried ~80 routes first.
    # No channel's path can be taken for another's: each is under a prefix of its own.
    for channel in channels:
        for router in channel.routers():
            app.include_router(router)
    app.include_router(ticketing_router)
    app.include_router(ticketing_ws)
    app.include_router(canned_router)
    app.include_router(templates_router)
    app.include_router(supervisor_router)
    app.include_router(reports_router)
    app.include_router(audit_router)
    app.include_router(contacts_router)
    app.include_router(agent_ui_router)
    app.include_router(help_router)
    app.include_router(kb_router)
    app.include_router(kb_public_router)
    app.mount("/static", agent_ui_static, name="static")
    install_docs(app)
    app.add_middleware(AllowedMethods, routes=app.router.routes)
    app.add_middleware(CleanURL)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, overrides=_body_limits(settings, channels))
    for channel in channels:
        for middleware in channel.middleware():
            app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)
    app.add_middleware(WebhookTimer, metrics=app.state.metrics)  # outermost: the app's whole time
    return app


def _body_limits(settings: Settings, channels: Sequence[Channel]) -> dict[str, int]:
    from ticketing.reply_files import UPLOAD_PATH

    # an agent's upload for a reply: the file, with room for the form's boundaries and fields
    own = {UPLOAD_PATH: settings.reply_attachment_max_bytes + 64 * 1024}
    return own | {path: limit for channel in channels for path, limit in channel.body_limits().items()}
