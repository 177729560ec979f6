"""Who may do what: the expected answer to every REST route and socket.io event, for
every role and every relation to the object acted on, in one declarative table.

``tests/web/test_access_matrix.py`` drives the real server through every cell and
fails where the code and this table disagree; ``docs/security_matrix.py`` prints the
same table into docs/SECURITY.md, and a test fails when the document is stale.

The table lives with the tests, not in ``web/``: it is the specification the code is
checked against, written apart from the code that enforces it (the role guard in
``web/api.py`` and the gateway's event table; the relation to a consultation in
``signaling/access.py``, whose own table ``tests/signaling/test_access.py``
checks cell by cell). Were the
server to read it, a wrong entry would change behaviour and still agree with itself.

Outcomes: ``allow`` (the action succeeds), or ``deny-N``: HTTP status N, or for an
event the error ack of the same meaning (401 unauthorized, which for socket.io is
the refused connection; 403 forbidden; 404 not_found; 409 invalid_state).
Everything a cell does not allow is denied.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum


class Outcome(StrEnum):
    ALLOW = "allow"
    DENY_401 = "deny-401"
    DENY_403 = "deny-403"
    DENY_404 = "deny-404"
    DENY_409 = "deny-409"


ALLOW = Outcome.ALLOW
D401 = Outcome.DENY_401
D403 = Outcome.DENY_403
D404 = Outcome.DENY_404
D409 = Outcome.DENY_409

# The error code of an event's ack for each denial.
EVENT_CODES = {
    Outcome.DENY_401: "unauthorized",
    Outcome.DENY_403: "forbidden",
    Outcome.DENY_404: "not_found",
    Outcome.DENY_409: "invalid_state",
}


class Relation(StrEnum):
    NONE = "-"
    ANY = "any"
    OWN = "own"
    SHARED = "shared"
    PEER = "peer"
    DEPT = "dept"
    OTHER = "other"


MEANING = {
    Relation.NONE: "the action names nobody's object",
    Relation.ANY: "the role has no objects of its own of this kind (or holds no media token)",
    Relation.OWN: "a kiosk's own consultation, upload or file; for an expert, the call it "
    "is in (or the offer ringing for it), its own upload, a file of that call; for an "
    "interpreter, the call it takes part in and (files) a document of it not shared with it; "
    "for a supervisor, a consultation in its scope (its departments and halls)",
    Relation.SHARED: "for an interpreter, a document of its call an expert shared with it",
    Relation.PEER: "an upload of the other participant of one's own call",
    Relation.DEPT: "for an expert, a consultation of its department that is a colleague's",
    Relation.OTHER: "another kiosk's; for an expert, another department's; for an "
    "interpreter, a call it is not in; for a supervisor, one outside its scope",
}


class Subject(Enum):
    """What a route or event acts on, which decides the relations that exist."""

    NONE = "none"
    CONSULTATION = "consultation"
    UPLOAD = "upload"
    FILE = "file"
    MEDIA = "media"
    """Media routes: authenticated by the call's bearer token, not by the session;
    own: one's own token for one's own call, other: one's token for another call."""


ROLES = ("anonymous", "kiosk", "expert", "interpreter", "clerk", "admin", "supervisor")

RELATIONS: dict[Subject, dict[str, tuple[Relation, ...]]] = {
    Subject.NONE: {role: (Relation.NONE,) for role in ROLES},
    Subject.CONSULTATION: {
        "anonymous": (Relation.ANY,),
        "kiosk": (Relation.OWN, Relation.OTHER),
        "expert": (Relation.OWN, Relation.DEPT, Relation.OTHER),
        "interpreter": (Relation.OWN, Relation.OTHER),
        "clerk": (Relation.ANY,),
        "admin": (Relation.ANY,),
        "supervisor": (Relation.OWN, Relation.OTHER),
    },
    Subject.UPLOAD: {
        "anonymous": (Relation.ANY,),
        "kiosk": (Relation.OWN, Relation.PEER, Relation.OTHER),
        "expert": (Relation.OWN, Relation.PEER, Relation.OTHER),
        "interpreter": (Relation.ANY,),
        "clerk": (Relation.ANY,),
        "admin": (Relation.ANY,),
        "supervisor": (Relation.ANY,),
    },
    Subject.MEDIA: {
        "anonymous": (Relation.ANY,),
        "kiosk": (Relation.OWN, Relation.OTHER),
        "expert": (Relation.OWN, Relation.OTHER),
        "interpreter": (Relation.OWN, Relation.OTHER),
        "clerk": (Relation.ANY,),
        "admin": (Relation.ANY,),
        "supervisor": (Relation.ANY,),
    },
}
RELATIONS[Subject.FILE] = {
    **RELATIONS[Subject.CONSULTATION],
    "interpreter": (Relation.SHARED, Relation.OWN, Relation.OTHER),
}

Expected = Outcome | Mapping[Relation, Outcome]


@dataclass(frozen=True)
class Rule:
    """One route (``"GET /api/v1/me"``) or event (``"event get_state"``)."""

    surface: str
    subject: Subject
    expected: Mapping[str, Expected]
    note: str = ""

    def outcome(self, role: str, relation: Relation) -> Outcome:
        expected = self.expected[role]
        return expected if isinstance(expected, Outcome) else expected[relation]

    def cells(self) -> Iterator[tuple[str, Relation, Outcome]]:
        for role in ROLES:
            for relation in RELATIONS[self.subject][role]:
                yield role, relation, self.outcome(role, relation)

    @property
    def is_event(self) -> bool:
        return self.surface.startswith("event ")


def everyone(outcome: Outcome = ALLOW) -> dict[str, Expected]:
    return dict.fromkeys(ROLES, outcome)


def only(*roles: str) -> dict[str, Expected]:
    """A session of one of ``roles``; no session: 401; another role: 403."""
    expected: dict[str, Expected] = {role: ALLOW if role in roles else D403 for role in ROLES}
    return expected | {"anonymous": D401}


def signed_in() -> dict[str, Expected]:
    return only(*ROLES[1:])


# The participants of a call reach it; a colleague sees it but may not act in it.
IN_IT = {Relation.OWN: ALLOW, Relation.OTHER: D404}
"""An interpreter: the call it takes part in, not another."""
PARTICIPANT: dict[str, Expected] = {
    "anonymous": D401,
    "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404},
    "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
    "interpreter": IN_IT,
    "clerk": D403,
    "admin": D403,
    "supervisor": D403,
}
# Records: the kiosk while its consultation is open, the department, the window; an
# interpreter none (it follows the call through its events).
READER: dict[str, Expected] = {
    "anonymous": D401,
    "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404},
    "expert": {Relation.OWN: ALLOW, Relation.DEPT: ALLOW, Relation.OTHER: D404},
    "interpreter": D404,
    "clerk": ALLOW,
    "admin": ALLOW,
    # Not the records' reader (its page reads follow-ups and live calls): as to a
    # stranger, a consultation is not there.
    "supervisor": D404,
}
# Documents: as the records; an interpreter only those an expert of its call shared.
FILE_READER: dict[str, Expected] = {
    **READER,
    "interpreter": {Relation.SHARED: ALLOW, Relation.OWN: D403, Relation.OTHER: D404},
}
UPLOADER: dict[str, Expected] = {
    "anonymous": D401,
    "kiosk": {Relation.OWN: ALLOW, Relation.PEER: D404, Relation.OTHER: D404},
    "expert": {Relation.OWN: ALLOW, Relation.PEER: D404, Relation.OTHER: D404},
    "interpreter": D403,
    "clerk": D403,
    "admin": D403,
    "supervisor": D403,
}
TOKEN_HOLDER: dict[str, Expected] = {
    "anonymous": D401,
    "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D403},
    "expert": {Relation.OWN: ALLOW, Relation.OTHER: D403},
    "interpreter": {Relation.OWN: ALLOW, Relation.OTHER: D403},
    "clerk": D401,
    "admin": D401,
    "supervisor": D401,
}
# An expert's actions in its call (invite, transfer, share): a colleague follows it but
# may not act in it (409), others do not see it; nobody else's role may send them.
IN_CALL_EXPERT: dict[str, Expected] = {
    **only("expert"),
    "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
}
# The citizen's identity number: the kiosk gives it for its own consultation; the
# expert in the call sees the earlier ones (with consent); the records' readers
# see it masked; only a clerk reveals it.
IDENTITY_GIVER: dict[str, Expected] = {
    **only("kiosk"),
    "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404},
}
HISTORY_READER: dict[str, Expected] = {
    **only("expert"),
    "expert": {Relation.OWN: ALLOW, Relation.DEPT: D404, Relation.OTHER: D404},
}
MASKED_READER: dict[str, Expected] = {
    **only("expert", "clerk", "admin"),
    "expert": {Relation.OWN: ALLOW, Relation.DEPT: ALLOW, Relation.OTHER: D404},
}
# A follow-up of a bad grade: its department's or hall's supervisors and the admin.
OVERSEER: dict[str, Expected] = {
    **only("supervisor", "admin"),
    "supervisor": {Relation.OWN: ALLOW, Relation.OTHER: D404},
}
# Listening in and stepping in: a supervisor, on a call in its scope (the admin
# configures, it does not supervise calls).
LISTENER: dict[str, Expected] = {
    **only("supervisor"),
    "supervisor": {Relation.OWN: ALLOW, Relation.OTHER: D404},
}
KIOSK_ONLY = only("kiosk")
EXPERT_ONLY = only("expert")
DESK_ONLY = only("expert", "interpreter")

C = Subject.CONSULTATION
N = Subject.NONE

ACCESS: tuple[Rule, ...] = (
    # ---- pages and operations
    Rule("GET /", N, everyone()),
    Rule("GET /kiosk", N, everyone()),
    Rule("GET /expert", N, everyone()),
    Rule("GET /clerk", N, everyone()),
    Rule("GET /admin", N, everyone()),
    Rule("GET /supervisor", N, everyone()),
    Rule("GET /healthz", N, everyone()),
    Rule("GET /metrics", N, everyone(), "from loopback; elsewhere only with the metrics token"),
    Rule("GET /api/v1/openapi.json", N, everyone()),
    # ---- session
    Rule("POST /api/v1/login", N, everyone(), "throttled per account and address"),
    Rule("POST /api/v1/logout", N, signed_in()),
    Rule("GET /api/v1/me", N, signed_in()),
    # ---- departments, accounts, figures, audit
    Rule("GET /api/v1/departments", N, signed_in(), "admins also see disabled ones"),
    Rule("GET /api/v1/departments/status", N, signed_in()),
    Rule("POST /api/v1/departments", N, only("admin")),
    Rule("PATCH /api/v1/departments/{code}", N, only("admin")),
    Rule("GET /api/v1/accounts", N, only("admin")),
    Rule("POST /api/v1/accounts", N, only("admin")),
    Rule("PATCH /api/v1/accounts/{username}", N, only("admin")),
    Rule("GET /api/v1/board", N, only("admin")),
    Rule("GET /api/v1/halls", N, only("expert", "clerk", "admin")),
    Rule("POST /api/v1/halls", N, only("admin")),
    Rule("PATCH /api/v1/halls/{hall}", N, only("admin")),
    Rule(
        "GET /api/v1/hall-consultations",
        N,
        only("clerk", "admin"),
        "a clerk only its halls' consultations",
    ),
    Rule("GET /api/v1/me/consultations", N, EXPERT_ONLY),
    Rule("GET /api/v1/audit", N, only("admin")),
    Rule("GET /api/v1/audit/verify", N, only("admin")),
    # ---- consultation records
    Rule(
        "GET /api/v1/consultations",
        N,
        only("expert", "clerk", "admin"),
        "experts find only their department's",
    ),
    Rule("GET /api/v1/consultations/{consultation_id}", C, READER, "a kiosk only while open"),
    Rule("POST /api/v1/consultations/{consultation_id}/withdraw", C, only("admin")),
    Rule("POST /api/v1/consultations/{consultation_id}/case", C, only("clerk", "admin")),
    # ---- identity numbers (in bodies only; masked but for the clerk's reveal)
    Rule("POST /api/v1/consultations/{consultation_id}/identity", C, IDENTITY_GIVER),
    Rule("GET /api/v1/consultations/{consultation_id}/identity", C, MASKED_READER),
    Rule(
        "GET /api/v1/consultations/{consultation_id}/history",
        C,
        HISTORY_READER,
        "the expert in the call; empty without the citizen's consent",
    ),
    Rule(
        "POST /api/v1/consultations/{consultation_id}/identity/reveal",
        C,
        only("clerk"),
        "with a reason; audited",
    ),
    Rule("POST /api/v1/identity/search", N, only("clerk", "admin"), "audited"),
    Rule(
        "GET /api/v1/recordings",
        N,
        only("expert", "supervisor", "admin"),
        "each sees those they may play",
    ),
    Rule(
        "GET /api/v1/consultations/{consultation_id}/slip",
        C,
        IDENTITY_GIVER,
        "once ended, for 15 minutes: the citizen's printed slip",
    ),
    # ---- media (bearer token of the call)
    Rule("POST /api/v1/media/{consultation_id}", Subject.MEDIA, TOKEN_HOLDER),
    Rule("DELETE /api/v1/media/{consultation_id}/{side}", Subject.MEDIA, TOKEN_HOLDER),
    Rule(
        "GET /api/v1/ice-servers",
        N,
        only("kiosk", "expert", "interpreter"),
        "TURN credentials that expire; the parties of calls only",
    ),
    # ---- documents
    Rule(
        "POST /api/v1/consultations/{consultation_id}/uploads",
        C,
        {
            **PARTICIPANT,
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D404, Relation.OTHER: D404},
            "interpreter": D403,
        },
        "while the call is active; interpreters send no documents",
    ),
    Rule("HEAD /api/v1/uploads/{upload_id}", Subject.UPLOAD, UPLOADER),
    Rule("PATCH /api/v1/uploads/{upload_id}", Subject.UPLOAD, UPLOADER),
    Rule("POST /api/v1/uploads/{upload_id}/finish", Subject.UPLOAD, UPLOADER),
    Rule("DELETE /api/v1/uploads/{upload_id}", Subject.UPLOAD, UPLOADER),
    Rule(
        "GET /api/v1/consultations/{consultation_id}/files",
        C,
        {**READER, "interpreter": IN_IT},
        "a kiosk only during its call; an interpreter sees those shared with it",
    ),
    Rule(
        "GET /api/v1/files/{file_id}",
        Subject.FILE,
        FILE_READER,
        "a kiosk only during its call; an interpreter once an expert shared it",
    ),
    Rule(
        "GET /api/v1/consultations/{consultation_id}/chat",
        C,
        PARTICIPANT,
        "during the call (what was said before a reload)",
    ),
    Rule(
        "POST /api/v1/consultations/{consultation_id}/phone-link",
        C,
        {**only("kiosk"), "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404}},
        "while the call is active",
    ),
    Rule(
        "GET /api/v1/phone-links/{token}",
        N,
        everyone(),
        "the link is the credential: its state only, nothing of the consultation",
    ),
    Rule("POST /api/v1/phone-links/{token}/claim", N, everyone(), "once, by whoever holds it"),
    Rule("POST /api/v1/phone-links/{token}/files", N, everyone(), "with the link's one claim"),
    Rule("GET /phone/{token}", N, everyone()),
    Rule("GET /api/v1/cases/{case_number}/attachments", N, only("clerk", "admin")),
    Rule("POST /api/v1/cases/{case_number}/attachments", N, only("clerk", "admin")),
    # ---- the hall's staff
    Rule("POST /api/v1/staff-calls", N, KIOSK_ONLY, "once a minute per kiosk"),
    Rule("POST /api/v1/staff-calls/answer", N, only("clerk"), "a kiosk of the clerk's halls"),
    # ---- socket.io events (anonymous: the connection itself is refused)
    Rule("event request_consultation", N, KIOSK_ONLY, "any kiosk, any enabled department"),
    Rule(
        "event cancel_request",
        C,
        {**only("kiosk"), "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404}},
    ),
    Rule(
        "event rate_consultation",
        C,
        {**only("kiosk"), "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404}},
        "once, after the end",
    ),
    Rule("event set_presence", N, DESK_ONLY),
    Rule(
        "event accept_offer",
        C,
        {
            **DESK_ONLY,
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
            "interpreter": {Relation.OWN: D409, Relation.OTHER: D404},
        },
        "own: the offer ringing for this expert (an interpreter: the call it is in)",
    ),
    Rule(
        "event decline_offer",
        C,
        {
            **DESK_ONLY,
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
            "interpreter": {Relation.OWN: D409, Relation.OTHER: D404},
        },
        "own: the offer ringing for this expert (an interpreter: the call it is in)",
    ),
    Rule(
        "event save_outcome",
        C,
        {
            **only("expert"),
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D404, Relation.OTHER: D404},
        },
        "own: a call this expert answered",
    ),
    Rule(
        "event defer_outcome",
        C,
        {
            **only("expert"),
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D404, Relation.OTHER: D404},
        },
        "own: a call this expert answered",
    ),
    Rule("event get_queue", N, DESK_ONLY, "the staff member's own department"),
    Rule(
        "event end_consultation",
        C,
        {**PARTICIPANT, "interpreter": D403},
        "any expert of the call ends it for everyone; an interpreter leaves instead",
    ),
    Rule("event send_chat", C, PARTICIPANT, "during the call"),
    Rule("event get_state", N, signed_in()),
    # ---- calls of more than two
    Rule("event invite", C, IN_CALL_EXPERT, "own: the call this expert is in"),
    Rule(
        "event cancel_invite",
        C,
        {
            **only("expert"),
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D404, Relation.OTHER: D404},
        },
        "own: an invitation this expert made",
    ),
    Rule(
        "event transfer",
        C,
        IN_CALL_EXPERT,
        "to a department its department may transfer to (else 403)",
    ),
    Rule(
        "event leave_call",
        C,
        {
            **DESK_ONLY,
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
            "interpreter": IN_IT,
        },
        "the last expert leaving ends the call",
    ),
    Rule("event share_screen", C, IN_CALL_EXPERT),
    Rule(
        "event request_recording",
        C,
        IN_CALL_EXPERT,
        "where the department records; the citizen is asked",
    ),
    Rule("event answer_recording", C, IDENTITY_GIVER, "the citizen, when asked"),
    Rule(
        "event stop_recording",
        C,
        {
            **only("kiosk", "expert"),
            "kiosk": {Relation.OWN: ALLOW, Relation.OTHER: D404},
            "expert": {Relation.OWN: ALLOW, Relation.DEPT: D409, Relation.OTHER: D404},
        },
        "either side of the call",
    ),
    Rule(
        "event share_document",
        C,
        IN_CALL_EXPERT,
        "a document of the call, for its interpreters; audited",
    ),
    # ---- call-backs and appointments (numbers in bodies only; masked in lists)
    Rule("GET /api/v1/departments/{code}/booking-settings", N, signed_in()),
    Rule("PUT /api/v1/departments/{code}/booking-settings", N, only("admin")),
    Rule("GET /api/v1/departments/{code}/slots", N, KIOSK_ONLY),
    Rule("POST /api/v1/appointments", N, KIOSK_ONLY, "2 open bookings per citizen"),
    Rule(
        "POST /api/v1/appointments/admit",
        N,
        KIOSK_ONLY,
        "any hall's kiosk; wrong codes throttled per kiosk; every attempt audited",
    ),
    Rule("GET /api/v1/appointments/today", N, EXPERT_ONLY, "the expert's department"),
    Rule("POST /api/v1/departments/{code}/closures", N, only("admin"), "notifies those booked"),
    Rule("POST /api/v1/callbacks", N, KIOSK_ONLY),
    Rule("GET /api/v1/callbacks", N, EXPERT_ONLY, "the expert's department, numbers masked"),
    Rule(
        "POST /api/v1/callbacks/{callback_id}/take",
        N,
        EXPERT_ONLY,
        "of the expert's department (another's: 404); the number in full; audited",
    ),
    Rule(
        "POST /api/v1/callbacks/{callback_id}/attempts",
        N,
        EXPERT_ONLY,
        "by the expert who took it (else 409)",
    ),
    # ---- supervision (issue 23): a supervisor within its scope, the admin everywhere
    Rule("GET /api/v1/live-calls", N, only("supervisor", "admin"), "in the supervisor's scope"),
    Rule("GET /api/v1/follow-ups", N, only("supervisor", "admin"), "in the supervisor's scope"),
    Rule(
        "POST /api/v1/supervision/{consultation_id}/listen",
        C,
        LISTENER,
        "a call going on in the supervisor's scope (outside it: 404); one listener; audited",
    ),
    Rule("GET /api/v1/supervision/{consultation_id}/listen", C, LISTENER, "one's own listening"),
    Rule("DELETE /api/v1/supervision/{consultation_id}/listen", C, LISTENER, "audited"),
    Rule(
        "POST /api/v1/supervision/{consultation_id}/join",
        C,
        LISTENER,
        "a call going on in the supervisor's scope: a participant from then on; audited",
    ),
    Rule("GET /api/v1/supervision/{consultation_id}/join", C, LISTENER, "one's own part"),
    Rule("DELETE /api/v1/supervision/{consultation_id}/join", C, LISTENER, "audited"),
    Rule(
        "POST /api/v1/follow-ups/{consultation_id}/notes",
        C,
        OVERSEER,
        "of a bad grade in the supervisor's scope (outside it: 404); audited",
    ),
    Rule(
        "POST /api/v1/follow-ups/{consultation_id}/close",
        C,
        OVERSEER,
        "with what was found and put right; audited",
    ),
)
