"""A test whose program is missing fails naming the Debian package to install."""

import stat
from pathlib import Path

import pytest

from harness import debian_tools
from harness.debian_tools import PACKAGES, debian_tool


@pytest.mark.parametrize(("program", "package"), sorted(PACKAGES.items()))
def test_a_missing_program_fails_the_test_naming_its_package(
    program: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(debian_tools, "SBIN", ())
    with pytest.raises(pytest.fail.Exception) as failed:
        debian_tool(program)
    assert f"{program} is missing: install the Debian package {package}" in str(failed.value)


def test_a_program_found_in_sbin_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    program = sbin / "ethtool"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(debian_tools, "SBIN", (str(sbin),))
    assert debian_tool("ethtool") == str(program)
