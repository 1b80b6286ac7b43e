"""``python -m core autopilot serve``: fire every schedule on time with APScheduler.

One cron job per enabled schedule (`CronTrigger` in the schedule's zone: daily, or weekly on its
weekday), kept in step with the database by a reconcile job every minute (new, changed, paused and
deleted schedules), plus one catch-up pass at start for slots missed while the server was down.
A job only claims its slot (`schedules.claim_run`), so a cron `autopilot run` or a second server firing
the same slot does nothing twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine

from core.guardrails import zone
from core.store.models import utcnow

from .notify import NotifyConfig
from .runner import PlatformFactory, run_due, run_schedule, schedule_actor
from .schedules import RunClaimed, Schedule, latest_slot, list_schedules

log = logging.getLogger("marketing_suite.autopilot")
RECONCILE_SECONDS = 60


def trigger_for(schedule: Schedule) -> CronTrigger:
    """The schedule's cron trigger in its own zone."""
    h, m = schedule.hour_minute
    kw = {"day_of_week": schedule.weekday} if schedule.frequency == "weekly" else {}
    return CronTrigger(hour=h, minute=m, timezone=zone(schedule.timezone), **kw)


def job_id(workspace_id: str, schedule: Schedule) -> str:
    return f"{workspace_id}:{schedule.id}"


class AutopilotServer:
    """The scheduler and what its jobs need; `start` runs it in the background, `reconcile` syncs the jobs."""

    def __init__(self, engine: Engine, workspaces: Sequence[str] | Callable[[], Sequence[str]], *,
                 scheduler: BaseScheduler | None = None, platform_factory: Callable[[str], PlatformFactory] | None = None,
                 notify: NotifyConfig | None = None, runner: str | None = None):
        self.engine = engine
        self._workspaces = workspaces
        self.scheduler = scheduler or BackgroundScheduler(timezone=dt.timezone.utc,
                                                          job_defaults={"coalesce": True, "misfire_grace_time": 3600,
                                                                        "max_instances": 1})
        self.platform_factory = platform_factory
        self.notify = notify
        self.runner = runner
        self._signature: dict[str, str] = {}

    def workspaces(self) -> list[str]:
        ws = self._workspaces() if callable(self._workspaces) else self._workspaces
        return list(ws)

    def fire(self, workspace_id: str, schedule_id: int) -> None:
        """A job: run the schedule's current slot, unless another runner has it."""
        from .schedules import load_schedule

        try:
            schedule = load_schedule(self.engine, workspace_id, schedule_id)
            if not schedule.enabled:
                return
            slot = latest_slot(schedule, utcnow())
            factory = self.platform_factory(workspace_id) if self.platform_factory else None
            res = run_schedule(self.engine, workspace_id, schedule_id, due_at=slot, platform_factory=factory,
                               notify=self.notify, runner=self.runner, actor=schedule_actor(schedule))
            log.info("schedule %s/%s: %s", workspace_id, schedule_id, res.summary.get("headline", res.status))
        except RunClaimed as exc:
            log.info("%s", exc)
        except Exception:  # recorded on the run; the server keeps going
            log.exception("schedule %s/%s failed", workspace_id, schedule_id)

    def reconcile(self) -> dict[str, int]:
        """Add, change and remove cron jobs to match the enabled schedules; returns the counts."""
        wanted: dict[str, Schedule] = {}
        for ws in self.workspaces():
            for sched in list_schedules(self.engine, ws):
                if sched.enabled:
                    wanted[job_id(ws, sched)] = sched
        added = changed = removed = 0
        for job in self.scheduler.get_jobs():
            if job.id.startswith("reconcile"):
                continue
            if job.id not in wanted:
                self.scheduler.remove_job(job.id)
                self._signature.pop(job.id, None)
                removed += 1
        for jid, sched in wanted.items():
            sig = f"{sched.frequency}|{sched.weekday}|{sched.time_of_day}|{sched.timezone}"
            if self._signature.get(jid) == sig and self.scheduler.get_job(jid) is not None:
                continue
            ws = jid.rsplit(":", 1)[0]
            existed = self.scheduler.get_job(jid) is not None
            self.scheduler.add_job(self.fire, trigger_for(sched), args=[ws, sched.id], id=jid, replace_existing=True,
                                   name=f"{ws}: {sched.name}")
            self._signature[jid] = sig
            changed += existed
            added += not existed
        return {"added": added, "changed": changed, "removed": removed, "jobs": len(wanted)}

    def catch_up(self) -> int:
        """Run the slots missed while no server was running; returns how many runs it made."""
        n = 0
        for ws in self.workspaces():
            factory = self.platform_factory(ws) if self.platform_factory else None
            n += len(run_due(self.engine, ws, platform_factory=factory, notify=self.notify, runner=self.runner))
        return n

    def start(self, *, catch_up: bool = True) -> None:
        if catch_up:
            self.catch_up()
        self.reconcile()
        self.scheduler.add_job(self.reconcile, IntervalTrigger(seconds=RECONCILE_SECONDS), id="reconcile",
                               replace_existing=True)
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
