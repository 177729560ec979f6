"""Who may see and act on a consultation (``signaling.access``), as a table.

``EXPECTED`` is the specification, written apart from ``access.RIGHTS``: for each
standing and right, the verdict at each stage (waiting, offered, active, ended):
``A`` allowed, ``n`` not now (409 ``invalid_state``), ``-`` hidden (404
``not_found``). ``tests/access_table.py`` says the same per route and event and
role; ``tests/web/test_access_matrix.py`` checks the running server against it.
"""

import dataclasses

import pytest

from signaling import access
from signaling.access import Right, Stage, Standing, Verdict
from signaling.live import LiveCall, Phase, Seat, Side, StaffRole, Transfer
from storage.records import Account, Role

STAGES = (Stage.WAITING, Stage.OFFERED, Stage.ACTIVE, Stage.TRANSFER, Stage.ENDED)
LETTERS = {"A": Verdict.ALLOWED, "n": Verdict.NOT_NOW, "-": Verdict.HIDDEN}

#                                       W O A T E
EXPECTED: dict[Standing, dict[Right, str]] = {
    Standing.KIOSK: {
        Right.FOLLOW: "A A A A -",
        Right.TAKE_PART: "n n A A -",
        Right.CANCEL: "A A n n -",
        Right.ANSWER: "n n n n -",
        Right.END: "A A A A -",
        Right.WITHDRAW: "n n n n -",
        Right.READ_RECORD: "A A A A n",
        Right.READ_FILES: "n n A A n",
        Right.RECORD_OUTCOME: "- - - - -",
        Right.RATE: "n n n n A",
        Right.LEAVE: "n n n n -",
        Right.INVITE: "n n n n -",
        Right.TRANSFER: "n n n n -",
        Right.SHARE: "n n n n -",
        Right.READ_SHARED_FILES: "- - - - -",
        # Its own consultation's identity number while open; the slip once ended.
        Right.GIVE_IDENTITY: "A A A A n",
        Right.PRINT_SLIP: "n n n n A",
        Right.READ_HISTORY: "- - - - -",
    },
    Standing.EXPERT: {
        Right.FOLLOW: "A A A A -",
        Right.TAKE_PART: "n n A n -",
        Right.CANCEL: "n n n n -",
        Right.ANSWER: "n A n A -",
        Right.END: "n n A n -",
        Right.WITHDRAW: "n n n n -",
        Right.READ_RECORD: "A A A A A",
        Right.READ_FILES: "A A A A A",
        Right.RECORD_OUTCOME: "n n A n A",
        Right.RATE: "- - - - -",
        Right.LEAVE: "n n A n -",
        Right.INVITE: "n n A n -",
        Right.TRANSFER: "n n A n -",
        Right.SHARE: "n n A n -",
        Right.READ_SHARED_FILES: "- - - - -",
        # The citizen's earlier consultations, while the citizen is in the call.
        Right.READ_HISTORY: "n n A n n",
        Right.GIVE_IDENTITY: "- - - - -",
        Right.PRINT_SLIP: "- - - - -",
    },
    # Follows and takes part in the call (and its transfer) and may leave; reads a
    # document only once shared with it, nothing once its part is over.
    Standing.INTERPRETER: {
        Right.FOLLOW: "- - A A -",
        Right.TAKE_PART: "- - A A -",
        Right.CANCEL: "- - n n -",
        Right.ANSWER: "- - n n -",
        Right.END: "- - n n -",
        Right.WITHDRAW: "- - n n -",
        Right.READ_RECORD: "- - - - -",
        Right.READ_FILES: "- - - - -",
        Right.RECORD_OUTCOME: "- - - - -",
        Right.RATE: "- - - - -",
        Right.LEAVE: "- - A A -",
        Right.INVITE: "- - n n -",
        Right.TRANSFER: "- - n n -",
        Right.SHARE: "- - n n -",
        Right.READ_SHARED_FILES: "n n A A n",
        Right.GIVE_IDENTITY: "- - - - -",
        Right.PRINT_SLIP: "- - - - -",
        Right.READ_HISTORY: "- - - - -",
    },
    # Stepped in (issue 23): takes part by voice and picture and may leave, as an
    # interpreter, and reads nothing of the consultation.
    Standing.SUPERVISOR: {
        Right.FOLLOW: "- - A A -",
        Right.TAKE_PART: "- - A A -",
        Right.CANCEL: "- - n n -",
        Right.ANSWER: "- - n n -",
        Right.END: "- - n n -",
        Right.WITHDRAW: "- - n n -",
        Right.READ_RECORD: "- - - - -",
        Right.READ_FILES: "- - - - -",
        Right.RECORD_OUTCOME: "- - - - -",
        Right.RATE: "- - - - -",
        Right.LEAVE: "- - A A -",
        Right.INVITE: "- - n n -",
        Right.TRANSFER: "- - n n -",
        Right.SHARE: "- - n n -",
        Right.READ_SHARED_FILES: "- - - - -",
        Right.GIVE_IDENTITY: "- - - - -",
        Right.PRINT_SLIP: "- - - - -",
        Right.READ_HISTORY: "- - - - -",
    },
    Standing.DEPARTMENT: {
        Right.FOLLOW: "A A A A -",
        Right.TAKE_PART: "n n n n -",
        Right.CANCEL: "n n n n -",
        Right.ANSWER: "n n n n -",
        Right.END: "n n n n -",
        Right.WITHDRAW: "n n n n -",
        Right.READ_RECORD: "A A A A A",
        Right.READ_FILES: "A A A A A",
        Right.RECORD_OUTCOME: "- - - - -",
        Right.RATE: "- - - - -",
        Right.LEAVE: "n n n n -",
        Right.INVITE: "n n n n -",
        Right.TRANSFER: "n n n n -",
        Right.SHARE: "n n n n -",
        Right.READ_SHARED_FILES: "- - - - -",
        Right.GIVE_IDENTITY: "- - - - -",
        Right.PRINT_SLIP: "- - - - -",
        Right.READ_HISTORY: "- - - - -",
    },
    Standing.OFFICE: {
        **dict.fromkeys(Right, "- - - - -"),
        Right.WITHDRAW: "A A A A -",
        Right.READ_RECORD: "A A A A A",
        Right.READ_FILES: "A A A A A",
    },
    Standing.NONE: dict.fromkeys(Right, "- - - - -"),
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


INTERPRETER = account("interpreter01", Role.INTERPRETER, "interpret")
OTHER_INTERPRETER = account("interpreter02", Role.INTERPRETER, "interpret")
SECOND = account("expert_land2", Role.EXPERT, "land")


def three_way(phase: Phase = Phase.ACTIVE) -> LiveCall:
    """The kiosk, its expert, a second expert of another department, an interpreter."""
    return dataclasses.replace(
        call(phase),
        active_at=2.0,
        seats=(
            Seat(1, EXPERT.id, EXPERT.username, StaffRole.EXPERT, "tax", 2.0),
            Seat(2, SECOND.id, SECOND.username, StaffRole.EXPERT, "land", 3.0),
            Seat(3, INTERPRETER.id, INTERPRETER.username, StaffRole.INTERPRETER, "interpret", 4.0),
        ),
    )


STANDINGS_IN_A_THREE_WAY_CALL = [
    (KIOSK, Standing.KIOSK),
    (EXPERT, Standing.EXPERT),
    (SECOND, Standing.EXPERT),
    (INTERPRETER, Standing.INTERPRETER),
    (OTHER_INTERPRETER, Standing.NONE),
    (COLLEAGUE, Standing.DEPARTMENT),
    (OUTSIDER, Standing.NONE),
    (ADMIN, Standing.OFFICE),
]


@pytest.mark.parametrize(
    ("who", "expected"),
    STANDINGS_IN_A_THREE_WAY_CALL,
    ids=[a.username for a, _ in STANDINGS_IN_A_THREE_WAY_CALL],
)
def test_standing_in_a_call_of_more_than_two(who: Account, expected: Standing) -> None:
    """A second expert stands as the first; an interpreter as one; their colleagues
    of the pool not at all."""
    assert access.standing_in_call(who, three_way()) is expected


def test_after_the_end_every_expert_who_took_part_stands_as_its_expert_no_interpreter() -> None:
    experts = {EXPERT.id, SECOND.id}
    assert access.standing(SECOND, KIOSK.id, EXPERT.id, "tax", experts) is Standing.EXPERT
    assert access.standing(INTERPRETER, KIOSK.id, EXPERT.id, "tax", experts) is Standing.NONE


def test_positions_taken_in_a_call_of_more_than_two() -> None:
    full = three_way()
    assert [access.position_in_call(a, full) for a in (KIOSK, EXPERT, SECOND, INTERPRETER)] == [
        0,
        1,
        2,
        3,
    ]
    assert access.position_in_call(COLLEAGUE, full) is None
    # An interpreter takes part without sending documents (no side).
    assert access.side_in_call(INTERPRETER, full) is None
    assert access.side_in_call(SECOND, full) is Side.EXPERT
    assert access.participants(full) == [KIOSK.id, EXPERT.id, SECOND.id, INTERPRETER.id]
    assert access.interpreters(full) == [INTERPRETER.id]


def test_a_transferred_call_keeps_the_citizen_and_the_interpreter_in_it() -> None:
    moving = dataclasses.replace(
        three_way(Phase.WAITING),
        expert_id=None,
        seats=(Seat(3, INTERPRETER.id, "interpreter01", StaffRole.INTERPRETER, "interpret", 4.0),),
        transfer=Transfer("land", "土地问题", EXPERT.username, "税务专家", "tax", 5.0),
    )
    assert access.stage_of_call(moving) is Stage.TRANSFER
    assert access.position_in_call(KIOSK, moving) == 0
    assert access.position_in_call(INTERPRETER, moving) == 3
    assert access.on_call(KIOSK, moving, Right.CANCEL) is Verdict.NOT_NOW


def test_the_expert_who_answered_stays_its_expert_after_moving_department() -> None:
    moved = Account(EXPERT.id, EXPERT.username, Role.EXPERT, "land", None, "x", False, 0.0)
    assert access.standing(moved, KIOSK.id, moved.id, "tax") is Standing.EXPERT
