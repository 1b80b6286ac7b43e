"""Members of a workspace and their roles; which workspaces a person sees; creating a workspace."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.store.access_models import WorkspaceMember
from core.store.db import check_workspace_id, ensure_workspace, list_workspaces, transaction
from core.store.models import Workspace, utcnow

from .guard import _workspace_exists, as_actor, guarded, local_mode, register_self_checked
from .roles import AccessDenied, AccessError, Actor, Role, normalize_email, parse_role


def workspace_exists(engine, workspace_id: str) -> bool:
    return _workspace_exists(engine, workspace_id)


def _known(engine, workspace_id: str) -> None:
    check_workspace_id(workspace_id)
    if not workspace_exists(engine, workspace_id):
        known = ", ".join(list_workspaces(engine)) or "none yet"
        raise AccessError(f"workspace {workspace_id!r} does not exist (known: {known}); create it first "
                          "(--create on the command line, or 'New workspace' in the app)")


def _admins(s) -> list[str]:
    return list(s.scalars(select(WorkspaceMember.email).where(WorkspaceMember.role == Role.ADMIN.label)))


@guarded(Role.ADMIN, "member.add", target="{email}")
def add_member(engine, workspace_id: str, email: str, role: str | Role, *, actor: Actor | str | None = None) -> str:
    """Give ``email`` the ``role`` in the workspace (changing it when a member already); returns what
    happened. The last admin cannot be demoted: the workspace would have nobody to manage it."""
    role, email = parse_role(role), normalize_email(email)
    _known(engine, workspace_id)
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(WorkspaceMember).where(WorkspaceMember.email == email))
        if row is None:
            s.add(WorkspaceMember(email=email, role=role.label, added_by=str(actor), added_at=utcnow()))
            return f"added {email} as {role}"
        if row.role == role.label:
            return f"{email} is already {role}"
        if row.role == Role.ADMIN.label and _admins(s) == [email]:
            raise AccessError(f"{email} is the last admin of workspace {workspace_id!r}: make someone else admin first")
        before, row.role = row.role, role.label
        return f"changed {email} from {before} to {role}"


@guarded(Role.ADMIN, "member.remove", target="{email}")
def remove_member(engine, workspace_id: str, email: str, *, actor: Actor | str | None = None) -> bool:
    """Take ``email`` out of the workspace; False when it was not a member. Never the last admin."""
    email = normalize_email(email)
    _known(engine, workspace_id)
    with transaction(engine, workspace_id) as s:
        row = s.scalar(select(WorkspaceMember).where(WorkspaceMember.email == email))
        if row is None:
            return False
        if row.role == Role.ADMIN.label and _admins(s) == [email]:
            raise AccessError(f"{email} is the last admin of workspace {workspace_id!r}: make someone else admin first")
        s.delete(row)
        return True


def list_members(engine, workspace_id: str) -> pd.DataFrame:
    """email, role, whether the person has signed in (subject bound), added by, added at."""
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(WorkspaceMember.email, WorkspaceMember.role, WorkspaceMember.subject,
                                WorkspaceMember.added_by, WorkspaceMember.added_at)
                         .order_by(WorkspaceMember.email)).all()
    df = pd.DataFrame(rows, columns=["email", "role", "subject", "added_by", "added_at"])
    df["signed_in"] = df["subject"].notna()
    order = {r: i for i, r in enumerate(("admin", "approver", "analyst", "viewer"))}
    df = df.sort_values(["role", "email"], key=lambda c: c.map(order) if c.name == "role" else c, kind="stable")
    return df.drop(columns=["subject"]).reset_index(drop=True)


def role_of(engine, workspace_id: str, actor: Actor | str | None) -> Role | None:
    """The actor's role in the workspace (None: none; the local user is admin while local mode is on)."""
    from .guard import member_role

    actor = as_actor(actor)
    if actor.kind == "autopilot":
        actor = actor.person
    if actor.kind == "local":
        return Role.ADMIN if local_mode() else None
    if actor.kind != "user":
        return None
    return member_role(engine, workspace_id, actor)


def workspaces_for(engine, actor: Actor | str | None) -> list[str]:
    """The workspaces the actor may open: all of them for the local user, else those it is a member of."""
    actor = as_actor(actor)
    if actor.kind == "local":
        return list_workspaces(engine) if local_mode() else []
    if actor.kind == "collector":
        return [actor.workspace]
    actor = actor.person
    if actor.kind == "local":
        return list_workspaces(engine) if local_mode() else []
    M = WorkspaceMember
    with Session(engine) as s:
        rows = s.execute(select(M.workspace_id, M.subject).where(M.email == actor.email).order_by(M.workspace_id)).all()
    return [ws for ws, subject in rows if not (subject and actor.subject and subject != actor.subject)]


def create_workspace(engine, workspace_id: str, *, name: str | None = None, actor: Actor | str | None = None) -> None:
    """Make a workspace. The local user may always; a signed-in person only if already admin of some
    workspace, and becomes admin of the new one (so a stranger who can sign in cannot make themselves room)."""
    check_workspace_id(workspace_id)
    actor = as_actor(actor)
    if workspace_exists(engine, workspace_id):
        raise AccessError(f"workspace {workspace_id!r} already exists")
    if actor.kind == "user":
        from .guard import member_role

        if not any(member_role(engine, ws, actor) == Role.ADMIN for ws in workspaces_for(engine, actor)):
            raise AccessDenied(f"creating a workspace needs the {Role.ADMIN} role in at least one workspace; "
                               f"{actor} has none", required=Role.ADMIN, workspace=workspace_id, actor=str(actor))
    elif actor.kind != "local":
        raise AccessDenied(f"{actor} cannot create workspaces", required=Role.ADMIN, workspace=workspace_id,
                           actor=str(actor))
    from .guard import _audit_row

    with Session(engine) as s, s.begin():  # the workspace, its first admin and the audit row: together
        ensure_workspace(s, workspace_id, name)
        if actor.kind == "user":
            s.add(WorkspaceMember(workspace_id=workspace_id, email=actor.email, role=Role.ADMIN.label,
                                  subject=actor.subject or None, added_by=str(actor), added_at=utcnow()))
        s.add(_audit_row(workspace_id, actor, "workspace.create", workspace_id, "ok", {}, ""))


register_self_checked(create_workspace, Role.ADMIN, "workspace.create")


def bind_subject(engine, actor: Actor) -> int:
    """At sign-in: record the provider's subject on the person's memberships that have none yet, so a
    re-assigned e-mail address cannot inherit them later. Returns how many were bound."""
    if actor.kind != "user" or not actor.subject:
        return 0
    M = WorkspaceMember
    with Session(engine) as s, s.begin():
        res = s.execute(update(M).where(M.email == actor.email, M.subject.is_(None)).values(subject=actor.subject)
                        .execution_options(synchronize_session=False))
    return int(res.rowcount or 0)


def workspace_names(engine) -> dict[str, str]:
    with Session(engine) as s:
        return dict(s.execute(select(Workspace.id, Workspace.name)).all())


__all__ = ["add_member", "bind_subject", "create_workspace", "list_members", "remove_member", "role_of",
           "workspace_exists", "workspaces_for"]
