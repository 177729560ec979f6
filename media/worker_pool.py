"""Relays in worker processes (``--media-workers N``): one Python process tops
out near one core, so calls are spread over N processes, each new call to the
least-loaded one. The app keeps the media URL on its own origin and hands each
offer to the worker holding the call over the internal API, every request signed
with the deployment's key (media/internal_auth.py)."""

import asyncio
import contextlib
import json
import logging
import multiprocessing
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import aiohttp
from yarl import URL

from media.config import MediaConfig
from media.errors import BadOffer, NotAParticipant, RelayUnavailable, UnknownCall
from media.internal_auth import Signer, signing_key
from media.pool import RelayPool
from media.recording_dump import DumpTarget
from media.worker import FIGURES_EVERY, run_worker, worker_url

log = logging.getLogger(__name__)

FIGURES_FRESH = 2 * FIGURES_EVERY + 1.0
"""A worker's pushed figures older than this are not taken: it is asked instead
(one that is stuck does not answer, and is left out of what the node reports)."""


def config_port(config: MediaConfig, index: int) -> int:
    """Worker ``index``'s port: counted up from --internal-address's, or any free one."""
    return config.internal_port + index if config.internal_port else 0


STOP_GRACE = 1.5
"""Seconds the workers have to exit after SIGTERM (then SIGKILL, then as long again):
the node's whole stop must end within 10 s (web/shutdown.py)."""


async def _exited(workers: "list[_Worker]", within: float) -> None:
    """Until every worker process has exited, at most ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if not any(w.process is not None and w.process.is_alive() for w in workers):
            return
        await asyncio.sleep(0.05)


@dataclass
class _Worker:
    index: int
    """Our worker's number; -1 for another process's worker that holds a call."""
    process: BaseProcess | None
    url: str
    lifeline: Connection | None
    """Our end of the worker's lifeline: never written; when this process dies the
    kernel closes it and the worker, seeing end-of-file, exits."""
    calls: set[str] = field(default_factory=set)
    alive: bool = True
    events: asyncio.Task[None] | None = None
    figures: dict[str, float] | None = None
    """What the worker last pushed over /events (media/worker.py, FIGURES_EVERY)."""
    figures_at: float = 0.0
    """When they arrived (this process's monotonic clock)."""


class WorkerRelayPool(RelayPool):
    def __init__(
        self,
        config: MediaConfig,
        log_level: str = "warning",
        log_format: str = "text",
        secret: str | None = None,
    ) -> None:
        self._config = config
        self._log_level = log_level
        self._log_format = log_format
        # Shared by the deployment (--cluster-secret) so that every process may hand
        # offers to every process's workers; else this run's own.
        self._secret = secret or secrets.token_urlsafe(32)
        self._signer = Signer(signing_key(self._secret))
        self._workers: list[_Worker] = []
        self._others: dict[str, _Worker] = {}
        """Other processes' workers that hold calls whose requests reached us."""
        self._where: dict[str, _Worker] = {}
        self._opened: set[str] = set()
        self._legs: dict[str, frozenset[str]] = {}
        """The legs each call declared with its latest offer (told "lost" if its
        worker goes away)."""
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        pending = []
        for index in range(self._config.workers):
            receive, send = context.Pipe(duplex=False)
            lifeline_end, lifeline = context.Pipe(duplex=False)
            process = context.Process(
                target=run_worker,
                args=(
                    self._config,
                    self._secret,
                    send,
                    lifeline_end,
                    self._log_level,
                    self._log_format,
                    config_port(self._config, index),
                ),
                name=f"windowlink-relay-{index}",
                daemon=True,
            )
            process.start()
            send.close()
            lifeline_end.close()
            pending.append((index, process, receive, lifeline))
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        loop = asyncio.get_running_loop()
        for index, process, receive, lifeline in pending:
            ready = await loop.run_in_executor(None, receive.poll, 60)
            if not ready:
                raise RelayUnavailable(f"relay worker {index} did not start")
            port = receive.recv()
            receive.close()
            worker = _Worker(index, process, worker_url(self._config.internal_host, port), lifeline)
            worker.events = asyncio.create_task(self._follow(worker))
            self._workers.append(worker)

    async def _follow(self, worker: _Worker) -> None:
        """Media events from the worker; if it goes away, its calls' media is lost."""
        assert self._http is not None
        try:
            headers = self._signer.headers("GET", worker.url, "/events", b"", time.time())
            async with self._http.ws_connect(
                f"{worker.url}/events", heartbeat=10, headers=headers
            ) as ws:
                async for message in ws:
                    if message.type is aiohttp.WSMsgType.TEXT:
                        self._take_event(worker, message.data)
        except (aiohttp.ClientError, OSError):
            pass
        except asyncio.CancelledError:
            return
        worker.alive = False
        log.error("relay worker %d is gone; its calls lose media", worker.index)
        for call_id in list(worker.calls):
            for participant in sorted(self._legs.get(call_id, ())):
                self._notify(call_id, participant, "lost")

    def _take_event(self, worker: _Worker, data: str) -> None:
        """One message of the worker's /events: its figures, or a leg's media
        status. One it cannot read is logged and skipped, never the end of the
        worker's events."""
        try:
            event = json.loads(data)
            if "figures" in event:
                worker.figures = {k: float(v) for k, v in event["figures"].items()}
                worker.figures_at = time.monotonic()
            else:
                call_id, participant, status = (
                    event["call_id"],
                    event["participant"],
                    event["status"],
                )
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("relay worker %d sent an event this process cannot read", worker.index)
            return
        if "figures" not in event:
            self._notify(call_id, participant, status)

    async def close(self) -> None:
        for worker in self._workers:
            if worker.events is not None:
                worker.events.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.events
        if self._http is not None:
            await self._http.close()
        for worker in self._workers:
            assert worker.process is not None
            worker.process.terminate()
        # Polled rather than joined in threads: a stop that gives up waiting must not
        # leave a thread joining a worker, which the interpreter would wait for at exit.
        await _exited(self._workers, STOP_GRACE)
        for worker in self._workers:
            assert worker.process is not None and worker.lifeline is not None
            if worker.process.is_alive():
                log.warning("relay worker %d did not stop in time; killed", worker.index)
                worker.process.kill()
            worker.lifeline.close()
        await _exited(self._workers, STOP_GRACE)
        self._workers.clear()
        self._others.clear()

    async def _request(
        self, method: str, worker: _Worker, path: str, body: str | None = None
    ) -> tuple[int, str]:
        assert self._http is not None
        data = (body or "").encode()
        headers = self._signer.headers(method, worker.url, path, data, time.time())
        try:
            async with self._http.request(
                method, URL(worker.url + path, encoded=True), data=data, headers=headers
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RelayUnavailable(f"relay worker {worker.index} does not answer") from exc
        if status == 403 and _error_code(text) == "forbidden":
            log.error(
                "relay worker %s refused this process's signed request: is --cluster-secret "
                "the same on every node, and are the clocks in step?",
                worker.url,
            )
            raise RelayUnavailable(f"relay worker {worker.index} refused the request")
        return status, text

    async def place(self, call_id: str) -> str:
        """Assign the call to our least-loaded worker. The worker builds the relay
        with the first offer, so a call that never sends media costs it nothing."""
        alive = [w for w in self._workers if w.alive]
        if not alive:
            raise RelayUnavailable("no relay worker is running")
        worker = min(alive, key=lambda w: len(w.calls))
        self._route(call_id, worker)
        return worker.url

    def adopt(self, call_id: str, placement: str) -> None:
        placed = self._where.get(call_id)
        if placed is not None and placed.url == placement:
            return
        worker = next((w for w in self._workers if w.url == placement), None)
        if worker is None:
            if not placement.startswith("http://"):
                raise RelayUnavailable("the call's media is held where no worker can reach")
            worker = self._others.setdefault(placement, _Worker(-1, None, placement, None))
        self._route(call_id, worker)

    def _route(self, call_id: str, worker: _Worker) -> None:
        previous = self._where.get(call_id)
        if previous is not None:
            previous.calls.discard(call_id)
        worker.calls.add(call_id)
        self._where[call_id] = worker

    def _worker_of(self, call_id: str) -> _Worker:
        worker = self._where.get(call_id)
        if worker is None:
            raise UnknownCall("no relay for this call")
        return worker

    async def connect(
        self, call_id: str, participant: str, offer_sdp: str, legs: Collection[str]
    ) -> str:
        worker = self._worker_of(call_id)
        declared = frozenset(legs)
        self._legs[call_id] = declared
        status, text = await self._request(
            "POST",
            worker,
            f"/calls/{call_id}/legs/{participant}?legs={','.join(sorted(declared))}",
            offer_sdp,
        )
        if status == 201:
            self._opened.add(call_id)
            return text
        if status == 400:
            raise BadOffer(json.loads(text).get("message", "bad offer"))
        if status == 403:
            raise NotAParticipant(json.loads(text).get("message", "not a participant"))
        if status == 404:
            raise UnknownCall("no relay for this call")
        raise RelayUnavailable(f"relay worker {worker.index} failed ({status})")

    async def start_recording(self, call_id: str, target: DumpTarget) -> None:
        worker = self._worker_of(call_id)
        status, _ = await self._request(
            "PUT", worker, f"/calls/{call_id}/recording", target.to_json()
        )
        if status == 404:
            raise UnknownCall("no relay for this call")
        if status != 204:
            raise RelayUnavailable(f"relay worker {worker.index} could not record ({status})")

    async def stop_recording(self, call_id: str) -> bool:
        worker = self._where.get(call_id)
        if worker is None:
            return False
        status, _ = await self._request("DELETE", worker, f"/calls/{call_id}/recording")
        return status == 204

    async def disconnect(self, call_id: str, participant: str) -> bool:
        worker = self._where.get(call_id)
        if worker is None:
            return False
        status, _ = await self._request("DELETE", worker, f"/calls/{call_id}/legs/{participant}")
        return status == 204

    async def close_call(self, call_id: str) -> None:
        worker = self._where.pop(call_id, None)
        self._legs.pop(call_id, None)
        if worker is None:
            return
        worker.calls.discard(call_id)
        if worker.index < 0:
            if not worker.calls:
                self._others.pop(worker.url, None)
            # Another process's worker: we cannot know whether media was offered.
            with contextlib.suppress(RelayUnavailable):
                await self._request("DELETE", worker, f"/calls/{call_id}")
        elif worker.alive and call_id in self._opened:
            await self._request("DELETE", worker, f"/calls/{call_id}")
        self._opened.discard(call_id)

    def local_urls(self) -> frozenset[str]:
        return frozenset(w.url for w in self._workers)

    async def worker_figures(self) -> dict[str, dict[str, float]]:
        """What each live worker pushed last, with when it came (``measured_at``,
        this process's monotonic clock); asked over HTTP of one whose last push
        is not fresh (just started, or stuck: then it does not answer either and
        is left out)."""
        now = time.monotonic()
        found: dict[str, dict[str, float]] = {}
        for worker in self._workers:
            if not worker.alive:
                continue
            if worker.figures is not None and now - worker.figures_at <= FIGURES_FRESH:
                found[worker.url] = {**worker.figures, "measured_at": worker.figures_at}
                continue
            figures = await self._figures_of(worker)
            if figures is not None:
                found[worker.url] = {**figures, "measured_at": time.monotonic()}
        return found

    async def peer_connections(self) -> int:
        return int(sum(f.get("peer_connections", 0) for f in (await self.stats()).values()))

    async def stats(self) -> dict[str, dict[str, float]]:
        return {str(worker.index): figures for worker, figures in await self._live_figures()}

    async def _live_figures(self) -> list[tuple[_Worker, dict[str, float]]]:
        """Each live own worker's /stats (those that do not answer are left out)."""
        found = []
        for worker in self._workers:
            if worker.alive:
                figures = await self._figures_of(worker)
                if figures is not None:
                    found.append((worker, figures))
        return found

    async def _figures_of(self, worker: _Worker) -> dict[str, float] | None:
        try:
            status, text = await self._request("GET", worker, "/stats")
        except RelayUnavailable:
            return None
        if status != 200:
            return None
        return {k: float(v) for k, v in json.loads(text).items()}


def _error_code(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None
