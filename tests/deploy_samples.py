"""The repo's sample configurations (deploy/), rendered as docs/DEPLOY.md says:
envsubst of the named ``${WL_*}`` variables only, so that nginx's and coturn's
own ``$variables`` stay as written."""

import os
import subprocess
from pathlib import Path

from harness.debian_tools import debian_tool

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def render_sample(sample: Path, values: dict[str, str]) -> str:
    """``sample`` with each ``${NAME}`` of ``values`` filled in."""
    return subprocess.run(
        [debian_tool("envsubst"), " ".join(f"${{{name}}}" for name in values)],
        input=sample.read_text(),
        env={**os.environ, **values},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
