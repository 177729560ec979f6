"""Appointments: a department's booking settings (set by the admin), its free slots
and booking at the kiosk, the booking code admitted at any hall's kiosk, the expert
desk's list of today's appointments, and a cancelled day (its citizens notified)."""

import time
from datetime import datetime

from aiohttp import web

from storage.appointments import Admission, Appointment, Citizen, typed_code
from storage.booking_settings import BookingSettings
from storage.errors import RecordNotFound
from storage.identity_numbers import problem
from storage.records import Department, Role
from storage.sensitive import Kind, mask
from web.api import ANY_ACCOUNT, Api, account_of, audit_of, read_body, reply
from web.auth import BookingCodeThrottle, remote_address
from web.booking_schemas import (
    AdmissionView,
    AdmitRequest,
    AppointmentList,
    AppointmentView,
    BookingRequest,
    BookingSettingsBody,
    BookingSettingsView,
    BookingView,
    ClosureRequest,
    ClosureView,
    SlotList,
    SlotView,
)
from web.errors import BadRequest, Conflict, NotFound, TooManyRequests
from web.identity_api import PROBLEM_MESSAGES
from web.keys import NOTICES, SENSITIVE, STORAGE
from web.notices import Notice, NoticeType, local_date_time

api = Api()
ADMIN = frozenset({Role.ADMIN})
KIOSK = frozenset({Role.KIOSK})
EXPERT = frozenset({Role.EXPERT})

REFUSALS = {
    Admission.TOO_EARLY: "too early: the code opens 10 minutes before the booked time",
    Admission.TOO_LATE: "too late: the code closed 15 minutes after the booked time",
    Admission.USED: "this booking was used already",
    Admission.CANCELLED: "this booking was cancelled",
}


def settings_view(code: str, settings: BookingSettings) -> BookingSettingsView:
    return BookingSettingsView(
        department=code,
        availability=list(settings.availability),
        slot_minutes=settings.slot_minutes,
        slot_capacity=settings.slot_capacity,
        wait_limit_s=settings.wait_limit,
        callback_attempts=settings.callback_attempts,
        callback_expiry_s=settings.callback_expiry,
    )


async def _department(request: web.Request, code: str) -> Department:
    try:
        department = await request.app[STORAGE].departments.get(code)
    except RecordNotFound:
        raise NotFound("no such department") from None
    return department


def notice_fields(department: Department, slot_at: float, **more: str) -> dict[str, str]:
    day, clock = local_date_time(slot_at)
    return {
        "department": department.name_zh,
        "department_en": department.name_en,
        "date": day,
        "time": clock,
        **more,
    }


async def _view(request: web.Request, booking: Appointment) -> AppointmentView:
    """The booking as staff see it: numbers masked."""
    sensitive = request.app[SENSITIVE]
    phone = (
        mask(await sensitive.reveal(Kind.PHONE, booking.phone_sealed))
        if booking.phone_sealed
        else None
    )
    number = (
        mask(await sensitive.reveal(Kind.ID_NUMBER, booking.id_sealed))
        if booking.id_sealed
        else None
    )
    return AppointmentView(
        id=booking.id,
        department=booking.department,
        slot_at=booking.slot_at,
        slot_minutes=booking.slot_minutes,
        state=booking.state.value,
        hall=booking.hall,
        phone_masked=phone,
        id_number_masked=number,
    )


@api.route(
    "GET",
    "/api/v1/departments/{code}/booking-settings",
    summary="A department's call-back and appointment settings: weekly availability, slot "
    "length and seats, the wait beyond which the kiosk offers a call-back or a booking, "
    "call-back attempts and expiry (defaults where the admin set none).",
    roles=ANY_ACCOUNT,
    response=BookingSettingsView,
    tag="appointments",
)
async def get_booking_settings(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    await _department(request, code)
    settings = await request.app[STORAGE].booking_settings.get(code)
    return reply(settings_view(code, settings))


@api.route(
    "PUT",
    "/api/v1/departments/{code}/booking-settings",
    summary="Set a department's call-back and appointment settings (every field; "
    "call-backs expire within 3 days at most).",
    roles=ADMIN,
    body=BookingSettingsBody,
    response=BookingSettingsView,
    tag="appointments",
)
async def put_booking_settings(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    body = await read_body(request, BookingSettingsBody)
    settings = BookingSettings(
        availability=tuple(body.availability),
        slot_minutes=body.slot_minutes,
        slot_capacity=body.slot_capacity,
        wait_limit=body.wait_limit_s,
        callback_attempts=body.callback_attempts,
        callback_expiry=body.callback_expiry_s,
    )
    try:
        await request.app[STORAGE].booking_settings.put(
            code,
            settings,
            audit=audit_of(request, "department.booking_settings", code),
        )
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_body") from None
    except RecordNotFound:
        raise NotFound("no such department") from None
    return reply(settings_view(code, settings))


@api.route(
    "GET",
    "/api/v1/departments/{code}/slots",
    summary="The department's free appointment slots of the next 14 days (the server's "
    "local time), each with its free seats.",
    roles=KIOSK,
    response=SlotList,
    tag="appointments",
)
async def free_slots(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    storage = request.app[STORAGE]
    department = await _department(request, code)
    if department.disabled:
        raise NotFound("no such department")
    slots = await storage.appointments.free_slots(code, time.time())
    settings = await storage.booking_settings.get(code)
    return reply(
        SlotList(
            department=code,
            slot_minutes=settings.slot_minutes,
            slots=[SlotView(at=s.at.timestamp(), free=s.free) for s in slots],
        )
    )


@api.route(
    "POST",
    "/api/v1/appointments",
    summary="Book a free slot for a citizen identified by a mainland mobile number or an "
    "identity number (at most 2 open bookings each): the booking code, shown once. "
    "409 when the slot is not free or the citizen holds 2 open bookings.",
    roles=KIOSK,
    body=BookingRequest,
    response=BookingView,
    status=201,
    tag="appointments",
    errors=(404, 409),
)
async def book(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, BookingRequest)
    if body.phone is None and body.id_number is None:
        raise BadRequest("give a mobile number or an identity number", code="invalid_body")
    if body.id_number is not None:
        found = problem(body.id_number)
        if found is not None:
            raise BadRequest(PROBLEM_MESSAGES[found], code=f"invalid_id_number.{found.value}")
    kiosk = account_of(request)
    department = await _department(request, body.department)
    sensitive = request.app[SENSITIVE]
    phone = await sensitive.seal(Kind.PHONE, body.phone) if body.phone else None
    number = await sensitive.seal(Kind.ID_NUMBER, body.id_number) if body.id_number else None
    citizen = Citizen(
        phone_lookup=phone.lookup if phone else None,
        phone_sealed=phone.sealed if phone else None,
        id_lookup=number.lookup if number else None,
        id_sealed=number.sealed if number else None,
    )
    code, booking = await request.app[STORAGE].appointments.book(
        body.department,
        body.slot_at,
        citizen,
        kiosk_id=kiosk.id,
        hall=kiosk.hall,
        now=time.time(),
        audit=audit_of(
            request,
            "appointment.book",
            body.department,
            phone_given=phone is not None,
            id_number_given=number is not None,
        ),
    )
    if body.phone is not None:
        await request.app[NOTICES].send(
            Notice(
                NoticeType.BOOKING_CONFIRMED,
                body.phone,
                booking.id,
                body.department,
                notice_fields(department, booking.slot_at, code=code),
            ),
            actor=kiosk.username,
            remote=remote_address(request),
        )
    return reply(BookingView(booking_code=code, appointment=await _view(request, booking)), 201)


@api.route(
    "POST",
    "/api/v1/appointments/admit",
    summary="A booking code typed on the kiosk's start screen (any hall): admitted from "
    "10 minutes before the slot to 15 after, the kiosk then requests a consultation of "
    "the department with appointment: true and waits at the head of its queue. 404 "
    "unknown code, 409 outside its window (code too_early, too_late, used, cancelled); "
    "wrong codes are throttled per kiosk (429). Every attempt is audited (never the code).",
    roles=KIOSK,
    body=AdmitRequest,
    response=AdmissionView,
    tag="appointments",
    errors=(404, 409, 429),
)
async def admit(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, AdmitRequest)
    kiosk = account_of(request)
    storage = request.app[STORAGE]
    throttle = BookingCodeThrottle(request, kiosk.id)
    try:
        await throttle.admit()
    except TooManyRequests:
        await storage.audit.append(
            audit_of(request, "appointment.admit", "appointments", result="throttled")
        )
        raise
    code = typed_code(body.code)
    if code is None:
        await storage.audit.append(
            audit_of(request, "appointment.admit", "appointments", result="malformed")
        )
        raise NotFound("no booking has this code", code="unknown_code")
    try:
        verdict, booking = await storage.appointments.admit(
            code,
            kiosk.id,
            time.time(),
            audit=audit_of(request, "appointment.admit", "appointments"),
        )
    except Exception:
        # Never checked: the attempt does not count.
        await throttle.take_back()
        raise
    if verdict is Admission.UNKNOWN or booking is None:
        raise NotFound("no booking has this code", code="unknown_code")
    # A code that exists is no guess, whatever its window says.
    await throttle.take_back()
    if verdict is not Admission.ADMITTED:
        raise Conflict(REFUSALS[verdict], code=verdict.value)
    department = await _department(request, booking.department)
    return reply(
        AdmissionView(
            department=department.code,
            name_zh=department.name_zh,
            name_en=department.name_en,
            slot_at=booking.slot_at,
        )
    )


@api.route(
    "GET",
    "/api/v1/appointments/today",
    summary="For the expert desk: today's appointments of the expert's department (the "
    "server's local date), by time, numbers masked.",
    roles=EXPERT,
    response=AppointmentList,
    tag="appointments",
)
async def today(request: web.Request) -> web.StreamResponse:
    account = account_of(request)
    day = datetime.now().astimezone().date().isoformat()
    if account.department is None:
        return reply(AppointmentList(day=day, appointments=[]))
    bookings = await request.app[STORAGE].appointments.of_day(account.department, day)
    return reply(AppointmentList(day=day, appointments=[await _view(request, b) for b in bookings]))


@api.route(
    "POST",
    "/api/v1/departments/{code}/closures",
    summary="The department keeps no appointments on a day: no slots are offered and "
    "every booking of that day is cancelled, each citizen with a number notified.",
    roles=ADMIN,
    body=ClosureRequest,
    response=ClosureView,
    tag="appointments",
)
async def cancel_day(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    body = await read_body(request, ClosureRequest)
    try:
        datetime.strptime(body.day, "%Y-%m-%d")
    except ValueError:
        raise BadRequest("day: not a date (YYYY-MM-DD)", code="invalid_body") from None
    department = await _department(request, code)
    account = account_of(request)
    cancelled = await request.app[STORAGE].appointments.cancel_day(
        code,
        body.day,
        body.reason,
        by=account.username,
        now=time.time(),
        audit=audit_of(request, "appointment.cancel_day", code, day=body.day),
    )
    sensitive = request.app[SENSITIVE]
    notices = [
        Notice(
            NoticeType.CANCELLED,
            await sensitive.reveal(Kind.PHONE, booking.phone_sealed),
            booking.id,
            code,
            notice_fields(department, booking.slot_at, reason=body.reason),
        )
        for booking in cancelled
        if booking.phone_sealed is not None
    ]
    notified = await request.app[NOTICES].send_all(
        notices, actor=account.username, remote=remote_address(request)
    )
    return reply(
        ClosureView(department=code, day=body.day, cancelled=len(cancelled), notified=notified)
    )
