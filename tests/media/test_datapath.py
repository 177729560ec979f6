"""Which data path runs is said once at start and in /metrics, and a machine that
cannot build the native one still installs (setup.py warns and goes on)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from media import datapath

ROOT = Path(__file__).resolve().parents[2]


def test_the_metric_says_which_path_runs() -> None:
    for path in ("native", "python"):
        registry = CollectorRegistry()
        registry.register(datapath.DatapathCollector(lambda p=path: p))  # type: ignore[misc]
        text = generate_latest(registry).decode()
        assert f'windowlink_relay_datapath_info{{path="{path}"}} 1.0' in text


def test_the_start_line_names_the_path_and_why_not_the_native_one() -> None:
    assert datapath.describe(prefer_native=False) == (
        "relay data path: python (native path turned off)"
    )
    line = datapath.describe()
    if datapath.native_available():
        assert datapath.chosen() == "native" and "OpenSSL" in line
    else:
        reason = datapath.native_unavailable_reason()
        assert reason and reason in line and datapath.chosen() == "python"


def test_a_machine_without_a_compiler_builds_without_the_extension(tmp_path: Path) -> None:
    """What ``pip install -e .`` runs, with a compiler that always fails: the build
    says why and succeeds, leaving the product to its Python path."""
    done = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(tmp_path / "lib"),
            "--build-temp",
            str(tmp_path / "temp"),
        ],
        cwd=ROOT,
        env={**os.environ, "CC": "/bin/false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("WARNING: media._native not built") == 1, done.stderr
    assert not list((tmp_path / "lib").glob("**/_native*"))


def test_the_setting_chooses_the_path_and_native_is_not_taken_where_it_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(datapath, "_selected", None)
    assert datapath.current() == datapath.chosen()
    assert datapath.select("python") == datapath.current() == "python"
    registry = CollectorRegistry()
    registry.register(datapath.DatapathCollector())
    assert 'windowlink_relay_datapath_info{path="python"} 1.0' in generate_latest(registry).decode()
    assert datapath.select("auto") == datapath.chosen()
    with pytest.raises(ValueError, match="auto, native or python"):
        datapath.select("fast")
    if datapath.native_available():
        assert datapath.select("native") == "native"
    else:
        with pytest.raises(datapath.NativeUnavailable, match=r"media\._native unavailable"):
            datapath.select("native")
    monkeypatch.setattr(datapath, "_UNAVAILABLE", "ImportError: not built")
    with pytest.raises(datapath.NativeUnavailable, match="not built"):
        datapath.select("native")
    assert datapath.select("auto") == "python"


def test_the_servers_metrics_say_the_path_chosen_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from web.metrics import Metrics

    monkeypatch.setattr(datapath, "_selected", None)
    metrics = Metrics()
    for setting in ("python", "auto"):
        path = datapath.select(setting)
        line = f'windowlink_relay_datapath_info{{path="{path}"}} 1.0'
        assert line in metrics.exposition().decode()
