"""Sync: a platform's entities and daily performance into ``ad_entities`` / ``performance_daily``.

Incremental by date (by default from the last stored day, minus a few days the platform may still
restate) and idempotent: rows are upserted on the tables' unique keys in one transaction, so
running a sync twice stores nothing twice. Performance goes to the dataset
``sync:<platform>:<account>`` (kind "performance"), which the optimizer reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import bindparam, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.store.db import transaction
from core.store.models import AdEntity, Dataset, PerformanceDaily, utcnow

from .base import AdPlatform

#: Days before the last stored day that an incremental sync fetches again (late conversions).
RESTATE_DAYS = 3
#: How far back a first sync reaches when no start is given.
FIRST_SYNC_DAYS = 90

_ENTITY_KEY = ["workspace_id", "platform", "account_id", "entity_type", "external_id"]
_PERF_KEY = ["dataset_id", "platform", "account_id", "entity_type", "external_id", "date", "segment_type", "segment_value"]


@dataclass(frozen=True)
class SyncReport:
    """What one sync stored: entities upserted, performance rows new / rewritten, the range fetched."""

    dataset_id: int
    entities: int
    rows_new: int
    rows_updated: int
    start: dt.date
    end: dt.date


def sync_dataset_name(platform_name: str, account_id: str) -> str:
    return f"sync:{platform_name}:{account_id}"


#: Platform names as a user reads them.
PLATFORM_TITLES = {"sandbox": "Sandbox", "meta": "Meta", "google": "Google Ads"}


def dataset_label(name: str) -> str:
    """The name a user reads for a data set: the internal names of account data become plain words.

    The sandbox keeps two data sets that must not be confused: its own simulated record (the
    platform side, ``sandbox:<account>``) and the synced copy the optimizer works on
    (``sync:sandbox:<account>``), like any real account's sync. Other names are returned as they are.

    >>> dataset_label("sync:sandbox:sandbox-1")
    'Sandbox account sandbox-1 — synced copy (what the Optimizer uses)'
    >>> dataset_label("sandbox:sandbox-1")
    'Sandbox account sandbox-1 — simulated platform record (the sync reads it)'
    >>> dataset_label("sync:meta:act_1")
    'Meta account act_1 — synced copy (what the Optimizer uses)'
    """
    parts = str(name).split(":", 2)
    if parts[0] == "sync" and len(parts) == 3:
        return f"{PLATFORM_TITLES.get(parts[1], parts[1].capitalize())} account {parts[2]} — synced copy (what the Optimizer uses)"
    if parts[0] == "sandbox" and len(parts) == 2:
        return f"Sandbox account {parts[1]} — simulated platform record (the sync reads it)"
    return str(name)


def _upsert(session, table, rows: list[dict], key: list[str]) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE on SQLite and PostgreSQL; merge by key elsewhere."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        mod = sqlite if dialect == "sqlite" else postgresql
        # SQLite caps bound parameters per statement: batch the rows
        step = max(1, 30000 // max(1, len(rows[0])))
        for i in range(0, len(rows), step):
            stmt = mod.insert(table).values(rows[i:i + step])
            update_cols = {c: stmt.excluded[c] for c in rows[0] if c not in key and c != "id"}
            session.execute(stmt.on_conflict_do_update(index_elements=key, set_=update_cols))
        return
    # portable fallback: read existing ids by key, update those, insert the rest
    cols = [table.c[k] for k in key]
    existing = {tuple(r[1:]): r[0] for r in session.execute(
        select(table.c.id, *cols).where(tuple_(*cols).in_([tuple(r[k] for k in key) for r in rows])))}
    upd = [dict(r, id=existing[tuple(r[k] for k in key)]) for r in rows if tuple(r[k] for k in key) in existing]
    new = [r for r in rows if tuple(r[k] for k in key) not in existing]
    if upd:
        cols_set = [c for c in rows[0] if c not in key]
        stmt = table.update().where(table.c.id == bindparam("_id")).values({c: bindparam(c) for c in cols_set})
        session.execute(stmt, [dict({c: r[c] for c in cols_set}, _id=r["id"]) for r in upd])
    if new:
        session.execute(table.insert(), new)


def last_synced_day(engine: Engine, workspace_id: str, platform_name: str, account_id: str) -> dt.date | None:
    """The last day of performance stored by a sync of this account, or None."""
    with transaction(engine, workspace_id) as s:
        return s.scalar(select(func.max(PerformanceDaily.date)).join(Dataset, Dataset.id == PerformanceDaily.dataset_id)
                        .where(Dataset.name == sync_dataset_name(platform_name, account_id)))


@guarded(Role.ANALYST, "platform.sync", target="{platform.name}/{platform.account_id}")
def sync_platform(engine: Engine, workspace_id: str, platform: AdPlatform, start: dt.date | None = None,
                  end: dt.date | None = None, *, restate_days: int = RESTATE_DAYS, actor: str | None = None) -> SyncReport:
    """Fetch entities and [start, end] performance from ``platform`` and upsert them in one transaction.

    ``start`` None: incremental, from ``restate_days`` before the last stored day (or FIRST_SYNC_DAYS
    back on a first sync). ``end`` None: the platform's simulated clock if it has one, else today (UTC).
    """
    if end is None:
        clock = getattr(platform, "clock", None)
        end = clock() if callable(clock) else dt.datetime.now(dt.timezone.utc).date()
    if start is None:
        last = last_synced_day(engine, workspace_id, platform.name, platform.account_id)
        start = end - dt.timedelta(days=FIRST_SYNC_DAYS - 1) if last is None else min(end, last - dt.timedelta(days=restate_days - 1))
    if end < start:
        raise ValueError(f"sync_platform: end {end} is before start {start}")
    entities = platform.list_entities()
    perf = platform.fetch_performance(start, end)
    now = utcnow()
    ent_rows = [dict(workspace_id=workspace_id, platform=e.platform, account_id=e.account_id, entity_type=e.entity_type,
                     external_id=e.external_id, parent_id=e.parent_id, name=e.name, status=e.status,
                     daily_budget=e.daily_budget, bid=e.bid, bid_strategy=e.bid_strategy, shared_budget=e.shared_budget,
                     currency=e.currency, synced_at=now, learning_status=e.learning_status,
                     last_significant_edit=e.last_significant_edit) for e in entities]
    names = {(e.entity_type, e.external_id): e.name for e in entities}
    bad = [r for r in perf if not (start <= r.date <= end)]
    if bad:
        raise ValueError(f"{platform.name} returned performance for {bad[0].date}, outside the asked {start}..{end}")
    with transaction(engine, workspace_id) as s:
        name = sync_dataset_name(platform.name, platform.account_id)
        ds = s.scalars(select(Dataset).where(Dataset.name == name)).one_or_none()
        if ds is None:
            ds = Dataset(name=name, kind="performance", source=f"sync:{platform.name}", report={})
            s.add(ds)
            s.flush()
        perf_rows = [dict(workspace_id=workspace_id, dataset_id=ds.id, platform=r.platform, account_id=r.account_id,
                          entity_type=r.entity_type, external_id=r.external_id,
                          entity_name=names.get((r.entity_type, r.external_id), ""), date=r.date,
                          segment_type=r.segment_type, segment_value=r.segment_value, spend=r.spend,
                          impressions=int(r.impressions), clicks=int(r.clicks), conversions=float(r.conversions),
                          conversion_value=r.conversion_value, currency=r.currency) for r in perf]
        keys = pd.DataFrame([[r[k] for k in _PERF_KEY] for r in perf_rows], columns=_PERF_KEY)
        if keys.duplicated().any():
            dup = keys[keys.duplicated()].iloc[0].to_dict()
            raise ValueError(f"{platform.name} returned the same performance row twice: {dup}")
        P = PerformanceDaily
        before = s.scalar(select(func.count()).select_from(P).where(P.dataset_id == ds.id, P.date >= start, P.date <= end)) or 0
        _upsert(s, AdEntity.__table__, ent_rows, _ENTITY_KEY)
        _upsert(s, P.__table__, perf_rows, _PERF_KEY)
        after = s.scalar(select(func.count()).select_from(P).where(P.dataset_id == ds.id, P.date >= start, P.date <= end)) or 0
        report = dict(ds.report or {})
        report.update(last_sync=now.isoformat(), last_range=[start.isoformat(), end.isoformat()],
                      entities=len(ent_rows), rows=len(perf_rows))
        ds.report = report
        return SyncReport(ds.id, len(ent_rows), after - before, len(perf_rows) - (after - before), start, end)
