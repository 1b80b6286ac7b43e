"""Event-level tables (generic, GA4, Segment / RudderStack, Snowplow, orders) -> canonical touch events
and conversions. Touch events carry two helper columns for sessionizing (`core.ingest.sessionize`):
the collector's ``session_id`` and ``has_traffic`` (whether the event names its traffic source)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import parse
from .channels import assign_channels, channel_categorical
from .errors import IngestError
from .mapping import ColumnMapping
from .readers import RawTable
from .sessionize import SESSION_COLUMN, TRAFFIC_COLUMN
from .urls import traffic_from_urls

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
    "snowplow": frozenset({"transaction", "tr", "purchase", "order_completed", "checkout_completed"}),
}
#: Values of a 0/1 conversion flag column (lower case).
FLAG_TRUE = frozenset({"1", "1.0", "true", "t", "yes", "y"})
FLAG_FALSE = frozenset({"0", "0.0", "false", "f", "no", "n"})
#: An interaction value that names the conversion itself (``interaction = conversion`` beside a conversion
#: flag, as in the public "attribution data" tables): such a row is the conversion, not one more touch.
CONVERSION_INTERACTION = r"^(?:conver|purchase|order|transaction|lead|sale|sign.?up|goal)"
TRAFFIC_FIELDS = ("source", "medium", "campaign", "campaign_id", "referrer", "landing_url")


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
    interactions_given: bool = False  # the file has an interaction column (impression / click / visit)
    cancelled: int = 0  # orders left out (cancelled or test)
    lines_merged: int = 0  # order-line rows summed into their order


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
    kinds = np.where(low.str.contains(r"impr|view.?through|^views?$", regex=True), "impression",
                     np.where(low.str.contains(r"click", regex=True), "click", "visit"))
    return parse.str_from_codes(list(kinds), codes, values.index)


def _names_conversion(values: pd.Series) -> pd.Series:
    """Whether each interaction value names a conversion (`CONVERSION_INTERACTION`), decided once per distinct value."""
    codes, uniques = pd.factorize(values.fillna("").str.lower())
    says = pd.Series(uniques, dtype="str").str.contains(CONVERSION_INTERACTION, regex=True).to_numpy()
    return pd.Series(np.append(says, False)[codes], index=values.index)  # code -1 (missing) reads the last entry


def conversion_flags(table: RawTable, column: str) -> pd.Series:
    """A 0/1 (true/false, yes/no) column as booleans; blank is 0; anything else names its row."""
    values = table.frame[column]
    if pd.api.types.is_bool_dtype(values):
        return values.fillna(False).astype(bool)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        text = pd.Series(np.where(numbers == 1, "1", np.where(numbers == 0, "0", numbers.astype("str"))), index=values.index,
                         dtype="str").where(numbers.notna())
    else:
        text = parse.text(table, column).str.lower()
    yes, no = text.isin(FLAG_TRUE), text.isin(FLAG_FALSE) | text.isna()
    bad = ~(yes | no)
    if bad.any():
        at = bad.idxmax()
        raise IngestError(f"{values[at]!r} is not a conversion flag (1/0, true/false, yes/no)", column=column, **table.where(at))
    return yes.astype(bool)


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


def _traffic(table: RawTable, mapping: ColumnMapping) -> tuple[pd.DataFrame, pd.Series, bool]:
    """source / medium / campaign / campaign_id per row: the mapped columns, filled from the landing
    URL's utm_* parameters or click id, then from an external referrer. Also whether each row names
    its traffic, and whether the file maps any traffic field at all."""
    col = mapping.column
    index = table.frame.index
    out = pd.DataFrame({k: parse.text(table, col(k)) for k in ("source", "medium", "campaign", "campaign_id")})
    if col("referrer_medium"):  # Snowplow: refr_* fill in where mkt_* are empty; internal navigation is no traffic
        ref_medium = parse.text(table, col("referrer_medium")).str.lower()
        external = ref_medium.notna() & ~ref_medium.isin(["internal", "unknown"])
        none = out.isna().all(axis=1) & external
        out.loc[none, "medium"] = ref_medium[none]
        out.loc[none, "source"] = parse.text(table, col("referrer_source"))[none] if col("referrer_source") else pd.NA
    if col("landing_url") or col("referrer"):
        urls = traffic_from_urls(parse.text(table, col("landing_url")) if col("landing_url") else None,
                                 parse.text(table, col("referrer")) if col("referrer") and not col("referrer_medium") else None, index)
        empty = out[["source", "medium", "campaign"]].isna().all(axis=1)
        for k in out.columns:
            out[k] = out[k].where(~empty, urls[k])
    mapped = any(col(k) for k in (*TRAFFIC_FIELDS, "referrer_medium"))
    has = out.notna().any(axis=1) if mapped else pd.Series(True, index=index)
    return out, has, mapped


def _referrals_open_visits(table, mapping, users, ts, traffic, has_traffic):
    """A referrer names a visit's traffic only on the visit's first event (the user's first event, the
    first after 30 minutes of inactivity, or the first of a collector session): on later events it is
    the site's own page (internal navigation), not new traffic."""
    from .sessionize import DEFAULT_TIMEOUT_MINUTES, session_starts

    referral = (traffic["medium"] == "referral").fillna(False).to_numpy()
    if not referral.any():
        return traffic, has_traffic
    col = mapping.column
    user_codes, _ = pd.factorize(users, sort=False)
    order = np.lexsort((ts.array.asi8, user_codes))
    sid = None
    if col("session_id"):
        sid_codes, _ = pd.factorize(parse.text(table, col("session_id")), sort=False)
        sid = sid_codes[order].astype(np.int64)
    starts_sorted = session_starts(user_codes[order].astype(np.int64), ts.array.asi8[order], np.full(len(order), -1, dtype=np.int64),
                                   int(DEFAULT_TIMEOUT_MINUTES * 60e9), sid)
    starts = np.empty(len(order), dtype=bool)
    starts[order] = starts_sorted
    later = referral & ~starts
    if later.any():
        traffic = traffic.copy()
        traffic.loc[later, ["source", "medium"]] = pd.NA
        has_traffic = has_traffic & ~pd.Series(later, index=has_traffic.index)
    return traffic, has_traffic


def events_from_table(table: RawTable, mapping: ColumnMapping, *, channel_rules=None, timezone: str = "UTC",
                      conversion_events=None, default_currency: str = "USD") -> EventPart:
    """Split a file's rows into touch events and conversions, mapped, typed and checked."""
    if mapping.profile == "orders":
        from .orders import orders_part

        return orders_part(table, mapping, channel_rules=channel_rules, timezone=timezone, default_currency=default_currency)
    frame, col = table.frame, mapping.column
    part = EventPart(empty_touchpoints(), empty_conversions(), rows_read=int(frame.shape[0]))
    part.interactions_given = bool(col("interaction"))

    # Events repeated under the same event id (Segment message_id, Snowplow event_id ...) are dropped first.
    keep = pd.Series(True, index=frame.index)
    if col("event_id"):
        ids = parse.text(table, col("event_id"))
        dup = ids.notna() & ids.duplicated()
        part.duplicate_events = int(dup.sum())
        keep &= ~dup

    users = _user_keys(table, mapping)
    ts = parse.timestamps(table, col("ts"), timezone=timezone)
    event_type = parse.text(table, col("event_type"))
    traffic, has_traffic, traffic_mapped = _traffic(table, mapping)
    if col("referrer") and not col("referrer_medium"):
        traffic, has_traffic = _referrals_open_visits(table, mapping, users, ts, traffic, has_traffic)
    conv_ids = parse.text(table, col("conversion_id"))
    value = parse.numbers(table, col("value")) if col("value") else pd.Series(np.nan, index=frame.index)

    names = event_type.str.lower()
    if col("event_type"):
        counts = names.fillna("(missing)").value_counts()
        part.event_types = {str(k): int(v) for k, v in counts.head(30).items()}
    conversion_is_touch = False
    if col("conversion_flag"):
        is_conv = conversion_flags(table, col("conversion_flag"))
        conversion_is_touch = True  # a converting row is also the touch that converted, at its time ...
        if col("interaction"):  # ... unless the row says it is the conversion
            conversion_is_touch = ~_names_conversion(parse.text(table, col("interaction")))
    elif col("event_type"):
        wanted = frozenset(e.lower() for e in conversion_events) if conversion_events else CONVERSION_EVENTS.get(mapping.profile, CONVERSION_EVENTS["events"])
        is_conv = names.isin(wanted).fillna(False).astype(bool)
    elif col("conversion_id"):
        is_conv = conv_ids.notna()
    elif col("value"):
        is_conv = value.notna() & (value != 0)
        part.warnings.append(f"{table.name}: no event type or conversion flag column: rows with a value are read as conversions")
    else:
        is_conv = pd.Series(False, index=frame.index)

    is_touch = (~is_conv | conversion_is_touch) if mapping.profile != "ga4" else ~is_conv
    if mapping.profile == "ga4":
        if "ga4__session_fields" in frame.columns and (frame["ga4__session_fields"] == "0").all():
            is_touch = pd.Series(False, index=frame.index)  # the export has no session source: no event is a touch
        if "ga4__has_session_source" in frame.columns:
            has_traffic = frame["ga4__has_session_source"] == "1"
    if not (col("channel") or traffic_mapped or mapping.profile == "ga4"):
        if is_touch.any() and not is_conv.any():
            raise IngestError("has touchpoints but no channel column: map 'channel', or 'source' / 'medium' / 'campaign' "
                              "(or a landing URL / referrer)", file=table.name)
        if is_touch.any():
            part.warnings.append(f"{table.name}: no channel, source or campaign column: its non-conversion rows are not touches")
            is_touch = pd.Series(False, index=frame.index)
    is_conv &= keep
    is_touch &= keep
    part.ignored = int((keep & ~is_conv & ~is_touch).sum())
    if part.ignored:
        part.warnings.append(f"{table.name}: {part.ignored} event(s) are neither touchpoints nor conversions and were not used")

    # One dictionary encoding of the user keys, shared by this file's touchpoints and conversions.
    extra = _first_touches(table, mapping, users, ts, is_touch, timezone) if mapping.profile == "ga4" else None
    user_codes = text_categorical(users, (is_touch | is_conv).to_numpy())
    if is_touch.any():
        part.touchpoints = _touchpoints(table, mapping, is_touch, user_codes, ts, event_type, traffic, has_traffic, channel_rules)
    if extra is not None and len(extra):
        part.touchpoints = _append_touches(part.touchpoints, extra, channel_rules)
        part.warnings.append(f"{table.name}: {len(extra)} user(s) get one touch from traffic_source (their first-ever source) "
                             "at user_first_touch_timestamp")
    if is_conv.any():
        part.conversions = _conversions(table, mapping, is_conv, users, user_codes, ts, event_type, conv_ids, value, default_currency, part.warnings)
    elif col("event_type") and is_touch.any():
        part.warnings.append(f"{table.name}: no conversion events among {', '.join(list(part.event_types)[:8])}")
    if mapping.profile == "ga4" and "ga4__value_usd_only" in frame.columns:
        usd = int(((frame["ga4__value_usd_only"] == "1") & is_conv).sum())
        if usd:
            part.warnings.append(f"{table.name}: {usd} purchase(s) carry only a USD-converted value (event_value_in_usd / "
                                 "purchase_revenue_in_usd); those are taken in USD")
    return part


def _channels(table, mapping, rows, traffic: pd.DataFrame, rules) -> pd.Series:
    col = mapping.column
    source, medium, campaign = traffic["source"], traffic["medium"], traffic["campaign"]
    if col("channel"):
        channel = parse.text(table, col("channel"))
        gaps = rows & channel.isna()
        if gaps.any():
            if not (col("source") or col("medium") or col("campaign") or col("landing_url") or col("referrer")):
                raise IngestError("channel is missing", column=col("channel"), **table.where(gaps.idxmax()))
            channel = channel.where(~gaps, assign_channels(source[gaps], medium[gaps], campaign[gaps], rules))
        return channel
    # Every row at once (no masked copies of the text columns); the touch rows' categories are kept later.
    return channel_categorical(source, medium, campaign, rules)


def _touchpoints(table, mapping, rows, users, ts, event_type, traffic, has_traffic, rules) -> pd.DataFrame:
    col = mapping.column
    channel = _channels(table, mapping, rows, traffic, rules)
    if col("interaction"):
        interaction = _interaction(parse.text(table, col("interaction")))
    elif col("event_type") and mapping.profile == "events":
        interaction = _interaction(event_type)
    else:
        interaction = parse.constant_str("visit", rows.index)
    system = {"ga4": "ga4", "segment": "segment", "snowplow": "snowplow"}.get(mapping.profile, table.fmt if table.fmt != "frame" else "sql")
    mask = rows.to_numpy()
    index = rows.index[mask]
    session = parse.text(table, col("session_id"))[mask] if col("session_id") else pd.Series(pd.NA, index=index, dtype="str")
    # Each column is cut to the touch rows on its own: the whole frame is never built for every row first.
    return pd.DataFrame(
        {
            "user_key": users[mask], "ts": ts[mask], "channel": text_categorical(channel, mask)[mask],
            "campaign_id": traffic["campaign_id"][mask], "campaign": traffic["campaign"][mask],
            "source": traffic["source"][mask], "medium": traffic["medium"][mask], "interaction": interaction[mask],
            "source_system": parse.constant_str(system, index),
            SESSION_COLUMN: session, TRAFFIC_COLUMN: has_traffic[mask].astype(bool),
        }
    )


def _first_touches(table, mapping, users, ts, is_touch, timezone) -> pd.DataFrame | None:
    """GA4: one touch per user from ``traffic_source`` (the first-ever source) at
    ``user_first_touch_timestamp``, unless the user's first visit is in the file already."""
    frame = table.frame
    cols = {k: f"ga4__first_{k}" for k in ("source", "medium", "campaign")}
    if "ga4__first_touch_ts" not in frame.columns or not any(c in frame.columns for c in cols.values()):
        return None
    has_ts = frame["ga4__first_touch_ts"].notna()
    if not has_ts.any():
        return None
    first_ts = parse.timestamps(table.__class__(table.name, frame[has_ts].reset_index(drop=True), table.fmt),
                                "ga4__first_touch_ts", timezone=timezone)
    part = pd.DataFrame({"user": users[has_ts].to_numpy(), "ts": first_ts.array, "event_ts": ts[has_ts].array})
    for k, c in cols.items():
        part[k] = frame.loc[has_ts, c].to_numpy() if c in frame.columns else None
    part = part[part[["source", "medium", "campaign"]].notna().any(axis=1)]
    if part.empty:
        return None
    part = part.sort_values(["user", "event_ts"], kind="stable").drop_duplicates("user")  # the earliest row's values
    if is_touch.any():  # the user's first visit is in the file already: no extra touch
        touch_first = pd.Series(ts[is_touch].array, index=users[is_touch].to_numpy()).groupby(level=0).min()
        seen = part["user"].map(touch_first)
        in_file = seen.notna() & (seen <= part["ts"] + pd.Timedelta(minutes=30))
        part = part[~in_file.to_numpy()]
    return part.drop(columns="event_ts").reset_index(drop=True)


def _append_touches(touch: pd.DataFrame, extra: pd.DataFrame, rules) -> pd.DataFrame:
    index = pd.RangeIndex(len(extra))
    text = {k: pd.Series(extra[k].to_numpy(), index=index, dtype="str") for k in ("source", "medium", "campaign")}
    channel = assign_channels(text["source"], text["medium"], text["campaign"], rules)
    add = pd.DataFrame({
        "user_key": extra["user"].astype("str").to_numpy(), "ts": pd.Series(extra["ts"].array, index=index),
        "channel": channel, "campaign_id": pd.Series(pd.NA, index=index, dtype="str"), "campaign": text["campaign"],
        "source": text["source"], "medium": text["medium"], "interaction": parse.constant_str("visit", index),
        "source_system": parse.constant_str("ga4", index), SESSION_COLUMN: pd.Series(pd.NA, index=index, dtype="str"),
        TRAFFIC_COLUMN: True,
    })
    both = pd.concat([touch.astype({"user_key": "object", "channel": "object"}), add], ignore_index=True)
    both["user_key"] = text_categorical(both["user_key"].astype("object"))
    both["channel"] = text_categorical(both["channel"].astype("object"))
    return both


def conversion_currency(table: RawTable, mapping: ColumnMapping, rows: pd.Series, value: pd.Series, default: str,
                        warnings: list[str]) -> pd.Series:
    """ISO currency per row: the mapped column (each row keeps its own), else ``default`` with a note."""
    col = mapping.column
    if col("currency"):
        return parse.check_currency(table, col("currency"), parse.text(table, col("currency"))).fillna(default)
    if (value[rows].fillna(0) > 0).any():
        warnings.append(f"{table.name}: no currency column; values are taken as {default}")
    return parse.constant_str(default, rows.index)


def _conversions(table, mapping, rows, users, user_codes, ts, event_type, conv_ids, value, default_currency, warnings) -> pd.DataFrame:
    col = mapping.column
    kind = event_type.str.lower().fillna("conversion") if col("event_type") else parse.constant_str("conversion", rows.index)
    generated = rows & conv_ids.isna()
    if generated.any():
        synthetic = users + "|" + ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "|" + kind
        conv_ids = conv_ids.fillna(synthetic)
        warnings.append(f"{table.name}: {int(generated.sum())} conversion(s) have no conversion id; "
                        "user + time + type is used as their id")
    currency = conversion_currency(table, mapping, rows, value, default_currency, warnings)
    no_value = int((rows & value.isna()).sum()) if col("value") else 0
    if no_value:  # blank or NaN: counted as 0, and said so
        warnings.append(f"{table.name}: {no_value:,} conversion(s) have no value (blank or NaN) in column {col('value')!r} and count as 0")
    out = pd.DataFrame(
        {"user_key": user_codes, "ts": ts, "conversion_id": conv_ids, "type": kind, "value": value.fillna(0.0).astype("float64"), "currency": currency}
    )[rows.to_numpy()]
    return out
