"""In a real browser: a public file no format recognizes (a Snowplow sessions table) opens the mapping
editor with the reason; two roles are picked, the mapping applied, the file imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.util import open_page, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"


def _pick(page, label: str, option: str) -> None:
    """Choose ``option`` in the select box labelled ``label`` (the role pickers of the editor)."""
    box = page.get_by_test_id("stSelectbox").filter(has=page.get_by_text(label, exact=True)).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def test_map_an_unrecognized_file_and_import_it(page, tmp_path):
    file = tmp_path / "snowplow-sessions.csv"
    file.write_bytes((PUBLIC / "snowplow_sessions_derived.csv").read_bytes())
    page.goto(page.app_url)
    open_page(page, "Data")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(file))
    wait_idle(page)
    page.get_by_text("Detection could not finish the mapping", exact=False).wait_for(timeout=60_000)
    assert page.get_by_text("session_start", exact=False).count() >= 1, "the message lists the columns that matter"
    assert page.get_by_role("button", name="Import", exact=True).count() == 0
    page.get_by_text("Detection could not finish the mapping", exact=False).scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "mapping.png"))
    _pick(page, "user_key *", "user_snowplow_domain_id")
    _pick(page, "ts *", "session_start")
    page.get_by_role("button", name="Apply mapping").click()
    wait_idle(page)
    page.get_by_text("Detected journeys", exact=False).wait_for(timeout=60_000)
    page.get_by_role("button", name="Import", exact=True).click()
    wait_idle(page)
    page.get_by_text("Imported snowplow-sessions.csv", exact=False).wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "mapped.png"), full_page=True)
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert "5" in values  # five sessions, five touches
