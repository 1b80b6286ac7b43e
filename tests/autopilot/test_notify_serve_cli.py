"""Summaries by e-mail (a local aiosmtpd server) and webhook (a local HTTP receiver); the APScheduler
server; the command line from a fresh database."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.autopilot.notify import NotifyConfig, deliver, notify_config, summary_text, webhook_payload
from core.autopilot.runner import run_schedule
from core.autopilot.schedules import list_schedules, load_schedule, runs_frame, update_schedule

from .conftest import START, WS, at, make_schedule

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = {"headline": "daily (2031-03-03): 1 executed, 1 waiting for review, 1 blocked, 0 held",
           "executed": [{"text": "Search budget 100.00 -> 120.00"}], "waiting": [{"text": "PMax budget 50 -> 45"}],
           "blocked": [{"text": "Brand budget 10 -> 15: guardrail: above the ceiling"}], "held": [],
           "flagged": [{"text": "Search budget 80 -> 100 (plan #3): worse — value 10/day against 20"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller

    class Inbox:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode("utf8", "replace")))
            return "250 OK"

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def receiver():
    got: list = []
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
            self.send_response(status["code"])
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield got, f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secretpart", status
    server.shutdown()


def test_summary_text_lists_what_changed_waits_and_was_blocked():
    subject, body = summary_text(SUMMARY)
    assert subject.startswith("[Marketing Suite] daily")
    for part in ("Executed: 1", "Waiting for review: 1", "Blocked: 1", "above the ceiling", "outside their predicted band: 1"):
        assert part in body
    payload = webhook_payload(SUMMARY)
    assert payload["text"] == subject and payload["blocks"][0]["type"] == "header"


def test_email_goes_through_a_local_smtp_server(smtp_server):
    inbox, port = smtp_server
    cfg = NotifyConfig(smtp_host="127.0.0.1", smtp_port=port, smtp_from="autopilot@example.test", smtp_security="none")
    out = deliver(cfg, SUMMARY, emails=["ops@example.test", "cmo@example.test"])
    assert out == {"email": "sent to 2 recipient(s)"}
    (sender, rcpts, content), = inbox.messages
    assert sender == "autopilot@example.test" and rcpts == ["ops@example.test", "cmo@example.test"]
    assert "Subject: [Marketing Suite] daily" in content and "Waiting for review: 1" in content


def test_webhook_posts_slack_style_json_and_never_echoes_its_url(receiver):
    got, url, status = receiver
    cfg = NotifyConfig(webhook_url=url)
    assert deliver(cfg, SUMMARY, webhook=True) == {"webhook": "delivered (HTTP 200)"}
    (path, ctype, payload), = got
    assert path == "/hooks/T000/B000/secretpart" and ctype == "application/json" and "blocks" in payload
    status["code"] = 500
    out = deliver(cfg, SUMMARY, webhook=True)
    assert out["webhook"].startswith("not delivered") and "secretpart" not in out["webhook"]
    assert "secretpart" not in repr(cfg) and "secretpart" not in str(cfg.describe())


def test_unreachable_destinations_are_reported_not_raised():
    cfg = NotifyConfig(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_from="a@b.test", smtp_security="none",
                       timeout=2)
    out = deliver(cfg, SUMMARY, emails=["x@y.test"], webhook=True)
    assert out["email"].startswith("not sent") and out["webhook"].startswith("not delivered")


def test_config_comes_from_secrets_then_environment():
    env = {"AUTOPILOT_SMTP_HOST": "smtp.env", "AUTOPILOT_SMTP_PORT": "2525", "AUTOPILOT_WEBHOOK_URL": "http://127.0.0.1/x"}
    cfg = notify_config({"autopilot_smtp_host": "smtp.secrets", "autopilot_smtp_from": "f@x.test"}, env)
    assert (cfg.smtp_host, cfg.smtp_port, cfg.smtp_from, cfg.webhook_ready) == ("smtp.secrets", 2525, "f@x.test", True)
    with pytest.raises(ValueError, match="port"):
        notify_config({}, {"AUTOPILOT_SMTP_PORT": "abc"})


def test_a_run_sends_its_summary_to_both(engine, sandbox, smtp_server, receiver):
    inbox, port = smtp_server
    got, url, _ = receiver
    sid = make_schedule(engine, sandbox, notify_emails=["ops@example.test"], notify_webhook=True)
    cfg = NotifyConfig(smtp_host="127.0.0.1", smtp_port=port, smtp_from="ap@example.test", smtp_security="none",
                       webhook_url=url)
    res = run_schedule(engine, WS, sid, platform=sandbox, now=at(START), notify=cfg)
    assert res.summary["notifications"] == {"email": "sent to 1 recipient(s)", "webhook": "delivered (HTTP 200)"}
    assert res.summary["headline"] in inbox.messages[0][2] and got[0][2]["text"].endswith(res.summary["headline"])
    assert runs_frame(engine, WS).iloc[0]["summary"]["notifications"]["email"].startswith("sent")


def test_the_server_keeps_one_cron_job_per_enabled_schedule(engine, sandbox):
    from core.autopilot.serve import AutopilotServer

    sid = make_schedule(engine, sandbox, time_of_day="07:15", timezone="Europe/Berlin")
    weekly = make_schedule(engine, sandbox, name="weekly", frequency="weekly", weekday=0, time_of_day="23:00",
                           timezone="America/New_York")
    server = AutopilotServer(engine, [WS], platform_factory=lambda ws: (lambda s: sandbox))
    assert server.reconcile() == {"added": 2, "changed": 0, "removed": 0, "jobs": 2}
    server.scheduler.start(paused=True)
    try:
        job = server.scheduler.get_job(f"{WS}:{sid}")
        nxt = job.trigger.get_next_fire_time(None, dt.datetime(2031, 3, 3, 12, 0, tzinfo=dt.timezone.utc))
        assert (nxt.hour, nxt.minute, str(nxt.tzinfo)) == (7, 15, "Europe/Berlin") and nxt.date() == dt.date(2031, 3, 4)
        wk = server.scheduler.get_job(f"{WS}:{weekly}").trigger.get_next_fire_time(
            None, dt.datetime(2031, 3, 3, 12, 0, tzinfo=dt.timezone.utc))
        assert wk.weekday() == 0 and wk.hour == 23  # Monday 23:00 in New York
        update_schedule(engine, WS, weekly, enabled=False)
        update_schedule(engine, WS, sid, time_of_day="08:00")
        assert server.reconcile() == {"added": 0, "changed": 1, "removed": 1, "jobs": 1}
    finally:
        server.shutdown()


def test_two_servers_firing_the_same_slot_run_it_once(engine, sandbox):
    from core.autopilot.serve import AutopilotServer

    sid = make_schedule(engine, sandbox)
    servers = [AutopilotServer(engine, [WS], platform_factory=lambda ws: (lambda s: sandbox), runner=f"srv-{i}")
               for i in range(2)]
    threads = [threading.Thread(target=s.fire, args=(WS, sid)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = runs_frame(engine, WS)
    assert len(runs) == 1 and runs.iloc[0]["status"] == "completed" and runs.iloc[0]["runner"] in ("srv-0", "srv-1")


def test_the_scheduler_fires_a_job_on_time(engine, sandbox):
    """A real BackgroundScheduler: the job moved to now fires and runs the schedule."""
    from core.autopilot.serve import AutopilotServer

    sid = make_schedule(engine, sandbox)
    server = AutopilotServer(engine, [WS], platform_factory=lambda ws: (lambda s: sandbox))
    done = threading.Event()
    server.scheduler.add_listener(lambda ev: done.set(), mask=2 ** 12)  # EVENT_JOB_EXECUTED
    server.start(catch_up=False)
    try:
        server.scheduler.get_job(f"{WS}:{sid}").modify(next_run_time=dt.datetime.now(dt.timezone.utc))
        assert done.wait(120)
    finally:
        server.shutdown()
    assert runs_frame(engine, WS).iloc[0]["status"] == "completed"


def test_command_line_from_a_fresh_database(tmp_path):
    env = dict(os.environ, MARKETING_SUITE_DB_URL=f"sqlite:///{tmp_path / 'cli.db'}", PYTHONPATH=str(ROOT))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "autopilot", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    add = cli("add", "--name", "nightly", "--time", "02:30", "--timezone", "Europe/Berlin", "--auto-execute",
              "--threshold", "0")
    assert add.returncode == 0 and "schedule #1 'nightly' created" in add.stdout, add.stderr
    listed = cli("list")
    assert "every day at 02:30 (Europe/Berlin)" in listed.stdout and "auto-execute on" in listed.stdout
    assert "no schedule is due" in cli("run").stdout  # created after today's slot
    dry = cli("run", "--schedule", "1", "--dry-run")
    assert dry.returncode == 0 and "(dry run" in dry.stdout and "would be executed" in dry.stdout
    real = cli("run", "--schedule", "1")
    assert real.returncode == 0 and "executed:" in real.stdout and "waiting for review" in real.stdout
    again = cli("run", "--schedule", "1")
    assert "held:" in again.stdout and "cooldown" in again.stdout
    bad = cli("add", "--name", "x", "--time", "25:00")
    assert bad.returncode == 2 and "time of day must be HH:MM" in bad.stderr


def test_schedule_validation(engine, sandbox):
    from core.autopilot.schedules import ScheduleError

    for kw, match in [({"frequency": "hourly"}, "frequency"), ({"frequency": "weekly"}, "weekday"),
                      ({"time_of_day": "7pm"}, "HH:MM"), ({"timezone": "Nowhere/City"}, "time zone"),
                      ({"notify_emails": ["not-an-address"]}, "e-mail")]:
        with pytest.raises(ScheduleError, match=match):
            make_schedule(engine, sandbox, name=f"bad {match}", **kw)
    make_schedule(engine, sandbox, name="ok")
    with pytest.raises(ScheduleError, match="already exists"):
        make_schedule(engine, sandbox, name="ok")
    assert [s.name for s in list_schedules(engine, WS)] == ["ok"]
    assert load_schedule(engine, WS, list_schedules(engine, WS)[0].id).describe() == "every day at 06:00 (UTC)"
