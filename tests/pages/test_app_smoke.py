"""Every page, started from app.py on a fresh database with the sample data, renders without an error."""

from __future__ import annotations

import pytest

from ui.navigation import PAGES
from tests.pages.conftest import new_app


@pytest.mark.parametrize("page", [p for p, _, _ in PAGES])
def test_page_renders_with_sample_data(app_env, page):
    at = new_app()
    at.run()
    assert not at.exception, at.exception
    at.switch_page(page)
    at.run()
    assert not at.exception, f"{page}: {at.exception}"
    assert not at.error, f"{page} shows an error: {[e.value for e in at.error]}"


def test_another_workspace_sees_none_of_the_default_workspace_data(app_env):
    """The sample data belongs to the default workspace; another workspace starts empty on every page."""
    at = new_app()
    at.run()
    at.switch_page("pages/data.py")
    at.run()
    assert not any("No data set yet" in i.value for i in at.info), "the default workspace has the sample data"
    at.session_state["workspace"] = "client-b"
    at.run()
    assert not at.exception, at.exception
    assert any("No data set yet" in i.value for i in at.info)
    at.switch_page("pages/attribution.py")
    at.run()
    assert not at.exception, at.exception
    assert not at.get("vega_lite_chart"), "no charts of another workspace's runs"


def test_an_unopenable_database_says_so_without_its_password(tmp_path, monkeypatch):
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", "postgresql+psycopg://user:s3cretpw@127.0.0.1:1/nowhere")
    at = new_app()
    at.run()
    assert not at.exception  # one message with an error id, no traceback (issue 11 §2)
    shown = " ".join(str(e.value) for e in at.error)
    as_read = shown.replace("\\", "").replace("\u200b", "")  # as the page renders it (Markdown escapes resolved)
    assert "cannot open the database postgresql+psycopg://user:***@127.0.0.1:1/nowhere" in as_read
    assert "error id" in shown and "s3cretpw" not in shown
