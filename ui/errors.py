"""The error boundary every page runs inside (app.py): no raw exception, no traceback reaches a user.

An error that escapes a page is shown as one clear message with an error id; the traceback goes to the
server log under that id (through `core.errors.report_unexpected`, with secrets redacted by the
process-wide filter). Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``)
raises BaseExceptions, which pass through untouched.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.errors import LOGGER_NAME, is_user_error, report_unexpected, user_message
from ui.text import plain


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced after start-up)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _log_to_stderr() -> None:
    """The app's records go to the server's stderr, with time and level (once per process)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_marketing_suite", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._marketing_suite = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


_log_to_stderr()


def show_error(exc: BaseException, where: str) -> str:
    """Log ``exc`` under a new error id and show it as one message; returns the id."""
    error_id = report_unexpected(exc, where)
    if is_user_error(exc):
        st.error(f"{plain(user_message(exc))}  \n(error id `{error_id}`)", icon="⚠️")
    else:
        st.error(f"Something went wrong while {plain(where)}: an unexpected {type(exc).__name__}. Nothing more was "
                 f"done. The details are in the server log under error id `{error_id}`; reload the page to try "
                 "again, and quote the id if it keeps happening.", icon="⚠️")
    return error_id


@contextmanager
def error_boundary(where: str) -> Iterator[None]:
    """Run a page (or the app's frame) so that an unexpected error becomes a message with an error id."""
    try:
        yield
    except Exception as exc:  # BaseException (st.rerun / st.stop / st.switch_page) is not caught
        show_error(exc, where)


__all__ = ["error_boundary", "show_error"]
