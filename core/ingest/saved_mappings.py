"""Column mappings kept in the workspace: remembered per source shape (the fingerprint of a file's
column set), so the second upload of the same export needs no clicks, and saved by name, so the
command line can reuse them (``--mapping NAME``)."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import delete, select

from core.access import Role, guarded
from core.store.db import transaction
from core.store.models import SavedMapping, utcnow

from .errors import IngestError
from .mapping import ColumnMapping, compact, shape_fingerprint
from .profiles import PROFILES


def _stored(mapping: ColumnMapping) -> dict:
    return {k: v for k, v in mapping.as_dict().items() if v is not None}


@guarded(Role.ANALYST, "mapping.save", target="{name}")
def save_mapping(engine, workspace_id: str, mapping: ColumnMapping, name: str | None = None, *, actor=None) -> str:
    """Keep ``mapping`` under ``name`` (default: its file and fingerprint); an existing name is
    replaced. Returns the name."""
    name = (name or f"{mapping.file} · {mapping.fingerprint[:8]}").strip()[:200]
    if not name:
        raise IngestError("a saved mapping needs a name")
    with transaction(engine, workspace_id) as session:
        row = session.scalar(select(SavedMapping).where(SavedMapping.workspace_id == workspace_id, SavedMapping.name == name))
        if row is None:
            row = SavedMapping(workspace_id=workspace_id, name=name, created_at=utcnow())
            session.add(row)
        row.fingerprint = mapping.fingerprint
        row.profile = mapping.profile
        row.fields = _stored(mapping)
        row.columns = list(mapping.columns)
        row.updated_at = utcnow()
    return name


def _resolve(fields: dict, profile: str, columns) -> dict:
    """Stored ``{field: column}`` against this file's columns (matched in compact form, so a column
    renamed only in case or punctuation still matches); fields whose column is gone are dropped."""
    by_compact = {compact(c): c for c in columns}
    known = set(PROFILES[profile].field_names) if profile in PROFILES else set()
    out: dict = {"profile": profile}
    for field, column in fields.items():
        if field in known and compact(column) in by_compact:
            out[field] = by_compact[compact(column)]
    return out


def remembered_overrides(engine, workspace_id: str, columns) -> tuple[dict, str] | None:
    """(overrides, name) of the newest mapping saved for this column set, or None."""
    fingerprint = shape_fingerprint(columns)
    with transaction(engine, workspace_id) as session:
        row = session.scalar(select(SavedMapping).where(SavedMapping.workspace_id == workspace_id, SavedMapping.fingerprint == fingerprint)
                             .order_by(SavedMapping.updated_at.desc(), SavedMapping.id.desc()).limit(1))
        if row is None:
            return None
        return _resolve(row.fields, row.profile, columns), row.name


def named_overrides(engine, workspace_id: str, name: str, columns=None) -> dict:
    """The overrides of the mapping saved as ``name`` (resolved against ``columns`` when given)."""
    with transaction(engine, workspace_id) as session:
        row = session.scalar(select(SavedMapping).where(SavedMapping.workspace_id == workspace_id, SavedMapping.name == name))
        if row is None:
            names = session.scalars(select(SavedMapping.name).where(SavedMapping.workspace_id == workspace_id)).all()
            hint = f"; saved mappings: {', '.join(sorted(names))}" if names else "; none is saved yet (--save-mapping NAME)"
            raise IngestError(f"no saved mapping named {name!r} in workspace {workspace_id!r}{hint}")
        fields, profile = dict(row.fields), row.profile
    if columns is None:
        return {"profile": profile, **fields}
    return _resolve(fields, profile, columns)


def list_mappings(engine, workspace_id: str) -> pd.DataFrame:
    with transaction(engine, workspace_id) as session:
        rows = session.execute(select(SavedMapping.name, SavedMapping.profile, SavedMapping.fields, SavedMapping.updated_at)
                               .where(SavedMapping.workspace_id == workspace_id).order_by(SavedMapping.updated_at.desc())).all()
    return pd.DataFrame([{"name": r.name, "format": PROFILES[r.profile].label if r.profile in PROFILES else r.profile,
                          "mapping": ", ".join(f"{k}={v}" for k, v in r.fields.items()), "saved": r.updated_at} for r in rows],
                        columns=["name", "format", "mapping", "saved"])


@guarded(Role.ANALYST, "mapping.delete", target="{name}")
def delete_mapping(engine, workspace_id: str, name: str, *, actor=None) -> bool:
    with transaction(engine, workspace_id) as session:
        return session.execute(delete(SavedMapping).where(SavedMapping.workspace_id == workspace_id, SavedMapping.name == name)).rowcount > 0


__all__ = ["save_mapping", "remembered_overrides", "named_overrides", "list_mappings", "delete_mapping"]
