"""The supervisor's children's command lines: the parent's, without its secrets."""

import pytest

from web.processes import SECRET_FLAGS, secrets_on_command_line, without_secrets
from web.settings import long_flags, parse_settings, secret_environment

FLAGS = long_flags()


@pytest.mark.parametrize(
    ("argv", "kept", "found"),
    [
        (["server.py", "--port", "8080"], ["server.py", "--port", "8080"], []),
        # --flag value, --flag=value, and the abbreviations argparse takes.
        (["server.py", "--cluster-secret", "s" * 16, "--port", "1"], ["server.py", "--port", "1"],
         ["--cluster-secret"]),
        (["--turn-secret=t" + "x" * 16, "--demo"], ["--demo"], ["--turn-secret"]),
        (["--metrics-tok", "m" * 16, "--demo"], ["--demo"], ["--metrics-token"]),
        (["--cluster-sec=abc", "--processes", "2"], ["--processes", "2"], ["--cluster-secret"]),
        # URLs that may carry a password.
        (["--database-url", "postgresql://u:p@db/wl", "--redis-url", "redis://:p@r", "--demo"],
         ["--demo"], ["--database-url", "--redis-url"]),
        # Not secrets: a prefix of a secret flag and of another stays (argparse would
        # have refused it as ambiguous), and so do look-alike values.
        (["--turn-ttl", "300", "--redis-prefix", "wl:"], ["--turn-ttl", "300", "--redis-prefix",
         "wl:"], []),
        (["--", "--cluster-secret", "x"], ["--", "--cluster-secret", "x"], []),
    ],
)  # fmt: skip
def test_a_childs_command_line_is_the_parents_without_its_secrets(
    argv: list[str], kept: list[str], found: list[str]
) -> None:
    assert without_secrets(argv, SECRET_FLAGS, FLAGS) == (kept, found)


def test_every_secret_flag_is_one_the_server_takes_and_its_variable_carries_it() -> None:
    assert {
        "--cluster-secret",
        "--turn-secret",
        "--metrics-token",
        "--database-url",
        "--redis-url",
    } == SECRET_FLAGS
    argv = ["--cluster-secret", "c" * 16, "--turn-secret", "t" * 16, "--metrics-token", "m" * 16]
    settings = parse_settings(argv, {}).settings
    environment = secret_environment(settings)
    assert environment == {
        "WINDOWLINK_CLUSTER_SECRET": "c" * 16,
        "WINDOWLINK_TURN_SECRET": "t" * 16,
        "WINDOWLINK_METRICS_TOKEN": "m" * 16,
    }
    assert set(FLAGS) >= SECRET_FLAGS
    # A child given the variables instead of the flags has the same settings.
    assert parse_settings([], environment).settings == settings
    assert secrets_on_command_line(argv) == ["--cluster-secret", "--turn-secret", "--metrics-token"]
