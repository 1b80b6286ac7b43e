"""Profiles (what a file can be) and column auto-mapping: exact synonyms first, then fuzzy matching
with rapidfuzz. The result, a `ColumnMapping`, is what the Data page shows for the user to confirm
or edit; an edited mapping (or a plain ``{field: column}`` dict) is applied on the next read."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from .errors import IngestError

#: Fuzzy matches scoring below this (0-100) are not used.
FUZZY_CUTOFF = 88.0


def compact(name: str) -> str:
    """Lower-case letters and digits only: ``"Campaign ID"``, ``campaign_id`` and ``campaign.id`` agree."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    synonyms: tuple[str, ...]
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class Profile:
    """A kind of input file: its canonical fields and the columns that identify it."""

    name: str  # events | ga4 | segment | paths | meta_ads | google_ads | fivetran_ads | performance
    kind: str  # journeys | paths | performance
    label: str
    fields: tuple[FieldSpec, ...]
    signature: tuple[tuple[str, ...], ...] = ()  # each group: at least one of these compact names present
    one_of: tuple[tuple[str, ...], ...] = ()  # each group: at least one of these fields must be mapped

    def spec(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)


def _f(name, synonyms, required=False, help=""):
    return FieldSpec(name, tuple(synonyms.split()) if isinstance(synonyms, str) else tuple(synonyms), required, help)


_TS = "ts timestamp time datetime event_time event_timestamp occurred_at event_date date_time touch_time conversion_time created_at date"
_CAMPAIGN_FIELDS = (
    _f("source", "source utm_source traffic_source", help="traffic source, e.g. google, facebook"),
    _f("medium", "medium utm_medium", help="traffic medium, e.g. cpc, email"),
    _f("campaign", "campaign campaign_name utm_campaign", help="campaign name"),
    _f("campaign_id", "campaign_id utm_id campaignid", help="campaign id on the ad platform"),
)
_CONVERSION_FIELDS = (
    _f("conversion_id", "conversion_id order_id transaction_id purchase_id conv_id", help="dedupe key of a conversion"),
    _f("value", "value revenue conversion_value order_value purchase_value amount total", help="conversion value"),
    _f("currency", "currency currency_code", help="ISO currency code of the value"),
)

EVENTS = Profile(
    "events", "journeys", "Event-level touchpoints / conversions",
    (
        _f("user_key", "user_key user_id userid user customer_id client_id visitor_id cookie_id anonymous_id person_id uid contact_id", True, "who"),
        _f("ts", _TS, True, "when (epoch s/ms/us or ISO text)"),
        _f("event_type", "event_type type event event_name kind record_type action", help="touchpoint vs conversion (e.g. 'conversion', 'purchase')"),
        _f("channel", "channel marketing_channel channel_name channel_grouping default_channel_group", help="channel; else derived from source/medium/campaign"),
        *_CAMPAIGN_FIELDS,
        _f("interaction", "interaction interaction_type touch_type touchpoint_type", help="impression / click / visit"),
        *_CONVERSION_FIELDS,
        _f("event_id", "event_id message_id messageid", help="dedupe key of an event"),
    ),
)

_GA4_LAST_CLICK = "session_traffic_source_last_click"
GA4 = Profile(
    "ga4", "journeys", "GA4 BigQuery export",
    (
        _f("user_key", "user_pseudo_id user_id", True, "GA4 device/user id"),
        _f("ts", "event_timestamp", True, "microseconds since epoch"),
        _f("event_type", "event_name", True, "GA4 event name; 'purchase' is a conversion"),
        _f("source", [f"{_GA4_LAST_CLICK}.manual_campaign.source", f"{_GA4_LAST_CLICK}.cross_channel_campaign.source",
                      "collected_traffic_source.manual_source", "traffic_source.source", "source"]),
        _f("medium", [f"{_GA4_LAST_CLICK}.manual_campaign.medium", f"{_GA4_LAST_CLICK}.cross_channel_campaign.medium",
                      "collected_traffic_source.manual_medium", "traffic_source.medium", "medium"]),
        _f("campaign", [f"{_GA4_LAST_CLICK}.manual_campaign.campaign_name", f"{_GA4_LAST_CLICK}.cross_channel_campaign.campaign_name",
                        "collected_traffic_source.manual_campaign_name", "traffic_source.name", "campaign"]),
        _f("campaign_id", [f"{_GA4_LAST_CLICK}.manual_campaign.campaign_id", f"{_GA4_LAST_CLICK}.cross_channel_campaign.campaign_id",
                           f"{_GA4_LAST_CLICK}.google_ads_campaign.campaign_id", "collected_traffic_source.manual_campaign_id", "campaign_id"]),
        _f("channel", "channel"),
        _f("conversion_id", "ecommerce.transaction_id transaction_id"),
        _f("value", "ecommerce.purchase_revenue ecommerce.purchase_revenue_in_usd event_value_in_usd purchase_revenue value"),
        _f("currency", "currency ecommerce.currency"),
    ),
    signature=(("userpseudoid",), ("eventname",), ("eventtimestamp",)),
)

SEGMENT = Profile(
    "segment", "journeys", "Segment / RudderStack track export",
    (
        _f("anonymous_id", "anonymous_id anonymousid", True, "device id before identify"),
        _f("user_id", "user_id userid", help="known user id (stitched to anonymous ids)"),
        _f("ts", "timestamp original_timestamp sent_at received_at", True),
        _f("event_type", "event event_text event_name", True, "track event name; 'Order Completed' is a conversion"),
        _f("source", "context_campaign_source context.campaign.source"),
        _f("medium", "context_campaign_medium context.campaign.medium"),
        _f("campaign", "context_campaign_name context.campaign.name"),
        _f("campaign_id", "context_campaign_id context_campaign_content_id"),
        _f("conversion_id", "properties_order_id order_id properties_transaction_id transaction_id properties_checkout_id checkout_id"),
        _f("value", "properties_revenue revenue properties_total total properties_value value"),
        _f("currency", "properties_currency currency"),
        _f("event_id", "message_id messageid id"),
    ),
    signature=(("anonymousid",), ("event", "eventtext"), ("timestamp", "originaltimestamp", "sentat", "receivedat")),
)

PATHS = Profile(
    "paths", "paths", "Path table (ChannelAttribution format)",
    (
        _f("path", "path paths channel_path journey path_str", True, "'a > b > c' (also '>' or '|')"),
        _f("conversions", "total_conversions conversions conv total_conv", True),
        _f("value", "total_conversion_value conversion_value value revenue total_value"),
        _f("nulls", "total_null total_nulls null nulls non_conversions"),
    ),
    signature=(("path", "paths", "channelpath", "pathstr"),),
)

_PERF_COMMON = (
    _f("date", "date day date_day date_start segments_date stat_date", True, "the account's calendar day"),
    _f("account_id", "account_id customer_id ad_account_id customer_client_id account", help="ad account id"),
    _f("campaign_id", "campaign_id campaignid external_id", help="campaign id"),
    _f("campaign", "campaign_name campaign entity_name", help="campaign name"),
    _f("ad_set_id", "ad_set_id adset_id ad_group_id adgroup_id", help="ad set / ad group id (ad-set level rows)"),
    _f("ad_set", "ad_set_name adset_name ad_group ad_group_name adgroup", help="ad set / ad group name"),
    _f("spend", "spend cost amount_spent cost_micros metrics_cost_micros", True),
    _f("impressions", "impressions impr imps"),
    _f("clicks", "clicks link_clicks clicks_all"),
    _f("conversions", "conversions purchases website_purchases results conv all_conv"),
    _f("conversion_value", "conversions_value conversion_value conv_value purchases_conversion_value "
       "website_purchases_conversion_value all_conv_value revenue total_conversion_value"),
    _f("currency", "currency currency_code"),
    _f("device", "device impression_device device_platform segments_device", help="device segment"),
    _f("hour", "hour hour_of_day segments_hour", help="hour-of-day segment"),
)
_PLACEMENT = _f("placement", "placement platform_position publisher_platform platform", help="placement segment")
_SEGMENT_FIELDS = (
    _f("segment_type", "segment_type breakdown breakdown_type dimension", help="canonical breakdown: device / hour / placement (blank = daily total)"),
    _f("segment_value", "segment_value breakdown_value dimension_value", help="the breakdown's value, e.g. mobile or 18"),
)
_ENTITY_TYPE = _f("entity_type", "entity_type level object_type", help="campaign / ad_set / ad_group / ad (canonical exports)")
META_ADS = Profile(
    "meta_ads", "performance", "Meta Ads Manager export",
    (_f("date", "day date reporting_starts date_start", True, "the day (Day breakdown) or Reporting starts"),
     _f("date_end", "reporting_ends date_stop", help="must equal the start: daily rows"),
     *_PERF_COMMON[1:], _PLACEMENT),
    signature=(("amountspent", "reportingstarts"),),
    one_of=(("campaign_id", "campaign", "ad_set_id", "ad_set"),),
)
GOOGLE_ADS = Profile(
    "google_ads", "performance", "Google Ads report",
    (*_PERF_COMMON, _f("placement", "network ad_network_type network_with_search_partners")),
    signature=(("cost", "costmicros", "metricscostmicros"), ("impr", "convvalue", "allconvvalue", "currencycode", "costconv", "campaignstate")),
    one_of=(("campaign_id", "campaign", "ad_set_id", "ad_set"),),
)
FIVETRAN_ADS = Profile(
    "fivetran_ads", "performance", "Fivetran ad_reporting",
    (*_PERF_COMMON[:1], _f("platform", "platform source_relation", help="ad platform"), *_PERF_COMMON[1:],
     _f("placement", "placement platform_position publisher_platform ad_network_type network", help="placement segment"),
     *_SEGMENT_FIELDS),
    signature=(("dateday",), ("spend",)),
    one_of=(("campaign_id", "campaign"),),
)
PERFORMANCE = Profile(
    "performance", "performance", "Campaign performance (daily)",
    (*_PERF_COMMON[:1], _f("platform", "platform network publisher ad_platform", help="ad platform"), *_PERF_COMMON[1:], _PLACEMENT,
     *_SEGMENT_FIELDS, _ENTITY_TYPE),
    one_of=(("campaign_id", "campaign", "ad_set_id", "ad_set"),),
)

#: Tried in this order; the first whose signature and required fields match wins.
PROFILES: dict[str, Profile] = {p.name: p for p in (GA4, SEGMENT, META_ADS, GOOGLE_ADS, FIVETRAN_ADS, PATHS, PERFORMANCE, EVENTS)}


@dataclass(frozen=True)
class FieldMatch:
    column: str | None
    method: str  # synonym | fuzzy | override | missing
    score: float  # 100 for synonyms and overrides, the rapidfuzz score for fuzzy matches


@dataclass(frozen=True)
class ColumnMapping:
    """Canonical field -> source column of one file, with how each was found."""

    file: str
    profile: str
    fields: dict[str, FieldMatch]
    columns: tuple[str, ...] = field(default=())  # the file's columns, for an editor's choices

    @property
    def kind(self) -> str:
        return PROFILES[self.profile].kind

    def column(self, name: str) -> str | None:
        m = self.fields.get(name)
        return m.column if m else None

    def as_dict(self) -> dict[str, str | None]:
        return {k: m.column for k, m in self.fields.items()}

    def with_overrides(self, overrides: dict[str, str | None]) -> "ColumnMapping":
        """The mapping with fields set by hand (None unmaps a field); unknown fields/columns are errors."""
        spec = PROFILES[self.profile]
        names = {f.name for f in spec.fields}
        fields = dict(self.fields)
        for key, col in overrides.items():
            if key == "profile":
                continue
            if key not in names:
                raise IngestError(f"mapping names unknown field {key!r} for {spec.label}; fields: {', '.join(sorted(names))}", file=self.file)
            if col is not None and col not in self.columns:
                raise IngestError(f"mapping sends field {key!r} to column {col!r}, which the file does not have", file=self.file, column=col)
            fields[key] = FieldMatch(col, "override" if col is not None else "missing", 100.0 if col is not None else 0.0)
        return replace(self, fields=fields)

    def missing_required(self) -> list[str]:
        spec = PROFILES[self.profile]
        missing = [f.name for f in spec.fields if f.required and self.column(f.name) is None]
        for group in spec.one_of:
            if not any(self.column(g) for g in group):
                missing.append(" or ".join(group))
        return missing

    def to_frame(self) -> pd.DataFrame:
        """One row per canonical field: what the Data page shows in its mapping editor."""
        spec = PROFILES[self.profile]
        return pd.DataFrame(
            [
                {"field": f.name, "column": self.column(f.name), "method": self.fields[f.name].method,
                 "score": round(self.fields[f.name].score, 1), "required": f.required, "help": f.help}
                for f in spec.fields
            ]
        )


def auto_map(file: str, columns, profile: Profile, *, fuzzy: bool = True) -> ColumnMapping:
    """Map each field of ``profile`` to a column: exact synonym (compact form) first, then fuzzy."""
    columns = [str(c) for c in columns]
    by_compact: dict[str, str] = {}
    for col in columns:
        by_compact.setdefault(compact(col), col)
    used: set[str] = set()
    fields: dict[str, FieldMatch] = {}
    for spec in profile.fields:
        for syn in spec.synonyms:
            col = by_compact.get(compact(syn))
            if col is not None and col not in used:
                fields[spec.name] = FieldMatch(col, "synonym", 100.0)
                used.add(col)
                break
    if fuzzy and columns:
        # All columns against all synonyms of a field in one C-level matrix (rapidfuzz.process.cdist):
        # linear in the number of columns, with no Python call per (column, synonym) pair.
        snakes = [_snake(c) for c in columns]
        taken = np.fromiter((c in used for c in columns), dtype=bool, count=len(columns))
        for spec in profile.fields:
            if spec.name in fields:
                continue
            syns = [_snake(syn) for syn in spec.synonyms]
            score = np.maximum(process.cdist(snakes, syns, scorer=fuzz.ratio, dtype=np.float64),
                               process.cdist(snakes, syns, scorer=fuzz.token_sort_ratio, dtype=np.float64)).max(axis=1)
            score[taken] = -1.0
            at = int(np.argmax(score))  # the first column with the best score
            if score[at] > 0 and score[at] >= FUZZY_CUTOFF:
                fields[spec.name] = FieldMatch(columns[at], "fuzzy", float(score[at]))
                used.add(columns[at])
                taken[at] = True
    ordered = {spec.name: fields.get(spec.name, FieldMatch(None, "missing", 0.0)) for spec in profile.fields}
    return ColumnMapping(file, profile.name, ordered, tuple(columns))


def detect_profile(file: str, columns) -> ColumnMapping:
    """The mapping under the first profile whose signature columns are present and whose required
    fields map (by synonym, then allowing fuzzy matches); a clear error when none fits."""
    present = {compact(c) for c in columns}
    for fuzzy in (False, True):
        for profile in PROFILES.values():
            if any(not (present & {compact(x) for x in group}) for group in profile.signature):
                continue
            mapping = auto_map(file, columns, profile, fuzzy=fuzzy)
            if not mapping.missing_required():
                # Detected on exact names; optional fields may still be found by fuzzy matching.
                return mapping if fuzzy else auto_map(file, columns, profile, fuzzy=True)
    shown = ", ".join(map(repr, list(columns)[:20]))
    near = _nearest(file, columns)
    if near is not None:
        profile, missing = near
        lacks = "; ".join(
            f"{name} (e.g. {', '.join(profile.spec(name).synonyms[:4])})" if " or " not in name else name for name in missing
        )
        raise IngestError(f"looks like {profile.label} but lacks required column(s): {lacks}. Columns found: {shown}",
                          file=file, column=missing[0])
    raise IngestError(
        "cannot tell what this file holds. Expected event-level data (a user id and a timestamp column), "
        "a path table (path, total_conversions) or campaign performance (date, spend, campaign). "
        f"Columns found: {shown}",
        file=file,
    )


def _nearest(file: str, columns):
    """The profile with the most required fields found (at least one), and what it lacks."""
    present = {compact(c) for c in columns}
    best = None
    for profile in PROFILES.values():
        if any(not (present & {compact(x) for x in group}) for group in profile.signature):
            continue
        mapping = auto_map(file, columns, profile)
        required = [f.name for f in profile.fields if f.required]
        found = sum(mapping.column(r) is not None for r in required)
        if found and (best is None or found / len(required) > best[0]):
            best = (found / len(required), profile, mapping.missing_required())
    return None if best is None else (best[1], best[2])


def mapping_for(file: str, columns, overrides: "dict | ColumnMapping | None" = None) -> ColumnMapping:
    """Auto-detected mapping with ``overrides`` applied: a `ColumnMapping` (used as is, after checking
    its columns) or a ``{field: column}`` dict, optionally with ``"profile"`` to force a profile."""
    columns = [str(c) for c in columns]
    if isinstance(overrides, ColumnMapping):
        base = auto_map(file, columns, PROFILES[overrides.profile])
        return base.with_overrides(overrides.as_dict())
    overrides = dict(overrides or {})
    forced = overrides.pop("profile", None)
    if forced is not None:
        if forced not in PROFILES:
            raise IngestError(f"unknown profile {forced!r}; choose from {', '.join(PROFILES)}", file=file)
        base = auto_map(file, columns, PROFILES[forced])
    else:
        try:
            base = detect_profile(file, columns)
        except IngestError:
            if not overrides:
                raise
            base = _best_profile_for(file, columns, overrides)
    return base.with_overrides(overrides) if overrides else base


def _best_profile_for(file: str, columns, overrides: dict) -> ColumnMapping:
    """When detection fails but the user mapped fields by hand: the profile those fields complete."""
    for profile in PROFILES.values():
        if not set(overrides) <= {f.name for f in profile.fields}:
            continue
        mapping = auto_map(file, columns, profile).with_overrides(overrides)
        if not mapping.missing_required():
            return mapping
    raise IngestError(f"the mapping {overrides} does not complete any known format", file=file)
