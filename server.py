"""windowlink entry point: settings -> app -> run.

python server.py [flags]                 serve
python server.py [flags] audit verify    check the audit hash chain
"""

import asyncio
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from storage.errors import AuditChainBroken
from storage.filestore import FileStore
from storage.keyring import KeyringError
from storage.records import AuditEvent
from web.app import create_app, open_keyring, open_storage
from web.settings import Settings, SettingsError, parse_settings
from web.tls import ssl_context


async def verify_audit(settings: Settings) -> int:
    storage = await open_storage(settings)
    try:
        count = await storage.audit.verify()
    except AuditChainBroken as exc:
        print(f"audit chain BROKEN at entry {exc.seq}: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    print(f"audit chain intact: {count} entries")
    return 0


async def manage_keys(settings: Settings, action: tuple[str, ...]) -> int:
    """``keys rotate``: new active KEK, every data key re-wrapped; ``keys retire ID``."""
    storage = await open_storage(settings)
    try:
        keyring = open_keyring(settings)
        files = await FileStore.open(
            settings.data_dir, keyring, storage.db, max_size=settings.max_file_size
        )
        if action[0] == "rotate":
            old = keyring.active_id
            new = keyring.rotate()
            count = await files.rewrap_all()
            await storage.audit.append(
                AuditEvent("operator", "keys.rotate", new.id, {"previous": old, "rewrapped": count})
            )
            print(f"new key-encryption key {new.id}; {count} data keys re-wrapped")
            return 0
        kek_id = action[1]
        try:
            keyring.retire(kek_id, await files.references(kek_id))
        except KeyringError as exc:
            print(f"cannot retire: {exc}", file=sys.stderr)
            return 1
        await storage.audit.append(AuditEvent("operator", "keys.retire", kek_id, {}))
        print(f"key-encryption key {kek_id} retired")
        return 0
    finally:
        await storage.close()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        invocation = parse_settings(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        print(f"windowlink: {exc}", file=sys.stderr)
        return 2
    settings = invocation.settings
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if invocation.command == ("audit", "verify"):
        return asyncio.run(verify_audit(settings))
    if invocation.command[:1] == ("keys",):
        return asyncio.run(manage_keys(settings, invocation.command[1:]))
    context = ssl_context(settings)
    url = f"{settings.scheme}://{settings.host}:{settings.port}"
    print(f"windowlink serving {url}/kiosk /expert /clerk /admin", flush=True)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ssl_context=context,
        print=None,
        access_log=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
