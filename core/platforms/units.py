"""Money at the platform boundary: one conversion per platform, exact, on `Decimal`.

Meta wants integers in the account currency's minor unit (offset 100 for USD/EUR, 1 for JPY/IDR...);
Google wants int64 micros (1 unit = 1,000,000) that are a multiple of the currency's billable unit.
Amounts are rounded to the billable unit (banker's rounding, `core.money.quantize_money`) and then
scaled exactly, so no float ever touches a budget and no cent is lost or invented.
"""

from __future__ import annotations

from decimal import Decimal

from core.money import minor_unit_offset, quantize_money, to_decimal

MICROS = 1_000_000


def _amount(amount: object, what: str) -> Decimal:
    value = to_decimal(amount)
    if not value.is_finite():
        raise ValueError(f"{what}: not a finite amount: {amount!r}")
    if value < 0:
        raise ValueError(f"{what}: negative amount {amount!r}")
    return value


def _check_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency.strip()) != 3 or not currency.strip().isalpha():
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return currency.strip().upper()


def meta_units(amount: object, currency: str, *, to_platform: bool = True) -> int | Decimal:
    """Convert between currency units (`Decimal`) and Meta's integer minor units.

    ``to_platform=True``: ``Decimal("60.00"), "USD" -> 6000``; ``Decimal("5000"), "JPY" -> 5000``.
    ``to_platform=False``: Meta's value (int or the string it returns, e.g. ``"6000"``) -> ``Decimal("60.00")``.
    """
    cur = _check_currency(currency)
    offset = minor_unit_offset(cur)
    if to_platform:
        value = quantize_money(_amount(amount, "Meta amount"), cur)
        minor = value * offset
        if minor != minor.to_integral_value():  # cannot happen after quantize; guard the invariant
            raise ValueError(f"Meta amount {amount!r} {cur} is not a whole number of minor units")
        return int(minor)
    raw = to_decimal(str(amount).strip()) if isinstance(amount, str) else to_decimal(amount)
    if raw != raw.to_integral_value():
        raise ValueError(f"Meta returned a non-integer minor-unit amount: {amount!r}")
    exponent = Decimal(1) if offset == 1 else Decimal("0.01")
    return (raw / offset).quantize(exponent)


def google_units(amount: object, currency: str, *, to_platform: bool = True, billable: bool = True) -> int | Decimal:
    """Convert between currency units (`Decimal`) and Google Ads micros.

    ``to_platform=True``: the amount is rounded to the currency's billable unit and scaled to micros
    (``Decimal("12.34"), "USD" -> 12_340_000``; ``Decimal("1500"), "JPY" -> 1_500_000_000``).
    ``to_platform=False``: micros -> `Decimal` units; ``billable=True`` for budgets and bids (must be a
    multiple of the billable unit: anything else is reported, not rounded away), ``billable=False``
    for reported costs, which keep their full micro precision.
    """
    cur = _check_currency(currency)
    if to_platform:
        value = quantize_money(_amount(amount, "Google amount"), cur)
        return int(value * MICROS)
    micros = to_decimal(amount)
    if micros != micros.to_integral_value():
        raise ValueError(f"Google returned a non-integer micros amount: {amount!r}")
    units = micros / MICROS
    if not billable:
        return units
    exact = quantize_money(units, cur)
    if exact != units:
        raise ValueError(f"{amount!r} micros is not a whole number of billable {cur} units")
    return exact
