"""Which bytes of a document a GET's Range header asks for (RFC 9110, section 14).

A pure decision: the header and the document's size in, what to answer out.
Only one byte range is served. Everything a server may ignore is ignored, so
that the client gets the whole document (200) rather than an error it cannot
act on: a header that does not parse (``bytes=abc``, ``bytes=5-2``), another
unit than bytes, several ranges (no multipart/byteranges here). A range that
parses but asks for nothing inside the document (``bytes=500-`` of 100 bytes,
``bytes=-0``) is 416. A suffix longer than the document is the whole document.

aiohttp's ``request.http_range`` is not used: it turns ``bytes=-0`` into the
whole document and answers a header it cannot parse with ``ValueError``.
"""

import re
from dataclasses import dataclass

_FIRST_LAST = re.compile(r"([0-9]+)-([0-9]*)", re.ASCII)
_SUFFIX = re.compile(r"-([0-9]+)", re.ASCII)
# More digits than this is past the end of any document, however many follow: int()
# refuses more than 4,300 digits (ValueError) and a header may carry thousands.
_DIGITS_THAT_MATTER = 19
_PAST_ANY_DOCUMENT: int = 10**_DIGITS_THAT_MATTER


@dataclass(frozen=True)
class Whole:
    """Answer 200 with the whole document (no Range, or one to ignore)."""


@dataclass(frozen=True)
class Part:
    """Answer 206 with bytes [start, end)."""

    start: int
    end: int


@dataclass(frozen=True)
class Unsatisfiable:
    """Answer 416 (Content-Range: bytes */size)."""


RangeAnswer = Whole | Part | Unsatisfiable


def answer_range(header: str | None, size: int) -> RangeAnswer:
    """What to answer a Range header for a document of ``size`` bytes."""
    if header is None:
        return Whole()
    unit, equals, ranges = header.partition("=")
    # Range units are case-insensitive (RFC 9110, 14.1).
    if not equals or unit.strip().lower() != "bytes":
        return Whole()
    # A list allows empty elements and whitespace around its commas (RFC 9110, 5.6.1).
    specs = [spec.strip(" \t") for spec in ranges.split(",")]
    specs = [spec for spec in specs if spec]
    if len(specs) != 1:
        return Whole()
    (spec,) = specs
    if (found := _FIRST_LAST.fullmatch(spec)) is not None:
        first = _position(found.group(1))
        last = _position(found.group(2)) if found.group(2) else None
        if last is not None and last < first:
            return Whole()  # an invalid range-spec: the header is ignored
        if first >= size:
            return Unsatisfiable()
        return Part(first, size if last is None else min(last + 1, size))
    if (found := _SUFFIX.fullmatch(spec)) is not None:
        length = _position(found.group(1))
        if length == 0 or size == 0:
            return Unsatisfiable()
        return Part(max(0, size - length), size)
    return Whole()


def _position(digits: str) -> int:
    """A decimal position or length, capped above any document's size."""
    significant = digits.lstrip("0")
    if len(significant) > _DIGITS_THAT_MATTER:
        return _PAST_ANY_DOCUMENT
    return int(significant or "0")
