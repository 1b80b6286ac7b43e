"""Fixtures for the execution tests: a small SQLite database with a small sandbox account."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from core.changes import DraftChange, SafetySettings, create_plan
from core.execute import RetryPolicy
from core.platforms.sandbox import SandboxPlatform
from core.store.db import make_engine

WS = "ws1"
TODAY = dt.date(2026, 6, 1)


@pytest.fixture
def eng(tmp_path):
    e = make_engine("sqlite:///" + str(tmp_path / "t.db"))
    yield e
    e.dispose()


@pytest.fixture
def sandbox(eng):
    return SandboxPlatform(eng, WS, seed=3, n_meta=2, n_google=2, history_days=10, today=TODAY)


class SleepRecorder:
    """Stands in for time.sleep: records each wait, waits not at all."""

    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps():
    return SleepRecorder()


@pytest.fixture
def fast(sleeps):
    return RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.05, sleep=sleeps)


def budget_drafts(platform, factor="1.2", auto=False, entity_ids=None):
    """Budget changes of every campaign (or of ``entity_ids``) by ``factor``."""
    out = []
    for e in platform.list_entities():
        if e.daily_budget is None or (entity_ids is not None and e.external_id not in entity_ids):
            continue
        new = (e.daily_budget * Decimal(factor)).quantize(Decimal("0.01"))
        out.append(DraftChange(platform.name, platform.account_id, e.entity_type, e.external_id, e.name, "budget",
                               e.daily_budget, new, e.currency, f"scale by {factor}", 75.0, auto))
    return out


def approved_plan(eng, platform, drafts, settings=None, actor="alice"):
    """Create, preview and approve; returns (plan id, hash)."""
    from core import execute as ex

    pid = create_plan(eng, WS, drafts, actor=actor, settings=settings or SafetySettings())
    pr = ex.preview(eng, WS, pid, platform, actor=actor)
    ex.approve(eng, WS, pid, pr.content_hash, actor=actor)
    return pid, pr.content_hash


def expire_lease(eng, plan_id, ws=WS, ago=None):
    """Make the plan's executor look dead: its last heartbeat was ``ago`` (default: 10 minutes) ago."""
    from sqlalchemy import update

    from core.store.db import transaction
    from core.store.models import ChangePlan, utcnow

    with transaction(eng, ws) as s:
        s.execute(update(ChangePlan).where(ChangePlan.id == plan_id)
                  .values(heartbeat_at=utcnow() - (ago or dt.timedelta(minutes=10))).execution_options(synchronize_session=False))
