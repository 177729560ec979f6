"""The audit log for admins: entries with filters, and the chain's verification."""

import json
import time

from aiohttp import web
from pydantic import ValidationError

from storage.errors import AuditChainBroken
from storage.records import Role
from web.api import Api, reply
from web.errors import BadRequest
from web.keys import STORAGE
from web.schemas import AuditEntryView, AuditList, AuditQuery, AuditVerification

api = Api()
ADMIN = frozenset({Role.ADMIN})


@api.route(
    "GET",
    "/api/v1/audit",
    summary="Audit entries, newest first; page with before=<seq of the last one shown>.",
    roles=ADMIN,
    response=AuditList,
    tag="audit",
    query=(
        ("actor", "username, or 'system'"),
        ("action", "an action or its family: 'account' or 'account.create'"),
        ("subject", "what the entry is about (an id, a username, a code)"),
        ("before", "only entries with a smaller sequence number"),
        ("limit", "at most this many (1-200, default 50)"),
    ),
    query_model=AuditQuery,
)
async def audit_entries(request: web.Request) -> web.StreamResponse:
    raw = {k: v for k, v in request.query.items() if v != ""}
    if any("\x00" in v for v in raw.values()):
        # PostgreSQL cannot compare text with U+0000 (it answered 500).
        raise BadRequest("bad audit filter", code="invalid_query")
    try:
        query = AuditQuery.model_validate(raw)
    except ValidationError:
        raise BadRequest("bad audit filter", code="invalid_query") from None
    entries = await request.app[STORAGE].audit.search(
        actor=query.actor,
        action=query.action,
        subject=query.subject,
        before_seq=query.before,
        limit=query.limit,
    )
    views = [
        AuditEntryView(
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            detail=json.loads(e.detail),
            remote=e.remote,
        )
        for e in entries
    ]
    return reply(AuditList(entries=views))


@api.route(
    "GET",
    "/api/v1/audit/verify",
    summary="Check the whole hash chain now (as `server.py audit verify` does).",
    roles=ADMIN,
    response=AuditVerification,
    tag="audit",
)
async def verify_audit(request: web.Request) -> web.StreamResponse:
    checked_at = time.time()
    try:
        count = await request.app[STORAGE].audit.verify()
    except AuditChainBroken as exc:
        return reply(
            AuditVerification(
                intact=False,
                entries=exc.seq - 1,
                broken_seq=exc.seq,
                reason=exc.reason,
                checked_at=checked_at,
            )
        )
    return reply(
        AuditVerification(
            intact=True, entries=count, broken_seq=None, reason=None, checked_at=checked_at
        )
    )
