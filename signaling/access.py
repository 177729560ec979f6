"""Who may see and act on a consultation: one table, read by pure functions.

Every check of an account against a consultation goes through here: the socket
events (``signaling.transitions``, ``signaling.service``), the media token and
TURN credentials (``signaling.facade``), the records and documents over HTTP
(``web/consultations_api.py``, ``web/files_api.py``). Who may send an event or
call a route at all (its roles) stays with the event and route tables; this is
the relation to the consultation itself.

How an account stands to a consultation (``standing``): its kiosk, one of its
experts (the one answering it or the one it is ringing for, an expert who joined
it, and once it has ended every expert who took part), an interpreter taking
part, an expert of its department who is not its own, the office (clerks and
admins: the records, never the call), or nobody. What each standing may do, and
in which stages of the consultation, is the table ``RIGHTS``: one row per
standing, so that a new kind of participant is one more row.

A supervisor who stepped into a call takes part in it (media) and may leave it,
nothing more. An interpreter follows and takes part in the call (media, chat) and may leave
it; it reads no document unless an expert of the call shared that one with it
(``READ_SHARED_FILES``: the caller checks the share), and nothing of the
consultation once its part has ended.

``verdict`` answers with one of three outcomes, which the callers turn into
their errors: allowed; not now (the account stands in the consultation but may
not do this at this stage: 409 ``invalid_state``); hidden (404 ``not_found``,
the same answer as for a consultation that does not exist, so that nobody
learns another's consultation exists). For an action on the live consultation,
whoever may follow it (see it and send its events) is told "not now" rather
than "hidden".
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from signaling.live import LiveCall, Side, StaffRole
from storage.records import Account, ConsultationRecord, Role


class Standing(StrEnum):
    KIOSK = "kiosk"
    """The kiosk that asked for it (the citizen's side)."""
    EXPERT = "expert"
    """An expert of the call: the one answering it or the one it is ringing for, one
    who joined it (the second expert stands as the first), and after the end every
    expert who took part."""
    INTERPRETER = "interpreter"
    """An interpreter taking part in the call now."""
    SUPERVISOR = "supervisor"
    """A service-centre supervisor who stepped into the call and is in it now."""
    DEPARTMENT = "department"
    """An expert of its department who is not its own."""
    OFFICE = "office"
    """Clerks and admins: the records and documents, never the call."""
    NONE = "none"


class Stage(StrEnum):
    """Where the consultation is: the live phases and the records' end."""

    WAITING = "waiting"
    OFFERED = "offered"
    ACTIVE = "active"
    TRANSFER = "transfer"
    """Transferred: waiting (or ringing) in another department, the citizen still in
    the call with whoever stayed (an interpreter)."""
    ENDED = "ended"


class Right(StrEnum):
    FOLLOW = "follow"
    """See the open consultation and send its events."""
    TAKE_PART = "take_part"
    """A side of the active call: media, TURN, chat, documents sent."""
    CANCEL = "cancel"
    """Leave the queue before the call starts."""
    ANSWER = "answer"
    """Accept or decline the offer."""
    END = "end"
    """End it (a kiosk in the queue abandons it, a call completes)."""
    WITHDRAW = "withdraw"
    """End any open consultation as cancelled (the route is the admin's)."""
    READ_RECORD = "read_record"
    READ_FILES = "read_files"
    RECORD_OUTCOME = "record_outcome"
    RATE = "rate"
    LEAVE = "leave"
    """Leave the call, which goes on for the others."""
    INVITE = "invite"
    """Invite a department or an interpreting pool into the call; cancel it."""
    TRANSFER = "transfer"
    """Hand the citizen to another department."""
    SHARE = "share"
    """Share one's screen, or a document with the call's interpreters."""
    READ_SHARED_FILES = "read_shared_files"
    """Read the documents an expert of the call shared (the caller checks which)."""
    PRINT_SLIP = "print_slip"
    """The citizen's slip of the ended consultation (the route adds a time limit)."""
    GIVE_IDENTITY = "give_identity"
    """Give the citizen's identity number (and consent) for the consultation."""
    READ_HISTORY = "read_history"
    """See the citizen's earlier consultations with one's department (the caller
    checks the citizen's consent)."""


LIVE_RIGHTS = frozenset(
    {
        Right.FOLLOW,
        Right.TAKE_PART,
        Right.CANCEL,
        Right.ANSWER,
        Right.END,
        Right.WITHDRAW,
        Right.LEAVE,
        Right.INVITE,
        Right.TRANSFER,
        Right.SHARE,
    }
)
"""Rights over the live consultation: denied as "not now" to whoever follows it."""

OPEN = frozenset({Stage.WAITING, Stage.OFFERED, Stage.ACTIVE, Stage.TRANSFER})
QUEUED = frozenset({Stage.WAITING, Stage.OFFERED})
CALL = frozenset({Stage.ACTIVE})
IN_CALL = frozenset({Stage.ACTIVE, Stage.TRANSFER})
"""The call, and its transfer: who stays keeps media and chat meanwhile."""
RINGING = frozenset({Stage.OFFERED, Stage.TRANSFER})
"""Ringing for the expert (a transfer's stage rings for one, or waits)."""
ANSWERED = frozenset({Stage.ACTIVE, Stage.ENDED})
ALWAYS = frozenset(Stage)
ENDED = frozenset({Stage.ENDED})
NEVER: frozenset[Stage] = frozenset()


@dataclass(frozen=True)
class Rights:
    """The stages in which one standing may use each right (absent: never)."""

    stages: Mapping[Right, frozenset[Stage]]

    def allows(self, right: Right, stage: Stage) -> bool:
        return stage in self.stages.get(right, NEVER)


RIGHTS: Mapping[Standing, Rights] = {
    Standing.KIOSK: Rights(
        {
            Right.FOLLOW: OPEN,
            Right.TAKE_PART: IN_CALL,
            Right.CANCEL: QUEUED,
            Right.END: OPEN,
            # Its record while open (the page resumes with it); documents only
            # during the call: a public terminal shows nothing of it afterwards.
            Right.READ_RECORD: OPEN,
            Right.READ_FILES: IN_CALL,
            Right.RATE: ENDED,
            Right.GIVE_IDENTITY: OPEN,
            Right.PRINT_SLIP: ENDED,
        }
    ),
    Standing.EXPERT: Rights(
        {
            Right.FOLLOW: OPEN,
            Right.TAKE_PART: CALL,
            Right.ANSWER: RINGING,
            Right.END: CALL,
            Right.READ_RECORD: ALWAYS,
            Right.READ_FILES: ALWAYS,
            Right.RECORD_OUTCOME: ANSWERED,
            Right.LEAVE: CALL,
            Right.INVITE: CALL,
            Right.TRANSFER: CALL,
            Right.SHARE: CALL,
            # While the citizen is in the call with them: the consent was for that.
            Right.READ_HISTORY: CALL,
        }
    ),
    Standing.INTERPRETER: Rights(
        {
            Right.FOLLOW: IN_CALL,
            Right.TAKE_PART: IN_CALL,
            Right.LEAVE: IN_CALL,
            Right.READ_SHARED_FILES: IN_CALL,
        }
    ),
    # Stepped in: a participant like an interpreter, by voice and picture (no
    # documents, no chat: its page is the supervisor's); its part ends as it leaves.
    Standing.SUPERVISOR: Rights(
        {
            Right.FOLLOW: IN_CALL,
            Right.TAKE_PART: IN_CALL,
            Right.LEAVE: IN_CALL,
        }
    ),
    Standing.DEPARTMENT: Rights(
        {
            Right.FOLLOW: OPEN,
            Right.READ_RECORD: ALWAYS,
            Right.READ_FILES: ALWAYS,
        }
    ),
    Standing.OFFICE: Rights(
        {
            Right.WITHDRAW: OPEN,
            Right.READ_RECORD: ALWAYS,
            Right.READ_FILES: ALWAYS,
        }
    ),
    Standing.NONE: Rights({}),
}


class Verdict(StrEnum):
    ALLOWED = "allowed"
    NOT_NOW = "not_now"
    """Stands in it, but not this, not at this stage (409 invalid_state)."""
    HIDDEN = "hidden"
    """As if it did not exist (404 not_found)."""


def standing(
    account: Account,
    kiosk_id: str,
    expert_id: str | None,
    department: str,
    experts: Collection[str] = (),
    interpreters: Collection[str] = (),
    supervisors: Collection[str] = (),
) -> Standing:
    """How ``account`` stands to a consultation of ``kiosk_id`` in ``department``
    answered by (or ringing for) ``expert_id``, with the other ``experts`` and the
    ``interpreters`` taking part (or, for a record, having taken part)."""
    if account.role is Role.KIOSK and account.id == kiosk_id:
        return Standing.KIOSK
    if account.role is Role.EXPERT and (
        (expert_id is not None and account.id == expert_id) or account.id in experts
    ):
        return Standing.EXPERT
    if account.role is Role.INTERPRETER and account.id in interpreters:
        return Standing.INTERPRETER
    if account.role is Role.SUPERVISOR and account.id in supervisors:
        return Standing.SUPERVISOR
    if account.role is Role.EXPERT and account.department == department:
        return Standing.DEPARTMENT
    if account.role in (Role.CLERK, Role.ADMIN):
        return Standing.OFFICE
    return Standing.NONE


def standing_in_call(account: Account, call: LiveCall) -> Standing:
    return standing(
        account,
        call.kiosk_id,
        call.expert_id,
        call.department,
        [s.account_id for s in call.seats if s.role is StaffRole.EXPERT],
        [s.account_id for s in call.seats if s.role is StaffRole.INTERPRETER],
        [s.account_id for s in call.seats if s.role is StaffRole.SUPERVISOR],
    )


def standing_in_record(
    account: Account, record: ConsultationRecord, experts: Collection[str] = ()
) -> Standing:
    """``experts``: every expert who took part (its legs). Interpreters stand in a
    consultation only while they take part in its call."""
    return standing(account, record.kiosk_id, record.expert_id, record.department, experts)


def stage_of_call(call: LiveCall) -> Stage:
    return Stage.TRANSFER if call.in_transfer else Stage(call.phase.value)


def stage_of_record(record: ConsultationRecord) -> Stage:
    return Stage(record.state.value)


def verdict(who: Standing, right: Right, stage: Stage) -> Verdict:
    """What ``who`` gets asking for ``right`` at ``stage`` (see the module docstring)."""
    rights = RIGHTS[who]
    if rights.allows(right, stage):
        return Verdict.ALLOWED
    if right in LIVE_RIGHTS:
        return Verdict.NOT_NOW if rights.allows(Right.FOLLOW, stage) else Verdict.HIDDEN
    return Verdict.NOT_NOW if rights.stages.get(right) else Verdict.HIDDEN


def on_call(account: Account, call: LiveCall, right: Right) -> Verdict:
    return verdict(standing_in_call(account, call), right, stage_of_call(call))


def on_record(
    account: Account, record: ConsultationRecord, right: Right, experts: Collection[str] = ()
) -> Verdict:
    return verdict(standing_in_record(account, record, experts), right, stage_of_record(record))


SIDES: Mapping[Standing, Side] = {Standing.KIOSK: Side.KIOSK, Standing.EXPERT: Side.EXPERT}
"""The side of the call each participating standing takes (its media token, its
name in chat and documents)."""


def side_in_call(account: Account, call: LiveCall) -> Side | None:
    """The side ``account`` takes in the call if it may take part now, else None: the
    one rule for media, TURN, chat and documents sent (an interpreter takes part
    without sending documents: no side)."""
    if on_call(account, call, Right.TAKE_PART) is not Verdict.ALLOWED:
        return None
    return SIDES.get(standing_in_call(account, call))


def position_in_call(account: Account, call: LiveCall) -> int | None:
    """The position ``account`` holds in the call if it may take part now, else None:
    its media token's, its name in the call."""
    if on_call(account, call, Right.TAKE_PART) is not Verdict.ALLOWED:
        return None
    return call.position_of(account.id)


def participants(call: LiveCall) -> list[str]:
    """The accounts that take part in the call (told of its chat and documents): the
    kiosk and the staff in it (and the expert it rings for)."""
    ids = list(call.participant_ids)
    if call.expert_id is not None and call.expert_id not in ids:
        ids.append(call.expert_id)
    return ids


def interpreters(call: LiveCall) -> list[str]:
    return [s.account_id for s in call.seats if s.role is StaffRole.INTERPRETER]


def position_of_participant(account_id: str, call: LiveCall) -> int | None:
    """The position an account id (a socket or media that came or went) holds in the
    call, whatever its stage; None if it holds none."""
    return call.position_of(account_id)


def side_of_participant(account_id: str, call: LiveCall) -> Side | None:
    """The side an account id (a socket or media that came or went) holds in the
    call, whatever its stage; None if it holds none."""
    if account_id == call.kiosk_id:
        return Side.KIOSK
    if call.expert_id is not None and account_id == call.expert_id:
        return Side.EXPERT
    return None
