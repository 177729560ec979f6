"""What a (re)starting server removes from a data directory that other processes of
the same machine share (``--processes``: a child restarted beside the others)."""

import os
import subprocess
import sys
import time
from pathlib import Path

from storage.filestore import FileStore
from storage.keyring import DirectoryKeks, Keyring
from storage.sessions import SessionPolicy
from storage.store import Storage


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_a_restart_keeps_the_uploads_of_processes_still_running(tmp_path: Path) -> None:
    storage = await Storage.open(None, tmp_path, SessionPolicy(3600, 7200))
    try:
        keyring = await Keyring.open(DirectoryKeks(tmp_path / "keys"))
        first = await FileStore.open(tmp_path, keyring, storage.db, max_size=1 << 20)
        await first.close()
        parts = tmp_path / "tmp"
        running = parts / f"{os.getpid()}-aaaa.part"
        crashed = parts / f"{dead_pid()}-bbbb.part"
        forgotten = parts / f"{os.getpid()}-cccc.part"
        for path in (running, crashed, forgotten):
            path.write_bytes(b"x")
        # Untouched for longer than an upload may idle: nobody is writing it.
        old = time.time() - 3600
        os.utime(forgotten, (old, old))
        finishing = tmp_path / "files" / "dddd.wlf"
        finishing.write_bytes(b"x")
        orphan = tmp_path / "files" / "eeee.wlf"
        orphan.write_bytes(b"x")
        os.utime(orphan, (old, old))

        again = await FileStore.open(tmp_path, keyring, storage.db, max_size=1 << 20, tidy=True)
        await again.close()

        assert running.exists(), "another process's upload in progress was removed"
        assert not crashed.exists() and not forgotten.exists()
        assert finishing.exists(), "a file another process is committing was removed"
        assert not orphan.exists()
    finally:
        await storage.close()
