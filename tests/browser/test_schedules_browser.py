"""In a real browser, the Schedules page on the sandbox account: create a schedule with auto-execute,
run it now, see the run and the plan it wrote (also on Review), then throw the kill switch, see that
nothing can run, and release it."""

from __future__ import annotations

from sqlalchemy import select

import pytest

from core.autopilot.schedules import list_schedules, runs_frame
from core.guardrails import load_guardrails
from core.store.db import make_engine, transaction
from core.store.models import ChangePlan
from tests.browser.util import open_page, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
WS = "default"


def _state(db_url: str):
    engine = make_engine(db_url)
    try:
        schedules = list_schedules(engine, WS)
        runs = runs_frame(engine, WS, schedules[0].id) if schedules else None
        with transaction(engine, WS) as s:
            plans = [(p.id, p.origin, p.status) for p in s.scalars(select(ChangePlan).order_by(ChangePlan.id))]
        return schedules, runs, plans, load_guardrails(engine, WS)
    finally:
        engine.dispose()


def test_create_run_inspect_and_kill_switch(page, tmp_path):
    page.goto(page.app_url)
    open_page(page, "Schedules")
    page.get_by_text("No schedule yet").wait_for(timeout=30_000)
    if page.get_by_role("button", name="Open the sandbox ad account").count():
        page.get_by_role("button", name="Open the sandbox ad account").click()
        wait_idle(page)

    name = page.get_by_label("Name")
    name.fill("Browser nightly")
    page.get_by_label("Time of day (HH:MM)").fill("05:45")
    slider = page.get_by_role("slider").first  # the confidence threshold: to 0, so the run executes what passes
    slider.focus()
    slider.press("Home")
    page.get_by_text("Auto-execute", exact=True).first.click()
    page.get_by_role("button", name="Create schedule").click()
    wait_idle(page)
    page.get_by_text("No run yet").wait_for(timeout=30_000)  # the new schedule is picked, with its next slot
    schedules, runs, _, _ = _state(page.app_db)
    assert [(s.name, s.time_of_day, s.auto_execute, s.settings.confidence_threshold) for s in schedules] == [
        ("Browser nightly", "05:45", True, 0.0)]
    assert runs.empty

    page.get_by_role("button", name="Run now", exact=True).click()
    wait_idle(page, timeout=180_000)
    page.get_by_text("Plans written by this run").wait_for(timeout=120_000)
    page.screenshot(path=str(tmp_path / "schedules-run.png"), full_page=True)
    _, runs, plans, _ = _state(page.app_db)
    assert len(runs) == 1 and runs.iloc[0]["trigger"] == "manual" and runs.iloc[0]["status"] == "completed", runs
    scheduled = [p for p in plans if p[1] == "autopilot"]
    assert scheduled, plans
    plan_id = scheduled[-1][0]
    assert page.get_by_text(f"#{plan_id}").count() >= 1  # the plan is named in the run's summary
    assert page.get_by_text("Executed (").count() + page.get_by_text("Waiting for review (").count() >= 1
    assert page.get_by_test_id("stDataFrame").count() >= 2  # schedules and runs tables

    open_page(page, "Review & execute")  # the run's plan is there, with its origin
    page.get_by_text(f"#{plan_id}").first.wait_for(timeout=30_000)

    open_page(page, "Schedules")
    page.get_by_label("Kill switch: stops every schedule and every execution in this workspace at once").fill(
        "browser test stop")
    page.get_by_role("button", name="Stop everything").click()
    wait_idle(page)
    page.get_by_text("Kill switch is ON").wait_for(timeout=30_000)
    assert page.get_by_role("button", name="Run now", exact=True).is_disabled()
    _, _, _, guard = _state(page.app_db)
    assert guard.kill_switch and guard.kill_note == "browser test stop"
    page.screenshot(path=str(tmp_path / "schedules-killed.png"), full_page=True)

    page.get_by_role("button", name="Dry run now", exact=True).click()  # a dry run is refused too: it says why
    wait_idle(page)
    page.get_by_text("skipped").first.wait_for(timeout=30_000)
    _, runs, _, _ = _state(page.app_db)
    assert len(runs) == 1  # nothing new ran

    page.get_by_role("button", name="Release the kill switch").click()
    wait_idle(page)
    page.get_by_role("button", name="Stop everything").wait_for(timeout=30_000)
    assert not page.get_by_role("button", name="Run now", exact=True).is_disabled()
    assert not _state(page.app_db)[3].kill_switch
