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
