"""Data set summaries for the Data page and the import report: counts, ranges, path lengths."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.ingest.performance import LEVEL_WORDS, describe_levels, top_level_rows
from core.money import money_places
from core.pathtable import Journeys, PathTable


def _range(series: pd.Series) -> tuple[str, str] | None:
    if series is None or series.empty:
        return None
    return (str(series.min().date()), str(series.max().date()))


def journeys_summary(touchpoints: pd.DataFrame, conversions: pd.DataFrame, journeys: Journeys) -> dict:
    """Users, journeys, conversions, value, channels and date range of an event-level data set."""
    users = pd.concat([touchpoints["user_key"].astype("object"), conversions["user_key"].astype("object")]).nunique()
    times = pd.concat([touchpoints["ts"], conversions["ts"]])
    converting = journeys.conversions > 0
    out = {
        "users": int(users),
        "touchpoints": int(len(touchpoints)),
        "journeys": journeys.n_journeys,
        "converting journeys": int(converting.sum()),
        "null journeys": int((~converting).sum()),
        "conversions": float(journeys.conversions.sum()),
    }
    # value per currency: conversions in several currencies are never added up
    if "currency" in conversions.columns and len(conversions):
        sums = conversions.groupby(conversions["currency"].astype("str"), sort=True)["value"].sum()
        if len(sums) == 1:  # at the currency's precision: KWD keeps its fils, JPY has none
            out.update({"value": round(float(sums.iloc[0]), money_places(sums.index[0])), "currency": str(sums.index[0])})
        else:
            out.update({"value": {str(k): round(float(v), money_places(k)) for k, v in sums.sort_values(ascending=False).items()},
                        "currency": [str(k) for k in sums.sort_values(ascending=False).index]})
    else:
        out["value"] = round(float(journeys.value.sum()), 2)
    out.update({"channels": len(journeys.channels), "date range": _range(times)})
    return out


def paths_summary(paths: PathTable) -> dict:
    """Counts of a path-level data set."""
    return {
        "unique paths": paths.n_paths,
        "conversions": paths.total_conversions,
        "value": round(paths.total_value, 2),
        "null journeys": paths.total_nulls,
        "channels": paths.n_channels,
    }


def path_length_distribution(lengths: np.ndarray, conversions: np.ndarray, nulls: np.ndarray) -> pd.DataFrame:
    """Journeys by number of touches, split into converting and null (tidy, for a stacked bar chart)."""
    top = int(lengths.max()) if lengths.size else 0
    conv = np.bincount(lengths, weights=conversions, minlength=top + 1)
    null = np.bincount(lengths, weights=nulls, minlength=top + 1)
    frame = pd.DataFrame({"touches": np.arange(top + 1), "converting": conv, "null": null})
    frame = frame[(frame["converting"] > 0) | (frame["null"] > 0)]
    return frame.melt(id_vars="touches", var_name="outcome", value_name="journeys")


def journeys_length_distribution(journeys: Journeys) -> pd.DataFrame:
    converting = (journeys.conversions > 0).astype(float)
    return path_length_distribution(journeys.lengths, converting, 1.0 - converting)


def paths_length_distribution(paths: PathTable) -> pd.DataFrame:
    return path_length_distribution(paths.lengths, paths.conversions, paths.nulls)


def channel_summary(paths: PathTable) -> pd.DataFrame:
    """Per channel: paths it appears on, and the conversions and nulls of those paths."""
    seen = np.zeros((paths.n_paths, paths.n_channels), dtype=bool)
    seen[paths.path_index, paths.codes] = True
    return pd.DataFrame(
        {
            "channel": list(paths.channels),
            "paths": seen.sum(axis=0),
            "conversions on paths": paths.conversions @ seen,
            "nulls on paths": paths.nulls @ seen,
        }
    ).sort_values("conversions on paths", ascending=False, ignore_index=True)


def daily_totals(performance: pd.DataFrame) -> pd.DataFrame:
    """One row per top-level entity and day: the total row where the file has one, else the sum of
    ONE breakdown (the first segment type present), so a file holding only a breakdown still counts
    once; only each account's highest entity level counts (`top_level_rows`)."""
    return top_level_rows(_one_row_per_entity_day(performance))


def _one_row_per_entity_day(performance: pd.DataFrame) -> pd.DataFrame:
    if "segment_type" not in performance or performance.empty:
        return performance
    seg = performance["segment_type"].fillna("").astype("str")
    key = ["platform", "account_id", "entity_type", "external_id", "date"]
    totals = performance[seg == ""]
    rest = performance[seg != ""]
    if rest.empty:
        return totals
    covered = pd.MultiIndex.from_frame(totals[key]) if len(totals) else None
    if covered is not None:
        rest = rest[~pd.MultiIndex.from_frame(rest[key]).isin(covered)]
    if rest.empty:
        return totals
    first = rest.groupby(key, sort=False)["segment_type"].transform("min")
    rest = rest[rest["segment_type"] == first]
    aggs = {"spend": ("spend", "sum"), "conversion_value": ("conversion_value", "sum"), "conversions": ("conversions", "sum")}
    if "currency" in rest.columns:
        aggs["currency"] = ("currency", "last")
    summed = rest.groupby(key, sort=False, as_index=False).agg(**aggs)
    return pd.concat([totals[key + list(aggs)], summed], ignore_index=True)


def _currency_codes(frame: pd.DataFrame) -> pd.Series:
    if "currency" not in frame.columns:
        return pd.Series("", index=frame.index, dtype="object")
    return frame["currency"].fillna("").astype(str).str.strip().str.upper()


def money_by_currency(performance: pd.DataFrame) -> pd.DataFrame:
    """Spend, conversion value and ROAS per currency (totals rows only), most spend first.

    Columns: currency, campaigns, spend, conversion value, ROAS. Money of different currencies is
    never added up: a data set holding a Meta account in EUR and a Google account in USD gets one
    row per currency. A frame without a currency column gets one row with currency "".
    """
    cols = ["currency", "campaigns", "spend", "conversion value", "ROAS"]
    totals = daily_totals(performance)
    if totals.empty:
        return pd.DataFrame(columns=cols)
    t = totals.assign(_cur=_currency_codes(totals).to_numpy())
    campaign_level = "entity_type" not in t.columns or (t["entity_type"].astype("str") == "campaign").all()
    if not campaign_level:
        cols[1] = "entities"
    rows = []
    for cur, g in t.groupby("_cur", sort=True):
        spend, value = float(g["spend"].sum()), float(g["conversion_value"].sum())
        count = int(g[["platform", "external_id"]].drop_duplicates().shape[0]) if campaign_level else \
            describe_levels(performance[_currency_codes(performance).to_numpy() == cur])
        rows.append({"currency": cur, cols[1]: count,
                     "spend": round(spend, money_places(cur)), "conversion value": round(value, money_places(cur)),
                     "ROAS": _roas(spend, g["conversion_value"])})
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["spend", "currency"], ascending=[False, True], ignore_index=True)


def _roas(spend: float, values: pd.Series) -> float | None:
    """Value over spend; None (shown as a dash) when nothing was spent or the data records no conversion
    value at all (a file without a value column reads as zeros: its ROAS is unknown, not 0)."""
    if spend <= 0 or not values.ne(0).any():
        return None
    return round(float(values.sum()) / spend, 3)


def level_counts(performance: pd.DataFrame) -> dict[str, int]:
    """Entities per level, named by their level (``{"ad groups": 5, "campaigns": 2}``): an ad-group
    export is never called "5 campaigns". Campaigns are counted from the rows' campaign ids."""
    if performance.empty:
        return {"campaigns": 0}
    out: dict[str, int] = {}
    levels = performance["entity_type"].astype("str") if "entity_type" in performance.columns else pd.Series("campaign", index=performance.index)
    for level in sorted(levels.unique(), key=lambda lv: {"ad": 0, "ad_set": 1, "ad_group": 1}.get(lv, 2)):
        if level == "campaign":
            continue
        rows = performance[levels == level]
        out[LEVEL_WORDS.get(level, (level, level + "s"))[1]] = int(rows[["platform", "external_id"]].drop_duplicates().shape[0])
    campaigns = performance[levels == "campaign"][["platform", "external_id"]].drop_duplicates()
    if "campaign_id" in performance.columns:
        parents = performance.loc[performance["campaign_id"].fillna("").astype("str") != "", ["platform", "campaign_id"]]
        campaigns = pd.concat([campaigns.set_axis(["platform", "id"], axis=1), parents.set_axis(["platform", "id"], axis=1)]).drop_duplicates()
    if len(campaigns) or not out:
        out["campaigns"] = int(len(campaigns))
    return out


def performance_summary(performance: pd.DataFrame) -> dict:
    """Campaigns, days, spend, value and ROAS of a performance data set (totals rows only).

    ``currency`` names the currency of ``spend`` and ``conversion value``. When the data set holds
    several currencies nothing is added across them: ``spend``, ``conversion value`` and ``ROAS``
    are dicts keyed by currency (most spend first) and ``currency`` lists the codes.
    """
    totals = daily_totals(performance)
    money = money_by_currency(performance)
    out = {"platforms": sorted(totals["platform"].unique().tolist()), **level_counts(performance),
           "days": int(totals["date"].nunique())}
    if "entity_type" in performance.columns and (performance["entity_type"].astype("str") != "campaign").any():
        out["entities"] = describe_levels(performance)
    if len(money) <= 1:
        spend = float(totals["spend"].sum())
        value = float(totals["conversion_value"].sum())
        code = str(money["currency"].iloc[0]) if len(money) and money["currency"].iloc[0] else None
        out.update({"spend": round(spend, money_places(code)), "conversion value": round(value, money_places(code)),
                    "ROAS": _roas(spend, totals["conversion_value"]), "currency": code})
    else:
        out.update({"spend": dict(zip(money["currency"], money["spend"])),
                    "conversion value": dict(zip(money["currency"], money["conversion value"])),
                    "ROAS": dict(zip(money["currency"], money["ROAS"])),
                    "currency": money["currency"].tolist()})
    out["date range"] = _range(pd.to_datetime(totals["date"]))
    return out


def dataset_overview(engine, workspace_id: str, dataset_id: int, kind: str, lookback_days: float = 30.0) -> dict:
    """What the Data page shows for one stored data set: metrics, path-length chart data, channels.

    Returns ``{"metrics": dict, "lengths": DataFrame | None, "channels": DataFrame | None,
    "journey_report": dict | None, "tables": {name: DataFrame}}`` and, for performance, ``"money"``
    (`money_by_currency`: spend, value and ROAS per currency); ``tables`` holds what a person
    downloads: the path table in ChannelAttribution's format (journeys and path data sets), the
    path length distribution, and the daily rows of a performance data set.
    """
    from core.ingest import load_events, load_pathtable, load_performance
    from core.journeys import build_journeys_with_report

    if kind == "journeys":
        touchpoints, conversions = load_events(engine, workspace_id, dataset_id)
        journeys, report = build_journeys_with_report(touchpoints, conversions, lookback_days=lookback_days)
        paths = journeys.to_pathtable()
        lengths = journeys_length_distribution(journeys)
        return {
            "metrics": journeys_summary(touchpoints, conversions, journeys),
            "lengths": lengths,
            "channels": channel_summary(paths),
            "journey_report": report.as_dict(),
            "tables": {"paths": paths.to_frame(), "path lengths": lengths},
        }
    if kind == "paths":
        paths = load_pathtable(engine, workspace_id, dataset_id)
        lengths = paths_length_distribution(paths)
        return {"metrics": paths_summary(paths), "lengths": lengths, "channels": channel_summary(paths), "journey_report": None,
                "tables": {"paths": paths.to_frame(), "path lengths": lengths}}
    if kind == "performance":
        perf = load_performance(engine, workspace_id, [dataset_id])
        return {"metrics": performance_summary(perf), "lengths": None, "channels": None, "journey_report": None,
                "money": money_by_currency(perf), "tables": {"performance": perf}}
    raise ValueError(f"unknown data set kind {kind!r}")
