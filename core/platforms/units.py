"""Money at the platform boundary: one conversion per platform, exact, on `Decimal`.

Meta wants integers in the account currency's unit scaled by Meta's per-currency offset
(`core.money.meta_offset`: 100 for USD/EUR/BHD, 1 for JPY/HUF/IDR; KWD has no Meta ad accounts);
Google wants int64 micros (1 unit = 1,000,000) that are a multiple of the currency's billable unit.
An amount the platform cannot express exactly (1.234 BHD for Meta, 0.5 JPY for Google) is refused
with the reason, never rounded: a budget reaches the platform to the cent (or fils) or not at all.
"""

from __future__ import annotations

from decimal import Decimal

from core.money import (
    MICROS_PER_UNIT,
    currency_code,
    google_billable_unit_micros,
    meta_offset,
    minor_unit,
    to_decimal,
)

MICROS = MICROS_PER_UNIT
INT64_MAX = 2**63 - 1


def _amount(amount: object, what: str) -> Decimal:
    value = to_decimal(amount)
    if not value.is_finite():
        raise ValueError(f"{what}: not a finite amount: {amount!r}")
    if value < 0:
        raise ValueError(f"{what}: negative amount {amount!r}")
    return value


def _scale_exact(value: Decimal, currency: str, factor: int, units: str, inexact: str) -> int:
    """``value * factor`` as a platform's int64, or ValueError: beyond int64 (checked before multiplying:
    a huge Decimal overflows the context, and ``int()`` of one takes minutes) or not whole (``inexact``)."""
    if value > Decimal(INT64_MAX) / factor:
        raise ValueError(f"{value} {currency} is beyond the largest amount {units} hold")
    scaled = value * factor
    if scaled != scaled.to_integral_value():
        raise ValueError(inexact)
    return int(scaled)


def meta_units(amount: object, currency: str, *, to_platform: bool = True) -> int | Decimal:
    """Convert between currency units (`Decimal`) and Meta's integer units (amount x offset).

    ``to_platform=True``: ``Decimal("60.00"), "USD" -> 6000``; ``Decimal("5000"), "JPY" -> 5000``; an amount
    finer than Meta's unit (``12.345 USD``, ``1.234 BHD``, ``1500.5 HUF``) or a currency Meta has no ad
    accounts in (KWD) raises ValueError naming it.
    ``to_platform=False``: Meta's value (int or the string it returns, e.g. ``"6000"``) -> ``Decimal("60.00")``
    at the currency's ISO precision (``"123"``, "BHD" -> ``Decimal("1.230")``).
    """
    cur = currency_code(currency)
    offset = meta_offset(cur)
    if to_platform:
        value = _amount(amount, "Meta amount")
        return _scale_exact(value, cur, offset, "Meta's integer units", (
            f"{value} {cur} cannot be sent to Meta exactly: Meta counts {cur} in steps of {Decimal(1) / offset} "
            f"(offset {offset}); refused rather than rounded"))
    raw = to_decimal(str(amount).strip()) if isinstance(amount, str) else to_decimal(amount)
    if not raw.is_finite() or raw != raw.to_integral_value():
        raise ValueError(f"Meta returned a non-integer minor-unit amount: {amount!r}")
    units = raw / offset
    iso = minor_unit(cur)
    return units.quantize(iso) if units == units.quantize(iso) else units


def google_units(amount: object, currency: str, *, to_platform: bool = True, billable: bool = True,
                 billable_unit_micros: int | None = None) -> int | Decimal:
    """Convert between currency units (`Decimal`) and Google Ads micros.

    ``to_platform=True``: the amount scaled to micros (``Decimal("12.34"), "USD" -> 12_340_000``;
    ``Decimal("1.234"), "KWD" -> 1_234_000``); an amount that is not a multiple of the billable unit
    (``billable_unit_micros``, read from the account's ``currency_constant``; by default the ISO minor unit)
    raises ValueError naming it.
    ``to_platform=False``: micros -> `Decimal` units; ``billable=True`` for budgets and bids (must be a
    multiple of the billable unit: anything else is reported, not rounded away), ``billable=False``
    for reported costs, which keep their full micro precision.
    """
    cur = currency_code(currency)
    unit = int(billable_unit_micros or google_billable_unit_micros(cur))
    if to_platform:
        value = _amount(amount, "Google amount")
        micros = _scale_exact(value, cur, MICROS, "Google's int64 micros", f"{value} {cur} is finer than a micro: it cannot be sent to Google exactly")
        if micros % unit:
            raise ValueError(f"{value} {cur} is not a whole number of Google's billable unit for {cur} "
                             f"({Decimal(unit) / MICROS} {cur}); refused rather than rounded")
        return micros
    micros = to_decimal(amount)
    if not micros.is_finite() or micros != micros.to_integral_value():
        raise ValueError(f"Google returned a non-integer micros amount: {amount!r}")
    units = micros / MICROS
    if not billable:
        return units
    if int(micros) % unit:
        raise ValueError(f"{amount!r} micros is not a whole number of billable {cur} units")
    iso = minor_unit(cur)
    return units.quantize(iso) if units == units.quantize(iso) else units.normalize()
