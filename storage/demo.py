"""The demo data set of DESIGN.md, seeded by ``--demo`` (idempotent: every node and
process of a deployment may seed the same database at once; what another created
first is kept)."""

import asyncio
import contextlib

from storage.errors import RecordConflict, RecordNotFound
from storage.passwords import hash_password
from storage.records import AuditEvent, DepartmentKind, HallLevel, Role
from storage.store import Storage

DEMO_PASSWORD = "demo1234"  # noqa: S105 - published demo credentials, loopback only

DEMO_DEPARTMENTS = (
    ("market", "市场监管局", "Market Regulation"),
    ("housing", "住房保障局", "Housing Security"),
    ("social", "人力资源和社会保障局", "Human Resources and Social Security"),
)

# The three service departments may hand a citizen to one another.
DEMO_TRANSFERS = {
    "market": ("housing", "social"),
    "housing": ("market", "social"),
    "social": ("market", "housing"),
}

# An interpreting pool: invited into calls, never called directly.
DEMO_POOL = ("interpret", "翻译服务", "Interpreting")
DEMO_LANGUAGES = ("手语 / Sign language", "维吾尔语 / Uyghur", "藏语 / Tibetan", "英语 / English")

# (code, name_zh, name_en, level, district); both let their kiosks use the file
# chooser, so that the demo and the acceptance tests can send a file from disk.
DEMO_HALLS: tuple[tuple[str, str, str, HallLevel, str], ...] = (
    ("city", "市民中心", "Citizen Service Centre", HallLevel.CITY, ""),
    ("district", "区政务服务分中心", "District Service Branch", HallLevel.DISTRICT, "东城区"),
)

# (username, role, department, hall, display name); the clerk works at hall "city".
DEMO_ACCOUNTS: tuple[tuple[str, Role, str | None, str | None, str], ...] = (
    ("expert_market", Role.EXPERT, "market", None, "市场监管专家"),
    ("expert_housing", Role.EXPERT, "housing", None, "住房保障专家"),
    ("expert_social", Role.EXPERT, "social", None, "人社专家"),
    ("interpreter01", Role.INTERPRETER, "interpret", None, "手语翻译"),
    ("clerk", Role.CLERK, None, "city", "综合窗口"),
    ("admin", Role.ADMIN, None, None, "管理员"),
    ("kiosk01", Role.KIOSK, None, "city", "市民中心 1 号终端"),
    ("kiosk02", Role.KIOSK, None, "district", "区分中心 2 号终端"),
)


async def seed_demo(storage: Storage) -> None:
    """Create the demo departments and accounts that do not exist yet."""
    existing = {d.code for d in await storage.departments.list()}
    for code, name_zh, name_en in DEMO_DEPARTMENTS:
        if code not in existing:
            try:
                await storage.departments.create(
                    code,
                    name_zh,
                    name_en,
                    audit=AuditEvent("system", "department.create", code, {"demo": True}),
                )
            except RecordConflict:
                continue  # another process seeded it first
    if DEMO_POOL[0] not in existing:
        with contextlib.suppress(RecordConflict):  # another process seeded it first
            await storage.departments.create(
                *DEMO_POOL,
                kind=DepartmentKind.INTERPRETER,
                languages=DEMO_LANGUAGES,
                audit=AuditEvent("system", "department.create", DEMO_POOL[0], {"demo": True}),
            )
    # Also for a demo seeded before transfers: what is missing is added.
    for seeded in await storage.departments.list():
        targets = DEMO_TRANSFERS.get(seeded.code)
        if targets and not seeded.transfers_to:
            await storage.departments.change(
                seeded.code,
                {"transfers_to": targets},
                audit=AuditEvent(
                    "system",
                    "department.transfers",
                    seeded.code,
                    {"demo": True, "transfers_to": ",".join(targets)},
                ),
            )
    existing = {h.code for h in await storage.halls.list()}
    for code, name_zh, name_en, level, district in DEMO_HALLS:
        if code not in existing:
            try:
                await storage.halls.create(
                    code,
                    name_zh,
                    name_en,
                    level=level,
                    district=district,
                    allow_file_chooser=True,
                    audit=AuditEvent("system", "hall.create", code, {"demo": True}),
                )
            except RecordConflict:
                continue  # another process seeded it first
    encoded = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    for username, role, department, hall, display_name in DEMO_ACCOUNTS:
        try:
            await storage.accounts.get_by_username(username)
            continue
        except RecordNotFound:
            pass
        try:
            await storage.accounts.create(
                username,
                DEMO_PASSWORD,
                role,
                department=department,
                hall=hall if role is Role.KIOSK else None,
                halls=[hall] if role is Role.CLERK and hall is not None else [],
                display_name=display_name,
                password_hash=encoded,
                audit=AuditEvent("system", "account.create", username, {"role": role.value}),
            )
        except RecordConflict:
            continue  # another process seeded it first
