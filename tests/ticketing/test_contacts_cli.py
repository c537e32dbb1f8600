"""``switchboard contacts dedupe`` and ``switchboard contacts export ID`` on the demo's data, both databases."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from hub.files import FileStore
from hub.messages import Attachment, Identity, InboundMessage
from hub.runtime import Runtime
from ticketing.demo import seed
from ticketing.ingest import ingest_batch

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


async def test_dedupe_lists_the_demo_maria_and_export_writes_her_data(rt: Runtime, tmp_path: Path) -> None:
    """The demo's two Marias (email; phone) are one pair in the review list, with a link to review them; the
    export of the email Maria holds her ticket, message and an attachment's bytes."""
    files = tmp_path / "files"
    await seed(rt)
    sha = FileStore(files).put(b"label photo bytes")
    await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<photo@x>",
                sender=Identity(kind="email", value="maria.garcia@example.com"),
                subject="Photo",
                text="here is the label",
                attachments=[Attachment(filename="label.jpg", content_type="image/jpeg", size=17, sha256=sha)],
            )
        ],
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {
        "SWITCHBOARD_DATABASE_URL": rt.settings.database_url,
        "SWITCHBOARD_ATTACHMENT_DIR": str(files),
        "SWITCHBOARD_PUBLIC_URL": "http://hub.test",
        "PYTHONPATH": str(ROOT),
    }
    done = await asyncio.to_thread(cli, "contacts", "dedupe", "--out", "review.csv", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "1 possible duplicate pairs written to review.csv" in done.stdout
    with (tmp_path / "review.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert rows[0]["contact_name"] == rows[0]["other_name"] == "Maria Garcia"
    assert "same name" in rows[0]["reasons"]
    assert rows[0]["review"] == f"http://hub.test/console/contacts/{rows[0]['contact_id']}"
    assert "comparing" in done.stderr  # the progress bar

    email_maria = min(int(rows[0]["contact_id"]), int(rows[0]["other_id"]))
    done = await asyncio.to_thread(
        cli, "contacts", "export", str(email_maria), "--out", "m.json", cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "m.json").read_text())
    assert data["identities"][0]["value"] == "maria.garcia@example.com"
    texts = [m["text"] for t in data["tickets"] for m in t["messages"]]
    assert "here is the label" in texts
    assert base64.b64decode(data["attachments"][0]["base64"]) == b"label photo bytes"
    missing = await asyncio.to_thread(cli, "contacts", "export", "99999", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "contact 99999 does not exist" in missing.stderr
