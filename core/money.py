"""Money in the domain: `Decimal` in currency units, converted only at platform boundaries.

Two concepts, kept apart here and nowhere else:

* the **ISO 4217 minor unit** of a currency (`currency_exponent`, `minor_unit`): the precision money is
  kept, checked and shown at inside the product (0.01 USD, 1 JPY, 0.001 KWD);
* each **platform's own unit** at its boundary (`meta_offset`, `google_billable_unit_micros`), which can be
  coarser than ISO (Meta counts HUF and TWD in whole units and BHD in hundredths) or missing altogether
  (Meta has no KWD ad accounts). `money_step` is the finest amount both sides can hold; the conversions
  themselves live in `core.platforms.units` and refuse, never round, an amount the platform cannot express.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import numpy as np

#: ISO 4217 minor-unit exponents other than 2 (every other active code has 2). Source: the ISO 4217
#: maintenance agency's list one (SIX Group), as mirrored by github.com/moneyphp/iso-currencies
#: (resources/current.php, 2024) and github.com/datasets/currency-codes. The codes ISO gives no minor
#: unit ("N.A.": metals, funds, testing) are refused by `currency_exponent` (see `_NOT_MONEY`).
ISO_EXPONENTS: dict[str, int] = {
    # no minor unit
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    # thousandths (fils, baisa, millime, dirham)
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    # ten-thousandths (units of account)
    "CLF": 4, "UYW": 4,
}

#: Meta's per-currency offset: how many of Meta's integer units make one currency unit, for every
#: currency an ad account may use. Source: Marketing API "Currency codes"
#: (developers.facebook.com/docs/marketing-api/currencies, updated 2024-04-16). A currency missing here
#: (KWD, OMR, IQD, LYD, TND, ...) cannot be an ad account's currency. Note that Meta's offsets are not
#: ISO's: BHD and JOD (ISO 3 decimals) are kept in hundredths, and COP, CRC, HUF, IDR, TWD (ISO 2) in
#: whole units; an amount finer than Meta's unit is refused at the boundary.
META_OFFSETS: dict[str, int] = {
    **dict.fromkeys(("CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND"), 1),
    **dict.fromkeys((
        "AED", "ARS", "AUD", "BDT", "BGN", "BHD", "BOB", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "DZD",
        "EGP", "EUR", "GBP", "GTQ", "HKD", "HNL", "HRK", "ILS", "INR", "JOD", "KES", "LTL", "LVL", "MOP",
        "MXN", "MYR", "NGN", "NIO", "NOK", "NZD", "PEN", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB",
        "SAR", "SEK", "SGD", "SKK", "THB", "TRY", "UAH", "USD", "UYU", "VEF", "VES", "ZAR"), 100),
}

#: Google Ads amounts: int64 micros, 1 unit = 1,000,000 micros, for every currency.
MICROS_PER_UNIT = 1_000_000


def to_decimal(value: object) -> Decimal:
    """Exact Decimal from int, str, Decimal or float (floats go through their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount of money")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, np.integer | np.floating):
        value = value.item()  # the Python int / float it holds (numpy's own repr is "np.float64(1.5)")
        if isinstance(value, int):
            return Decimal(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"not a finite amount: {value!r}")
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise ValueError(f"not an amount of money: {value!r}") from exc


#: The largest amount the money columns hold (``Numeric(20, 6)``): 14 digits before the point.
MAX_AMOUNT = Decimal("99999999999999.999999")


def bounded_amount(value: object) -> Decimal:
    """`to_decimal` for an amount that must be stored: finite and within ``±MAX_AMOUNT``, else ValueError.

    >>> bounded_amount("12.5")
    Decimal('12.5')
    """
    amount = to_decimal(value)
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"amount {value!r} is beyond the largest amount that can be stored ({MAX_AMOUNT:,})")
    return amount


#: ISO 4217 codes that name no money (testing, no currency, precious metals, units of account).
_NOT_MONEY = frozenset({"XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA"})


def is_iso_currency(code: object) -> bool:
    """True for an active ISO 4217 currency code in upper case (``"USD"``), false for anything else.

    >>> is_iso_currency("EUR"), is_iso_currency("eur"), is_iso_currency("US$"), is_iso_currency("XXX")
    (True, False, False, False)
    """
    import pycountry

    return (isinstance(code, str) and len(code) == 3 and code.isupper() and code not in _NOT_MONEY
            and pycountry.currencies.get(alpha_3=code) is not None)


def iso_currencies() -> list[str]:
    """Every active ISO 4217 code of money, sorted (what a currency picker offers): no XAU, XXX, XDR.

    >>> codes = iso_currencies(); ("KWD" in codes, "JPY" in codes, "XAU" in codes)
    (True, True, False)
    """
    import pycountry

    return sorted(c.alpha_3 for c in pycountry.currencies if is_iso_currency(c.alpha_3))


class UnsupportedCurrency(ValueError):
    """A currency the product or a platform cannot hold money in (the message names it and why)."""


def currency_code(currency: object) -> str:
    """``currency`` as an upper-case three-letter code; ValueError for anything else."""
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return currency.strip().upper()


def currency_exponent(currency: str) -> int:
    """ISO 4217 minor-unit exponent: 2 for USD, 0 for JPY, 3 for KWD; refuses codes that are not money.

    >>> currency_exponent("usd"), currency_exponent("JPY"), currency_exponent("KWD")
    (2, 0, 3)
    """
    code = currency_code(currency)
    if code in _NOT_MONEY:
        raise UnsupportedCurrency(f"{code} is not money (ISO 4217 gives it no minor unit)")
    return ISO_EXPONENTS.get(code, 2)


def minor_unit(currency: str) -> Decimal:
    """The ISO 4217 minor unit as an amount: ``Decimal('0.01')`` for USD, ``1`` for JPY, ``0.001`` for KWD."""
    return Decimal(1).scaleb(-currency_exponent(currency))


def meta_offset(currency: str) -> int:
    """Meta's offset for ``currency`` (100 for USD, 1 for JPY); refuses a currency Meta has no ad accounts in.

    >>> meta_offset("EUR"), meta_offset("HUF"), meta_offset("BHD")
    (100, 1, 100)
    """
    code = currency_code(currency)
    try:
        return META_OFFSETS[code]
    except KeyError:
        raise UnsupportedCurrency(
            f"Meta does not support {code} as an ad account currency (it is not in the Marketing API's "
            "currency table), so a Meta amount in it cannot be expressed") from None


def google_billable_unit_micros(currency: str) -> int:
    """Google's billable unit in micros when the account's ``currency_constant`` has not been read: the ISO
    minor unit (10,000 for USD, 1,000,000 for JPY, 1,000 for KWD). The adapter reads the live value."""
    return MICROS_PER_UNIT // 10 ** min(currency_exponent(currency), 6)


def platform_unit(currency: str, platform: str | None = None) -> Decimal:
    """The smallest amount ``platform`` can hold in ``currency`` (None / sandbox: the ISO minor unit).

    >>> platform_unit("KWD"), platform_unit("HUF", "meta"), platform_unit("BHD", "meta")
    (Decimal('0.001'), Decimal('1'), Decimal('0.01'))
    """
    if platform == "meta":
        return Decimal(1) / meta_offset(currency)
    if platform == "google":
        return Decimal(google_billable_unit_micros(currency)) / MICROS_PER_UNIT
    return minor_unit(currency)


def platform_refusal(currency: str, platform: str | None) -> str:
    """Why ``platform`` cannot hold money in ``currency`` ("" when it can): Meta has no KWD ad accounts.

    >>> platform_refusal("EUR", "meta"), platform_refusal("KWD", "meta")[:37]
    ('', 'Meta does not support KWD as an ad ac')
    """
    try:
        platform_unit(currency, platform)
    except ValueError as exc:
        return str(exc)
    return ""


def money_step(currency: str, platforms: str | Iterable[str] | None = None) -> Decimal:
    """The step budgets and bids in ``currency`` move by: the ISO minor unit, or the coarsest unit of the
    ``platforms`` they are sent to when that is coarser (a HUF budget for Meta moves by whole forints).

    >>> money_step("KWD"), money_step("HUF", ["sandbox", "meta"]), money_step("USD", "google")
    (Decimal('0.001'), Decimal('1'), Decimal('0.01'))
    """
    names = [platforms] if isinstance(platforms, str) else list(platforms or [])
    step = minor_unit(currency)
    for name in names:
        unit = platform_unit(currency, name)
        if unit > step:
            step = unit
    return step


def quantize_money(amount: object, currency: str, platforms: str | Iterable[str] | None = None) -> Decimal:
    """Round to the currency's `money_step` (banker's rounding): for amounts the product computes.

    >>> quantize_money(Decimal("1.2345"), "KWD"), quantize_money(Decimal("2.5"), "JPY")
    (Decimal('1.234'), Decimal('2'))
    """
    return to_decimal(amount).quantize(money_step(currency, platforms), rounding=ROUND_HALF_EVEN)


def is_whole_units(amount: object, currency: str, platforms: str | Iterable[str] | None = None) -> bool:
    """True when ``amount`` is a whole number of the currency's `money_step` (nothing to round away)."""
    value = to_decimal(amount)
    return value.is_finite() and value % money_step(currency, platforms) == 0


def money_places(currency: object) -> int:
    """Decimals an amount in ``currency`` is shown with: its ISO exponent; 2 for a missing or unknown code.

    Several currencies (a list, or codes joined by "/" as a plan over two accounts names them) give the
    finest of their exponents, so an amount that mixes them loses no digit of any of them.

    >>> money_places("KWD"), money_places("JPY"), money_places(None), money_places(["JPY", "KWD"]), money_places("USD/KWD")
    (3, 0, 2, 3, 3)
    """
    if isinstance(currency, str) and "/" in currency:
        currency = currency.split("/")
    if currency is not None and not isinstance(currency, str) and isinstance(currency, Iterable):
        places = [money_places(c) for c in currency]
        return max(places) if places else 2
    try:
        return currency_exponent(currency)
    except ValueError:
        return 2


def format_money(amount: object, currency: object, *, signed: bool = False, code: bool = False) -> str:
    """``amount`` with thousands separators at the currency's ISO precision: ``1,234.500`` for KWD.

    >>> format_money(1234.5, "KWD"), format_money(Decimal("1500"), "JPY"), format_money(-3, "USD", signed=True)
    ('1,234.500', '1,500', '-3.00')
    >>> format_money(float("nan"), "USD")  # no amount (an undefined ratio): a dash, never "nan"
    '—'
    """
    if isinstance(amount, float | np.floating) and not np.isfinite(amount):
        return "—"
    text = f"{to_decimal(amount):{'+' if signed else ''},.{money_places(currency)}f}"
    return f"{text} {currency}" if code and currency else text


#: Cells above which `money_table` rounds a copy instead of styling: a Styler reached the browser in 0.24 s at
#: 14,000 cells and 1.9 s at 140,000, and Streamlit refuses one over pandas' ``styler.render.max_elements``
#: (262,144 cells: an attribution table of 40,000 campaign rows).
STYLED_CELLS = 20_000


def money_table(frame, amounts: Iterable[str], currency, *, signed: Iterable[str] = ()):
    """``frame`` as a pandas Styler that shows each of the ``amounts`` columns at its currency's ISO precision
    (as `format_money` does): KWD 1.2345 as ``1.234``, JPY as ``1,500``, while the cells keep their exact values
    (sorting, downloads). ``currency`` is one code for the whole table (or several joined by "/", see
    `money_places`), or a sequence of each row's code, in row order (a table whose rows are in different currencies); ``signed``
    columns show their sign. Empty cells stay empty.

    A frame of more than `STYLED_CELLS` cells comes back as a copy whose amounts are rounded to each row's
    precision instead (shown as plain numbers: no thousands separator, no forced trailing zeros, no sign), so
    a large table stays quick and never meets Streamlit's limit; download the frame itself for exact values.

    >>> import pandas as pd
    >>> styled = money_table(pd.DataFrame({"v": [1.2345, 1500.0]}), ["v"], ["KWD", "JPY"])
    >>> styled.to_string(delimiter=" ").splitlines()[1:]
    ['0 1.234', '1 1,500']
    """
    import pandas as pd

    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    cols = [c for c in amounts if c in frame.columns]
    signs = set(signed)
    if isinstance(currency, str) or currency is None:
        places = np.full(len(frame), money_places(currency), dtype=np.int64)
    else:
        places = np.fromiter((money_places(c) for c in currency), dtype=np.int64, count=len(frame))
    if frame.size > STYLED_CELLS:
        rounded = frame.copy()
        for col in cols:
            values = pd.to_numeric(rounded[col], errors="coerce").astype(float)
            rounded[col] = np.select([places == p for p in np.unique(places)],
                                     [values.round(int(p)) for p in np.unique(places)], values)
        return rounded
    styler = frame.style
    for p in np.unique(places):
        rows = frame.index[places == p]
        for col in cols:
            styler = styler.format(
                lambda v, p=int(p), s=col in signs: "" if pd.isna(v) else f"{to_decimal(v):{'+' if s else ''},.{p}f}",
                subset=pd.IndexSlice[rows, [col]])
    return styler


def split_exact(amounts, total: Decimal, currency: str, platforms: str | Iterable[str] | None = None) -> list[Decimal]:
    """``amounts`` rounded to the currency's `money_step` so that they add up to exactly ``total``.

    Largest remainder: every amount is rounded down to the step, then the steps still missing go
    to the amounts that lost the most (ties to the earlier one). ``total`` must be a whole number
    of steps within one step per amount of the amounts' sum; raises ValueError otherwise.

    >>> split_exact([1.005, 1.005, 1.005], Decimal("3.02"), "USD")
    [Decimal('1.01'), Decimal('1.01'), Decimal('1.00')]
    >>> split_exact([0.4115, 0.4115, 0.4115], Decimal("1.234"), "KWD")
    [Decimal('0.412'), Decimal('0.411'), Decimal('0.411')]
    """
    unit = money_step(currency, platforms)
    total = to_decimal(total)
    if total != total.quantize(unit):
        raise ValueError(f"total {total} is not a whole number of {currency} {unit} steps")
    exact = [to_decimal(float(a)) if not isinstance(a, Decimal) else a for a in amounts]
    if any(a < 0 for a in exact):
        raise ValueError("amounts to split must not be negative")
    floors = [(a / unit).to_integral_value(rounding="ROUND_FLOOR") for a in exact]
    missing = int((total / unit) - sum(floors))
    if not 0 <= missing <= len(exact):
        raise ValueError(f"total {total} is not within one unit per amount of the amounts' sum {sum(exact)}")
    remainders = sorted(range(len(exact)), key=lambda i: (-(exact[i] / unit - floors[i]), i))
    bump = set(remainders[:missing])
    return [((floors[i] + (1 if i in bump else 0)) * unit).quantize(unit) for i in range(len(exact))]
