"""Settings: one pydantic-settings object, read from ``SWITCHBOARD_*`` environment variables and ``.env``.

Every command (``serve``, ``demo``, ``migrate``, ``agent create``) reads the same settings, so a CLI command
run beside a running server works on the same database.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from annotated_types import Ge, Le
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hub.inputs import Input

Port = Annotated[int, Ge(1), Le(65535)]


class MailboxSettings(Input):
    """One IMAP-in / SMTP-out mailbox, as given in ``SWITCHBOARD_MAILBOXES``."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    address: str = Field(min_length=3, max_length=320)
    queue: str = Field(min_length=1, max_length=100)
    imap_host: str
    imap_port: Port = 993
    imap_tls: bool = True
    username: str
    password: SecretStr
    folder: str = "INBOX"
    smtp_host: str
    smtp_port: Port = 587
    smtp_security: Literal["none", "starttls", "tls"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None


class TwilioNumberSettings(Input):
    """One phone number of the hub's and the flow answering it, as given in ``SWITCHBOARD_TWILIO_NUMBERS``."""

    number: str = Field(min_length=3, max_length=32)
    flow: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    label: str = Field(default="", max_length=200)


class MetaPageSettings(Input):
    """One Facebook page or Instagram account, as given in ``SWITCHBOARD_META_PAGES``: its id (the page's id, or
    the Instagram account's id that Meta names as the recipient), the page access token that sends for it, the
    queue its conversations and comments go to, and which app it is."""

    page_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.-]+$")
    access_token: SecretStr
    queue: str = Field(min_length=1, max_length=100)
    kind: Literal["messenger", "instagram"] = "messenger"


class WhatsAppNumberSettings(Input):
    """One WhatsApp Cloud API number, as given in ``SWITCHBOARD_WHATSAPP_NUMBERS``."""

    phone_number_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.-]+$")
    access_token: SecretStr
    queue: str = Field(min_length=1, max_length=100)


class TelegramBotSettings(Input):
    """One Telegram bot, as given in ``SWITCHBOARD_TELEGRAM_BOTS``: its name (the webhook is
    ``/webhooks/telegram/{name}``), its API token, the secret token Telegram sends with every update, its queue."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    token: SecretStr
    secret_token: SecretStr = Field(description="1-256 characters of A-Z a-z 0-9 _ -")
    queue: str = Field(min_length=1, max_length=100)

    @field_validator("secret_token")
    @classmethod
    def _telegram_alphabet(cls, value: SecretStr) -> SecretStr:
        import re

        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("Telegram accepts 1-256 characters of A-Z a-z 0-9 _ - as a secret token")
        return value


class MessageTemplate(Input):
    """An approved message template (WhatsApp), as given in ``SWITCHBOARD_WHATSAPP_TEMPLATES``: the only thing
    an agent may send outside the customer's messaging window. ``body`` shows the text with ``{{1}}``,
    ``{{2}}``... where the variables go."""

    name: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = Field(default="en_US", min_length=2, max_length=15)
    body: str = Field(min_length=1, max_length=1024)
    channels: list[str] = Field(default_factory=lambda: ["whatsapp"])
    # WhatsApp through Twilio sends a template by its Content API SID (Meta's Cloud API by name and language).
    content_sid: str | None = Field(default=None, pattern=r"^HX[0-9a-fA-F]{32}$")


class LegacyWhatsAppTemplate(Input):
    """A template in the shape the removed ``SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES`` took (a deployment that
    still sets it keeps its templates: ``Settings`` turns each into a ``MessageTemplate``)."""

    name: str = Field(min_length=1, max_length=100)
    content_sid: str = Field(pattern=r"^HX[0-9a-fA-F]{32}$")
    text: str = Field(default="", max_length=1024)
    variables: list[str] = Field(default_factory=list, max_length=10)

    def current(self) -> MessageTemplate:
        """The same template as ``SWITCHBOARD_WHATSAPP_TEMPLATES`` takes it: the name made a template name
        (lower case, digits and _), the text its body (or, when it had none, its variables' places)."""
        name = re.sub(r"[^a-z0-9_]+", "_", self.name.lower()).strip("_") or "template"
        body = self.text or " ".join(f"{{{{{n}}}}}" for n in range(1, len(self.variables) + 1)) or self.name
        return MessageTemplate(name=name, body=body, channels=["whatsapp"], content_sid=self.content_sid)


@dataclass(frozen=True, slots=True)
class DemoSocial:
    """The social accounts ``switchboard demo`` configures when none are (``hub.cli.demo_social_settings``).
    Their secrets are the demo's own: the pretend app (/demo/social) has its webhooks signed with them, and only
    with them (a configured app secret or bot secret is never lent to the demo's signer)."""

    meta_app_secret: str = "switchboard-demo-meta-app-secret"
    telegram_secret: str = "switchboard-demo-telegram-secret"
    page: str = "100000000000001"
    instagram: str = "17841400000000001"
    whatsapp: str = "100000000000002"
    bot: str = "demo_bot"
    queue: str = "support"


DEMO_SOCIAL = DemoSocial()


class Settings(BaseSettings):
    """All of Switchboard's configuration. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite+aiosqlite:///{Path.cwd() / 'switchboard.db'}",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db",
    )
    # PostgreSQL's connections per process: ``pool_size`` kept open, up to ``pool_overflow`` more in a burst; a
    # request that waits ``pool_timeout_seconds`` for one is answered 503 with Retry-After (the server is busy).
    database_pool_size: int = Field(default=10, ge=1, le=1000, description="PostgreSQL connections kept open")
    database_pool_overflow: int = Field(default=20, ge=0, le=1000, description="more PostgreSQL connections in a burst")
    database_pool_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="how long a request waits for a free database connection"
    )
    redis_url: str | None = Field(default=None, description="Redis URL for fan-out across processes")
    redis_channel: str = Field(default="switchboard:events", description="Redis pub/sub channel for events")
    secret_key: SecretStr = Field(
        default=SecretStr("change-me-in-production"),
        description="Signs session and visitor tokens; seals stored mailbox passwords",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Externally visible base URL, used for webhook signatures and links",
    )
    token_ttl_seconds: int = 12 * 3600
    max_body_bytes: int = 1_048_576
    event_retention_seconds: int = 7 * 24 * 3600
    # GDPR retention: the messages (text, attachments, files) of tickets solved or closed more than this many
    # days ago are erased by a background worker; the tickets stay as anonymous counts. None: kept forever.
    retention_days: int | None = Field(
        default=None, ge=1, le=36_500, description="erase messages of tickets closed more than N days ago"
    )
    retention_check_seconds: float = Field(default=3600.0, gt=0)
    heartbeat_seconds: float = 25.0
    # How often a quiet process checks the event log for events a transport did not bring (CLI writes,
    # a Redis hiccup). Gaps in seq are filled at once regardless.
    event_catch_up_seconds: float = 5.0
    ws_send_queue: int = 1000
    # A busy hub writes to each console's socket at most this often, with every event since its last write
    # (hub.bus.EventHub: a write per console per batch was a sixth of a loaded server's CPU); a quiet one
    # writes each batch at once. 0: every batch at once.
    ws_coalesce_seconds: float = Field(
        default=0.01, ge=0, le=1, description="a busy hub writes to each console at most this often"
    )
    # How often a server collects all garbage and freezes what survived (hub.workers.freeze_heap; between
    # two, each full collection freezes its survivors: FreezeSurvivors). 0: Python's collector as it is.
    gc_freeze_seconds: float = 600.0
    ws_compression: bool = False
    # The fast paths that rest on dependencies' internals (hub.db.fast, hub.db.sqlite_writer.LoopThreadConnection,
    # hub.websocket.ReadAheadWebSocketProtocol); off: their public APIs only, slower.
    fast_paths: bool = True
    login_attempts_per_minute: int = 10
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed;
    # empty: no forwarded header is believed, the client is the peer of the connection.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Who may read /metrics (it shows ticket counts): a scraper sending ``Authorization: Bearer <metrics_token>``,
    # or one whose address is in ``metrics_allow`` (addresses or networks; by default this machine only, so a
    # local Prometheus works without a setting). Behind a reverse proxy on this machine, set trusted_proxies too,
    # or every client looks local.
    metrics_token: SecretStr | None = Field(default=None, description="Bearer token that may read /metrics")
    metrics_allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1"], description="Addresses or networks that may read /metrics"
    )
    ingest_batch_max: int = 256
    offer_timeout_seconds: int = 30
    routing_rules: Path | None = Field(default=None, description="YAML file of queue-selection rules")
    routing_tick_seconds: float = 1.0
    wrap_up_seconds: int = 30
    max_missed_offers: int = 3
    voice_blocks_chats: bool = True
    # The supervisor's wallboard (ticketing.wallboard): kept up to date from the event stream when on; "today"
    # on the wallboard and in the reports is the calendar day in each queue's business-hours timezone, or in
    # ``supervisor_timezone`` for a queue whose hours name none.
    wallboard: bool = True
    # How often the reports' hourly rollup takes in new events (ticketing.report_rollup); a report also
    # catches up before it reads, so this only keeps that catching-up short.
    report_rollup_seconds: float = Field(default=2.0, gt=0)
    supervisor_timezone: str = "UTC"
    # How often the SLA sweep announces breaches and escalates (ticketing.sla_service); 0 turns it off.
    sla_check_seconds: float = 15.0
    outbox_max_attempts: int = 8
    outbox_backoff_base_seconds: float = 2.0
    outbox_poll_seconds: float = 1.0
    mail_domain: str = "switchboard.local"
    # Where replies by email go out when no mailbox is configured: a send-only SMTP server (no TLS, no login;
    # a local relay). `switchboard demo` points it at its own mail catcher, whose mail /demo/mailbox lists.
    outgoing_smtp_host: str | None = None
    outgoing_smtp_port: Port = 25
    outgoing_email_from: str | None = Field(default=None, description="From address (default support@mail_domain)")
    # `switchboard demo` sets this: the demo pages say how to try things (which login answers chats, where the
    # mail goes), any phone number answers with the demo flow, and a token of the demo's own signs the demo
    # phone's webhooks when no Twilio auth token is given. A plain `serve` shows the pretend shop without them.
    demo_mode: bool = False
    demo_mailbox_dir: Path | None = Field(default=None, description="The demo mail catcher's messages (/demo/mailbox)")
    # The calls the demo's stand-in for Meta's and Telegram's send APIs caught (hub.api_catcher): the agents'
    # social replies the pretend app (/demo/social) shows.
    demo_social_dir: Path | None = Field(default=None, description="The demo's caught social replies (/demo/social)")
    default_phone_region: str = "US"
    mailboxes: list[MailboxSettings] = Field(default_factory=list)
    # Files of every channel (email attachments, inline images and raw messages; chat uploads) are stored by
    # content hash under attachment_dir (hub/files.py).
    attachment_dir: Path = Field(default_factory=lambda: Path.cwd() / "attachments")
    attachment_max_bytes: int = 25 * 1024 * 1024
    # Files agents attach to their replies (POST /api/reply-attachments): at most this large each.
    reply_attachment_max_bytes: int = 10 * 1024 * 1024
    email_max_message_bytes: int = 50 * 1024 * 1024
    email_fetch_batch: int = 200
    email_poll_seconds: float = 60.0
    email_idle_seconds: float = 25 * 60.0
    email_timeout_seconds: float = 60.0
    email_reconnect_max_seconds: float = 300.0
    email_election_seconds: float = 10.0
    email_ack_queues: list[str] = Field(default_factory=list, description='queues that acknowledge; "*" = all')
    email_templates_dir: Path | None = None
    email_auto_reply_limit: int = 3
    email_auto_reply_window_seconds: int = 3600

    # Live chat (channels/webchat)
    chat_identity_secret: SecretStr | None = Field(
        default=None, description="Shared secret sites use to sign their users' ids (HMAC-SHA256) for the widget"
    )
    chat_visitor_token_ttl_seconds: int = 30 * 24 * 3600
    chat_prechat_fields: list[str] = Field(default_factory=lambda: ["name", "email"])
    chat_prechat_required: list[str] = Field(default_factory=lambda: ["name"])
    chat_title: str = "Chat with us"
    chat_greeting: str = "Hi! Ask us anything - we usually answer within a minute."
    chat_offline_message: str = (
        "Nobody is available to chat right now. Leave your email address and we will answer by email."
    )
    chat_closed_message: str = (
        "We are closed right now. Leave your email address and we will answer by email when we are back."
    )
    chat_max_message_chars: int = 5000
    # While a chat waits for an agent, how often the widget checks again whether anybody is available (and
    # offers to answer by email when nobody is).
    chat_availability_check_seconds: float = Field(default=20.0, gt=0)
    # Visitors' uploads go to attachment_dir too, with the other channels' files.
    chat_attachment_max_bytes: int = 5 * 1024 * 1024
    chat_allowed_origins: list[str] = Field(
        default_factory=lambda: ["*"], description="Sites that may embed the widget (CORS for /api/chat)"
    )

    # Phone, SMS and WhatsApp through Twilio (channels/twilio)
    twilio_account_sid: str | None = Field(default=None, description="Twilio account SID (AC...) for the REST API")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio auth token: checks X-Twilio-Signature and signs REST calls"
    )
    twilio_numbers: list[TwilioNumberSettings] = Field(
        default_factory=list, description='numbers and the flow answering each: [{"number": "+1...", "flow": "demo"}]'
    )
    twilio_flows_dir: Path | None = Field(
        default=None,
        description="folder of IVR flow files (<name>.yaml); default: the flows shipped in ivr_flows/flows",
    )
    twilio_default_flow: str | None = Field(default=None, description="flow answering a number not configured")
    twilio_agent_numbers: dict[str, str] = Field(
        default_factory=dict, description="agents' own phones by username: an accepted call dials the agent there"
    )
    twilio_dial_numbers: dict[str, str] = Field(
        default_factory=dict, description="outside numbers the flows' dial nodes name (number_name), E.164 by name"
    )
    # The browser phone (Twilio's Voice JavaScript SDK in the console): an API key the hub signs access tokens with.
    twilio_api_key_sid: str | None = Field(
        default=None, pattern=r"^SK[0-9a-fA-F]{32}$", description="API key SID (SK...) for the browser phone's tokens"
    )
    twilio_api_key_secret: SecretStr | None = Field(default=None, description="that API key's secret")
    twilio_browser_token_seconds: int = Field(
        default=3600, ge=60, le=86400, description="how long a browser phone's access token lasts (renewed before)"
    )
    twilio_hold_music_url: str = "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"
    twilio_api_url: str | None = Field(
        default=None, description="send Twilio REST calls to this base URL instead of Twilio's (tests, offline demo)"
    )
    twilio_max_param_chars: int = Field(default=4096, ge=64, description="a longer webhook parameter is refused (400)")
    twilio_callback_seconds: int = Field(
        default=120, ge=1, description="estimated handling time of a call ahead in line (wait estimates)"
    )

    # Social messaging (channels/social): Meta's Messenger, Instagram and WhatsApp Cloud API, Telegram bots
    meta_app_secret: SecretStr | None = Field(
        default=None, description="Meta app secret: checks X-Hub-Signature-256 on /webhooks/meta"
    )
    meta_verify_token: SecretStr | None = Field(
        default=None, description="The token Meta's webhook set-up sends (hub.verify_token) to GET /webhooks/meta"
    )
    meta_pages: list[MetaPageSettings] = Field(default_factory=list)
    whatsapp_numbers: list[WhatsAppNumberSettings] = Field(default_factory=list)
    telegram_bots: list[TelegramBotSettings] = Field(default_factory=list)
    meta_graph_url: str = Field(default="https://graph.facebook.com/v21.0", description="Graph API base URL")
    telegram_api_url: str = Field(default="https://api.telegram.org", description="Telegram Bot API base URL")
    # Approved templates agents may send outside a messaging window (hub.windows).
    whatsapp_templates: list[MessageTemplate] = Field(default_factory=list)
    # Deprecated names (removed once without an alias): read still, folded into whatsapp_templates, warned about
    # at start (``deprecations``). WhatsApp's window is 24 hours by its own rule, so the hours are ignored.
    twilio_whatsapp_templates: list[LegacyWhatsAppTemplate] = Field(
        default_factory=list, description="deprecated: use SWITCHBOARD_WHATSAPP_TEMPLATES"
    )
    twilio_whatsapp_window_hours: int | None = Field(
        default=None, ge=1, description="deprecated and ignored: WhatsApp's window is always 24 hours"
    )
    # A configured account none of whose webhooks arrived for this long is reported silent (0: never).
    social_silence_seconds: float = Field(default=0.0, ge=0)
    social_max_webhook_bytes: int = Field(default=1_048_576, ge=1024)
    social_send_timeout_seconds: float = Field(default=20.0, gt=0)
    # How long a webhook waits for its messages' files (fetched before the messages are stored).
    social_media_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long a webhook waits for its batch to be processed before it answers that the batch is queued (kept in
    # the inbox, ``channels.social.inbox``; processed all the same). 0: always answer at once.
    social_webhook_answer_seconds: float = Field(default=0.05, ge=0, le=60)
    # Batches of the inbox one process processes at once (the others wait in the table, oldest first).
    social_inbox_workers: int = Field(default=2, ge=1, le=64)
    mermaid_js: Path | None = Field(
        default=None, description="a copy of mermaid.min.js the hub serves to draw the IVR flows on /admin/phone"
    )

    # Knowledge base (knowledge_base/)
    kb_embedder: Literal["auto", "use", "minilm", "wordllama", "none"] = Field(
        default="auto",
        description="sentence embedder for ranking articles: auto = the best installed (minilm with the "
        "[semantic] extra, else use); none = words alone",
    )
    kb_suggestions: int = Field(default=5, ge=1, le=20, description="articles suggested per conversation")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """The async driver Switchboard runs on, filled in when the URL names none (``sqlite:///path``,
        ``postgresql://...``, or ``postgres://...`` as hosting platforms write it); another driver or database
        is refused with what to write instead."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"not a database URL; {_DATABASE_URL_FORMS}") from None
        driver = _ASYNC_DRIVERS.get(url.drivername, url.drivername)
        if driver not in _ASYNC_DRIVERS.values():
            raise ValueError(f"Switchboard does not run on {url.drivername!r}; {_DATABASE_URL_FORMS}")
        if driver == url.drivername:
            return value
        return url.set(drivername=driver).render_as_string(hide_password=False)

    @field_validator("chat_prechat_fields")
    @classmethod
    def _prechat_fields_known(cls, fields: list[str]) -> list[str]:
        unknown = [f for f in fields if f not in PRECHAT_FIELDS]
        if unknown:
            known = ", ".join(PRECHAT_FIELDS)
            raise ValueError(f"unknown pre-chat field {', '.join(unknown)}; the widget's form has {known}")
        return fields

    @field_validator("chat_prechat_required")
    @classmethod
    def _prechat_required_shown(cls, required: list[str], info: ValidationInfo) -> list[str]:
        """A required field must be one the form shows, or every chat would be refused for lacking it."""
        shown = info.data.get("chat_prechat_fields")
        missing = [f for f in required if shown is not None and f not in shown]
        if missing:
            listed = ", ".join(shown or []) or "none"
            raise ValueError(f"{', '.join(missing)} is not among SWITCHBOARD_CHAT_PRECHAT_FIELDS ({listed})")
        return required

    @field_validator("metrics_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or network (write 10.0.0.0/8 or 192.0.2.7)") from None
        return value

    @field_validator("meta_graph_url", "telegram_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _legacy_templates(self) -> Settings:
        """The templates of SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES join SWITCHBOARD_WHATSAPP_TEMPLATES (a name and
        language both give: the new setting's wins)."""
        have = {(t.name, t.language) for t in self.whatsapp_templates}
        for legacy in self.twilio_whatsapp_templates:
            template = legacy.current()
            if (template.name, template.language) not in have:
                have.add((template.name, template.language))
                self.whatsapp_templates.append(template)
        return self

    def deprecations(self) -> list[str]:
        """What the start logs about deprecated settings still in use."""
        found = []
        if self.twilio_whatsapp_templates:
            found.append(
                "SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES is deprecated: its templates were read as "
                "SWITCHBOARD_WHATSAPP_TEMPLATES (name, language, body, content_sid); move them there"
            )
        if self.twilio_whatsapp_window_hours is not None:
            found.append(
                "SWITCHBOARD_TWILIO_WHATSAPP_WINDOW_HOURS is deprecated and ignored: WhatsApp's window is always "
                f"24 hours (it was set to {self.twilio_whatsapp_window_hours}); remove it"
            )
        return found

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


PRECHAT_FIELDS = ("name", "email")  # what the chat widget's pre-chat form can ask
_DATABASE_URL_FORMS = "use sqlite+aiosqlite:///path/to/file.db or postgresql+asyncpg://user:password@host:5432/db"
# The URL schemes accepted for a database, and the async driver each runs on.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
