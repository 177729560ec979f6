"""What an idle server costs: server.py with the demo data and its relay workers,
no client, the CPU of each of its processes over a window, and how often the web
process's threads wake. One JSON line.

    python bench/idle.py --seconds 30
"""

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import measure  # noqa: E402
from harness.ports import free_port  # noqa: E402


def wakeups(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid``: how often it slept."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=2, help="--media-workers")
    parser.add_argument("--settle", type=float, default=12.0, help="seconds after start")
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="wl-idle-")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "server.py"),
            "--port",
            str(port),
            "--data-dir",
            data,
            "--demo",
            "--media-workers",
            str(args.workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(args.settle)
        web = server.pid
        processes = measure.process_tree(web)
        before = {pid: measure.cpu_seconds(pid) for pid in processes}
        woke = wakeups(web)
        time.sleep(args.seconds)
        spent = {pid: (measure.cpu_seconds(pid) - before[pid]) / args.seconds for pid in processes}
        woke = wakeups(web) - woke
        children = sorted(round(v, 5) for pid, v in spent.items() if pid != web)
        measure.emit(
            "idle",
            {
                "seconds": args.seconds,
                "workers": args.workers,
                "total_core": round(sum(spent.values()), 5),
                "web_core": round(spent[web], 5),
                "web_wakeups_per_s": round(woke / args.seconds, 1),
                "other_processes_core": children,
            },
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
