"""Budget moves keep the approved total: decreases first, increases funded only by what the decreases freed.

A plan that moves budget between campaigns (the optimizer splits a total, the autopilot balances raises
with cuts) is approved as a whole. Executed change by change it can stop part-way: a decrease is found
stale (someone edited the campaign since), fails, is blocked by a guardrail or skipped as concurrent, or
the process is killed. Sent in plan order, the increase of B could then land while the decrease of A did
not, and the account would spend more each day than anyone approved. So every plan is executed by one rule
(a plan of increases only, or of decreases only, is not affected by it):

* order (`execution_order`): budget decreases first, then every other change in plan order (the increases,
  bids and statuses), so every decrease is settled before the first increase is funded;
* the increases add at most what the decreases that reached their value (applied, or found already there)
  freed, plus the plan's approved net change: ``funding = clamp(freed + approved_net, 0, approved_increases)``.
  With every decrease applied, that is every increase in full, and the account's total is the approved one;
* short of that, the increases still open share what is left in proportion to their approved size, to the
  currency's unit, exactly (`core.money.split_exact`): one whose share is zero is ``held`` (not sent), one
  with a smaller share is sent with it and recorded ``reduced``; each names the decrease that did not apply;
* the allocation (`allocate`) is made once, after every decrease is settled, from the stored statuses, and
  stored with the changes (``funded_value``, statuses) in one transaction, so a resumed execution sends the
  same values. A change in flight when its executor died counts in full: it is never reduced after the fact.

Only what the plan itself did counts as freed: a decrease found stale frees nothing, even when someone else
lowered the campaign meanwhile (spending another person's cut is not what was approved). A rollback is a
plan like any other: its decreases (undoing the increases) go first, so it never overshoots either.
Budgets only: bids and statuses are not part of a daily-budget total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from core.changes import PlannedChange, display_value
from core.money import money_step, split_exact

DECREASE, OTHER, INCREASE = 0, 1, 2
#: A decrease that reached its value frees its amount: sent and applied, or found already there.
REACHED = ("applied", "unchanged")
#: An increase that is settled at its value (``funded_value`` when reduced) uses its amount of the funding.
USED = ("applied", "reduced", "unchanged", "applying")
#: The error code of a held or reduced change (the status says which).
FUNDING_CODE = "not_funded"
#: The rule in one sentence, for summaries that list no change numbers (the autopilot's dry run).
RULE = ("Budget decreases are executed first; the increases are funded only by what the decreases that applied "
        "freed: if one does not apply, the increases are reduced in proportion or held, so no increase takes the "
        "account above the approved total.")


def budget_move(c: PlannedChange) -> int:
    """`DECREASE`, `INCREASE` (a budget change with both values) or `OTHER`."""
    if c.field != "budget" or not isinstance(c.old_value, Decimal) or not isinstance(c.new_value, Decimal):
        return OTHER
    return DECREASE if c.new_value < c.old_value else INCREASE if c.new_value > c.old_value else OTHER


def execution_order(changes: Iterable) -> list:
    """``changes`` (`PlannedChange`, or tuples with one second) in the order they are executed: the budget
    decreases, then the other changes; plan order within each."""
    items = list(changes)

    def change(x) -> PlannedChange:
        return x if isinstance(x, PlannedChange) else x[1]

    return sorted(items, key=lambda x: (budget_move(change(x)) != DECREASE, change(x).seq))


def _money(v: Decimal, currency: str) -> str:
    return display_value("budget", v, currency)


def _signed(v: Decimal, currency: str) -> str:
    return ("+" if v >= 0 else "-") + _money(abs(v), currency)


_NOT_REACHED = {"stale": "was stale (it was changed by someone since the plan was made)",
                "failed": "failed", "blocked": "was blocked", "skipped": "was skipped", "held": "was held",
                "pending": "was not executed", "applying": "was not settled"}


def _why_not(c: PlannedChange) -> str:
    name = c.entity_name or c.external_id
    return (f"the decrease of {c.entity_type} {name} (change {c.seq}, {_money(c.old_value, c.currency)} → "
            f"{_money(c.new_value, c.currency)}) {_NOT_REACHED.get(c.status, c.status)}")


@dataclass(frozen=True)
class Allocation:
    """What the open increases of a plan may set: ``funded`` (seq -> the smaller value to send, with why) and
    ``held`` (seq -> why it is not sent at all). Empty when every open increase is funded in full."""

    funded: dict[int, tuple[Decimal, str]] = field(default_factory=dict)
    held: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.funded or self.held)


def allocate(changes: Sequence[PlannedChange], approved: set[int], platform: str | None = None) -> Allocation:
    """The funding of the open (pending) increases of a plan whose decreases are settled.

    ``changes`` carry their current status and ``funded_value``; ``approved`` are the seqs that passed the
    dry run (the rest were never approved and count for nothing). Increases already allocated (a
    ``funded_value``) keep it. Exact: every amount is a Decimal of whole steps of the currency on ``platform``
    (`core.money.money_step`: 0.01 USD, 1 JPY, 0.001 KWD, whole forints on Meta).
    """
    out = Allocation()
    mine = [c for c in changes if c.seq in approved and budget_move(c) != OTHER]
    for currency in sorted({c.currency for c in mine}):
        cs = [c for c in mine if c.currency == currency]
        unit = money_step(currency, platform)
        decs = [c for c in cs if budget_move(c) == DECREASE]
        incs = [c for c in cs if budget_move(c) == INCREASE]
        freed = sum((c.old_value - c.new_value for c in decs if c.status in REACHED), Decimal(0))
        net = sum((c.new_value - c.old_value for c in cs), Decimal(0))
        wanted = sum((c.new_value - c.old_value for c in incs), Decimal(0))
        funding = min(max(freed + net, Decimal(0)), wanted)
        used = sum((c.written_value - c.old_value for c in incs  # settled, in flight, or allocated before
                    if c.status in USED or (c.status == "pending" and c.funded_value is not None)), Decimal(0))
        open_ = [c for c in incs if c.status == "pending" and c.funded_value is None]
        need = sum((c.new_value - c.old_value for c in open_), Decimal(0))
        left = max(funding - used, Decimal(0)).quantize(unit, rounding=ROUND_FLOOR)
        if not open_ or left >= need:
            continue
        shares = split_exact([(c.new_value - c.old_value) * left / need for c in open_], left, currency, platform)
        missing = [_why_not(c) for c in decs if c.status not in REACHED]
        why = "; ".join(missing) or "the increases already sent used the funding"
        rule = (f"The plan's increases add only what its applied decreases freed ({_money(freed, currency)})"
                + (f" plus its approved net increase ({_money(net, currency)})" if net > 0 else "")
                + (f" less its approved net decrease ({_money(-net, currency)})" if net < 0 else "")
                + ", so no increase takes the account's daily budgets above the approved total")
        for c, share in zip(open_, shares):
            delta = c.new_value - c.old_value
            if share <= 0:
                out.held[c.seq] = f"held at {_money(c.old_value, currency)}: not funded: {why}. {rule}"
            elif share < delta:
                value = c.old_value + share
                if value == value.quantize(unit):  # "123.44", not "123.440000": the same amount
                    value = value.quantize(unit)
                reason = (f"reduced to {_money(value, currency)} ({_signed(share, currency)} of the approved "
                          f"{_signed(delta, currency)}): not fully funded: {why}. {rule}")
                out.funded[c.seq] = (value, reason)
    return out


def describe_rule(changes: Sequence[PlannedChange], approved: set[int]) -> str:
    """The dry run's statement of the order and the funding rule ("" when the plan has no decrease and increase)."""
    mine = [c for c in changes if c.seq in approved]
    decs = [c.seq for c in execution_order(mine) if budget_move(c) == DECREASE]
    incs = [c.seq for c in execution_order(mine) if budget_move(c) == INCREASE]
    if not decs or not incs:
        return ""
    totals = []
    for currency in sorted({c.currency for c in mine if budget_move(c) != OTHER}):
        cs = [c for c in mine if c.currency == currency and budget_move(c) != OTHER]
        now = sum((c.old_value for c in cs), Decimal(0))
        then = sum((c.new_value for c in cs), Decimal(0))
        totals.append(f"{_money(now, currency)} now, {_money(then, currency)} as approved")

    def seqs(xs: list[int]) -> str:
        return ", ".join(str(x) for x in xs)

    return (f"Execution order: the {len(decs)} budget decrease(s) first (change {seqs(decs)}), then the other "
            f"changes in plan order. The {len(incs)} increase(s) (change {seqs(incs)}) are funded only by what the "
              "decreases actually freed: if a decrease does not apply (stale, failed, blocked, skipped or "
              "interrupted), the increases are reduced in proportion, to the currency's unit, or held, and each says "
              "which decrease did not apply. So no increase takes the budgets this plan changes above the approved "
              "total (" + "; ".join(totals) + "), at any moment of the execution, a resumed one included.")


def shortfall_note(changes: Sequence[PlannedChange]) -> str:
    """One sentence for Review and History when increases of an executed plan were held or reduced ("" if none)."""
    held = [c.seq for c in changes if c.status == "held"]
    reduced = [c.seq for c in changes if c.status == "reduced"]
    if not held and not reduced:
        return ""
    parts = ([f"{len(held)} increase(s) held (change {', '.join(map(str, held))})"] if held else []) + \
            ([f"{len(reduced)} increase(s) reduced (change {', '.join(map(str, reduced))})"] if reduced else [])
    return (" and ".join(parts) + ": a budget decrease that funded them did not apply, so the account stays within "
            "the approved total. Each change's message names the decrease; once it is sorted out, a new plan from "
            "the live values can move the rest.")
