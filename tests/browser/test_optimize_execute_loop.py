"""In a real browser, the whole loop on the sandbox account:
optimize -> freeze -> review (dry run) -> confirm -> history -> rollback -> review -> confirm.
The rollback restores every live value exactly."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from core.store.db import make_engine, transaction
from core.store.models import AdEntity, ChangePlan
from tests.browser.util import open_page, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _live(db_url: str) -> dict:
    engine = make_engine(db_url)
    with transaction(engine, "default") as s:
        rows = s.scalars(select(AdEntity).where(AdEntity.platform == "sandbox-live")).all()
        state = {(r.entity_type, r.external_id): (r.daily_budget, r.bid, r.status) for r in rows}
    engine.dispose()
    return state


def _plans(db_url: str) -> list[tuple[int, str, str]]:
    engine = make_engine(db_url)
    with transaction(engine, "default") as s:
        plans = [(p.id, p.origin, p.status) for p in s.scalars(select(ChangePlan).order_by(ChangePlan.id))]
    engine.dispose()
    return plans


def _dry_run_and_confirm(page) -> None:
    page.get_by_role("button", name="Run the dry run (safety checks + platform validation)").click()
    wait_idle(page)
    page.get_by_role("button", name="Approve & execute…").click()
    wait_idle(page)
    dialog = page.get_by_test_id("stDialog")
    dialog.wait_for(timeout=30_000)
    dialog.get_by_role("button", name="Confirm and execute").click()
    wait_idle(page)
    page.get_by_text("completed", exact=False).first.wait_for(timeout=60_000)


def test_optimize_review_confirm_history_rollback(page, tmp_path):
    page.goto(page.app_url)
    open_page(page, "Optimizer")  # opens and syncs the sandbox account on the first visit
    before = _live(page.app_db)
    assert before, "the sandbox account has live entities"

    page.get_by_role("button", name="Freeze into a draft change plan for review").click()
    wait_idle(page)
    page.get_by_text("Draft changes").wait_for(timeout=30_000)
    _dry_run_and_confirm(page)
    page.screenshot(path=str(tmp_path / "review-executed.png"), full_page=True)
    after = _live(page.app_db)
    changed = {k for k in before if before[k] != after[k]}
    assert changed, "the confirmed plan changed live values on the sandbox"
    assert [p[1:] for p in _plans(page.app_db)] == [("optimizer", "completed")]

    open_page(page, "History")
    page.get_by_role("button", name="Roll back the", exact=False).click()
    wait_idle(page)
    page.get_by_text("Draft changes").wait_for(timeout=30_000)
    _dry_run_and_confirm(page)
    page.screenshot(path=str(tmp_path / "rollback-executed.png"), full_page=True)

    restored = _live(page.app_db)
    assert restored == before, "rollback restores the exact previous values"
    assert all(isinstance(v[0], Decimal) or v[0] is None for v in restored.values())
    assert [p[1:] for p in _plans(page.app_db)] == [("optimizer", "completed"), ("rollback", "completed")]
