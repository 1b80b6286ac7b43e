"""The live data set of a workspace: tracked touches and conversions as canonical journey frames.

Each workspace that tracks gets one data set row (kind ``journeys``, source ``tracking``) so the Data,
Attribution and Optimizer pages list it beside imports; its events stay in the append-only tracking
tables and reach the journeys only through `tracked_frames`, in the same columns and dtypes as an
import (`core.ingest.load_events` dispatches here for a live data set). Channels are assigned when
read, with the workspace's current channel rules, so a rule edit applies to past tracked touches
too. The data set's content hash is its fingerprint (counts and last ids of both tables), so a stored
attribution run is reused only while no new event has arrived.
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from core.access import Role, guarded
from core.ingest.channels import assign_channels, load_channel_rules
from core.ingest.events import CONVERSION_COLUMNS, TOUCH_COLUMNS, shared_user_categoricals, text_categorical
from core.store.db import transaction
from core.store.models import Dataset, TrackedConversion, TrackedTouch

from core.ingest.persist import LIVE_SOURCE
LIVE_NAME = "Tracked events (live)"
SOURCE_SYSTEM = "tracking"


def is_live(dataset: Dataset) -> bool:
    return dataset.kind == "journeys" and dataset.source == LIVE_SOURCE


@guarded(Role.ANALYST, "tracking.live_dataset", collector="any", audit=False)
def ensure_live_dataset(engine: Engine, workspace_id: str, *, actor: str | None = None) -> int:
    """The id of the workspace's live data set, made on first use (concurrent first uses make one)."""
    from sqlalchemy.exc import IntegrityError

    try:
        return _get_or_make_live(engine, workspace_id)
    except IntegrityError:  # another request made it (or the workspace) at the same moment: read it
        return _get_or_make_live(engine, workspace_id)


def _get_or_make_live(engine: Engine, workspace_id: str) -> int:
    with transaction(engine, workspace_id) as s:
        found = s.scalar(select(Dataset.id).where(Dataset.kind == "journeys", Dataset.source == LIVE_SOURCE).order_by(Dataset.id))
        if found is not None:
            return int(found)
        taken = set(s.scalars(select(Dataset.name).where(Dataset.name.like(f"{LIVE_NAME}%"))))
        name, k = LIVE_NAME, 2
        while name in taken:
            name, k = f"{LIVE_NAME} ({k})", k + 1
        ds = Dataset(name=name, kind="journeys", source=LIVE_SOURCE, content_hash="live:empty",
                     report={"tracked": True, "note": "touches and conversions received by the collector"})
        s.add(ds)
        s.flush()
        return int(ds.id)


def fingerprint(engine: Engine, workspace_id: str) -> str:
    """Counts and last ids of the tracked tables: changes whenever an event arrives."""
    with transaction(engine, workspace_id) as s:
        t = s.execute(select(func.count(TrackedTouch.id), func.max(TrackedTouch.id))).one()
        c = s.execute(select(func.count(TrackedConversion.id), func.max(TrackedConversion.id))).one()
    return f"live:{t[0]}:{t[1] or 0}:{c[0]}:{c[1] or 0}"


def _read(engine: Engine, stmt) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(stmt, conn)


def tracked_frames(engine: Engine, workspace_id: str, *, user_key: str | None = None, channel_rules=None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(touchpoints, conversions) of the workspace's tracked events in the canonical columns and dtypes
    of an import, sorted by user and time; only one user's with ``user_key``."""
    t, c = TrackedTouch, TrackedConversion
    tq = select(t.user_key, t.ts, t.channel, t.campaign_id, t.campaign, t.source, t.medium, t.interaction).where(t.workspace_id == workspace_id)
    cq = select(c.user_key, c.ts, c.event_id.label("conversion_id"), c.type, c.value, c.currency).where(c.workspace_id == workspace_id)
    if user_key is not None:
        tq, cq = tq.where(t.user_key == user_key), cq.where(c.user_key == user_key)
    touch = _read(engine, tq.order_by(t.user_key, t.ts, t.id))
    conv = _read(engine, cq.order_by(c.user_key, c.ts, c.id))
    touch["ts"] = pd.to_datetime(touch["ts"], utc=True).dt.as_unit("ns") if len(touch) else pd.Series(dtype="datetime64[ns, UTC]")
    conv["ts"] = pd.to_datetime(conv["ts"], utc=True).dt.as_unit("ns") if len(conv) else pd.Series(dtype="datetime64[ns, UTC]")
    for col in ("campaign_id", "campaign", "source", "medium", "interaction", "channel"):
        touch[col] = touch[col].astype("str").where(touch[col].notna())
    missing = touch["channel"].isna()
    given = ~missing  # a channel sent by the page names the visit's traffic
    if missing.any():  # channel rules decide, once per distinct (source, medium, campaign)
        rules = channel_rules if channel_rules is not None else load_channel_rules(engine, workspace_id)
        direct = missing & touch["source"].isna() & touch["medium"].isna() & touch["campaign"].isna()
        source = touch["source"].where(~direct, "(direct)")
        medium = touch["medium"].where(~direct, "(none)")
        touch.loc[missing, "channel"] = assign_channels(source[missing], medium[missing], touch["campaign"][missing], rules)
    touch["source_system"] = SOURCE_SYSTEM
    conv["value"] = conv["value"].astype("float64")
    for col in ("conversion_id", "type", "currency"):
        conv[col] = conv[col].astype("str")
    touch["user_key"], conv["user_key"] = shared_user_categoricals(touch["user_key"].astype("str"), conv["user_key"].astype("str"))
    touch["channel"] = text_categorical(touch["channel"])
    touch = _one_touch_per_visit(touch, given)
    return touch[TOUCH_COLUMNS].reset_index(drop=True), conv[CONVERSION_COLUMNS].reset_index(drop=True)


def _one_touch_per_visit(touch: pd.DataFrame, given: pd.Series) -> pd.DataFrame:
    """The import's sessionizing rule (`core.ingest.sessionize`) on tracked touches: page loads of
    one visit are one touch, its acquisition channel; impressions and clicks keep every touch."""
    from core.ingest.sessionize import SessionSettings, sessionize

    with_traffic = given.to_numpy() | touch["source"].notna().to_numpy() | touch["medium"].notna().to_numpy() \
        | touch["campaign"].notna().to_numpy() | touch["campaign_id"].notna().to_numpy()
    return sessionize(touch.assign(has_traffic=with_traffic), SessionSettings("auto"), interactions_given=True).touchpoints


__all__ = ["LIVE_SOURCE", "LIVE_NAME", "is_live", "ensure_live_dataset", "fingerprint", "tracked_frames"]
