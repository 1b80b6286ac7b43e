"""Which entity level the optimizer works at, and the words for it.

Performance can arrive at campaign, ad set (Meta), ad group (Google) or ad level. Budgets live at one
level per account: Meta campaigns with campaign budget optimization (CBO) and every Google campaign
hold the budget at the campaign; Meta ad sets hold it without CBO. The optimizer therefore works

* at **campaign** level: campaign rows as they are; an account that only has ad set / ad group / ad
  rows has them **rolled up** (summed per day) to their campaigns, which needs each row's campaign
  id (a ``campaign_id`` / ``parent_id`` column, or the live entities' ``parent_id``);
* at a **child** level (``ad_set`` / ``ad_group``): those rows, one curve each;
* at **auto**: where the account's budgets live (the live entities say), else campaigns.

`resolve_level` returns the rows to fit and a `LevelInfo` whose `describe` names the level the way
a user counts it: "5 ad groups in 2 campaigns", "2 campaigns (rolled up from 5 ad groups)".

>>> LevelInfo(level="ad_group", n_entities=5, n_parents=2).describe()
'5 ad groups in 2 campaigns'
>>> LevelInfo(level="campaign", n_entities=1, rolled_up_from="ad_set", n_children=3).describe()
'1 campaign (rolled up from 3 ad sets)'
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LevelInfo", "LevelError", "resolve_level", "noun", "levels_present", "budget_level", "parent_campaigns",
           "OPTIMIZABLE_LEVELS"]

#: Singular and plural names of each entity level.
NOUNS = {"campaign": ("campaign", "campaigns"), "ad_set": ("ad set", "ad sets"), "ad_group": ("ad group", "ad groups"),
         "ad": ("ad", "ads")}
#: Levels a budget can live at (ads never hold one).
OPTIMIZABLE_LEVELS = ("campaign", "ad_set", "ad_group")
#: Columns that may name a child row's campaign (the canonical ``parent_id`` first).
CAMPAIGN_ID_COLUMNS = ("campaign_id", "parent_campaign_id", "parent_id", "parent_external_id")
CAMPAIGN_NAME_COLUMNS = ("campaign_name", "parent_name")


class LevelError(ValueError):
    """The data cannot be optimized at the level asked; the message says what is missing."""


def noun(level: str, count: int | None = None) -> str:
    """'campaign' / '3 ad groups' / '1 ad set'."""
    one, many = NOUNS.get(level, (level.replace("_", " "), level.replace("_", " ") + "s"))
    if count is None:
        return one
    return f"{count:,} {one if count == 1 else many}"


@dataclass(frozen=True, kw_only=True)
class LevelInfo:
    """The level optimized and how many entities it holds.

    ``level``: the entity type of the curves; ``n_entities``: how many; ``n_parents``: the campaigns
    they belong to (child levels, when known); ``rolled_up_from``/``n_children``: the child level
    summed into campaigns; ``budget_level``: where the account's budgets live, when known.
    """

    level: str
    n_entities: int
    n_parents: int | None = None
    rolled_up_from: str | None = None
    n_children: int | None = None
    budget_level: str | None = None

    def describe(self) -> str:
        text = noun(self.level, self.n_entities)
        if self.level != "campaign" and self.n_parents:
            text += f" in {noun('campaign', self.n_parents)}"
        if self.rolled_up_from:
            text += f" (rolled up from {noun(self.rolled_up_from, self.n_children or 0)})"
        return text

    @property
    def noun(self) -> str:
        return noun(self.level)

    @property
    def executable(self) -> bool:
        """Whether budget changes at this level can be sent (the level holds the budgets, or nobody knows)."""
        return self.budget_level is None or self.budget_level == self.level


def _totals(perf: pd.DataFrame) -> pd.DataFrame:
    if "segment_type" in perf.columns:
        return perf[perf["segment_type"].fillna("").astype(str) == ""]
    return perf


def levels_present(performance: pd.DataFrame) -> list[str]:
    """The entity levels with totals rows, top level first."""
    tot = _totals(performance)
    kinds = set(tot["entity_type"].fillna("campaign").astype(str)) if "entity_type" in tot.columns else {"campaign"}
    order = ["campaign", "ad_set", "ad_group", "ad"]
    return [k for k in order if k in kinds] + sorted(kinds - set(order))


def budget_level(entities: pd.DataFrame | None) -> str | None:
    """Where the live budgets are: a child level whose entities carry their own daily budget (Meta
    without CBO), else campaign when campaigns carry one; None when unknown."""
    if entities is None or entities.empty or "daily_budget" not in entities.columns:
        return None
    has = entities["daily_budget"].notna()
    kinds = entities.loc[has, "entity_type"].astype(str)
    for child in ("ad_set", "ad_group"):
        if (kinds == child).any():
            return child
    return "campaign" if (kinds == "campaign").any() else None


def parent_campaigns(frame: pd.DataFrame, entities: pd.DataFrame | None = None) -> pd.Series:
    """Per row, the id of the campaign a child row belongs to ('' where unknown).

    From a campaign id column of the data (``campaign_id``, ``parent_campaign_id``, ``parent_id``),
    else from the live entities' ``parent_id`` (an ad's ad set leads on to its campaign).
    """
    out = pd.Series("", index=frame.index, dtype=object)
    for col in CAMPAIGN_ID_COLUMNS:
        if col in frame.columns:
            vals = frame[col].astype("object").where(frame[col].notna(), "").astype(str).str.strip()
            out = out.where(out != "", vals)
    if entities is not None and not entities.empty and {"external_id", "parent_id", "entity_type"} <= set(entities.columns):
        ent = entities.dropna(subset=["parent_id"])
        up = dict(zip(ent["external_id"].astype(str), ent["parent_id"].astype(str)))
        kind = dict(zip(entities["external_id"].astype(str), entities["entity_type"].astype(str)))
        ids = frame["external_id"].astype(str)
        parent = ids.map(up)
        for _ in range(3):  # ad -> ad set -> campaign
            not_campaign = parent.notna() & parent.map(kind).fillna("campaign").ne("campaign")
            if not not_campaign.any():
                break
            parent = parent.where(~not_campaign, parent.map(up))
        out = out.where(out != "", parent.fillna("").astype(str))
    # a parent column that holds an ad set (ad rows) is not a campaign: the entities would have said so
    return out


def _campaign_names(frame: pd.DataFrame, parents: pd.Series, entities: pd.DataFrame | None) -> pd.Series:
    names = pd.Series(np.nan, index=frame.index, dtype=object)
    for col in CAMPAIGN_NAME_COLUMNS:
        if col in frame.columns:
            names = names.fillna(frame[col].where(frame[col].astype(str).str.strip() != ""))
    if entities is not None and not entities.empty and "entity_name" in entities.columns:
        camp = entities[entities["entity_type"].astype(str) == "campaign"]
        names = names.fillna(parents.map(dict(zip(camp["external_id"].astype(str), camp["entity_name"].astype(str)))))
    return names.fillna(parents).astype(str)


def _roll_up(rows: pd.DataFrame, entities: pd.DataFrame | None, child: str) -> pd.DataFrame:
    """Child totals rows summed per campaign and day, as campaign rows."""
    parents = parent_campaigns(rows, entities)
    missing = parents == ""
    if missing.any():
        example = rows.loc[missing, "external_id"].iloc[0]
        raise LevelError(
            f"{noun(child, int(rows.loc[missing, 'external_id'].nunique()))} (e.g. {example}) carry no campaign id, so they "
            f"cannot be rolled up to campaigns: add the campaign id column to the export, or optimize at {noun(child)} level"
        )
    names = _campaign_names(rows, parents, entities)
    rolled = rows.assign(external_id=parents.to_numpy(), entity_name=names.to_numpy(), entity_type="campaign")
    keys = [c for c in ("date", "platform", "account_id", "entity_type", "external_id") if c in rolled.columns]
    sums = [c for c in ("spend", "impressions", "clicks", "conversions", "conversion_value") if c in rolled.columns]
    firsts = {c: "first" for c in ("entity_name", "currency") if c in rolled.columns}
    out = rolled.groupby(keys, sort=True, dropna=False).agg({**{c: "sum" for c in sums}, **firsts}).reset_index()
    out["segment_type"] = ""
    out["segment_value"] = ""
    return out


def resolve_level(performance: pd.DataFrame, requested: str = "campaign",
                  entities: pd.DataFrame | None = None) -> tuple[pd.DataFrame, LevelInfo]:
    """(totals rows at the optimized level, what that level is).

    ``requested``: "campaign", "ad_set", "ad_group" or "auto" (where the budgets live; see the module
    docstring). Raises `LevelError` saying what the data has when the level cannot be served.
    """
    if requested not in ("auto",) + OPTIMIZABLE_LEVELS:
        raise LevelError(f"level must be auto, {', '.join(OPTIMIZABLE_LEVELS)}; got {requested!r}")
    perf = performance
    if "entity_type" not in perf.columns:
        perf = perf.assign(entity_type="campaign")
    tot = _totals(perf)
    kinds = tot["entity_type"].fillna("campaign").astype(str)
    present = levels_present(tot)
    where_budgets = budget_level(entities)
    level = requested
    if requested == "auto":
        level = where_budgets if where_budgets in present and where_budgets != "campaign" else "campaign"
        if level == "campaign" and "campaign" not in present and not (parent_campaigns(tot, entities) != "").any():
            level = next((k for k in present if k in OPTIMIZABLE_LEVELS), present[0] if present else "campaign")
    if level != "campaign":
        rows = tot[kinds == level]
        if rows.empty:
            have = ", ".join(noun(k, int(tot.loc[kinds == k, 'external_id'].nunique())) for k in present) or "no rows"
            raise LevelError(f"the data has no {noun(level)} rows to optimize at {noun(level)} level; it has {have}")
        parents = parent_campaigns(rows, entities)
        n_par = int(parents[parents != ""].nunique()) or None
        info = LevelInfo(level=level, n_entities=int(rows[["platform", "account_id", "external_id"]].drop_duplicates().shape[0])
                         if "account_id" in rows.columns else int(rows["external_id"].nunique()),
                         n_parents=n_par, budget_level=where_budgets)
        return rows, info
    # campaign level: campaign rows, and accounts with only child rows rolled up
    acct_cols = [c for c in ("platform", "account_id") if c in tot.columns]
    acct = pd.Series("", index=tot.index, dtype=object)
    for c in acct_cols:
        acct = acct + ":" + tot[c].astype(str)
    has_campaigns = set(acct[kinds == "campaign"])
    camp_rows = tot[kinds == "campaign"]
    rest = tot[~acct.isin(has_campaigns)]
    if rest.empty:
        if camp_rows.empty:
            raise LevelError("the data has no rows to optimize")
        n = int(camp_rows[[c for c in ("platform", "account_id", "external_id") if c in camp_rows.columns]].drop_duplicates().shape[0])
        return camp_rows, LevelInfo(level="campaign", n_entities=n, budget_level=where_budgets)
    rest_kinds = rest["entity_type"].fillna("").astype(str)
    child = next((k for k in ("ad_set", "ad_group", "ad") if (rest_kinds == k).any()), None)
    if child is None:
        raise LevelError(f"the data has rows of level {sorted(set(rest_kinds))} that are not campaigns, ad sets, ad groups or ads")
    children = rest[rest_kinds == child]
    rolled = _roll_up(children, entities, child)
    frame = pd.concat([camp_rows, rolled[[c for c in camp_rows.columns if c in rolled.columns] or rolled.columns]], ignore_index=True) \
        if not camp_rows.empty else rolled
    n = int(frame[[c for c in ("platform", "account_id", "external_id") if c in frame.columns]].drop_duplicates().shape[0])
    info = LevelInfo(level="campaign", n_entities=n, rolled_up_from=child, n_children=int(children["external_id"].nunique()),
                     budget_level=where_budgets)
    return frame, info
