"""SQLite WAL checkpoints in a background thread, off the commit path of the collector's writers.

With SQLite's automatic checkpoint, the commit that takes the WAL past 1,000 pages copies them into
the database and syncs both files (two fsyncs; +10 ms on that group's write here) before its requests
are answered: at 2,000 events/s that was 1 to 1.5 % of the requests, right at the collector's p99. The
collector's writer connections turn the automatic checkpoint off (``PRAGMA wal_autocheckpoint=0``)
and `WalCheckpointer` checkpoints instead, from its own thread and connection:

* every `interval` seconds a PASSIVE checkpoint copies what the WAL holds while the writers go on
  (a checkpoint takes no write lock; readers and writers keep working);
* a WAL can only restart from its beginning when every frame is checkpointed at the moment a writer
  starts, which never happens while writers append continuously, so once the WAL is longer than
  `restart_frames` one more PASSIVE checkpoint runs in the writers' turn (`sqlite_writer_turn`):
  it copies only the frames appended since the last one, then the next write restarts the WAL.
  The WAL stays bounded, and a group waits for a short catch-up every few seconds instead of a
  full checkpoint every 1,000 pages.

Durability is unchanged: a commit is in the WAL file when it returns (``synchronous=NORMAL``: it
survives the process being killed, and SQLite replays the WAL on the next open); a checkpoint only
moves committed pages into the database file. Only one process checkpoints a file at a time (an OS
lock on ``<database>-checkpointer.lock``); another takes over if that process dies.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from .db import sqlite_writer_turn

log = logging.getLogger("marketing_suite.checkpoint")
#: Seconds between background checkpoints.
CHECKPOINT_INTERVAL = 0.25
#: WAL length (pages; 64 MB of 4 KB pages, a few seconds at 2,000 events/s) past which a catch-up checkpoint in the writers' turn lets the WAL restart.
RESTART_FRAMES = 16_000


@dataclass
class Checkpoint:
    """One checkpoint: when, how long, the WAL's length and pages copied (SQLite's answer), and
    whether it ran in the writers' turn so the WAL could restart."""

    started: float
    seconds: float
    wal_frames: int
    checkpointed: int
    in_writers_turn: bool


def file_checkpointable(engine: Engine) -> bool:
    """Whether ``engine`` is a SQLite file (not in memory) on a system with ``fcntl``."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - Windows
        return False
    return bool(path) and path != ":memory:" and not path.startswith("file:")


class WalCheckpointer:
    """Checkpoints ``engine``'s WAL every ``interval`` seconds in a daemon thread (`start`/`stop`);
    ``on_checkpoint(Checkpoint)`` is called after each (the collector's trace records them)."""

    def __init__(self, engine: Engine, *, interval: float = CHECKPOINT_INTERVAL, restart_frames: int = RESTART_FRAMES,
                 on_checkpoint=None):
        self.engine, self.interval, self.restart_frames = engine, interval, restart_frames
        self.on_checkpoint = on_checkpoint
        self.count = 0  # checkpoints run by this process
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        import fcntl

        fd = os.open(f"{self.engine.url.database}-checkpointer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        conn = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # one process checkpoints; kept once taken
                except BlockingIOError:
                    continue
                try:
                    if conn is None:
                        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                    self.checkpoint(conn)
                except Exception as exc:  # the next round retries on a fresh connection
                    log.error("the background WAL checkpoint failed: %s: %s", type(exc).__name__, exc)
                    if conn is not None:
                        conn.invalidate()
                        conn = None
        finally:
            if conn is not None:
                conn.close()
            os.close(fd)  # releases the lock

    def checkpoint(self, conn) -> list[Checkpoint]:
        """One round on ``conn`` (an autocommit connection): a PASSIVE checkpoint, then, if the WAL is
        longer than `restart_frames`, a catch-up one in the writers' turn."""
        done = [self._passive(conn, in_turn=False)]
        if done[0].wal_frames >= self.restart_frames:
            with sqlite_writer_turn(self.engine):
                done.append(self._passive(conn, in_turn=True))
        return done

    def _passive(self, conn, *, in_turn: bool) -> Checkpoint:
        started = time.perf_counter()
        _busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        result = Checkpoint(started, time.perf_counter() - started, int(frames), int(copied), in_turn)
        self.count += 1
        if self.on_checkpoint is not None:
            self.on_checkpoint(result)
        return result


__all__ = ["WalCheckpointer", "Checkpoint", "file_checkpointable", "CHECKPOINT_INTERVAL", "RESTART_FRAMES"]
