"""Vectorized column parsers: timestamps (epoch units by magnitude, ISO text with any zone), numbers
(thousands separators, ``--``), calendar dates and text. Errors name the file, row and column."""

from __future__ import annotations

import warnings

import re

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from core.visible import INVISIBLE

from .errors import IngestError
from .readers import RawTable

#: Spellings of "no value" in number, date and time columns: no amount or time is ever written 'NA' or 'null'.
_EMPTY = {"", "--", "-", "null", "none", "nan", "n/a", "na", "(not set)"}
#: Spellings of "no value" in text columns (names, ids, channels, sources), matched exactly (case
#: counts): a blank cell, the placeholders exporters write for "nothing here" (Google Ads' ``--``, GA4's
#: ``(not set)``) and a database dump's NULL (``NULL``, ``\\N``, as dbt seeds and SQL clients write it).
#: 'NA' (North America), 'N/A', 'None', 'null' and 'nan' are names a campaign, ad set or channel really
#: has, so they stay text: pandas' default NA strings never apply (the readers turn only blank cells
#: into missing values).
TEXT_EMPTY = ("", "--", "(not set)", "NULL", "\\N")
_THOUSANDS = r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"
#: Numbers written the European way: '1.234,56', '456,78' (dots group thousands, a comma marks decimals)
_COMMA_DECIMAL = r"^[+-]?(?:\d{1,3}(?:\.\d{3})+|\d+)(?:,\d+)?$"
#: Currency signs before or after an amount ('$12', 'R$ 12', 'US$12', 'CA$12', 'S/ 12', '12 €', '€12') and spaces inside it
_MONEY_SIGNS = r"^(?:[A-Z]{1,2}\$|S/\.?|[$€£¥₹])|[€£]$|\s|\u00a0"
_HAS_ZONE = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?|\s?(?:UTC|GMT))$"
#: Plausible event times; outside this window an epoch unit or a date is almost surely wrong.
_MIN_TS = pd.Timestamp("1990-01-01", tz="UTC")
_MAX_TS = pd.Timestamp("2100-01-01", tz="UTC")
# Epoch magnitude thresholds: seconds ~1.7e9, milliseconds ~1.7e12, microseconds ~1.7e15, ns ~1.7e18.
_UNITS = ((1e11, "s"), (1e14, "ms"), (1e17, "us"), (np.inf, "ns"))


def _fail(table: RawTable, column: str, index_label, message: str) -> IngestError:
    return IngestError(message, column=column, **table.where(index_label))


def _distinct(table: RawTable, column: str):
    """For a categorical text column: a table of its distinct values (plus one missing value when some
    row is missing) whose errors name the first file row holding the value, and each row's entry in it.
    None for other columns. Parsing the distinct values once and taking by code is exact and fast."""
    values = table.frame[column]
    if table.row_codes is not None or not isinstance(values.dtype, pd.CategoricalDtype):
        return None
    cats = values.cat.categories
    if not (ptypes.is_string_dtype(cats.dtype) or cats.dtype == object):
        return None
    import pyarrow as pa

    codes = values.cat.codes.to_numpy().astype(np.int64)
    arr = pa.array(cats.to_numpy(dtype=object), type=pa.large_string())
    missing = bool((codes < 0).any())
    if missing:
        arr = pa.concat_arrays([arr, pa.nulls(1, type=pa.large_string())])
        codes = np.where(codes < 0, len(cats), codes)
    sub = RawTable(table.name, pd.DataFrame({column: pd.Series(arr, dtype="str")}), table.fmt, table.first_line,
                   table.header_currency, table.content_hash, row_codes=codes, notes=table.notes, decisions=table.decisions,
                   row_offset=int(values.index[0]) if len(values) and isinstance(values.index, pd.RangeIndex) else 0)
    return sub, codes


def _expand(per_value: pd.Series, codes: np.ndarray, index) -> pd.Series:
    """Values parsed once per distinct value, back on every row."""
    return per_value.take(codes).set_axis(index)


def _arrow(values: pd.Series):
    """The pyarrow ChunkedArray behind an Arrow-backed text column (the CSV reader's), else None."""
    if isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow":
        return values.array._pa_array
    return None


#: One linear-time (RE2) test for every spelling of "empty", so no lower-cased copy of a column is made.
_SPACE = r"[\s\p{Z}\x{0B}\x{85}]*"
def _empty_pattern(spellings) -> str:
    return f"^{_SPACE}(?:" + "|".join(sorted((re.escape(e) for e in spellings), key=len, reverse=True)) + f"){_SPACE}$"


_EMPTY_PATTERN = _empty_pattern(_EMPTY)
_TEXT_EMPTY_PATTERN = _empty_pattern(TEXT_EMPTY)


def _arrow_blank(arr, trimmed=None, *, text: bool = False):
    import pyarrow.compute as pc

    empty = pc.match_substring_regex(arr, _TEXT_EMPTY_PATTERN if text else _EMPTY_PATTERN, ignore_case=not text)
    return pc.or_kleene(pc.is_null(arr), empty).fill_null(True)


def _arrow_float(values: pd.Series) -> pd.Series | None:
    """float64 straight from Arrow text when every non-null cell is a plain number, else None (the
    slower path then reads separators and blanks, and names the first bad row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _arrow(values)
    if arr is None:
        return None
    try:
        cast = pc.cast(arr, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return pd.Series(cast.to_numpy(zero_copy_only=False), index=values.index, dtype="float64")


def str_from_codes(uniques, codes: np.ndarray, index) -> pd.Series:
    """A ``str`` column from distinct values and integer codes (-1 = missing) without building Python
    objects per row: one Arrow ``take``."""
    import pyarrow as pa

    values = pa.array([None if u is None or (isinstance(u, float) and np.isnan(u)) else str(u) for u in uniques],
                      type=pa.large_string())
    codes = np.asarray(codes, dtype=np.int64)
    idx = pa.array(codes, mask=codes < 0) if (codes < 0).any() else pa.array(codes)
    return pd.Series(values.take(idx), index=index, dtype="str")


def constant_str(value: str, index) -> pd.Series:
    """A ``str`` column holding one value on every row (cheap: no per-row Python strings)."""
    return str_from_codes([value], np.zeros(len(index), dtype=np.int64), index)


def blank_mask(values: pd.Series, *, text: bool = False) -> pd.Series:
    """True where a cell is missing or one of the usual 'empty' spellings: for a number, date or time
    (``text=False``) also ``--``, ``null``, ``N/A``...; for a name or id (``text=True``) only `TEXT_EMPTY`."""
    if ptypes.is_numeric_dtype(values) or ptypes.is_datetime64_any_dtype(values):
        return values.isna()
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = pd.Series(values.cat.categories.astype("str"), dtype="str")
        per_value = np.append(blank_mask(cats, text=text).to_numpy(dtype=bool), True)  # code -1 (missing) reads the last entry
        return pd.Series(per_value[values.cat.codes.to_numpy()], index=values.index, dtype=bool)
    arr = _arrow(values)
    if arr is not None:
        return pd.Series(_arrow_blank(arr, text=text).to_numpy(zero_copy_only=False), index=values.index, dtype=bool)
    stripped = values.astype("str").str.strip()
    return values.isna() | (stripped.isin(TEXT_EMPTY) if text else stripped.str.lower().isin(_EMPTY))


def _arrow_visible(arr):
    """``arr`` without `INVISIBLE` characters (an all-ASCII column, the usual case, is returned as is)."""
    import pyarrow.compute as pc

    if pc.all(pc.string_is_ascii(arr)).as_py() is not False:
        return arr
    return pc.replace_substring_regex(arr, pattern=INVISIBLE, replacement="")


def text(table: RawTable, column: str | None) -> pd.Series:
    """A text column stripped of spaces and `INVISIBLE` characters, with `TEXT_EMPTY` spellings as
    missing ('NA' stays a name); all-missing when ``column`` is None."""
    n = table.frame.shape[0]
    if column is None:
        return pd.Series(pd.NA, index=table.frame.index, dtype="str")
    distinct = _distinct(table, column)
    if distinct is not None:
        return _expand(text(distinct[0], column), distinct[1], table.frame.index)
    values = table.frame[column]
    arr = _arrow(values)
    if arr is not None:
        import pyarrow.compute as pc

        arr = _arrow_visible(arr)
        trimmed = pc.utf8_trim_whitespace(arr)
        out = pc.if_else(_arrow_blank(arr, trimmed, text=True), None, trimmed)
        return pd.Series(out, index=values.index, dtype="str")
    if not (ptypes.is_numeric_dtype(values) or ptypes.is_datetime64_any_dtype(values)):
        values = values.where(values.isna(), values.astype("str").str.replace(INVISIBLE, "", regex=True))
    out = values.astype("str").str.strip()
    out = out.where(~blank_mask(values, text=True))
    if ptypes.is_float_dtype(values):  # ids read as floats from Parquet/JSON: 123.0 -> "123"
        whole = values.notna() & (values == np.floor(values.fillna(0)))
        out = out.where(~whole, values.where(whole).astype("Int64").astype("str"))
    assert out.shape[0] == n
    return out


#: Largest magnitude a number may have: the money columns hold 20 digits, 6 after the point, and no count
#: of impressions, clicks or conversions comes near it. Larger values (1e308...) are errors, never infinity.
MAX_NUMBER = 1e14


def numbers(table: RawTable, column: str, *, allow_negative: bool = False, whole: bool = False,
            empty_as=np.nan, refuse_ambiguous: bool = False) -> pd.Series:
    """float64 from a number column; thousands separators and currency signs are read, blanks (also
    ``NaN``) become ``empty_as`` and are counted in ``table.filled_blanks`` when that is a number;
    anything else unreadable, negative, infinite or beyond `MAX_NUMBER` is an error naming its row.
    ``refuse_ambiguous``: the file's language may write either decimal mark (a localized download), so a
    column whose '1.234' or '1,234' nothing in the file settles is an error, never a guess."""
    distinct = _distinct(table, column)
    if distinct is not None:
        out = _expand(_numbers(distinct[0], column, allow_negative=allow_negative, whole=whole,
                               refuse_ambiguous=refuse_ambiguous), distinct[1], table.frame.index)
    else:
        out = _numbers(table, column, allow_negative=allow_negative, whole=whole, refuse_ambiguous=refuse_ambiguous)
    if isinstance(empty_as, float) and np.isnan(empty_as):
        return out
    blank = int(out.isna().sum())
    if blank:
        table.filled_blanks[column] = table.filled_blanks.get(column, 0) + blank
    return out.fillna(empty_as)


def _decimal_comma(s: pd.Series, blank: pd.Series) -> bool:
    """A column written the European way: every value fits '1.234,56' and one shows it (a comma not
    followed by exactly three digits, or dots grouping thousands before a comma). '1,234' alone stays
    a thousands separator, as spreadsheets in English write it."""
    v = s[~blank]
    if v.empty or not v.str.fullmatch(_COMMA_DECIMAL).fillna(False).all():
        return False
    shows = v.str.contains(r",(?:\d{1,2}|\d{4,})$", regex=True) | v.str.contains(r"\.\d{3},", regex=True)
    return bool(shows.fillna(False).any())


def _dotted_thousands(table: RawTable, s: pd.Series, blank: pd.Series, *, whole: bool) -> bool:
    """A column whose dots group thousands though no value shows a decimal comma: a European download's
    ``1.000`` impressions (a count is never fractional, so ``whole`` columns decide alone), or any column
    of a file whose other number columns were read with decimal commas ('1.234' beside '1.234,56' is
    1234, never 1.234)."""
    v = s[~blank]
    if v.empty or not v.str.fullmatch(_COMMA_DECIMAL).fillna(False).all():
        return False
    if whole:
        return bool(v.str.contains(r"\.\d{3}(?:\.|$)", regex=True).fillna(False).any())
    return "decimal comma" in table.decisions.values()


def _has_dotted_groups(values: pd.Series) -> bool:
    """Some value is written like '1.000' or '12.345.678' (dots where thousands are grouped)."""
    import pyarrow.compute as pc

    return bool(pc.any(pc.match_substring_regex(_arrow(values), r"^\s*[+-]?\d{1,3}(?:\.\d{3})+\s*$")).as_py())


#: One separator followed by exactly three digits, and no other mark: '1.234' or '12,345' read as a
#: thousand or more with one decimal mark and as a fraction with the other.
_EITHER_MARK = {"plain": r"^[+-]?\d{1,3}\.\d{3}$", "text": r"^[+-]?\d{1,3},\d{3}$"}
#: A value that shows which mark is the decimal one ('0.50' / '1,234.50', '1,234,567').
_SHOWS_MARK = {"plain": r"\.(?:\d{1,2}|\d{4,})$", "text": r"\.\d+$|,\d{3},"}


def _refuse_ambiguous(table: RawTable, column: str, values: pd.Series, blank: pd.Series, decision: str) -> None:
    """An error naming the first value that reads as two different amounts when nothing in its column
    (or, for a decimal comma, in the file) shows which separator marks decimals."""
    if decision not in _EITHER_MARK:
        return
    s = values[~blank].astype("str").str.strip().str.replace(_MONEY_SIGNS, "", regex=True)
    either = s.str.fullmatch(_EITHER_MARK[decision]).fillna(False).astype(bool)
    if not either.any() or s.str.contains(_SHOWS_MARK[decision], regex=True).fillna(False).any():
        return
    at = either.idxmax()
    point, comma = (float(s[at]), float(s[at].replace(".", ""))) if decision == "plain" else (
        float(s[at].replace(",", "")), float(s[at].replace(",", ".")))
    raise _fail(table, column, at, f"{values[at]!r} reads as {point:g} with a decimal point or as {comma:g} with a decimal "
                                   "comma, and nothing in the file shows which its language writes; download the report "
                                   "again with two decimals shown, or give the amounts as plain numbers (1234.56)")


def _numbers(table: RawTable, column: str, *, allow_negative: bool, whole: bool, refuse_ambiguous: bool = False) -> pd.Series:
    values = table.frame[column]
    blank = blank_mask(values)
    if ptypes.is_bool_dtype(values):
        raise IngestError("holds true/false values, not numbers", file=table.name, column=column)
    fast = None if ptypes.is_numeric_dtype(values) else _arrow_float(values)
    if fast is not None and (whole or "decimal comma" in table.decisions.values()) and _has_dotted_groups(values):
        fast = None  # '1.000' impressions of a European download: read below, as 1000
    if ptypes.is_numeric_dtype(values):
        out = values.astype("float64")
        table.decisions["numbers", column] = "numeric"
    elif fast is not None:
        out = fast
        table.decisions["numbers", column] = "plain"
    else:
        s = values.astype("str").str.strip().str.replace(_MONEY_SIGNS, "", regex=True)
        comma = _decimal_comma(s, blank) or _dotted_thousands(table, s, blank, whole=whole)
        table.decisions["numbers", column] = "decimal comma" if comma else "text"
        if comma:
            s = s.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
        else:
            s = s.where(~s.str.fullmatch(_THOUSANDS).fillna(False).astype(bool), s.str.replace(",", "", regex=False))
        out = pd.to_numeric(s.where(~blank), errors="coerce").astype("float64")
        bad = out.isna() & ~blank
        if bad.any():
            at = bad.idxmax()
            raise _fail(table, column, at, f"{values[at]!r} is not a number")
    if refuse_ambiguous and not whole:
        _refuse_ambiguous(table, column, values, blank, table.decisions["numbers", column])
    if np.isinf(out).any():
        raise _fail(table, column, np.isinf(out).idxmax(), "is infinite")
    huge = out.abs() >= MAX_NUMBER
    if huge.any():
        at = huge.idxmax()
        raise _fail(table, column, at, f"{values[at]!r} is beyond the largest amount stored "
                                       "(99,999,999,999,999.999999): a wrong column or a broken export?")
    if not allow_negative and (out < 0).any():
        at = (out < 0).idxmax()
        raise _fail(table, column, at, f"negative value {values[at]!r} is not allowed here")
    if whole:
        fractional = out.notna() & ((out % 1) != 0)
        if fractional.any():
            at = fractional.idxmax()
            raise _fail(table, column, at, f"{values[at]!r} is not a whole number")
    return out


def timestamps(table: RawTable, column: str, *, timezone: str = "UTC") -> pd.Series:
    """tz-aware UTC ``datetime64[ns, UTC]``.

    Epoch numbers: the unit (s, ms, us, ns) is chosen from the column's median magnitude. Text: ISO
    8601 (or any one consistent format); values carrying a zone or offset are converted, values
    without one are taken in ``timezone``. Missing or unreadable values are errors naming the row.
    """
    distinct = _distinct(table, column)
    if distinct is not None:
        return _expand(timestamps(distinct[0], column, timezone=timezone), distinct[1], table.frame.index)
    values = table.frame[column]
    blank = blank_mask(values)
    if blank.any():
        raise _fail(table, column, blank.idxmax(), "timestamp is missing")
    fast = _arrow_float(values)
    kind = ("yyyymmdd" if _yyyymmdd(fast) else "epoch text") if fast is not None else (
        "datetime" if ptypes.is_datetime64_any_dtype(values) else "other")
    table.decisions["timestamps", column] = kind
    if kind == "yyyymmdd":  # GA4's event_date and other compact days: 20240131
        out = _localize(pd.to_datetime(fast.astype("int64").astype("str"), format="%Y%m%d"), timezone).dt.tz_convert("UTC")
    elif fast is not None:  # epoch numbers written as text (the usual CSV case)
        out = _from_epoch(table, column, fast)
    elif ptypes.is_datetime64_any_dtype(values):
        _plausible(table, column, values, values, "timestamp")
        out = values if getattr(values.dt, "tz", None) is not None else _localize(values, timezone)
        out = out.dt.tz_convert("UTC")
    else:
        nums = values if ptypes.is_numeric_dtype(values) else pd.to_numeric(values.astype("str").str.strip(), errors="coerce")
        if ptypes.is_numeric_dtype(values) or nums.notna().all():
            out = _from_epoch(table, column, nums.astype("float64"))
        elif nums.notna().any():  # epoch numbers and text mixed in one column: each part on its own
            epoch = nums.notna()
            out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
            out[epoch] = _from_epoch(table, column, nums[epoch].astype("float64")).dt.as_unit("ns")
            out[~epoch] = _from_text(table, column, values[~epoch].astype("str").str.strip(), timezone).dt.as_unit("ns")
        else:
            out = _from_text(table, column, values.astype("str").str.strip(), timezone)
    out = out.dt.as_unit("ns")
    bad = (out < _MIN_TS) | (out >= _MAX_TS)
    if bad.any():
        at = bad.idxmax()
        raise _fail(table, column, at, f"timestamp {values[at]!r} reads as {out[at]}, outside 1990-2100")
    return out


def _yyyymmdd(nums: pd.Series) -> bool:
    """Whole numbers that all read as calendar days 1990-2099 (``20240131``), not as epoch seconds."""
    v = nums.to_numpy()
    if not len(v) or not np.all(np.isfinite(v)) or not np.all(v == np.floor(v)):
        return False
    if not np.all((v >= 19900101) & (v <= 20991231)):
        return False
    month, day = (v // 100) % 100, v % 100
    return bool(np.all((month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)))


def _localize(values: pd.Series, timezone: str) -> pd.Series:
    try:
        return values.dt.tz_localize(timezone, ambiguous=np.zeros(len(values), dtype=bool), nonexistent="shift_forward")
    except Exception as exc:  # unknown zone name
        raise IngestError(f"unknown time zone {timezone!r} ({exc})") from None


def _from_epoch(table: RawTable, column: str, nums: pd.Series) -> pd.Series:
    magnitude = float(np.nanmedian(np.abs(nums.to_numpy()))) if nums.size else 0.0
    unit = next(u for limit, u in _UNITS if magnitude < limit)
    # The unit read from the median holds for any part of the column when every value is in its band.
    magnitudes = np.abs(nums.to_numpy()[np.isfinite(nums.to_numpy())])
    bands = {next(u for limit, u in _UNITS if m < limit) for m in (magnitudes.min(), magnitudes.max())} if magnitudes.size else {unit}
    table.decisions["epoch unit", column] = unit if bands == {unit} else f"{unit} (values in several ranges)"
    scale = {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0}[unit]
    ns = np.round(nums.to_numpy() * scale)
    too_big = ~np.isfinite(ns) | (np.abs(ns) > 9.2e18)
    if too_big.any():
        at = nums.index[int(np.flatnonzero(too_big)[0])]
        raise _fail(table, column, at, f"epoch value {nums[at]!r} is out of range (unit read as {unit})")
    return pd.Series(pd.to_datetime(ns.astype(np.int64), unit="ns", utc=True), index=nums.index)


def _from_text(table: RawTable, column: str, s: pd.Series, timezone: str) -> pd.Series:
    zoned = s.str.contains(_HAS_ZONE, regex=True).fillna(False).astype(bool)
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns, UTC]")
    if zoned.any():
        part = s[zoned].str.replace(r"\s?(UTC|GMT)$", "+00:00", regex=True)
        out[zoned] = _parse_text(table, column, part, utc=True)
    if (~zoned).any():
        naive = _parse_text(table, column, s[~zoned], utc=False)
        if getattr(naive.dt, "tz", None) is not None:
            naive = naive.dt.tz_convert("UTC")
        else:
            naive = _localize(naive, timezone).dt.tz_convert("UTC")
        out[~zoned] = naive.dt.as_unit("ns")
    return out


# ISO first, then the format pandas infers from the first value (month first when ambiguous), then day
# first: '01-08-2026 ... 13-08-2026' (an EU-format Google Ads download) is read, not refused
_DATE_READINGS = ({"format": "ISO8601"}, {}, {"dayfirst": True})
_DAY_MONTH = r"^\s*(\d{1,2})([./-])(\d{1,2})\2\d{2,4}"


def _settle_day_month(table: RawTable, column: str, s: pd.Series, parsed: pd.Series, **kwargs) -> pd.Series:
    """``parsed`` read month-first from numeric dates; when no value says which order it is (every day
    and month <= 12: '01/02/2026'), take the order whose dates lie closest together (a report's days
    are consecutive, a misread one spreads over months) and say so in the table's notes."""
    distinct = pd.Series(pd.unique(s.to_numpy()), dtype=object).astype("str")
    parts = distinct.str.extract(_DAY_MONTH)
    if len(distinct) == 0 or parts[0].isna().any():
        return parsed
    first, second = parts[0].astype(int), parts[2].astype(int)
    if (first > 12).any() or (second > 12).any() or (first == second).all():
        return parsed  # the data says which order it is (pandas read it so), or both orders agree
    as_read = pd.to_datetime(distinct, **kwargs)
    swapped = pd.to_datetime(distinct.str.replace(r"^(\s*)(\d{1,2})([./-])(\d{1,2})\3", r"\1\4\3\2\3", regex=True), **kwargs)
    day_first_first = bool((as_read.dt.day == first).all())  # which order pandas inferred
    day_first, month_first = (as_read, swapped) if day_first_first else (swapped, as_read)

    def spread(t: pd.Series) -> pd.Timedelta:
        return t.max() - t.min()

    example = distinct.iloc[int(np.argmax((first != second).to_numpy()))]
    if spread(day_first) < spread(month_first):
        chosen, order, why = day_first, "day first (dd/mm)", "its dates then lie closest together"
    elif spread(month_first) < spread(day_first):
        chosen, order, why = month_first, "month first (mm/dd)", "its dates then lie closest together"
    elif parts[1].eq(".").all():
        chosen, order, why = day_first, "day first (dd.mm)", "dotted dates are written day first"
    else:
        chosen, order, why = month_first, "month first (mm/dd)", "nothing in the data tells the orders apart"
    table.notes.append(f"{table.name}: column {column!r}: every date reads both day first and month first "
                       f"(e.g. {example!r}); read {order} because {why}. Give dates as YYYY-MM-DD if that is wrong")
    if chosen is as_read:
        return parsed
    lookup = pd.Series(chosen.to_numpy(), index=distinct.to_numpy())
    out = s.astype("str").map(lookup)
    return out.astype(parsed.dtype) if str(parsed.dtype) != str(out.dtype) else out


def _parse_text(table: RawTable, column: str, s: pd.Series, *, utc: bool) -> pd.Series:
    for reading, kwargs in enumerate(_DATE_READINGS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                parsed = pd.to_datetime(s, utc=utc, **kwargs)
                if not kwargs:
                    parsed = _settle_day_month(table, column, s, parsed, utc=utc)
        except (ValueError, TypeError, OverflowError):
            continue
        table.decisions["date reading", column, utc] = "ISO 8601" if reading == 0 else f"reading {reading}"
        return _plausible(table, column, parsed, s, "timestamp")
    coerced = pd.to_datetime(s, utc=utc, errors="coerce", format="mixed")
    bad = coerced.isna()
    at = bad.idxmax() if bad.any() else s.index[0]
    raise _fail(table, column, at, f"{s[at]!r} is not a readable timestamp")


def _plausible(table: RawTable, column: str, parsed: pd.Series, text: pd.Series, what: str) -> pd.Series:
    """``parsed`` when every value lies in 1990-2100 (checked in its own resolution, before any
    conversion to nanoseconds could overflow: years 1, 2300 or 9999 parse, but do not fit), else an
    error naming the first row outside; a day of margin is left for time zones (checked exactly later)."""
    tz = getattr(parsed.dt, "tz", None)
    lo, hi = _MIN_TS - pd.Timedelta(days=1), _MAX_TS + pd.Timedelta(days=1)
    if tz is None:
        lo, hi = lo.tz_localize(None), hi.tz_localize(None)
    bad = (parsed < lo) | (parsed >= hi)
    if bad.any():
        at = bad.idxmax()
        raise _fail(table, column, at, f"{what} {text[at]!r} is outside 1990-2100")
    return parsed


#: A weekday before a date, as some report views write the day ('Mon, Sep 1, 2026'): the date is the rest.
_WEEKDAY = r"^(?i:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+"


#: A numeric day written day first, with a four-digit year: '05.09.2026', '05/09/2026', '5-9-2026'.
_DAY_FIRST = r"^(\d{1,2})([./-])(\d{1,2})\2(\d{4})$"


def _day_first_dates(table: RawTable, column: str, values: pd.Series, s: pd.Series) -> pd.Series | None:
    """Days of a file whose locale writes them day first (a German, French... Google Ads download): read
    so whatever the values are, never guessed from them; a value that is no such day (09/13/2026) is an
    error naming its row. None when no value is written that way (ISO days read as usual)."""
    parts = s.str.extract(_DAY_FIRST)
    numeric = parts[0].notna()
    if not numeric.any():
        return None
    out = pd.to_datetime(s.where(~numeric), format="ISO8601", errors="coerce")
    out[numeric] = pd.to_datetime(pd.DataFrame({"year": parts.loc[numeric, 3].astype(int), "month": parts.loc[numeric, 2].astype(int),
                                                "day": parts.loc[numeric, 0].astype(int)}), errors="coerce")
    bad = out.isna()
    if bad.any():
        at = bad.idxmax()
        raise _fail(table, column, at, f"{values[at]!r} is no day written day first (DD.MM.YYYY or DD/MM/YYYY), as a Google "
                                       "Ads download in this language writes its days; give days as YYYY-MM-DD if this "
                                       "file's are written month first")
    table.decisions["date reading", column] = "day first (the file's language)"
    return out


def dates(table: RawTable, column: str, *, day_first: bool = False) -> pd.Series:
    """Calendar days (naive ``datetime64[ns]`` at midnight): the account's day, no zone conversion.
    ``day_first``: the file's language writes days first, so '05/09/2026' is 5 September, not a guess."""
    distinct = _distinct(table, column)
    if distinct is not None:
        return _expand(dates(distinct[0], column, day_first=day_first), distinct[1], table.frame.index)
    values = table.frame[column]
    blank = blank_mask(values)
    if blank.any():
        raise _fail(table, column, blank.idxmax(), "date is missing")
    is_datetime = ptypes.is_datetime64_any_dtype(values)
    date_objects = not is_datetime and values.dtype == object and values.map(lambda v: hasattr(v, "isoformat")).all()
    known = None
    if day_first and not is_datetime and not date_objects:
        known = _day_first_dates(table, column, values, values.astype("str").str.strip())
    if known is not None:
        out = known
    elif is_datetime:
        out = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) is not None else values
    elif date_objects:
        out = pd.to_datetime(values.astype("str"))
    else:
        s = values.astype("str").str.strip().str.replace(_WEEKDAY, "", regex=True)
        out = None
        for kwargs in _DATE_READINGS:
            try:
                with warnings.catch_warnings():  # pandas warns when it infers a day-first format itself
                    warnings.simplefilter("ignore", UserWarning)
                    out = pd.to_datetime(s, **kwargs)
                    if not kwargs:
                        out = _settle_day_month(table, column, s, out)
                break
            except (ValueError, TypeError):
                continue
        if out is None:
            coerced = pd.to_datetime(s, errors="coerce", format="mixed")
            at = coerced.isna().idxmax()
            raise _fail(table, column, at, f"{values[at]!r} is not a readable date")
        if getattr(out.dt, "tz", None) is not None:
            out = out.dt.tz_localize(None)
    out = out.dt.normalize()
    bad = (out < pd.Timestamp("1990-01-01")) | (out >= pd.Timestamp("2100-01-01"))  # in its own resolution: no overflow
    if bad.any():
        at = bad.idxmax()
        raise _fail(table, column, at, f"date {values[at]!r} is outside 1990-2100")
    return out.dt.as_unit("ns")


def check_currency(table: RawTable, column: str | None, codes: pd.Series) -> pd.Series:
    """Upper-case ISO 4217 codes; anything that is not three letters is an error naming its row."""
    codes = codes.str.upper()
    bad = codes.notna() & ~codes.str.fullmatch(r"[A-Z]{3}").fillna(False).astype(bool)
    if bad.any():
        at = bad.idxmax()
        raise _fail(table, column or "currency", at, f"{codes[at]!r} is not a three-letter currency code")
    return codes


__all__ = ["TEXT_EMPTY", "blank_mask", "text", "str_from_codes", "constant_str", "numbers", "timestamps", "dates", "check_currency"]
