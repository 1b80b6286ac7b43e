"""Helpers for driving the app in Debian chromium."""

from __future__ import annotations

from playwright.sync_api import TimeoutError as PlaywrightTimeout

_RUNNING = '[data-test-script-state="running"]'
_IDLE = '[data-test-script-state="notRunning"]'


def wait_idle(page, timeout: float = 90_000) -> None:
    """Wait until the Streamlit script has finished the run that the last interaction started.

    A rerun can take a moment to start on a loaded machine, so first give it a chance to begin,
    then wait for it to end.
    """
    try:
        page.wait_for_selector(_RUNNING, state="attached", timeout=1_500)
    except PlaywrightTimeout:
        pass  # the run was quick, or nothing needed a rerun
    page.wait_for_selector(_IDLE, state="attached", timeout=timeout)


def open_page(page, title: str) -> None:
    """Go to a page of the app through the sidebar navigation."""
    wait_idle(page)
    page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
    wait_idle(page)


def upload_and_import(page, file, detected: str) -> None:
    """On the Data page: upload ``file``, wait for detection to say ``detected`` ("journeys",
    "performance"), press Import and wait for the run to end."""
    open_page(page, "Data")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(file))
    wait_idle(page)
    page.get_by_text(f"Detected {detected}", exact=False).wait_for(timeout=30_000)
    page.get_by_role("button", name="Import", exact=True).click()
    wait_idle(page)
