"""The column-mapping editor of one read file: its format (profile) and which column plays each role.

Shown for every file that was read, whatever detection concluded; opened, with the reason and the
roles still missing, when detection could not complete the mapping. The roles a format needs get a
picker each; every role is in the grid below them. Returns the edits as overrides
(``{"profile": ..., field: column}``) for `core.ingest.build_result`, or None when nothing changed.
"""

from __future__ import annotations

import streamlit as st

from core.ingest.mapping import MappingProposal, auto_map
from core.ingest.profiles import PROFILES

FORMATS = list(PROFILES)
NONE = "(none)"
KEY_ROLES = {"journeys": ("channel", "source", "event_type", "conversion_flag", "value", "currency"),
             "performance": ("campaign_id", "campaign", "ad_set_id", "ad_set", "currency"), "paths": ("value", "nulls")}


def _key_roles(profile) -> list[str]:
    names = [f.name for f in profile.fields if f.required]
    names += [g for group in profile.one_of for g in group]
    names += [n for n in KEY_ROLES.get(profile.kind, ()) if n in profile.field_names]
    return list(dict.fromkeys(names))


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
        profile_name = st.selectbox("Format", FORMATS, index=FORMATS.index(mapping.profile),
                                    format_func=lambda n: PROFILES[n].label, key=f"{key}.profile")
        profile = PROFILES[profile_name]
        base = mapping if profile_name == mapping.profile else auto_map(file, mapping.columns, profile)
        options = [NONE, *base.columns]
        picked: dict[str, str | None] = {}
        roles = _key_roles(profile)
        cols = st.columns(3)
        for i, role in enumerate(roles):
            spec = profile.spec(role)
            current = base.column(role)
            choice = cols[i % 3].selectbox(
                f"{role}{' *' if spec.required else ''}", options, index=options.index(current) if current in options else 0,
                key=f"{key}.{profile_name}.role.{role}", help=spec.help or None)
            picked[role] = None if choice == NONE else choice
        with st.popover("All roles") if hasattr(st, "popover") else st.container():
            frame = base.to_frame()
            edited = st.data_editor(
                frame, key=f"{key}.grid.{profile_name}", hide_index=True, width="stretch",
                disabled=["field", "method", "score", "required", "help"],
                column_config={
                    "column": st.column_config.SelectboxColumn("column", options=list(base.columns), width="medium"),
                    "help": st.column_config.TextColumn("what it is", width="large"),
                    "field": st.column_config.TextColumn("role", width="small"),
                },
            )
        # an empty cell comes back as None or NaN: compare normalized, so an untouched editor changes nothing
        for row in edited.itertuples():
            if row.field not in picked:
                picked[row.field] = row.column if isinstance(row.column, str) and row.column else None
        changed = {f: c for f, c in picked.items() if c != base.column(f)}
        if changed or profile_name != mapping.profile:
            return {**{k: v for k, v in base.as_dict().items() if v}, **changed, "profile": profile_name}
    return None


__all__ = ["mapping_editor", "FORMATS"]
