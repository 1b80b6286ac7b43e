"""The one download button for tables: CSV through `core.export.csv_bytes` (no formula injection)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.export import csv_bytes


def download_csv(frame: pd.DataFrame, label: str, filename: str, *, key: str, container=None, **kwargs) -> None:
    """A download button for ``frame`` as a spreadsheet-safe CSV; never reruns the page."""
    (container or st).download_button(label, csv_bytes(frame), filename, "text/csv", key=key, on_click="ignore", **kwargs)


__all__ = ["download_csv"]
