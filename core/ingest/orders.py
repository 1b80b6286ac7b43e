"""Order exports (Shopify, a CRM or the shop database) as conversions, each with its landing touch.

Every order is one conversion by its buyer (``customer_id``) at its creation time, worth its total in
its own currency. Order-line exports (an ``order_line_id`` column) are summed per order. Test orders
and cancelled orders are left out and counted. When the export names how the buyer arrived (utm_*
columns, a ``landing_site`` whose utm_* parameters or click id name the source, a ``referring_site``),
the order also gets that landing touch, at the order time, so that the conversion's journey holds it
(a touch at the instant of a conversion belongs to that conversion); an order with none of them landed
directly. An export without any of those columns yields conversions only: combine it with an event
file that holds the touches.
"""

from __future__ import annotations

import pandas as pd

from . import parse
from .errors import IngestError
from .events import EventPart, _touchpoints, _traffic, conversion_currency, empty_conversions, empty_touchpoints, text_categorical
from .mapping import ColumnMapping
from .readers import RawTable

_TRUE = {"1", "true", "t", "yes", "y"}


def orders_part(table: RawTable, mapping: ColumnMapping, *, channel_rules=None, timezone: str = "UTC",
                default_currency: str = "USD") -> EventPart:
    col = mapping.column
    frame = table.frame
    part = EventPart(empty_touchpoints(), empty_conversions(), rows_read=int(frame.shape[0]))
    keep = pd.Series(True, index=frame.index)
    if col("test"):
        test = parse.text(table, col("test")).str.lower().isin(_TRUE)
        keep &= ~test
        if test.any():
            part.warnings.append(f"{table.name}: {int(test.sum())} test order row(s) left out")
    if col("cancelled_at"):
        cancelled = parse.text(table, col("cancelled_at")).notna() & keep
        keep &= ~cancelled
        if cancelled.any():
            part.warnings.append(f"{table.name}: {int(cancelled.sum())} cancelled order row(s) left out")
    part.cancelled = int((~keep).sum())
    if not keep.any():
        raise IngestError("has no orders left once test and cancelled orders are left out", file=table.name)

    users = parse.text(table, col("user_key"))
    missing = keep & users.isna()
    if missing.any():
        raise IngestError("the order has no buyer (customer id is missing)", column=col("user_key"), **table.where(missing.idxmax()))
    ts = parse.timestamps(table, col("ts"), timezone=timezone)
    order_ids = parse.text(table, col("conversion_id"))
    no_id = keep & order_ids.isna()
    if no_id.any():
        raise IngestError("order id is missing", column=col("conversion_id"), **table.where(no_id.idxmax()))
    value = parse.numbers(table, col("value"), empty_as=0.0)
    currency = conversion_currency(table, mapping, keep, value, default_currency, part.warnings)

    rows = keep.copy()
    if col("line_id"):  # order lines: one conversion per order, worth the sum of its lines
        lines = pd.DataFrame({"order": order_ids, "value": value, "currency": currency})[keep]
        mixed = lines.groupby("order")["currency"].nunique()
        if (mixed > 1).any():
            raise IngestError(f"order {mixed.idxmax()!r} has lines in several currencies", file=table.name, column=col("currency"))
        totals = lines.groupby("order", sort=False)["value"].sum()
        first = ~order_ids.duplicated() & keep
        part.lines_merged = int(keep.sum() - first.sum())
        rows = first
        value = value.where(~first, order_ids.map(totals))
    elif (keep & order_ids.duplicated(keep=False)).any():
        dup = keep & order_ids.duplicated()
        part.warnings.append(f"{table.name}: {int(dup.sum())} repeated order row(s) (same order id, no order-line id) "
                             "count once: map 'line_id' if they are the lines of one order")
        rows = keep & ~order_ids.duplicated()

    user_codes = text_categorical(users, rows.to_numpy())
    part.conversions = pd.DataFrame({
        "user_key": user_codes, "ts": ts, "conversion_id": order_ids, "type": parse.constant_str("order", frame.index),
        "value": value.astype("float64"), "currency": currency,
    })[rows.to_numpy()]

    traffic, has_traffic, traffic_mapped = _traffic(table, mapping)
    if traffic_mapped:
        part.touchpoints = _touchpoints(table, mapping, rows, user_codes, ts, pd.Series(pd.NA, index=frame.index, dtype="str"),
                                        traffic, pd.Series(True, index=frame.index), channel_rules)
        landed = int((has_traffic & rows).sum())
        part.warnings.append(f"{table.name}: {int(rows.sum())} order(s) get their landing touch at the order time "
                             f"({landed} from utm_* / landing URL / referrer, {int(rows.sum()) - landed} direct)")
    else:
        part.warnings.append(f"{table.name}: the orders name no landing source (utm_*, landing_site, referring_site): "
                             "they are conversions only; import them with the event file that holds the touches")
    if part.lines_merged:
        part.warnings.append(f"{table.name}: {part.lines_merged} order-line row(s) summed into their order")
    return part


__all__ = ["orders_part"]
