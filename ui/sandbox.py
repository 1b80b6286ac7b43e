"""The fields that name a new sandbox ad account (its id and currency), shared by the pages that make one."""

from __future__ import annotations

import streamlit as st

from core.money import iso_currencies
from core.optimize import session as S
from ui.context import actor
from ui.text import plain


def new_sandbox_fields(id_column, currency_column, engine, workspace_id: str, *, id_key: str, currency_key: str,
                       id_label: str = "Account id") -> tuple[str, str]:
    """(account id, currency) typed for a new sandbox account: the first free id and USD by default, any ISO 4217
    code of money; `core.optimize.session.ensure_sandbox` checks and makes it."""
    account_id = id_column.text_input(id_label, value=S.next_sandbox_account(engine, workspace_id), key=id_key)
    codes = iso_currencies()
    currency = currency_column.selectbox("Currency", codes, index=codes.index("USD"), key=currency_key,
                                         help="ISO 4217; budgets, bids and values of the account are kept at its minor unit.")
    return account_id, currency


def open_sandbox(engine, workspace_id: str, account_id: str, currency: str, *, spinner: str):
    """`ensure_sandbox` behind a spinner: the account's data source, or None after showing why it was refused."""
    try:
        with st.spinner(spinner):
            return S.ensure_sandbox(engine, workspace_id, account_id=account_id, currency=currency, actor=actor())
    except S.OptimizerInputError as exc:
        st.error(plain(exc))
        return None
