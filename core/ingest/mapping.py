"""Column auto-mapping: which column plays which role (`core.ingest.profiles`), found by exact
synonyms first, then fuzzy matching with rapidfuzz. The result, a `ColumnMapping`, is what the Data
page shows for the user to confirm or edit, for every file that was read; an edited mapping (or a
plain ``{field: column}`` dict, as ``--map field=column`` gives on the command line) is applied on the
next read. When detection cannot complete a mapping, `MappingNeeded` carries the best candidate,
the reason and the roles still missing, so the editor can open on it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from .errors import IngestError
from .profiles import DELIVERY_MARKERS, EVENTS, PERFORMANCE_MARKERS, PROFILES, FieldSpec, Profile

#: Fuzzy matches scoring below this (0-100) are not used.
FUZZY_CUTOFF = 88.0
#: Columns that resemble a role at least this much are "the columns that matter" in messages.
RELEVANT_CUTOFF = 75.0
#: Words that make a column a candidate for the roles every event file needs (who, when, which channel).
ROLE_WORDS = frozenset({"user", "users", "visitor", "customer", "cookie", "client", "anonymous", "person", "uid", "buyer", "member",
                        "time", "timestamp", "tstamp", "date", "datetime", "at", "start", "ts", "day",
                        "channel", "source", "medium", "campaign", "utm", "referrer", "referer", "order", "revenue", "value",
                        "spend", "cost", "event", "conversion", "converted", "path"})


def _folded(name) -> str:
    """Lower case without accents: a localized export's ``Impressões`` reads as ``impressoes``."""
    text = str(name).lower()
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def compact(name: str) -> str:
    """Lower-case letters and digits only: ``"Campaign ID"``, ``campaign_id`` and ``campaign.id`` agree."""
    return re.sub(r"[^a-z0-9]", "", _folded(name))


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", _folded(name)).strip("_")


def shape_fingerprint(columns) -> str:
    """A short, order-free fingerprint of a file's column set: the same export gives the same key, so
    a mapping confirmed once is applied again without clicks."""
    names = sorted({compact(c) for c in columns})
    return hashlib.sha256("\x1f".join(names).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class FieldMatch:
    column: str | None
    method: str  # synonym | fuzzy | override | remembered | missing
    score: float  # 100 for synonyms and overrides, the rapidfuzz score for fuzzy matches


@dataclass(frozen=True)
class ColumnMapping:
    """Canonical field -> source column of one file, with how each was found."""

    file: str
    profile: str
    fields: dict[str, FieldMatch]
    columns: tuple[str, ...] = field(default=())  # the file's columns, for an editor's choices

    @property
    def kind(self) -> str:
        return PROFILES[self.profile].kind

    @property
    def fingerprint(self) -> str:
        return shape_fingerprint(self.columns)

    def column(self, name: str) -> str | None:
        m = self.fields.get(name)
        return m.column if m else None

    def as_dict(self) -> dict[str, str | None]:
        return {k: m.column for k, m in self.fields.items()}

    def with_overrides(self, overrides: dict[str, str | None], method: str = "override") -> "ColumnMapping":
        """The mapping with fields set by hand (None unmaps a field); unknown fields/columns are errors."""
        spec = PROFILES[self.profile]
        names = set(spec.field_names)
        fields = dict(self.fields)
        for key, col in overrides.items():
            if key == "profile":
                continue
            if key not in names:
                raise IngestError(f"mapping names unknown field {key!r} for {spec.label}; fields: {', '.join(sorted(names))}", file=self.file)
            if col is not None and col not in self.columns:
                near = _closest(col, self.columns)
                hint = f" (did you mean {near!r}?)" if near else ""
                raise IngestError(f"mapping sends field {key!r} to column {col!r}, which the file does not have{hint}",
                                  file=self.file, column=col)
            fields[key] = FieldMatch(col, method if col is not None else "missing", 100.0 if col is not None else 0.0)
        # a column plays one role: a hand-set field takes it away from an automatic match
        taken = {fields[k].column: k for k in overrides if k != "profile" and fields.get(k) and fields[k].column}
        for name, m in list(fields.items()):
            if m.column in taken and taken[m.column] != name and name not in overrides:
                fields[name] = FieldMatch(None, "missing", 0.0)
        return replace(self, fields=fields)

    def missing_required(self) -> list[str]:
        spec = PROFILES[self.profile]
        missing = [f.name for f in spec.fields if f.required and self.column(f.name) is None]
        for group in spec.one_of:
            if not any(self.column(g) for g in group):
                missing.append(" or ".join(group))
        return missing

    def to_frame(self) -> pd.DataFrame:
        """One row per canonical field: what the Data page shows in its mapping editor."""
        spec = PROFILES[self.profile]
        return pd.DataFrame(
            [
                {"field": f.name, "column": self.column(f.name), "method": self.fields[f.name].method,
                 "score": round(self.fields[f.name].score, 1), "required": f.required, "help": f.help}
                for f in spec.fields
            ]
        )


@dataclass(frozen=True)
class MappingProposal:
    """What detection made of one file: the mapping (complete or the best candidate), and when it is
    incomplete, why, and the roles still missing."""

    mapping: ColumnMapping
    reason: str = ""
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.missing and not self.reason


class MappingNeeded(IngestError):
    """A file was read, but its columns could not all be given a role: map them (the editor, or
    ``--map field=column``) and read again. ``proposals`` holds every file's mapping."""

    def __init__(self, proposals: list[MappingProposal]):
        self.proposals = proposals
        bad = [p for p in proposals if not p.complete]
        first = bad[0]
        super().__init__(first.reason, file=first.mapping.file,  # the role that is missing, as the column to supply
                         column=first.missing[0] if first.missing and " or " not in first.missing[0] else None)


def _closest(name: str, columns) -> str | None:
    best = max(((fuzz.ratio(_snake(name), _snake(c)), c) for c in columns), default=(0, None))
    return best[1] if best[0] >= 70 else None


#: Words that qualify an id without changing what it identifies: ``User_ID_Anon`` and ``hashed_user_id``
#: are the user id, anonymized.
_QUALIFIERS = frozenset({"anon", "anonymized", "anonymised", "hashed", "hash", "pseudo", "pseudonymized",
                         "pseudonymised", "masked", "encrypted", "obfuscated", "sha256", "md5"})


def _unqualified(name: str) -> str | None:
    """The compact name without qualifier words (`_QUALIFIERS`), or None when it has none, or when what is
    left is a bare ``id`` (``id_hash`` names nothing in particular)."""
    words = _snake(name).split("_")
    kept = [w for w in words if w not in _QUALIFIERS]
    plain = "".join(kept)
    return plain if plain not in ("", "id") and len(kept) < len(words) else None


def _signature_ok(profile: Profile, present: set[str]) -> bool:
    if any(not (present & {compact(x) for x in group}) for group in profile.signature):
        return False
    return not (present & {compact(x) for x in profile.absent})


def auto_map(file: str, columns, profile: Profile, *, fuzzy: bool = True) -> ColumnMapping:
    """Map each field of ``profile`` to a column: exact synonym (compact form) first, then fuzzy."""
    columns = [str(c) for c in columns]
    by_compact: dict[str, str] = {}
    for col in columns:
        by_compact.setdefault(compact(col), col)
    for col in columns:  # a qualified id (User_ID_Anon) answers to its plain name when no column has that name
        plain = _unqualified(col)
        if plain:
            by_compact.setdefault(plain, col)
    used: set[str] = set()
    fields: dict[str, FieldMatch] = {}
    for spec in profile.fields:
        for syn in spec.synonyms:
            col = by_compact.get(compact(syn))
            if col is not None and col not in used:
                fields[spec.name] = FieldMatch(col, "synonym", 100.0)
                used.add(col)
                break
    if fuzzy and columns:
        # All columns against all synonyms of a field in one C-level matrix (rapidfuzz.process.cdist):
        # linear in the number of columns, with no Python call per (column, synonym) pair.
        snakes = [_snake(c) for c in columns]
        taken = np.fromiter((c in used for c in columns), dtype=bool, count=len(columns))
        for spec in profile.fields:
            if spec.name in fields:
                continue
            score = _resemblance(snakes, spec)
            score[taken] = -1.0
            at = int(np.argmax(score))  # the first column with the best score
            if score[at] > 0 and score[at] >= FUZZY_CUTOFF:
                fields[spec.name] = FieldMatch(columns[at], "fuzzy", float(score[at]))
                used.add(columns[at])
                taken[at] = True
    ordered = {spec.name: fields.get(spec.name, FieldMatch(None, "missing", 0.0)) for spec in profile.fields}
    return ColumnMapping(file, profile.name, ordered, tuple(columns))


def _resemblance(snakes: list[str], spec: FieldSpec) -> np.ndarray:
    """How much each (snake-cased) column resembles the field's synonyms, 0-100: all columns against all
    synonyms in one C-level matrix (rapidfuzz.process.cdist), no Python call per pair."""
    syns = [_snake(syn) for syn in spec.synonyms]
    return np.maximum(process.cdist(snakes, syns, scorer=fuzz.ratio, dtype=np.float64),
                      process.cdist(snakes, syns, scorer=fuzz.token_sort_ratio, dtype=np.float64)).max(axis=1)


def relevant_columns(columns, profile: Profile | None = None, limit: int = 15) -> tuple[list[str], int]:
    """The columns that look like a role (of ``profile``, or of any profile), best first, and how
    many columns the file has: what an error message lists instead of the first 20 of 130."""
    columns = [str(c) for c in columns]
    specs = profile.fields if profile else [f for p in PROFILES.values() for f in p.fields]
    if not columns:
        return [], 0
    snakes = [_snake(c) for c in columns]
    compacts = np.array([compact(c) for c in columns], dtype=object)
    best = np.zeros(len(columns))
    for spec in specs:
        exact = np.isin(compacts, [compact(syn) for syn in spec.synonyms])
        best = np.maximum(best, np.where(exact, 100.0, _resemblance(snakes, spec)))
    role_word = np.fromiter((bool(set(s.split("_")) & ROLE_WORDS) for s in snakes), dtype=bool, count=len(columns))
    best = np.where(role_word, np.maximum(best, RELEVANT_CUTOFF + 5), best)
    keep = np.flatnonzero(best >= RELEVANT_CUTOFF)
    ranked = keep[np.lexsort((keep, -best[keep]))]  # best first, then in file order
    return [columns[i] for i in ranked[:limit]], len(columns)


def _columns_text(columns, profile: Profile | None = None) -> str:
    relevant, total = relevant_columns(columns, profile)
    if total <= 12:
        return f"Columns found: {', '.join(map(repr, columns))}"
    if not relevant:
        return f"None of its {total} columns looks like a known role (first ones: {', '.join(map(repr, list(columns)[:8]))})"
    return f"Of its {total} columns these look relevant: {', '.join(map(repr, relevant))}"


def _lacks_text(profile: Profile, missing) -> str:
    parts = []
    for name in missing:
        if " or " in name:
            parts.append(name)
        else:
            parts.append(f"{name} (e.g. {', '.join(profile.spec(name).synonyms[:4])})")
    return "; ".join(parts)


#: How to add a day to an export that lacks one, per ad platform's own user interface.
DAY_HOWTO = {
    "google_ads": "In Google Ads, open the report and add Segment → Time → Day (in the report editor: drag 'Day' into the rows)",
    "meta_ads": "In Ads Manager, choose Breakdown → By time → Day before exporting",
}


#: Google Ads reports people download by mistake for performance: (compact column names, what the report
#: is, why its rows are not a campaign's spend). Search terms first: that report also has a Keyword column.
_NOT_PERFORMANCE_REPORTS = (
    (("searchterm", "suchbegriff", "termederecherche"), "search terms report",
     "one row per search query, and queries below Google's privacy threshold are left out, so its rows add up to less "
     "than the campaigns spent"),
    (("keyword", "searchkeyword", "keywordtext", "motcle"), "keyword report",
     "one row per keyword; spend that no keyword matched (Performance Max, dynamic search ads, Display) is left out"),
    (("matchedlocation", "targetedlocation", "location", "countryterritoryuserlocation", "cityuserlocation",
      "regionuserlocation", "countryterritorymatchedlocation"), "locations report",
     "one row per location, and unmatched locations are left out"),
    (("age", "agerange", "gender", "householdincome", "parentalstatus"), "demographics report",
     "one row per age, gender or income band"),
    (("audiencesegment", "audience"), "audience segments report",
     "one row per audience, and the same click counts under every audience it belongs to"),
    (("landingpage", "expandedlandingpage"), "landing pages report", "one row per landing page"),
)


def not_a_performance_report(columns) -> str | None:
    """Why a Google Ads download is a report of another kind (search terms, keywords, locations...), or None."""
    present = {compact(c) for c in columns}
    if not _signature_ok(PROFILES["google_ads"], present):
        return None
    for names, what, why in _NOT_PERFORMANCE_REPORTS:
        hit = next((c for c in columns if compact(c) in names), None)
        if hit is not None:
            return (f"is a Google Ads {what} (column {hit!r}), not campaign performance: {why}. Download the Campaigns "
                    "(or Ad groups) table instead: in Google Ads open Campaigns (or Ad groups), add Segment → Time → Day, "
                    "then Download (CSV)")
    return None


# media-mix (MMM) tables: one spend column per channel ("Channel0_spend", "tv_cost")
_WIDE_SPEND = re.compile(r"^.+[_ ](spend|cost)$", re.IGNORECASE)


def _performance_shaped(present: set[str]) -> bool:
    return bool(present & PERFORMANCE_MARKERS) and bool(present & DELIVERY_MARKERS)


def propose_mapping(file: str, columns) -> MappingProposal:
    """The mapping under the first profile whose signature columns are present and whose required
    fields map (by synonym, then allowing fuzzy matches); otherwise the nearest candidate with the
    reason and the roles it lacks. Never raises: the caller decides (`detect_profile` raises)."""
    columns = [str(c) for c in columns]
    present = {compact(c) for c in columns}
    for fuzzy in (False, True):
        for profile in PROFILES.values():
            if not _signature_ok(profile, present):
                continue
            mapping = auto_map(file, columns, profile, fuzzy=fuzzy)
            if mapping.missing_required():
                continue
            mapping = mapping if fuzzy else auto_map(file, columns, profile, fuzzy=True)
            if profile.kind == "journeys" and _performance_shaped(present):
                # spend + delivery columns are campaign performance, whatever else maps
                return MappingProposal(
                    auto_map(file, columns, PROFILES["performance"]),
                    "looks like campaign performance (it has spend and delivery columns) but no campaign, "
                    "ad set or ad column was found, so it cannot be read as journeys either; map the entity "
                    f"column. {_columns_text(columns, PROFILES['performance'])}",
                    ("campaign_id or campaign or ad_set_id or ad_set",),
                )
            return MappingProposal(mapping)
    near = _nearest(file, columns)
    wide_spend = [c for c in columns if _WIDE_SPEND.match(c)]
    if len(wide_spend) >= 2:
        mapping, missing = (near[1], near[2]) if near is not None else (auto_map(file, columns, EVENTS), auto_map(file, columns, EVENTS).missing_required())
        return MappingProposal(
            mapping,
            f"looks like a media-mix table: spend per channel in columns ({', '.join(map(repr, wide_spend[:6]))}) beside "
            "totals per period, so it holds no user journeys and no per-channel results. Its channels' returns need a "
            "media-mix model, which this app does not fit; to optimize, give one row per date and channel (date, "
            "campaign = the channel, spend, and the conversions or value of that channel), e.g. from the ad platforms' "
            f"exports. {_columns_text(columns)}",
            tuple(missing))
    if near is not None and near[0].name in DAY_HOWTO and "date" in near[2]:
        profile, mapping, missing = near
        return MappingProposal(
            mapping, f"this {profile.label} has no day column: its rows add up the whole date range, so they cannot show how "
                     f"spend and results move from day to day. {DAY_HOWTO[profile.name]}, then download it again.",
            tuple(missing))
    if near is not None:
        profile, mapping, missing = near
        return MappingProposal(
            mapping,
            f"looks like {profile.label} but lacks required column(s): {_lacks_text(profile, missing)}. "
            f"{_columns_text(columns, profile)}",
            tuple(missing),
        )
    mapping = auto_map(file, columns, EVENTS)
    return MappingProposal(
        mapping,
        "cannot tell what this file holds. Expected event-level data (a user id and a timestamp column), "
        "orders, a path table (path, total_conversions) or campaign performance (date, spend, campaign). "
        f"{_columns_text(columns)}",
        tuple(mapping.missing_required()),
    )


def detect_profile(file: str, columns) -> ColumnMapping:
    """`propose_mapping`, raising `MappingNeeded` (an `IngestError`) when no profile fits."""
    proposal = propose_mapping(file, columns)
    if not proposal.complete:
        raise MappingNeeded([proposal])
    return proposal.mapping


def _nearest(file: str, columns):
    """The profile with the most required fields found (at least one), its mapping and what it lacks."""
    present = {compact(c) for c in columns}
    best = None
    for profile in PROFILES.values():
        if not _signature_ok(profile, present):
            continue
        mapping = auto_map(file, columns, profile)
        required = [f.name for f in profile.fields if f.required]
        found = sum(mapping.column(r) is not None for r in required)
        if found and (best is None or found / len(required) > best[0]):
            best = (found / len(required), profile, mapping)
    if best is None:
        return None
    _, profile, mapping = best
    return profile, mapping, mapping.missing_required() or [f.name for f in profile.fields if f.required][:1]


def mapping_for(file: str, columns, overrides: "dict | ColumnMapping | None" = None) -> ColumnMapping:
    """Auto-detected mapping with ``overrides`` applied: a `ColumnMapping` (used as is, after checking
    its columns) or a ``{field: column}`` dict, optionally with ``"profile"`` to force a profile.
    Raises `MappingNeeded` when the result still lacks a required role."""
    proposal = propose_with_overrides(file, columns, overrides)
    if not proposal.complete:
        raise MappingNeeded([proposal])
    return proposal.mapping


def propose_with_overrides(file: str, columns, overrides: "dict | ColumnMapping | None" = None,
                           method: str = "override") -> MappingProposal:
    """`propose_mapping` with hand-set fields applied (bad field or column names raise `IngestError`)."""
    columns = [str(c) for c in columns]
    if isinstance(overrides, ColumnMapping):
        overrides = {**overrides.as_dict(), "profile": overrides.profile}
    overrides = dict(overrides or {})
    forced = overrides.pop("profile", None)
    wrong = None if forced is not None else not_a_performance_report(columns)
    if wrong:
        raise IngestError(wrong, file=file)
    if forced is not None:
        if forced not in PROFILES:
            raise IngestError(f"unknown format {forced!r}; choose from {', '.join(PROFILES)}", file=file)
        base = auto_map(file, columns, PROFILES[forced])
    elif not overrides:
        return propose_mapping(file, columns)
    else:
        detected = propose_mapping(file, columns)
        base = detected.mapping if set(overrides) <= set(PROFILES[detected.mapping.profile].field_names) else None
        if base is None or (not detected.complete and base.with_overrides(overrides).missing_required()):
            base = _best_profile_for(file, columns, overrides) or detected.mapping
    mapping = base.with_overrides(overrides, method) if overrides else base
    missing = mapping.missing_required()
    if missing:
        profile = PROFILES[mapping.profile]
        return MappingProposal(mapping, f"{profile.label}: missing required column(s): {_lacks_text(profile, missing)}. "
                                        f"{_columns_text(columns, profile)}", tuple(missing))
    return MappingProposal(mapping)


def _best_profile_for(file: str, columns, overrides: dict) -> ColumnMapping | None:
    """When detection fails but the user mapped fields by hand: the profile those fields complete."""
    for profile in PROFILES.values():
        if not set(overrides) <= set(profile.field_names):
            continue
        try:
            mapping = auto_map(file, columns, profile).with_overrides(overrides)
        except IngestError:
            continue
        if not mapping.missing_required():
            return mapping
    return None


def parse_map_args(items) -> dict[str, str | None]:
    """``["channel=acquisition_channel", "profile=events", "value="]`` -> overrides (empty unmaps)."""
    out: dict[str, str | None] = {}
    for item in items or ():
        field_name, sep, column = str(item).partition("=")
        field_name = field_name.strip()
        if not sep or not field_name:
            raise IngestError(f"--map takes field=column, got {item!r}")
        out[field_name] = column.strip() or None
    return out


__all__ = ["FUZZY_CUTOFF", "FieldSpec", "Profile", "PROFILES", "FieldMatch", "ColumnMapping", "MappingProposal",
           "MappingNeeded", "compact", "shape_fingerprint", "auto_map", "relevant_columns", "propose_mapping",
           "propose_with_overrides", "detect_profile", "mapping_for", "parse_map_args"]
