"""One currency at a time: the optimizer never adds money of different currencies.

A performance data set (or a synced account set) can hold campaigns in several currencies, e.g. a
Meta account in EUR and a Google account in USD. A total budget of "EUR + USD" is meaningless, so
every entry point that sums budgets (`core.optimize.recommend.recommend`, the `allocate*` functions,
`what_if`) refuses a mix with `MixedCurrencyError`, naming the currencies; callers pick one with
`filter_currency` (the Optimizer page's currency picker, the CLI's ``--currency``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class MixedCurrencyError(ValueError):
    """Campaigns in more than one currency were given to one optimization; ``currencies`` lists them."""

    def __init__(self, currencies: list[str], what: str = "the performance data"):
        self.currencies = list(currencies)
        shown = ", ".join(c or "(no currency)" for c in self.currencies)
        super().__init__(
            f"{what} mixes {len(self.currencies)} currencies ({shown}): budgets in different currencies cannot be "
            f"added up or moved between each other; optimize one currency at a time (choose one of {shown})"
        )


def _codes(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str).str.strip().str.upper()


def _money_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose spend counts once: campaign totals (no segment) when there are any, else all rows."""
    rows = frame
    if "segment_type" in rows.columns:
        rows = rows[rows["segment_type"].fillna("").astype(str) == ""]
    if "entity_type" in rows.columns and (rows["entity_type"] == "campaign").any():
        rows = rows[rows["entity_type"] == "campaign"]
    return rows if len(rows) else frame


def currency_spend(frame: pd.DataFrame) -> pd.Series:
    """Total spend per currency code (upper case), most spend first (ties by code).

    Counts campaign totals rows once (segment breakdowns and ad set rows are left out when campaign
    totals exist). A frame without a ``currency`` column is taken as USD (as `core.response` does);
    a frame without ``spend`` gets zeros.
    """
    if frame is None or len(frame) == 0:
        return pd.Series(dtype="float64", name="spend")
    rows = _money_rows(frame)
    codes = _codes(rows["currency"]) if "currency" in rows.columns else pd.Series("USD", index=rows.index)
    spend = pd.to_numeric(rows["spend"], errors="coerce").fillna(0.0).astype(float) if "spend" in rows.columns else pd.Series(0.0, index=rows.index)
    sums = spend.groupby(codes.to_numpy()).sum()
    order = sorted(sums.index, key=lambda c: (-float(sums[c]), c))
    return sums.reindex(order).rename("spend")


def currencies(frame: pd.DataFrame) -> list[str]:
    """The currency codes of a performance (or budget/entity) frame, most spend first."""
    if frame is None or len(frame) == 0:
        return []
    if "spend" not in frame.columns:
        codes = _codes(frame["currency"]) if "currency" in frame.columns else pd.Series(["USD"])
        return sorted(set(codes))
    return list(currency_spend(frame).index)


def require_one_currency(frame_or_curves, what: str = "the performance data") -> str | None:
    """The single currency of a performance frame or a curve set (its ``keys``); raises
    `MixedCurrencyError` naming the currencies when there are several. None when it cannot tell."""
    frame = frame_or_curves if isinstance(frame_or_curves, pd.DataFrame) else getattr(frame_or_curves, "keys", None)
    if not isinstance(frame, pd.DataFrame) or "currency" not in frame.columns:
        return None
    codes = {str(c).strip().upper() if isinstance(c, str) else "" for c in frame["currency"].unique()}  # cheap on large frames
    if len(codes) <= 1:
        return next(iter(codes), None)
    found = currencies(frame)
    if len(found) > 1:
        raise MixedCurrencyError(found, what)
    return found[0] if found else None


def filter_currency(frame: pd.DataFrame, currency: str) -> pd.DataFrame:
    """The rows of ``frame`` in ``currency`` (case-insensitive); a frame without a currency column is kept whole."""
    if frame is None or "currency" not in frame.columns:
        return frame
    keep = (_codes(frame["currency"]) == str(currency).strip().upper()).to_numpy()
    return frame[keep].reset_index(drop=True)


def filter_entities(entities: pd.DataFrame, currency: str, campaign_ids) -> pd.DataFrame:
    """Live entities (``ad_entities`` rows) belonging to ``currency``.

    An entity's currency is its own, else its parent's (an ad set without one follows its campaign);
    an entity with neither is kept when it or its parent is among ``campaign_ids`` (the campaigns of
    the filtered performance).
    """
    if entities is None or entities.empty:
        return entities
    ids = {str(x) for x in campaign_ids}
    code = str(currency).strip().upper()
    cur = _codes(entities["currency"]) if "currency" in entities.columns else pd.Series("", index=entities.index)
    xid = entities["external_id"].astype(str)
    parent = entities["parent_id"].fillna("").astype(str) if "parent_id" in entities.columns else pd.Series("", index=entities.index)
    known = dict(zip(xid[cur != ""], cur[cur != ""]))
    eff = cur.where(cur != "", parent.map(known).fillna(""))
    own = xid.isin(ids) | parent.isin(ids)
    keep = np.where(eff.to_numpy() != "", eff.to_numpy() == code, own.to_numpy())
    return entities[keep].reset_index(drop=True)
