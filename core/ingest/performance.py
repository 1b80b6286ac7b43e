"""Campaign performance exports (Meta Ads Manager, Google Ads reports, Fivetran ad_reporting, any
daily date/spend/campaign table) -> the canonical daily performance frame."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import pandas as pd

from . import parse
from .errors import IngestError
from .mapping import ColumnMapping, compact
from .readers import RawTable
from .profiles import GOOGLE_LOCALIZED_DAYS, RANGE_START_NAMES

PERFORMANCE_COLUMNS = ["date", "platform", "account_id", "entity_type", "external_id", "entity_name", "spend", "impressions",
                       "clicks", "conversions", "conversion_value", "currency", "segment_type", "segment_value",
                       "campaign_id", "campaign_name", "ad_set_id", "ad_set_name"]
#: The parents of a row's entity: the campaign it belongs to (its own id on campaign rows) and the ad
#: set / ad group (its own id on ad-set rows, blank on campaign rows), so spend at any level rolls up.
PARENT_COLUMNS = ["campaign_id", "campaign_name", "ad_set_id", "ad_set_name"]
KEY_COLUMNS = ["platform", "account_id", "entity_type", "external_id", "date", "segment_type", "segment_value"]
_PLATFORMS = [
    (r"facebook|meta|instagram|^fb", "meta"), (r"google|adwords|youtube|dv360", "google"), (r"linkedin", "linkedin"),
    (r"tiktok", "tiktok"), (r"twitter|^x(_ads)?$", "twitter"), (r"microsoft|bing", "microsoft"), (r"snapchat", "snapchat"),
    (r"pinterest", "pinterest"), (r"reddit", "reddit"), (r"amazon", "amazon"), (r"apple", "apple_search_ads"),
]
_TOTAL = r"^\s*(?:(?:total|totals|grand total)\b|gesamt\s*:)"  # 'Total: Account', 'Total : compte', 'Gesamt: Konto'


@dataclass
class PerfPart:
    frame: pd.DataFrame
    rows_read: int
    total_rows_dropped: int = 0
    duplicates_dropped: int = 0  # rows identical in every column of the file
    summed_segments: tuple[str, ...] = ()  # breakdown columns whose rows were summed into the daily total
    warnings: list[str] = field(default_factory=list)


_RANGE_STARTS = frozenset(compact(n) for n in RANGE_START_NAMES)


def normalize_platform(values: pd.Series) -> pd.Series:
    """Fivetran/connector names (facebook_ads, google_ads, ...) -> meta, google, linkedin, ..."""
    low = values.fillna("").str.strip().str.lower()
    out = low.str.replace(r"[_\s-]?ads$", "", regex=True)
    uniq = pd.Series(low.unique())
    mapped = {}
    for u in uniq:
        mapped[u] = next((name for pattern, name in _PLATFORMS if re.search(pattern, u)), None)
    named = low.map(mapped)
    return named.fillna(out).where(low != "", "unknown").astype("str")


#: Entity levels from the top: money of a lower level splits the money of the level above again.
LEVEL_RANK = {"campaign": 0, "ad_set": 1, "ad_group": 1, "ad": 2}


def top_level_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the rows of each account's highest entity level present (campaigns over ad sets / ad
    groups over ads), so that adding spend or value counts each account's money once."""
    if frame.empty or "entity_type" not in frame.columns:
        return frame
    rank = frame["entity_type"].astype("object").map(LEVEL_RANK).fillna(1).to_numpy()
    accounts = [frame[c].astype("object") for c in ("platform", "account_id") if c in frame.columns]
    top = pd.Series(rank, index=frame.index).groupby(accounts).transform("min").to_numpy() if accounts else rank.min()
    return frame[rank == top]


def empty_performance() -> pd.DataFrame:
    types = {"date": "datetime64[ns]", "spend": "float64", "impressions": "int64", "clicks": "int64", "conversions": "float64", "conversion_value": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=types.get(c, "str")) for c in PERFORMANCE_COLUMNS})


def performance_from_table(table: RawTable, mapping: ColumnMapping, *, default_currency: str = "USD",
                           platform: str | None = None) -> PerfPart:
    """Typed, checked daily rows; ``Total`` and blank summary rows dropped and counted."""
    col = mapping.column
    frame = table.frame
    part = PerfPart(empty_performance(), rows_read=int(frame.shape[0]))

    probe = [frame.columns[0]] + [c for c in (col("date"), col("campaign"), col("campaign_id"), col("account_id")) if c]
    total = pd.Series(False, index=frame.index)
    for c in dict.fromkeys(probe):
        total |= frame[c].astype("str").str.contains(_TOTAL, case=False, regex=True).fillna(False).astype(bool)
    ident = [c for c in (col("campaign_id"), col("campaign"), col("ad_set_id"), col("ad_set"), col("ad_id"), col("ad"),
                         col("entity_id"), col("external_id")) if c]
    no_id = pd.Series(True, index=frame.index)
    for c in ident:
        no_id &= parse.blank_mask(frame[c], text=True)
    summary = no_id & ~total
    part.total_rows_dropped = int((total | summary).sum())
    if total.any():
        part.warnings.append(f"{table.name}: {int(total.sum())} 'Total' row(s) dropped")
    if summary.any():
        part.warnings.append(f"{table.name}: {int(summary.sum())} summary row(s) without a campaign dropped")
    t = replace(table, frame=frame[~(total | summary)])
    if t.frame.shape[0] == 0:
        raise IngestError("has no campaign rows (only totals or summaries)", file=table.name)
    # Only rows identical in EVERY column of the file are duplicates: two keywords or two devices
    # with the same figures are two rows of spend, summed later into their entity's day.
    dup = t.frame.duplicated()
    if dup.any():
        part.duplicates_dropped = int(dup.sum())
        part.warnings.append(f"{table.name}: {part.duplicates_dropped} row(s) identical in every column dropped as duplicates")
        t = replace(t, frame=t.frame[~dup])

    # A Google Ads download in German, French, Spanish, Portuguese or Italian writes its days first; its
    # amounts use the language's decimal mark (a comma; a point in some Spanish-speaking countries, e.g. Mexico).
    localized = mapping.profile == "google_ads" and compact(col("date")) in GOOGLE_LOCALIZED_DAYS
    date = parse.dates(t, col("date"), day_first=localized)
    ambiguous = localized and t.fmt != "xlsx"  # a workbook's amounts are cell values, never '1.234' text
    # A range end only matters when the date is the range's start: with a Day column beside
    # "Reporting starts/ends" (Meta's daily breakdown), the range is the report's window.
    if col("date_end") and compact(col("date")) in _RANGE_STARTS:
        end = parse.dates(t, col("date_end"))
        wide = end != date
        if wide.any():
            at = wide.idxmax()
            raise IngestError(f"the row covers {date[at]:%Y-%m-%d} to {end[at]:%Y-%m-%d}, not one day; "
                              "export it with a daily breakdown (Breakdown > By time > Day)", column=col("date_end"), **t.where(at))
    elif compact(col("date")) in _RANGE_STARTS:
        part.warnings.append(f"{table.name}: each row's day is its {col('date')!r} and the file has no end of the range: "
                             "if a row covers more than one day, its spend is counted on the first; export it with "
                             "Breakdown > By time > Day")

    entity = _entities(t, mapping, part.warnings)

    spend = parse.numbers(t, col("spend"), empty_as=0.0, refuse_ambiguous=ambiguous)
    if compact(col("spend")).endswith("micros"):
        spend = spend / 1e6
    metrics = {}
    for name_, whole in (("impressions", True), ("clicks", True), ("conversions", False), ("conversion_value", False)):
        metrics[name_] = (parse.numbers(t, col(name_), whole=whole, empty_as=0.0, refuse_ambiguous=ambiguous) if col(name_)
                          else pd.Series(0.0, index=t.frame.index))
    if col("conversions"):
        metrics["conversions"] = _results_that_convert(t, col("conversions"), metrics["conversions"], part.warnings)

    currency = _currency(t, mapping, default_currency, part.warnings)
    plat = _platform(t, mapping, platform, part.warnings)

    seg_type, seg_value = _segments(t, mapping)
    if mapping.profile == "connector_stats":
        part.summed_segments = tuple(c for c in t.frame.columns if compact(c) in {"device", "adnetworktype", "network", "slot"})

    out = pd.DataFrame(
        {
            "date": date, "platform": plat,
            "account_id": parse.text(t, col("account_id")).fillna("") if col("account_id") else "",
            **entity, "spend": spend, "impressions": metrics["impressions"].astype("int64"), "clicks": metrics["clicks"].astype("int64"),
            "conversions": metrics["conversions"], "conversion_value": metrics["conversion_value"],
            "currency": currency, "segment_type": seg_type, "segment_value": seg_value,
        }
    )
    for c in ("platform", "account_id", "entity_type", "external_id", "entity_name", "currency", "segment_type", "segment_value",
              *PARENT_COLUMNS):
        out[c] = out[c].fillna("").astype("str")
    google_like = out["platform"].isin(list(AD_GROUP_PLATFORMS))  # Google-style platforms call an ad set an ad group
    out.loc[google_like & (out["entity_type"] == "ad_set"), "entity_type"] = "ad_group"
    part.frame = out[PERFORMANCE_COLUMNS]
    return part


#: Meta's ``Results`` column (in the export's language): it counts whatever action each row's campaign
#: optimizes for, which its ``Result indicator`` names.
_RESULTS = frozenset({"results", "resultados", "resultats", "ergebnisse", "risultati"})
_RESULT_INDICATORS = frozenset({"resultindicator", "resulttype", "indicadorderesultados", "indicadorderesultado",
                                "indicateurderesultats", "indicateurderesultat", "ergebnisindikator", "indicatoredeirisultati"})
#: Result indicators that are conversions (a purchase, a lead, a registration, an install, a pixel or
#: on-site conversion event); link clicks, landing-page views, reach, video views and engagement are not.
_CONVERTING_ACTION = (r"conversion(?!_?s?tarted)|purchase|lead|registration|install|subscribe|submit_application|"
                      r"schedule|start_trial|contact|donate|app_custom_event")


def _results_that_convert(t: RawTable, column: str, counts: pd.Series, warnings: list[str]) -> pd.Series:
    """Meta's ``Results`` as conversions only where the row's ``Result indicator`` names a conversion,
    and only when every row counts the same one: leads and purchases are never one objective. Other
    conversion columns (``Purchases``) pass unchanged."""
    indicator = next((c for c in t.frame.columns if compact(c) in _RESULT_INDICATORS), None)
    if compact(column) not in _RESULTS or indicator is None:
        return counts
    action = parse.text(t, indicator).str.lower().str.replace(r"^actions?:", "", regex=True)
    counted = counts > 0
    converting = action.str.contains(_CONVERTING_ACTION, regex=True).fillna(False).astype(bool)
    kinds = action[counted & converting].value_counts()
    if len(kinds) > 1:
        second = action[counted & converting & (action == kinds.index[1])].index[0]
        listed = ", ".join(f"{k} on {n:,} row(s)" for k, n in kinds.items())
        raise IngestError(f"Results count different actions on different rows ({listed}): summed, leads and purchases "
                          "would pass for one objective. Import one objective at a time (filter the export on Result "
                          "indicator, or choose a column such as Purchases with --map conversions=<column>), or import "
                          "spend alone with --map conversions=", column=indicator, **t.where(second))
    dropped = counted & ~converting
    if dropped.any():
        other = action[dropped].fillna("(blank)").value_counts()
        warnings.append(f"{t.name}: {int(dropped.sum()):,} row(s) whose Results are not conversions "
                        f"({', '.join(f'{k} on {n:,}' for k, n in other.items())}) count 0 conversions")
    if len(kinds) == 1:
        warnings.append(f"{t.name}: conversions are the Results of {kinds.index[0]} (column {indicator!r})")
    return counts.where(converting, 0.0)


def _entities(t: RawTable, mapping: ColumnMapping, warnings: list[str]) -> dict[str, pd.Series]:
    """entity_type, external_id, entity_name and the parent columns of each row.

    The level is the lowest one the file names (ad, then ad set / ad group, then campaign), unless a
    canonical export says it per row. An entity without an id is identified by its parents and its
    name together (an ad group called "Brand" in two campaigns is two ad groups), never by its name
    alone.
    """
    col = mapping.column
    index = t.frame.index
    blank = pd.Series(pd.NA, index=index, dtype="str")

    def text(field: str) -> pd.Series:
        return parse.text(t, col(field)) if col(field) else blank

    ad_set_word = "ad_group" if mapping.profile in ("google_ads",) else "ad_set"
    if mapping.profile == "connector_stats":
        level = parse.text(t, col("entity_type")).fillna("campaign")
        ext_id, name = text("entity_id"), blank
        campaign_id = text("campaign_id").where(level != "campaign", ext_id)
        ad_set_id = text("ad_set_id").where(level == "ad", ext_id.where(level.isin(["ad_group", "ad_set"])))
        return {"entity_type": level, "external_id": ext_id, "entity_name": name.fillna(ext_id),
                "campaign_id": campaign_id, "campaign_name": blank, "ad_set_id": ad_set_id, "ad_set_name": blank}

    campaign_id, campaign = text("campaign_id"), text("campaign")
    ad_set_id, ad_set = text("ad_set_id"), text("ad_set")
    ad_id, ad = text("ad_id"), text("ad")
    campaign_key = campaign_id.fillna(campaign)
    if col("external_id") and col("entity_type"):  # a canonical export (ours): level, id and parents per row
        levels = parse.text(t, col("entity_type")).str.lower().str.replace(r"[\s-]+", "_", regex=True).fillna("campaign")
        bad = ~levels.isin(list(ENTITY_TYPES))
        if bad.any():
            at = bad.idxmax()
            raise IngestError(f"entity type {levels[at]!r} is not one of {', '.join(ENTITY_TYPES)}", column=col("entity_type"), **t.where(at))
        ext_id = text("external_id")
        if ext_id.isna().any():
            raise IngestError("external id is missing", column=col("external_id"), **t.where(ext_id.isna().idxmax()))
        name = text("entity_name").fillna(ext_id)
        is_campaign = levels == "campaign"
        is_ad_set = levels.isin(["ad_set", "ad_group"])
        return {"entity_type": levels, "external_id": ext_id, "entity_name": name,
                "campaign_id": campaign_id.where(~is_campaign, ext_id), "campaign_name": campaign.where(~is_campaign, name),
                "ad_set_id": ad_set_id.where(~is_ad_set, ext_id).where(~is_campaign, ""),
                "ad_set_name": ad_set.where(~is_ad_set, name).where(~is_campaign, "")}
    if col("ad_id") or col("ad"):
        entity_type = "ad"
        ad_set_key = ad_set_id.fillna(campaign_key + " / " + ad_set)
        ext_id, name = ad_id, ad
        fallback = ad_set_key.fillna(campaign_key).fillna("") + " / " + ad
    elif col("ad_set_id") or col("ad_set"):
        entity_type = ad_set_word
        ext_id, name = ad_set_id, ad_set
        fallback = campaign_key + " / " + ad_set
    else:
        entity_type = "campaign"
        ext_id, name = campaign_id, campaign
        fallback = campaign
    missing = ext_id.isna()
    if missing.any():
        word = entity_type.replace("_", " ")
        how = "its campaign and name identify it" if entity_type != "campaign" else "its name identifies it"
        warnings.append(f"{t.name}: {int(missing.sum())} row(s) have no {word} id; on each, {how}")
        ext_id = ext_id.fillna(fallback.fillna(name))
        still = ext_id.isna()
        if still.any():
            raise IngestError(f"the {word} has neither an id nor a name", **t.where(still.idxmax()))
    levels = pd.Series(entity_type, index=index, dtype="str")
    if col("entity_type"):  # a level column without canonical ids: it still names each row's level
        given = parse.text(t, col("entity_type")).str.lower().str.replace(r"[\s-]+", "_", regex=True)
        bad = given.notna() & ~given.isin(list(ENTITY_TYPES))
        if bad.any():
            at = bad.idxmax()
            raise IngestError(f"entity type {given[at]!r} is not one of {', '.join(ENTITY_TYPES)}", column=col("entity_type"), **t.where(at))
        levels = given.fillna(levels)
    parent_campaign = campaign_key if entity_type != "campaign" else blank  # the name stands in for a missing id
    parent_ad_set = ad_set_id if entity_type == "ad" else blank
    is_campaign = levels == "campaign"
    is_ad_set = levels.isin(["ad_set", "ad_group"])
    return {
        "entity_type": levels, "external_id": ext_id, "entity_name": name.fillna(ext_id),
        "campaign_id": parent_campaign.where(~is_campaign, ext_id),
        "campaign_name": campaign.where(~is_campaign, name.fillna(ext_id)),
        "ad_set_id": parent_ad_set.where(~is_ad_set, ext_id).where(~is_campaign, ""),
        "ad_set_name": (ad_set if entity_type == "ad" else blank).where(~is_ad_set, name.fillna(ext_id)).where(~is_campaign, ""),
    }


ENTITY_TYPES = ("campaign", "ad_set", "ad_group", "ad")
AD_GROUP_PLATFORMS = frozenset({"google", "microsoft", "apple_search_ads"})
SEGMENT_TYPES = ("device", "hour", "placement")


def _segments(t: RawTable, mapping: ColumnMapping) -> tuple:
    """(segment_type, segment_value) per row: from one breakdown column (device / hour / placement)
    or from the canonical ``segment_type`` / ``segment_value`` pair (blank type = the daily total)."""
    col = mapping.column
    index = t.frame.index
    segments = [s for s in SEGMENT_TYPES if col(s)]
    canonical = bool(col("segment_type") or col("segment_value"))
    if len(segments) + canonical > 1:
        named = [col(s) for s in segments] + ([c for c in (col("segment_type"), col("segment_value")) if c] if canonical else [])
        raise IngestError(f"has several breakdowns ({', '.join(named)}); export one at a time", file=t.name)
    if segments:
        return segments[0], parse.text(t, col(segments[0])).fillna("(unknown)")
    if not canonical:
        return "", parse.constant_str("", index)
    if not (col("segment_type") and col("segment_value")):
        missing = "segment_value" if col("segment_type") else "segment_type"
        raise IngestError(f"has {col('segment_type') or col('segment_value')!r} but no {missing} column; give both", file=t.name,
                          column=col("segment_type") or col("segment_value"))
    kinds = parse.text(t, col("segment_type")).str.lower()
    values = parse.text(t, col("segment_value"))
    bad = kinds.notna() & ~kinds.isin(list(SEGMENT_TYPES))
    if bad.any():
        at = bad.idxmax()
        raise IngestError(f"segment type {kinds[at]!r} is not one of {', '.join(SEGMENT_TYPES)} (blank for the daily total)",
                          column=col("segment_type"), **t.where(at))
    orphan = kinds.isna() & values.notna()
    if orphan.any():
        at = orphan.idxmax()
        raise IngestError(f"segment value {values[at]!r} has no segment type", column=col("segment_value"), **t.where(at))
    return kinds.fillna(""), values.where(kinds.isna(), values.fillna("(unknown)")).fillna("")


def _currency(t: RawTable, mapping: ColumnMapping, default: str, warnings: list[str]) -> pd.Series:
    col = mapping.column
    money = {name: t.header_currency[col(name)] for name in ("spend", "conversion_value") if col(name) in t.header_currency}
    if len(set(money.values())) > 1:
        raise IngestError(f"spend is in {money['spend']} but conversion value in {money['conversion_value']} (their headers "
                          "say so); a row keeps one currency, so export both in the account's currency", file=t.name,
                          column=col("conversion_value"))
    header = money.get("spend") or next(iter(money.values()), None) or next(iter(t.header_currency.values()), None)
    if header:
        if col("currency"):
            codes = parse.check_currency(t, col("currency"), parse.text(t, col("currency")))
            other = codes.notna() & (codes != header)
            if other.any():
                at = other.idxmax()
                raise IngestError(f"the row's currency {codes[at]!r} is not the {header} its amounts' headers give",
                                  column=col("currency"), **t.where(at))
        return pd.Series(header, index=t.frame.index, dtype="str")
    if col("currency"):
        codes = parse.check_currency(t, col("currency"), parse.text(t, col("currency")))
        return codes.fillna(default).astype("str")
    warnings.append(f"{t.name}: no currency in the file; amounts are taken as {default}")
    return pd.Series(default, index=t.frame.index, dtype="str")


def _platform(t: RawTable, mapping: ColumnMapping, platform: str | None, warnings: list[str]) -> pd.Series:
    fixed = {"meta_ads": "meta", "google_ads": "google"}.get(mapping.profile) or platform
    if fixed:
        return pd.Series(fixed, index=t.frame.index, dtype="str")
    if mapping.column("platform"):
        return normalize_platform(parse.text(t, mapping.column("platform")))
    warnings.append(f"{t.name}: no platform column; rows are marked 'unknown'")
    return pd.Series("unknown", index=t.frame.index, dtype="str")


def combine_performance(parts: list[pd.DataFrame]) -> tuple[pd.DataFrame, int, int]:
    """Concatenate the files' canonical rows; a row repeated identically by another file is a duplicate
    (overlapping exports, counted); rows sharing entity, day and segment are summed (a breakdown the
    canonical frame does not keep: devices, networks, keywords), counted. Returns (frame,
    duplicates_dropped, rows_merged)."""
    tagged = [p.assign(_file=i) for i, p in enumerate(parts)] if parts else [empty_performance().assign(_file=0)]
    frame = pd.concat(tagged, ignore_index=True)
    before = frame.shape[0]
    canonical = [c for c in frame.columns if c != "_file"]
    repeated = frame.duplicated(subset=canonical, keep=False)
    cross = repeated & frame.groupby(canonical, dropna=False, sort=False)["_file"].transform("nunique").gt(1)
    first_file = frame.groupby(canonical, dropna=False, sort=False)["_file"].transform("min")
    frame = frame[~(cross & (frame["_file"] != first_file))].drop(columns="_file")
    duplicates = before - frame.shape[0]
    keyed = frame.groupby(KEY_COLUMNS, sort=True, dropna=False)
    merged = frame.shape[0] - keyed.ngroups
    if merged:
        frame = keyed.agg(entity_name=("entity_name", "first"), spend=("spend", "sum"), impressions=("impressions", "sum"),
                          clicks=("clicks", "sum"), conversions=("conversions", "sum"), conversion_value=("conversion_value", "sum"),
                          currency=("currency", "first"), **{c: (c, "first") for c in PARENT_COLUMNS}).reset_index()
    frame = frame.sort_values(["platform", "account_id", "entity_type", "external_id", "date", "segment_type", "segment_value"], ignore_index=True)
    mixed = frame.groupby(["platform", "account_id"])["currency"].nunique()
    if (mixed > 1).any():
        raise IngestError(f"account {mixed.idxmax()[1] or '(none)'} on {mixed.idxmax()[0]} reports several currencies")
    return frame[PERFORMANCE_COLUMNS], duplicates, merged


LEVEL_WORDS = {"campaign": ("campaign", "campaigns"), "ad_set": ("ad set", "ad sets"), "ad_group": ("ad group", "ad groups"),
               "ad": ("ad", "ads")}


def _count(n: int, level: str) -> str:
    one, many = LEVEL_WORDS.get(level, (level, level + "s"))
    return f"{n} {one if n == 1 else many}"


def describe_levels(frame: pd.DataFrame) -> str:
    """The entities of a performance frame in words, lowest level first with what holds them:
    ``"5 ad groups in 2 campaigns"``, ``"9 ads in 4 ad sets in 2 campaigns"``, ``"12 campaigns"``.
    Levels that several accounts mix are listed one after the other (``"3 campaigns; 4 ad sets in 2 campaigns"``)."""
    if frame is None or frame.empty:
        return "no entities"
    parts = []
    for level in sorted(frame["entity_type"].astype("str").unique(), key=lambda lv: -LEVEL_RANK.get(lv, 1)):
        rows = frame[frame["entity_type"].astype("str") == level]
        n = rows[["platform", "account_id", "external_id"]].drop_duplicates().shape[0]
        text = _count(n, level)
        if level != "campaign" and "campaign_id" in rows.columns:
            if level == "ad" and "ad_set_id" in rows.columns:
                sets = rows.loc[rows["ad_set_id"].fillna("").astype("str") != "", ["platform", "account_id", "ad_set_id"]].drop_duplicates()
                if len(sets):
                    word = "ad_group" if (frame["entity_type"] == "ad_group").any() or set(rows["platform"]) == {"google"} else "ad_set"
                    text += f" in {_count(len(sets), word)}"
            camps = rows.loc[rows["campaign_id"].fillna("").astype("str") != "", ["platform", "account_id", "campaign_id"]].drop_duplicates()
            if len(camps):
                text += f" in {_count(len(camps), 'campaign')}"
        parts.append(text)
    return "; ".join(parts)


__all__ = ["PERFORMANCE_COLUMNS", "PARENT_COLUMNS", "LEVEL_RANK", "top_level_rows", "performance_from_table", "combine_performance",
           "normalize_platform", "empty_performance", "describe_levels"]
