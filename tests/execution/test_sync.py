"""Sync: entities and daily performance, incremental by date and idempotent (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from core.platforms.base import ChangeRequest
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_dataset_name, sync_platform
from core.store.db import transaction
from core.store.models import AdEntity, Dataset, PerformanceDaily

from .conftest import TODAY, WS


def stored(engine, ws=WS):
    with transaction(engine, ws) as s:
        ents = s.execute(select(AdEntity.external_id, AdEntity.daily_budget, AdEntity.bid, AdEntity.status)
                         .where(AdEntity.platform == "sandbox").order_by(AdEntity.external_id)).all()
        perf = s.execute(select(PerformanceDaily.external_id, PerformanceDaily.date, PerformanceDaily.segment_type,
                                PerformanceDaily.segment_value, PerformanceDaily.spend, PerformanceDaily.conversions)
                         .join(Dataset, Dataset.id == PerformanceDaily.dataset_id)
                         .where(Dataset.name == sync_dataset_name("sandbox", "sandbox-1"))
                         .order_by(PerformanceDaily.external_id, PerformanceDaily.date, PerformanceDaily.segment_type,
                                   PerformanceDaily.segment_value)).all()
    return ents, perf


def test_sync_twice_stores_nothing_twice(engine):
    sb = SandboxPlatform(engine, WS, seed=5, n_meta=2, n_google=1, history_days=12, today=TODAY)
    first = sync_platform(engine, WS, sb)
    ents, perf = stored(engine)
    assert first.entities == len(ents) == 9 and first.rows_new == len(perf) > 0 and first.rows_updated == 0
    assert first.end == sb.clock() and {p.date for p in perf} == {TODAY - dt.timedelta(days=i) for i in range(1, 13)}
    again = sync_platform(engine, WS, sb, first.start, first.end)
    assert again.rows_new == 0 and again.rows_updated == len(perf)
    assert stored(engine) == (ents, perf)


def test_incremental_sync_fetches_new_days_and_changed_entities(engine):
    sb = SandboxPlatform(engine, WS, seed=5, n_meta=1, n_google=1, history_days=6, today=TODAY)
    sync_platform(engine, WS, sb)
    _, perf = stored(engine)
    per_day = len(perf) // 6
    sb.apply(ChangeRequest("k", "campaign", "meta-c001", "budget", None, Decimal("123.45")))
    sb.advance_days(2)
    rep = sync_platform(engine, WS, sb, restate_days=3)
    assert rep.start == TODAY - dt.timedelta(days=3) and rep.end == TODAY + dt.timedelta(days=1)
    assert rep.rows_new == 2 * per_day and rep.rows_updated == 3 * per_day
    ents, perf2 = stored(engine)
    assert len(perf2) == 8 * per_day
    assert dict((e[0], e[1]) for e in ents)["meta-c001"] == Decimal("123.45")


def test_sync_is_per_workspace(engine):
    a = SandboxPlatform(engine, "wa", n_meta=1, n_google=0, history_days=3, today=TODAY)
    b = SandboxPlatform(engine, "wb", n_meta=1, n_google=1, history_days=3, today=TODAY)
    sync_platform(engine, "wa", a)
    sync_platform(engine, "wb", b)
    assert len(stored(engine, "wa")[0]) == 3 and len(stored(engine, "wb")[0]) == 6
    with transaction(engine, "wa") as s:
        assert s.scalar(select(func.count()).select_from(AdEntity).where(AdEntity.platform == "sandbox")) == 3
