"""Channel rules: source / medium / campaign regular expressions -> channel.

Editable, stored per workspace in the ``channel_rules`` table, seeded with platform names for paid
traffic (meta, google, linkedin, tiktok, twitter, microsoft) and then the GA4 default channel
grouping (email, organic, direct, referral, paid_search, paid_social, display, ...). Patterns are
case-insensitive searches in **RE2 syntax** (the engine pyarrow uses): an empty pattern matches
anything; all non-empty patterns of a rule must match; the lowest priority number wins; no match
gives ``other``.

Evaluation is bounded by construction, so a saved rule cannot stall later imports: RE2 runs in time
linear in the text (lookaround, backreferences and possessive quantifiers, which need backtracking,
are refused when a rule is saved, and again when a stored rule is used), a pattern is at most
`MAX_PATTERN_LENGTH` characters, a workspace at most `MAX_RULES` rules, and each pattern is run once
per distinct source, medium or campaign value, never per event or per combination.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from core.access import Role, guarded

from .errors import IngestError

FALLBACK_CHANNEL = "other"
#: The longest pattern a rule may hold (the size of its database column).
MAX_PATTERN_LENGTH = 300
#: The most rules one workspace may have.
MAX_RULES = 500

_BACKTRACKING = (
    (re.compile(r"\(\?<?[=!]"), "a lookahead or lookbehind ((?=, (?!, (?<=, (?<!)"),
    (re.compile(r"\(\?>"), "an atomic group ((?>...))"),
    (re.compile(r"(?<!\\)\\[1-9]|\\g[<{]?\d|\(\?P=\w+\)|\\k<"), "a backreference (\\1, (?P=name))"),
    (re.compile(r"(?<!\\)[*+?}]\+"), "a possessive quantifier (*+, ++, ?+)"),
)


@lru_cache(maxsize=4096)
def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot be a channel rule (None when it can): too long, or not linear-time RE2."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is {len(pattern)} characters long; a pattern holds at most {MAX_PATTERN_LENGTH}"
    for found, what in _BACKTRACKING:
        if found.search(pattern):
            return (f"uses {what}, which needs backtracking and can take exponential time; "
                    "channel rules accept only linear-time patterns (RE2 syntax)")
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        pc.match_substring_regex(pa.array([""], type=pa.string()), pattern, ignore_case=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).removeprefix("Invalid regular expression: ")
        return f"is not a valid regular expression in RE2 syntax ({reason})"
    return None


@dataclass(frozen=True)
class ChannelRule:
    priority: int
    channel: str
    source_pattern: str = ""
    medium_pattern: str = ""
    campaign_pattern: str = ""

    def check(self) -> "ChannelRule":
        if not str(self.channel).strip():
            raise IngestError(f"channel rule {self.priority} has no channel name")
        if len(str(self.channel)) > 100:
            raise IngestError(f"channel rule {self.priority}: the channel name is longer than 100 characters")
        for what in ("source_pattern", "medium_pattern", "campaign_pattern"):
            problem = pattern_problem(str(getattr(self, what) or ""))
            if problem:
                shown = str(getattr(self, what))
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                raise IngestError(f"channel rule {self.priority} ({self.channel}): {what} {shown!r} {problem}")
        return self


# GA4 default channel grouping lists (abridged to the common hosts) and its paid-medium test.
_PAID = r"^(.*cp.*|ppc|retargeting|paid.*)$"
_SEARCH = r"^(google|bing|yahoo|baidu|duckduckgo|yandex|ecosia|naver|seznam|ask|aol|startpage|qwant)(\.|$)|search"
_SOCIAL = (r"^(facebook|fb|instagram|ig|meta|messenger|linkedin|lnkd\.in|twitter|x|t\.co|tiktok|pinterest|reddit|"
           r"snapchat|quora|tumblr|vk|weibo|wechat|whatsapp|threads|discord|mastodon)(\.com|\.net|\.co)?$|"
           r"(^|\.)(facebook|instagram|linkedin|twitter|tiktok|pinterest|reddit|snapchat)\.com$")
_VIDEO = r"^(youtube|youtube\.com|m\.youtube\.com|vimeo|vimeo\.com|twitch|twitch\.tv|dailymotion)$"
_SHOPPING = r"^(amazon|ebay|etsy|shopify|walmart|google shopping|shopping\.google\.com|alibaba|zalando)(\.com)?$"

DEFAULT_RULES: tuple[ChannelRule, ...] = tuple(
    ChannelRule(i + 1, *r)
    for i, r in enumerate(
        [
            ("direct", r"^\(direct\)$|^direct$|^$", r"^(\(none\)|\(not set\)|none|direct|)$"),
            # Paid traffic by platform.
            ("meta", r"^(facebook|fb|instagram|ig|meta|messenger|audience_network)(\.com)?$", _PAID),
            ("meta", r"^(facebook|fb|instagram|ig|meta)(_ads)?$", r"^(paid_social|social_paid|paid-social)$"),
            ("google", r"^(google|adwords|google_ads|googleads|youtube|dv360|doubleclick|gdn)(\.com)?$", _PAID + r"|^(display|video)$"),
            ("linkedin", r"^(linkedin|lnkd\.in|linkedin\.com|li)$", _PAID),
            ("tiktok", r"^(tiktok|tiktok\.com|tt)$", _PAID),
            ("twitter", r"^(twitter|x|t\.co|twitter\.com|x\.com)$", _PAID),
            ("microsoft", r"^(bing|microsoft|msn|bing\.com)$", _PAID),
            # GA4 default channel grouping.
            ("cross_network", "", "", r"cross-network"),
            ("paid_shopping", _SHOPPING, _PAID),
            ("paid_shopping", "", _PAID, r"^(.*(([^a-df-z]|^)shop|shopping).*)$"),
            ("paid_search", _SEARCH, _PAID),
            ("paid_social", _SOCIAL, _PAID),
            ("paid_video", _VIDEO, _PAID),
            ("display", "", r"^(display|banner|expandable|interstitial|cpm)$"),
            ("paid_other", "", _PAID),
            ("organic_shopping", _SHOPPING),
            ("organic_shopping", "", "", r"^(.*(([^a-df-z]|^)shop|shopping).*)$"),
            ("organic_social", _SOCIAL),
            ("organic_social", "", r"^(social|social-network|social-media|sm|social network|social media)$"),
            ("organic_video", _VIDEO),
            ("organic_video", "", r"video"),
            ("organic", _SEARCH),
            ("organic", "", r"^organic$"),
            ("email", r"^(email|e-mail|e_mail|e mail|newsletter|mailchimp|klaviyo|braze)$"),
            ("email", "", r"^(email|e-mail|e_mail|e mail|newsletter)$"),
            ("affiliates", "", r"^affiliate"),
            ("referral", "", r"^(referral|app|link)$"),
            ("audio", "", r"^audio$"),
            ("sms", r"^sms$"),
            ("sms", "", r"^sms$"),
            ("push", r"firebase", ""),
            ("push", "", r"(push$|mobile|notification)"),
        ]
    )
)


def default_rules() -> list[ChannelRule]:
    return list(DEFAULT_RULES)


def checked_rules(rules) -> list[ChannelRule]:
    """``rules`` checked (RE2 patterns, lengths, count) and sorted by priority."""
    rules = list(rules)
    if len(rules) > MAX_RULES:
        raise IngestError(f"{len(rules):,} channel rules; a workspace holds at most {MAX_RULES}")
    return sorted((r.check() for r in rules), key=lambda r: r.priority)


def rules_frame(rules) -> pd.DataFrame:
    """Rules as an editable table (priority, channel, source_pattern, medium_pattern, campaign_pattern)."""
    return pd.DataFrame([asdict(r) for r in rules], columns=["priority", "channel", "source_pattern", "medium_pattern", "campaign_pattern"])


def rules_from_frame(frame: pd.DataFrame) -> list[ChannelRule]:
    """Rules from an edited table; blank rows are dropped, patterns checked, priorities must be numbers."""
    out = []
    frame = frame.fillna("")
    for i, row in enumerate(frame.to_dict("records"), start=1):
        if not str(row.get("channel", "")).strip():
            continue
        try:
            priority = int(row.get("priority") or i)
        except (TypeError, ValueError):
            raise IngestError(f"channel rule row {i}: priority {row.get('priority')!r} is not a whole number") from None
        out.append(ChannelRule(priority, str(row["channel"]).strip(), *(str(row.get(k, "") or "") for k in ("source_pattern", "medium_pattern", "campaign_pattern"))).check())
    return checked_rules(out)


def _matches(values: pd.Series, pattern: str) -> np.ndarray:
    """Case-insensitive RE2 search of ``pattern`` in each value (linear time in the text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(values.to_numpy(dtype=object), type=pa.large_string())
    return pc.match_substring_regex(arr, pattern, ignore_case=True).to_numpy(zero_copy_only=False).astype(bool)


def assign_channels(source: pd.Series, medium: pd.Series, campaign: pd.Series, rules=None) -> pd.Series:
    """Channel per row from the first matching rule, evaluated once per unique combination."""
    from .parse import str_from_codes

    names, codes = channel_codes(source, medium, campaign, rules)
    return str_from_codes(list(names), codes, source.index)


def channel_categorical(source: pd.Series, medium: pd.Series, campaign: pd.Series, rules=None) -> pd.Series:
    """`assign_channels` as a categorical: the rules' answer per distinct combination, no string per row."""
    names, codes = channel_codes(source, medium, campaign, rules)
    return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(names, dtype="str")), index=source.index)


def channel_codes(source: pd.Series, medium: pd.Series, campaign: pd.Series, rules=None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct channel names, each row's position among them) from the first matching rule,
    evaluated once per unique (source, medium, campaign) combination."""
    rules = checked_rules(rules if rules is not None else DEFAULT_RULES)
    # Factorize each part on its own (hashing short columns), combine the integer codes, and work on
    # the distinct combinations only: no per-row string concatenation.
    codes_uniques = [pd.factorize(s.to_numpy(dtype=object, na_value=None) if s.dtype == object else s, sort=False)
                     for s in (source, medium, campaign)]
    n = len(source)
    if n == 0:
        return np.array([], dtype=object), np.zeros(0, dtype=np.int64)
    combo_codes = np.zeros(n, dtype=np.int64)
    n_combos = 1
    for codes, uniques in codes_uniques:  # pairwise, so the packed key never overflows
        packed = combo_codes * (len(uniques) + 1) + (codes.astype(np.int64) + 1)
        combo_codes, found = pd.factorize(packed, sort=False)
        n_combos = len(found)
    combo_codes = combo_codes.astype(np.int64, copy=False)
    # Codes are numbered in order of first appearance: a row is a first occurrence where its code
    # exceeds every earlier one.
    seen = np.maximum.accumulate(np.r_[-1, combo_codes[:-1]])
    first_rows = np.flatnonzero(combo_codes > seen)
    assert len(first_rows) == n_combos
    # Each pattern runs once over the distinct values of its part (plus "" for missing); a combination
    # reads its part's result by code.
    parts = {}
    for what, (codes, uniques) in zip(("source", "medium", "campaign"), codes_uniques):
        clean = pd.Series(pd.Index(uniques).astype("str"), dtype="str").fillna("").str.strip().str.lower()
        values = pd.Series(np.append(clean.to_numpy(dtype=object), ""), dtype=object)  # code -1 reads the last entry, ""
        parts[what] = (values, np.where(codes[first_rows] < 0, len(values) - 1, codes[first_rows]))
    cache: dict[tuple[str, str], np.ndarray] = {}
    conditions = []
    for rule in rules:
        mask = np.ones(len(first_rows), dtype=bool)
        for what in ("source", "medium", "campaign"):
            pattern = getattr(rule, f"{what}_pattern")
            if pattern:
                if (what, pattern) not in cache:
                    cache[what, pattern] = _matches(parts[what][0], pattern)
                mask &= cache[what, pattern][parts[what][1]]
        conditions.append(mask)
    choices = [r.channel for r in rules]
    per_combo = np.select(conditions, choices, default=FALLBACK_CHANNEL) if rules else np.full(len(first_rows), FALLBACK_CHANNEL)
    names, per_combo_code = np.unique(np.asarray(per_combo, dtype=object).astype(str), return_inverse=True)
    return names.astype(object), per_combo_code.reshape(-1).astype(np.int64)[combo_codes]


def load_channel_rules(engine, workspace_id: str) -> list[ChannelRule]:
    """The workspace's rules, or the default rules when none were saved."""
    from sqlalchemy import select

    from core.store.db import transaction
    from core.store.models import ChannelRule as RuleRow

    with transaction(engine, workspace_id) as session:
        rows = session.scalars(select(RuleRow).where(RuleRow.workspace_id == workspace_id).order_by(RuleRow.priority, RuleRow.id)).all()
        stored = [ChannelRule(r.priority, r.channel, r.source_pattern or "", r.medium_pattern or "", r.campaign_pattern or "") for r in rows]
    return stored or default_rules()


@guarded(Role.ANALYST, "data.channel_rules")
def save_channel_rules(engine, workspace_id: str, rules, *, actor: str | None = None) -> int:
    """Replace the workspace's rules (one transaction); returns how many were saved."""
    from sqlalchemy import delete, insert

    from core.store.db import transaction
    from core.store.models import ChannelRule as RuleRow

    rules = checked_rules(rules)
    with transaction(engine, workspace_id) as session:
        session.execute(delete(RuleRow).where(RuleRow.workspace_id == workspace_id))
        if rules:
            session.execute(insert(RuleRow), [dict(asdict(r), workspace_id=workspace_id) for r in rules])
    return len(rules)
