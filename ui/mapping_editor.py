"""The column-mapping editor of one read file: its format (profile) and which column plays each role.

Shown for every file that was read, whatever detection concluded; opened, with the reason and the
roles still missing, when detection could not complete the mapping. Returns the edits as overrides
(``{"profile": ..., field: column}``) for `core.ingest.build_result`, or None when nothing changed.
"""

from __future__ import annotations

import streamlit as st

from core.ingest.mapping import MappingProposal, auto_map
from core.ingest.profiles import PROFILES

FORMATS = [name for name, p in PROFILES.items() if p.kind != "dimension"] + ["entity_history"]


def mapping_editor(proposal: MappingProposal, key: str, *, remembered: str | None = None) -> dict | None:
    mapping = proposal.mapping
    file = mapping.file
    title = f"Column mapping · {file}" + ("" if proposal.complete else " — needs your mapping")
    with st.expander(title, expanded=not proposal.complete):
        if not proposal.complete:
            st.warning(f"**Detection could not finish the mapping.** {proposal.reason}")
            if proposal.missing:
                st.markdown("Still missing: " + ", ".join(f"`{m}`" for m in proposal.missing))
        elif remembered:
            st.caption(f"The mapping saved as “{remembered}” for files with these columns is applied.")
        profile = st.selectbox("Format", FORMATS, index=FORMATS.index(mapping.profile) if mapping.profile in FORMATS else 0,
                               format_func=lambda n: PROFILES[n].label, key=f"{key}.profile")
        base = mapping if profile == mapping.profile else auto_map(file, mapping.columns, PROFILES[profile])
        frame = base.to_frame()
        edited = st.data_editor(
            frame, key=f"{key}.grid.{profile}", hide_index=True, width="stretch",
            disabled=["field", "method", "score", "required", "help"],
            column_config={
                "column": st.column_config.SelectboxColumn("column", options=list(base.columns), width="medium"),
                "help": st.column_config.TextColumn("what it is", width="large"),
                "field": st.column_config.TextColumn("role", width="small"),
                "score": st.column_config.NumberColumn("score", width="small"),
            },
        )
        # an empty cell comes back as None or NaN: compare normalized, so an untouched editor changes nothing
        picked = {row.field: (row.column if isinstance(row.column, str) and row.column else None) for row in edited.itertuples()}
        changed = {f: c for f, c in picked.items() if c != base.column(f)}
        if changed or profile != mapping.profile:
            return {**{k: v for k, v in base.as_dict().items() if v}, **changed, "profile": profile}
    return None


__all__ = ["mapping_editor", "FORMATS"]
