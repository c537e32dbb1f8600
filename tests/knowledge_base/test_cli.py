"""`switchboard kb import|export|eval` as a user runs them: a folder round-trips, a malformed file is named with
its line and skipped while the rest is imported, re-importing records versions, and eval prints JSON."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from hub.config import Settings
from hub.runtime import Runtime
from knowledge_base import service
from knowledge_base.demo import ARTICLES, TEST_SET
from knowledge_base.files import read_folder
from tests.hub.test_cli import run_cli


def env(settings: Settings) -> dict[str, str]:
    return {"SWITCHBOARD_DATABASE_URL": settings.database_url, "SWITCHBOARD_KB_EMBEDDER": "none"}


GOOD = """---
title: Reset your password
category: Account
tags: [password]
status: published
phrasings:
  - I forgot my password
---
Choose **Forgot password?** on the sign-in page.
"""

BROKEN_YAML = """---
title: Broken
category: Account
tags: [unclosed
status: published
---
Body
"""

BAD_STATUS = """---
title: Bad status
category: Account
status: secret
---
Body
"""


async def test_import_reports_a_malformed_file_with_its_line_and_imports_the_rest(
    settings: Settings, rt: Runtime, tmp_path: Path
) -> None:
    """Two bad files (invalid YAML, an unknown status) are each reported with file name and line and skipped;
    the good one is imported; the exit code says something was skipped."""
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "reset-password.md").write_text(GOOD)
    (folder / "broken.md").write_text(BROKEN_YAML)
    (folder / "bad-status.md").write_text(BAD_STATUS)
    result = run_cli("kb", "import", str(folder), cwd=tmp_path, env=env(settings))
    assert result.returncode == 1, result.stderr
    assert "skipped broken.md:4:" in result.stderr or "skipped broken.md:5:" in result.stderr
    assert "skipped bad-status.md:4: status:" in result.stderr
    assert "1 created" in result.stdout and "2 files skipped" in result.stdout
    articles = await service.all_articles(rt)
    assert [(a.slug, a.title) for a in articles] == [("reset-password", "Reset your password")]


async def test_reimport_updates_by_slug_and_records_a_version(settings: Settings, rt: Runtime, tmp_path: Path) -> None:
    """Importing the same folder again changes nothing; an edited file becomes version 2 of its article."""
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "reset-password.md").write_text(GOOD)
    assert run_cli("kb", "import", str(folder), cwd=tmp_path, env=env(settings)).returncode == 0
    again = run_cli("kb", "import", str(folder), cwd=tmp_path, env=env(settings))
    assert "1 unchanged" in again.stdout
    (folder / "reset-password.md").write_text(GOOD.replace("sign-in page", "login page"))
    edited = run_cli("kb", "import", str(folder), cwd=tmp_path, env=env(settings))
    assert "1 updated" in edited.stdout, edited.stdout + edited.stderr
    (article,) = await service.all_articles(rt)
    versions = await service.list_versions(rt, article_id=article.id)
    assert [v.version for v in versions] == [2, 1]
    assert "login page" in versions[0].body and "sign-in page" in versions[1].body
    assert {v.source for v in versions} == {"import"}


def test_import_draws_a_progress_bar_on_a_terminal(settings: Settings, tmp_path: Path) -> None:
    """Run from a terminal, `kb import` shows its progress: a bar with the count of files done, up to all."""
    folder = tmp_path / "kb"
    folder.mkdir()
    for n in range(3):
        (folder / f"reset-password-{n}.md").write_text(GOOD)
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "kb", "import", str(folder)],
        cwd=tmp_path,
        env={**os.environ, **env(settings), "TERM": "xterm"},
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal closed: the command has exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert proc.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert re.search(r"importing\s+\[#+\]\s+3/3", text), text
    assert "3 created" in text


async def test_export_then_import_round_trips_every_article(settings: Settings, rt: Runtime, tmp_path: Path) -> None:
    """The demo folder (every status, translations in locale folders) imported, exported, and read back gives
    the same articles, field for field."""
    assert run_cli("kb", "import", str(ARTICLES), cwd=tmp_path, env=env(settings)).returncode == 0
    out = tmp_path / "exported"
    exported = run_cli("kb", "export", str(out), cwd=tmp_path, env=env(settings))
    assert exported.returncode == 0, exported.stderr
    original, _ = read_folder(ARTICLES)
    back, problems = read_folder(out)
    assert problems == []
    assert sorted((f.path.relative_to(out).as_posix(), f.article) for f in back) == sorted(
        (f.path.relative_to(ARTICLES).as_posix(), f.article) for f in original
    )
    assert (out / "de" / "return-an-item.md").exists()


def test_eval_json_gives_both_rankings_as_fractions(tmp_path: Path) -> None:
    """`kb eval FILE --json --articles DIR` prints one JSON object with top1, top3 and mrr in [0, 1] for
    Switchboard's ranking and for BM25, and words alone already beat BM25 on the sample set."""
    result = run_cli(
        "kb", "eval", str(TEST_SET), "--json", "--articles", str(ARTICLES), "--embedder", "none", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures) == {"switchboard", "bm25"}
    for scores in figures.values():
        assert set(scores) == {"top1", "top3", "mrr"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert figures["switchboard"]["top1"] > figures["bm25"]["top1"]


def test_eval_refuses_a_malformed_file_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "where is it", "expected": "track-your-order"}\n{"query": 3}\n')
    result = run_cli("kb", "eval", str(bad), "--articles", str(ARTICLES), "--embedder", "none", cwd=tmp_path)
    assert result.returncode == 2
    assert "bad.jsonl:2:" in result.stderr
