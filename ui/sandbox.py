"""The fields that name a new sandbox ad account (its id and currency), shared by the pages that make one."""

from __future__ import annotations

from core.money import iso_currencies
from core.optimize import session as S


def new_sandbox_fields(id_column, currency_column, engine, workspace_id: str, *, id_key: str, currency_key: str,
                       id_label: str = "Account id") -> tuple[str, str]:
    """(account id, currency) typed for a new sandbox account: the first free id and USD by default, any ISO 4217
    code of money; `core.optimize.session.ensure_sandbox` checks and makes it."""
    account_id = id_column.text_input(id_label, value=S.next_sandbox_account(engine, workspace_id), key=id_key)
    codes = iso_currencies()
    currency = currency_column.selectbox("Currency", codes, index=codes.index("USD"), key=currency_key,
                                         help="ISO 4217; budgets, bids and values of the account are kept at its minor unit.")
    return account_id, currency
