"""AppTest fixtures: the app started from its entry point on a fresh SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """A fresh database for the app; the sample data loads on first start unless a test turns it off."""
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", f"sqlite:///{tmp_path / 'app.db'}")
    return tmp_path


def new_app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=90)
