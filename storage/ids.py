"""Random record ids: unguessable, so an id alone grants nothing and reveals no count."""

import secrets


def new_id() -> str:
    return secrets.token_hex(8)
