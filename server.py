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
from storage.sessions import SessionPolicy
from storage.store import Storage
from web.app import create_app
from web.settings import Settings, SettingsError, parse_settings
from web.tls import ssl_context


async def verify_audit(settings: Settings) -> int:
    storage = await Storage.open(
        settings.database_url,
        settings.data_dir,
        SessionPolicy(settings.session_idle, settings.session_max),
    )
    try:
        count = await storage.audit.verify()
    except AuditChainBroken as exc:
        print(f"audit chain BROKEN at entry {exc.seq}: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    print(f"audit chain intact: {count} entries")
    return 0


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
