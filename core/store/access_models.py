"""ORM models of access control (issue 16): members and their roles per workspace, the four-eyes
thresholds, and the workspace audit log.

The audit log is append-only from the app's side: `core.access` only ever inserts, ORM sessions refuse to
update or delete its rows, and the migration adds database triggers that refuse UPDATE and DELETE.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import JSON, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, WorkspaceScoped, utcnow


class WorkspaceMember(WorkspaceScoped, Base):
    """One person's role in one workspace. Matched by e-mail (lower case); ``subject`` is the identity
    provider's ``sub``, bound at the first sign-in so a re-assigned address cannot inherit the role."""

    __tablename__ = "workspace_members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))  # viewer | analyst | approver | admin
    subject: Mapped[str | None] = mapped_column(String(255))
    added_by: Mapped[str] = mapped_column(String(200), default="")
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", "email", name="uq_workspace_member"),
                      Index("ix_workspace_member_email", "email"))


class WorkspaceAccess(WorkspaceScoped, Base):
    """The workspace's four-eyes thresholds (daily budget, currency units; None = no four-eyes rule)."""

    __tablename__ = "workspace_access"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    four_eyes_total: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    four_eyes_single: Mapped[Decimal | None] = mapped_column(Numeric(20, 6))
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("workspace_id", name="uq_workspace_access"),)


class AuditEvent(WorkspaceScoped, Base):
    """Who did what, when, from which entry point (page / cli / collector / autopilot), and the outcome."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(300))  # the label shown everywhere (e-mail, or autopilot ... for e-mail)
    subject: Mapped[str] = mapped_column(String(255), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    entry_point: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(300), default="")
    outcome: Mapped[str] = mapped_column(String(20), default="ok")  # ok | refused
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (Index("ix_audit_workspace_at", "workspace_id", "at"),)


__all__ = ["WorkspaceMember", "WorkspaceAccess", "AuditEvent"]
