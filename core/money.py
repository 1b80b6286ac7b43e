"""Money in the domain: `Decimal` in currency units, converted only at platform boundaries."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

#: Currencies whose minor unit is the unit itself (Meta's offset 1); all others use 100.
ZERO_DECIMAL_CURRENCIES = frozenset(
    {"JPY", "KRW", "TWD", "CLP", "COP", "CRC", "HUF", "ISK", "IDR", "PYG", "VND"}
)


def to_decimal(value: object) -> Decimal:
    """Exact Decimal from int, str, Decimal or float (floats go through their shortest repr)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount of money")
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


def minor_unit_offset(currency: str) -> int:
    """How many minor units make one currency unit (Meta's per-currency offset)."""
    return 1 if currency.upper() in ZERO_DECIMAL_CURRENCIES else 100


def quantize_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's smallest billable unit (banker's rounding)."""
    exponent = Decimal(1) if minor_unit_offset(currency) == 1 else Decimal("0.01")
    return to_decimal(amount).quantize(exponent, rounding=ROUND_HALF_EVEN)


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


def split_exact(amounts, total: Decimal, currency: str) -> list[Decimal]:
    """``amounts`` rounded to the currency's unit so that they add up to exactly ``total``.

    Largest remainder: every amount is rounded down to the unit, then the units still missing go
    to the amounts that lost the most (ties to the earlier one). ``total`` must be a whole number
    of units within one unit per amount of the amounts' sum; raises ValueError otherwise.

    >>> split_exact([1.005, 1.005, 1.005], Decimal("3.02"), "USD")
    [Decimal('1.01'), Decimal('1.01'), Decimal('1.00')]
    """
    unit = Decimal(1) if minor_unit_offset(currency) == 1 else Decimal("0.01")
    total = to_decimal(total)
    if total != total.quantize(unit):
        raise ValueError(f"total {total} is not a whole number of {currency} units")
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
