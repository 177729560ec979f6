"""The programs some tests drive, and the Debian package each comes in. A test
whose program is missing fails (it never skips: a skipped test would pass a run
that did not test) with a message naming the package; `bash .ci/run` installs
them all."""

import os
import shutil

import pytest

PACKAGES = {
    "chromium": "chromium",
    "firefox-esr": "firefox-esr",
    "nginx": "nginx-light",
    "turnserver": "coturn",
    "envsubst": "gettext-base",
    "ethtool": "ethtool",
    "redis-server": "redis-server",
    "ip": "iproute2",
}
SBIN = ("/usr/sbin", "/sbin")
"""Searched too: a user's PATH often lacks them, where nginx, ethtool and ip live."""


def debian_tool(name: str) -> str:
    """The path of the program ``name``; the calling test fails naming its package
    when it is not installed."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    found = shutil.which(name, path=search)
    if found is None:
        package = PACKAGES[name]
        pytest.fail(
            f"{name} is missing: install the Debian package {package} "
            f"(apt-get install {package}); `bash .ci/run` installs what the tests need",
            pytrace=False,
        )
    return found
