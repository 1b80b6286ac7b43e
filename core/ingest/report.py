"""The import report as a readable two-column table (what the Data page shows and the command line
prints): plain labels, counts with thousands separators, money per currency, never raw JSON."""

from __future__ import annotations

import pandas as pd

#: Report key -> label, in display order; keys not listed follow under their own name.
LABELS = {
    "kind": "data", "format": "format", "files": "files", "source": "source", "rows_read": "rows read", "rows_kept": "rows kept",
    "users": "users", "touch_events": "touch events", "sessions": "sessions", "touchpoints": "touches",
    "touches_are": "touches are", "touches_reason": "because", "session_timeout_minutes": "session timeout (minutes)",
    "conversions": "conversions", "value": "value", "currency": "currency", "channels": "touches per channel",
    "orders_left_out": "orders left out (test / cancelled)", "order_lines_merged": "order lines summed into orders",
    "duplicate_events_dropped": "duplicate events dropped", "duplicate_conversions_dropped": "duplicate conversions dropped",
    "events_ignored": "events neither touch nor conversion", "entities_text": "entities", "levels": "levels",
    "platforms": "platforms", "spend": "spend", "conversion_value": "conversion value",
    "total_rows_dropped": "total / summary rows dropped", "duplicates_dropped": "duplicate rows dropped",
    "rows_merged": "rows summed into their entity's day", "paths": "unique paths", "nulls": "null journeys",
    "duplicate_paths_merged": "duplicate path rows summed", "max_path_length": "longest path",
    "date_min": "first date", "date_max": "last date", "timezone_assumed_for_naive": "time zone of naive times",
}
HIDDEN = {"warnings", "entities"}
MONEY = {"value", "spend", "conversion_value"}


def _time_text(iso: str) -> str:
    """An ISO 8601 time to the second, its zone kept ('2020-12-15 16:42:13 UTC'; fractions of a second do
    not drop the zone)."""
    try:
        stamp = pd.Timestamp(iso)
    except ValueError:
        return iso
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    if stamp.tzinfo is None:
        return text
    return f"{text} UTC" if stamp.utcoffset() == pd.Timedelta(0) else f"{text} {stamp.strftime('%z')}"


def _text(key: str, value, report: dict) -> str:
    if isinstance(value, dict):
        if key in MONEY:
            return ", ".join(f"{v:,.2f} {k}" for k, v in value.items()) or "-"
        return ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "-"
    if key in MONEY and isinstance(value, (int, float)):
        cur = report.get("currency")
        code = cur[0] if isinstance(cur, list) and len(cur) == 1 else cur if isinstance(cur, str) else ""
        return f"{value:,.2f} {code}".strip()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    if key in ("date_min", "date_max") and isinstance(value, str) and "T" in value:
        return _time_text(value)
    return "-" if value is None else str(value)


def report_table(report: dict) -> pd.DataFrame:
    """``item`` / ``value`` rows of an import report (journeys: events -> sessions -> touches first)."""
    report = report or {}
    rows = []
    keys = [k for k in LABELS if k in report] + [k for k in report if k not in LABELS and k not in HIDDEN]
    for key in keys:
        if key in HIDDEN:
            continue
        if key == "touch_events" and "sessions" in report:
            rows.append(("events → sessions → touches",
                         f"{report['touch_events']:,} → {report['sessions']:,} → {report.get('touchpoints', 0):,}"))
        rows.append((LABELS.get(key, key.replace("_", " ")), _text(key, report[key], report)))
    return pd.DataFrame(rows, columns=["item", "value"])


__all__ = ["report_table"]
