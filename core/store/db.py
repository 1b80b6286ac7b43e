"""Engine and session factory: URL resolution, schema upgrade, workspace-scoped transactions."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, with_loader_criteria

from .models import AuditEvent, Base, Workspace, WorkspaceScoped

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


def redact_url(url: str) -> str:
    """The URL with its password hidden, safe to show or log; never raises, never echoes an unreadable URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show only a scheme-like prefix, never the rest
        scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*(?=://)", str(url))
        return f"{scheme.group(0)}://***" if scheme else "(an unreadable URL)"


def scrub_url(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with the URL, and any password in it, redacted."""
    text = str(text).replace(str(url), redact_url(url))
    try:
        password = make_url(url).password
    except Exception:
        password = None
    return text.replace(password, "***") if password else text


def make_engine(url: str | None = None, *, upgrade: bool = True) -> Engine:
    """An engine on ``url`` whose schema is upgraded to the newest migration."""
    url = resolve_url(url)
    kwargs: dict = {"future": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    if upgrade:
        upgrade_schema(engine)
    return engine


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
