"""Raw ad-connector tables (Fivetran's ``google_ads.*_stats`` and ``facebook_ads.basic_ad``) and the
entity history tables that name their rows.

A raw stats table says its level only through which id columns it has: ``campaign_stats`` has the
campaign in ``id`` (and ``base_campaign``), ``ad_group_stats`` the ad group in ``id`` with its
``campaign_id``, ``ad_stats`` an ``ad_id`` with its ad group (``ad_group_id`` or the ``ad_group``
resource name ``customers/…/adGroups/ID``) and campaign, ``basic_ad`` an ``ad_id`` alone. `prepare`
adds ``conn__entity_type`` / ``conn__entity_id`` / ``conn__campaign_id`` / ``conn__ad_set_id`` so the
connector profile maps them. Device and network rows of one entity and day are summed by the
performance step into the daily total.

History tables (``*_history``: ``id``, ``name``, parents, ``updated_at``) carry several versions per
id; `latest_entities` keeps the newest and `apply_history` names stats rows and fills in their
campaign / ad set, so ad-level spend can be rolled up.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from . import parse
from .errors import IngestError
from .mapping import ColumnMapping, compact
from .readers import RawTable

_RESOURCE_ID = r"/(?:adGroups|campaigns|ads)/(\d+)"


def _lookup(columns) -> dict[str, str]:
    return {compact(c): c for c in columns}


def stats_level(name: str, columns) -> dict | None:
    """{entity_type, entity_id, campaign_id, ad_set_id, ad_set_resource} column names of a raw stats
    table, or None when the columns are not one."""
    c = _lookup(columns)
    money = "costmicros" in c or ("spend" in c and ("inlinelinkclicks" in c or "reach" in c))
    if not money or "date" not in c or c.keys() & {"campaignname", "adgroupname", "adsetname", "campaign", "adname"}:
        return None
    lower = name.lower()
    platform = "google" if "costmicros" in c else "meta" if "inlinelinkclicks" in c or "reach" in c else "unknown"
    level = _level(c, lower)
    return None if level is None else {**level, "platform": platform}


def _level(c: dict, lower: str) -> dict | None:
    if "adid" in c:
        return {"entity_type": "ad", "entity_id": c["adid"], "campaign_id": c.get("campaignid"),
                "ad_set_id": c.get("adgroupid") or c.get("adsetid"), "ad_set_resource": c.get("adgroup")}
    if "id" not in c:
        return None
    if "baseadgroup" in c or ("campaignid" in c and "ad_group" in lower):
        return {"entity_type": "ad_group", "entity_id": c["id"], "campaign_id": c.get("campaignid"), "ad_set_id": None,
                "ad_set_resource": None}
    if "basecampaign" in c or "campaign" in lower:
        return {"entity_type": "campaign", "entity_id": c["id"], "campaign_id": None, "ad_set_id": None, "ad_set_resource": None}
    if "campaignid" in c:
        return {"entity_type": "ad_group", "entity_id": c["id"], "campaign_id": c["campaignid"], "ad_set_id": None,
                "ad_set_resource": None}
    return None


def prepare(table: RawTable) -> RawTable:
    """The table with ``conn__*`` columns added when it is a raw connector stats table (else as is)."""
    level = stats_level(table.name, table.frame.columns)
    if level is None:
        return table
    frame = table.frame.copy()
    index = frame.index
    frame["conn__entity_type"] = parse.constant_str(level["entity_type"], index)
    frame["conn__entity_id"] = parse.text(table, level["entity_id"])
    if level["campaign_id"]:
        frame["conn__campaign_id"] = parse.text(table, level["campaign_id"])
    ad_set = parse.text(table, level["ad_set_id"]) if level["ad_set_id"] else pd.Series(pd.NA, index=index, dtype="str")
    if level["ad_set_resource"]:
        ad_set = ad_set.fillna(parse.text(table, level["ad_set_resource"]).str.extract(_RESOURCE_ID, expand=False))
    if level["entity_type"] == "ad":
        frame["conn__ad_set_id"] = ad_set
    frame["conn__platform"] = parse.constant_str(level["platform"], index)
    return replace(table, frame=frame)


def latest_entities(table: RawTable, mapping: ColumnMapping) -> pd.DataFrame:
    """One row per entity id of a history table (its newest version): id, name, campaign_id,
    campaign_name, ad_set_id, account_id, currency."""
    col = mapping.column
    frame = pd.DataFrame({"id": parse.text(table, col("entity_id"))})
    for field in ("name", "campaign_id", "campaign", "ad_set_id", "account_id", "currency"):
        frame[field] = parse.text(table, col(field)) if col(field) else pd.Series(pd.NA, index=table.frame.index, dtype="str")
    if frame["id"].isna().any():
        raise IngestError("entity id is missing", column=col("entity_id"), **table.where(frame["id"].isna().idxmax()))
    if col("updated_at"):
        frame["_when"] = pd.to_datetime(parse.text(table, col("updated_at")), errors="coerce", utc=True, format="mixed")
        frame = frame.sort_values("_when", kind="stable", na_position="first")
    frame = frame.drop_duplicates("id", keep="last").drop(columns="_when", errors="ignore")
    return frame.rename(columns={"campaign": "campaign_name"}).reset_index(drop=True)


def apply_history(perf: pd.DataFrame, entities: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Name stats rows and fill their campaign / ad set from the newest history versions; returns the
    frame and how many rows were completed. Rows keep what the stats table said where it said it."""
    if entities.empty or perf.empty:
        return perf, 0
    ent = entities.set_index("id")
    perf = perf.copy()
    known = perf["external_id"].isin(ent.index)
    if not known.any():
        return perf, 0
    ids = perf.loc[known, "external_id"]

    def fill(column: str, source: str) -> None:
        if source not in ent.columns:
            return
        values = ids.map(ent[source])
        blank = perf.loc[known, column].fillna("").astype("str").eq("") | (perf.loc[known, column] == perf.loc[known, "external_id"])
        perf.loc[known, column] = perf.loc[known, column].where(~(blank & values.notna()), values)

    fill("entity_name", "name")
    if "campaign_id" in perf.columns:
        fill("campaign_id", "campaign_id")
        if "ad_set_id" in ent.columns:
            ad_rows = known & (perf["entity_type"] == "ad")
            values = perf.loc[ad_rows, "external_id"].map(ent["ad_set_id"])
            blank = perf.loc[ad_rows, "ad_set_id"].fillna("").astype("str") == ""
            perf.loc[ad_rows, "ad_set_id"] = perf.loc[ad_rows, "ad_set_id"].where(~(blank & values.notna()), values)
    if "campaign_name" in perf.columns and "campaign_name" in ent.columns:
        fill("campaign_name", "campaign_name")
    # names of parents that have their own history rows (campaign_history, ad_set_history)
    for column, name_column in (("campaign_id", "campaign_name"), ("ad_set_id", "ad_set_name")):
        if column in perf.columns and name_column in perf.columns:
            parent = perf[column].fillna("").astype("str")
            named = parent.map(ent["name"]) if "name" in ent.columns else pd.Series(pd.NA, index=perf.index)
            blank = perf[name_column].fillna("").astype("str").eq("")  # a name "nan" is a name (parse.TEXT_EMPTY)
            perf[name_column] = perf[name_column].where(~(blank & named.notna()), named)
    return perf, int(known.sum())


def looks_like_history(columns) -> bool:
    c = _lookup(columns)
    return "id" in c and bool(c.keys() & {"updatedtime", "updatedat", "fivetransynced"}) and not bool(
        c.keys() & {"date", "spend", "costmicros", "impressions", "clicks"})


__all__ = ["stats_level", "prepare", "latest_entities", "apply_history", "looks_like_history"]
