"""A small generated event-level data set written straight into the canonical tables (no ingestion needed)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import insert

from core.store.db import transaction
from core.store.models import Conversion, Dataset, PathRow, Touchpoint

CHANNELS = ["display", "email", "search", "social"]


def make_events(n_users: int = 240, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Touchpoints and conversions in the canonical frame layout; search and email lift conversion."""
    rng = np.random.default_rng(seed)
    n_touch = rng.integers(1, 6, size=n_users)
    user = np.repeat(np.arange(n_users), n_touch)
    ch = rng.integers(0, len(CHANNELS), size=user.size)
    base = pd.Timestamp("2024-03-01", tz="UTC")
    ts = (base + pd.to_timedelta(rng.uniform(0, 40, size=user.size), unit="D")).floor("s")
    touch = pd.DataFrame({
        "user_key": [f"u{u:04d}" for u in user],
        "ts": ts,
        "channel": np.asarray(CHANNELS, dtype=object)[ch],
        "campaign_id": [f"c{c}{k}" for c, k in zip(ch, rng.integers(0, 2, size=user.size))],
        "interaction": "click",
        "source_system": "csv",
    })
    lift = pd.Series(np.isin(ch, [1, 2])).groupby(user).any().to_numpy()
    converts = rng.uniform(size=n_users) < np.where(lift, 0.55, 0.2)
    last = pd.Series(ts).groupby(user).max().to_numpy()
    conv_users = np.flatnonzero(converts)
    conv = pd.DataFrame({
        "user_key": [f"u{u:04d}" for u in conv_users],
        "ts": pd.DatetimeIndex(last[conv_users]) + pd.Timedelta(hours=1),
        "conversion_id": [f"o{u}" for u in conv_users],
        "type": "purchase",
        "value": np.round(rng.uniform(20, 200, size=conv_users.size), 2),  # float64 canonical column
        "currency": "USD",
    })
    return touch, conv


def add_event_dataset(engine, workspace: str, touch: pd.DataFrame, conv: pd.DataFrame, name: str = "events",
                      places: int = 2) -> int:
    """Write the frames as one journeys data set (values at ``places`` decimals); returns its id."""
    with transaction(engine, workspace) as s:
        ds = Dataset(name=name, kind="journeys", source="test", content_hash=f"hash-{name}-{len(touch)}")
        s.add(ds)
        s.flush()
        t = touch.assign(workspace_id=workspace, dataset_id=ds.id, ts=[x.to_pydatetime() for x in touch["ts"]])
        c = conv.assign(workspace_id=workspace, dataset_id=ds.id, ts=[x.to_pydatetime() for x in conv["ts"]],
                        value=[Decimal(f"{v:.{places}f}") for v in conv["value"]])
        s.execute(insert(Touchpoint), t.to_dict(orient="records"))
        s.execute(insert(Conversion), c.to_dict(orient="records"))
        return int(ds.id)


def add_path_dataset(engine, workspace: str, frame: pd.DataFrame, name: str = "paths") -> int:
    """Write a ChannelAttribution-style path table as one paths data set; returns its id."""
    with transaction(engine, workspace) as s:
        ds = Dataset(name=name, kind="paths", source="test", content_hash=f"hash-{name}")
        s.add(ds)
        s.flush()
        rows = [{"workspace_id": workspace, "dataset_id": ds.id, "path": p, "conversions": float(c), "value": float(v), "nulls": float(n)}
                for p, c, v, n in frame[["path", "total_conversions", "total_conversion_value", "total_null"]].itertuples(index=False)]
        s.execute(insert(PathRow), rows)
        return int(ds.id)
