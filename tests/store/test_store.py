"""Storage: migrations, workspace isolation and whole-or-nothing transactions, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, inspect, select, update

from core.store.db import WorkspaceViolation, make_engine, redact_url, resolve_url, transaction
from core.store.models import Base, Dataset, PerformanceDaily


def test_migrations_create_exactly_the_models(engine):
    """The schema Alembic builds is the one the models describe (no model change without a migration)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models differ from the migrations: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_upgrade_is_idempotent(db_url):
    make_engine(db_url).dispose()
    eng = make_engine(db_url)  # second start: nothing to do, nothing breaks
    with transaction(eng, "w") as s:
        s.add(Dataset(name="a", kind="paths"))
    eng.dispose()


def test_one_workspace_cannot_read_or_change_another(engine):
    with transaction(engine, "alpha") as s:
        s.add(Dataset(name="alpha data", kind="paths"))
    with transaction(engine, "beta") as s:
        s.add(Dataset(name="beta data", kind="paths"))

    with transaction(engine, "alpha") as s:
        assert [d.name for d in s.scalars(select(Dataset))] == ["alpha data"]
        assert s.scalar(select(func.count()).select_from(Dataset)) == 1
        beta_id = None
    with transaction(engine, "beta") as s:
        beta_id = s.scalars(select(Dataset.id)).one()
    with transaction(engine, "alpha") as s:
        assert s.get(Dataset, beta_id) is None  # not even by primary key
        s.execute(update(Dataset).values(name="renamed"))  # bulk update touches only alpha's rows
        s.execute(delete(Dataset).where(Dataset.id == beta_id))  # and cannot delete beta's
    with transaction(engine, "beta") as s:
        assert [d.name for d in s.scalars(select(Dataset))] == ["beta data"]


def test_writing_a_row_of_another_workspace_is_refused(engine):
    with transaction(engine, "alpha") as s:
        s.add(Dataset(name="x", kind="paths"))
    with pytest.raises(WorkspaceViolation):
        with transaction(engine, "beta") as s:
            s.add(Dataset(name="smuggled", kind="paths", workspace_id="alpha"))
    with transaction(engine, "alpha") as s:
        assert [d.name for d in s.scalars(select(Dataset))] == ["x"]


def test_a_failed_transaction_leaves_no_trace(engine):
    with pytest.raises(RuntimeError):
        with transaction(engine, "w") as s:
            ds = Dataset(name="half", kind="performance")
            s.add(ds)
            s.flush()
            s.add(PerformanceDaily(dataset_id=ds.id, platform="meta", external_id="1", date=dt.date(2026, 1, 1),
                                   spend=Decimal("1.50"), conversion_value=Decimal("3")))
            s.flush()
            raise RuntimeError("boom after the rows were written")
    with transaction(engine, "w") as s:
        assert s.scalar(select(func.count()).select_from(Dataset)) == 0
        assert s.scalar(select(func.count()).select_from(PerformanceDaily)) == 0


def test_money_and_time_round_trip_exactly(engine):
    when = dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with transaction(engine, "w") as s:
        s.add(Dataset(name="t", kind="performance", created_at=when))
        s.flush()
        ds = s.scalars(select(Dataset)).one()
        s.add(PerformanceDaily(dataset_id=ds.id, platform="google", external_id="9", date=dt.date(2026, 3, 28),
                               spend=Decimal("1234.567891"), conversion_value=Decimal("0.01")))
    with transaction(engine, "w") as s:
        row = s.scalars(select(PerformanceDaily)).one()
        assert row.spend == Decimal("1234.567891") and row.conversion_value == Decimal("0.01")
        created = s.scalars(select(Dataset.created_at)).one()
        assert created.tzinfo is not None and created == when


def test_naive_datetimes_are_refused(engine):
    with pytest.raises(Exception, match="naive datetime"):
        with transaction(engine, "w") as s:
            s.add(Dataset(name="t", kind="paths", created_at=dt.datetime(2026, 1, 1)))


def test_url_resolution_and_redaction(monkeypatch, tmp_path):
    monkeypatch.setenv("MARKETING_SUITE_DB_URL", "postgresql+psycopg://u:s3cret@127.0.0.1/db")
    assert resolve_url() == "postgresql+psycopg://u:s3cret@127.0.0.1/db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "s3cret" not in redact_url(resolve_url())
    monkeypatch.delenv("MARKETING_SUITE_DB_URL")
    assert resolve_url().startswith("sqlite:///")


def test_redaction_never_echoes_a_password_or_an_unreadable_url():
    from core.store.db import scrub_url

    assert redact_url("postgresql+psycopg://u:pw123@h/db") == "postgresql+psycopg://u:***@h/db"
    assert redact_url("not a url pw123") == "(an unreadable URL)"
    message = "could not connect with postgresql+psycopg://u:pw123@h/db (password pw123 rejected)"
    assert "pw123" not in scrub_url(message, "postgresql+psycopg://u:pw123@h/db")


def test_sqlite_writer_turn_lets_one_writer_in_at_a_time(tmp_path):
    """Writers that use `sqlite_writer_turn` take turns on an OS lock (the next one wakes as soon as it is free)."""
    import threading
    import time

    from core.store.db import make_engine, sqlite_writer_turn

    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    inside, overlaps, entered = [0], [], threading.Event()

    def writer(hold: float):
        with sqlite_writer_turn(engine):
            inside[0] += 1
            overlaps.append(inside[0])
            entered.set()
            time.sleep(hold)
            inside[0] -= 1

    first = threading.Thread(target=writer, args=(0.3,))
    first.start()
    entered.wait(5)
    t0 = time.monotonic()
    writer(0.0)  # waits for the first writer's turn to end
    waited = time.monotonic() - t0
    first.join()
    assert overlaps == [1, 1] and 0.15 < waited < 2.0
    assert (tmp_path / "turns.db-writers.lock").exists()
    memory = make_engine("sqlite://")
    with sqlite_writer_turn(memory):  # no file, no lock: a no-op
        pass
