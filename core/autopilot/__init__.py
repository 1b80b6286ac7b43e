"""Autopilot: scheduled optimization that executes only what passes the guardrails, in staged steps,
and measures afterwards what each change did.

* `schedules` — schedules (daily / weekly in the account's zone), their runs and the claim of a slot;
* `runner` — one run: sync, measure, refit, optimize, stage, plan, auto-execute, summarize, notify;
* `glide` — staged changes (glide paths), cooldowns, learning-phase holds;
* `outcomes` — predictions stored at execution, verdicts from the synced performance;
* `notify` — run summaries by e-mail and Slack-style webhook;
* `serve` — the long-running scheduler (APScheduler).

The guardrails and kill switch every plan obeys, manual or scheduled, are in `core.guardrails`.
"""

from .schedules import AutopilotSettings, RunClaimed, ScheduleError, create_schedule, list_schedules, load_schedule

__all__ = ["AutopilotSettings", "RunClaimed", "ScheduleError", "create_schedule", "list_schedules", "load_schedule"]
