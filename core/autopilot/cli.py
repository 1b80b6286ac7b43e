"""``python -m core autopilot run|serve|list``: the autopilot without a browser.

``run`` does one pass over every due schedule (for cron or a systemd timer); ``--dry-run`` prints what
each due schedule would do and writes nothing. ``serve`` keeps running and fires schedules on time.
Secrets (platform credentials, SMTP, webhook) come from the environment.
"""

from __future__ import annotations


import logging
import signal
import threading


def add_autopilot_parser(sub, func) -> None:
    p = sub.add_parser("autopilot", help="scheduled optimization: run due schedules once, or serve them on time")
    asub = p.add_subparsers(dest="autopilot_command", required=True)
    r = asub.add_parser("run", help="one pass: run every schedule that is due (for cron / a systemd timer)")
    r.add_argument("--workspace", default=None, help="only this workspace (default: every workspace)")
    r.add_argument("--dry-run", action="store_true", help="show what would happen; write and execute nothing")
    r.add_argument("--schedule", type=int, default=None,
                   help="run this schedule now, due or not (a manual run; needs --workspace unless it is 'default')")
    r.add_argument("--db", default=None, help="SQLAlchemy URL (default: MARKETING_SUITE_DB_URL or local SQLite)")
    s = asub.add_parser("serve", help="keep running and fire every schedule on time (APScheduler)")
    s.add_argument("--workspace", default=None, help="only this workspace (default: every workspace)")
    s.add_argument("--db", default=None)
    a = asub.add_parser("add", help="create a schedule (auto-execute stays off unless --auto-execute)")
    a.add_argument("--name", required=True)
    a.add_argument("--platform", default="sandbox", choices=["sandbox", "meta", "google"])
    a.add_argument("--account", default="sandbox-1", help="the account id (sandbox: sandbox-1)")
    a.add_argument("--time", default="06:00", help="time of day HH:MM in --timezone")
    a.add_argument("--timezone", default="UTC", help="the account's IANA zone, e.g. Europe/Berlin")
    a.add_argument("--weekday", type=int, default=None, help="weekly on this day (0 = Monday); default: daily")
    a.add_argument("--auto-execute", action="store_true", help="execute the changes that pass every guardrail")
    a.add_argument("--threshold", type=float, default=80.0, help="confidence threshold for automatic execution")
    a.add_argument("--email", action="append", default=[], help="send each run's summary to this address")
    a.add_argument("--webhook", action="store_true", help="send each run's summary to autopilot_webhook_url")
    a.add_argument("--workspace", default="default")
    a.add_argument("--db", default=None)
    ls = asub.add_parser("list", help="list the schedules and when each fires next")
    ls.add_argument("--workspace", default=None)
    ls.add_argument("--db", default=None)
    p.set_defaults(func=func)


def _workspaces(engine, only: str | None) -> list[str]:
    from core.store.db import check_workspace_id, list_workspaces

    return [check_workspace_id(only)] if only else list_workspaces(engine)


def autopilot_command(args) -> int:
    from core.store.db import make_engine

    from .notify import notify_config

    engine = make_engine(args.db)
    notify = notify_config()
    if args.autopilot_command == "add":
        from .schedules import AutopilotSettings, create_schedule

        if args.platform == "sandbox":
            from core.optimize.session import ensure_sandbox

            ensure_sandbox(engine, args.workspace)
        sid = create_schedule(engine, args.workspace, name=args.name, platform=args.platform, account_id=args.account,
                              frequency="weekly" if args.weekday is not None else "daily", weekday=args.weekday,
                              time_of_day=args.time, timezone=args.timezone, auto_execute=args.auto_execute,
                              settings=AutopilotSettings(confidence_threshold=args.threshold),
                              notify_emails=args.email, notify_webhook=args.webhook, actor="command line")
        print(f"schedule #{sid} {args.name!r} created in workspace {args.workspace!r}")
        return 0
    if args.autopilot_command == "list":
        from core.store.models import utcnow

        from .schedules import list_schedules, next_slot

        for ws in _workspaces(engine, args.workspace):
            for s in list_schedules(engine, ws):
                state = "on" if s.enabled else "paused"
                print(f"{ws} #{s.id} {s.name}: {s.platform}/{s.account_id}, {s.describe()}, {state}, "
                      f"auto-execute {'on' if s.auto_execute else 'off'}, next {next_slot(s, utcnow()):%Y-%m-%d %H:%M} UTC")
        return 0
    if args.autopilot_command == "run":
        from .runner import run_due

        from .runner import run_schedule

        failures = 0
        n = 0
        for ws in _workspaces(engine, args.workspace or ("default" if args.schedule else None)):
            results = [run_schedule(engine, ws, args.schedule, trigger="manual", dry_run=args.dry_run, notify=notify)] \
                if args.schedule else run_due(engine, ws, dry_run=args.dry_run, notify=notify)
            for res in results:
                n += 1
                print(f"{ws} schedule #{res.schedule_id}: {res.summary.get('headline', res.status)}")
                for key in ("executed", "waiting", "blocked", "held", "flagged"):
                    for item in res.summary.get(key) or []:
                        print(f"  {key}: {item.get('text')}")
                failures += res.status == "failed"
        if n == 0:
            print("no schedule is due")
        return 1 if failures else 0
    # serve
    from .serve import AutopilotServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = AutopilotServer(engine, lambda: _workspaces(engine, args.workspace), notify=notify)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    jobs = [j for j in server.scheduler.get_jobs() if j.id != "reconcile"]
    print(f"autopilot serving {len(jobs)} schedule(s); Ctrl+C stops", flush=True)
    for j in jobs:
        print(f"  {j.name}: next {j.next_run_time}", flush=True)
    stop.wait()
    server.shutdown()
    print("autopilot stopped", flush=True)
    return 0


__all__ = ["add_autopilot_parser", "autopilot_command"]

