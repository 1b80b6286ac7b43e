"""SQL pushdown: events in a user's database -> PathTable, computed by the database.

The journey rules of `core.journeys.memory` and the import rules of `core.ingest` (text cleaning,
which rows are touches or conversions, channel rules, duplicate touches and conversion ids) are
compiled with SQLAlchemy Core into ONE query of window functions; only the aggregated path table
(one row per unique path, plus one per channel label) comes back. The answer equals importing the
same table (`core.ingest.sql.read_sql_source`) and building paths in memory, with these documented
exceptions, all of which need row order, which a table does not have:

* conversions of one user at the same instant are ordered by conversion id (missing last), type (lower case)
  and value (in memory: by row);
* of two conversions (or events) sharing an id, the earliest is kept (in memory: the first row);
* SQLite's date functions resolve milliseconds, so there sub-millisecond times are rounded.

Every touch event is a touch here: sessions are not built in the database. A source the import
would turn into one touch per session (a GA4 export, a mapped session id, several events per visit,
or ``sessions`` asked for) is refused with the reason and the way out (`touch_mode`), unless every
event is asked for as a touch.

Event tables of the ``events`` and ``ga4`` profiles are supported (Segment's identity stitching is
not: import those). Everything runs in a read-only transaction with a statement timeout.
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import (
    BigInteger,
    Double,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError

from core.ingest.parse import TEXT_EMPTY
from core.pathtable import PathTable

from .memory import LEVELS, NO_TOUCH, JourneyError, Progress, _lookback_ns
from .sqlcompile import (
    SQLITE_REGEXP,
    SUPPORTED_DIALECTS,
    BinaryOrder,
    EpochMicros,
    OrderedConcat,
    RegexSearch,
    StripWhitespace,
    regex_problem,
    sqlite_regexp_search,
)

#: Rows read to learn the columns' value types (timestamp / text / epoch number and its unit).
SAMPLE_ROWS = 1000
_EMPTY_SPELLINGS = TEXT_EMPTY  # the import's: a source's campaign 'NA' stays a name
_NO_TOUCH_CODE = -1
#: PostgreSQL ``work_mem`` for the path query's transaction (the server default of 4 MB makes its
#: sorts and hash aggregates spill to disk at a million events).
POSTGRES_WORK_MEM = "256MB"
#: Mapped fields the query reads as text (cleaned like the import's ``parse.text``).
_TEXT_FIELDS = ("user_key", "event_type", "conversion_id", "channel", "source", "medium", "campaign", "campaign_id",
                "interaction", "event_id", "conversion_flag")


@dataclass(frozen=True)
class SourceShape:
    """What the query needs to know about the source's columns: the field mapping and value kinds."""

    mapping: dict[str, str | None]  # canonical field -> source column
    profile: str  # events | ga4
    kinds: dict[str, str] = field(default_factory=dict)  # column -> text | int | float | timestamp | empty
    ts_kind: str = "timestamp"  # timestamp | text | epoch
    ts_scale: float = 1.0  # microseconds per stored unit when ts_kind == "epoch"

    def col(self, name: str) -> str | None:
        return self.mapping.get(name)


@dataclass
class SqlPaths:
    """The pushdown's answer: the path table, the SQL that made it, and what was read and fetched."""

    paths: PathTable
    sql: str
    report: dict


# ----------------------------------------------------------------------------- source shape
def _value_kind(values: list) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "empty"
    if all(isinstance(v, (dt.datetime, dt.date)) for v in present):
        return "timestamp"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if all(isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool) for v in present):
        return "float"
    return "text"


def shape_from_sample(columns: list[str], rows: list[tuple], mapping_overrides=None, name: str = "sql") -> SourceShape:
    """Map the source's columns like an import would, and read value kinds off sample rows."""
    from core.ingest.errors import IngestError
    from core.ingest.mapping import mapping_for
    from core.ingest.parse import _UNITS

    mapping = mapping_for(name, columns, mapping_overrides)
    missing = mapping.missing_required()
    if mapping.kind != "journeys":
        raise JourneyError(f"{name} holds {mapping.kind} data, not event-level journeys: paths cannot be built from it")
    if missing:
        raise IngestError(f"missing required column(s): {', '.join(missing)}", file=name, column=missing[0])
    if mapping.profile not in ("events", "ga4"):
        raise JourneyError(f"{name} looks like a {mapping.profile} export; building its paths in the database is not "
                           "supported (identity stitching): import it and use the memory engine")
    kinds = {c: _value_kind([r[i] for r in rows]) for i, c in enumerate(columns)}
    ts = mapping.column("ts")
    ts_kind, scale = {"timestamp": ("timestamp", 1.0), "text": ("text", 1.0)}.get(kinds[ts], ("epoch", 1.0))
    if ts_kind == "epoch":
        idx = columns.index(ts)
        nums = np.array([float(r[idx]) for r in rows if r[idx] is not None], dtype=np.float64)
        magnitude = float(np.median(np.abs(nums))) if nums.size else 0.0
        unit = next(u for limit, u in _UNITS if magnitude < limit)
        scale = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[unit]
    value = mapping.column("value")
    if value and kinds.get(value) == "text":
        raise JourneyError(f"column {value!r} (the conversion value) holds text; building paths in the database needs a "
                           "numeric column (cast it in a --query)")
    return SourceShape(mapping.as_dict(), mapping.profile, kinds, ts_kind, scale)


# ----------------------------------------------------------------------------- expressions
def _as_text(expr, kind: str):
    """A column as the import reads it as text: numbers as text (whole floats without ``.0``)."""
    if kind == "int" or kind == "bool":
        return cast(expr, String())
    if kind == "float":
        whole = cast(expr, BigInteger())
        return case((expr == whole, cast(whole, String())), else_=cast(expr, String()))
    return expr


def _blank_to_null(trimmed):
    """Empty spellings of text (`core.ingest.parse.TEXT_EMPTY`, matched exactly: 'NA' stays a name) as NULL;
    a value longer than the longest spelling skips the comparison (most ids and names)."""
    longest = max(len(e) for e in _EMPTY_SPELLINGS)
    return case((func.length(trimmed) > longest, trimmed), (trimmed.in_(_EMPTY_SPELLINGS), null()), else_=trimmed)


def _clean_text(expr, kind: str):
    """The import's ``parse.text``: as text, trimmed, empty spellings as NULL."""
    return _blank_to_null(StripWhitespace(_as_text(expr, kind)))


def _rules_case(rules, src, med, camp, dialect: str):
    """The channel of a (source, medium, campaign) combination as one CASE (first rule by priority wins)."""
    from core.ingest.channels import FALLBACK_CHANNEL

    whens = []
    for rule in sorted((r.check() for r in rules), key=lambda r: r.priority):
        tests = []
        for what, value in (("source", src), ("medium", med), ("campaign", camp)):
            pattern = getattr(rule, f"{what}_pattern")
            if pattern:
                problem = regex_problem(pattern, dialect)
                if problem:
                    raise JourneyError(f"channel rule {rule.priority} ({rule.channel}): {what} pattern {pattern!r} cannot run "
                                       f"in {dialect}: {problem}; change the rule or use the memory engine")
                tests.append(RegexSearch(value, pattern))
        whens.append((and_(*tests) if tests else true(), literal(rule.channel, String())))
    return case(*whens, else_=literal(FALLBACK_CHANNEL, String())) if whens else literal(FALLBACK_CHANNEL, String())


def _interaction(lowered):
    """impression / click / visit, as the import's ``_interaction`` decides it."""
    impression = or_(RegexSearch(lowered, "impr|^view|view.?through"))
    return case((impression, literal("impression")), (lowered.contains("click", autoescape=True), literal("click")), else_=literal("visit"))


def _touch_stage(source, shape: SourceShape, dialect: str, channel_rules=None, conversion_events=None):
    """The cleaned events (``ev``: touches and conversions flagged) and the distinct touches
    (``touch_rows``: user, time, channel and the identity columns), as the import reads them."""
    from core.ingest.channels import DEFAULT_RULES
    from core.ingest.events import CONVERSION_EVENTS, CONVERSION_INTERACTION, FLAG_TRUE

    rules = list(channel_rules) if channel_rules is not None else list(DEFAULT_RULES)
    col = shape.col
    # Each mapped column is converted and trimmed once, then its empty spellings nulled once: two
    # layers, so the (costly) text cleaning is not repeated by every expression that reads a field.
    text_fields = [f for f in _TEXT_FIELDS if col(f)]
    raw = source.c
    numbers = [EpochMicros(raw[col("ts")], shape.ts_kind, shape.ts_scale).label("t")]
    if col("value"):
        numbers.append(cast(raw[col("value")], Double()).label("value"))
    # Integer user ids stay integers: the user key is only grouped and compared, and the import's
    # text of an integer is one-to-one with it, so the text copy would only cost time.
    as_is = {f for f in text_fields if f == "user_key" and shape.kinds.get(col(f)) == "int"}
    trimmed = select(*((raw[col(f)] if f in as_is else StripWhitespace(_as_text(raw[col(f)], shape.kinds.get(col(f), "text")))).label(f)
                       for f in text_fields),
                     *numbers).select_from(source).subquery("trimmed")
    cleaned = select(*((trimmed.c[f] if f in as_is else _blank_to_null(trimmed.c[f])).label(f) for f in text_fields),
                     *(trimmed.c[n.name] for n in numbers)).subquery("cleaned")
    c = cleaned.c

    def txt(name):
        return c[name] if col(name) else null()

    user = txt("user_key")
    ticks = c.t
    event_l = func.lower(txt("event_type")) if col("event_type") else None
    conv_id = txt("conversion_id")
    value = c.value if col("value") else None
    conversion_is_touch = None
    if col("conversion_flag"):  # as the import: a converting row is also the touch, unless it says it is the conversion
        is_conv = func.coalesce(func.lower(txt("conversion_flag")).in_(sorted(FLAG_TRUE)), False)
        conversion_is_touch = (~func.coalesce(RegexSearch(func.lower(txt("interaction")), CONVERSION_INTERACTION), False)
                               if col("interaction") else true())
    elif event_l is not None:
        wanted = sorted({e.lower() for e in conversion_events} if conversion_events else CONVERSION_EVENTS.get(shape.profile, CONVERSION_EVENTS["events"]))
        is_conv = func.coalesce(event_l.in_(wanted), False)
    elif col("conversion_id"):
        is_conv = conv_id.is_not(None)
    elif value is not None:
        is_conv = and_(value.is_not(None), value != 0)  # as the import: rows with a value are the conversions
    else:
        is_conv = literal(False)
    source_t, medium_t, campaign_t = txt("source"), txt("medium"), txt("campaign")
    has_info = or_(*(x.is_not(None) for x, f in ((source_t, "source"), (medium_t, "medium"), (campaign_t, "campaign")) if col(f))) \
        if any(col(f) for f in ("source", "medium", "campaign")) else literal(False)
    if shape.profile == "ga4":
        starts_sql = func.lower(txt("event_type")).in_(["session_start", "first_visit"])
        any_start = exists(select(literal(1)).select_from(cleaned).where(starts_sql))
        is_touch = and_(~is_conv, case((any_start, starts_sql), else_=has_info))
    else:
        is_touch = ~is_conv if conversion_is_touch is None else or_(~is_conv, conversion_is_touch)
    rules_needed = any(col(f) for f in ("source", "medium", "campaign")) or shape.profile == "ga4"
    if not col("channel") and not rules_needed:
        raise JourneyError("the source has touchpoints but no channel column: map 'channel', or 'source' / 'medium' / 'campaign'")

    ev_cols = [
        user.label("u"), ticks.label("t"), case((is_conv, 1), else_=0).label("is_conv"), case((is_touch, 1), else_=0).label("is_touch"),
        txt("channel").label("channel_raw"), source_t.label("source"), medium_t.label("medium"), campaign_t.label("campaign"),
        txt("campaign_id").label("campaign_id"), conv_id.label("conv_id"),
        (func.coalesce(value, 0.0) if value is not None else literal(0.0, Double())).label("value"),
        (event_l if event_l is not None else literal("conversion")).label("kind_name"),
    ]
    # What decides a touch's interaction (impression / click / visit), lower-cased; the regex runs
    # once per distinct value below, as the import does, not once per row.
    if col("interaction"):
        ev_cols.append(func.lower(func.coalesce(txt("interaction"), "")).label("inter_l"))
    elif col("event_type") and shape.profile == "events":
        ev_cols.append(func.coalesce(event_l, "").label("inter_l"))
    ev = select(*ev_cols)
    if col("event_id"):  # events repeated under one id: the earliest is kept
        eid = txt("event_id")
        rn = func.row_number().over(partition_by=eid, order_by=[ticks]).label("eid_rn")
        inner = select(*ev_cols, eid.label("eid"), rn).select_from(cleaned).subquery("ev_ids")
        ev = select(*(inner.c[x.name] for x in ev_cols)).where(or_(inner.c.eid.is_(None), inner.c.eid_rn == 1)).cte("ms_ev")
    else:
        ev = ev.select_from(cleaned).cte("ms_ev")

    # Touches: channel from the source's column, or from the rules over distinct combinations; exact
    # duplicates (every canonical touch column equal) dropped like the import does.
    lowered = [func.lower(func.coalesce(x, "")).label(n) for x, n in ((ev.c.source, "src_l"), (ev.c.medium, "med_l"), (ev.c.campaign, "camp_l"))]
    tw = select(ev, *(lowered if rules_needed else ())).where(ev.c.is_touch == 1).subquery("tw")
    from_ = tw
    if "inter_l" in tw.c:
        kinds = select(tw.c.inter_l).distinct().subquery("kinds")
        interactions = select(kinds.c.inter_l, _interaction(kinds.c.inter_l).label("interaction")).cte("ms_interactions")
        from_ = from_.join(interactions, tw.c.inter_l == interactions.c.inter_l)
        interaction = interactions.c.interaction
    else:
        interaction = literal("visit")
    if rules_needed:
        combos = select(tw.c.src_l, tw.c.med_l, tw.c.camp_l).distinct().subquery("combos")
        ruled = select(combos, _rules_case(rules, combos.c.src_l, combos.c.med_l, combos.c.camp_l, dialect).label("rule_channel")).cte("ms_ruled")
        from_ = from_.join(ruled, and_(tw.c.src_l == ruled.c.src_l, tw.c.med_l == ruled.c.med_l, tw.c.camp_l == ruled.c.camp_l))
        channel = func.coalesce(tw.c.channel_raw, ruled.c.rule_channel) if col("channel") else ruled.c.rule_channel
    else:
        channel = tw.c.channel_raw
    base = tw
    # The touch's identity for the duplicate check: only columns the source has (a constant NULL or
    # 'visit' column would only widen the hash table).
    identity = [base.c[f] for f in ("campaign_id", "campaign", "source", "medium") if col(f)]
    if "inter_l" in tw.c:
        identity.append(interaction.label("interaction"))
    touch_rows = select(base.c.u, base.c.t, channel.label("channel"), *identity).select_from(from_).distinct().subquery("touch_rows")
    return ev, touch_rows


def compile_paths_query(source, shape: SourceShape, dialect: str, *, lookback_days: float = 30, level: str = "channel",
                        null_lookback: bool = True, channel_rules=None, conversion_events=None):
    """The ONE query: rows ``(kind, path, conversions, value, nulls)`` where ``kind='p'`` rows are the
    path table (``path`` = comma-joined label codes, ``-1`` = ``(no touch)``) and ``kind='c'`` rows
    name the label codes (``path`` = label, ``conversions`` = code).

    ``source`` is a table or subquery; nothing here touches a database.
    """
    if dialect not in SUPPORTED_DIALECTS:
        raise JourneyError(f"building paths in the database is written for {', '.join(SUPPORTED_DIALECTS)}, not {dialect}")
    if level not in LEVELS:
        raise JourneyError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    window_us = _lookback_ns(lookback_days) // 1000  # whole microseconds: d_us * 1000 <= window_ns
    col = shape.col
    ev, touch_rows = _touch_stage(source, shape, dialect, channel_rules, conversion_events)
    if level == "campaign":
        if not (col("campaign_id") or col("campaign")):
            raise JourneyError("campaign level needs campaign ids or names on the touchpoints; this data has none")
        names = [touch_rows.c[f] for f in ("campaign_id", "campaign") if f in touch_rows.c]
        camp = func.coalesce(*names) if len(names) > 1 else names[0]
        label = case((camp.is_(None), touch_rows.c.channel), else_=touch_rows.c.channel + literal(":") + camp)
    else:
        label = touch_rows.c.channel
    touches = select(touch_rows.c.u, touch_rows.c.t, label.label("label")).cte("ms_touches")
    distinct_labels = select(touches.c.label).distinct().subquery("distinct_labels")
    labels = select(distinct_labels.c.label, (func.dense_rank().over(order_by=BinaryOrder(distinct_labels.c.label)) - 1).label("code")).cte("ms_labels")

    # Conversions: one per conversion id (generated ids are user + time + type, as on import).
    no_id = ev.c.conv_id.is_(None)
    dedupe = func.row_number().over(
        partition_by=[ev.c.conv_id, case((no_id, ev.c.u)), case((no_id, ev.c.t)), case((no_id, ev.c.kind_name))],
        order_by=[ev.c.t, ev.c.u, ev.c.value],
    )
    conv_all = select(ev.c.u, ev.c.t, ev.c.value, ev.c.conv_id, ev.c.kind_name, dedupe.label("rn")).where(ev.c.is_conv == 1).subquery("conv_all")
    tie = func.row_number().over(partition_by=[conv_all.c.u, conv_all.c.t], order_by=[BinaryOrder(conv_all.c.conv_id).nulls_last(), conv_all.c.kind_name, conv_all.c.value])
    convs = select(conv_all.c.u, conv_all.c.t, conv_all.c.value, tie.label("ord")).where(conv_all.c.rn == 1).subquery("convs")

    tj = touches.join(labels, touches.c.label == labels.c.label)
    events = union_all(
        select(touches.c.u, touches.c.t, literal(0).label("k"), labels.c.code.label("ord"), literal(0.0, Double()).label("value")).select_from(tj),
        select(convs.c.u, convs.c.t, literal(1).label("k"), convs.c.ord, convs.c.value),
    ).subquery("events")
    e = events.c
    # One ordered window pass numbers the journeys: a conversion closes journey c_incl (conversions
    # up to and including it), a touch belongs to journey c_incl + 1 (the next conversion, or the
    # user's null journey after the last one). The conversion that closes a touch's journey is then
    # found by an equi-join, not by a frame running forward (which PostgreSQL recomputes row by row
    # for min()); the user's last time is a whole-partition aggregate over the same sort.
    seq = select(
        e.u, e.t, e.k, e.ord, e.value,
        func.sum(e.k).over(partition_by=e.u, order_by=[e.t, e.k, e.ord], rows=(None, 0)).label("c_incl"),
        func.max(e.t).over(partition_by=e.u).label("last_t"),
    ).cte("ms_seq")
    s = seq.c
    conv_rows = select(s.u, s.c_incl.label("j"), s.t, s.value).where(s.k == 1).cte("ms_conv_rows")
    cr = conv_rows.c
    touch_rows = select(s.u, s.t, s.ord, (s.c_incl + 1).label("j"), s.last_t).where(s.k == 0).subquery("touch_seq")
    ts_ = touch_rows.c
    closing = touch_rows.outerjoin(conv_rows, and_(ts_.u == cr.u, ts_.j == cr.j))
    tail_keep = true() if not null_lookback else (ts_.last_t - ts_.t <= window_us)
    keep = case((cr.t.is_(None), tail_keep), else_=(cr.t - ts_.t <= window_us))
    kept = select(ts_.u, ts_.t, ts_.ord, ts_.j, case((cr.t.is_(None), 1), else_=0).label("tail")).select_from(closing).where(keep).subquery("kept")
    if dialect == "sqlite":  # group_concat has no ORDER BY before SQLite 3.44: an ordered window instead
        w = dict(partition_by=[kept.c.u, kept.c.j], order_by=[kept.c.t, kept.c.ord])
        framed = select(kept.c.u, kept.c.j, kept.c.tail,
                        func.group_concat(cast(kept.c.ord, String()), literal(",")).over(**w, rows=(None, None)).label("path"),
                        func.row_number().over(**w).label("rn")).subquery("framed")
        touch_paths = select(framed.c.u, framed.c.j, framed.c.path, framed.c.tail).where(framed.c.rn == 1).cte("ms_touch_paths")
    else:
        touch_paths = select(kept.c.u, kept.c.j, OrderedConcat(kept.c.ord, kept.c.t, kept.c.ord).label("path"),
                             func.max(kept.c.tail).label("tail")).group_by(kept.c.u, kept.c.j).cte("ms_touch_paths")
    tp = touch_paths.c
    conv_j = conv_rows.outerjoin(touch_paths, and_(cr.u == tp.u, cr.j == tp.j))
    journeys = union_all(
        select(func.coalesce(tp.path, literal(str(_NO_TOUCH_CODE))).label("path"), literal(1.0, Double()).label("conv"),
               cr.value.label("value"), literal(0.0, Double()).label("nul")).select_from(conv_j),
        select(tp.path, literal(0.0, Double()), literal(0.0, Double()), literal(1.0, Double())).where(tp.tail == 1),
    ).subquery("journeys")
    j = journeys.c
    return union_all(
        select(literal("p").label("kind"), j.path.label("path"), func.sum(j.conv).label("conversions"),
               func.sum(j.value).label("value"), func.sum(j.nul).label("nulls")).group_by(j.path),
        select(literal("c"), labels.c.label, cast(labels.c.code, Double()), literal(0.0, Double()), literal(0.0, Double())),
    )


def touch_counts_query(source, shape: SourceShape, dialect: str, timeout_minutes: float, *, channel_rules=None,
                       conversion_events=None):
    """One scan for the import's choice of touches (`core.ingest.sessionize.choose_mode`): the distinct
    touches (``touches``, what the import calls touch events), those that are ad impressions or clicks
    (``ads``), and ``segments``: a user's first touch or one after more than ``timeout_minutes`` of
    inactivity. Every segment start is a session start, so ``segments`` is a lower bound of the
    import's sessions (which also split on traffic-source changes) and touches / segments an upper
    bound of its events per session."""
    _ev, tr = _touch_stage(source, shape, dialect, channel_rules, conversion_events)
    timeout_us = int(round(float(timeout_minutes) * 60e9)) // 1000  # d_us > this  <=>  d_us * 1000 > timeout_ns
    previous = func.lag(tr.c.t).over(partition_by=tr.c.u, order_by=tr.c.t)
    is_ad = tr.c.interaction.in_(["impression", "click"]) if "interaction" in tr.c else literal(False)
    marked = select(case((or_(previous.is_(None), tr.c.t - previous > timeout_us), 1), else_=0).label("seg"),
                    case((is_ad, 1), else_=0).label("ad")).select_from(tr).subquery("segment_marks")
    return select(func.count().label("touches"), func.coalesce(func.sum(marked.c.seg), 0).label("segments"),
                  func.coalesce(func.sum(marked.c.ad), 0).label("ads")).select_from(marked)


def touch_mode(counts: dict | None, shape: SourceShape, settings, name: str) -> tuple[str, str]:
    """(mode, reason) when the database's touches are every event, as the import would take them; a
    `JourneyError` naming the reason and the way out when the import would take one touch per session
    (sessions are not built in the database). ``counts``: `touch_counts_query`'s row (auto mode)."""
    from core.ingest.sessionize import CLICKSTREAM_RATIO

    way_out = ("build these paths with the memory or Dask engine, which group sessions, or ask for every event "
               "as a touch (--touches events; 'Every event is a touch' on the Data page)")
    if settings.mode == "events":
        return "events", "chosen"
    if settings.mode == "sessions":
        raise JourneyError(f"{name}: one touch per session was asked for, and the sql engine does not build sessions: {way_out}")
    if shape.profile in ("ga4", "segment", "snowplow"):
        raise JourneyError(f"{name}: {shape.profile.upper() if shape.profile == 'ga4' else shape.profile.title()} exports are event "
                           f"streams, which the import turns into one touch per session; the sql engine does not build sessions: {way_out}")
    touches, segments, ads = (int(counts[k] or 0) for k in ("touches", "segments", "ads"))
    if touches == 0:
        return "events", "no touch events"
    if shape.col("interaction") and ads / touches >= 0.5:
        return "events", f"{ads / touches:.0%} of the touches are ad impressions or clicks: each is a touch of its own"
    if shape.col("session_id"):
        raise JourneyError(f"{name}: column {shape.col('session_id')!r} holds the collector's session ids, so the import takes one "
                           f"touch per session; the sql engine does not build sessions: {way_out}")
    ratio = touches / max(segments, 1)
    if ratio >= CLICKSTREAM_RATIO:
        raise JourneyError(f"{name}: {touches:,} touch events fall in at most {segments:,} visits ({ratio:.1f} per visit, "
                           f"{settings.timeout_minutes:g} minutes of inactivity ending one): a clickstream, which the import turns "
                           f"into one touch per session; the sql engine does not build sessions: {way_out}")
    return "events", f"{touches:,} touch events in at least {segments:,} sessions (at most {ratio:.1f} per session): events are visits already"


def checks_query(source, shape: SourceShape, dialect: str):
    """One scan counting what an import would refuse: missing users or times, negative values, times
    outside 1990-2100; plus the row, touch and conversion counts for the report."""
    c = source.c
    col = shape.col
    user_kind = shape.kinds.get(col("user_key"), "text")
    user = c[col("user_key")] if user_kind == "int" else _clean_text(c[col("user_key")], user_kind)
    ts = c[col("ts")]
    ticks = EpochMicros(ts, shape.ts_kind, shape.ts_scale)
    value = cast(c[col("value")], Double()) if col("value") else literal(0.0, Double())
    if shape.ts_kind == "text":
        ts_missing = _clean_text(ts, "text").is_(None)
    else:
        ts_missing = ts.is_(None)
    return select(
        func.count().label("rows"),
        func.sum(case((user.is_(None), 1), else_=0)).label("missing_users"),
        func.sum(case((ts_missing, 1), else_=0)).label("missing_ts"),
        func.sum(case((value < 0, 1), else_=0)).label("negative_values"),
        func.min(ticks).label("min_us"),
        func.max(ticks).label("max_us"),
    ).select_from(source)


# ----------------------------------------------------------------------------- running it
def _dialect(name: str):
    from sqlalchemy.engine import URL

    return URL.create(name).get_dialect()()


def sql_text(stmt, dialect) -> str:
    """The statement as the database would run it, with literal values (for preview and download)."""
    dialect = _dialect(dialect) if isinstance(dialect, str) else dialect
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _register_sqlite(engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.create_function(SQLITE_REGEXP, 2, sqlite_regexp_search, deterministic=True)


def _result_pathtable(rows) -> tuple[PathTable, int]:
    """The fetched rows as a PathTable (channels in name order, only those that occur, like memory)."""
    names: dict[int, str] = {_NO_TOUCH_CODE: NO_TOUCH}
    paths, conv, value, nulls = [], [], [], []
    payload = 0
    for kind, path, c, v, n in rows:
        payload += len(str(path).encode()) + 3 * 8 + 1
        if kind == "c":
            names[int(c)] = str(path)
        else:
            paths.append(str(path))
            conv.append(float(c or 0.0))
            value.append(float(v or 0.0))
            nulls.append(float(n or 0.0))
    if not paths:
        return PathTable((), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0), np.zeros(0), np.zeros(0)), payload
    lengths = np.fromiter((p.count(",") + 1 for p in paths), dtype=np.int64, count=len(paths))
    flat = np.array(",".join(paths).split(","), dtype=np.int64)
    used = np.unique(flat)
    used_names = sorted(names[int(u)] for u in used)
    rank = {nm: i for i, nm in enumerate(used_names)}
    lut = np.array([rank[names[int(u)]] for u in used], dtype=np.int32)
    offsets = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    table = PathTable(tuple(used_names), offsets, lut[np.searchsorted(used, flat)], np.asarray(conv), np.asarray(value), np.asarray(nulls))
    return table, payload


def plan_pathtable_sql(url: str, table: str | None = None, query: str | None = None, *, mapping_overrides=None,
                       timeout_s: float | None = 60.0, **options) -> str:
    """The pushdown SQL for a source, as the database would run it, without running it (the Data
    page's preview): connects read-only, reads the column names and a sample, compiles."""
    from core.ingest.errors import IngestError
    from core.ingest.sql import read_only_connection, source_engine, source_selectable
    from core.store.db import redact_url, scrub_url

    engine = source_engine(url)
    dialect = engine.dialect.name
    try:
        with read_only_connection(engine, timeout_s) as conn:
            source, name = source_selectable(conn, table, query)
            sample = conn.execute(select(source).limit(SAMPLE_ROWS)).all()
            if not sample:
                raise JourneyError(f"{name} returned no rows")
            shape = shape_from_sample([c.name for c in source.columns], [tuple(r) for r in sample], mapping_overrides, name)
            return sql_text(compile_paths_query(source, shape, dialect, **options), engine.dialect)
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        raise IngestError(f"reading {redact_url(url)} failed ({type(exc).__name__}: {scrub_url(detail, url)})") from None
    finally:
        engine.dispose()


def build_pathtable_sql(url: str, table: str | None = None, query: str | None = None, *, lookback_days: float = 30,
                        level: str = "channel", null_lookback: bool = True, channel_rules=None, mapping_overrides=None,
                        conversion_events=None, timeout_s: float | None = None, progress: Progress | None = None,
                        sessions=None) -> SqlPaths:
    """Build the PathTable of ``table`` (or ``query``) on ``url`` inside that database.

    Reads a sample to map columns and learn value types, runs a check scan (what an import would
    refuse), then the path query; all in one read-only transaction with a statement timeout.
    ``sessions`` (`core.ingest.SessionSettings`, default auto): every event is a touch here, so a
    source the import would group into sessions is refused (`touch_mode`), never silently counted.
    Raises `JourneyError` (bad data, unsupported source) or `core.ingest.IngestError` (connection).
    """
    from core.ingest.sessionize import SessionSettings

    from core.ingest.errors import IngestError
    from core.ingest.sql import DEFAULT_STATEMENT_TIMEOUT, read_only_connection, source_engine, source_selectable
    from core.store.db import redact_url, scrub_url

    step = progress or (lambda _f, _m: None)
    _lookback_ns(lookback_days)
    settings = (sessions or SessionSettings()).validated()
    started = time.perf_counter()
    engine = source_engine(url)
    dialect = engine.dialect.name
    if dialect not in SUPPORTED_DIALECTS:
        engine.dispose()
        raise JourneyError(f"building paths in the database is written for {', '.join(SUPPORTED_DIALECTS)}; "
                           f"{dialect} is not one of them: use the memory engine")
    if dialect == "sqlite":
        _register_sqlite(engine)
    try:
        with read_only_connection(engine, DEFAULT_STATEMENT_TIMEOUT if timeout_s is None else timeout_s) as conn:
            step(0.02, "reading the source's columns")
            source, name = source_selectable(conn, table, query)
            sample = conn.execute(select(source).limit(SAMPLE_ROWS)).all()
            if not sample:
                raise JourneyError(f"{name} returned no rows")
            shape = shape_from_sample([c.name for c in source.columns], [tuple(r) for r in sample], mapping_overrides, name)
            stmt = compile_paths_query(source, shape, dialect, lookback_days=lookback_days, level=level, null_lookback=null_lookback,
                                       channel_rules=channel_rules, conversion_events=conversion_events)
            step(0.1, "checking the events in the database")
            checks = conn.execute(checks_query(source, shape, dialect)).one()._asdict()
            _refuse_bad(checks, shape, name)
            counts = None
            if settings.mode == "auto" and shape.profile == "events":
                step(0.2, "counting touch events per visit")
                counts = conn.execute(touch_counts_query(source, shape, dialect, settings.timeout_minutes, channel_rules=channel_rules,
                                                         conversion_events=conversion_events)).one()._asdict()
            _, reason = touch_mode(counts, shape, settings, name)
            step(0.3, "building paths in the database")
            if dialect == "postgresql":  # this transaction only: sorts and hashes in memory, not in 4 MB spills
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'")
            rows = conn.execute(stmt).all()
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
        raise IngestError(f"building paths in {redact_url(url)} failed ({type(exc).__name__}: {scrub_url(detail, url)})") from None
    finally:
        engine.dispose()
    paths, payload = _result_pathtable(rows)
    sql = sql_text(stmt, engine.dialect)
    step(1.0, f"{paths.n_paths:,} unique paths fetched ({payload:,} bytes)")
    report = dict(engine="sql", dialect=dialect, source=f"{redact_url(url)} {table or 'query'}", rows=int(checks["rows"]),
                  paths=paths.n_paths, conversions=round(paths.total_conversions, 6), value=round(paths.total_value, 6),
                  null_journeys=round(paths.total_nulls, 6), rows_fetched=len(rows), bytes_fetched=payload,
                  seconds=round(time.perf_counter() - started, 3), mapping={k: v for k, v in shape.mapping.items() if v},
                  touches_are="every event", touches_reason=reason)
    return SqlPaths(paths, sql, report)


def _refuse_bad(checks: dict, shape: SourceShape, name: str) -> None:
    from core.ingest.parse import _MAX_TS, _MIN_TS

    if checks["missing_users"]:
        raise JourneyError(f"{name}: user id ({shape.col('user_key')}) is missing on {checks['missing_users']:,} row(s)")
    if checks["missing_ts"]:
        raise JourneyError(f"{name}: timestamp ({shape.col('ts')}) is missing on {checks['missing_ts']:,} row(s)")
    if checks["negative_values"]:
        raise JourneyError(f"{name}: conversion value ({shape.col('value')}) is negative on {checks['negative_values']:,} row(s)")
    lo, hi = _MIN_TS.value // 1000, _MAX_TS.value // 1000
    if checks["min_us"] is not None and (checks["min_us"] < lo or checks["max_us"] >= hi):
        raise JourneyError(f"{name}: timestamps ({shape.col('ts')}) read outside 1990-2100; check the column's unit")


def preview_paths_sql(dialect: str, table: str, columns: list[str], sample_rows: list[tuple] | None = None, *,
                      mapping_overrides=None, **options) -> str:
    """The pushdown SQL for ``table`` with ``columns`` in ``dialect``, without a connection (the Data
    page's preview, and the compile-only tests of BigQuery and Snowflake)."""
    from sqlalchemy import table as table_clause

    rows = sample_rows or [tuple(None for _ in columns)]
    shape = shape_from_sample(list(columns), rows, mapping_overrides, table)
    schema, _, name = table.rpartition(".")
    source = table_clause(name, *(column(c) for c in columns), schema=schema or None)
    return sql_text(compile_paths_query(source, shape, dialect, **options), dialect)


__all__ = ["SqlPaths", "SourceShape", "build_pathtable_sql", "touch_counts_query", "touch_mode", "plan_pathtable_sql", "compile_paths_query", "preview_paths_sql", "sql_text", "shape_from_sample"]
