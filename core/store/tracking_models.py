"""ORM models of the first-party collector and the conversion outbox (the Tracking area).

Tracked touches and conversions live in their own append-only tables (not in the import tables), so
the collector inserts single rows cheaply and the journeys read them through one function
(`core.tracking.live.tracked_frames`). Identity fields are stored only as SHA-256 hashes, already
normalized per platform. Every delivery of a conversion to a destination is one outbox row, written
in the same transaction as the conversion.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .models import Base, WorkspaceScoped, utcnow

_BIGID = BigInteger().with_variant(Integer, "sqlite")


class TrackingKey(WorkspaceScoped, Base):
    """A write key of a workspace: only its SHA-256 is stored; browser keys carry an origin allow-list."""

    __tablename__ = "tracking_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(20))  # the first characters, shown to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10), default="server")  # server | browser
    origins: Mapped[list] = mapped_column(default=list)
    rate_limit: Mapped[float | None] = mapped_column(Float)  # requests per second; None = the server's default
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    revoked_at: Mapped[dt.datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class TrackedTouch(WorkspaceScoped, Base):
    """A touch (landing, click, visit) received by the collector."""

    __tablename__ = "tracked_touches"
    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200))
    user_key: Mapped[str] = mapped_column(String(200))
    ts: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    channel: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str | None] = mapped_column(String(200))
    medium: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(String(300))
    campaign_id: Mapped[str | None] = mapped_column(String(200))
    interaction: Mapped[str] = mapped_column(String(20), default="visit")
    gclid: Mapped[str | None] = mapped_column(String(300))
    gbraid: Mapped[str | None] = mapped_column(String(300))
    wbraid: Mapped[str | None] = mapped_column(String(300))
    fbclid: Mapped[str | None] = mapped_column(String(300))
    fbc: Mapped[str | None] = mapped_column(String(400))
    fbp: Mapped[str | None] = mapped_column(String(200))
    page_url: Mapped[str | None] = mapped_column(Text)
    referrer: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("workspace_id", "event_id", name="uq_tracked_touch_event"),
        Index("ix_tracked_touch_user_ts", "workspace_id", "user_key", "ts"),
        Index("ix_tracked_touch_ts", "workspace_id", "ts"),
    )


class TrackedConversion(WorkspaceScoped, Base):
    """A conversion received by the collector; ``user_data`` holds per-platform hashed identifiers."""

    __tablename__ = "tracked_conversions"
    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(200))
    user_key: Mapped[str] = mapped_column(String(200))
    ts: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(100), default="purchase")
    value: Mapped[Decimal] = mapped_column(default=Decimal(0))
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    order_id: Mapped[str | None] = mapped_column(String(200))
    action_source: Mapped[str] = mapped_column(String(30), default="website")
    event_source_url: Mapped[str | None] = mapped_column(Text)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    fbc: Mapped[str | None] = mapped_column(String(400))
    fbp: Mapped[str | None] = mapped_column(String(200))
    gclid: Mapped[str | None] = mapped_column(String(300))
    gbraid: Mapped[str | None] = mapped_column(String(300))
    wbraid: Mapped[str | None] = mapped_column(String(300))
    ga_client_id: Mapped[str | None] = mapped_column(String(100))
    ad_user_data: Mapped[bool | None] = mapped_column(Boolean)
    ad_personalization: Mapped[bool | None] = mapped_column(Boolean)
    user_data: Mapped[dict] = mapped_column(JSON, default=dict)  # {"meta": {...}, "google": {...}} hashed
    has_email: Mapped[bool] = mapped_column(Boolean, default=False)
    has_phone: Mapped[bool] = mapped_column(Boolean, default=False)
    key_id: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("workspace_id", "event_id", name="uq_tracked_conversion_event"),
        Index("ix_tracked_conversion_user_ts", "workspace_id", "user_key", "ts"),
        Index("ix_tracked_conversion_ts", "workspace_id", "ts"),
    )


class ConversionDelivery(WorkspaceScoped, Base):
    """One conversion to one destination (outbox row): claimed with a lease, sent, settled."""

    __tablename__ = "conversion_deliveries"
    id: Mapped[int] = mapped_column(_BIGID, primary_key=True, autoincrement=True)
    conversion_id: Mapped[int] = mapped_column(ForeignKey("tracked_conversions.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(20))  # meta | google | ga4
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None]
    deadline_at: Mapped[dt.datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None]
    idempotency_key: Mapped[str] = mapped_column(String(300))
    test: Mapped[bool] = mapped_column(Boolean, default=False)
    code: Mapped[str | None] = mapped_column(String(120))
    message: Mapped[str | None] = mapped_column(Text)
    trace_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    __table_args__ = (
        UniqueConstraint("conversion_id", "destination", name="uq_delivery_destination"),
        Index("ix_delivery_due", "status", "next_attempt_at"),
        Index("ix_delivery_claim", "workspace_id", "destination", "status", "next_attempt_at"),  # claims, in due order
    )


class TrackingDestination(WorkspaceScoped, Base):
    """A workspace's settings for one destination (no secrets: those come from secrets/environment)."""

    __tablename__ = "tracking_destinations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(20))  # meta | google | ga4
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    test_mode: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    __table_args__ = (UniqueConstraint("workspace_id", "name", name="uq_tracking_destination"),)


class TrackingRunJob(WorkspaceScoped, Base):
    """An attribution run started through the collector's API: its status, then the stored run's id."""

    __tablename__ = "tracking_run_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued | running | done | failed
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


__all__ = ["TrackingKey", "TrackedTouch", "TrackedConversion", "ConversionDelivery", "TrackingDestination", "TrackingRunJob"]
