"""Large uploads on the Data page are read block by block (`core.ingest.stream`), as the command line
reads large files: the first block proposes the mapping (the editor works as for any file), the rest
streams, and the stored data set is the one the whole-file path stores. Files that need the whole file
(a GA4 export) still import. The size threshold is lowered here so small files take the large-file path."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.ingest import stream
from core.ingest.persist import load_events
from core.store.db import make_engine, transaction
from core.store.models import Dataset
from tests.pages.conftest import open_page
from tests.small_events import EVENTS_CSV

PUBLIC = Path(__file__).resolve().parents[1] / "fixtures" / "public"


@pytest.fixture
def streamed(app_env, monkeypatch):
    """Every upload counts as large; records which uploads were read block by block."""
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 1)
    calls = []
    real = stream.read_files_streamed

    def spy(sources, *args, **kwargs):
        calls.append([s[0] for s in sources])
        return real(sources, *args, **kwargs)

    monkeypatch.setattr(stream, "read_files_streamed", spy)
    return calls


def _uploaded(name: str, data: bytes):
    """The Data page after uploading ``data`` as ``name``, with no exception."""
    at = open_page("pages/data.py")
    at.file_uploader(key="data.upload").upload(name, data, "text/csv")
    at.run()
    assert not at.exception, at.exception
    return at


def _import(at, app_env):
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert not at.exception, at.exception
    engine = make_engine(f"sqlite:///{app_env / 'app.db'}")
    with transaction(engine, "default") as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 1
        ds_id = s.scalar(select(Dataset.id))
    return load_events(engine, "default", ds_id)


def test_a_large_event_upload_is_read_block_by_block_and_stored_whole(streamed, app_env):
    at = _uploaded("events.csv", EVENTS_CSV.encode())
    assert streamed == [["events.csv"]], "the upload was read by the block-by-block reader"
    assert any("Detected **journeys**" in s.value for s in at.success)
    touches, conversions = _import(at, app_env)[:2]
    assert len(touches) == 4 and len(conversions) == 2
    assert sum(conversions["value"]) == pytest.approx(200.50)  # 120.50 + 80.00, as tests/small_events.py says


def test_a_large_upload_without_known_columns_is_mapped_in_the_editor_then_streamed(streamed, app_env):
    at = _uploaded("sessions.csv", (PUBLIC / "snowplow_sessions_derived.csv").read_bytes())
    assert streamed == [], "nothing is read past the first block before the mapping is complete"
    assert any("map the missing column" in e.value for e in at.error)
    next(s for s in at.selectbox if s.key.endswith(".role.user_key")).select("user_snowplow_domain_id")
    next(s for s in at.selectbox if s.key.endswith(".role.ts")).select("session_start")
    at.run()
    next(b for b in at.button if b.label == "Apply mapping").click()
    at.run()
    assert not at.exception, at.exception
    assert streamed == [["sessions.csv"]]
    assert len(_import(at, app_env)[0]) == 5  # the file's five sessions, as the whole-file test of this file finds


def test_a_large_upload_that_needs_the_whole_file_is_read_whole(streamed, app_env):
    at = _uploaded("purchases.csv", (PUBLIC / "ga4_purchase_events.csv").read_bytes())
    assert streamed == [], "GA4 records are prepared as a whole file"
    assert any("Detected **journeys**" in s.value for s in at.success)
    conversions = _import(at, app_env)[1]
    assert len(conversions) == 23 and round(sum(conversions["value"]), 2) == 3442.45  # as tests/fixtures/public/README.md
