"""Departments and accounts: listed by staff, changed by admins."""

from aiohttp import web

from storage.password_policy import MESSAGES, weakness
from storage.records import DESK_ROLES, Account, DepartmentKind, Role, Scope
from web.api import ANY_ACCOUNT, Api, account_of, audit_of, read_body, reply
from web.errors import BadRequest
from web.keys import SIGNALING, STORAGE
from web.schemas import (
    AccountCreate,
    AccountList,
    AccountPatch,
    AccountView,
    DepartmentCreate,
    DepartmentList,
    DepartmentPatch,
    DepartmentView,
)

api = Api()
ADMIN = frozenset({Role.ADMIN})


def _check_password(password: str, username: str, role: Role) -> None:
    problem = weakness(password, username, staff=role is not Role.KIOSK)
    if problem is not None:
        raise BadRequest(MESSAGES[problem], code="weak_password")


@api.route(
    "GET",
    "/api/v1/departments",
    summary="Departments (enabled ones, or all for admins).",
    roles=ANY_ACCOUNT,
    response=DepartmentList,
    tag="admin",
)
async def list_departments(request: web.Request) -> web.StreamResponse:
    everything = account_of(request).role is Role.ADMIN
    departments = await request.app[STORAGE].departments.list(include_disabled=everything)
    return reply(DepartmentList(departments=[DepartmentView.of(d) for d in departments]))


@api.route(
    "POST",
    "/api/v1/departments",
    summary="Create a department.",
    roles=ADMIN,
    body=DepartmentCreate,
    response=DepartmentView,
    status=201,
    tag="admin",
    errors=(409,),
)
async def create_department(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, DepartmentCreate)
    if body.kind == "interpreter" and body.transfers_to:
        raise BadRequest("an interpreting pool transfers to nobody", code="invalid_body")
    department = await request.app[STORAGE].departments.create(
        body.code,
        body.name_zh,
        body.name_en,
        hours=body.hours,
        kind=DepartmentKind(body.kind),
        languages=body.languages,
        transfers_to=body.transfers_to,
        audit=audit_of(request, "department.create", body.code, kind=body.kind),
    )
    return reply(DepartmentView.of(department), status=201)


@api.route(
    "PATCH",
    "/api/v1/departments/{code}",
    summary="Disable or enable a department, set its usual hours, make it an interpreting "
    "pool with its languages, or set the departments its experts may transfer to (404: one "
    "of them does not exist; 409: one is an interpreting pool, or itself).",
    roles=ADMIN,
    body=DepartmentPatch,
    response=DepartmentView,
    tag="admin",
    errors=(404, 409),
)
async def patch_department(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, DepartmentPatch)
    code = request.match_info["code"]
    values: dict[str, str | bool | list[str]] = body.model_dump(exclude_none=True)
    if not values:
        raise BadRequest("nothing to change", code="invalid_body")
    if body.kind == "interpreter" and body.transfers_to:
        raise BadRequest("an interpreting pool transfers to nobody", code="invalid_body")
    if body.disabled is not None:
        action = "department.disable" if body.disabled else "department.enable"
    elif body.transfers_to is not None:
        action = "department.transfers"
    elif body.materials is not None:
        action = "department.materials"
    elif body.recording is not None:
        action = "department.recording"
    elif body.kind is not None or body.languages is not None:
        action = "department.interpreting"
    else:
        action = "department.hours"
    detail = {k: ",".join(v) if isinstance(v, list) else v for k, v in values.items()}
    department = await request.app[STORAGE].departments.change(
        code, values, audit=audit_of(request, action, code, **detail)
    )
    return reply(DepartmentView.of(department))


@api.route(
    "GET",
    "/api/v1/accounts",
    summary="All accounts.",
    roles=ADMIN,
    response=AccountList,
    tag="admin",
)
async def list_accounts(request: web.Request) -> web.StreamResponse:
    storage = request.app[STORAGE]
    accounts = await storage.accounts.list()
    clerk_halls = await storage.halls.clerks()
    scopes = await storage.scopes.all()
    return reply(
        AccountList(
            accounts=[
                AccountView.of(a, clerk_halls.get(a.id), _scope_view(a, scopes)) for a in accounts
            ]
        )
    )


def _scope_view(account: Account, scopes: dict[str, Scope]) -> Scope | None:
    """A supervisor's scope for its view (the empty one: everything); None for others."""
    return scopes.get(account.id, Scope()) if account.role is Role.SUPERVISOR else None


@api.route(
    "POST",
    "/api/v1/accounts",
    summary="Create an account.",
    roles=ADMIN,
    body=AccountCreate,
    response=AccountView,
    status=201,
    tag="admin",
    # 404: the expert's department or a hall does not exist; 409: the username is taken.
    errors=(404, 409),
)
async def create_account(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, AccountCreate)
    role = Role(body.role)
    if (role in DESK_ROLES) != (body.department is not None):
        raise BadRequest(
            "experts and interpreters, and only they, have a department", code="invalid_body"
        )
    if (role is Role.KIOSK) != (body.hall is not None):
        raise BadRequest("kiosks, and only kiosks, stand in a hall", code="invalid_body")
    supervisor = role is Role.SUPERVISOR
    if role is not Role.CLERK and not supervisor and body.halls is not None:
        raise BadRequest(
            "only clerks work at halls and supervisors oversee them", code="invalid_body"
        )
    if not supervisor and body.departments is not None:
        raise BadRequest("only supervisors oversee departments", code="invalid_body")
    _check_password(body.password, body.username, role)
    halls = sorted(set(body.halls or []))
    scope = Scope(tuple(sorted(set(body.departments or []))), tuple(halls)) if supervisor else None
    detail: dict[str, str | bool] = {"role": role.value}
    if body.hall is not None or halls:
        detail["halls"] = ",".join(halls or [body.hall or ""])
    if scope is not None:
        detail["departments"] = ",".join(scope.departments)
    account = await request.app[STORAGE].accounts.create(
        body.username,
        body.password,
        role,
        department=body.department,
        hall=body.hall,
        halls=[] if supervisor else halls,
        display_name=body.display_name,
        audit=audit_of(request, "account.create", body.username, **detail),
        scope=scope,
    )
    return reply(AccountView.of(account, halls, scope), status=201)


@api.route(
    "PATCH",
    "/api/v1/accounts/{username}",
    summary="Disable or enable an account, reset its password (ends its sessions), move a "
    "kiosk to another hall or set a clerk's halls.",
    roles=ADMIN,
    body=AccountPatch,
    response=AccountView,
    tag="admin",
    # 409: disabling the last enabled admin.
    errors=(409,),
)
async def patch_account(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, AccountPatch)
    username = request.match_info["username"]
    storage = request.app[STORAGE]
    if body.model_dump(exclude_none=True) == {}:
        raise BadRequest("nothing to change", code="invalid_body")
    account = await storage.accounts.get_by_username(username)
    if body.hall is not None and account.role is not Role.KIOSK:
        raise BadRequest("only kiosks stand in a hall", code="invalid_body")
    supervisor = account.role is Role.SUPERVISOR
    if body.halls is not None and account.role is not Role.CLERK and not supervisor:
        raise BadRequest(
            "only clerks work at halls and supervisors oversee them", code="invalid_body"
        )
    if body.departments is not None and not supervisor:
        raise BadRequest("only supervisors oversee departments", code="invalid_body")
    if body.hall is not None:
        account = await storage.accounts.set_hall(
            username, body.hall, audit=audit_of(request, "account.hall", username, halls=body.hall)
        )
    if supervisor and (body.halls is not None or body.departments is not None):
        # What is not given stays as it was: the scope is replaced as one.
        current = await storage.scopes.of(account.id)
        wanted = Scope(
            tuple(body.departments) if body.departments is not None else current.departments,
            tuple(body.halls) if body.halls is not None else current.halls,
        )
        await storage.scopes.set(
            username,
            wanted,
            audit=audit_of(
                request,
                "account.scope",
                username,
                departments=",".join(sorted(set(wanted.departments))),
                halls=",".join(sorted(set(wanted.halls))),
            ),
        )
    elif body.halls is not None:
        await storage.halls.set_clerk_halls(
            username,
            body.halls,
            audit=audit_of(
                request, "account.hall", username, halls=",".join(sorted(set(body.halls)))
            ),
        )
    if body.password is not None:
        _check_password(body.password, username, account.role)
        await storage.accounts.set_password(
            username, body.password, audit=audit_of(request, "account.password_reset", username)
        )
    if body.disabled is not None:
        account = await storage.accounts.set_disabled(
            username,
            body.disabled,
            audit=audit_of(
                request, "account.disable" if body.disabled else "account.enable", username
            ),
        )
    if body.disabled or body.password is not None:
        await request.app[SIGNALING].disconnect_account(account.id)
    clerk_halls = await storage.halls.clerks()
    scope = await storage.scopes.of(account.id) if supervisor else None
    return reply(AccountView.of(account, clerk_halls.get(account.id), scope))
