"""The one download button for tables: CSV through `core.export.csv_bytes` (no formula injection)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.export import csv_bytes


def download_csv(frame: pd.DataFrame, label: str, filename: str, *, key: str, container=None, **kwargs) -> None:
    """A download button for ``frame`` as a spreadsheet-safe CSV; never reruns the page."""
    (container or st).download_button(label, csv_bytes(frame), filename, "text/csv", key=key, on_click="ignore", **kwargs)


def download_text(text: str, label: str, filename: str, *, key: str, mime: str = "text/plain", container=None) -> None:
    """A download button for a text that is not a table (e.g. the SQL a pushdown runs)."""
    (container or st).download_button(label, text.encode("utf-8"), filename, mime, key=key, on_click="ignore")


__all__ = ["download_csv", "download_text"]
