"""Versioned schema migrations, applied in order at start.

Each migration is portable DDL (SQLite and PostgreSQL); once released it is
never edited: a change to the schema is a new migration appended here and the
matching change in ``storage.schema``.
"""

from dataclasses import dataclass

from sqlalchemy import Connection, text

from storage.errors import MigrationError


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "departments, accounts, sessions, consultations, chat, audit log",
        (
            """CREATE TABLE departments (
                code TEXT PRIMARY KEY,
                name_zh TEXT NOT NULL,
                name_en TEXT NOT NULL,
                disabled BOOLEAN NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE accounts (
                id TEXT PRIMARY KEY,
                username TEXT NOT NULL UNIQUE,
                password_hash TEXT NOT NULL,
                role TEXT NOT NULL,
                department TEXT REFERENCES departments(code),
                hall TEXT,
                display_name TEXT NOT NULL,
                disabled BOOLEAN NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE sessions (
                token_hash TEXT PRIMARY KEY,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                created_at DOUBLE PRECISION NOT NULL,
                last_seen DOUBLE PRECISION NOT NULL,
                remote TEXT NOT NULL)""",
            "CREATE INDEX sessions_account ON sessions(account_id)",
            """CREATE TABLE consultations (
                id TEXT PRIMARY KEY,
                kiosk_id TEXT NOT NULL REFERENCES accounts(id),
                hall TEXT,
                department TEXT NOT NULL REFERENCES departments(code),
                expert_id TEXT REFERENCES accounts(id),
                case_number TEXT,
                state TEXT NOT NULL,
                waiting_at DOUBLE PRECISION NOT NULL,
                offered_at DOUBLE PRECISION,
                active_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                end_reason TEXT,
                ended_by TEXT,
                outcome TEXT,
                notes TEXT,
                rating SMALLINT)""",
            "CREATE INDEX consultations_case ON consultations(case_number)",
            "CREATE INDEX consultations_dept_ended ON consultations(department, ended_at)",
            """CREATE TABLE chat_messages (
                id TEXT PRIMARY KEY,
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                sender_id TEXT NOT NULL REFERENCES accounts(id),
                sender_role TEXT NOT NULL,
                text TEXT NOT NULL,
                sent_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX chat_consultation ON chat_messages(consultation_id, sent_at)",
            """CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY,
                at DOUBLE PRECISION NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                subject TEXT NOT NULL,
                detail TEXT NOT NULL,
                remote TEXT NOT NULL,
                prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL)""",
            """CREATE TABLE audit_head (
                id INTEGER PRIMARY KEY,
                seq INTEGER NOT NULL,
                hash TEXT NOT NULL)""",
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '')",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        2,
        "encrypted documents of consultations, case attachments",
        (
            """CREATE TABLE files (
                id TEXT PRIMARY KEY,
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                uploader_id TEXT NOT NULL REFERENCES accounts(id),
                uploader_role TEXT NOT NULL,
                name TEXT NOT NULL,
                media_type TEXT NOT NULL,
                size BIGINT NOT NULL,
                digest TEXT NOT NULL,
                digest_alg TEXT NOT NULL,
                suite SMALLINT NOT NULL,
                kek_id TEXT NOT NULL,
                wrapped_key TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX files_consultation ON files(consultation_id, created_at)",
            "CREATE INDEX files_kek ON files(kek_id)",
            """CREATE TABLE case_attachments (
                case_number TEXT NOT NULL,
                file_id TEXT NOT NULL REFERENCES files(id),
                category TEXT NOT NULL,
                attached_by TEXT NOT NULL REFERENCES accounts(id),
                attached_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (case_number, file_id))""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        3,
        "departments' usual hours (shown on the kiosk when nobody is online); "
        "consultations by queue time (the board)",
        (
            "ALTER TABLE departments ADD COLUMN hours TEXT NOT NULL DEFAULT '1-5 09:00-17:00'",
            # The board reads a week of consultations by queue time.
            "CREATE INDEX consultations_waiting ON consultations(waiting_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        4,
        "crypto-shredding at the end of retention: when a document's key was destroyed",
        (
            # The row stays (the record that the document existed); its wrapped key
            # and KEK id become '' and this column says when they were destroyed.
            "ALTER TABLE files ADD COLUMN shredded_at DOUBLE PRECISION",
            # The retention sweep joins only documents not yet shredded to their
            # consultation; those are few (one retention period's worth).
            "CREATE INDEX files_unshredded ON files(consultation_id) WHERE shredded_at IS NULL",
        ),
    ),
    Migration(
        5,
        "at most one open consultation per kiosk, enforced by the records",
        (
            # Older data could hold more than one open consultation of a kiosk (left
            # behind by a crash): all but the newest end as dropped first.
            """UPDATE consultations SET state = 'ended', end_reason = 'dropped',
                ended_by = 'system', ended_at = waiting_at
            WHERE state != 'ended' AND EXISTS (
                SELECT 1 FROM consultations AS newer
                WHERE newer.kiosk_id = consultations.kiosk_id AND newer.state != 'ended'
                AND (newer.waiting_at > consultations.waiting_at
                     OR (newer.waiting_at = consultations.waiting_at
                         AND newer.id > consultations.id)))""",
            # Two nodes taking the same kiosk's two requests at once cannot both win.
            "CREATE UNIQUE INDEX consultations_open_per_kiosk ON consultations(kiosk_id) "
            "WHERE state != 'ended'",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "key-encryption keys shared by a cluster, sealed under the operator's master key",
        (
            """CREATE TABLE keks (
                id TEXT PRIMARY KEY,
                suite SMALLINT NOT NULL,
                sealed TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                activated_at DOUBLE PRECISION NOT NULL)""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "uploads in progress shared by every process and node",
        (
            """CREATE TABLE uploads (
                id TEXT PRIMARY KEY,
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                uploader_id TEXT NOT NULL REFERENCES accounts(id),
                name TEXT NOT NULL,
                declared_size BIGINT NOT NULL,
                received BIGINT NOT NULL,
                next_chunk INTEGER NOT NULL,
                carry TEXT NOT NULL,
                segments TEXT NOT NULL,
                suite SMALLINT NOT NULL,
                kek_id TEXT NOT NULL,
                wrapped_key TEXT NOT NULL,
                nonce_prefix TEXT NOT NULL,
                state TEXT NOT NULL,
                last_activity DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX uploads_consultation ON uploads(consultation_id)",
            "CREATE INDEX uploads_uploader ON uploads(uploader_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        8,
        "audit entries name the audit key their MAC was made with ('' = unkeyed, older)",
        ("ALTER TABLE audit_log ADD COLUMN key_id TEXT NOT NULL DEFAULT ''",),
    ),
    Migration(
        9,
        "keys of retention periods: data keys are wrapped under the key of their period, "
        "destroyed once the period's documents are all shredded",
        (
            # One row per period key, kept tiny so that destroying one can be made
            # real (secure_delete / VACUUM FULL): no document data ever lands here.
            # A destroyed key keeps its row with kek_id and wrapped '' (a tombstone
            # that lets a stale data key be answered as shredded); erased_at says
            # when no older version of the row was left in the database's files.
            """CREATE TABLE period_keys (
                id TEXT PRIMARY KEY,
                period TEXT NOT NULL,
                suite SMALLINT NOT NULL,
                kek_id TEXT NOT NULL,
                wrapped TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                destroyed_at DOUBLE PRECISION,
                erased_at DOUBLE PRECISION)""",
            # One live key per period and suite: nodes making it at once agree.
            "CREATE UNIQUE INDEX period_keys_live ON period_keys(period, suite) "
            "WHERE destroyed_at IS NULL",
            "CREATE INDEX period_keys_kek ON period_keys(kek_id)",
            "CREATE INDEX uploads_kek ON uploads(kek_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        10,
        "blobs this deployment means to create or no longer needs (tidying removes only "
        "those); the deployment's id, which the blob store carries as its owner marker",
        (
            """CREATE TABLE blob_intents (
                name TEXT NOT NULL,
                kind TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (name, kind))""",
            # Made once, by the first node that starts on this schema (storage.ownership).
            """CREATE TABLE deployment (
                id INTEGER PRIMARY KEY,
                deployment_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        11,
        "halls as records (each free-text hall value becomes one), clerks' halls, "
        "consultations' short references",
        (
            """CREATE TABLE halls (
                code TEXT PRIMARY KEY,
                name_zh TEXT NOT NULL,
                name_en TEXT NOT NULL,
                level TEXT NOT NULL,
                district TEXT NOT NULL,
                allow_file_chooser BOOLEAN NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            # Every hall named so far (kiosks' and consultations' free text) becomes a
            # record named by its value, a street-level hall whose kiosks do not offer
            # the file chooser, until an admin completes it (docs/DECISIONS.md, "Halls").
            """INSERT INTO halls (code, name_zh, name_en, level, district,
                allow_file_chooser, created_at)
            SELECT hall, hall, hall, 'street', '', FALSE, MIN(at) FROM (
                SELECT hall, created_at AS at FROM accounts WHERE hall IS NOT NULL
                UNION ALL
                SELECT hall, waiting_at AS at FROM consultations WHERE hall IS NOT NULL
            ) AS named GROUP BY hall""",
            """CREATE TABLE clerk_halls (
                account_id TEXT NOT NULL REFERENCES accounts(id),
                hall TEXT NOT NULL REFERENCES halls(code),
                PRIMARY KEY (account_id, hall))""",
            "CREATE INDEX clerk_halls_hall ON clerk_halls(hall)",
            "CREATE INDEX accounts_hall ON accounts(hall)",
            # What the kiosk shows the citizen at the end of the call (storage.references);
            # none for consultations made before.
            "ALTER TABLE consultations ADD COLUMN reference TEXT",
            "CREATE INDEX consultations_reference ON consultations(reference)",
            # The clerk's list of today's consultations of their halls.
            "CREATE INDEX consultations_hall_waiting ON consultations(hall, waiting_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        12,
        "one-time links for sending photos from the citizen's phone into a call",
        (
            # storage.phone_links: hashes only; a link is claimed once (claimed_at),
            # then carries files_allowed files until send_until.
            """CREATE TABLE phone_links (
                token_hash TEXT PRIMARY KEY,
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                kiosk_id TEXT NOT NULL REFERENCES accounts(id),
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                claimed_at DOUBLE PRECISION,
                claim_hash TEXT,
                files_allowed INTEGER NOT NULL,
                files_received INTEGER NOT NULL,
                send_until DOUBLE PRECISION)""",
            "CREATE INDEX phone_links_consultation ON phone_links(consultation_id)",
            "CREATE INDEX phone_links_expires ON phone_links(expires_at)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        13,
        "a phone link's claim carries only the files it announced",
        (
            # JSON [[name, size], ...] of the announced files not arrived yet (none for
            # a link claimed before: it can send nothing more, and a new code is shown).
            "ALTER TABLE phone_links ADD COLUMN announced TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        14,
        "calls of more than two: interpreting pools, transfers, each staff member's leg, "
        "documents shared with interpreters",
        (
            "ALTER TABLE departments ADD COLUMN kind TEXT NOT NULL DEFAULT 'service'",
            "ALTER TABLE departments ADD COLUMN languages TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE departments ADD COLUMN transfers_to TEXT NOT NULL DEFAULT '[]'",
            """CREATE TABLE consultation_legs (
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                seq INTEGER NOT NULL,
                account_id TEXT NOT NULL REFERENCES accounts(id),
                role TEXT NOT NULL,
                department TEXT NOT NULL,
                position SMALLINT NOT NULL,
                joined_at DOUBLE PRECISION NOT NULL,
                left_at DOUBLE PRECISION,
                reason TEXT,
                invited_by TEXT,
                note TEXT,
                outcome TEXT,
                notes TEXT,
                invitation TEXT UNIQUE,
                PRIMARY KEY (consultation_id, seq))""",
            "CREATE INDEX consultation_legs_account ON consultation_legs(account_id, left_at)",
            # Every answered consultation so far had one expert: its leg, as the records
            # have it (its end as the consultation's).
            """INSERT INTO consultation_legs (consultation_id, seq, account_id, role,
                department, position, joined_at, left_at, reason, outcome, notes)
            SELECT id, 1, expert_id, 'expert', department, 1, active_at, ended_at,
                CASE WHEN ended_at IS NULL THEN NULL
                     WHEN end_reason = 'dropped' THEN 'dropped' ELSE 'ended' END,
                outcome, notes
            FROM consultations WHERE expert_id IS NOT NULL AND active_at IS NOT NULL""",
            """CREATE TABLE document_shares (
                file_id TEXT PRIMARY KEY REFERENCES files(id),
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                shared_by TEXT NOT NULL REFERENCES accounts(id),
                shared_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX document_shares_consultation ON document_shares(consultation_id)",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        15,
        "identity numbers (lookup HMAC and sealed value only), their keys, materials",
        (
            """CREATE TABLE sensitive_keys (
                purpose TEXT PRIMARY KEY,
                kek_id TEXT NOT NULL,
                wrapped TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE consultation_identities (
                consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
                lookup TEXT NOT NULL,
                sealed TEXT NOT NULL,
                history_consent BOOLEAN NOT NULL,
                given_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX consultation_identities_lookup ON consultation_identities(lookup)",
            "ALTER TABLE departments ADD COLUMN materials TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE consultation_legs ADD COLUMN materials TEXT",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        16,
        "call-backs and appointments: each department's booking settings, its closed days, "
        "appointments (a hash of the booking code), call-backs and their attempts",
        (
            """CREATE TABLE booking_settings (
                department TEXT PRIMARY KEY REFERENCES departments(code),
                availability TEXT NOT NULL,
                slot_minutes INTEGER NOT NULL,
                slot_capacity INTEGER NOT NULL,
                wait_limit DOUBLE PRECISION NOT NULL,
                callback_attempts INTEGER NOT NULL,
                callback_expiry DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL)""",
            """CREATE TABLE appointment_closures (
                department TEXT NOT NULL REFERENCES departments(code),
                day TEXT NOT NULL,
                reason TEXT NOT NULL,
                closed_by TEXT NOT NULL,
                closed_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (department, day))""",
            """CREATE TABLE appointments (
                id TEXT PRIMARY KEY,
                code_hash TEXT NOT NULL UNIQUE,
                department TEXT NOT NULL REFERENCES departments(code),
                slot_at DOUBLE PRECISION NOT NULL,
                slot_minutes INTEGER NOT NULL,
                day TEXT NOT NULL,
                seat INTEGER,
                state TEXT NOT NULL,
                kiosk_id TEXT NOT NULL REFERENCES accounts(id),
                hall TEXT,
                phone_lookup TEXT,
                phone_sealed TEXT,
                id_lookup TEXT,
                id_sealed TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                admitted_by TEXT,
                admitted_at DOUBLE PRECISION,
                consultation_id TEXT,
                cancelled_at DOUBLE PRECISION,
                reminded_at DOUBLE PRECISION,
                UNIQUE (department, slot_at, seat))""",
            "CREATE INDEX appointments_day ON appointments(department, day)",
            "CREATE INDEX appointments_phone ON appointments(phone_lookup)",
            "CREATE INDEX appointments_id_number ON appointments(id_lookup)",
            """CREATE TABLE callbacks (
                id TEXT PRIMARY KEY,
                department TEXT NOT NULL REFERENCES departments(code),
                kiosk_id TEXT NOT NULL REFERENCES accounts(id),
                hall TEXT,
                consultation_id TEXT,
                case_number TEXT,
                note TEXT NOT NULL,
                phone_lookup TEXT NOT NULL,
                phone_sealed TEXT NOT NULL,
                queued_at DOUBLE PRECISION NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                max_attempts INTEGER NOT NULL,
                attempts INTEGER NOT NULL,
                state TEXT NOT NULL,
                taken_by TEXT,
                taken_at DOUBLE PRECISION,
                closed_at DOUBLE PRECISION,
                outcome TEXT)""",
            "CREATE INDEX callbacks_open ON callbacks(department, state, queued_at)",
            "CREATE INDEX callbacks_phone ON callbacks(phone_lookup)",
            """CREATE TABLE callback_attempts (
                callback_id TEXT NOT NULL REFERENCES callbacks(id),
                seq INTEGER NOT NULL,
                expert_id TEXT NOT NULL REFERENCES accounts(id),
                at DOUBLE PRECISION NOT NULL,
                result TEXT NOT NULL,
                note TEXT NOT NULL,
                PRIMARY KEY (callback_id, seq))""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        17,
        "好差评 and follow-ups: five grades on consultations (the old 1-5 ratings mapped), "
        "follow-ups of bad grades with their notes, supervisors' departments and halls",
        (
            "ALTER TABLE consultations ADD COLUMN grade TEXT",
            "ALTER TABLE consultations ADD COLUMN grade_reason TEXT",
            "ALTER TABLE consultations ADD COLUMN grade_comment TEXT",
            """UPDATE consultations SET grade = CASE rating
                WHEN 5 THEN 'very_satisfied'
                WHEN 4 THEN 'satisfied'
                WHEN 3 THEN 'basically_satisfied'
                WHEN 2 THEN 'dissatisfied'
                WHEN 1 THEN 'very_dissatisfied' END
               WHERE rating IS NOT NULL""",
            """CREATE TABLE follow_ups (
                consultation_id TEXT PRIMARY KEY REFERENCES consultations(id),
                department TEXT NOT NULL REFERENCES departments(code),
                hall TEXT,
                grade TEXT NOT NULL,
                reason TEXT,
                comment TEXT,
                state TEXT NOT NULL,
                opened_at DOUBLE PRECISION NOT NULL,
                due_at DOUBLE PRECISION NOT NULL,
                contacted_at DOUBLE PRECISION,
                closed_at DOUBLE PRECISION,
                closed_by TEXT)""",
            "CREATE INDEX follow_ups_state ON follow_ups(state, due_at)",
            """CREATE TABLE follow_up_notes (
                consultation_id TEXT NOT NULL REFERENCES follow_ups(consultation_id),
                seq INTEGER NOT NULL,
                kind TEXT NOT NULL,
                text TEXT NOT NULL,
                author TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (consultation_id, seq))""",
            """CREATE TABLE supervisor_departments (
                account_id TEXT NOT NULL REFERENCES accounts(id),
                department TEXT NOT NULL REFERENCES departments(code),
                PRIMARY KEY (account_id, department))""",
            """CREATE TABLE supervisor_halls (
                account_id TEXT NOT NULL REFERENCES accounts(id),
                hall TEXT NOT NULL REFERENCES halls(code),
                PRIMARY KEY (account_id, hall))""",
        ),
    ),
)

MIGRATIONS += (
    Migration(
        18,
        "recording: per department, and each request's consent",
        (
            "ALTER TABLE departments ADD COLUMN recording BOOLEAN NOT NULL DEFAULT FALSE",
            """CREATE TABLE recording_consents (
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                seq INTEGER NOT NULL,
                asked_by TEXT NOT NULL,
                asked_at DOUBLE PRECISION NOT NULL,
                text_version TEXT,
                accepted BOOLEAN,
                answered_at DOUBLE PRECISION,
                stopped_by TEXT,
                stopped_at DOUBLE PRECISION,
                PRIMARY KEY (consultation_id, seq))""",
            """CREATE TABLE recording_dumps (
                path TEXT PRIMARY KEY,
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                kek_id TEXT NOT NULL,
                wrapped_key TEXT NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION)""",
            """CREATE TABLE recordings (
                file_id TEXT PRIMARY KEY REFERENCES files(id),
                consultation_id TEXT NOT NULL REFERENCES consultations(id),
                started_at DOUBLE PRECISION NOT NULL,
                tracks TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL)""",
            "CREATE INDEX recordings_consultation ON recordings(consultation_id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database, 0 for an empty one."""
    if not conn.dialect.has_table(conn, "schema_version"):
        return 0
    value = conn.execute(text("SELECT max(version) FROM schema_version")).scalar()
    return int(value or 0)


def migrate(conn: Connection) -> int:
    """Apply every pending migration inside the caller's transaction; return the version."""
    if conn.dialect.name == "postgresql":
        # Two nodes starting together must not both run the same migration.
        conn.execute(text("SELECT pg_advisory_xact_lock(736215)"))
    version = current_version(conn)
    if version > LATEST_VERSION:
        raise MigrationError(
            f"database schema is version {version}, newer than this code ({LATEST_VERSION})"
        )
    if version == 0:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
    for migration in MIGRATIONS:
        if migration.version <= version:
            continue
        for statement in migration.statements:
            conn.execute(text(statement))
        conn.execute(
            text("INSERT INTO schema_version (version) VALUES (:v)"), {"v": migration.version}
        )
        version = migration.version
    return version
