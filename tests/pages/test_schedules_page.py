"""AppTest of the Schedules page and of the autopilot's traces on Review and History, from app.py."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import execute as ex
from core.autopilot import AutopilotSettings, create_schedule, list_schedules
from core.autopilot.outcomes import evaluate_outcomes, record_predictions
from core.autopilot.runner import run_schedule
from core.autopilot.schedules import runs_frame
from core.changes import DraftChange, create_plan
from core.guardrails import load_guardrails
from core.platforms.sandbox import SandboxPlatform
from core.platforms.sync import sync_platform
from core.store.db import make_engine

WS = "default"
APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = "sqlite:///" + str(tmp_path / "app.db")
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    sb = SandboxPlatform(eng, WS, n_meta=2, n_google=1, history_days=45)
    sync_platform(eng, WS, sb)
    yield eng, sb
    eng.dispose()


def app_on(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def button(at, key):
    return next(b for b in at.button if b.key == key)


def test_create_run_pause_and_kill_switch(db):
    eng, sb = db
    at = app_on("pages/schedules.py")
    at.text_input(key="schedules.new.name").set_value("Nightly")
    at.text_input(key="schedules.new.time").set_value("03:15")
    at.text_input(key="schedules.new.tz").set_value("Europe/Berlin")
    at.slider(key="schedules.new.threshold").set_value(0)
    at.toggle(key="schedules.new.auto").set_value(True)
    next(b for b in at.button if "Create schedule" in b.label).click().run()
    assert not at.exception, at.exception
    (sched,) = list_schedules(eng, WS)
    assert (sched.name, sched.time_of_day, sched.timezone, sched.auto_execute) == ("Nightly", "03:15", "Europe/Berlin", True)
    button(at, f"schedules.{sched.id}.run").click().run()
    assert not at.exception, at.exception
    runs = runs_frame(eng, WS)
    assert len(runs) == 1 and runs.iloc[0]["trigger"] == "manual" and runs.iloc[0]["status"] == "completed"
    assert any("executed" in s.value for s in at.success)
    button(at, f"schedules.{sched.id}.toggle").click().run()
    assert list_schedules(eng, WS)[0].enabled is False
    at.text_input(key="schedules.kill_note").set_value("incident 42")
    button(at, "schedules.kill_throw").click().run()
    state = load_guardrails(eng, WS)
    assert state.kill_switch and state.kill_note == "incident 42"
    assert any("Kill switch is ON" in e.value for e in at.error)
    button(at, "schedules.kill_release").click().run()
    assert not load_guardrails(eng, WS).kill_switch


def test_a_bad_schedule_says_why(db):
    at = app_on("pages/schedules.py")
    at.text_input(key="schedules.new.time").set_value("7pm")
    next(b for b in at.button if "Create schedule" in b.label).click().run()
    assert any("HH:MM" in e.value for e in at.error)


def test_review_shows_the_glide_path_and_history_the_outcome(db):
    eng, sb = db
    b0 = sb.read_live("campaign", "meta-c001", "budget")
    sid = create_schedule(eng, WS, name="grow", platform="sandbox", account_id=sb.account_id, auto_execute=False,
                          settings=AutopilotSettings(confidence_threshold=0.0))
    res = run_schedule(eng, WS, sid, platform=sb)
    at = app_on("pages/review.py")
    at.session_state["review.plan_id"] = res.plan_ids[0]
    at.run()
    assert not at.exception, at.exception
    from core.autopilot.glide import paths_frame

    staged = paths_frame(eng, WS)
    if len(staged):  # a move above the step limit: the Review page shows its whole path and the next due day
        glide = next(d.value for d in at.dataframe if "steps" in d.value.columns)
        assert len(glide) >= 1 and glide["next_due"].notna().any() and glide["steps"].str.contains("planned").any()
    # a manual plan above the step limit carries the warning; a schedule's steps never exceed it
    pid = create_plan(eng, WS, [DraftChange("sandbox", sb.account_id, "campaign", "meta-c001", "Meta", "budget", b0,
                                            (b0 * Decimal("1.4")).quantize(Decimal("0.01")), "USD", "manual", 90.0)],
                      actor="alice", origin="manual")
    pr = ex.preview(eng, WS, pid, sb, actor="alice")
    ex.approve(eng, WS, pid, pr.content_hash, actor="alice")
    ex.execute(eng, WS, pid, pr.content_hash, sb, actor="alice")
    assert record_predictions(eng, WS, pid, sb) == 1
    at.session_state["review.plan_id"] = pid
    at.run()
    assert any("learning phase" in w.value for w in at.warning)
    sb.advance_days(8)
    sync_platform(eng, WS, sb)
    evaluate_outcomes(eng, WS, "sandbox", sb.account_id)
    h = app_on("pages/history.py")
    h.selectbox(key="history.plan").set_value(pid).run()
    assert not h.exception, h.exception
    table = next(d.value for d in h.dataframe if "verdict" in d.value.columns and "predicted_value" in d.value.columns)
    assert table.iloc[0]["verdict"] in ("as predicted", "better", "worse")
    spec = json.loads(h.get("arrow_vega_lite_chart")[0].proto.spec) if h.get("arrow_vega_lite_chart") else \
        json.loads(h.get("vega_lite_chart")[0].proto.spec)
    assert "layer" in spec and len(spec["layer"]) == 3


def test_a_run_shows_a_hostile_name_as_text_and_a_failure_without_its_secret(db, monkeypatch):
    eng, sb = db
    sid = create_schedule(eng, WS, name="[Nightly](http://evil.example) **now**", platform="sandbox",
                          account_id=sb.account_id, actor="t")
    at = app_on("pages/schedules.py")
    button(at, f"schedules.{sid}.dry").click().run()
    assert not at.exception, at.exception
    shown = [m.value for m in (*at.info, *at.success, *at.warning, *at.error)]
    assert any(v.startswith(r"\[Nightly\](http") and r"\*\*now\*\* (dry run" in v for v in shown), shown
    assert not any("[Nightly](http://evil.example)" in v for v in shown), shown

    secret = "Pw0rd-4242"
    import core.autopilot.runner as runner

    def broken_factory(*args, **kwargs):
        def factory(schedule):
            raise RuntimeError(f"cannot reach postgresql://ann:{secret}@db.internal/shop")
        return factory

    monkeypatch.setattr(runner, "default_platform", broken_factory)
    button(at, f"schedules.{sid}.dry").click().run()
    assert not at.exception, at.exception
    texts = [m.value for m in (*at.error, *at.warning, *at.info)] + [str(s.proto) for s in at.get("expandable")]
    assert any("cannot reach" in t for t in texts), texts
    assert not any(secret in t for t in texts), texts
