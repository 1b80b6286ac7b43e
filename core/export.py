"""Downloads: tables as CSV that a spreadsheet opens as data, never as formulas.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by
Excel, LibreOffice and Google Sheets (CSV injection, OWASP); a campaign, channel or file name can start
with any of them. Such a text cell (and header) gets a leading apostrophe, as OWASP recommends; numbers
stay numbers (``-12.5`` in a text column too: it cannot be a formula). Every download of the app goes
through `csv_bytes`.
"""

from __future__ import annotations

import re

import pandas as pd

#: First characters that make a spreadsheet treat a cell as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralize(value: object) -> object:
    """``value`` with a leading apostrophe when it is text a spreadsheet would run as a formula.

    >>> neutralize("=HYPERLINK(\\"http://x\\")"), neutralize("-12.5"), neutralize(-3)
    ('\\'=HYPERLINK("http://x")', '-12.5', -3)
    """
    if isinstance(value, str) and value[:1] in FORMULA_PREFIXES and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralized(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names cannot run as formulas."""
    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype) \
                or pd.api.types.is_bool_dtype(s.dtype):
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        out[col] = s.map(neutralize)
    out.columns = [neutralize(c) if isinstance(c, str) else c for c in out.columns]
    return out


def csv_bytes(frame: pd.DataFrame, *, index: bool = False) -> bytes:
    """``frame`` as UTF-8 CSV, safe to open in a spreadsheet (see the module docstring).

    Lines end in CRLF (RFC 4180), so a cell holding a carriage return or a newline is quoted, never split.
    Floats are written to 14 significant digits: a sum of cents reads 1014.45, not its binary remainder
    1014.4499999999998 (14 digits keep every cent below 10^12).
    """
    return neutralized(frame).to_csv(index=index, lineterminator="\r\n", float_format="%.14g").encode("utf-8")


__all__ = ["FORMULA_PREFIXES", "neutralize", "neutralized", "csv_bytes"]
