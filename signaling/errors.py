"""Signaling errors, each carrying the code sent to the client.

SignalingError                 code "signaling_error"
 ├── InvalidPayload            "invalid_payload"    the event's data does not fit its model
 ├── NotAuthenticated          "unauthorized"       no valid session
 ├── Forbidden                 "forbidden"          the role or account may not do this
 ├── NotFound                  "not_found"          no such consultation or department (for you)
 ├── InvalidState              "invalid_state"      not possible in the consultation's state
 │   ├── AlreadyInConsultation "already_in_consultation"
 │   ├── CallFull              "call_full"          four take part (or are invited) already
 │   └── ListenedAlready       "listened_already"   another supervisor listens to the call
 ├── RateLimited               "rate_limited"       too much too fast (chat lines, events)
 └── Unavailable               "unavailable"        the live state or the records cannot be
                                                    reached now (Redis or the database down)

They become error acks in ``signaling.gateway`` and HTTP errors in ``web.errors``.
"""


class SignalingError(Exception):
    code = "signaling_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPayload(SignalingError):
    code = "invalid_payload"


class NotAuthenticated(SignalingError):
    code = "unauthorized"


class Forbidden(SignalingError):
    code = "forbidden"


class NotFound(SignalingError):
    code = "not_found"


class InvalidState(SignalingError):
    code = "invalid_state"


class AlreadyInConsultation(InvalidState):
    code = "already_in_consultation"


class CallFull(InvalidState):
    code = "call_full"


class ListenedAlready(InvalidState):
    code = "listened_already"


class RateLimited(SignalingError):
    code = "rate_limited"


class Unavailable(SignalingError):
    code = "unavailable"
