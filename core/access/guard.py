"""The check every mutating function of `core` runs, and the audit row it leaves in the same transaction.

A mutating function is decorated with `guarded`::

    @guarded(Role.APPROVER, "plan.approve", target="plan #{plan_id}")
    def approve(engine, workspace_id, plan_id, content_hash_, *, actor=None): ...

On every call the decorator resolves the actor (`as_actor`), checks its role in the workspace
(`require`; a refusal is an `AccessDenied` naming the role required, and is itself written to the audit
log), and records an *intent*. The first transaction of the call that writes (`core.store.db.transaction`)
appends the audit row before it commits, so the action and its audit row land together or not at all.
Nested guarded calls (the autopilot drafting, approving and executing) each leave their own row.

Every guarded function is listed in `GUARDED`; tests compare that registry with the functions of
`core` that write, so a new writer without a check fails the suite. `NOT_GUARDED` lists the few writers
that are not anyone's action (the simulated ad platform's own state, the delivery worker, the sample
data of a first start), each with its reason.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store import db as _db

from .roles import AccessDenied, Actor, Role, parse_role

log = logging.getLogger("marketing_suite.access")

# ------------------------------------------------------------------------------------------- local mode
_MODE = {"local_allowed": True, "entry": "cli"}


def set_local_mode(allowed: bool, *, entry: str | None = None) -> None:
    """Whether the local single-user principal may act in this process (the app turns it off when an
    identity provider is configured, so an action without a signed-in identity is refused), and the
    entry point of actions that name no actor ("page" in the app, "cli" otherwise)."""
    _MODE["local_allowed"] = bool(allowed)
    if entry is not None:
        Actor.local(entry=entry)  # validates the entry point
        _MODE["entry"] = entry


_SYSTEM: contextvars.ContextVar[str] = contextvars.ContextVar("access_system_task", default="")


def local_mode() -> bool:
    """Whether the local user may act here: local mode is on, or a system task (`system_task`) is running."""
    return bool(_MODE["local_allowed"] or _SYSTEM.get())


@contextmanager
def system_task(name: str) -> Iterator[Actor]:
    """Run work that is nobody's action (the sample data of a first start) as the local user, also when
    sign-in is required; the audit log names ``name``."""
    token = _SYSTEM.set(name)
    try:
        yield Actor.local(name, entry=_MODE["entry"])
    finally:
        _SYSTEM.reset(token)


def set_default_actor(actor: Actor | None) -> None:
    """Who acts in calls that name no actor, in this process (the command line's ``--as`` member); None:
    the local user."""
    _MODE["default"] = actor


def as_actor(value: Actor | str | None) -> Actor:
    """The actor of a call: an `Actor` as given; ``None`` is the process's default actor (``--as``) or the
    local user; a plain name is the local user (local mode)."""
    if isinstance(value, Actor):
        return value
    if value is None and _MODE.get("default") is not None:
        return _MODE["default"]
    if value is None or isinstance(value, str):
        return Actor.local(value or None, entry=_MODE["entry"])
    raise TypeError(f"actor must be an Actor, a name or None, not {type(value).__name__}")


# ------------------------------------------------------------------------------------------- requirements
@dataclass(frozen=True)
class Need:
    """What a function needs: a role, and whether a collector key may do it (``"any"`` key, or ``"server"``)."""

    role: Role
    collector: str | None = None

    @classmethod
    def of(cls, value: "Need | Role | str") -> "Need":
        return value if isinstance(value, Need) else cls(parse_role(value))


@dataclass(frozen=True)
class Guard:
    """A registered guarded function: what it needs, its audit action, whether it audits."""

    name: str
    need: Need
    action: str
    audit: bool
    function: Callable


#: qualified name -> `Guard` of every guarded function of `core`
GUARDED: dict[str, Guard] = {}

#: Writers that are nobody's action, with the reason. Each is reached only through a guarded function
#: or by a process that is not a person (see the module docstring).
NOT_GUARDED: dict[str, str] = {
    "core.platforms.sandbox.SandboxPlatform": "the simulated ad platform's own state (its account, live values, "
                                              "simulated days): reached through guarded sync, preview and execute",
    "core.tracking.dispatch.Dispatcher": "the delivery worker settling its outbox rows (claim, lease, outcome); "
                                         "it acts for no one and changes nothing a person decided",
    "core.tracking.runs.fail_interrupted_jobs": "marks API attribution jobs of a dead collector process as failed "
                                                "at its start",
    "core.sample.load_sample_if_empty": "fills an empty database with the shipped sample data on the first start",
    "core.access.members.bind_subject": "sign-in bookkeeping: records the signed-in person's own provider subject "
                                        "on their memberships",
    "core.access.guard.record_refusal": "the audit log's own rows for refused attempts",
}


def _qualname(fn: Callable) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


# ------------------------------------------------------------------------------------------- intents
@dataclass
class _Intent:
    engine_key: int
    workspace: str
    actor: Actor
    role: Role | None
    action: str
    audit: bool
    target: str = ""
    note: str = ""
    detail: dict = field(default_factory=dict)
    written: bool = False


_INTENTS: contextvars.ContextVar[tuple[_Intent, ...]] = contextvars.ContextVar("access_intents", default=())


def audit_target(text: str) -> None:
    """Name what the running guarded call acted on (e.g. the id it just created) in its audit row."""
    stack = _INTENTS.get()
    if stack:
        stack[-1].target = str(text)[:300]


def audit_note(text: str) -> None:
    """Add a sentence to the running guarded call's audit row."""
    stack = _INTENTS.get()
    if stack:
        stack[-1].note = (stack[-1].note + " " + str(text)).strip()[:2000]


def current_actor() -> Actor | None:
    """The actor of the innermost running guarded call (None outside one)."""
    stack = _INTENTS.get()
    return stack[-1].actor if stack else None


def _audit_row(ws: str, actor: Actor, action: str, target: str, outcome: str, detail: dict, note: str):
    from core.store.access_models import AuditEvent

    person = actor.person
    return AuditEvent(workspace_id=ws, actor=str(actor), subject=actor.subject[:255], email=(person.email or "")[:320],
                      entry_point=actor.entry, action=action[:80], target=target[:300], outcome=outcome,
                      detail=detail, note=note[:2000])


def _before_commit(session: Session, workspace_id: str) -> None:
    """`core.store.db.transaction` hook: the first writing transaction of a guarded call logs it."""
    if not _db.has_writes(session):
        return
    for intent in reversed(_INTENTS.get()):
        if intent.workspace != workspace_id:
            continue
        if not intent.audit:
            continue  # bookkeeping of an outer action: the outer call's row covers it
        if not intent.written:
            session.add(_audit_row(workspace_id, intent.actor, intent.action, intent.target, "ok", intent.detail,
                                   intent.note))
            session.flush()
            intent.written = True
        return


if _before_commit not in _db.BEFORE_COMMIT:
    _db.BEFORE_COMMIT.append(_before_commit)


def _workspace_exists(engine, workspace_id: str) -> bool:
    from core.store.models import Workspace

    with Session(engine) as s:
        return s.get(Workspace, workspace_id) is not None


def record_refusal(engine, workspace_id: str, actor: Actor, action: str, target: str, message: str) -> None:
    """Log a refused attempt (its own transaction: the action itself left nothing). Never raises."""
    try:
        if not _workspace_exists(engine, workspace_id):
            return  # no log rows for made-up workspace ids
        with Session(engine) as s, s.begin():
            s.add(_audit_row(workspace_id, actor, action, target, "refused", {}, message))
    except Exception as exc:  # the refusal stands even if its log row cannot be written
        log.warning("could not log a refused %s: %s", action, type(exc).__name__)


# ------------------------------------------------------------------------------------------- the check
def member_role(engine, workspace_id: str, actor: Actor) -> Role | None:
    """A signed-in person's role in the workspace (None when not a member, or the address is bound to
    another provider subject)."""
    from core.store.access_models import WorkspaceMember as M

    with Session(engine) as s:
        row = s.execute(select(M.role, M.subject).where(M.workspace_id == workspace_id, M.email == actor.email)).first()
    if row is None:
        return None
    if row.subject and actor.subject and row.subject != actor.subject:
        return None
    return parse_role(row.role)


def _decide(engine, workspace_id: str, actor: Actor, need: Need, action: str) -> Role | None:
    """The actor's role for this need (None: a collector key allowed without a role), or `AccessDenied`."""
    what = action or "this"
    if actor.kind == "local":
        if not local_mode():
            raise AccessDenied(f"{what} needs a signed-in identity: this app requires sign-in (local single-user mode "
                               "is off)", required=need.role, workspace=workspace_id, actor=str(actor))
        return Role.ADMIN
    if actor.kind == "collector":
        if need.collector is None:
            raise AccessDenied(f"{what} needs the {need.role} role in workspace {workspace_id!r}: a collector key may "
                               "only write tracked events and conversions", required=need.role, workspace=workspace_id,
                               actor=str(actor))
        if actor.workspace != workspace_id:
            raise AccessDenied(f"{actor} belongs to workspace {actor.workspace!r}, not {workspace_id!r}",
                               required=need.role, workspace=workspace_id, actor=str(actor))
        if need.collector == "server" and actor.key_kind != "server":
            raise AccessDenied(f"{what} needs a server key (a browser key may only write events and conversions)",
                               required=need.role, workspace=workspace_id, actor=str(actor))
        return None
    if actor.kind == "autopilot":
        authority = actor.on_behalf_of or Actor.local("autopilot", entry="autopilot")
        try:
            return _decide(engine, workspace_id, authority, need, action)
        except AccessDenied as exc:
            raise AccessDenied(f"{actor} cannot act: {exc}", required=need.role, workspace=workspace_id,
                               actor=str(actor)) from None
    role = member_role(engine, workspace_id, actor)
    if role is None:
        where = (f"workspace {workspace_id!r}" if _workspace_exists(engine, workspace_id)
                 else f"workspace {workspace_id!r}, which does not exist")
        raise AccessDenied(f"{what} needs the {need.role} role in {where}; {actor} is not a member (an admin adds "
                           "members on the Access page or with python -m core members add)", required=need.role,
                           workspace=workspace_id, actor=str(actor))
    return role


def _cached(engine, workspace_id: str, actor: Actor) -> tuple[bool, Role | None]:
    for intent in reversed(_INTENTS.get()):
        if intent.engine_key == id(engine) and intent.workspace == workspace_id and intent.actor.to_dict() == actor.to_dict():
            return True, intent.role
    return False, None


def require(engine, workspace_id: str, actor: Actor | str | None, need: Need | Role | str, *, action: str = "") -> Role | None:
    """Check that ``actor`` may do what ``need`` asks in ``workspace_id``; returns its role (None for a
    collector key), raises `AccessDenied` naming the role required."""
    actor, need = as_actor(actor), Need.of(need)
    known, role = _cached(engine, workspace_id, actor)
    if not known or actor.kind == "collector":  # a key's rights depend on the need, not on a role
        role = _decide(engine, workspace_id, actor, need, action)
    if role is not None and role < need.role:
        raise AccessDenied(f"{action or 'this'} needs the {need.role} role in workspace {workspace_id!r}; "
                           f"{actor} is {role}", required=need.role, workspace=workspace_id, actor=str(actor))
    return role


def may(engine, workspace_id: str, actor: Actor | str | None, need: Need | Role | str) -> bool:
    """Whether ``actor`` may do what ``need`` asks (for pages deciding what to offer)."""
    try:
        require(engine, workspace_id, actor, need)
        return True
    except AccessDenied:
        return False


@contextmanager
def acting(engine, workspace_id: str, actor: Actor | str | None, need: Need | Role | str, action: str, *,
           target: str = "", audit: bool = True, detail: dict | None = None) -> Iterator[Actor]:
    """Check, then run the body as a guarded action (audit row with the body's first writing transaction).
    A refusal, here or raised inside (e.g. four-eyes), is logged and re-raised."""
    actor = as_actor(actor)
    try:
        role = require(engine, workspace_id, actor, need, action=action)
    except AccessDenied as exc:
        record_refusal(engine, workspace_id, actor, action, target, str(exc))
        raise
    intent = _Intent(id(engine), workspace_id, actor, role, action, audit, target, "", dict(detail or {}))
    token = _INTENTS.set(_INTENTS.get() + (intent,))
    try:
        yield actor
    except AccessDenied as exc:
        if not getattr(exc, "_logged", False):
            record_refusal(engine, workspace_id, actor, action, intent.target, str(exc))
            exc._logged = True  # type: ignore[attr-defined]
        raise
    finally:
        _INTENTS.reset(token)


def _find(bound: inspect.BoundArguments, names: tuple[str, ...], attr: str):
    for name in names:
        if bound.arguments.get(name) is not None:
            return bound.arguments[name]
    owner = bound.arguments.get("self")
    return getattr(owner, attr, None) if owner is not None else None


def guarded(need: Need | Role | str, action: str, *, target: str = "", audit: bool = True,
            collector: str | None = None) -> Callable[[Callable], Callable]:
    """Decorate a mutating function of `core`: it then checks its ``actor`` (a keyword parameter the
    function must have) against ``need`` in its workspace on every call, and is audited as ``action``.

    ``target`` is a format string over the call's arguments (``"plan #{plan_id}"``); ``audit=False`` for
    bookkeeping that an outer action's row covers; ``collector="any"|"server"`` lets write keys do it.
    """
    need = Need.of(need)
    if collector is not None:
        need = Need(need.role, collector)

    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)
        if "actor" not in sig.parameters:
            raise TypeError(f"{_qualname(fn)} is guarded but has no 'actor' parameter")

        @functools.wraps(fn)
        def inner(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            engine = _find(bound, ("engine",), "engine")
            workspace_id = _find(bound, ("workspace_id", "workspace"), "workspace_id")
            if engine is None or workspace_id is None:
                raise TypeError(f"{_qualname(fn)}: cannot find the engine and workspace of this call")
            try:
                what = target.format(**bound.arguments) if target else ""
            except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                what = ""  # a target naming an attribute of a bad argument: the body reports the argument
            with acting(engine, workspace_id, bound.arguments.get("actor"), need, action, target=what,
                        audit=audit) as actor:
                bound.arguments["actor"] = actor
                return fn(*bound.args, **bound.kwargs)

        inner.__access_guard__ = Guard(_qualname(fn), need, action, audit, fn)  # type: ignore[attr-defined]
        GUARDED[_qualname(fn)] = inner.__access_guard__  # type: ignore[attr-defined]
        return inner

    return wrap


def guard_of(fn: Callable) -> Guard | None:
    return getattr(fn, "__access_guard__", None)


def register_self_checked(fn: Callable, need: Need | Role | str, action: str, *, audit: bool = True) -> None:
    """List a function that runs its own check (`acting` inside) in `GUARDED`, e.g. one whose workspace
    does not exist yet."""
    GUARDED[_qualname(fn)] = Guard(_qualname(fn), Need.of(need), action, audit, fn)


__all__ = ["GUARDED", "NOT_GUARDED", "Guard", "Need", "acting", "as_actor", "audit_note", "audit_target",
           "current_actor", "guard_of", "guarded", "local_mode", "may", "member_role", "record_refusal",
           "register_self_checked", "require", "set_default_actor", "set_local_mode", "system_task"]
