"""Where a collector request spends its time: opt-in instrumentation for the ingest benchmark.

Set ``MARKETING_SUITE_COLLECTOR_TRACE=<directory>`` before ``python -m core serve`` starts: each worker
process then records, per ingest request, the `time.perf_counter` stamps of its stages (arrival,
parsed, queued, group taken by a writer, write lock held, committed, answered) with its group's
size, and beside them the garbage collector's pauses (per generation, `gc.callbacks`), the event
loop's lag, and on SQLite the WAL's state (frames, frames checkpointed) before and after each group.
It writes them to ``<directory>/trace-<pid>.json`` when the process stops; `bench/bench_tracking.py
--trace` joins them with the load generator's own stamps (``perf_counter`` is the system-wide
monotonic clock on Linux, so the processes' stamps compare).

Off (the default), the collector holds ``tracer = None`` and pays one ``is None`` test per stage.
"""

from __future__ import annotations

import asyncio
import gc
import json
import mmap
import os
import sys
import time

TRACE_ENV = "MARKETING_SUITE_COLLECTOR_TRACE"
_LOOP_TICK = 0.002  # the lag probe sleeps this long and records how late it wakes


class RequestTrace:
    """The stamps of one request (seconds, `time.perf_counter`)."""

    __slots__ = ("event_id", "arrived", "read", "authorized", "settled", "parsed", "queued", "taken", "locked", "committed", "woken", "answered",
                 "group", "group_rows", "checkpointed", "wal_frames")

    def __init__(self, arrived: float):
        self.arrived = arrived
        self.event_id = None
        self.read = self.authorized = self.settled = self.parsed = self.queued = self.taken = self.locked = self.committed = self.woken = self.answered = 0.0
        self.group = self.group_rows = self.checkpointed = self.wal_frames = 0

    def as_list(self) -> list:
        return [getattr(self, name) for name in self.__slots__]


class WalWatch:
    """The WAL's frame count and checkpointed frames, read from the SQLite wal-index (``-shm``) header:
    ``mxFrame`` at byte 16 and ``nBackfill`` at byte 96 (SQLite's documented WAL-index format)."""

    def __init__(self, database: str):
        self.path = f"{database}-shm"
        self._map = None

    def read(self) -> tuple[int, int]:
        try:
            if self._map is None:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    self._map = mmap.mmap(fd, 128, prot=mmap.PROT_READ)
                finally:
                    os.close(fd)
            m = self._map
            return int.from_bytes(m[16:20], sys.byteorder), int.from_bytes(m[96:100], sys.byteorder)
        except (OSError, ValueError):
            return -1, -1


class Tracer:
    """One process's records; `dump` writes them as JSON."""

    def __init__(self, directory: str, database: str | None = None):
        self.directory = directory
        self.requests: list[RequestTrace] = []
        self.gc_pauses: list[tuple[int, float, float, int]] = []  # (generation, start, seconds, collected)
        #: (woke at, seconds late, and the loop thread's totals so far from /proc/<tid>/schedstat: seconds
        #: runnable but not running (the OS gave its core to another process), seconds on a core)
        self.loop_lag: list[tuple[float, float, float, float]] = []
        self.refreshes: list[tuple[str, float, float]] = []  # background refreshes of keys/settings: (what, start, seconds)
        self.checkpoints: list[tuple] = []  # background: (start, seconds, WAL frames, copied, in the writers' turn)
        self.wal = WalWatch(database) if database else None
        self._gc_start = 0.0
        self._probe: asyncio.Task | None = None

    @classmethod
    def from_environment(cls, engine) -> "Tracer | None":
        directory = os.environ.get(TRACE_ENV)
        if not directory:
            return None
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        return cls(directory, database)

    def checkpointed(self, done) -> None:
        """`core.store.checkpoint.WalCheckpointer`'s hook: one background checkpoint."""
        self.checkpoints.append((done.started, done.seconds, done.wal_frames, done.checkpointed, done.in_writers_turn))

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._probe = asyncio.get_running_loop().create_task(self._lag_probe())

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_start = now
        else:
            self.gc_pauses.append((info["generation"], self._gc_start, now - self._gc_start, info.get("collected", 0)))

    async def _lag_probe(self) -> None:
        with open("/proc/thread-self/schedstat", "rb", buffering=0) as stat:  # the loop thread's
            while True:
                due = time.perf_counter() + _LOOP_TICK
                await asyncio.sleep(_LOOP_TICK)
                now = time.perf_counter()
                stat.seek(0)
                on_cpu, run_queue = stat.read().split()[:2]
                self.loop_lag.append((now, now - due, int(run_queue) / 1e9, int(on_cpu) / 1e9))

    def stop(self) -> None:
        self.objects = (gc.get_freeze_count(), len(gc.get_objects()))
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._probe is not None:
            self._probe.cancel()
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, f"trace-{os.getpid()}.json"), "w") as out:
            json.dump({"pid": os.getpid(), "fields": list(RequestTrace.__slots__),
                       "requests": [r.as_list() for r in self.requests], "gc": self.gc_pauses,
                       "loop_lag": self.loop_lag, "checkpoints": self.checkpoints,
                       "refreshes": self.refreshes, "objects": self.objects}, out)


__all__ = ["TRACE_ENV", "Tracer", "RequestTrace", "WalWatch"]
