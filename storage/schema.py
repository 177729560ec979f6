"""The current shape of every table, for queries.

The DDL that creates them lives in ``storage.migrations``; a test checks that
the migrated database and these definitions agree. Times are UNIX seconds
(float), ids are random text, so that SQLite and PostgreSQL share one code path
without relying on either's autoincrement.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)

departments = Table(
    "departments",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name_zh", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("hours", Text, nullable=False),
    # service | interpreter (storage.records.DepartmentKind).
    Column("kind", Text, nullable=False, server_default="service"),
    # JSON lists: an interpreting pool's languages; the codes its experts may transfer to.
    Column("languages", Text, nullable=False, server_default="[]"),
    Column("transfers_to", Text, nullable=False, server_default="[]"),
    # JSON [{"zh": ..., "en": ...}, ...]: the checklist of materials the admin keeps,
    # which the expert ticks as still required after a call (一次性告知).
    Column("materials", Text, nullable=False, server_default="[]"),
    # Whether its experts may ask to record a call (with the citizen's consent).
    Column("recording", Boolean, nullable=False, server_default="false"),
)

# Service halls (the city's centre, district branches, street offices): kiosks stand
# in one, clerks work at one or more (clerk_halls).
halls = Table(
    "halls",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name_zh", Text, nullable=False),
    Column("name_en", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("district", Text, nullable=False),
    Column("allow_file_chooser", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

clerk_halls = Table(
    "clerk_halls",
    metadata,
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("hall", Text, ForeignKey("halls.code"), primary_key=True),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("username", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("department", Text, ForeignKey("departments.code"), nullable=True),
    Column("hall", Text, nullable=True),
    Column("display_name", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("remote", Text, nullable=False),
)

consultations = Table(
    "consultations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("kiosk_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("hall", Text, nullable=True),
    Column("department", Text, ForeignKey("departments.code"), nullable=False),
    Column("expert_id", Text, ForeignKey("accounts.id"), nullable=True),
    Column("case_number", Text, nullable=True),
    Column("state", Text, nullable=False),
    Column("waiting_at", Float, nullable=False),
    Column("offered_at", Float, nullable=True),
    Column("active_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("end_reason", Text, nullable=True),
    Column("ended_by", Text, nullable=True),
    Column("outcome", Text, nullable=True),
    Column("notes", Text, nullable=True),
    Column("rating", SmallInteger, nullable=True),
    # The short reference the kiosk shows the citizen (storage.references).
    Column("reference", Text, nullable=True),
    # 好差评 (storage.records.Grade; ``rating`` keeps its 1-5 score), with a bad grade's
    # reason from the kiosk's list and the citizen's own words.
    Column("grade", Text, nullable=True),
    Column("grade_reason", Text, nullable=True),
    Column("grade_comment", Text, nullable=True),
)

# Each staff member's part in a consultation (storage.legs): the first expert's, each
# joiner's, the one a transfer hands it to. ``invitation`` makes a join happen once.
consultation_legs = Table(
    "consultation_legs",
    metadata,
    Column("consultation_id", Text, ForeignKey("consultations.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("role", Text, nullable=False),
    Column("department", Text, nullable=False),
    Column("position", SmallInteger, nullable=False),
    Column("joined_at", Float, nullable=False),
    Column("left_at", Float, nullable=True),
    Column("reason", Text, nullable=True),
    Column("invited_by", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("outcome", Text, nullable=True),
    Column("notes", Text, nullable=True),
    # JSON list of what this expert said the citizen must still bring (the slip).
    Column("materials", Text, nullable=True),
    Column("invitation", Text, nullable=True, unique=True),
)

# Documents an expert of the call shared with its interpreters (storage.shares).
document_shares = Table(
    "document_shares",
    metadata,
    Column("file_id", Text, ForeignKey("files.id"), primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("shared_by", Text, ForeignKey("accounts.id"), nullable=False),
    Column("shared_at", Float, nullable=False),
)

chat_messages = Table(
    "chat_messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("sender_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("sender_role", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("sent_at", Float, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("remote", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    # The audit key whose HMAC ``hash`` is ('' for the unkeyed SHA-256 entries made
    # before keyed chains; storage.audit_keys).
    Column("key_id", Text, nullable=False, server_default=""),
)

# One row: the newest entry's seq and hash. Appenders lock it, which serialises
# appends across processes on PostgreSQL, and it reveals a truncated tail.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", Text, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("id", Text, primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("uploader_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("uploader_role", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("media_type", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("digest", Text, nullable=False),
    Column("digest_alg", Text, nullable=False),
    Column("suite", SmallInteger, nullable=False),
    Column("kek_id", Text, nullable=False),
    Column("wrapped_key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    # Set when retention destroyed the data key (wrapped_key and kek_id are then '').
    Column("shredded_at", Float, nullable=True),
)

case_attachments = Table(
    "case_attachments",
    metadata,
    Column("case_number", Text, primary_key=True),
    Column("file_id", Text, ForeignKey("files.id"), primary_key=True),
    Column("category", Text, nullable=False),
    Column("attached_by", Text, ForeignKey("accounts.id"), nullable=False),
    Column("attached_at", Float, nullable=False),
)

# Key-encryption keys shared by a cluster (--master-key-file): each sealed under a
# key derived from the master key, which is never stored here; the active one is
# the latest activated.
keks = Table(
    "keks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("suite", SmallInteger, nullable=False),
    Column("sealed", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("activated_at", Float, nullable=False),
)

# Uploads in progress, shared by every process and node: the verified parts'
# ciphertext is in the blob store (``segments``, in order), the plaintext not yet
# sealed into a chunk is kept sealed under the data key (``carry``), and the data
# key wrapped by a KEK, so that any process can take the next part.
uploads = Table(
    "uploads",
    metadata,
    Column("id", Text, primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("uploader_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("declared_size", BigInteger, nullable=False),
    Column("received", BigInteger, nullable=False),
    Column("next_chunk", Integer, nullable=False),
    Column("carry", Text, nullable=False),
    Column("segments", Text, nullable=False),
    Column("suite", SmallInteger, nullable=False),
    Column("kek_id", Text, nullable=False),
    Column("wrapped_key", Text, nullable=False),
    Column("nonce_prefix", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("last_activity", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Keys of retention periods (storage.periodkeys): each wraps the data keys of the
# documents uploaded in its period (a UTC day) and is itself wrapped by a KEK. When
# every document of a period is shredded and the period is over, its key is
# destroyed: ``kek_id`` and ``wrapped`` become '' and ``destroyed_at`` is set.
period_keys = Table(
    "period_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("period", Text, nullable=False),
    Column("suite", SmallInteger, nullable=False),
    Column("kek_id", Text, nullable=False),
    Column("wrapped", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("destroyed_at", Float, nullable=True),
    # When the destroyed key's older row versions were erased from the database's
    # files (PostgreSQL: once no transaction could still see them).
    Column("erased_at", Float, nullable=True),
)

# Blobs this deployment means to create or no longer needs (storage.intents): a row
# is written before a blob is put and removed in the unit of work that records what
# the blob holds (the document, the upload's part). Tidying removes only blobs with
# a row older than a grace period and no record: a blob without a row is someone
# else's, or unknown, and is never removed.
blob_intents = Table(
    "blob_intents",
    metadata,
    Column("name", Text, primary_key=True),
    Column("kind", Text, primary_key=True),
    Column("created_at", Float, nullable=False),
)

# One row: this deployment's id, made once. The blob store carries it as its owner
# marker (storage.ownership): a node of another deployment refuses the store.
deployment = Table(
    "deployment",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("deployment_id", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# One-time links with which a citizen's phone sends photos into a call
# (storage.phone_links): hashes of the link's token and of its one claim.
phone_links = Table(
    "phone_links",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("kiosk_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("claimed_at", Float, nullable=True),
    Column("claim_hash", Text, nullable=True),
    Column("files_allowed", Integer, nullable=False),
    Column("files_received", Integer, nullable=False),
    Column("send_until", Float, nullable=True),
    # JSON [[name, size], ...]: the claim's files that have not arrived yet.
    Column("announced", Text, nullable=True),
)

# The keys of sensitive values (storage.sensitive): "lookup" (HMAC) and "seal",
# each wrapped by a KEK of the key ring.
sensitive_keys = Table(
    "sensitive_keys",
    metadata,
    Column("purpose", Text, primary_key=True),
    Column("kek_id", Text, nullable=False),
    Column("wrapped", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A citizen's identity number given at the kiosk for one consultation: only its
# lookup HMAC and its sealed value; whether the citizen let experts of the same
# department see their earlier consultations.
consultation_identities = Table(
    "consultation_identities",
    metadata,
    Column("consultation_id", Text, ForeignKey("consultations.id"), primary_key=True),
    Column("lookup", Text, nullable=False, index=True),
    Column("sealed", Text, nullable=False),
    Column("history_consent", Boolean, nullable=False),
    Column("given_at", Float, nullable=False),
)

# Call-backs and appointments (issue 22; storage.booking_settings, storage.appointments,
# storage.callbacks). A phone number or identity number is kept only as its lookup
# HMAC and its sealed value (storage.sensitive).

# A department's weekly availability for appointments (JSON list of "1-5 09:00-12:00",
# the deployment's local time), its slot length and bookings per slot, the wait beyond
# which the kiosk offers a call-back or a booking, and its call-backs' attempts and
# expiry (seconds).
booking_settings = Table(
    "booking_settings",
    metadata,
    Column("department", Text, ForeignKey("departments.code"), primary_key=True),
    Column("availability", Text, nullable=False),
    Column("slot_minutes", Integer, nullable=False),
    Column("slot_capacity", Integer, nullable=False),
    Column("wait_limit", Float, nullable=False),
    Column("callback_attempts", Integer, nullable=False),
    Column("callback_expiry", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Days a department cancelled (local date YYYY-MM-DD): no slots offered, bookings cancelled.
appointment_closures = Table(
    "appointment_closures",
    metadata,
    Column("department", Text, ForeignKey("departments.code"), primary_key=True),
    Column("day", Text, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("closed_by", Text, nullable=False),
    Column("closed_at", Float, nullable=False),
)

# A booked slot. ``seat`` (0 .. capacity-1) is unique with (department, slot_at) in the
# migration, so that of two bookings of a slot's last seat one fails; a cancelled
# booking's seat is NULL (free again). The booking code is kept only as its hash.
appointments = Table(
    "appointments",
    metadata,
    Column("id", Text, primary_key=True),
    Column("code_hash", Text, nullable=False, unique=True),
    Column("department", Text, ForeignKey("departments.code"), nullable=False),
    Column("slot_at", Float, nullable=False),
    Column("slot_minutes", Integer, nullable=False),
    Column("day", Text, nullable=False),
    Column("seat", Integer, nullable=True),
    # booked | admitted | queued | cancelled (storage.appointments.BookingState)
    Column("state", Text, nullable=False),
    Column("kiosk_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("hall", Text, nullable=True),
    Column("phone_lookup", Text, nullable=True),
    Column("phone_sealed", Text, nullable=True),
    Column("id_lookup", Text, nullable=True),
    Column("id_sealed", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("admitted_by", Text, nullable=True),
    Column("admitted_at", Float, nullable=True),
    Column("consultation_id", Text, nullable=True),
    Column("cancelled_at", Float, nullable=True),
    Column("reminded_at", Float, nullable=True),
)

# A citizen's request to be called back; ``queued_at`` is when they first queued (their
# place among the department's call-backs).
callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("department", Text, ForeignKey("departments.code"), nullable=False),
    Column("kiosk_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("hall", Text, nullable=True),
    Column("consultation_id", Text, nullable=True),
    Column("case_number", Text, nullable=True),
    Column("note", Text, nullable=False),
    Column("phone_lookup", Text, nullable=False),
    Column("phone_sealed", Text, nullable=False),
    Column("queued_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    # open | taken | done | unreached | expired (storage.callbacks.CallbackState)
    Column("state", Text, nullable=False),
    Column("taken_by", Text, nullable=True),
    Column("taken_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("outcome", Text, nullable=True),
)

callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("callback_id", Text, ForeignKey("callbacks.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("expert_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("at", Float, nullable=False),
    Column("result", Text, nullable=False),
    Column("note", Text, nullable=False),
)

# 好差评 follow-ups (issue 23; storage.followups): every bad grade opens one for its
# department's supervisors, open -> contacted -> closed, overdue after ``due_at``.
follow_ups = Table(
    "follow_ups",
    metadata,
    Column("consultation_id", Text, ForeignKey("consultations.id"), primary_key=True),
    Column("department", Text, ForeignKey("departments.code"), nullable=False),
    Column("hall", Text, nullable=True),
    Column("grade", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("comment", Text, nullable=True),
    # open | contacted | closed (storage.records.FollowUpState)
    Column("state", Text, nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("contacted_at", Float, nullable=True),
    Column("closed_at", Float, nullable=True),
    Column("closed_by", Text, nullable=True),
)

# What the supervisors wrote on a follow-up, in order (contact made, what was found,
# what was put right, the closing word).
follow_up_notes = Table(
    "follow_up_notes",
    metadata,
    Column("consultation_id", Text, ForeignKey("follow_ups.consultation_id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("author", Text, nullable=False),
    Column("at", Float, nullable=False),
)

# A supervisor's scope (storage.scopes): the departments and halls it oversees; none
# of either means all of them.
supervisor_departments = Table(
    "supervisor_departments",
    metadata,
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("department", Text, ForeignKey("departments.code"), primary_key=True),
)

supervisor_halls = Table(
    "supervisor_halls",
    metadata,
    Column("account_id", Text, ForeignKey("accounts.id"), primary_key=True),
    Column("hall", Text, ForeignKey("halls.code"), primary_key=True),
)

# Each request to record a call, the citizen's answer and the text version they
# were shown (storage.recordings).
recording_consents = Table(
    "recording_consents",
    metadata,
    Column("consultation_id", Text, ForeignKey("consultations.id"), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("asked_by", Text, nullable=False),
    Column("asked_at", Float, nullable=False),
    Column("text_version", Text, nullable=True),
    Column("accepted", Boolean, nullable=True),
    Column("answered_at", Float, nullable=True),
    Column("stopped_by", Text, nullable=True),
    Column("stopped_at", Float, nullable=True),
)

# A recording's dump while the call goes on (media.recording_dump): where, and its
# key wrapped as a document's is, so that a dump outlives the relay that wrote it.
recording_dumps = Table(
    "recording_dumps",
    metadata,
    Column("path", Text, primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("kek_id", Text, nullable=False),
    Column("wrapped_key", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
)

# The recordings made of a consultation: each a document (files) of its own, read
# only by those ``signaling.access`` lets play recordings.
recordings = Table(
    "recordings",
    metadata,
    Column("file_id", Text, ForeignKey("files.id"), primary_key=True),
    Column("consultation_id", Text, ForeignKey("consultations.id"), nullable=False),
    Column("started_at", Float, nullable=False),
    # JSON [{"participant", "place", "codec", "frames"}, ...]
    Column("tracks", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
