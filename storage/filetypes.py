"""What a document is, from its first bytes (never from the client's header),
and whether its display name is acceptable."""

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class FileType:
    media_type: str
    extensions: tuple[str, ...]


PDF = FileType("application/pdf", (".pdf",))
JPEG = FileType("image/jpeg", (".jpg", ".jpeg"))
PNG = FileType("image/png", (".png",))
OFD = FileType("application/ofd", (".ofd",))
ALLOWED = (PDF, JPEG, PNG, OFD)
WEBM = FileType("video/webm", (".webm",))
RECORDING = (WEBM,)
"""What a recording is: never accepted from a participant's upload (ALLOWED)."""
SNIFF_BYTES = 1024
MAX_NAME_LENGTH = 255


class FileRejected(ValueError):
    """The file or its name is not accepted; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def sniff(head: bytes, allowed: tuple[FileType, ...] = ALLOWED) -> FileType | None:
    """The type of ``allowed`` these first bytes start, if any."""
    if WEBM in allowed:
        # EBML magic, and a Matroska document of the "webm" type.
        return WEBM if head.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in head[:64] else None
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    # OFD (GB/T 33190) is a ZIP package whose root holds OFD.xml.
    if head.startswith(b"PK\x03\x04") and b"OFD.xml" in head:
        return OFD
    return None


def check_name(name: str) -> str:
    """The display name, refused if it could be mistaken for a path or is unreadable."""
    if not name or len(name) > MAX_NAME_LENGTH:
        raise FileRejected("bad_name", f"a file name has 1 to {MAX_NAME_LENGTH} characters")
    if any(c in name for c in "/\\\x00") or name in (".", ".."):
        raise FileRejected("bad_name", "a file name may not contain path separators or NUL")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        raise FileRejected("bad_name", "a file name may not contain control characters")
    return unicodedata.normalize("NFC", name.strip())


def check_type(name: str, head: bytes, allowed: tuple[FileType, ...] = ALLOWED) -> FileType:
    """The type the content really has, if allowed and matching the name's extension."""
    found = sniff(head[:SNIFF_BYTES], allowed)
    if found is None:
        raise FileRejected("unsupported_type", "only PDF, JPEG, PNG and OFD documents are accepted")
    lowered = name.lower()
    if not any(lowered.endswith(ext) for ext in found.extensions):
        raise FileRejected(
            "type_mismatch", f"the content is {found.media_type}, which the name does not say"
        )
    return found
