"""AppTest fixtures: the app started from its entry point on a fresh SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def empty_app_db(tmp_path, monkeypatch):
    """The engine of a fresh app database without the sample data (the app started in the test opens the same)."""
    from core.store.db import make_engine

    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A fresh database for the app; the sample data loads on first start unless a test turns it off."""
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'app.db'}")
    return tmp_path


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=90)


def open_page(page: str):
    """The app started from app.py and switched to ``page`` (e.g. "pages/data.py"), with no exception."""
    app = new_app()
    app.run()
    app.switch_page(page)
    app.run()
    assert not app.exception, app.exception
    return app


@pytest.fixture
def data_page(app_env, monkeypatch):
    """The Data page on a fresh database without the sample data."""
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    return open_page("pages/data.py")


def wait_for_first_start(timeout: float = 600.0) -> None:
    """Block until the background first-start preparation of the app's database (if any) has finished (generous:
    on a loaded 2-core machine it took over 4 minutes; a hung preparation still fails)."""
    import os

    from core.sample import preparation
    from core.store.db import DEFAULT_WORKSPACE, make_engine

    eng = make_engine(os.environ["MARKETING_SUITE_DB_URL"])
    prep = preparation(eng, DEFAULT_WORKSPACE)
    eng.dispose()
    if prep is not None:
        assert prep.wait(timeout), "the first-start preparation did not finish"
        assert prep.snapshot()["error"] is None, prep.snapshot()["error"]
