"""Content-addressed file storage under ``attachment_dir``, shared by every channel: email attachments,
inline images and raw messages, chat widget uploads.

A file's name is the SHA-256 of its bytes (``root/ab/cd/abcd…``), so the same attachment received twice is
stored once and a re-fetched message finds its files already there. Files are written to a temporary name and
renamed, so a reader never sees half a file; they are written before the database commit that refers to them.

Who may read a stored file is decided by the messages that carry it (``hub.file_access``): ``carried_files``
says which files a message carries, and the core records them as it stores the message.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_SHA = re.compile(r"^[0-9a-f]{64}$")


# Message metadata keys whose value is a stored file of that message (an email's raw bytes, under the email
# channel's ``raw_sha256``). A channel that keeps another file of a message in its metadata adds its key here.
FILE_METADATA_KEYS = ("raw_sha256",)


def is_sha256(value: object) -> bool:
    """Whether ``value`` names a stored file (64 lower-case hex digits)."""
    return isinstance(value, str) and _SHA.match(value) is not None


def carried_files(attachments: Iterable[Mapping[str, Any]] | None, metadata: Mapping[str, Any] | None) -> set[str]:
    """The stored files a message carries: its attachments' (and inline images') ``sha256``, and its metadata's
    ``FILE_METADATA_KEYS``. Malformed entries are none."""
    found: list[object] = [a.get("sha256") for a in attachments or () if isinstance(a, Mapping)]
    if metadata:
        found.extend(metadata.get(key) for key in FILE_METADATA_KEYS)
    return {sha for sha in found if isinstance(sha, str) and is_sha256(sha)}


# File types people send each other in a conversation, recognized by their first bytes, never by their name or
# declared type: (magic, offset, content type).
SAFE_TYPES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and a length
)


def sniff_safe_type(head: bytes) -> str | None:
    """The type of a file by its first bytes (16 are enough), when it is one of ``SAFE_TYPES``; else None."""
    for magic, offset, content_type in SAFE_TYPES:
        if head[offset : offset + len(magic)] == magic and (content_type != "image/webp" or head[:4] == b"RIFF"):
            return content_type
    return None


class StoredFileMissing(Exception):
    pass


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise StoredFileMissing(f"{sha256!r} is not a SHA-256")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data``; its SHA-256 (hex)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists():
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise StoredFileMissing(f"no stored file {sha256}") from None

    def head(self, sha256: str, n: int) -> bytes:
        """The first ``n`` bytes of a stored file."""
        try:
            with self.path(sha256).open("rb") as f:
                return f.read(n)
        except FileNotFoundError:
            raise StoredFileMissing(f"no stored file {sha256}") from None

    def size(self, sha256: str) -> int:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            raise StoredFileMissing(f"no stored file {sha256}") from None
