"""Schedules and their runs: when each account is optimized, which slot is due, who claimed it.

A schedule fires daily, or weekly on one weekday, at a time of day in the account's zone. Its slot is
that moment in UTC; the most recent slot not yet run (and not before the schedule existed) is due.
A run is claimed by inserting its row: (schedule, slot) is unique, so two runners (a cron `autopilot run`
and `autopilot serve`, or two servers) never run the same slot twice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal

import pandas as pd
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core.access import Actor, Role, audit_target, guarded
from core.guardrails import load_guardrails, zone
from core.money import bounded_amount, is_whole_units, money_step, quantize_money
from core.store.db import transaction
from core.store.models import AutopilotRun, AutopilotSchedule, utcnow

FREQUENCIES = ("daily", "weekly")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
OBJECTIVES = ("value", "cap", "target", "floor")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ScheduleError(ValueError):
    """A schedule that cannot be stored or run as asked; the message names the field."""


class RunClaimed(RuntimeError):
    """Another runner already claimed this slot of the schedule."""


@dataclass(frozen=True)
class AutopilotSettings:
    """How a schedule optimizes (the Optimizer page's settings, saved with the schedule).

    ``objective`` as on the Optimizer page ("value": best split of ``total_budget``, None = today's
    total; "cap", "target", "floor"; an exact `Decimal` in the account's currency, kept as text in the
    schedule's JSON so 1.234 KWD stays 1.234); ``max_change``: how far (fraction) one run's targets may lie from
    today's values (the steps toward them are the guardrails' step limit); ``confidence_threshold``:
    changes at or above it may execute automatically; ``half_life_days``: the refit weights recent days
    with this half-life, ``flagged_half_life_days`` after an outcome fell outside its band.
    """

    objective: str = "value"
    total_budget: Decimal | None = None
    target_roas: float = 3.0
    marginal_floor: float = 1.0
    max_change: float = 1.0
    curve_model: str = "power"
    confidence_threshold: float = 80.0
    include_bids: bool = False
    min_change: float = 0.02
    half_life_days: float = 90.0
    flagged_half_life_days: float = 30.0
    n_draws: int = 300

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ScheduleError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.total_budget is not None:
            try:
                total = bounded_amount(self.total_budget)
            except (TypeError, ValueError) as exc:
                raise ScheduleError(f"total daily budget: {exc}") from None
            if not total > 0:
                raise ScheduleError("total daily budget must be positive (or empty for today's total)")
            object.__setattr__(self, "total_budget", total)
        if not 0 < float(self.max_change) <= 10:
            raise ScheduleError("max_change is a fraction in (0, 10]")
        if self.curve_model not in ("power", "hill"):
            raise ScheduleError("curve_model must be power or hill")
        if not 0 <= float(self.confidence_threshold) <= 100:
            raise ScheduleError("confidence_threshold must be 0-100")
        if float(self.target_roas) <= 0 or float(self.marginal_floor) <= 0:
            raise ScheduleError("target_roas and marginal_floor must be positive")
        if not 0 <= float(self.min_change) < 1:
            raise ScheduleError("min_change is a fraction in [0, 1)")
        if float(self.half_life_days) <= 0 or float(self.flagged_half_life_days) <= 0:
            raise ScheduleError("half-lives must be positive")

    def to_dict(self) -> dict:
        """The settings as JSON can hold them: the total budget as exact decimal text."""
        d = asdict(self)
        if d["total_budget"] is not None:
            d["total_budget"] = format(d["total_budget"], "f")
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "AutopilotSettings":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ScheduleError(f"unknown autopilot settings: {sorted(unknown)}")
        return cls(**d)


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    platform: str
    account_id: str
    frequency: str
    weekday: int | None
    time_of_day: str
    timezone: str
    settings: AutopilotSettings
    enabled: bool
    auto_execute: bool
    notify_emails: tuple[str, ...]
    notify_webhook: bool
    created_at: dt.datetime
    owner: dict | None = None  # whom the schedule acts for without auto-execute (`Actor.to_dict`)
    auto_execute_by: dict | None = None  # the admin who switched auto-execute on, and when, under which guardrails
    auto_execute_at: dt.datetime | None = None
    auto_execute_guardrails: dict | None = None

    @property
    def authority(self) -> Actor | None:
        """Whom the schedule acts for: the admin who switched auto-execute on, else its owner."""
        d = self.auto_execute_by if self.auto_execute and self.auto_execute_by else self.owner
        return Actor.from_dict(d) if d else None

    @property
    def hour_minute(self) -> tuple[int, int]:
        h, m = self.time_of_day.split(":")
        return int(h), int(m)

    def describe(self) -> str:
        when = "every day" if self.frequency == "daily" else f"every {WEEKDAYS[self.weekday or 0]}"
        return f"{when} at {self.time_of_day} ({self.timezone})"


def _validate(frequency: str, weekday: int | None, time_of_day: str, timezone: str, emails) -> tuple:
    if frequency not in FREQUENCIES:
        raise ScheduleError(f"frequency must be one of {FREQUENCIES}, got {frequency!r}")
    if frequency == "weekly" and (weekday is None or not 0 <= int(weekday) <= 6):
        raise ScheduleError("a weekly schedule needs a weekday 0 (Monday) to 6 (Sunday)")
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", str(time_of_day).strip())
    if not m or not (0 <= int(m.group(1)) <= 23 and 0 <= int(m.group(2)) <= 59):
        raise ScheduleError(f"time of day must be HH:MM (00:00-23:59), got {time_of_day!r}")
    try:
        zone(timezone)
    except ValueError as exc:
        raise ScheduleError(str(exc)) from None
    clean = tuple(e.strip() for e in (emails or ()) if str(e).strip())
    bad = [e for e in clean if not _EMAIL.match(e)]
    if bad:
        raise ScheduleError(f"not an e-mail address: {bad[0]!r}")
    return f"{int(m.group(1)):02d}:{m.group(2)}", (int(weekday) if frequency == "weekly" else None), clean


def exact_settings(engine: Engine, workspace_id: str, platform: str, account_id: str,
                   settings: AutopilotSettings) -> AutopilotSettings:
    """``settings`` with its money in the account's currency as that currency holds it on ``platform`` (1.234 KWD,
    1500 JPY); `ScheduleError` naming the field for an amount finer than that (1.2345 KWD, 1500.5 JPY). An account
    whose currency is not known yet (never synced) keeps the amount as given."""
    from core.optimize.session import account_currency

    if settings.total_budget is None:
        return settings
    currency = account_currency(engine, workspace_id, platform, account_id)
    if currency is None:
        return settings
    step = money_step(currency, platform)
    if not is_whole_units(settings.total_budget, currency, platform):
        raise ScheduleError(f"total daily budget: {settings.total_budget:f} {currency} is finer than the smallest "
                            f"amount of {currency} on {platform} account {account_id} ({step:f} {currency})")
    return replace(settings, total_budget=quantize_money(settings.total_budget, currency, platform))


def _switched_on_by(engine: Engine, workspace_id: str, actor: Actor) -> dict:
    """The record of who switched auto-execute on, when, and the guardrails they agreed to."""
    return {"auto_execute_by": actor.to_dict(), "auto_execute_at": utcnow(),
            "auto_execute_guardrails": load_guardrails(engine, workspace_id).limits.to_dict()}


_SWITCHED_OFF = {"auto_execute_by": None, "auto_execute_at": None, "auto_execute_guardrails": None}


@guarded(Role.ADMIN, "schedule.create")
def create_schedule(engine: Engine, workspace_id: str, *, name: str, platform: str, account_id: str,
                    frequency: str = "daily", time_of_day: str = "06:00", timezone: str = "UTC",
                    weekday: int | None = None, settings: AutopilotSettings | None = None, auto_execute: bool = False,
                    notify_emails=(), notify_webhook: bool = False, actor: str | None = None) -> int:
    """Store a schedule (enabled; auto-execute off unless asked); returns its id. It acts for ``actor``
    (and, with auto-execute, under the guardrails in force now)."""
    name = str(name or "").strip()
    if not name:
        raise ScheduleError("a schedule needs a name")
    tod, wd, emails = _validate(frequency, weekday, time_of_day, timezone, notify_emails)
    settings = exact_settings(engine, workspace_id, platform, account_id, settings or AutopilotSettings())
    with transaction(engine, workspace_id) as s:
        if s.scalars(select(AutopilotSchedule.id).where(AutopilotSchedule.name == name)).first() is not None:
            raise ScheduleError(f"a schedule named {name!r} already exists")
        row = AutopilotSchedule(name=name, platform=platform, account_id=account_id, frequency=frequency, weekday=wd,
                                time_of_day=tod, timezone=timezone, settings=(settings or AutopilotSettings()).to_dict(),
                                enabled=True, auto_execute=bool(auto_execute), notify_emails=list(emails),
                                notify_webhook=bool(notify_webhook), created_by=actor or "unknown",
                                owner=actor.to_dict(),
                                **(_switched_on_by(engine, workspace_id, actor) if auto_execute else _SWITCHED_OFF))
        s.add(row)
        s.flush()
        audit_target(f"schedule #{row.id}")
        return row.id


@guarded(Role.ADMIN, "schedule.update", target="schedule #{schedule_id}")
def update_schedule(engine: Engine, workspace_id: str, schedule_id: int, *, actor: str | None = None, **values) -> None:
    """Change fields of a schedule (enabled, auto_execute, settings, frequency, time_of_day, ...). Switching
    auto-execute on records ``actor`` as the admin the schedule then acts for, and the guardrails in force."""
    if "settings" in values:  # checked against the account's currency before anything is written
        wanted = values["settings"]
        wanted = wanted if isinstance(wanted, AutopilotSettings) else AutopilotSettings.from_dict(wanted)
        target = load_schedule(engine, workspace_id, schedule_id)
        values["settings"] = exact_settings(engine, workspace_id, target.platform, target.account_id, wanted)
    if "auto_execute" in values:
        values.update(_switched_on_by(engine, workspace_id, actor) if values["auto_execute"] else _SWITCHED_OFF)
    with transaction(engine, workspace_id) as s:
        row = s.get(AutopilotSchedule, schedule_id)
        if row is None:
            raise ScheduleError(f"schedule {schedule_id} does not exist in workspace {workspace_id}")
        if values.get("auto_execute") and row.auto_execute and row.auto_execute_by:  # already on: keep who did it
            for k in _SWITCHED_OFF:
                values.pop(k, None)
        merged = {"frequency": row.frequency, "weekday": row.weekday, "time_of_day": row.time_of_day,
                  "timezone": row.timezone, "notify_emails": row.notify_emails, **values}
        tod, wd, emails = _validate(merged["frequency"], merged["weekday"], merged["time_of_day"], merged["timezone"],
                                    merged["notify_emails"])
        merged.update(time_of_day=tod, weekday=wd, notify_emails=list(emails))
        if isinstance(merged.get("settings"), AutopilotSettings):
            merged["settings"] = merged["settings"].to_dict()
        for k, v in merged.items():
            if not hasattr(row, k) or k in ("id", "workspace_id", "created_at", "created_by", "owner"):
                raise ScheduleError(f"unknown schedule field {k!r}")
            setattr(row, k, v)
        row.updated_at = utcnow()


def set_enabled(engine: Engine, workspace_id: str, schedule_id: int, enabled: bool, *, actor: str | None = None) -> None:
    """Pause (False) or resume (True) a schedule."""
    update_schedule(engine, workspace_id, schedule_id, enabled=bool(enabled), actor=actor)


def _view(row: AutopilotSchedule) -> Schedule:
    return Schedule(row.id, row.name, row.platform, row.account_id, row.frequency, row.weekday, row.time_of_day,
                    row.timezone, AutopilotSettings.from_dict(row.settings), bool(row.enabled), bool(row.auto_execute),
                    tuple(row.notify_emails or ()), bool(row.notify_webhook), row.created_at, owner=row.owner,
                    auto_execute_by=row.auto_execute_by, auto_execute_at=row.auto_execute_at,
                    auto_execute_guardrails=row.auto_execute_guardrails)


def load_schedule(engine: Engine, workspace_id: str, schedule_id: int) -> Schedule:
    with transaction(engine, workspace_id) as s:
        row = s.get(AutopilotSchedule, schedule_id)
        if row is None:
            raise ScheduleError(f"schedule {schedule_id} does not exist in workspace {workspace_id}")
        return _view(row)


def list_schedules(engine: Engine, workspace_id: str) -> list[Schedule]:
    with transaction(engine, workspace_id) as s:
        return [_view(r) for r in s.scalars(select(AutopilotSchedule).order_by(AutopilotSchedule.id))]


def latest_slot(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """The most recent moment (UTC) at or before ``now`` at which ``schedule`` fires."""
    tz = zone(schedule.timezone)
    local = now.astimezone(tz)
    h, m = schedule.hour_minute
    day = local.date()
    for back in range(0, 8):
        d = day - dt.timedelta(days=back)
        if schedule.frequency == "weekly" and d.weekday() != schedule.weekday:
            continue
        # compared in UTC: two times of one zone compare by wall clock, so a slot in a spring-forward gap
        # (02:30 that never happens; zoneinfo places it at 03:30) would be "due" from 03:00 on, in the future
        slot = dt.datetime.combine(d, dt.time(h, m), tz).astimezone(dt.timezone.utc)
        if slot <= now:
            return slot
    raise ScheduleError(f"schedule {schedule.id}: no slot in the last week")  # pragma: no cover - weekday always hits


def next_slot(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """The next moment (UTC) after ``now`` at which ``schedule`` fires."""
    tz = zone(schedule.timezone)
    h, m = schedule.hour_minute
    local = now.astimezone(tz)
    for ahead in range(0, 9):
        d = local.date() + dt.timedelta(days=ahead)
        if schedule.frequency == "weekly" and d.weekday() != schedule.weekday:
            continue
        slot = dt.datetime.combine(d, dt.time(h, m), tz).astimezone(dt.timezone.utc)
        if slot > now:  # in UTC, as in `latest_slot`
            return slot
    raise ScheduleError(f"schedule {schedule.id}: no slot in the next week")  # pragma: no cover


def due_schedules(engine: Engine, workspace_id: str, now: dt.datetime | None = None) -> list[tuple[Schedule, dt.datetime]]:
    """(schedule, slot) of every enabled schedule whose latest slot has not been run (nor claimed) yet."""
    now = now or utcnow()
    out = []
    with transaction(engine, workspace_id) as s:
        ran = {(sid, at) for sid, at in s.execute(select(AutopilotRun.schedule_id, AutopilotRun.due_at))}
    for sched in list_schedules(engine, workspace_id):
        if not sched.enabled:
            continue
        slot = latest_slot(sched, now)
        if slot < sched.created_at or (sched.id, slot) in ran:
            continue
        out.append((sched, slot))
    return out


@guarded(Role.ANALYST, "autopilot.run", audit=False)
def claim_run(engine: Engine, workspace_id: str, schedule_id: int, due_at: dt.datetime, *, trigger: str = "schedule",
              runner: str = "", actor: str | None = None) -> int:
    """Insert the run row for this slot (the claim); raises `RunClaimed` when another runner has it."""
    try:
        with transaction(engine, workspace_id) as s:
            row = AutopilotRun(schedule_id=schedule_id, due_at=due_at, trigger=trigger, status="running",
                               runner=runner, started_at=utcnow(), plan_ids=[], summary={})
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:
        raise RunClaimed(f"schedule {schedule_id}: the run of {due_at:%Y-%m-%d %H:%M} UTC was already claimed") from None


#: A run still "running" this long after it started, when a later run of its schedule starts, has lost its runner.
ABANDONED_AFTER = dt.timedelta(hours=1)


@guarded(Role.ANALYST, "autopilot.run", audit=False)
def close_abandoned_runs(engine: Engine, workspace_id: str, schedule_id: int, before: dt.datetime, *,
                         actor: str | None = None) -> list[int]:
    """Mark "interrupted" the runs of ``schedule_id`` for slots before ``before`` still shown "running" though they
    started over `ABANDONED_AFTER` ago by the wall clock (their runner was killed or crashed); returns their ids."""
    now = utcnow()
    R = AutopilotRun
    with transaction(engine, workspace_id) as s:
        rows = list(s.scalars(select(R).where(R.schedule_id == schedule_id, R.status == "running", R.due_at < before,
                                              R.started_at < now - ABANDONED_AFTER)))
        for row in rows:
            row.status, row.finished_at = "interrupted", now
            row.error = ("the runner stopped before this run finished (killed or crashed); a later run resumed the "
                         "plan it was executing")
    return [r.id for r in rows]


@guarded(Role.ANALYST, "autopilot.run", audit=False)
def finish_run(engine: Engine, workspace_id: str, run_id: int, *, status: str, summary: dict, plan_ids=(),
               error: str | None = None, actor: str | None = None) -> None:
    with transaction(engine, workspace_id) as s:
        row = s.get(AutopilotRun, run_id)
        row.status, row.summary, row.plan_ids, row.error = status, summary, list(plan_ids), error
        row.finished_at = utcnow()


def runs_frame(engine: Engine, workspace_id: str, schedule_id: int | None = None, limit: int = 200) -> pd.DataFrame:
    """Runs (newest first): id, schedule, slot, trigger, status, runner, started, finished, plans, headline, error."""
    R = AutopilotRun
    stmt = select(R.id, R.schedule_id, R.due_at, R.trigger, R.status, R.runner, R.started_at, R.finished_at, R.plan_ids,
                  R.summary, R.error).order_by(R.id.desc()).limit(limit)
    if schedule_id is not None:
        stmt = stmt.where(R.schedule_id == schedule_id)
    with transaction(engine, workspace_id) as s:
        rows = s.execute(stmt).all()
    df = pd.DataFrame(rows, columns=["id", "schedule_id", "due_at", "trigger", "status", "runner", "started_at",
                                     "finished_at", "plan_ids", "summary", "error"])
    df["headline"] = [(sm or {}).get("headline", "") for sm in df["summary"]]
    df["plans"] = [", ".join(f"#{p}" for p in (ps or [])) for ps in df["plan_ids"]]
    return df
