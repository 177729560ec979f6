"""Range headers as RFC 9110 says: what a server may ignore is ignored (the whole
document, 200), a range outside the document is 416, a long suffix is everything."""

import pytest

from web.byte_ranges import Part, RangeAnswer, Unsatisfiable, Whole, answer_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        (None, Whole()),
        # One range of bytes.
        ("bytes=0-99", Part(0, 100)),
        ("bytes=0-0", Part(0, 1)),
        ("bytes=999-999", Part(999, 1000)),
        ("bytes=100-", Part(100, 1000)),
        ("bytes=500-5000", Part(500, 1000)),
        ("bytes=0-99999999999999999999999999", Part(0, 1000)),
        # Numbers longer than int() reads (4,300 digits) mean the same as long ones.
        ("bytes=0-" + "9" * 5000, Part(0, 1000)),
        ("bytes=" + "0" * 5000 + "5-9", Part(5, 10)),
        ("bytes=-" + "9" * 5000, Part(0, 1000)),
        ("bytes=" + "9" * 5000 + "-", Unsatisfiable()),
        ("bytes=" + "9" * 5000 + "-" + "9" * 5001, Unsatisfiable()),
        ("bytes=-100", Part(900, 1000)),
        # A suffix longer than the document: the whole of it.
        ("bytes=-5000", Part(0, 1000)),
        ("bytes=-1000", Part(0, 1000)),
        # Units are case-insensitive; whitespace around the list's elements is allowed.
        ("Bytes=0-9", Part(0, 10)),
        ("BYTES=0-9", Part(0, 10)),
        ("bytes= 0-9 ", Part(0, 10)),
        ("bytes=0-9,", Part(0, 10)),
        # Nothing of the document: 416.
        ("bytes=1000-", Unsatisfiable()),
        ("bytes=1000-2000", Unsatisfiable()),
        ("bytes=-0", Unsatisfiable()),
        # Ignored: unparsable, another unit, several ranges.
        ("bytes=abc", Whole()),
        ("bytes=", Whole()),
        ("bytes=-", Whole()),
        ("bytes=5-2", Whole()),
        ("bytes=0x10-", Whole()),
        ("bytes=+5-9", Whole()),
        ("bytes=0-9 junk", Whole()),
        ("bytes=١-٢", Whole()),
        ("bytes", Whole()),
        ("", Whole()),
        ("items=0-5", Whole()),
        ("none", Whole()),
        ("bytes=0-1,5-6", Whole()),
        ("bytes=0-1, -5", Whole()),
        ("bytes=0-1,1000-", Whole()),
    ],
)
def test_what_a_range_header_asks_of_a_document(header: str | None, answer: RangeAnswer) -> None:
    assert answer_range(header, SIZE) == answer
