"""Recording a consultation (issue 23): where signaling's decisions (the citizen
consented, someone stopped, the call ended) meet the relay, the keys and the
document store.

- Started: a new data key (wrapped under today's period key, as a document's is)
  is recorded with the dump's path before the relay writes a byte, so that the dump
  stays readable whatever happens to the relay's process or node.
- Stopped or the call ended: the relay closes the dump; then, in the background,
  every unfinished dump of the call is read, remuxed into WebM (media.remux, no
  re-encoding) and stored as a document of the consultation through the document
  store's own upload path (encrypted, checked, audited), listed as a recording,
  and the dump is overwritten and removed. A dump left by a lost node is made
  into a recording the same way when its call ends (or at the next start).
- Declined: nothing is started, so nothing is written.

The remuxed file is held in memory between the muxer and the store, never in a
plaintext file.
"""

import asyncio
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from media.errors import RelayUnavailable, UnknownCall
from media.pool import RelayPool
from media.recording_dump import DumpTarget, read_dump
from media.remux import remux
from storage.errors import RecordNotFound
from storage.filestore import FileStore
from storage.filetypes import RECORDING
from storage.recordings import OpenDump, Recording
from storage.records import ConsultationState
from storage.store import Storage

log = logging.getLogger(__name__)
PART = 1 << 20
SEGMENT_SECONDS = 300.0
"""A long recording is made of segments of this length, each its own document: what
one job holds in memory (a few tens of MB of camera-like video) stays bounded."""
RECORDING_MAX = 1 << 30
"""A segment's limit, not the participants' documents' (--max-file-size)."""


class CallRecorder:
    def __init__(
        self,
        storage: Storage,
        files: FileStore,
        media: RelayPool,
        directory: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._files = files
        self._media = media
        self._directory = directory
        self._clock = clock
        self._finishing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._segments: dict[str, asyncio.Task[None]] = {}
        self.segment_seconds = SEGMENT_SECONDS

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="recording")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def on_media(self, call_id: str, relay: str | None, on: bool) -> None:
        """Signaling's decision (the citizen consented; someone stopped)."""
        if on:
            await self.start(call_id, relay)
        else:
            await self.stop(call_id, relay)

    async def close(self, within: float) -> None:
        """Recordings being made get ``within`` seconds; the rest are made at the
        next call's end or start (their dumps stay, with their keys)."""
        for segment in self._segments.values():
            segment.cancel()
        await asyncio.gather(*self._segments.values(), return_exceptions=True)
        self._segments.clear()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=within)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def start(self, call_id: str, relay: str | None) -> None:
        if relay is None:
            return
        await asyncio.to_thread(self._directory.mkdir, mode=0o700, parents=True, exist_ok=True)
        new = await self._files.keys.new()
        path = self._directory / f"{call_id}-{os.urandom(4).hex()}.dump"
        await self._storage.recordings.dump_started(
            str(path), call_id, new.kek_id, new.wrapped_key, self._clock()
        )
        try:
            self._media.adopt(call_id, relay)
            await self._media.start_recording(
                call_id, DumpTarget(str(path), int(new.suite), new.key, new.file_id)
            )
        except (RelayUnavailable, UnknownCall):
            log.warning("the relay of consultation %s could not start recording", call_id)
            return
        self._segments[call_id] = asyncio.create_task(
            self._next_segment(call_id, relay), name="recording-segment"
        )

    async def _next_segment(self, call_id: str, relay: str) -> None:
        """After a segment's length, the dump closes and a new one starts."""
        await asyncio.sleep(self.segment_seconds)
        self._segments.pop(call_id, None)
        await self.stop(call_id, relay)
        await self.start(call_id, relay)

    async def stop(self, call_id: str, relay: str | None) -> None:
        segment = self._segments.pop(call_id, None)
        if segment is not None and segment is not asyncio.current_task():
            segment.cancel()
        if relay is not None:
            try:
                self._media.adopt(call_id, relay)
                await self._media.stop_recording(call_id)
            except (RelayUnavailable, UnknownCall):
                log.warning("the relay of consultation %s could not stop recording", call_id)
        self._spawn(self.finish(call_id))

    async def call_ended(self, call_id: str) -> None:
        """The relay closed with the call (and its dump with it)."""
        segment = self._segments.pop(call_id, None)
        if segment is not None:
            segment.cancel()
        if await self._storage.recordings.unfinished_dumps(call_id):
            self._spawn(self.finish(call_id))

    def resume(self) -> None:
        """At start: the dumps left by a process or node that went down are made
        into recordings once their calls have ended (the others at their end)."""
        self._spawn(self._resume())

    async def _resume(self) -> None:
        for call_id in {
            d.consultation_id for d in await self._storage.recordings.unfinished_dumps()
        }:
            try:
                record = await self._storage.consultations.get(call_id)
            except RecordNotFound:
                continue
            if record.state is ConsultationState.ENDED:
                await self.finish(call_id)

    async def finish(self, call_id: str) -> None:
        """Every closed dump of the call made into a recording."""
        if call_id in self._finishing:
            return
        self._finishing.add(call_id)
        try:
            for dump in await self._storage.recordings.unfinished_dumps(call_id):
                try:
                    await self._finish_dump(dump)
                except Exception:
                    log.exception("the recording of consultation %s could not be made", call_id)
        finally:
            self._finishing.discard(call_id)

    async def _finish_dump(self, dump: OpenDump) -> None:
        key, _file_id = await self._files.keys.of_upload(
            SimpleNamespace(kek_id=dump.kek_id, wrapped_key=dump.wrapped_key)
        )
        path = Path(dump.path)
        out = io.BytesIO()

        def make() -> list[dict[str, object]]:
            if not path.exists():
                return []
            with path.open("rb") as source:
                report = remux(read_dump(source, key), out)
            if report.skipped_streams:
                # WebM holds no H.264: that video is left out (docs/DECISIONS.md).
                log.warning(
                    "recording of %s: %d stream(s) of a codec not remuxed left out",
                    dump.consultation_id,
                    report.skipped_streams,
                )
            return [
                {
                    "participant": t.participant,
                    "place": t.place,
                    "codec": t.codec,
                    "frames": t.frames,
                }
                for t in report.tracks
            ]

        # The call's relay may still be closing the dump (the last chunk): a moment.
        await asyncio.sleep(0.2)
        tracks = await asyncio.to_thread(make)
        recording: Recording | None = None
        if tracks and out.tell():
            stored = await self._store(dump, out.getvalue())
            recording = Recording(
                stored, dump.consultation_id, dump.started_at, json.dumps(tracks), self._clock()
            )
        if await self._storage.recordings.dump_finished(dump.path, recording, self._clock()):
            await asyncio.to_thread(_destroy, path)

    async def _store(self, dump: OpenDump, content: bytes) -> str:
        """The WebM file as a document of the consultation, by its answering expert."""
        record = await self._storage.consultations.get(dump.consultation_id)
        if record.expert_id is None:
            raise RecordNotFound("a recorded consultation without an expert")
        expert = await self._storage.accounts.get(record.expert_id)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(dump.started_at))
        name = f"录像-{stamp}.webm"
        upload = await self._files.begin(
            dump.consultation_id, expert, name, len(content), RECORDING_MAX
        )

        async def parts() -> AsyncIterator[bytes]:
            for start in range(0, len(content), PART):
                yield content[start : start + PART]

        await self._files.append(upload, 0, parts(), hashlib.sha256(content).digest(), len(content))
        stored = await self._files.finish(upload, expert, "recorder", RECORDING)
        return stored.id


def _destroy(path: Path) -> None:
    """Overwritten, then removed: the dump's content is encrypted, its key kept
    wrapped in the database for the recording's retention only."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(b"\0" * size)
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        return
