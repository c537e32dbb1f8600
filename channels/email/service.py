"""The email channel's running part and its admin actions.

``EmailService`` runs one ``MailboxWorker`` per mailbox (from ``SWITCHBOARD_MAILBOXES`` and from the admin
API). On PostgreSQL each worker first takes a session advisory lock on a connection of its own, so with
several processes each mailbox is fetched by exactly one of them; the lock connection is pinged and, if it
drops, the worker stops until it wins the election again. On SQLite (one process) workers just run. A
mailbox that fails only retries itself.

After a mail creates a ticket, the channel may acknowledge it (``SWITCHBOARD_EMAIL_ACK_QUEUES``), never for
automatic, list, bulk or bounce mail nor our own, and at most ``email_auto_reply_limit`` times per recipient
per ``email_auto_reply_window_seconds``. The rate-limit row commits before sending, so a crash can lose an
acknowledgement but never repeat it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, text, update

from channels.email.imap import MailboxWorker, lock_key
from channels.email.models import AR, MB, QT, MailboxRead, MailboxUpdate, QuarantineRead, ReprocessResult, S
from channels.email.parse import MailboxInfo, MailParseError, ParsedMail, parse_mail
from channels.email.smtp import ReplyHeaders, SmtpSender, Templates, build_ack, deliver, outgoing_mailbox
from hub import audit
from hub.config import MailboxSettings
from hub.db import lock_keys, taken_as, utcnow
from hub.errors import Conflict, InvalidInput, NotFound
from hub.files import FileStore, StoredFileMissing
from hub.messages import Ingest, IngestResult, ReplyHook, Sender
from hub.principals import Principal
from hub.runtime import Runtime
from hub.sealing import SealedUnreadable, Sealer, is_sealed
from hub.workers import cancel_and_wait

log = logging.getLogger(__name__)

QUOTE_MAX_CHARS = 20_000


class QuarantineNotFound(NotFound):
    code = "quarantine_not_found"


class MailboxNotFound(NotFound):
    code = "mailbox_not_found"


AUTO_REPLY_LOCK_SPACE = 0xA2E9  # names the locks (``hub.db.lock_keys``) on a recipient's automatic-reply count


class MailboxNameTaken(Conflict):
    code = "mailbox_name_taken"


class MailboxReadOnly(Conflict):
    code = "mailbox_from_settings"


class InvalidMailbox(InvalidInput):
    code = "invalid_mailbox"


class AttachmentNotFound(NotFound):
    code = "attachment_not_found"


class _Running:
    def __init__(self, box: MailboxSettings, worker: MailboxWorker, task: asyncio.Task[None]) -> None:
        self.box = box
        self.worker = worker
        self.task = task


class EmailService:
    """IMAP workers, the SMTP sender, acknowledgements, quarantine and mailbox administration."""

    def __init__(self, rt: Runtime, ingest: Ingest) -> None:
        self.rt = rt
        self.ingest = ingest
        self.tickets = rt.ports.tickets
        s = rt.settings
        self.store = FileStore(s.attachment_dir)
        self.sealer = Sealer(s.secret_key.get_secret_value())
        self.templates = Templates(s.email_templates_dir)
        self.reply_headers = ReplyHeaders(s.mail_domain)
        self.sender = SmtpSender(
            mailboxes=lambda: self._boxes,
            templates=self.templates,
            domain=s.mail_domain,
            timeout=s.email_timeout_seconds,
            quote=self._quote,
            outgoing=outgoing_mailbox(s),
            files=self.store.get,
        )
        self._boxes: dict[str, MailboxSettings] = {b.name: b for b in s.mailboxes}
        self._from_settings = {b.name for b in s.mailboxes}
        # Stored mailboxes whose passwords the current secret key cannot open: listed with the error, not run.
        self._unreadable: dict[str, tuple[MailboxSettings, str]] = {}
        self._running: dict[str, _Running] = {}
        self._acks: set[asyncio.Task[None]] = set()
        self._resync: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()

    @property
    def senders(self) -> dict[str, Sender]:
        return {"email": self.sender}

    @property
    def reply_hooks(self) -> dict[str, ReplyHook]:
        return {"email": self.reply_headers}

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.sync()
        self._resync = asyncio.create_task(self._resync_loop(), name="email-mailbox-resync")

    async def stop(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        for name in list(self._running):
            await self._stop_worker(name)
        if self._acks:
            await asyncio.wait(list(self._acks), timeout=5)
            for task in self._acks:
                task.cancel()

    async def _resync_loop(self) -> None:
        # Mailboxes changed through another process's API reach this one within a few seconds.
        while True:
            await asyncio.sleep(max(1.0, self.rt.settings.email_election_seconds))
            try:
                await self.sync()
            except Exception:
                log.exception("email: reloading mailboxes failed")

    async def sync(self) -> None:
        """Run exactly the configured mailboxes, restarting those whose configuration changed."""
        async with self._sync_lock:
            wanted = {b.name: b for b in self.rt.settings.mailboxes}
            for name, box in (await self._db_mailboxes()).items():
                wanted.setdefault(name, box)
            self._boxes = wanted
            for name in list(self._running):
                if name not in wanted or self._running[name].box != wanted[name]:
                    await self._stop_worker(name)
            for name, box in wanted.items():
                if name not in self._running:
                    self._start_worker(box)

    async def _db_mailboxes(self) -> dict[str, MailboxSettings]:
        async with self.rt.read() as conn:
            rows = (await conn.execute(select(MB.c.id, MB.c.name, MB.c.config).order_by(MB.c.id))).all()
        out = {}
        unreadable = {}
        for id_, name, config in rows:
            try:
                out[name] = MailboxSettings.model_validate({**self._opened(config), "name": name})
            except SealedUnreadable as exc:
                log.error("email: mailbox %s: %s (PATCH /api/email/mailboxes/%s with its passwords)", name, exc, name)
                shown = {**config, "name": name, "password": "-", "smtp_password": None}
                unreadable[name] = (MailboxSettings.model_validate(shown), f"{exc}: give its passwords again")
                continue
            except ValidationError:
                log.exception("email: stored mailbox %s is invalid", name)
                continue
            if any(config.get(k) and not is_sealed(config[k]) for k in _SECRETS):
                # Stored before passwords were sealed: seal them now.
                async with self.rt.db.begin() as conn:
                    await conn.execute(update(MB).where(MB.c.id == id_).values(config=self._stored(out[name])))
        self._unreadable = unreadable
        return out

    def _stored(self, box: MailboxSettings) -> dict[str, Any]:
        """A mailbox as stored: its passwords sealed."""
        data = box.model_dump(mode="json", exclude={"name"})
        data["password"] = self.sealer.seal(box.password.get_secret_value())
        data["smtp_password"] = self.sealer.seal(box.smtp_password.get_secret_value()) if box.smtp_password else None
        return data

    def _opened(self, config: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
        """A stored mailbox with its passwords opened (raises ``SealedUnreadable``); ``keep``: passwords that
        are about to be replaced, so need not be opened."""
        return {k: (self.sealer.open(v) if k in _SECRETS and v and k not in keep else v) for k, v in config.items()}

    def _start_worker(self, box: MailboxSettings) -> None:
        worker = MailboxWorker(
            box,
            rt=self.rt,
            ingest=self.ingest,
            store=self.store,
            own_addresses=lambda: [b.address for b in self._boxes.values()],
            on_ingested=self._after_ingest,
        )
        task = asyncio.create_task(self._elected(worker), name=f"email-mailbox-{box.name}")
        self._running[box.name] = _Running(box, worker, task)

    async def _stop_worker(self, name: str) -> None:
        running = self._running.pop(name, None)
        if running is None:
            return
        await cancel_and_wait(running.task)

    def worker(self, name: str) -> MailboxWorker | None:
        running = self._running.get(name)
        return running.worker if running else None

    async def _elected(self, worker: MailboxWorker) -> None:
        if self.rt.db.is_sqlite:
            await worker.run()
            return
        key = lock_key(worker.box.name)
        interval = self.rt.settings.email_election_seconds
        while True:
            try:
                async with self.rt.db.engine.connect() as conn:
                    won = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
                    await conn.commit()
                    if won:
                        try:
                            await self._lead(worker, conn, interval)
                        finally:
                            await _unlock(conn, key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("mailbox %s: leader election: %s", worker.box.name, exc)
            await asyncio.sleep(interval)

    async def _lead(self, worker: MailboxWorker, conn: Any, interval: float) -> None:
        task = asyncio.create_task(worker.run(), name=f"email-imap-{worker.box.name}")
        try:
            while not task.done():
                await asyncio.wait([task], timeout=interval)
                # The lock lives as long as this connection: if it is gone, so is our right to fetch.
                await conn.execute(text("SELECT 1"))
                await conn.commit()
        finally:
            await cancel_and_wait(task)

    async def _quote(self, message_id: str) -> dict[str, Any] | None:
        """The stored email a reply answers, to quote under it (asked of the core's ``TicketPort``)."""
        stored = await self.tickets.message_by_external_id(channel="email", external_id=message_id)
        if stored is None:
            return None
        return {
            "text": stored.text[:QUOTE_MAX_CHARS],
            "sender": stored.sender,
            "date": stored.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        }

    # --- acknowledgements --------------------------------------------------------------------------------

    def _after_ingest(self, box: MailboxSettings, parsed: ParsedMail, result: IngestResult) -> None:
        queues = self.rt.settings.email_ack_queues
        if not result.ticket_created or parsed.automatic or parsed.bounce:
            return
        if "*" not in queues and (parsed.message.queue or "") not in queues:
            return
        task = asyncio.create_task(self._acknowledge(box, parsed, result))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _acknowledge(self, box: MailboxSettings, parsed: ParsedMail, result: IngestResult) -> None:
        try:
            await self._send_ack(box, parsed, result)
        except Exception:
            log.exception("email: acknowledging ticket %s failed", result.ticket_id)

    async def _send_ack(self, box: MailboxSettings, parsed: ParsedMail, result: IngestResult) -> None:
        recipient = parsed.message.sender.value.lower()
        if not await self.take_auto_reply_slot(recipient, result.ticket_id):
            log.info("email: no acknowledgement to %s: rate limit reached", recipient)
            return
        msg = build_ack(
            box=box,
            recipient=recipient,
            name=parsed.message.sender.name,
            subject=parsed.message.subject,
            ticket_id=result.ticket_id,
            in_reply_to=parsed.message.external_id,
            templates=self.templates,
            domain=self.rt.settings.mail_domain,
        )
        try:
            await deliver(box, msg, timeout_seconds=self.rt.settings.email_timeout_seconds)
        except Exception as exc:
            log.warning("email: acknowledgement of ticket %s to %s failed: %s", result.ticket_id, recipient, exc)

    async def take_auto_reply_slot(self, recipient: str, ticket_id: int | None) -> bool:
        """Record one automatic reply to ``recipient`` unless the per-recipient limit is reached."""
        s = self.rt.settings
        now = utcnow()
        since = now - timedelta(seconds=s.email_auto_reply_window_seconds)
        async with self.rt.db.begin() as conn:
            # One count-then-insert per recipient at a time: two acknowledgements at once (two mails, two
            # processes) would both count under the limit and both send.
            await lock_keys(conn, AUTO_REPLY_LOCK_SPACE, [recipient])
            sent = (
                await conn.execute(
                    select(func.count()).select_from(AR).where(AR.c.recipient == recipient, AR.c.sent_at > since)
                )
            ).scalar_one()
            if sent >= s.email_auto_reply_limit:
                return False
            await conn.execute(AR.insert().values(recipient=recipient, ticket_id=ticket_id, sent_at=now))
        return True

    # --- quarantine ----------------------------------------------------------------------------------------

    async def list_quarantine(self, *, include_reprocessed: bool = False, limit: int = 100) -> list[QuarantineRead]:
        """Mails that could not become messages, newest first."""
        stmt = select(QT).order_by(QT.c.id.desc()).limit(limit)
        if not include_reprocessed:
            stmt = stmt.where(QT.c.reprocessed_at.is_(None))
        async with self.rt.read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [QuarantineRead.model_validate(r._mapping) for r in rows]

    async def quarantined_raw(self, quarantine_id: int) -> bytes:
        async with self.rt.read() as conn:
            row = (await conn.execute(select(QT).where(QT.c.id == quarantine_id))).first()
        if row is None:
            raise QuarantineNotFound(f"quarantined mail {quarantine_id} does not exist")
        try:
            return await asyncio.to_thread(self.store.get, row.raw_sha256)
        except StoredFileMissing:
            raise QuarantineNotFound(f"the raw bytes of quarantined mail {quarantine_id} are gone") from None

    async def reprocess(self, quarantine_id: int) -> ReprocessResult:
        """Try a quarantined mail again (after a fix, or with a raised limit); it becomes a message or stays."""
        async with self.rt.read() as conn:
            row = (await conn.execute(select(QT).where(QT.c.id == quarantine_id))).first()
        if row is None:
            raise QuarantineNotFound(f"quarantined mail {quarantine_id} does not exist")
        raw = await self.quarantined_raw(quarantine_id)
        box = self._boxes.get(row.mailbox)
        info = MailboxInfo(row.mailbox, box.address if box else "", box.queue if box else None)
        s = self.rt.settings
        try:
            parsed = await asyncio.to_thread(
                parse_mail,
                raw,
                mailbox=info,
                store=self.store,
                own_domain=s.mail_domain,
                own_addresses=[b.address for b in self._boxes.values()],
                max_bytes=s.email_max_message_bytes,
                max_attachment_bytes=s.attachment_max_bytes,
            )
            result = await self.ingest(parsed.message)
        except Exception as exc:  # a parse failure, or ingest refusing it: it stays in quarantine
            error = str(exc) if isinstance(exc, MailParseError) else f"{type(exc).__name__}: {exc}"
            async with self.rt.db.begin() as conn:
                await conn.execute(update(QT).where(QT.c.id == quarantine_id).values(error=error[:2000]))
            return ReprocessResult(quarantine_id=quarantine_id, ok=False, error=error)
        async with self.rt.db.begin() as conn:
            await conn.execute(
                update(QT)
                .where(QT.c.id == quarantine_id)
                .values(reprocessed_at=utcnow(), message_id=result.message_id, error="")
            )
        return ReprocessResult(
            quarantine_id=quarantine_id, ok=True, message_id=result.message_id, ticket_id=result.ticket_id
        )

    # --- attachments ------------------------------------------------------------------------------------

    async def attachment(self, sha256: str) -> bytes:
        try:
            return await asyncio.to_thread(self.store.get, sha256)
        except StoredFileMissing:
            raise AttachmentNotFound(f"no attachment {sha256}") from None

    # --- mailbox administration ---------------------------------------------------------------------------

    async def list_mailboxes(self) -> list[MailboxRead]:
        async with self.rt.read() as conn:
            states = {r.mailbox: r for r in (await conn.execute(select(S))).all()}
        out = [
            MailboxRead.of(box, source="api", uidvalidity=None, last_uid=None, running=False, error=error)
            for box, error in self._unreadable.values()
        ]
        for name, box in self._boxes.items():
            state = states.get(name)
            running = self._running.get(name)
            out.append(
                MailboxRead.of(
                    box,
                    source="settings" if name in self._from_settings else "api",
                    uidvalidity=state.uidvalidity if state else None,
                    last_uid=state.last_uid if state else None,
                    running=bool(running and running.worker.connected),
                    error=running.worker.last_error if running else None,
                )
            )
        return out

    async def get_mailbox(self, name: str) -> MailboxRead:
        for box in await self.list_mailboxes():
            if box.name == name:
                return box
        raise MailboxNotFound(f"mailbox {name!r} does not exist")

    async def create_mailbox(self, data: MailboxSettings, *, actor: Principal | None = None) -> MailboxRead:
        if data.name in self._from_settings:
            raise MailboxNameTaken(f"mailbox {data.name!r} is configured in SWITCHBOARD_MAILBOXES")
        now = utcnow()
        async with self.rt.db.begin() as conn:
            taken = MailboxNameTaken(f"a mailbox named {data.name!r} exists")
            if (await conn.execute(select(MB.c.id).where(MB.c.name == data.name))).first():
                raise taken
            with taken_as(taken):
                await conn.execute(
                    MB.insert().values(name=data.name, config=self._stored(data), created_at=now, updated_at=now)
                )
            detail = data.model_dump(mode="json", exclude=set(_SECRETS))
            if actor is not None:
                await audit.record(
                    conn, actor=actor, action="mailbox.create", target=f"mailbox:{data.name}", detail=detail
                )
        await self.sync()
        return await self.get_mailbox(data.name)

    async def update_mailbox(self, name: str, data: MailboxUpdate, *, actor: Principal | None = None) -> MailboxRead:
        if name in self._from_settings:
            raise MailboxReadOnly(f"mailbox {name!r} is configured in SWITCHBOARD_MAILBOXES; change it there")
        async with self.rt.db.begin() as conn:
            row = (await conn.execute(select(MB).where(MB.c.name == name))).first()
            if row is None:
                raise MailboxNotFound(f"mailbox {name!r} does not exist")
            changes = {
                k: (getattr(data, k).get_secret_value() if k in ("password", "smtp_password") and v else v)
                for k, v in data.model_dump(exclude_unset=True).items()
            }
            try:
                stored = self._opened(row.config, keep=changes)
            except SealedUnreadable as exc:
                raise InvalidMailbox(f"{exc}: give password (and smtp_password if it has one)") from None
            try:
                box = MailboxSettings.model_validate({**stored, **changes, "name": name})
            except ValidationError as exc:
                raise InvalidMailbox(str(exc.errors()[0].get("msg"))) from None
            await conn.execute(
                update(MB).where(MB.c.id == row.id).values(config=self._stored(box), updated_at=utcnow())
            )
            # What changed, passwords only as "changed".
            given = data.model_dump(mode="json", exclude_unset=True)
            after = {k: ("changed" if k in _SECRETS else v) for k, v in given.items()}
            before = {k: stored.get(k) for k in after if k not in _SECRETS}
            if actor is not None:
                await audit.record(
                    conn,
                    actor=actor,
                    action="mailbox.update",
                    target=f"mailbox:{name}",
                    detail={"before": before, "after": after},
                )
        await self.sync()
        return await self.get_mailbox(name)

    async def delete_mailbox(self, name: str, *, actor: Principal | None = None) -> None:
        if name in self._from_settings:
            raise MailboxReadOnly(f"mailbox {name!r} is configured in SWITCHBOARD_MAILBOXES; remove it there")
        async with self.rt.db.begin() as conn:
            done = await conn.execute(MB.delete().where(MB.c.name == name))
            if not done.rowcount:
                raise MailboxNotFound(f"mailbox {name!r} does not exist")
            if actor is not None:
                await audit.record(conn, actor=actor, action="mailbox.delete", target=f"mailbox:{name}")
        await self.sync()


_SECRETS = ("password", "smtp_password")


async def _unlock(conn: Any, key: int) -> None:
    try:
        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        await conn.commit()
    except Exception:
        # A pooled connection must never keep the lock: drop it instead.
        with contextlib.suppress(Exception):
            await conn.invalidate()
