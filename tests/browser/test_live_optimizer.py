"""In a real browser: a fresh install shows its first page at once with the preparation as progress, and the
Optimizer answers slider moves in place (fragments), keeps whole figures, and starts a what-if from the
proposal with the proposal's own figures. Timings are measured by bench/bench_optimizer_browser.py, not here."""

from __future__ import annotations

import re

import pytest

from tests.browser.util import open_page, wait_idle
from tests.conftest import start_app, stop_app

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory):
    """An app on a database nobody prepared: the app prepares the sample itself."""
    proc, info, log = start_app(tmp_path_factory.mktemp("fresh"), prepared=False)
    yield info
    stop_app(proc, log)


def _metrics(page) -> list[tuple[str, str]]:
    """Every metric on the page as (label, value), in page order (the plan's and the what-if's share labels)."""
    labels = page.get_by_test_id("stMetricLabel").all_inner_texts()
    values = page.get_by_test_id("stMetricValue").all_inner_texts()
    assert len(labels) == len(values)
    return [(label.strip(), value.strip()) for label, value in zip(labels, values)]


def _values(metrics: list[tuple[str, str]], prefix: str) -> list[str]:
    return [value for label, value in metrics if label.startswith(prefix)]


def test_a_fresh_install_shows_the_page_then_the_prepared_data(browser, fresh_server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(fresh_server.url)
    page.get_by_test_id("stProgress").first.wait_for(timeout=60_000)  # the page is there, preparing
    assert "First start" in page.get_by_test_id("stProgress").first.inner_text()
    page.get_by_test_id("stProgress").first.wait_for(state="detached", timeout=600_000)  # minutes on a loaded machine
    wait_idle(page)
    assert "No data set yet" not in page.get_by_test_id("stMain").inner_text()  # the page reran with the sample
    open_page(page, "Optimizer")
    page.get_by_text("Before / after").first.wait_for(timeout=120_000)
    source = page.get_by_test_id("stSelectbox").filter(has_text="Performance data").first.locator("input").input_value()
    assert source.startswith("Sandbox account sandbox-1")  # the sandbox the preparation opened is the default
    context.close()


def test_slider_moves_answer_in_place_and_whatif_reproduces_the_proposal(page, app_server):
    page.goto(page.app_url)
    open_page(page, "Optimizer")
    page.get_by_text("Before / after").first.wait_for(timeout=120_000)
    main = page.get_by_test_id("stMain")
    total_box = page.get_by_test_id("stSlider").filter(has_text="Total daily budget").first
    thumb = total_box.get_by_role("slider").first
    before = _metrics(page)

    def shown() -> float:
        return float(total_box.get_by_test_id("stSliderThumbValue").inner_text().replace(",", ""))

    start = shown()
    thumb.focus()
    for _ in range(3):
        thumb.press("ArrowRight")
        wait_idle(page)
    assert shown() == start + 3
    after = _metrics(page)
    assert _values(after, "Total daily budget") == [f"{start + 3:,.2f}"] and after != before  # spends exactly the new total
    text = main.inner_text()
    assert not re.search(r"-0\.00\b", text), "no negative zero anywhere"
    assert not page.get_by_test_id("stException").count()

    page.get_by_role("button", name="Start from the proposal").click()
    wait_idle(page)
    figures = _metrics(page)
    (plan_total,) = _values(figures, "Total daily budget")
    assert _values(figures, "What-if daily budget") == [plan_total]
    plan_value, whatif_value = _values(figures, "Predicted value a day")  # the plan's, then the what-if's
    assert whatif_value == plan_value  # the what-if predicts exactly the proposal's value
    log = open(app_server.log).read()
    assert "created with a default value but also had its value set" not in log
