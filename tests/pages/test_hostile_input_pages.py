"""Pages under hostile input (issue 11 §2, §7): an error boundary with an error id on every page, CSV
downloads that a spreadsheet cannot run as formulas, and user-supplied names shown as plain text."""

from __future__ import annotations

import ast
import csv
import io
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core.changes import DraftChange, create_plan
from core.export import FORMULA_PREFIXES, csv_bytes, neutralize
from core.ingest import read_files, save_import
from core.store.db import make_engine
from ui.navigation import PAGES

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
EVIL_LINK = "[login](http://evil.example)"
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def app_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'app.db'}"
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", url)
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(url)
    yield eng
    eng.dispose()


def app_on(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    at.switch_page(page)
    at.run()
    return at


# --------------------------------------------------------------------------- §2 error boundary
@pytest.fixture
def through_app_py(monkeypatch):
    """Every AppTest run goes through app.py, as every run after the first does under `streamlit run`.

    AppTest resets Streamlit's "pages directory" flag before each run, so after ``switch_page`` it runs a
    file of ``pages/`` directly (Streamlit's old multipage mode), skipping app.py and its error boundary.
    """
    from streamlit.runtime.pages_manager import PagesManager

    real = PagesManager.__init__

    def init(self, *args, **kwargs):
        real(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.mark.parametrize("page", [p for p, _, _ in PAGES], ids=[t for _, t, _ in PAGES])
def test_every_page_shows_an_unexpected_error_as_a_message_with_an_error_id(app_db, page, monkeypatch, every_log_record,
                                                                           through_app_py):
    import ui.context

    def broken() -> str:
        raise KeyError("password=hunter2-0042 while reading the workspace")

    monkeypatch.setattr(ui.context, "workspace", broken)
    at = app_on(page)
    assert not at.exception, at.exception  # no traceback on the page
    assert at.session_state["workspace"] == "default"  # app.py ran around the page
    shown = " ".join(e.value for e in at.error)
    assert "unexpected KeyError" in shown and "error id" in shown and "hunter2-0042" not in shown
    error_id = shown.split("error id `")[1][:10]
    log = every_log_record()
    assert error_id in log and "Traceback" in log and "hunter2-0042" not in log


# --------------------------------------------------------------------------- §7 CSV downloads
@pytest.mark.parametrize("cell, expected", [
    ("=1+1", "'=1+1"), ("+41 79", "'+41 79"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
    ("\r=x", "'\r=x"), ("-12.5", "-12.5"), ("+3", "+3"), ("1e-3", "1e-3"), ("brand search", "brand search"), ("", ""),
], ids=["equals", "plus", "minus formula", "at", "tab", "carriage return", "negative number", "signed number",
        "exponent", "plain", "empty"])
def test_a_cell_that_would_run_as_a_formula_is_neutralised(cell, expected):
    assert neutralize(cell) == expected
    rows = list(csv.reader(io.StringIO(csv_bytes(pd.DataFrame({"name": [cell], "n": [-5]})).decode(), newline="")))
    assert rows[1] == [expected, "-5"]  # numbers stay numbers


def test_downloads_write_sums_of_cents_as_cents():
    """Float sums leave binary remainders (1014.4499999999998); a download shows the amount, to 14 digits."""
    frame = pd.DataFrame({"spend": [0.1 + 0.2, 1014.4499999999998, 123456789012.34, 1e-7], "n": [1, 2, 3, 4]})
    rows = list(csv.reader(io.StringIO(csv_bytes(frame).decode(), newline="")))
    assert [r[0] for r in rows[1:]] == ["0.3", "1014.45", "123456789012.34", "1e-07"]
    assert [float(r[0]) for r in rows[1:]] == pytest.approx(frame["spend"].tolist(), rel=1e-13)


def test_every_download_of_the_app_goes_through_the_one_safe_helper():
    """No page builds CSV bytes or a download button of its own (one concept, one place)."""
    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")), *sorted((ROOT / "ui").glob("*.py"))]:
        if path.name == "downloads.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("download_button", "to_csv"):
                offenders.append(f"{path.name}:{node.lineno} {node.attr}")
    assert not offenders, offenders


@pytest.fixture
def downloads(monkeypatch):
    """Every file a page offered for download during the test: {file id: bytes}."""
    seen: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        file_id = real(self, path_or_data, mimetype, kind, filename)
        seen[file_id] = path_or_data if isinstance(path_or_data, bytes) else str(path_or_data).encode()
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def formula_cells(payloads: dict[str, bytes]) -> list[str]:
    bad = []
    for data in payloads.values():
        for row in csv.reader(io.StringIO(data.decode("utf-8"))):
            bad += [c for c in row if c[:1] in FORMULA_PREFIXES and c != neutralize(c)]
    return bad


def hostile_plan(eng):
    from core.platforms.sandbox import SandboxPlatform

    sb = SandboxPlatform(eng, "default", n_meta=1, n_google=1, history_days=3)
    e = next(x for x in sb.list_entities() if x.entity_type == "campaign")
    draft = DraftChange("sandbox", sb.account_id, e.entity_type, e.external_id, FORMULA, "budget", e.daily_budget,
                        (e.daily_budget * Decimal("1.1")).quantize(Decimal("0.01")), "USD", "@SUM(1+1)*cmd|' /C calc'!A0",
                        80.0)
    return create_plan(eng, "default", [draft], actor="+attacker", name=EVIL_LINK)


@pytest.mark.parametrize("page", ["pages/review.py", "pages/history.py"], ids=["review", "history"])
def test_plan_downloads_carry_no_formula(app_db, downloads, page):
    hostile_plan(app_db)
    at = app_on(page)
    assert not at.exception, at.exception
    assert any(b"HYPERLINK(" in d for d in downloads.values())  # the name is there...
    assert not formula_cells(downloads)  # ...but never as a formula


# --------------------------------------------------------------------------- §7 names as plain text
def perf_file(tmp_path) -> Path:
    path = tmp_path / "perf.csv"
    pd.DataFrame({"date": ["2024-05-01", "2024-05-02"], "platform": [EVIL_LINK] * 2, "campaign_id": ["c1", "c1"],
                  "campaign_name": [FORMULA] * 2, "spend": [10, 11], "clicks": [1, 1], "impressions": [100, 100],
                  "conversions": [1, 1], "conversions_value": [20, 20], "currency": ["USD", "USD"]}).to_csv(path, index=False)
    return path


def markdown_of(at) -> list[str]:
    """The Markdown source of everything the page renders as Markdown."""
    out = []
    for kind in ("markdown", "caption", "success", "info", "warning", "error", "subheader", "header", "title"):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(m.label) for m in at.metric]
    for table in at.table:  # st.table renders every cell and header as Markdown too
        frame = table.value
        out += [str(c) for c in frame.columns] + [str(v) for v in frame.to_numpy().ravel() if isinstance(v, str)]
    return out


def test_a_hostile_platform_name_is_plain_text_on_the_data_page(app_db, tmp_path, downloads):
    ds = save_import(app_db, "default", EVIL_LINK, read_files([perf_file(tmp_path)]))
    at = app_on("pages/data.py")
    assert not at.exception, at.exception
    assert at.selectbox(key="data.choice").value == ds
    texts = markdown_of(at)
    assert any("evil" in t for t in texts)  # the platform is shown...
    assert not [t for t in texts if "](" in t.replace("\\](", "") or "http://" in t]  # ...never as a link
    assert not formula_cells(downloads)


def test_review_and_history_show_a_hostile_plan_name_as_text(app_db):
    pid = hostile_plan(app_db)
    for page in ("pages/review.py", "pages/history.py"):
        at = app_on(page)
        assert not at.exception, at.exception
        texts = markdown_of(at)
        assert not [t for t in texts if "](" in t.replace("\\](", "") or "http://" in t], (page, texts)
    assert pid
