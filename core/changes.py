"""Change plans: the draft changes the optimizer proposes and the rules every plan obeys.

`DraftChange` is the form in which recommendations leave the optimizer and enter a change plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class DraftChange:
    """A proposed change to one entity field, with why and how sure we are.

    ``old_value``/``new_value`` are `Decimal` currency units for budget and bid, a status string
    (ACTIVE/PAUSED) for status. ``confidence`` is 0-100. ``auto_approve`` marks a change above the
    user's confidence threshold (it is only honoured when the user switched auto-approval on).
    """

    platform: str
    account_id: str
    entity_type: str
    external_id: str
    entity_name: str
    field: str
    old_value: Decimal | str | None
    new_value: Decimal | str
    currency: str
    reason: str
    confidence: float
    auto_approve: bool = False
