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



@pytest.fixture
def pg_reader():
    """pg_reader(url, tables) -> URL of a new PostgreSQL login role that may only SELECT ``tables``
    (trust auth: no password); the roles are dropped after the test. Free SQL queries are refused
    for superusers, so tests of queries on PostgreSQL connect as such a role."""
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    made: list = []

    def make(url: str, tables: list[str], privileges: str = "SELECT") -> str:
        role = f"reader_{uuid.uuid4().hex[:10]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
            for t in tables:
                conn.execute(text(f'GRANT {privileges} ON "{t}" TO "{role}"'))
        made.append((admin, role))
        return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)

    yield make
    for admin, role in made:
        with admin.connect() as conn:
            conn.execute(text(f'DROP OWNED BY "{role}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
