"""Fixtures of the autopilot tests: a sandbox account, schedules on it, and helpers to move the simulated days."""

from __future__ import annotations

import datetime as dt

import pytest

from core.autopilot import AutopilotSettings, create_schedule
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform

WS = "ap"
START = dt.date(2031, 3, 3)  # after any schedule's creation, so its slots count


def at(day: dt.date, hour: int = 6, minute: int = 30) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), dt.timezone.utc)


@pytest.fixture
def sandbox(engine):
    sb = SandboxPlatform(engine, WS, seed=5, n_meta=2, n_google=2, history_days=60, today=START)
    sync_platform(engine, WS, sb)
    return sb


@pytest.fixture
def one_campaign(engine):
    """A sandbox with one Meta-like campaign (budget on the campaign, learning on its ad sets)."""
    sb = SandboxPlatform(engine, WS, account_id="solo", seed=2, n_meta=1, n_google=0, history_days=60, today=START)
    sync_platform(engine, WS, sb)
    return sb


def make_schedule(engine, platform, **kw) -> int:
    settings = kw.pop("settings", AutopilotSettings(confidence_threshold=0.0))
    return create_schedule(engine, WS, name=kw.pop("name", "daily"), platform="sandbox", account_id=platform.account_id,
                           time_of_day=kw.pop("time_of_day", "06:00"), settings=settings,
                           auto_execute=kw.pop("auto_execute", True), **kw)
