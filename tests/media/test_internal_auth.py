"""Signed internal requests (media/internal_auth.py): the checks as a table, the
nonce memory's bounds, the key derivation and the refusal log's pace."""

import dataclasses

import pytest

from media.internal_auth import (
    HEADER,
    MAX_NONCES,
    REFUSAL_LOG_INTERVAL,
    WINDOW,
    Accepted,
    NonceMemory,
    Refusal,
    SignedRequest,
    Signer,
    authority_of,
    check,
    log_due,
    sign,
    signing_key,
)

KEY = signing_key("cluster-secret-for-tests")
NOW = 1_700_000_000.0
NONCE = "0123456789abcdef" * 2
REQUEST = SignedRequest(
    "POST", "127.0.0.1:7001", "/calls/c1/legs/kiosk?legs=expert,kiosk", b"v=0\r\n"
)
SIGNED = sign(KEY, REQUEST, NOW, NONCE)


def changed(**fields: object) -> SignedRequest:
    return dataclasses.replace(REQUEST, **fields)  # type: ignore[arg-type]


def with_part(header: str, part: str, value: str) -> str:
    """The header with one of its ``t=``/``n=``/``s=`` parts replaced."""
    return " ".join(
        f"{part}={value}" if item.startswith(f"{part}=") else item for item in header.split(" ")
    )


@pytest.mark.parametrize(
    ("request_", "header", "now", "seen", "full", "expected"),
    [
        # Signed with the key, fresh, never seen: accepted.
        (REQUEST, SIGNED, NOW, (), False, Accepted(NONCE, NOW + WINDOW)),
        # The clocks may differ by up to the window either way.
        (REQUEST, SIGNED, NOW + WINDOW, (), False, Accepted(NONCE, NOW + WINDOW)),
        (REQUEST, SIGNED, NOW - WINDOW, (), False, Accepted(NONCE, NOW + WINDOW)),
        # Beyond it the request is stale: a request sniffed earlier is worthless.
        (REQUEST, SIGNED, NOW + WINDOW + 0.001, (), False, Refusal.STALE),
        (REQUEST, SIGNED, NOW - WINDOW - 0.001, (), False, Refusal.STALE),
        # The same request again within the window: a replay.
        (REQUEST, SIGNED, NOW + 1, (NONCE,), False, Refusal.REPLAYED),
        # No room to remember another nonce: refused, never forgotten early.
        (REQUEST, SIGNED, NOW, (), True, Refusal.BUSY),
        # No signature; the static header of old; anything not in the format.
        (REQUEST, None, NOW, (), False, Refusal.MISSING),
        (REQUEST, "", NOW, (), False, Refusal.MISSING),
        (REQUEST, "cluster-secret-for-tests", NOW, (), False, Refusal.MALFORMED),
        (REQUEST, SIGNED.replace("v1", "v2", 1), NOW, (), False, Refusal.MALFORMED),
        (REQUEST, SIGNED.upper(), NOW, (), False, Refusal.MALFORMED),
        (REQUEST, with_part(SIGNED, "n", "abc"), NOW, (), False, Refusal.MALFORMED),
        (REQUEST, SIGNED + " ", NOW, (), False, Refusal.MALFORMED),
        # Whatever is changed of what was signed, the signature no longer matches:
        # another leg, another call, the declared legs, the body, the method, and
        # another worker (a request signed for one is worthless at the next).
        (changed(path="/calls/c1/legs/eavesdropper?legs=expert,kiosk"), SIGNED, NOW, (), False,
         Refusal.FORGED),
        (changed(path="/calls/c2/legs/kiosk?legs=expert,kiosk"), SIGNED, NOW, (), False,
         Refusal.FORGED),
        (changed(path="/calls/c1/legs/kiosk?legs=eavesdropper,expert,kiosk"), SIGNED, NOW, (),
         False, Refusal.FORGED),
        (changed(body=b"v=0\r\nm=audio 9 x\r\n"), SIGNED, NOW, (), False, Refusal.FORGED),
        (changed(method="DELETE"), SIGNED, NOW, (), False, Refusal.FORGED),
        (changed(authority="127.0.0.1:7002"), SIGNED, NOW, (), False, Refusal.FORGED),
        # ... and so does a fresher time or another nonce pasted into a sniffed header.
        (REQUEST, with_part(SIGNED, "t", f"{NOW + 60:.3f}"), NOW + 60, (), False, Refusal.FORGED),
        (REQUEST, with_part(SIGNED, "n", "f" * 32), NOW, (NONCE,), False, Refusal.FORGED),
        # Signed under another deployment's secret.
        (REQUEST, sign(signing_key("another-cluster-secret"), REQUEST, NOW, NONCE), NOW, (),
         False, Refusal.FORGED),
    ],
)  # fmt: skip
def test_a_signed_request_is_accepted_once_fresh_and_unaltered(
    request_: SignedRequest,
    header: str | None,
    now: float,
    seen: tuple[str, ...],
    full: bool,
    expected: Accepted | Refusal,
) -> None:
    assert check(KEY, request_, header, now, set(seen), full) == expected


def test_the_signing_key_is_derived_from_the_cluster_secret_not_the_secret_itself() -> None:
    assert signing_key("cluster-secret-for-tests") == KEY
    assert len(KEY) == 32
    assert b"cluster-secret-for-tests" not in KEY
    assert signing_key("cluster-secret-for-testz") != KEY


def test_the_signer_signs_for_the_workers_authority() -> None:
    url = "http://[::1]:7001"
    assert authority_of(url) == "[::1]:7001"
    headers = Signer(KEY).headers("GET", url, "/stats", b"", NOW)
    request = SignedRequest("GET", "[::1]:7001", "/stats", b"")
    assert isinstance(check(KEY, request, headers[HEADER], NOW, set()), Accepted)
    # A fresh nonce each time: two identical requests are both accepted once.
    again = Signer(KEY).headers("GET", url, "/stats", b"", NOW)
    assert again != headers


def test_the_nonce_memory_forgets_only_what_left_the_window_and_stays_bounded() -> None:
    memory = NonceMemory(limit=3)
    for index in range(3):
        memory.remember(Accepted(f"{index:032x}", NOW + WINDOW))
    assert memory.full(NOW) and len(memory) == 3
    # Once their time is out of the window they may go (a replay is stale anyway).
    assert not memory.full(NOW + WINDOW + 1)
    assert len(memory) == 0
    assert MAX_NONCES >= 10_000


@pytest.mark.parametrize(
    ("last", "now", "due"),
    [
        (None, NOW, True),
        (NOW, NOW, False),
        (NOW, NOW + REFUSAL_LOG_INTERVAL / 2, False),
        (NOW, NOW + REFUSAL_LOG_INTERVAL, True),
    ],
)
def test_refusals_are_logged_at_most_once_a_second(
    last: float | None, now: float, due: bool
) -> None:
    assert log_due(last, now) is due
