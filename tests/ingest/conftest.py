"""Fixture files for ingestion tests, generated in tmp_path (nothing binary is checked in)."""

from __future__ import annotations

import gzip

import pytest


@pytest.fixture
def write(tmp_path):
    """write(name, text | bytes, encoding="utf-8") -> path; ``.gz`` names are gzip-compressed."""

    def _write(name: str, content, encoding: str = "utf-8"):
        path = tmp_path / name
        data = content.encode(encoding) if isinstance(content, str) else content
        if name.endswith(".gz"):
            data = gzip.compress(data)
        path.write_bytes(data)
        return path

    return _write


EVENTS_CSV = """user_id,timestamp,event_type,source,medium,campaign,order_id,revenue,currency
u1,2024-01-01T10:00:00Z,touch,google,cpc,brand,,,
u1,2024-01-02 11:00:00,touch,facebook,paid_social,retarget,,,
u1,2024-01-03T12:00:00+02:00,conversion,,,,o1,"1,234.50",EUR
u2,1704103200,touch,newsletter,email,jan,,,
u2,1704103200,touch,newsletter,email,jan,,,
u2,1704189600,purchase,,,,o2,10,USD
u2,1704189600,purchase,,,,o2,10,USD
u3,2024-01-05T09:00:00Z,touch,,,,,,
"""


@pytest.fixture
def events_text():
    return EVENTS_CSV


@pytest.fixture
def events_csv(write):
    return write("events.csv", EVENTS_CSV)
