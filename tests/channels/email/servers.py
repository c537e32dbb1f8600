"""Real mail servers for the email tests and the bench: Dovecot (IMAP) and aiosmtpd (SMTP) on 127.0.0.1.

Dovecot runs from Debian's ``dovecot-imapd`` with its own configuration in a temporary directory on a free
port: plaintext logins, a passwd-file with ``{PLAIN}`` passwords, maildirs under the temporary directory.
Nothing reaches the internet.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

DOVECOT = "/usr/sbin/dovecot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dovecot_available() -> bool:
    return Path(DOVECOT).exists()


_CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Tests log in with wrong passwords on purpose: no delay, no penalty for it.
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{base}/mail/%u
first_valid_uid = {uid}
first_valid_gid = {gid}
{users}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={base}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@dataclass
class Dovecot:
    """One Dovecot process serving IMAP on ``port`` for ``users`` (name → password). Its files live in a
    fresh directory directly under the system temp dir, which the unprivileged dovecot user can reach."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="switchboard-dovecot-")))
    users: dict[str, str] = field(default_factory=lambda: {"support": "secret"})
    port: int = field(default_factory=free_port)
    capability: str | None = None  # what the server announces after login (e.g. without IDLE)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        self.base.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "state", "mail"):
            (self.base / sub).mkdir(exist_ok=True)
        (self.base / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        if os.geteuid() == 0:
            # As root, logins run as dovenull and mail access as dovecot, which must own the maildirs.
            import pwd

            mail = pwd.getpwnam("dovecot")
            users = "default_login_user = dovenull\ndefault_internal_user = dovecot\n"
            uid, gid = mail.pw_uid, mail.pw_gid
            os.chmod(self.base, 0o755)
            for sub in ("mail",):
                shutil.chown(self.base / sub, mail.pw_uid, mail.pw_gid)
        else:
            users = f"default_login_user = {os.getlogin()}\ndefault_internal_user = {os.getlogin()}\n"
            uid, gid = os.getuid(), os.getgid()
        config = self.base / "dovecot.conf"
        text = _CONFIG.format(base=self.base, users=users, uid=uid, gid=gid, port=self.port)
        if self.capability:
            text += f"imap_capability = {self.capability}\n"
        config.write_text(text)
        # A process group of its own: stopping kills the login and mail processes too, at once.
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dovecot exited: {self.process.stderr.read().decode() if self.process.stderr else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"dovecot did not start; log:\n{self.log()}")

    def log(self) -> str:
        path = self.base / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)

    def kill(self) -> None:
        """Kill the server and every process it started (clients see their connections drop, as in a
        crash) but keep its mail, so ``start()`` brings the same mailboxes back."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None


async def imap_append(port: int, user: str, password: str, messages: Iterable[bytes], folder: str = "INBOX") -> None:
    """Seed mail the way a real MTA's delivery looks to a client: IMAP APPEND."""
    import asyncio

    import aioimaplib

    client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=30)
    async with asyncio.timeout(30):
        await client.wait_hello_from_server()
        response = await client.login(user, password)
        assert response.result == "OK", response
    for raw in messages:
        async with asyncio.timeout(30):
            response = await client.append(raw, mailbox=folder)
        assert response.result == "OK", response
    async with asyncio.timeout(10):
        await client.logout()


@dataclass
class Captured:
    sender: str
    recipients: list[str]
    data: bytes


class RecordingHandler:
    """An aiosmtpd handler that records every accepted message and can refuse on demand."""

    def __init__(self) -> None:
        self.messages: list[Captured] = []
        self.refuse_with: str | None = None  # e.g. "550 5.1.1 no such user"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_with:
            return self.refuse_with
        data = envelope.original_content or b""
        self.messages.append(Captured(str(envelope.mail_from), [str(r) for r in envelope.rcpt_tos], bytes(data)))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a fixed free port; ``stop()`` then ``start()`` again simulates an outage."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
