"""The Data page, started from app.py: upload -> detected format -> import -> summary; bad input; delete."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.store.db import make_engine, transaction
from core.store.models import Dataset, EventSet, Touchpoint
from tests.pages.conftest import new_app
from tests.small_events import EVENTS_CSV

EVENTS = EVENTS_CSV.encode()


@pytest.fixture
def at(data_page):
    return data_page


def _count(url, model):
    with transaction(make_engine(url), "default") as s:
        return s.scalar(select(func.count()).select_from(model))


def test_upload_detects_imports_and_summarizes(at, app_env):
    at.file_uploader(key="data.upload").upload("events.csv", EVENTS, "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert any("Detected **journeys**" in s.value for s in at.success)
    import_button = next(b for b in at.button if b.label == "Import")
    import_button.click()
    at.run()
    assert not at.exception, at.exception
    assert any("Imported **events.csv**" in s.value for s in at.success)
    assert not [b for b in at.button if b.label == "Import"], "the same upload cannot be imported twice by a second click"

    url = f"sqlite:///{app_env / 'app.db'}"
    with transaction(make_engine(url), "default") as s:
        assert s.execute(select(EventSet.touchpoints, EventSet.conversions)).one() == (4, 2)  # stored as event files
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["conversions"] == "2"
    assert metrics["value (USD)"] == "200.50"  # the value carries its currency
    assert metrics["users"] == "3"
    assert at.get("vega_lite_chart"), "the path length chart is drawn"


def test_bad_file_is_refused_with_where_and_nothing_stored(at, app_env):
    bad = EVENTS.replace(b"120.50", b"12O.50")
    at.file_uploader(key="data.upload").upload("bad.csv", bad, "text/csv")
    at.run()
    errors = [e.value for e in at.error]
    assert errors and "Nothing was imported" in errors[0]
    assert "bad.csv" in errors[0] and "row 3" in errors[0] and "value" in errors[0]
    assert not [b for b in at.button if b.label == "Import"]
    assert _count(f"sqlite:///{app_env / 'app.db'}", Dataset) == 0


def test_delete_a_data_set(at, app_env):
    at.file_uploader(key="data.upload").upload("events.csv", EVENTS, "text/csv")
    at.run()
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    at.checkbox(key=next(c.key for c in at.checkbox if c.key.startswith("data.delete.sure"))).check()
    at.run()
    next(b for b in at.button if b.label == "Delete").click()
    at.run()
    assert not at.exception, at.exception
    assert _count(f"sqlite:///{app_env / 'app.db'}", Dataset) == 0
    assert any("No data set yet" in i.value for i in at.info)


def _downloads(at) -> list[str]:
    """Labels of the download buttons on the page (AppTest has no typed accessor for them)."""
    return [el.proto.label for el in at.get("download_button")]


PERFORMANCE = b"""date_day,platform,account_id,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value,placement
2026-05-01,facebook_ads,act1,c1,FB,6,1,60,1,20,feed
2026-05-01,facebook_ads,act1,c1,FB,4,1,40,0,0,stories
"""


def test_progress_and_downloads_for_journeys(at):
    at.file_uploader(key="data.upload").upload("events.csv", EVENTS, "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert at.get("progress"), "reading shows a progress bar"
    assert "Download validation report (CSV)" in _downloads(at)
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    labels = _downloads(at)
    for wanted in ("paths", "path lengths", "channels", "the list", "channel rules"):
        assert f"Download {wanted} (CSV)" in labels, labels
    paths = next(el for el in at.get("download_button") if el.proto.label == "Download paths (CSV)")
    assert paths.proto.url, "the path table is served as a file"


def test_performance_upload_detected_and_downloadable(at, app_env):
    at.file_uploader(key="data.upload").upload("fivetran.csv", PERFORMANCE, "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert any("Detected **performance**" in s.value and "Fivetran" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    assert "Download performance (CSV)" in _downloads(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["spend (USD)"] == "10.00"  # money: always two decimals, labelled with its currency



def test_performance_without_value_shows_roas_as_unknown(at, app_env):
    no_value = b"date,platform,account_id,campaign_id,campaign_name,spend,clicks,conversions,currency\n" \
               b"2026-05-01,meta,act_9,m1,M1,10,5,1,USD\n2026-05-02,meta,act_9,m1,M1,12,6,2,USD\n"
    at.file_uploader(key="data.upload").upload("no_value.csv", no_value, "text/csv")
    at.run()
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["spend (USD)"] == "22.00" and metrics["ROAS"] == "—"

TWO_CURRENCIES = b"""date,platform,account_id,campaign_id,campaign_name,spend,impressions,clicks,conversions,conversion_value,currency
2026-05-01,meta,act_9,m1,M1,10.50,100,5,1,40,EUR
2026-05-02,meta,act_9,m1,M1,4.50,100,5,1,20,EUR
2026-05-01,google,555,g1,G1,100,1000,50,3,150,USD
2026-05-02,google,555,g2,G2,20,1000,50,3,90,USD
"""


def test_performance_summary_sums_money_per_currency():
    import pandas as pd

    from core.summary import money_by_currency, performance_summary

    frame = pd.read_csv(__import__("io").BytesIO(TWO_CURRENCIES)).rename(columns={"campaign_id": "external_id", "campaign_name": "entity_name"})
    frame = frame.assign(entity_type="campaign", segment_type="", segment_value="", date=pd.to_datetime(frame["date"]))
    # a device breakdown of a covered day does not count twice
    extra = frame.iloc[[0]].assign(segment_type="device", segment_value="mobile", spend=999.0)
    money = money_by_currency(pd.concat([frame, extra], ignore_index=True))
    assert money["currency"].tolist() == ["USD", "EUR"]  # most spend first
    assert money.set_index("currency")["spend"].to_dict() == {"USD": 120.0, "EUR": 15.0}
    assert money.set_index("currency")["conversion value"].to_dict() == {"USD": 240.0, "EUR": 60.0}
    assert money.set_index("currency")["ROAS"].to_dict() == {"USD": 2.0, "EUR": 4.0}
    assert money.set_index("currency")["campaigns"].to_dict() == {"USD": 2, "EUR": 1}
    summary = performance_summary(frame)
    assert summary["spend"] == {"USD": 120.0, "EUR": 15.0}  # never one sum across currencies
    assert summary["conversion value"] == {"USD": 240.0, "EUR": 60.0}
    assert summary["currency"] == ["USD", "EUR"] and summary["campaigns"] == 3
    one = performance_summary(frame[frame["currency"] == "USD"])
    assert one["spend"] == 120.0 and one["currency"] == "USD" and one["ROAS"] == 2.0


def test_mixed_currency_performance_shows_money_per_currency(at, app_env):
    at.file_uploader(key="data.upload").upload("two.csv", TWO_CURRENCIES, "text/csv")
    at.run()
    assert not at.exception, at.exception
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["spend (USD)"] == "120.00" and metrics["spend (EUR)"] == "15.00"
    assert metrics["conversion value (USD)"] == "240.00" and metrics["conversion value (EUR)"] == "60.00"
    assert "spend" not in metrics and "conversion value" not in metrics
    assert any("2 currencies (USD, EUR)" in i.value for i in at.info)
    money = next(d.value for d in at.dataframe if "currency" in d.value.columns and "ROAS" in d.value.columns)
    assert money["currency"].tolist() == ["USD", "EUR"]


def _events_db(path):
    import pandas as pd
    import sqlalchemy as sa

    from tests.small_events import EVENTS_CSV as text

    import io

    url = f"sqlite:///{path}"
    eng = sa.create_engine(url)
    pd.read_csv(io.StringIO(text)).to_sql("events", eng, index=False)
    eng.dispose()
    return url


def _text(at, label):
    return next(t for t in at.text_input if t.label == label)


def test_sql_source_builds_paths_in_the_database_with_a_preview(at, app_env, tmp_path):
    from core.store.models import PathRow

    url = _events_db(tmp_path / "src.db")
    _text(at, "SQLAlchemy URL").input(url)
    _text(at, "Table").input("events")
    at.radio(key="data.sql.how").set_value("Build paths in the database")
    next(b for b in at.button if b.label == "Preview the SQL").click()
    at.run()
    assert not at.exception, at.exception
    code = [c.value for c in at.code]
    assert code and "OVER (PARTITION BY" in code[0] and "events" in code[0]
    assert _count(f"sqlite:///{app_env / 'app.db'}", Dataset) == 0, "a preview stores nothing"
    next(b for b in at.button if b.label == "Import from SQL").click()
    at.run()
    assert not at.exception, at.exception
    assert any("paths built by the sql engine" in s.value for s in at.success), [s.value for s in at.success]
    app_url = f"sqlite:///{app_env / 'app.db'}"
    assert _count(app_url, Dataset) == 1 and _count(app_url, PathRow) >= 1
    assert _count(app_url, Touchpoint) == 0 and _count(app_url, EventSet) == 0  # no events stored, only paths


def test_folder_tab_builds_paths_with_the_chosen_engine(at, app_env, tmp_path):
    import io

    import pandas as pd

    folder = tmp_path / "ev"
    folder.mkdir()
    pd.read_csv(io.StringIO(EVENTS_CSV)).to_parquet(folder / "part-0.parquet", index=False)
    _text(at, "Folder or glob").input(str(folder / "*.parquet"))
    at.radio(key="data.big.engine").set_value("sql")
    next(b for b in at.button if b.label == "Build paths").click()
    at.run()
    assert not at.exception, at.exception
    assert any("paths built by the sql engine" in s.value for s in at.success), [e.value for e in at.error]
    _text(at, "Folder or glob").input(str(tmp_path / "nothing-*.parquet"))
    next(b for b in at.button if b.label == "Build paths").click()
    at.run()
    assert any("Nothing was stored" in e.value and "no Parquet or CSV" in e.value for e in at.error)


def _errors_in_sight(node, folded=False):
    """The error messages of an AppTest tree that are not inside a status or expander (folded away)."""
    out = []
    if type(node).__name__ == "Error" and not folded:
        out.append(node.value)
    children = getattr(node, "children", None)
    for child in (children.values() if isinstance(children, dict) else []):
        out += _errors_in_sight(child, folded or type(child).__name__ in ("Expander", "Status"))
    return out


@pytest.mark.parametrize("name, content, says", [
    ("empty.csv", b"", "is empty"),
    ("binary.csv", bytes(range(256)) * 20, "binary"),
    ("zero.parquet", b"", "is empty"),
    ("broken.parquet", b"PAR1" + b"x" * 100 + b"PAR1", "broken.parquet"),
], ids=["empty csv", "binary csv", "0-byte parquet", "broken parquet"])
def test_a_file_that_cannot_be_read_says_why_in_sight(at, app_env, name, content, says):
    """The reason is not folded inside the collapsed 'Reading failed' status: a user sees it at once."""
    at.file_uploader(key="data.upload").upload(name, content, "application/octet-stream")
    at.run()
    assert not at.exception, at.exception
    shown = _errors_in_sight(at.main)
    assert len(shown) == 1 and shown[0].startswith("Nothing was imported.") and says in shown[0], shown
    assert not [b for b in at.button if b.label == "Import"]
    assert _count(f"sqlite:///{app_env / 'app.db'}", Dataset) == 0


def test_the_summary_of_a_synced_data_set_follows_the_next_sync(app_env, monkeypatch):
    """A synced (or simulated) performance data set grows with every sync; its summary on the Data page must
    not stay the cached one of the first visit."""
    import datetime as dt

    from core.ingest.persist import content_hash, list_datasets
    from core.platforms.sandbox import SandboxPlatform
    from core.platforms.sync import sync_platform

    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    eng = make_engine(f"sqlite:///{app_env / 'app.db'}")
    try:
        sandbox = SandboxPlatform(eng, "default", seed=3, n_meta=2, n_google=1, history_days=20, today=dt.date(2026, 6, 1))
        sync_platform(eng, "default", sandbox)
        synced = int(list_datasets(eng, "default").query("source == 'sync:sandbox'")["id"].iloc[0])
        before_hash = content_hash(eng, "default", synced)

        def spend(app):
            return next(m.value for m in app.metric if m.label.startswith("spend"))

        app = new_app()
        app.run()
        app.switch_page("pages/data.py").run()
        app.selectbox(key="data.choice").set_value(synced).run()
        assert not app.exception, app.exception
        first = spend(app)

        sandbox.advance_days(5)
        sync_platform(eng, "default", sandbox)
        assert content_hash(eng, "default", synced) != before_hash
        again = new_app()  # a new session (another tab, a refresh): the cache is the process's, shared
        again.run()
        again.switch_page("pages/data.py").run()
        again.selectbox(key="data.choice").set_value(synced).run()
        assert not again.exception, again.exception
        assert spend(again) != first, "the summary still shows the data set as of the first visit"
    finally:
        eng.dispose()
