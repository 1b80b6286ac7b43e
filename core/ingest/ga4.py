"""GA4 BigQuery exports, in every shape they reach people: nested JSON lines or Parquet (BigQuery's
own export), JSON text in CSV cells (spreadsheet and pandas dumps), or flat connector columns
(Fivetran's ``param_*``, ``traffic_source_*``). `expand_ga4` reads the nested records
(``event_params``, ``ecommerce``, ``traffic_source``, ``collected_traffic_source``,
``session_traffic_source_last_click``) and adds canonical ``ga4__*`` columns that the GA4 profile maps:

* the **session's** traffic source is the touch: ``session_traffic_source_last_click`` (manual, then
  cross-channel, then Google Ads campaign), else ``collected_traffic_source`` (manual fields, gclid),
  else the event's own ``source`` / ``medium`` / ``campaign`` parameters, else the utm_* parameters or
  click id of ``page_location`` (and an external ``page_referrer``). All three of a row come from the
  same level, never mixed;
* ``traffic_source`` is the user's **first-ever** source: it is never any event's touch, only one
  touch at ``user_first_touch_timestamp`` (``ga4__first_*``);
* a purchase's value is its own value in its own currency (``ecommerce.purchase_revenue`` with the
  event's ``currency`` parameter, ``ecommerce.purchase.value``, the ``value`` / ``currency`` event
  parameters, a flat ``value`` / ``currency`` column), per row; ``*_in_usd`` amounts only where none
  of those exists, and then as USD.

Parsing is vectorized: JSON text goes through pyarrow's JSON reader, ``event_params`` lists are
pivoted with Arrow list kernels; Python touches only distinct values when a malformed cell forces
the slower path.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import replace

import numpy as np
import pandas as pd

from .parse import TEXT_EMPTY
from .readers import RawTable

PREFIX = "ga4__"
RECORDS = ("event_params", "ecommerce", "traffic_source", "collected_traffic_source", "session_traffic_source_last_click",
           "user_ltv", "device", "geo")
#: Flat connector names -> dotted record paths (Fivetran's GA4 export connector).
_FLAT = (
    (r"^param_(.+)$", r"event_params.\1"),
    (r"^traffic_source_(source|medium|name)$", r"traffic_source.\1"),
    (r"^collected_traffic_source_(.+)$", r"collected_traffic_source.\1"),
    (r"^session_traffic_source_last_click_(manual_campaign|cross_channel_campaign|google_ads_campaign)_(.+)$",
     r"session_traffic_source_last_click.\1.\2"),
    (r"^ecommerce_(.+)$", r"ecommerce.\1"),
    (r"^value_in_usd$", "event_value_in_usd"),
)


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def looks_like_ga4(columns) -> bool:
    present = {_compact(c) for c in columns}
    return "userpseudoid" in present and bool(present & {"eventname", "name"}) and bool(present & {"eventtimestamp", "timestamp"})


# ------------------------------------------------------------------------------------ records
def _text(values: pd.Series) -> pd.Series:
    """Stripped text, blanks (and GA4's '(not set)': `parse.TEXT_EMPTY`) as missing, a campaign named 'NA'
    kept; whole floats printed as integers."""
    missing = values.isna()
    if pd.api.types.is_float_dtype(values):
        whole = values.notna() & np.isfinite(values.fillna(0)) & (values == np.floor(values.fillna(0)))
        out = values.astype("str").where(~whole, values.where(whole).astype("Int64").astype("str"))
        out = out.where(values.notna())
    elif pd.api.types.is_bool_dtype(values):
        out = values.astype("str")
    else:
        out = values.astype("str").str.strip()
    out = out.astype("str")
    return out.where(~missing & ~out.isin(TEXT_EMPTY) & out.notna())


def _arrow_of(values: pd.Series):
    """An Arrow array for a column holding nested values: parsed JSON text, or Python lists/dicts."""
    import pyarrow as pa

    non_null = values.dropna()
    if non_null.empty:
        return None
    first = non_null.iloc[0]
    if isinstance(first, (dict, list, np.ndarray)):
        try:
            return pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        text = values.astype("str").str.strip()
        nested = text.str.startswith("{").fillna(False) | text.str.startswith("[").fillna(False)
        if not nested.any():
            return None
        return _parse_json(text.where(nested))
    return None


def _parse_json(text: pd.Series):
    """JSON text per row (missing = null) -> one Arrow array, through pyarrow's JSON reader; cells that
    are not valid JSON are null (the slower per-distinct-value path finds them)."""
    import pyarrow as pa
    import pyarrow.json as pj

    lines = ('{"v":' + text.str.replace(r"[\r\n]+", " ", regex=True) + "}").fillna('{"v":null}')
    data = "\n".join(lines.tolist()).encode("utf-8")
    try:
        table = pj.read_json(io.BytesIO(data), read_options=pj.ReadOptions(block_size=max(len(data) + 1, 1 << 20)))
        return table.column("v").combine_chunks()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    codes, uniques = pd.factorize(text, sort=False)
    parsed = []
    for u in uniques:
        try:
            parsed.append(json.loads(u))
        except (TypeError, ValueError):
            parsed.append(None)
    values = [None if c < 0 else parsed[c] for c in codes.tolist()]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # inconsistent nested types: keep the text of each leaf
        return pa.array([None if v is None else json.loads(json.dumps(v, default=str), parse_int=str, parse_float=str) for v in values])


def _flatten_into(path: str, arr, out: dict[str, pd.Series], index) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type
    if pa.types.is_struct(t):
        for i, f in enumerate(t):
            _flatten_into(f"{path}.{f.name}", pc.struct_field(arr, [i]), out, index)
    elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type) \
            and t.value_type.get_field_index("key") >= 0:
        _pivot_params(path, arr, out, index)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        return  # item lists (ecommerce items): not needed
    else:
        out[path] = pd.Series(arr.to_pandas(), index=index)


def _leaf_text(arr):
    """A scalar Arrow array as text (integers without '.0', nulls kept)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(arr.type):
        values = arr.to_numpy(zero_copy_only=False)
        whole = np.isfinite(values) & (values == np.floor(np.nan_to_num(values)))
        if whole[~np.isnan(values)].all():
            arr = pc.cast(arr, pa.int64(), safe=False)
    return pc.cast(arr, pa.large_string()) if not pa.types.is_struct(arr.type) else None


def _pivot_params(path: str, arr, out: dict[str, pd.Series], index) -> None:
    """``[{key, value: {string_value, int_value, double_value, float_value}}]`` per row -> one text
    column per key (``event_params.ga_session_id`` ...); a key repeated in a row keeps its last value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = pc.list_flatten(arr)
    if len(flat) == 0:
        return
    parents = pc.list_parent_indices(arr).to_numpy()
    keys = pc.struct_field(flat, [flat.type.get_field_index("key")])
    value = pc.struct_field(flat, [flat.type.get_field_index("value")]) if flat.type.get_field_index("value") >= 0 else None
    if value is None:
        return
    if pa.types.is_struct(value.type):
        parts = [_leaf_text(pc.struct_field(value, [i])) for i, f in enumerate(value.type)
                 if f.name in ("string_value", "int_value", "double_value", "float_value")]
        parts = [p for p in parts if p is not None]
        text = pc.coalesce(*parts) if parts else None
    else:
        text = _leaf_text(value)
    if text is None:
        return
    key_values = pd.Series(keys.to_pandas())
    text_values = pd.Series(text.to_pandas())
    for key in key_values.dropna().unique():
        hit = (key_values == key).to_numpy()
        series = pd.Series(text_values[hit].to_numpy(), index=parents[hit])
        series = series[~series.index.duplicated(keep="last")]
        out[f"{path}.{key}"] = pd.Series(series.reindex(np.arange(len(index))).to_numpy(), index=index, dtype="object")


def nested_fields(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Every GA4 field by dotted path, whichever shape the export has (nested, JSON text, flat)."""
    out: dict[str, pd.Series] = {}
    lower = {str(c).lower(): c for c in frame.columns}
    for column in frame.columns:
        name = str(column).lower()
        if "." in name:  # already flattened struct fields (BigQuery JSON / Parquet)
            out[name] = frame[column]
            if name.split(".")[0] == "event_params":
                continue
        for pattern, target in _FLAT:
            if re.match(pattern, name):
                out.setdefault(re.sub(pattern, target, name), frame[column])
    for record in RECORDS:
        column = lower.get(record)
        if column is None:
            continue
        values = frame[column]
        arr = _arrow_of(values)
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):  # plain text in a record's place
            text = values.astype("str").str.strip()
            plain = ~(text.str.startswith("{").fillna(False) | text.str.startswith("[").fillna(False))
            if (plain & text.notna()).any():
                out[f"{record}.__text__"] = text.where(plain)
        if arr is not None:
            _flatten_into(record, arr, out, frame.index)
    for column in frame.columns:  # plain top-level columns (event_name, value, currency, page_location ...)
        out.setdefault(str(column).lower(), frame[column])
    return out


# ------------------------------------------------------------------------------------ derived
def _first(fields: dict, *paths) -> pd.Series | None:
    """The first of ``paths`` present; where it is blank on a row, the next ones fill in."""
    found = [fields[p] for p in paths if p in fields]
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    out = _text(found[0])
    for more in found[1:]:
        out = out.fillna(_text(more))
    return out


def _coalesce_levels(levels: list[tuple], index) -> tuple[pd.DataFrame, pd.Series]:
    """Per row, the first level with any traffic field; its source/medium/campaign/campaign_id, and
    whether a row had any."""
    empty = pd.Series(pd.NA, index=index, dtype="str")
    out = pd.DataFrame({"source": empty, "medium": empty, "campaign": empty, "campaign_id": empty})
    chosen = pd.Series(False, index=index)
    for level in levels:
        parts = {k: (_text(v) if v is not None else empty) for k, v in zip(("source", "medium", "campaign", "campaign_id"), level)}
        has = parts["source"].notna() | parts["medium"].notna() | parts["campaign"].notna() | parts["campaign_id"].notna()
        pick = has & ~chosen
        if pick.any():
            for k, v in parts.items():
                out.loc[pick, k] = v[pick]
            chosen |= pick
    return out, chosen


def expand_ga4(table: RawTable) -> tuple[RawTable, list[str]]:
    """The table with ``ga4__*`` columns added (see the module docstring); and notes for the report."""
    from .urls import traffic_from_urls

    frame = table.frame
    index = frame.index
    f = nested_fields(frame)
    notes: list[str] = []
    ep = "event_params"
    slc = "session_traffic_source_last_click"
    cts = "collected_traffic_source"
    levels = []
    for sub in ("manual_campaign", "cross_channel_campaign"):
        levels.append(tuple(_first(f, f"{slc}.{sub}.{k}") for k in ("source", "medium", "campaign_name", "campaign_id")))
    gads_id = _first(f, f"{slc}.google_ads_campaign.campaign_id")
    if gads_id is not None:
        ids = _text(gads_id)
        levels.append((pd.Series("google", index=index, dtype="str").where(ids.notna()),
                       pd.Series("cpc", index=index, dtype="str").where(ids.notna()),
                       _first(f, f"{slc}.google_ads_campaign.campaign_name"), gads_id))
    levels.append(tuple(_first(f, f"{cts}.{k}") for k in ("manual_source", "manual_medium", "manual_campaign_name", "manual_campaign_id")))
    gclid = _first(f, f"{cts}.gclid", f"{ep}.gclid")
    if gclid is not None:
        has = _text(gclid).notna()
        levels.append((pd.Series("google", index=index, dtype="str").where(has), pd.Series("cpc", index=index, dtype="str").where(has), None, None))
    levels.append(tuple(_first(f, f"{ep}.{k}") for k in ("source", "medium", "campaign", "campaign_id")))
    # flat session columns of a flattened export (never traffic_source, the user's first-ever source)
    levels.append(tuple(_first(f, *(c for c in names)) for names in (("source", "session_source"), ("medium", "session_medium"),
                                                                      ("campaign", "session_campaign"), ("campaign_id",))))
    page = _first(f, f"{ep}.page_location", "page_location")
    referrer = _first(f, f"{ep}.page_referrer", "page_referrer")
    if page is not None or referrer is not None:
        urls = traffic_from_urls(_text(page) if page is not None else None, _text(referrer) if referrer is not None else None, index)
        levels.append(tuple(urls[k] for k in ("source", "medium", "campaign", "campaign_id")))
    has_fields = any(any(x is not None for x in level) for level in levels)
    session, has_traffic = _coalesce_levels(levels, index)

    added = {
        "ga4__user": _text(_first(f, "user_pseudo_id")),
        "ga4__ts": _first(f, "event_timestamp", "timestamp"),
        "ga4__event": _text(_first(f, "event_name", "name")),
        "ga4__session_id": _text(_first(f, f"{ep}.ga_session_id", "ga_session_id")) if _first(f, f"{ep}.ga_session_id", "ga_session_id") is not None else None,
        "ga4__source": session["source"], "ga4__medium": session["medium"], "ga4__campaign": session["campaign"],
        "ga4__campaign_id": session["campaign_id"],
        "ga4__has_session_source": has_traffic.map({True: "1", False: "0"}).astype("str"),
    }
    # traffic_source: the user's first-ever source (JSON record, flat connector columns, or plain text)
    first_source = _first(f, "traffic_source.source", "traffic_source.__text__")
    first_medium = _first(f, "traffic_source.medium", "traffic_medium")
    first_campaign = _first(f, "traffic_source.name", "traffic_source.campaign", "traffic_campaign")
    for name, series in (("ga4__first_source", first_source), ("ga4__first_medium", first_medium), ("ga4__first_campaign", first_campaign)):
        if series is not None:
            added[name] = _text(series)
    first_ts = _first(f, "user_first_touch_timestamp")
    if first_ts is not None:
        added["ga4__first_touch_ts"] = first_ts
    transaction = _first(f, "ecommerce.transaction_id", f"{ep}.transaction_id", "ecommerce.purchase.transaction_id", "transaction_id")
    if transaction is not None:
        added["ga4__transaction_id"] = _text(transaction)
    value, currency, usd_only = _value_by_meaning(f, index)
    if value is not None:
        added["ga4__value"] = value
        added["ga4__currency"] = currency
        added["ga4__value_usd_only"] = usd_only.map({True: "1", False: "0"}).astype("str")
    if not has_fields:
        notes.append(f"{table.name}: this GA4 export has no session traffic fields (session_traffic_source_last_click, "
                     "collected_traffic_source, or source / medium / campaign event parameters): only each user's "
                     "first-ever source (traffic_source) is used, as one touch at user_first_touch_timestamp")
    added["ga4__session_fields"] = pd.Series("1" if has_fields else "0", index=index, dtype="str")
    new = frame.copy()
    for name, series in added.items():
        if series is not None:
            new[name] = series.to_numpy() if isinstance(series, pd.Series) else series
    anonymous = added["ga4__user"].isna()
    if anonymous.any() and not anonymous.all():
        # Consent mode: a visitor who declines analytics storage sends cookieless events without a
        # user_pseudo_id. They join no journey; left out, and said (with the purchases among them).
        purchases = int((added["ga4__event"][anonymous].str.lower() == "purchase").sum())
        notes.append(f"{table.name}: {int(anonymous.sum()):,} event(s) have no user_pseudo_id (consent mode: visitors who "
                     f"declined analytics cookies) and join no journey: left out, {purchases:,} of them purchase(s)")
        new = new[~anonymous.to_numpy()]
    return replace(table, frame=new), notes


def _value_by_meaning(f: dict, index) -> tuple[pd.Series | None, pd.Series | None, pd.Series | None]:
    """Per row: the first of the purchase's own values with its own currency, then USD amounts."""
    ep = "event_params"
    event_currency = _first(f, f"{ep}.currency", "currency", "ecommerce.currency", "ecommerce.purchase.currency")
    own = [
        (_first(f, "ecommerce.purchase_revenue"), event_currency),
        (_first(f, "ecommerce.purchase.value"), _first(f, "ecommerce.purchase.currency", f"{ep}.currency", "currency")),
        (_first(f, f"{ep}.value"), _first(f, f"{ep}.currency", "currency")),
        (_first(f, "value", "purchase_revenue", "revenue"), _first(f, "currency", f"{ep}.currency")),
    ]
    usd = [_first(f, "ecommerce.purchase_revenue_in_usd"), _first(f, "event_value_in_usd")]
    if all(v is None for v, _ in own) and all(v is None for v in usd):
        return None, None, None
    value = pd.Series(np.nan, index=index)
    currency = pd.Series(pd.NA, index=index, dtype="object")
    for amount, cur in own:
        if amount is None:
            continue
        number = pd.to_numeric(_text(amount), errors="coerce")
        pick = value.isna() & number.notna() & (number != 0)
        value[pick] = number[pick]
        if cur is not None:
            currency[pick] = _text(cur)[pick]
    usd_only = pd.Series(False, index=index)
    for amount in usd:
        if amount is None:
            continue
        number = pd.to_numeric(_text(amount), errors="coerce")
        pick = value.isna() & number.notna() & (number != 0)
        value[pick] = number[pick]
        currency[pick] = "USD"
        usd_only |= pick
    return value, currency.astype("str").where(currency.notna()), usd_only


__all__ = ["PREFIX", "looks_like_ga4", "nested_fields", "expand_ga4"]
