"""Who may see and act on a consultation (``signaling.access``), as a table.

``EXPECTED`` is the specification, written apart from ``access.RIGHTS``: for each
standing and right, the verdict at each stage (waiting, offered, active, ended):
``A`` allowed, ``n`` not now (409 ``invalid_state``), ``-`` hidden (404
``not_found``). ``tests/access_table.py`` says the same per route and event and
role; ``tests/web/test_access_matrix.py`` checks the running server against it.
"""

import pytest

from signaling import access
from signaling.access import Right, Stage, Standing, Verdict
from signaling.live import LiveCall, Phase, Side
from storage.records import Account, Role

STAGES = (Stage.WAITING, Stage.OFFERED, Stage.ACTIVE, Stage.ENDED)
LETTERS = {"A": Verdict.ALLOWED, "n": Verdict.NOT_NOW, "-": Verdict.HIDDEN}

#                                  W O A E
EXPECTED: dict[Standing, dict[Right, str]] = {
    Standing.KIOSK: {
        Right.FOLLOW: "A A A -",
        Right.TAKE_PART: "n n A -",
        Right.CANCEL: "A A n -",
        Right.ANSWER: "n n n -",
        Right.END: "A A A -",
        Right.WITHDRAW: "n n n -",
        Right.READ_RECORD: "A A A n",
        Right.READ_FILES: "n n A n",
        Right.RECORD_OUTCOME: "- - - -",
        Right.RATE: "n n n A",
    },
    Standing.EXPERT: {
        Right.FOLLOW: "A A A -",
        Right.TAKE_PART: "n n A -",
        Right.CANCEL: "n n n -",
        Right.ANSWER: "n A n -",
        Right.END: "n n A -",
        Right.WITHDRAW: "n n n -",
        Right.READ_RECORD: "A A A A",
        Right.READ_FILES: "A A A A",
        Right.RECORD_OUTCOME: "n n A A",
        Right.RATE: "- - - -",
    },
    Standing.DEPARTMENT: {
        Right.FOLLOW: "A A A -",
        Right.TAKE_PART: "n n n -",
        Right.CANCEL: "n n n -",
        Right.ANSWER: "n n n -",
        Right.END: "n n n -",
        Right.WITHDRAW: "n n n -",
        Right.READ_RECORD: "A A A A",
        Right.READ_FILES: "A A A A",
        Right.RECORD_OUTCOME: "- - - -",
        Right.RATE: "- - - -",
    },
    Standing.OFFICE: {
        Right.FOLLOW: "- - - -",
        Right.TAKE_PART: "- - - -",
        Right.CANCEL: "- - - -",
        Right.ANSWER: "- - - -",
        Right.END: "- - - -",
        Right.WITHDRAW: "A A A -",
        Right.READ_RECORD: "A A A A",
        Right.READ_FILES: "A A A A",
        Right.RECORD_OUTCOME: "- - - -",
        Right.RATE: "- - - -",
    },
    Standing.NONE: dict.fromkeys(Right, "- - - -"),
}

CELLS = [
    (who, right, stage, LETTERS[row.split()[i]])
    for who, rights in EXPECTED.items()
    for right, row in rights.items()
    for i, stage in enumerate(STAGES)
]


def test_the_table_covers_every_standing_and_right() -> None:
    assert set(EXPECTED) == set(Standing)
    for rights in EXPECTED.values():
        assert set(rights) == set(Right)


@pytest.mark.parametrize(
    ("who", "right", "stage", "expected"),
    CELLS,
    ids=[f"{w.value}-{r.value}-{s.value}" for w, r, s, _ in CELLS],
)
def test_verdict(who: Standing, right: Right, stage: Stage, expected: Verdict) -> None:
    assert access.verdict(who, right, stage) is expected


def account(name: str, role: Role, department: str | None = None) -> Account:
    return Account(f"id-{name}", name, role, department, None, name, False, 0.0)


KIOSK = account("kiosk01", Role.KIOSK)
OTHER_KIOSK = account("kiosk02", Role.KIOSK)
EXPERT = account("expert_tax", Role.EXPERT, "tax")
COLLEAGUE = account("expert_tax2", Role.EXPERT, "tax")
OUTSIDER = account("expert_land", Role.EXPERT, "land")
CLERK = account("clerk", Role.CLERK)
ADMIN = account("admin", Role.ADMIN)

STANDINGS = [
    (KIOSK, Standing.KIOSK),
    (OTHER_KIOSK, Standing.NONE),
    (EXPERT, Standing.EXPERT),
    (COLLEAGUE, Standing.DEPARTMENT),
    (OUTSIDER, Standing.NONE),
    (CLERK, Standing.OFFICE),
    (ADMIN, Standing.OFFICE),
]


@pytest.mark.parametrize(("who", "expected"), STANDINGS, ids=[a.username for a, _ in STANDINGS])
def test_standing_in_a_consultation_the_expert_answers(who: Account, expected: Standing) -> None:
    assert access.standing(who, KIOSK.id, EXPERT.id, "tax") is expected


def test_before_an_expert_answers_every_expert_of_the_department_stands_alike() -> None:
    assert access.standing(EXPERT, KIOSK.id, None, "tax") is Standing.DEPARTMENT
    assert access.standing(OUTSIDER, KIOSK.id, None, "tax") is Standing.NONE


def test_an_account_of_another_role_with_the_same_id_is_not_the_kiosk() -> None:
    impostor = Account(KIOSK.id, "x", Role.EXPERT, "land", None, "x", False, 0.0)
    assert access.standing(impostor, KIOSK.id, None, "tax") is Standing.NONE


def call(phase: Phase, expert: Account | None = EXPERT) -> LiveCall:
    return LiveCall(
        id="c1",
        department="tax",
        kiosk_id=KIOSK.id,
        kiosk_username=KIOSK.username,
        hall=None,
        case_number=None,
        phase=phase,
        waiting_since=1.0,
        expert_id=expert.id if expert is not None and phase is not Phase.WAITING else None,
    )


SIDES = [
    (Phase.ACTIVE, KIOSK, Side.KIOSK),
    (Phase.ACTIVE, EXPERT, Side.EXPERT),
    (Phase.ACTIVE, COLLEAGUE, None),
    (Phase.ACTIVE, ADMIN, None),
    (Phase.OFFERED, KIOSK, None),
    (Phase.OFFERED, EXPERT, None),
    (Phase.WAITING, KIOSK, None),
]


@pytest.mark.parametrize(
    ("phase", "who", "side"), SIDES, ids=[f"{p.value}-{a.username}" for p, a, _ in SIDES]
)
def test_the_side_taken_in_a_call_for_media_chat_and_documents(
    phase: Phase, who: Account, side: Side | None
) -> None:
    assert access.side_in_call(who, call(phase)) == side


def test_participants_are_those_holding_a_side() -> None:
    assert access.participants(call(Phase.ACTIVE)) == [KIOSK.id, EXPERT.id]
    assert access.participants(call(Phase.WAITING)) == [KIOSK.id]
    ringing = call(Phase.OFFERED)
    assert access.side_of_participant(EXPERT.id, ringing) is Side.EXPERT
    assert access.side_of_participant(COLLEAGUE.id, ringing) is None


def test_the_expert_who_answered_stays_its_expert_after_moving_department() -> None:
    moved = Account(EXPERT.id, EXPERT.username, Role.EXPERT, "land", None, "x", False, 0.0)
    assert access.standing(moved, KIOSK.id, moved.id, "tax") is Standing.EXPERT
