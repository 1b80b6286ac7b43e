"""Figures of the Tracking page, computed in SQL (grouped, never row by row in Python).

Events and conversions per hour, per-destination delivery counts, the failures table with reasons,
and match quality: the share of conversions carrying an e-mail, a phone, fbc / fbp and a click id.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from core.store.db import transaction
from core.store.models import ConversionDelivery as D
from core.store.models import TrackedConversion as C
from core.store.models import TrackedTouch as T

STATUSES = ("pending", "sending", "sent", "test", "retry", "failed", "expired", "skipped_consent")
RETRYABLE = ("failed", "retry")


def _hour(column, dialect: str):
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d %H:00:00", column)
    return func.date_trunc("hour", column)


def per_hour(engine: Engine, workspace_id: str, hours: int = 48, now: dt.datetime | None = None) -> pd.DataFrame:
    """Touches and conversions received per hour over the last ``hours`` (columns hour, kind, count)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    since = now - dt.timedelta(hours=hours)
    frames = []
    with transaction(engine, workspace_id) as s:
        for model, kind in ((T, "touches"), (C, "conversions")):
            hour = _hour(model.received_at, engine.dialect.name).label("hour")
            rows = s.execute(select(hour, func.count()).where(model.received_at >= since).group_by(hour)).all()
            frames.append(pd.DataFrame(rows, columns=["hour", "count"]).assign(kind=kind))
    out = pd.concat(frames, ignore_index=True)
    out["hour"] = pd.to_datetime(out["hour"], utc=True)
    return out[["hour", "kind", "count"]].sort_values(["hour", "kind"], ignore_index=True)


def delivery_counts(engine: Engine, workspace_id: str) -> pd.DataFrame:
    """Rows per destination and status (every status a column, zeros included)."""
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(D.destination, D.status, func.count()).group_by(D.destination, D.status)).all()
    frame = pd.DataFrame(rows, columns=["destination", "status", "count"])
    wide = frame.pivot_table(index="destination", columns="status", values="count", aggfunc="sum", fill_value=0)
    wide = wide.reindex(columns=list(STATUSES), fill_value=0).reset_index()
    return wide.astype({c: "int64" for c in STATUSES})


def failures(engine: Engine, workspace_id: str, limit: int = 500) -> pd.DataFrame:
    """Failed, retrying and expired deliveries, newest first, with the platform's code and message."""
    cols = [D.id, D.destination, D.status, D.attempts, D.code, D.message, D.trace_id, D.next_attempt_at, D.updated_at,
            C.event_id, C.type, C.ts]
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(*cols).join(C, C.id == D.conversion_id)
                         .where(D.status.in_(("failed", "retry", "expired"))).order_by(D.updated_at.desc(), D.id.desc())
                         .limit(limit)).all()
    frame = pd.DataFrame(rows, columns=["delivery_id", "destination", "status", "attempts", "code", "message", "trace_id",
                                        "next_attempt_at", "updated_at", "event_id", "type", "conversion_time"])
    frame["retryable"] = frame["status"].isin(RETRYABLE)
    return frame


def match_quality(engine: Engine, workspace_id: str, days: int = 30, now: dt.datetime | None = None) -> dict:
    """Share of the last ``days``' conversions carrying each identifier (what the platforms can match on)."""
    now = now or dt.datetime.now(dt.timezone.utc)

    def share(condition):
        return func.sum(case((condition, 1), else_=0))

    with transaction(engine, workspace_id) as s:
        row = s.execute(select(func.count(), share(C.has_email), share(C.has_phone), share(C.fbc.is_not(None)),
                               share(C.fbp.is_not(None)),
                               share(C.gclid.is_not(None) | C.gbraid.is_not(None) | C.wbraid.is_not(None)),
                               share(C.ad_user_data.is_(True)))
                        .where(C.received_at >= now - dt.timedelta(days=days))).one()
    total = int(row[0] or 0)
    names = ("email", "phone", "fbc", "fbp", "google_click_id", "ad_user_data_consent")
    return {"conversions": total, **{n: (float(v or 0) / total if total else None) for n, v in zip(names, row[1:])}}


__all__ = ["STATUSES", "per_hour", "delivery_counts", "failures", "match_quality"]
