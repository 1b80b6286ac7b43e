"""The Data page on real public files: a file no format recognizes is mapped in the editor and
imported; the second upload of the same export needs no clicks; clickstreams offer one touch per
session; performance exports name their level; a failed read leaves no spinner behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.store.db import make_engine, transaction
from core.ingest.persist import load_events
from core.store.models import Dataset, SavedMapping
from tests.pages.conftest import open_page

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"
SESSIONS = (PUBLIC / "snowplow_sessions_derived.csv").read_bytes()


@pytest.fixture
def at(app_env, monkeypatch):
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    return _open()


def _open():
    return open_page("pages/data.py")


def _count(app_env, model):
    with transaction(make_engine(f"sqlite:///{app_env / 'app.db'}"), "default") as s:
        return s.scalar(select(func.count()).select_from(model))


def _role(at, role: str):
    return next(s for s in at.selectbox if s.key.endswith(f".role.{role}"))


def test_an_unrecognized_file_is_mapped_in_the_editor_and_remembered(at, app_env):
    at.file_uploader(key="data.upload").upload("sessions.csv", SESSIONS, "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert any("Detection could not finish the mapping" in w.value and "session_start" in w.value for w in at.warning)
    assert any("map the missing column" in e.value for e in at.error)
    assert not [b for b in at.button if b.label == "Import"]
    _role(at, "user_key").select("user_snowplow_domain_id")
    _role(at, "ts").select("session_start")
    at.run()
    next(b for b in at.button if b.label == "Apply mapping").click()
    at.run()
    assert not at.exception, at.exception
    assert any("Detected **journeys**" in s.value for s in at.success)
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    assert _count(app_env, Dataset) == 1
    engine = make_engine(f"sqlite:///{app_env / 'app.db'}")
    with transaction(engine, "default") as s:
        ds_id = s.scalar(select(Dataset.id))
    assert len(load_events(engine, "default", ds_id)[0]) == 5
    assert _count(app_env, SavedMapping) == 1

    again = _open()  # a new browser session uploads the same export: no clicks needed
    again.file_uploader(key="data.upload").upload("sessions-june.csv", SESSIONS, "text/csv")
    again.run()
    assert not again.exception, again.exception
    assert any("Detected **journeys**" in s.value for s in again.success)
    assert any("is applied" in c.value for c in again.caption)


def test_a_clickstream_offers_one_touch_per_session_or_every_event(at):
    at.file_uploader(key="data.upload").upload("ga4_ecommerce_funnel_events.csv", (PUBLIC / "ga4_ecommerce_funnel_events.csv").read_bytes(), "text/csv")
    at.run()
    assert not at.exception, at.exception
    touches = at.radio(key="data.touches")
    assert touches.value == "auto"
    # 16 funnel events and 2 first-ever touches (traffic_source); user 1: first touch + a direct and two email visits,
    # user 2: first touch + one facebook visit
    text = " ".join(m.value for m in at.markdown)
    assert "18 events → 6 sessions → 6 touches" in text and "one per session" in text
    touches.set_value("events")
    at.run()
    assert not at.exception, at.exception
    assert "18 events → 6 sessions → 18 touches" in " ".join(m.value for m in at.markdown)


def test_a_performance_export_names_its_level(at):
    at.file_uploader(key="data.upload").upload("basic_ad.csv", (PUBLIC / "fivetran_facebook_ads_basic_ad.csv").read_bytes(), "text/csv")
    at.file_uploader(key="data.upload").upload("ad_history.csv", (PUBLIC / "fivetran_facebook_ads_ad_history.csv").read_bytes(), "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert any("4 ads in 4 ad sets in 4 campaigns" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics.get("ads") == "4" and metrics.get("campaigns") == "4" and "spend (USD)" in metrics
    assert "campaigns 5" not in " ".join(c.value for c in at.caption)


def test_a_failed_read_leaves_no_spinner(at):
    at.file_uploader(key="data.upload").upload("bad.csv", b"\x00\x01\x02binary", "text/csv")
    at.run()
    assert not at.exception, at.exception
    assert at.status and all(s.state != "running" for s in at.status)
    assert any(s.state == "error" for s in at.status)
    assert any("Nothing was imported" in e.value for e in at.error)


def test_reports_are_tables_not_json(at):
    at.file_uploader(key="data.upload").upload("ga4_purchase_events.csv", (PUBLIC / "ga4_purchase_events.csv").read_bytes(), "text/csv")
    at.run()
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.json, "import and journey reports render as readable tables"
    assert at.table, "the reports are tables"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["value (GBP)"] == "3,442.45"
