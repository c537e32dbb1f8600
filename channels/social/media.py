"""What Meta takes of a reply's files, sans I/O: the WhatsApp Cloud API's message type for a file and the
types and sizes it refuses, the Messenger Send API's attachment type, and why Instagram and comment replies
carry none. The senders (``service.SocialService.send_*``) check every file of a reply here before their
first call, so a reply with one file the provider cannot take is refused whole, with the reason, and nothing
of it reaches the customer.

- WhatsApp (Cloud API, "supported media types"): images JPEG and PNG up to 5 MB; video MP4 and 3GPP up to
  16 MB; audio AAC, AMR, MP3, M4A and OGG (Opus) up to 16 MB; documents (PDF, plain text, Word, Excel,
  PowerPoint) up to 100 MB. WebP is taken as a sticker only and GIF not at all. An image, a video or a
  document may carry a caption (up to 1024 characters), audio none.
- Messenger (Send API, "saving assets"): an image, video, audio or file attachment up to 25 MB, uploaded with
  the message itself (multipart ``filedata``).
- Instagram messaging takes images only from a URL Meta fetches ("Upload media for Instagram messaging"), and
  replies to public comments carry text; our files are private (``hub.file_access``), so neither takes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

MB = 1024 * 1024
CAPTION_MAX = 1024  # WhatsApp's longest caption; a longer text goes as its own message
MESSENGER_MAX = 25 * MB

INSTAGRAM_NO_FILES = (
    "Instagram takes a message's files only as public links Meta downloads, and Switchboard keeps files private: "
    "send the reply without files (a link in the text works)"
)
COMMENTS_NO_FILES = "a reply to a public comment carries text only: send the reply without files"


class Unsendable(ValueError):
    """A file the provider cannot take; the message says which and why."""


@dataclass(frozen=True, slots=True)
class WhatsAppMedia:
    """How WhatsApp carries one content type: the message ``type`` and the largest file it takes."""

    kind: str  # image, video, audio or document
    limit: int

    @property
    def captioned(self) -> bool:
        return self.kind != "audio"


def _kinds(kind: str, limit: int, *types: str) -> dict[str, WhatsAppMedia]:
    return {t: WhatsAppMedia(kind, limit) for t in types}


WHATSAPP_TYPES: Mapping[str, WhatsAppMedia] = MappingProxyType(
    {
        **_kinds("image", 5 * MB, "image/jpeg", "image/png"),
        **_kinds("video", 16 * MB, "video/mp4", "video/3gpp"),
        **_kinds("audio", 16 * MB, "audio/aac", "audio/amr", "audio/mpeg", "audio/mp4", "audio/ogg"),
        **_kinds(
            "document",
            100 * MB,
            "application/pdf",
            "text/plain",
            "application/msword",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.ms-excel",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        ),
    }
)
_WHATSAPP_HINT = {
    "image/webp": "WhatsApp takes WebP only as a sticker: send it as PNG or JPEG",
    "image/gif": "WhatsApp does not take GIF images: send it as PNG or JPEG",
}


def _mb(size: int) -> str:
    return f"{size / MB:.1f} MB"


def bare_type(content_type: str) -> str:
    """``audio/ogg; codecs=opus`` -> ``audio/ogg``."""
    return content_type.split(";", 1)[0].strip().lower()


def whatsapp_media(filename: str, content_type: str, size: int) -> WhatsAppMedia:
    """How WhatsApp carries the file; ``Unsendable`` for a type or size it refuses."""
    media = WHATSAPP_TYPES.get(bare_type(content_type))
    if media is None:
        why = _WHATSAPP_HINT.get(bare_type(content_type), f"WhatsApp does not take {bare_type(content_type)} files")
        raise Unsendable(f"{filename!r} cannot go on WhatsApp: {why}")
    if size > media.limit:
        raise Unsendable(
            f"{filename!r} cannot go on WhatsApp: it is {_mb(size)}, and WhatsApp takes {media.kind} files up to "
            f"{_mb(media.limit)}"
        )
    return media


def messenger_type(filename: str, content_type: str, size: int) -> str:
    """The Send API's attachment type for the file (image, video, audio, file); ``Unsendable`` over 25 MB."""
    if size > MESSENGER_MAX:
        raise Unsendable(f"{filename!r} cannot go on Messenger: it is {_mb(size)}, and Messenger takes up to 25 MB")
    major = bare_type(content_type).partition("/")[0]
    return major if major in ("image", "video", "audio") else "file"
