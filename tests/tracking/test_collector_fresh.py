"""The collector acts on what is true now: a destination enabled or disabled a moment ago decides the
outbox rows of the next conversion; a flood of unknown keys costs a bounded number of lookups; behind a
trusted reverse proxy the client's own address is the one stored."""

from __future__ import annotations

from core.store.db import make_engine
from core.tracking import config

from .conftest import WS, deliveries, purchase


def _rows_of(engine, event_id: str) -> dict[str, str]:
    """{destination: status} of the outbox rows of one conversion."""
    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import TrackedConversion

    with transaction(engine, WS) as s:
        conversion_id = s.scalar(select(TrackedConversion.id).where(TrackedConversion.event_id == event_id))
    assert conversion_id is not None, f"conversion {event_id} was not stored"
    return {d["destination"]: d["status"] for d in deliveries(engine) if d["conversion_id"] == conversion_id}


def test_a_destination_changed_on_the_tracking_page_decides_the_very_next_conversions_outbox_rows(client, engine, db_url):
    """The Tracking page (its own engine and connection) enables, re-maps and disables destinations;
    the conversion sent right after each change gets exactly the rows the change says, though the
    collector had just cached the workspace's settings."""
    page = make_engine(db_url, upgrade=False)  # another process's connection, as the Tracking page's
    try:
        def send(n: int, **extra) -> dict[str, str]:
            r = client.post("/v1/conversions", json=purchase(n, **extra))
            assert r.status_code == 200, r.text
            return _rows_of(engine, f"evt-{n}")

        assert send(0) == {}  # nothing enabled; the collector now holds the workspace's settings
        config.save_destination(page, WS, "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567890"})
        assert send(1) == {"meta": "pending"}
        config.save_destination(page, WS, "google", enabled=True, settings={"conversion_actions": {"purchase": "555"}})
        assert send(2) == {"meta": "pending", "google": "pending"}
        config.save_destination(page, WS, "google", settings={"conversion_actions": {"lead": "556"}})
        assert send(3) == {"meta": "pending"}  # no conversion action for purchases any more
        assert send(4, type="lead") == {"meta": "pending", "google": "pending"}
        config.save_destination(page, WS, "meta", enabled=False)
        assert send(5, type="lead") == {"google": "pending"}
        assert send(6, type="lead", ad_user_data=None) == {"google": "skipped_consent"}
        config.save_destination(page, WS, "collector", settings={"assume_consent": True})
        assert send(7, type="lead", ad_user_data=None) == {"google": "pending"}  # the collector's consent rule, too
        config.save_destination(page, WS, "google", enabled=False)
        assert send(8) == {}
    finally:
        page.dispose()
