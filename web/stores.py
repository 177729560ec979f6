"""The stores as configured (records, audit keys, key-encryption keys), opened by the
server and by the commands of ``server.py`` alike.

Apart from web.app so that a command (``audit verify``, ``keys``, ``accounts``,
``backup``, ``files tidy``) opens them without importing the web application:
socket.io, the relay's aiortc and PyAV, every API module (about two seconds of imports).
"""

import asyncio
import dataclasses

from storage.audit_keys import AuditKeys, directory_audit_keys, master_audit_keys
from storage.database import Database
from storage.filecrypt import Suite
from storage.keyring import DatabaseKeks, DirectoryKeks, Keyring, read_master_key
from storage.sessions import SessionPolicy
from storage.store import Storage
from web.settings import Settings


def crypto_suite(settings: Settings) -> Suite:
    return Suite.SM4_GCM if settings.crypto_suite == "sm4-gcm" else Suite.AES_256_GCM


def audit_keys(settings: Settings, *, sign: bool = True) -> AuditKeys:
    """The audit chain's keys: derived from the master key, or in the key directory
    (made there at the first start). ``sign=False``: only verify, make nothing."""
    suite = crypto_suite(settings)
    if settings.master_key_file is None:
        keys = directory_audit_keys(settings.keys_directory, suite, create=sign)
    else:
        master = read_master_key(settings.master_key_file)
        keys = master_audit_keys(master, suite, settings.keys_directory)
    return keys if sign else dataclasses.replace(keys, active=None)


async def open_storage(settings: Settings, *, sign: bool = True) -> Storage:
    """The records, as configured (the server and the ``audit``/``keys`` commands);
    ``sign=False`` for a process that only reads and verifies."""
    return await Storage.open(
        settings.database_url,
        settings.data_dir,
        SessionPolicy(
            idle_timeout=settings.session_idle,
            max_age=settings.session_max,
            kiosk_max_age=settings.kiosk_session_max,
        ),
        await asyncio.to_thread(audit_keys, settings, sign=sign),
    )


async def open_keyring(settings: Settings, db: Database) -> Keyring:
    """The KEKs: in the key directory, or with a master key in the shared database
    (taking the key directory's KEKs the first time)."""
    suite = crypto_suite(settings)
    directory = DirectoryKeks(settings.keys_directory)
    if settings.master_key_file is None:
        return await Keyring.open(directory, suite)
    master = await asyncio.to_thread(read_master_key, settings.master_key_file)
    return await Keyring.open(DatabaseKeks(db, master, suite), suite, seed=directory)
