"""In a real browser: the flows a marketer walks through that the other browser tests do not cover.

An attribution run (chart, every model at campaign level, the stored-run picker bringing back a
run's parameters), a what-if scenario saved and compared, and a plan's dry run with the confirmation
dialog cancelled (the plan picker then shows the new status).
"""

from __future__ import annotations

import pytest

from tests.browser.util import open_page, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _main(page):
    return page.get_by_test_id("stMain")


def _pick(page, label: str, option: str) -> None:
    """Choose ``option`` (a substring of its text) in the main area's selectbox labelled ``label``."""
    _main(page).get_by_test_id("stSelectbox").filter(has_text=label).first.locator("input").click()
    page.get_by_role("option").filter(has_text=option).first.click()
    wait_idle(page)


def _shown(page, label: str) -> str:
    """The text a main-area selectbox shows (its input's value)."""
    return _main(page).get_by_test_id("stSelectbox").filter(has_text=label).first.locator("input").input_value()


def _errors(page) -> list[str]:
    return page.get_by_test_id("stException").all_inner_texts() + page.get_by_test_id("stAlertContentError").all_inner_texts()


def test_attribution_runs_at_campaign_level_and_reopen_a_run(page):
    page.goto(page.app_url)
    open_page(page, "Attribution")
    boot = page.get_by_label("Bootstrap replicates", exact=True)
    boot.fill("0")
    boot.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run attribution").click()
    wait_idle(page)
    page.get_by_text("done in", exact=False).first.wait_for(timeout=30_000)
    assert _main(page).get_by_test_id("stVegaLiteChart").count() >= 3  # credit, Shapley vs Markov, transitions...
    assert not _errors(page)
    first_run = _shown(page, "Stored run")

    # campaign level on the sample: its 20 campaigns are exact Shapley's limit (the untouched conversions' (no touch)
    # is no player), so every model runs; too many channels offer to drop Shapley (tests/pages/test_attribution_page.py)
    _main(page).get_by_text("channel:campaign", exact=True).click()
    wait_idle(page)
    models = page.get_by_test_id("stMultiSelect").inner_text()
    page.get_by_role("button", name="Run attribution").click()
    wait_idle(page)
    page.get_by_text("done in", exact=False).first.wait_for(timeout=60_000)
    assert not _errors(page)
    assert "Shapley" in models
    # no bootstrap: no empty interval columns
    assert "low (95%)" not in _main(page).get_by_test_id("stDataFrame").first.inner_text()

    # reopening the first run brings back its parameters (level channel)
    _pick(page, "Stored run", first_run)
    assert "Shapley" in page.get_by_test_id("stMultiSelect").inner_text()
    assert _main(page).get_by_role("radio", name="channel", exact=True).is_checked()
    assert not _errors(page)


def test_save_and_compare_a_what_if_scenario(page):
    page.goto(page.app_url)
    open_page(page, "Optimizer")
    slider = _main(page).get_by_test_id("stSlider").first.get_by_role("slider")
    slider.focus()
    slider.press("ArrowRight")
    wait_idle(page)
    name = page.get_by_label("Scenario name", exact=True)
    name.fill("walkthrough scenario")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Save scenario").click()
    wait_idle(page)
    page.get_by_text("Saved scenario 'walkthrough scenario'", exact=False).wait_for(timeout=20_000)
    wait_idle(page)
    tables_before = _main(page).get_by_test_id("stDataFrame").count()
    compare = _main(page).get_by_test_id("stMultiSelect").filter(has_text="Compare scenarios").locator("input")
    compare.scroll_into_view_if_needed()
    compare.click()
    compare.fill("walkthrough")
    page.get_by_role("option").filter(has_text="walkthrough scenario").first.wait_for(timeout=10_000)
    compare.press("Enter")
    wait_idle(page)
    page.keyboard.press("Escape")
    assert "walkthrough scenario" in _main(page).get_by_test_id("stMultiSelect").filter(has_text="Compare scenarios").inner_text()
    assert _main(page).get_by_test_id("stDataFrame").count() == tables_before + 1  # the comparison table (a canvas)
    assert not _errors(page)


def test_dry_run_then_cancel_the_confirmation(page):
    page.goto(page.app_url)
    open_page(page, "Optimizer")
    page.get_by_role("button", name="Freeze into a draft change plan for review").click()
    wait_idle(page)
    page.get_by_role("button", name="Run the dry run", exact=False).click()
    wait_idle(page)
    page.get_by_text("The plan as previewed").wait_for(timeout=20_000)
    # the plan picker shows the new status at once (it kept "draft" before)
    assert _shown(page, "Change plan").endswith("· previewed")
    page.get_by_role("button", name="Approve & execute…").click()
    wait_idle(page)
    dialog = page.get_by_test_id("stDialog")
    dialog.get_by_text("Confirm execution").wait_for(timeout=10_000)
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    wait_idle(page)
    page.get_by_test_id("stDialog").wait_for(state="hidden", timeout=10_000)  # closes (after its animation)
    page.get_by_test_id("stMetricValue").get_by_text("previewed").wait_for(timeout=10_000)  # nothing was executed
    page.get_by_role("button", name="Approve & execute…").wait_for(timeout=10_000)
    page.get_by_text("Audit log").click()
    wait_idle(page)
    assert not _errors(page)
