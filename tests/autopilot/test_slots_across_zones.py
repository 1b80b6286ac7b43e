"""Slots of schedules in zones far from UTC and on DST days: never in the future, never twice, same as the cron."""

from __future__ import annotations

import datetime as dt

import pytest

from core.autopilot.schedules import AutopilotSettings, Schedule, latest_slot, next_slot
from core.autopilot.serve import trigger_for

UTC = dt.timezone.utc


def schedule(time_of_day: str, timezone: str) -> Schedule:
    return Schedule(1, "s", "sandbox", "sandbox-1", "daily", None, time_of_day, timezone, AutopilotSettings(), True,
                    False, (), False, dt.datetime(2020, 1, 1, tzinfo=UTC))


CASES = [  # (zone, time, a UTC day around a DST change or far from UTC)
    ("America/St_Johns", "02:30", dt.datetime(2026, 3, 8, tzinfo=UTC)),   # 02:00 -> 03:00: 02:30 does not exist
    ("America/St_Johns", "01:30", dt.datetime(2026, 11, 1, tzinfo=UTC)),  # 02:00 -> 01:00: 01:30 happens twice
    ("Europe/Berlin", "02:30", dt.datetime(2026, 3, 29, tzinfo=UTC)),
    ("Europe/Berlin", "02:30", dt.datetime(2026, 10, 25, tzinfo=UTC)),
    ("Pacific/Kiritimati", "06:00", dt.datetime(2026, 6, 1, tzinfo=UTC)),  # UTC+14: the local day starts at 10:00 UTC
    ("Pacific/Kiritimati", "23:30", dt.datetime(2026, 6, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("timezone,time_of_day,day", CASES)
def test_slots_around_the_day_are_never_in_the_future_and_match_the_cron(timezone, time_of_day, day):
    s = schedule(time_of_day, timezone)
    trigger = trigger_for(s)
    seen = set()
    for minutes in range(-36 * 60, 36 * 60, 5):
        now = day + dt.timedelta(minutes=minutes)
        last, nxt = latest_slot(s, now), next_slot(s, now)
        assert last <= now < nxt, (now, last, nxt)
        assert nxt - last <= dt.timedelta(hours=25)
        seen.add(last)
        # a fire of the cron trigger (`autopilot serve`) claims that local day's slot, the one a cron run claims;
        # the repeated hour of a fall-back day fires it twice, and both fires claim the same slot (it runs once)
        fire = trigger.get_next_fire_time(None, now).astimezone(UTC)
        assert latest_slot(s, fire) <= fire
        assert latest_slot(s, fire).astimezone(trigger.timezone).date() == fire.astimezone(trigger.timezone).date()
    # one slot per local day: three days seen around the change, never two slots on one day
    assert len(seen) == len({slot.astimezone(trigger.timezone).date() for slot in seen})
