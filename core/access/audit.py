"""Reading the workspace audit log: filters and a table for display and download."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import select

from core.store.access_models import AuditEvent
from core.store.db import transaction

AUDIT_COLUMNS = ["id", "at", "actor", "email", "subject", "entry_point", "action", "target", "outcome", "note", "detail"]


def audit_frame(engine, workspace_id: str, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                actor: str | None = None, actions: list[str] | None = None, entry_points: list[str] | None = None,
                outcome: str | None = None, limit: int | None = 10_000) -> pd.DataFrame:
    """The workspace's audit log, newest first, filtered: time range (UTC), actor (substring of the label or
    e-mail, case-insensitive), action prefixes (``"plan."``), entry points, outcome (ok / refused)."""
    A = AuditEvent
    stmt = select(A.id, A.at, A.actor, A.email, A.subject, A.entry_point, A.action, A.target, A.outcome, A.note,
                  A.detail).order_by(A.id.desc())
    if since is not None:
        stmt = stmt.where(A.at >= since)
    if until is not None:
        stmt = stmt.where(A.at < until)
    if actor:
        pattern = f"%{actor.strip().lower()}%"
        stmt = stmt.where(A.actor.ilike(pattern) | A.email.ilike(pattern))
    if actions:
        from sqlalchemy import or_

        stmt = stmt.where(or_(*[A.action.startswith(a) for a in actions]))
    if entry_points:
        stmt = stmt.where(A.entry_point.in_(list(entry_points)))
    if outcome:
        stmt = stmt.where(A.outcome == outcome)
    if limit:
        stmt = stmt.limit(int(limit))
    with transaction(engine, workspace_id) as s:
        rows = s.execute(stmt).all()
    return pd.DataFrame(rows, columns=AUDIT_COLUMNS)


def audit_actions(engine, workspace_id: str) -> list[str]:
    """The distinct actions logged in the workspace (for a filter)."""
    with transaction(engine, workspace_id) as s:
        return sorted(s.scalars(select(AuditEvent.action).distinct()))


def audit_export(frame: pd.DataFrame) -> pd.DataFrame:
    """The table for a download: UTC timestamps in ISO 8601, details as JSON text."""
    import json

    out = frame.copy()
    out["at"] = pd.to_datetime(out["at"], utc=True).map(lambda t: t.isoformat() if pd.notna(t) else "")
    out["detail"] = out["detail"].map(lambda d: json.dumps(d, sort_keys=True, default=str) if d else "")
    return out


__all__ = ["AUDIT_COLUMNS", "audit_actions", "audit_export", "audit_frame"]
