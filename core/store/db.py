"""Engine and session factory: URL resolution, schema upgrade, workspace-scoped transactions."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, with_loader_criteria

from core.redact import redact_url, register_secret, scrub_url, url_secrets  # noqa: F401  (redact_url/scrub_url re-exported)

from .models import AuditEvent, Base, Workspace, WorkspaceScoped

T = TypeVar("T")
#: Seconds the current write attempt may wait for SQLite's write lock (None: the engine's busy timeout).
_write_wait: ContextVar[float | None] = ContextVar("sqlite_write_wait", default=None)

#: Environment variable that names the database (any SQLAlchemy URL).
DB_URL_ENV = "MARKETING_SUITE_DB_URL"
DEFAULT_WORKSPACE = "default"
_WORKSPACE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


#: Called as ``hook(session, workspace_id)`` at the end of every `transaction` body, before it commits
#: (`core.access` appends the audit row of the running action there, so both commit together).
BEFORE_COMMIT: list = []


class WorkspaceViolation(PermissionError):
    """A session tried to write a row of another workspace."""


class AppendOnlyViolation(PermissionError):
    """A session tried to change or delete a row of the audit log."""


def has_writes(session: Session) -> bool:
    """Whether the session's transaction wrote (or is about to flush) anything."""
    return bool(session.info.get("wrote") or session.new or session.deleted
                or any(session.is_modified(o) for o in session.dirty))


def default_sqlite_url() -> str:
    """A SQLite file in the user's data directory."""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("marketing-suite", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'marketing_suite.db'}"


def resolve_url(explicit: str | None = None) -> str:
    """The database URL: an explicit one (from secrets), else the environment, else local SQLite."""
    return explicit or os.environ.get(DB_URL_ENV) or default_sqlite_url()


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be opened; the message names it without its secrets."""


class DatabaseBusy(RuntimeError):
    """A write waited for the database longer than its patience (another process holds the write lock)."""


#: How long a SQLite write waits for another writer's lock before giving up (``PRAGMA busy_timeout``).
SQLITE_BUSY_TIMEOUT = 30.0


def is_busy_error(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked / busy" (another connection holds the write lock)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def make_engine(url: str | None = None, *, upgrade: bool = True, busy_timeout: float = SQLITE_BUSY_TIMEOUT) -> Engine:
    """An engine on ``url`` whose schema is upgraded to the newest migration.

    SQLite runs in WAL mode (readers never wait for the writer) and a write waits up to
    ``busy_timeout`` seconds for another writer. Raises `DatabaseUnavailable` (without the URL's
    secrets) when the URL is unusable or the database cannot be reached.
    """
    url = resolve_url(url)
    register_secret(*url_secrets(url))
    kwargs: dict = {"future": True}
    try:
        dialect = make_url(url).get_backend_name()
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot open the database {redact_url(url)}: {_first_line(exc, url)}") from None
    if dialect == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": float(busy_timeout)}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:
        raise DatabaseUnavailable(f"cannot open the database {redact_url(url)}: {_first_line(exc, url)}") from None
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit is appended to the WAL file without an fsync (the WAL is synced at
            # checkpoints). A committed transaction survives the process being killed (the OS has its
            # pages; tests/tracking/test_collector_tail.py kills a collector mid-traffic); an OS crash or
            # power loss may lose the last commits before the next checkpoint, never the file's consistency.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()
            _record.info["busy_timeout_ms"] = int(busy_timeout * 1000)

        @event.listens_for(engine, "begin")
        def _sqlite_wait(conn):  # pragma: no cover - trivial
            # `patient_write` shortens the wait of its attempts, so it can say that it is waiting
            wait = _write_wait.get()
            millis = int((busy_timeout if wait is None else wait) * 1000)
            if conn.info.get("busy_timeout_ms") != millis:  # a statement per transaction only when it changes
                conn.exec_driver_sql(f"PRAGMA busy_timeout={millis}")
                conn.info["busy_timeout_ms"] = millis

    if upgrade:
        try:
            upgrade_schema(engine)
        except Exception as exc:
            engine.dispose()
            raise DatabaseUnavailable(f"cannot open the database {redact_url(url)}: {_first_line(exc, url)}") from None
    _register_app_database(engine)
    return engine


# ---------------------------------------------------------------------- the app's own databases
#: Identities of the databases this process keeps its own data in (every engine `make_engine` made):
#: a SQL source is never one of them. SQLite: the file's real path; PostgreSQL: server and database.
_APP_DATABASES: set[tuple] = set()


def database_identity(conn) -> tuple | None:
    """What identifies the database behind ``conn`` however it is reached (another host name for the
    same server, a symlink or a detour in a file path); None for an in-memory database."""
    name = conn.dialect.name
    if name == "sqlite":
        rows = conn.exec_driver_sql("PRAGMA database_list").all()
        path = next((r[2] for r in rows if r[1] == "main"), "")
        return ("sqlite", os.path.realpath(path)) if path else None
    if name == "postgresql":
        row = conn.exec_driver_sql(
            "SELECT current_database(), pg_postmaster_start_time()::text, "
            "(SELECT oid FROM pg_database WHERE datname = current_database())::text, current_setting('port')").one()
        return ("postgresql", *map(str, row))
    return None


def _register_app_database(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            identity = database_identity(conn)
            conn.rollback()
    except Exception:  # an identity we cannot read is one we cannot be asked to refuse
        return
    if identity is not None:
        _APP_DATABASES.add(identity)


def is_app_database(conn) -> bool:
    """Whether ``conn`` reaches one of the databases this process keeps its own data in."""
    identity = database_identity(conn)
    if identity is None:
        return False
    if identity[0] == "sqlite":  # compare files (the same file under another name), not spellings
        for kind, *rest in _APP_DATABASES:
            if kind == "sqlite" and os.path.exists(rest[0]) and os.path.exists(identity[1]) \
                    and os.path.samefile(rest[0], identity[1]):
                return True
        return False
    return identity in _APP_DATABASES


def patient_write(engine: Engine, write: Callable[[], T], *, patience: float, what: str,
                  on_wait: Callable[[float], None] | None = None, step: float = 1.0) -> T:
    """Run ``write`` (one whole transaction) and, while SQLite says another connection holds the write
    lock, try again for up to ``patience`` seconds, calling ``on_wait(seconds waited)`` after each
    attempt so the caller can say that it is waiting. Each attempt rolls back whole, so a retry is safe.

    Raises `DatabaseBusy` naming ``what`` when the lock is still held after ``patience`` seconds.
    Other databases (PostgreSQL waits on row locks by itself) run ``write`` once.
    """
    if engine.dialect.name != "sqlite":
        return write()
    start, attempt = time.monotonic(), 0
    while True:
        left = patience - (time.monotonic() - start)
        # the first attempt hardly waits, so a caller hears at once that the write must wait
        wait = 0.05 if attempt == 0 else max(0.05, min(step, left))
        attempt += 1
        try:
            with sqlite_busy_wait(wait):
                return write()
        except OperationalError as exc:
            if not is_busy_error(exc):
                raise
            waited = time.monotonic() - start
            if waited >= patience:
                raise DatabaseBusy(f"the database is busy with another write (for example a large import) and did "
                                   f"not free up within {patience:.0f} s: {what}") from None
            if on_wait is not None:
                on_wait(waited)


class WriterTurn:
    """The OS lock (``flock`` on ``<database file>-writers.lock``) that processes writing one SQLite file take
    in turns, one write transaction at a time: the next one wakes the moment the lock is free. Without it
    they meet SQLite's busy handler, which polls with sleeps of 1 to 100 ms and let one collector worker
    wait tens of milliseconds for a lock free long before. Only writers that take it take turns; any other
    writer still meets the busy timeout. ``active`` is False (and `take` always succeeds) except on SQLite
    files on a system with ``fcntl``. Kept open, it costs no open/close per transaction (the collector's loop)."""

    def __init__(self, engine: Engine):
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        self._fcntl = fcntl
        self._fd = None
        if path and path != ":memory:" and not path.startswith("file:") and fcntl is not None:
            self._fd = os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT, 0o600)

    @property
    def active(self) -> bool:
        return self._fd is not None

    def take(self, *, wait: bool = True) -> bool:
        """Take the turn, waiting for it (``wait``) or not: False when another writer holds it."""
        if self._fd is None:
            return True
        try:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_EX if wait else self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            self._fcntl.flock(self._fd, self._fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


@contextmanager
def sqlite_writer_turn(engine: Engine) -> Iterator[None]:
    """Hold the writers' turn of a SQLite file (`WriterTurn`) for one write transaction; a no-op elsewhere."""
    turn = WriterTurn(engine)
    try:
        turn.take()
        yield
    finally:
        turn.close()


@contextmanager
def sqlite_busy_wait(seconds: float) -> Iterator[None]:
    """Transactions begun inside wait at most ``seconds`` for another connection's SQLite write lock
    (instead of the engine's busy timeout), then fail with "database is locked" (`is_busy_error`)."""
    token = _write_wait.set(seconds)
    try:
        yield
    finally:
        _write_wait.reset(token)


def _first_line(exc: BaseException, url: str) -> str:
    """``Type: first line of the message`` of a driver error, with the URL's secrets scrubbed."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {scrub_url(lines[0][:300], url)}" if lines else type(cause).__name__


def upgrade_schema(engine: Engine) -> None:
    """Run the Alembic migrations up to head on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def check_workspace_id(workspace_id: str) -> str:
    if not _WORKSPACE_ID.match(workspace_id or ""):
        raise ValueError("a workspace id is 1-64 letters, digits, '.', '_' or '-'")
    return workspace_id


def make_workspace_session(engine: Engine, workspace_id: str) -> Session:
    """A session that only reads and writes rows of ``workspace_id``.

    Every ORM SELECT, UPDATE and DELETE gets ``workspace_id = :ws`` added; new rows get the
    workspace filled in; flushing a row of another workspace raises `WorkspaceViolation`.
    """
    check_workspace_id(workspace_id)
    session = Session(engine, expire_on_commit=False)
    session.info["workspace_id"] = workspace_id

    @event.listens_for(session, "do_orm_execute")
    def _scope(state):
        if state.is_insert or state.is_update or state.is_delete:
            session.info["wrote"] = True
            if (state.is_update or state.is_delete) and any(m.class_ is AuditEvent for m in state.all_mappers):
                raise AppendOnlyViolation("the audit log is append-only")
        if state.is_select or state.is_update or state.is_delete:
            state.statement = state.statement.options(
                with_loader_criteria(WorkspaceScoped, lambda cls: cls.workspace_id == workspace_id, include_aliases=True)
            )

    @event.listens_for(session, "before_flush")
    def _guard(sess, _ctx, _instances):
        if sess.new or sess.deleted or any(sess.is_modified(o) for o in sess.dirty):
            sess.info["wrote"] = True
        for obj in list(sess.new) + list(sess.dirty) + list(sess.deleted):
            if isinstance(obj, AuditEvent) and obj not in sess.new:
                raise AppendOnlyViolation("the audit log is append-only")
            if isinstance(obj, WorkspaceScoped):
                if obj.workspace_id is None and obj in sess.new:
                    obj.workspace_id = workspace_id
                elif obj.workspace_id != workspace_id:
                    raise WorkspaceViolation(f"{type(obj).__name__} belongs to another workspace")

    return session


@contextmanager
def transaction(engine: Engine, workspace_id: str = DEFAULT_WORKSPACE) -> Iterator[Session]:
    """One transaction in one workspace: commits whole on success, leaves no trace on error."""
    session = make_workspace_session(engine, workspace_id)
    try:
        with session.begin():
            ensure_workspace(session, workspace_id)
            session.info["wrote"] = False  # a first use creating the workspace row is not the caller's write
            yield session
            for hook in BEFORE_COMMIT:
                hook(session, workspace_id)
    finally:
        session.close()


def ensure_workspace(session: Session, workspace_id: str, name: str | None = None) -> None:
    if session.get(Workspace, workspace_id) is None:
        session.add(Workspace(id=workspace_id, name=name or workspace_id))
        session.flush()


def list_workspaces(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(Workspace.id).order_by(Workspace.id)))


def create_all_for_tests(engine: Engine) -> None:
    """Create tables directly from the models (tests of the migration compare against this)."""
    Base.metadata.create_all(engine)
