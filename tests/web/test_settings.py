"""Settings from flags and WINDOWLINK_* variables, and the set-ups refused at start."""

import dataclasses
import re
from pathlib import Path

import pytest

from web.settings import FLAG_GROUPS, Settings, SettingsError, parse_settings


def test_defaults_are_the_embedded_single_node_setup() -> None:
    settings = parse_settings([], {}).settings
    assert settings == Settings()
    assert (settings.host, settings.port, settings.data_dir) == ("127.0.0.1", 8080, Path("data"))
    assert settings.database_url is None and settings.redis_url is None


def test_every_flag_has_an_environment_variable_and_flags_win() -> None:
    env = {
        "WINDOWLINK_PORT": "9001",
        "WINDOWLINK_DATA_DIR": "/tmp/wl",
        "WINDOWLINK_DEMO": "true",
        "WINDOWLINK_MEDIA_ADDRESS": "127.0.0.1, 127.0.0.2",
        "WINDOWLINK_RING_TIMEOUT": "5",
        "WINDOWLINK_DATABASE_URL": "postgresql://db/wl",
    }
    settings = parse_settings([], env).settings
    assert settings.port == 9001 and settings.demo is True
    assert settings.media_address == ("127.0.0.1", "127.0.0.2")
    assert settings.ring_timeout == 5.0
    assert settings.database_url == "postgresql://db/wl"
    overridden = parse_settings(["--port", "9002", "--media-address", "127.0.0.3"], env).settings
    assert overridden.port == 9002 and overridden.media_address == ("127.0.0.3",)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "eighty"], {}, "--port must be a number"),
        (["--port", "70000"], {}, "at most 65535"),
        (["--ring-timeout", "0"], {}, "at least"),
        # float() reads these, and nan compares false with every bound.
        (["--wrap-up-limit", "nan"], {}, "--wrap-up-limit must be a number"),
        (["--wrap-up-limit", "inf"], {}, "--wrap-up-limit must be a number"),
        ([], {"WINDOWLINK_GRACE_PERIOD": "NaN"}, "--grace-period must be a number"),
        ([], {"WINDOWLINK_DEMO": "maybe"}, "true or false"),
        (["--host", "0.0.0.0"], {}, "refusing to serve plain HTTP"),
        (
            ["--host", "10.1.2.3", "--behind-proxy", "--trusted-proxies", "10.0.0.5", "--demo"],
            {},
            "--demo",
        ),
        # Hop counting believes whoever connects: only where only local proxies can.
        (["--host", "10.1.2.3", "--behind-proxy"], {}, "name the proxies instead"),
        (["--host", "0.0.0.0", "--behind-proxy", "--trusted-proxies", "2"], {}, "hop count"),
        ([], {"WINDOWLINK_HOST": "::", "WINDOWLINK_BEHIND_PROXY": "1"}, "hop count"),
        (["--metrics-token", "fifteen-chars!!"], {}, "--metrics-token must be at least 16"),
        (["--tls-cert", "/nonexistent.pem"], {}, "go together"),
        (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], {}, "does not exist"),
        (["--log-level", "loud"], {}, "--log-level"),
        (["--relay-datapath", "fast"], {}, "--relay-datapath"),
        ([], {"WINDOWLINK_RELAY_DATAPATH": "C"}, "--relay-datapath"),
        (["--processes", "2"], {}, "needs --redis-url"),
        (["--processes", "0"], {}, "at least 1"),
        (["--processes", "2", "--redis-url", "redis://r", "--port", "0"], {}, "fixed --port"),
        (
            ["--processes", "2", "--redis-url", "redis://r", "--media-workers", "0"],
            {},
            "relay workers",
        ),
        (["--cluster-secret", "short"], {}, "at least 16"),
        (["--ice-server", "http://turn.example"], {}, "not a STUN or TURN URL"),
        (["--ice-server", "turn:turn.example:3478"], {}, "needs --turn-secret"),
        ([], {"WINDOWLINK_ICE_SERVERS": "turn:t:3478"}, "needs --turn-secret"),
        (["--ice-server", "turn:t:3478", "--turn-secret", "short"], {}, "at least 16"),
        # TURN credentials must not outlive a disabled account by days.
        (["--turn-ttl", "172801"], {}, r"--turn-ttl must be at most 172800 \(48 h\)"),
        ([], {"WINDOWLINK_TURN_TTL": "1e9"}, "--turn-ttl must be at most"),
        (["--blob-url", "ftp://x/y"], {}, "--blob-url"),
        (["--s3-endpoint", "http://s3.local"], {}, "goes with an s3://"),
        (["--blob-url", "s3://b/p", "--s3-endpoint", "s3.local"], {}, "must be an http"),
        # Nodes sharing records and documents need the same keys: a master key.
        (["--redis-url", "redis://r"], {}, "Make one master key"),
        (
            ["--database-url", "postgresql://db/wl", "--blob-url", "s3://b/p"],
            {},
            "without --master-key-file",
        ),
        (
            ["--blob-url", "file:///srv/shared"],
            {"WINDOWLINK_DATABASE_URL": "postgresql://db/wl"},
            "give the same file to every node",
        ),
    ],
)
def test_bad_values_fail_fast_with_a_clear_message(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(argv, env)


def test_several_processes_share_redis_and_a_secret_from_the_environment() -> None:
    env = {
        "WINDOWLINK_CLUSTER_SECRET": "s" * 32,
        "WINDOWLINK_PROCESSES": "4",
        "WINDOWLINK_MASTER_KEY_FILE": "/etc/windowlink/master.key",
    }
    settings = parse_settings(["--redis-url", "redis://r:6379/0"], env).settings
    assert (settings.processes, settings.cluster_secret) == (4, "s" * 32)


@pytest.mark.parametrize(
    "argv",
    [
        ["--database-url", "postgresql://db/wl"],
        ["--blob-url", "s3://b/p"],
        ["--database-url", "postgresql://db/wl", "--blob-url", "s3://b/p"],
        ["--redis-url", "redis://r"],
    ],
)
def test_a_node_sharing_documents_starts_with_a_master_key(argv: list[str]) -> None:
    """Alone (one database and a blob store of its own) a node may keep its keys in
    its key directory; shared, it starts only with the master key."""
    shared = "--redis-url" in argv or len(argv) == 4
    if not shared:
        parse_settings(argv, {})
    settings = parse_settings([*argv, "--master-key-file", "/etc/wl/master.key"], {}).settings
    assert settings.master_key_file == Path("/etc/wl/master.key")


def test_plain_http_off_loopback_is_allowed_behind_named_proxies() -> None:
    argv = ["--host", "0.0.0.0", "--behind-proxy", "--trusted-proxies", "10.0.0.5"]
    settings = parse_settings(argv, {}).settings
    assert settings.behind_proxy and not settings.tls
    assert settings.trusted_proxies == ("10.0.0.5",)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
@pytest.mark.parametrize("hops", [[], ["--trusted-proxies", "1"], ["--trusted-proxies", "3"]])
def test_hop_counting_is_allowed_on_a_loopback_listener(host: str, hops: list[str]) -> None:
    settings = parse_settings(["--host", host, "--behind-proxy", *hops], {}).settings
    assert settings.behind_proxy


def test_a_metrics_token_of_sixteen_characters_is_enough() -> None:
    settings = parse_settings(["--metrics-token", "sixteen-chars!!!"], {}).settings
    assert settings.metrics_token == "sixteen-chars!!!"


def test_recordings_play_only_is_off_unless_its_flag_or_variable_says_so() -> None:
    assert parse_settings([], {}).settings.recordings_play_only is False
    assert parse_settings(["--recordings-play-only"], {}).settings.recordings_play_only
    env = {"WINDOWLINK_RECORDINGS_PLAY_ONLY": "yes"}
    assert parse_settings([], env).settings.recordings_play_only


def test_audit_verify_is_a_subcommand_after_the_flags() -> None:
    invocation = parse_settings(["--data-dir", "/tmp/x", "audit", "verify"], {})
    assert invocation.command == ("audit", "verify")
    assert invocation.settings.data_dir == Path("/tmp/x")


def test_help_lists_every_flag_once_in_a_group_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    grouped = [dest for _, dests in FLAG_GROUPS for dest in dests]
    assert sorted(grouped) == sorted(f.name for f in dataclasses.fields(Settings))
    secret = "turn-secret-from-the-environment"
    with pytest.raises(SystemExit) as stopped:
        parse_settings(["--help"], {"WINDOWLINK_TURN_SECRET": secret, "WINDOWLINK_PORT": "9"})
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    titles = [title for title, _ in FLAG_GROUPS]
    assert [t for t in re.findall(r"^(\S[^\n:]*):\n", shown, re.M) if t in titles] == titles
    flat = " ".join(shown.split())
    assert "--port PORT Port the HTTP(S) server binds. [default: 8080; WINDOWLINK_PORT]" in flat
    assert "[default: off; WINDOWLINK_DEMO]" in flat
    assert "--media-address ADDR Local addresses the relay gathers" in flat
    # Defaults are the built-in ones: never a value from the environment.
    assert secret not in shown and "default: 9;" not in flat
