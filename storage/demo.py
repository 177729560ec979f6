"""The demo data set of DESIGN.md, seeded by ``--demo`` (idempotent: every node and
process of a deployment may seed the same database at once; what another created
first is kept)."""

import asyncio
import contextlib

from storage.booking_settings import DEFAULT as BOOKING_DEFAULT
from storage.booking_settings import BookingSettings
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

# What each department's experts may tick as still required after a call (一次性告知).
DEMO_MATERIALS = {
    "market": (
        "营业执照正本 / Business licence (original)",
        "法定代表人身份证 / Legal representative's ID card",
        "经营场所证明 / Proof of business premises",
        "公司章程 / Articles of association",
    ),
    "housing": (
        "户口簿原件 / Household register (original)",
        "收入证明 / Proof of income",
        "住房情况证明 / Proof of current housing",
        "婚姻状况证明 / Proof of marital status",
    ),
    "social": (
        "社保卡 / Social security card",
        "劳动合同 / Employment contract",
        "解除劳动关系证明 / Proof of end of employment",
    ),
}

DEMO_BOOKING = BookingSettings(
    availability=("1-5 09:00-12:00", "1-5 14:00-17:00"),
    slot_minutes=15,
    slot_capacity=2,
    wait_limit=600.0,
    callback_attempts=3,
    callback_expiry=86400.0,
)

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
    # No scope: the service centre's supervisor oversees every department and hall.
    ("supervisor", Role.SUPERVISOR, None, None, "服务中心督查"),
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
    # Also for a demo seeded before transfers or checklists: what is missing is added.
    for seeded in await storage.departments.list():
        materials = DEMO_MATERIALS.get(seeded.code)
        if materials and not seeded.materials:
            await storage.departments.change(
                seeded.code,
                {"materials": materials},
                audit=AuditEvent("system", "department.materials", seeded.code, {"demo": True}),
            )
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
    # Appointments mornings and afternoons, two citizens a quarter of an hour; the
    # kiosk offers a call-back or a booking beyond a 10-minute wait.
    for code, _, _ in DEMO_DEPARTMENTS:
        if await storage.booking_settings.get(code) == BOOKING_DEFAULT:
            await storage.booking_settings.put(
                code,
                DEMO_BOOKING,
                audit=AuditEvent("system", "department.booking_settings", code, {"demo": True}),
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
