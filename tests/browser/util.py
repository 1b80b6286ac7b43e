"""Helpers for driving the app in Debian chromium."""

from __future__ import annotations


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-test-script-state="notRunning"]', state="attached", timeout=timeout)


def open_page(page, title: str) -> None:
    """Go to a page of the app through the sidebar navigation."""
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)
