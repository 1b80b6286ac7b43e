"""Event-level tables (generic, GA4, Segment/RudderStack) -> canonical touchpoints and conversions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import parse
from .channels import assign_channels
from .errors import IngestError
from .mapping import ColumnMapping
from .readers import RawTable

#: Columns held as pandas categoricals with sorted ``str`` categories (dictionary encoded): user keys and
#: channels repeat a lot, so grouping, sorting and the journeys step work on integer codes instead of
#: hashing strings. Touchpoints and conversions of one file share the user categories.
CATEGORICAL_COLUMNS = ("user_key", "channel")
TOUCH_COLUMNS = ["user_key", "ts", "channel", "campaign_id", "campaign", "source", "medium", "interaction", "source_system"]
CONVERSION_COLUMNS = ["user_key", "ts", "conversion_id", "type", "value", "currency"]

#: Event names read as conversions when an event-type column is mapped (lower case).
CONVERSION_EVENTS = {
    "events": frozenset({"conversion", "convert", "converted", "purchase", "order", "transaction", "sale", "lead",
                         "signup", "sign_up", "sign-up", "order_completed", "order completed", "checkout_completed", "goal"}),
    "ga4": frozenset({"purchase", "ecommerce_purchase", "in_app_purchase"}),
    "segment": frozenset({"order completed", "order_completed", "checkout completed", "checkout_completed", "completed order", "purchase"}),
}


@dataclass
class EventPart:
    """Canonical rows from one file, before cross-file de-duplication."""

    touchpoints: pd.DataFrame
    conversions: pd.DataFrame
    rows_read: int
    ignored: int = 0
    duplicate_events: int = 0
    warnings: list[str] = field(default_factory=list)
    event_types: dict[str, int] = field(default_factory=dict)


def _empty_column(name: str) -> pd.Series:
    if name == "ts":
        return pd.Series(dtype="datetime64[ns, UTC]")
    if name == "value":
        return pd.Series(dtype="float64")
    if name in CATEGORICAL_COLUMNS:
        return pd.Series(pd.Categorical([], categories=pd.Index([], dtype="str")))
    return pd.Series(dtype="str")


def empty_touchpoints() -> pd.DataFrame:
    return pd.DataFrame({c: _empty_column(c) for c in TOUCH_COLUMNS})


def empty_conversions() -> pd.DataFrame:
    return pd.DataFrame({c: _empty_column(c) for c in CONVERSION_COLUMNS})


def text_categorical(values: pd.Series, used: np.ndarray | None = None) -> pd.Series:
    """``values`` (text, missing allowed) as a categorical whose categories are the distinct values, as
    ``str``, in sorted (code point) order; with ``used`` (a boolean mask) only the values on those rows
    become categories and the other rows are missing.

    Sorted categories make the encoding independent of row order (a file and the same data read back
    from the database get equal dtypes), and carry no unused category.
    """
    codes, uniques = pd.factorize(values, sort=False)
    uniques = pd.Index(uniques).astype("str")
    codes = codes.astype(np.int64, copy=False)
    if used is not None:
        codes = np.where(np.asarray(used, dtype=bool), codes, -1)
        present = np.bincount(codes[codes >= 0], minlength=len(uniques)) > 0
        if not present.all():
            keep = np.flatnonzero(present)
            remap = np.full(len(uniques) + 1, -1, dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            codes, uniques = remap[codes], uniques.take(keep)
    order = uniques.argsort()
    rank = np.empty(len(uniques) + 1, dtype=np.int64)
    rank[order] = np.arange(len(uniques))
    rank[-1] = -1  # code -1 (missing) reads the last entry
    dtype = pd.CategoricalDtype(uniques.take(order), ordered=False)
    return pd.Series(pd.Categorical.from_codes(rank[codes], dtype=dtype), index=values.index)


def shared_user_categoricals(touch_keys: pd.Series, conv_keys: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Touchpoint and conversion user keys as categoricals over ONE sorted category index (their union)."""
    both = pd.concat([touch_keys, conv_keys], ignore_index=True)
    coded = text_categorical(both)
    return (pd.Series(coded.array[: len(touch_keys)], index=touch_keys.index),
            pd.Series(coded.array[len(touch_keys):], index=conv_keys.index))


def _interaction(values: pd.Series) -> pd.Series:
    """impression / click / visit from free text, decided once per distinct value."""
    codes, uniques = pd.factorize(values.fillna("").str.lower())
    low = pd.Series(uniques, dtype="str")
    kinds = np.where(low.str.contains("impr|^view|view.?through", regex=True), "impression",
                     np.where(low.str.contains("click", regex=False), "click", "visit"))
    return parse.str_from_codes(list(kinds), codes, values.index)


def _user_keys(table: RawTable, mapping: ColumnMapping) -> pd.Series:
    if mapping.profile == "segment":
        anon = parse.text(table, mapping.column("anonymous_id"))
        uid = parse.text(table, mapping.column("user_id"))
        both = pd.DataFrame({"anon": anon, "uid": uid}).dropna()
        known = both.drop_duplicates("anon").set_index("anon")["uid"]
        users = uid.fillna(anon.map(known)).fillna(anon)
        column = mapping.column("anonymous_id")
    else:
        column = mapping.column("user_key")
        users = parse.text(table, column)
    if users.isna().any():
        raise IngestError("user id is missing", column=column, **table.where(users.isna().idxmax()))
    return users


def events_from_table(table: RawTable, mapping: ColumnMapping, *, channel_rules=None, timezone: str = "UTC",
                      conversion_events=None, default_currency: str = "USD") -> EventPart:
    """Split a file's rows into touchpoints and conversions, mapped, typed and checked."""
    frame, col = table.frame, mapping.column
    part = EventPart(empty_touchpoints(), empty_conversions(), rows_read=int(frame.shape[0]))

    # Events repeated under the same event id (Segment message_id ...) are dropped first.
    keep = pd.Series(True, index=frame.index)
    if col("event_id"):
        ids = parse.text(table, col("event_id"))
        dup = ids.notna() & ids.duplicated()
        part.duplicate_events = int(dup.sum())
        keep &= ~dup

    users = _user_keys(table, mapping)
    ts = parse.timestamps(table, col("ts"), timezone=timezone)
    event_type = parse.text(table, col("event_type"))
    source, medium, campaign = (parse.text(table, col(k)) for k in ("source", "medium", "campaign"))
    campaign_id = parse.text(table, col("campaign_id"))
    conv_ids = parse.text(table, col("conversion_id"))
    value = parse.numbers(table, col("value")) if col("value") else pd.Series(np.nan, index=frame.index)

    names = event_type.str.lower()
    if col("event_type"):
        wanted = frozenset(e.lower() for e in conversion_events) if conversion_events else CONVERSION_EVENTS.get(mapping.profile, CONVERSION_EVENTS["events"])
        is_conv = names.isin(wanted).fillna(False).astype(bool)
        counts = names.fillna("(missing)").value_counts()
        part.event_types = {str(k): int(v) for k, v in counts.head(30).items()}
    elif col("conversion_id"):
        is_conv = conv_ids.notna()
    elif col("value"):
        is_conv = value.notna()
    else:
        is_conv = pd.Series(False, index=frame.index)

    has_campaign_info = source.notna() | medium.notna() | campaign.notna()
    if mapping.profile == "ga4":
        starts = names.isin(["session_start", "first_visit"]).fillna(False).astype(bool)
        is_touch = ~is_conv & (starts if starts.any() else has_campaign_info)
    elif mapping.profile == "segment":
        is_touch = ~is_conv & has_campaign_info
    else:
        is_touch = ~is_conv
    is_conv &= keep
    is_touch &= keep
    part.ignored = int((keep & ~is_conv & ~is_touch).sum())
    if part.ignored:
        part.warnings.append(f"{table.name}: {part.ignored} event(s) are neither touchpoints nor conversions and were not used")

    # One dictionary encoding of the user keys, shared by this file's touchpoints and conversions.
    user_codes = text_categorical(users, (is_touch | is_conv).to_numpy())
    if is_touch.any():
        part.touchpoints = _touchpoints(table, mapping, is_touch, user_codes, ts, event_type, source, medium, campaign, campaign_id, channel_rules)
    if is_conv.any():
        part.conversions = _conversions(table, mapping, is_conv, users, user_codes, ts, event_type, conv_ids, value, default_currency, part.warnings)
    elif col("event_type") and is_touch.any():
        part.warnings.append(f"{table.name}: no conversion events among {', '.join(list(part.event_types)[:8])}")
    return part


def _touchpoints(table, mapping, rows, users, ts, event_type, source, medium, campaign, campaign_id, rules) -> pd.DataFrame:
    col = mapping.column
    if col("channel"):
        channel = parse.text(table, col("channel"))
        gaps = rows & channel.isna()
        if gaps.any():
            if not (col("source") or col("medium") or col("campaign")):
                raise IngestError("channel is missing", column=col("channel"), **table.where(gaps.idxmax()))
            channel = channel.where(~gaps, assign_channels(source[gaps], medium[gaps], campaign[gaps], rules))
    elif col("source") or col("medium") or col("campaign") or mapping.profile == "ga4":
        channel = assign_channels(source[rows], medium[rows], campaign[rows], rules).reindex(rows.index)
    else:
        raise IngestError("has touchpoints but no channel column: map 'channel', or 'source' / 'medium' / 'campaign'", file=table.name)
    if col("interaction"):
        interaction = _interaction(parse.text(table, col("interaction")))
    elif col("event_type") and mapping.profile == "events":
        interaction = _interaction(event_type)
    else:
        interaction = parse.constant_str("visit", rows.index)
    system = {"ga4": "ga4", "segment": "segment"}.get(mapping.profile, table.fmt if table.fmt != "frame" else "sql")
    out = pd.DataFrame(
        {
            "user_key": users, "ts": ts, "channel": text_categorical(channel, rows.to_numpy()), "campaign_id": campaign_id, "campaign": campaign,
            "source": source, "medium": medium, "interaction": interaction,
            "source_system": parse.constant_str(system, rows.index),
        }
    )[rows.to_numpy()]
    return out


def _conversions(table, mapping, rows, users, user_codes, ts, event_type, conv_ids, value, default_currency, warnings) -> pd.DataFrame:
    col = mapping.column
    kind = event_type.str.lower().fillna("conversion") if col("event_type") else parse.constant_str("conversion", rows.index)
    generated = rows & conv_ids.isna()
    if generated.any():
        synthetic = users + "|" + ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "|" + kind
        conv_ids = conv_ids.fillna(synthetic)
        warnings.append(f"{table.name}: {int(generated.sum())} conversion(s) have no conversion id; "
                        "user + time + type is used as their id")
    if col("currency"):
        currency = parse.check_currency(table, col("currency"), parse.text(table, col("currency"))).fillna(default_currency)
    else:
        currency = parse.constant_str(default_currency, rows.index)
        if (value[rows].fillna(0) > 0).any():
            warnings.append(f"{table.name}: no currency column; values are taken as {default_currency}")
    no_value = int((rows & value.isna()).sum()) if col("value") else 0
    if no_value:  # blank or NaN: counted as 0, and said so
        warnings.append(f"{table.name}: {no_value:,} conversion(s) have no value (blank or NaN) in column {col('value')!r} and count as 0")
    out = pd.DataFrame(
        {"user_key": user_codes, "ts": ts, "conversion_id": conv_ids, "type": kind, "value": value.fillna(0.0).astype("float64"), "currency": currency}
    )[rows.to_numpy()]
    return out
