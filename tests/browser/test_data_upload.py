"""In a real browser: upload an event file on the Data page, import it, and see its summary."""

from __future__ import annotations

import pytest

from tests.browser.util import open_page, upload_and_import, wait_idle
from tests.small_events import EVENTS_CSV

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

EVENTS = EVENTS_CSV


def test_upload_and_see_summary(page, tmp_path):
    file = tmp_path / "browser-events.csv"
    file.write_text(EVENTS)
    page.goto(page.app_url)
    upload_and_import(page, file, "journeys")
    page.get_by_text("Imported browser-events.csv", exact=False).wait_for(timeout=30_000)
    page.get_by_test_id("stMetricValue").get_by_text("200.50").wait_for(timeout=30_000)
    wait_idle(page)
    page.screenshot(path=str(tmp_path / "data-page.png"), full_page=True)
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert "200.50" in values and "2" in values
    assert page.get_by_test_id("stVegaLiteChart").count() >= 1


def test_create_a_workspace_from_the_sidebar(page):
    page.goto(page.app_url)
    open_page(page, "Data")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("New workspace").click()
    field = sidebar.get_by_role("textbox", name="Workspace id")
    field.fill("client-b")
    field.press("Enter")
    wait_idle(page)
    sidebar.get_by_role("button", name="Create").click()
    wait_idle(page)
    page.get_by_text("No data set yet", exact=False).wait_for(timeout=60_000)
    assert sidebar.get_by_test_id("stSelectbox").first.locator("input").input_value() == "client-b"
    field.fill("not a valid id!")
    field.press("Enter")
    wait_idle(page)
    sidebar.get_by_role("button", name="Create").click()
    wait_idle(page)
    sidebar.get_by_text("a workspace id is 1-64", exact=False).wait_for(timeout=30_000)
    assert sidebar.get_by_test_id("stSelectbox").first.locator("input").input_value() == "client-b"
