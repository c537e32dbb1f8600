"""The demo's stand-in for the social providers' send APIs (Meta's Graph API, Telegram's Bot API): a local HTTP
server that keeps every call it is handed as a file and answers as the providers do when a message is accepted,
so `switchboard demo` shows the agent's social replies (``/demo/social``) without sending anything anywhere. It is
to the social channels what ``hub.mail_catcher`` is to email.

``ApiCatcher(directory).start()`` listens on 127.0.0.1 on a free port (``.url``) in a thread of its own;
``read_calls(directory)`` answers what it caught, oldest first. Each call is one JSON file
(``<time>-<n>.json``: n, method, path, query, the JSON body or the form's text fields and file names).

One answer fits every send call the hub makes: it carries the id each provider's answer is read for (Telegram's
``result.message_id``, WhatsApp's ``messages[0].id``, Messenger's ``message_id``, a comment's ``id``).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CALLS_LIMIT = 500  # calls read_calls answers, the newest
BODY_LIMIT = 20 * 1024 * 1024  # a bigger request is answered 413 and not kept


def _answer(n: int) -> dict[str, Any]:
    return {
        "ok": True,
        "result": {"message_id": n},
        "messaging_product": "whatsapp",
        "messages": [{"id": f"wamid.demo{n}"}],
        "message_id": f"m_demo{n}",
        "id": f"demo{n}",
    }


def _body_of(content_type: str, body: bytes) -> dict[str, Any]:
    """What a call carried: its JSON, or a form's text fields and the names of its files."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            return {"json": json.loads(body)}
        except ValueError:
            return {"json": None}
    if kind == "application/x-www-form-urlencoded":
        return {"form": dict(parse_qsl(body.decode("utf-8", "replace")))}
    if kind == "multipart/form-data":
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
        )
        form: dict[str, str] = {}
        files: list[str] = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition") or ""
            filename = part.get_filename()
            if filename:
                files.append(str(filename))
            else:
                payload = part.get_payload(decode=True)
                form[str(name)] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
        return {"form": form, "files": files}
    return {}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _keep(self, body: bytes) -> None:
        parts = urlsplit(self.path)
        n = next(self.server.counter)
        call = {
            "n": n,  # the answer's ids end with it (``_answer``): a WhatsApp upload's media id names its file
            "at": time.time(),
            "method": self.command,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            **_body_of(self.headers.get("Content-Type", ""), body),
        }
        path = self.server.directory / f"{time.time_ns()}-{n}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(call))
        tmp.rename(path)  # whole files only: the page never reads half a call
        self._json(200, _answer(n))

    def _json(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        size = int(self.headers.get("Content-Length") or 0)
        if size > BODY_LIMIT:
            self._json(413, {"ok": False, "error": {"message": "too large for the demo's catcher"}})
            return
        self._keep(self.rfile.read(size))

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        """Lookups (a profile's name, a file): answered with the id alone, so the hub shows what it has."""
        self._json(200, {"id": urlsplit(self.path).path.rsplit("/", 1)[-1]})

    def log_message(self, *args: Any) -> None:
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], directory: Path) -> None:
        super().__init__(address, _Handler)
        self.directory = directory
        self.counter = itertools.count(1)


class ApiCatcher:
    """An HTTP server on 127.0.0.1 that keeps the provider API calls it receives in ``directory`` (see the
    module docstring)."""

    def __init__(self, directory: Path, *, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.host = host
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the API catcher has not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> ApiCatcher:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._server = _Server((self.host, 0), self.directory)
        self._thread = threading.Thread(target=self._server.serve_forever, name="api-catcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def read_calls(directory: Path | None, *, limit: int = CALLS_LIMIT) -> list[dict[str, Any]]:
    """The calls the catcher kept in ``directory``, oldest first (the newest ``limit``); none without one."""
    if directory is None or not directory.is_dir():
        return []
    names = sorted(directory.glob("*.json"), key=lambda p: tuple(int(x) for x in p.stem.split("-")))[-limit:]
    calls = []
    for path in names:
        try:
            calls.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # removed or unreadable meanwhile
    return calls
