"""What the Optimizer page needs from the database, kept out of the page so it can be tested.

* which performance data can be optimized (the sandbox account, imported performance data sets),
  loaded in the canonical performance columns with a cheap fingerprint for cache keys;
* the live entities of an account (budgets, bids, statuses, parents), which the engine takes as today's
  state (`core.optimize.settings.AccountState`);
* the value source: platform-reported, or attribution-adjusted from a stored attribution run;
* the currencies of a source (most spend first) and its performance and live entities filtered to
  one of them: money of different currencies is never optimized together;
* the page's objective and per-campaign limits as the engine's typed objects, the levels a data set
  can be optimized at, and display helpers (tables, chart frames, numbers without "-0.00").

Nothing here imports streamlit; the page caches on the keys this module builds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from core.optimize.currency import MixedCurrencyError  # noqa: F401  (re-exported: the page catches it from here)
from core.optimize.confidence import predict_draws
from core.optimize.settings import FixedBudget, Limits, MarginalFloor, Objective, TargetRoas
from core.platforms.sync import dataset_label
from core.optimize.currency import currencies, currency_spend, filter_currency, filter_entities
from core.access import Role, guarded
from core.store.db import transaction
from core.store.models import AdEntity, AttributionRun, Dataset, PerformanceDaily

#: Canonical performance columns (DESIGN / preamble), in order.
PERFORMANCE_COLUMNS = [
    "date", "platform", "account_id", "entity_type", "external_id", "entity_name", "spend", "impressions",
    "clicks", "conversions", "conversion_value", "currency", "segment_type", "segment_value",
]
VALUE_SOURCES = ("platform", "attribution")


class OptimizerInputError(ValueError):
    """The page's inputs cannot be turned into an optimization problem; the message says which."""


# --------------------------------------------------------------------------------------------
# Data sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    """One optimizable performance data set.

    ``kind``: "sync" (a platform account's synced performance, the sandbox's first), "sandbox" (the
    sandbox's own simulated rows, when it was never synced) or "dataset" (an imported file).
    ``platform``/``account_id`` name the account the changes go to; ``entity_platform`` is where its
    live entities (budgets, bids, statuses) are stored in ``ad_entities``.
    """

    dataset_id: int
    label: str
    kind: str
    platform: str | None = None
    account_id: str | None = None
    entity_platform: str | None = None
    content_hash: str = ""


def list_sources(engine: Engine, workspace_id: str) -> list[DataSource]:
    """Synced accounts first (the sandbox's before others), then never-synced sandboxes, then imported data sets."""
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(Dataset.id, Dataset.name, Dataset.content_hash).where(Dataset.kind == "performance").order_by(Dataset.id.desc())
        ).all()
        accounts = []
        if inspect(engine).has_table("sandbox_accounts"):
            from core.store.models import SandboxAccount

            accounts = s.execute(select(SandboxAccount.account_id, SandboxAccount.dataset_id).order_by(SandboxAccount.id)).all()
    synced, imported = [], []
    own = {int(ds): acct for acct, ds in accounts}
    for ds_id, name, chash in rows:
        ds_id = int(ds_id)
        if ds_id in own:
            continue
        parts = str(name).split(":", 2)
        if parts[0] == "sync" and len(parts) == 3:
            synced.append(DataSource(ds_id, dataset_label(name), "sync", parts[1], parts[2], parts[1], chash or ""))
        else:
            imported.append(DataSource(ds_id, f"Data set #{ds_id}: {name}", "dataset", content_hash=chash or ""))
    synced.sort(key=lambda d: (d.platform != "sandbox", d.platform, d.account_id))
    have = {(d.platform, d.account_id) for d in synced}
    sandboxes = [
        DataSource(int(ds), f"Sandbox account {acct} — simulated, not synced yet", "sandbox", "sandbox", acct, _sandbox_live())
        for acct, ds in accounts if ("sandbox", acct) not in have
    ]
    return synced + sandboxes + imported


def _sandbox_live() -> str:
    from core.platforms import sandbox

    return getattr(sandbox, "LIVE_PLATFORM", sandbox.PLATFORM_NAME)


def has_sandbox(sources: list[DataSource]) -> bool:
    """Whether the workspace's sources include the sandbox account (synced or not)."""
    return any(s.platform == "sandbox" for s in sources)


#: The sandbox account the app opens by itself (the Optimizer's default data and target).
SANDBOX_ACCOUNT = "sandbox-1"


def sandbox_accounts(engine: Engine, workspace_id: str) -> pd.DataFrame:
    """The workspace's sandbox accounts, oldest first: account_id, currency, created_at."""
    from core.store.models import SandboxAccount as A

    cols = ["account_id", "currency", "created_at"]
    if not inspect(engine).has_table("sandbox_accounts"):
        return pd.DataFrame(columns=cols)
    with transaction(engine, workspace_id) as s:
        rows = s.execute(select(A.account_id, A.currency, A.created_at).order_by(A.id)).all()
    return pd.DataFrame(rows, columns=cols)


def account_currency(engine: Engine, workspace_id: str, platform: str | None, account_id: str | None) -> str | None:
    """The currency an ad account keeps its money in: a sandbox account's own, else that of its synced campaigns
    (the one with the most spend, as a schedule optimizes in it); None while the account has no synced data."""
    if platform == "sandbox":
        own = sandbox_accounts(engine, workspace_id)
        match = own.loc[own["account_id"] == account_id, "currency"]
        if len(match):
            return str(match.iloc[0])
    source = next((d for d in list_sources(engine, workspace_id)
                   if d.kind == "sync" and d.platform == platform and d.account_id == account_id), None)
    if source is None:
        return None
    spend = source_currencies(engine, workspace_id, source)
    return str(spend.index[0]) if len(spend) else None


def next_sandbox_account(engine: Engine, workspace_id: str) -> str:
    """The first free sandbox account id: ``sandbox-1``, then ``sandbox-2``, ..."""
    taken = set(sandbox_accounts(engine, workspace_id)["account_id"])
    return next(f"sandbox-{n}" for n in range(1, len(taken) + 2) if f"sandbox-{n}" not in taken)


def sandbox_settings(account_id: object, currency: object) -> tuple[str, str]:
    """A new sandbox account's id and currency, checked: the id as ad accounts spell theirs, the currency an
    active ISO 4217 code of money (``usd`` is taken as USD; XAU, XXX or a made-up code are refused)."""
    from core.money import currency_code, is_iso_currency

    acct = str(account_id or "").strip()
    if not acct or len(acct) > 64 or not all(ch.isalnum() or ch in "-_." for ch in acct):
        raise OptimizerInputError(f"sandbox account id {account_id!r}: use 1-64 letters, digits, '-', '_' or '.'")
    try:
        code = currency_code(currency)
    except ValueError:
        code = ""
    if not is_iso_currency(code):
        raise OptimizerInputError(f"{currency!r} is not an ISO 4217 currency of money (e.g. USD, EUR, JPY, KWD)")
    return acct, code


@guarded(Role.ANALYST, "sandbox.open", target="{account_id}")
def ensure_sandbox(engine: Engine, workspace_id: str, *, account_id: str = SANDBOX_ACCOUNT, currency: str | None = None,
                   actor: str | None = None) -> DataSource:
    """Open (creating if needed, in ``currency``, USD by default) a sandbox account and sync it; returns its data source.

    The sandbox is the default target of the optimizer's plans (it needs no credentials). An account that exists
    keeps its currency: asking for it in another one is refused (its budgets and history are in its own).
    """
    from core.platforms.sandbox import SandboxPlatform
    from core.platforms.sync import sync_platform

    existing = sandbox_accounts(engine, workspace_id)
    have = dict(zip(existing["account_id"], existing["currency"]))
    account_id, currency = sandbox_settings(account_id, currency or have.get(str(account_id).strip(), "USD"))
    if account_id in have and have[account_id] != currency:
        raise OptimizerInputError(f"sandbox account {account_id} exists already, in {have[account_id]}: choose another "
                                  f"account id for a {currency} account")
    try:
        sb = SandboxPlatform(engine, workspace_id, account_id, currency=currency)
    except IntegrityError:  # another session created it at the same moment: open theirs
        sb = SandboxPlatform(engine, workspace_id, account_id, currency=currency)
    report = sync_platform(engine, workspace_id, sb, actor=actor)
    return next(d for d in list_sources(engine, workspace_id) if d.dataset_id == report.dataset_id)


def fingerprint(engine: Engine, workspace_id: str, source: DataSource) -> str:
    """A cheap content fingerprint of a data set and its live budgets.

    It changes whenever the sandbox simulates new days, a sync adds or restates days, a data set is
    re-imported or a live budget changes, so caches keyed on it never serve stale fits or allocations.
    What the data set holds is `core.ingest.persist.content_hash` (the import hash, or for a synced or
    simulated set a fingerprint of its rows), the one place that says so for every page.
    """
    from core.ingest.persist import content_hash

    parts = [workspace_id, str(source.dataset_id), content_hash(engine, workspace_id, source.dataset_id)]
    if source.entity_platform is not None:
        with transaction(engine, workspace_id) as s:
            ents = s.execute(
                select(AdEntity.external_id, AdEntity.daily_budget, AdEntity.status, AdEntity.bid)
                .where(AdEntity.platform == source.entity_platform, AdEntity.account_id == source.account_id)
                .order_by(AdEntity.external_id)
            ).all()
        parts.extend(f"{x}={b}/{st}/{bid}" for x, b, st, bid in ents)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def load_performance(engine: Engine, workspace_id: str, dataset_id: int) -> pd.DataFrame:
    """The data set's daily performance in the canonical columns (`core.ingest.persist.load_performance`).

    Raises `OptimizerInputError` when the data set is not in the workspace or has no rows.
    """
    from core.ingest.persist import load_performance as _load

    with transaction(engine, workspace_id) as s:
        if s.get(Dataset, dataset_id) is None:
            raise OptimizerInputError(f"data set #{dataset_id} does not exist in workspace {workspace_id!r}")
    df = _load(engine, workspace_id, [dataset_id])
    if df.empty:
        raise OptimizerInputError(f"data set #{dataset_id} has no performance rows")
    return df[PERFORMANCE_COLUMNS]


def entity_state(engine: Engine, workspace_id: str, source: DataSource) -> pd.DataFrame:
    """The source account's live entities: platform (as in the performance data), account_id, entity_type,
    external_id, parent_id, entity_name, status, daily_budget and bid (Decimal or None), shared_budget, currency.

    Empty for imported data sets (no live account). The frame also serves as the engine's
    ``current_budgets`` / ``current_bids`` / ``statuses`` input.
    """
    cols = ["platform", "account_id", "entity_type", "external_id", "parent_id", "entity_name", "status", "daily_budget", "bid",
            "shared_budget", "currency"]
    if source.entity_platform is None:
        return pd.DataFrame(columns=cols)
    A = AdEntity
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(A.entity_type, A.external_id, A.parent_id, A.name, A.status, A.daily_budget, A.bid, A.shared_budget, A.currency)
            .where(A.platform == source.entity_platform, A.account_id == source.account_id).order_by(A.id)
        ).all()
    out = pd.DataFrame(rows, columns=cols[2:])
    out.insert(0, "account_id", source.account_id)
    out.insert(0, "platform", source.platform)
    return out


# --------------------------------------------------------------------------------------------
# Currencies
# --------------------------------------------------------------------------------------------

def list_currencies(performance: pd.DataFrame) -> list[str]:
    """The currency codes of a performance frame, most spend first (the default choice is the first)."""
    return currencies(performance)


def source_currencies(engine: Engine, workspace_id: str, source: DataSource) -> pd.Series:
    """Spend per currency of a data source (campaign totals), most spend first: a Series indexed by code."""
    P = PerformanceDaily
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(P.currency, func.sum(P.spend))
            .where(P.dataset_id == source.dataset_id, P.segment_type == "", P.entity_type == "campaign")
            .group_by(P.currency)
        ).all()
        if not rows:  # no campaign totals: count every row
            rows = s.execute(select(P.currency, func.sum(P.spend)).where(P.dataset_id == source.dataset_id).group_by(P.currency)).all()
    frame = pd.DataFrame([(c, float(v or 0)) for c, v in rows], columns=["currency", "spend"])
    return currency_spend(frame)


def filter_to_currency(performance: pd.DataFrame, currency: str,
                       entities: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(performance, entities) reduced to the campaigns in ``currency``.

    ``entities`` is `entity_state`'s frame (ad sets / ad groups without a currency follow their
    campaign). Raises `OptimizerInputError` listing the currencies when ``currency`` is not among them.
    """
    have = currencies(performance)
    code = str(currency or "").strip().upper()
    if code not in have:
        raise OptimizerInputError(f"no campaigns in currency {currency!r}: the data has {', '.join(have) or 'no currency'}")
    perf = filter_currency(performance, code)
    if entities is not None:
        camp_ids = perf.loc[perf["entity_type"] == "campaign", "external_id"].unique() if "entity_type" in perf.columns else perf["external_id"].unique()
        entities = filter_entities(entities, code, camp_ids)
    return perf, entities


# --------------------------------------------------------------------------------------------
# Value source
# --------------------------------------------------------------------------------------------


def list_attribution_runs(engine: Engine, workspace_id: str) -> pd.DataFrame:
    """Stored attribution runs (id, dataset_id, created_at, models, label), newest first."""
    with transaction(engine, workspace_id) as s:
        rows = s.execute(
            select(AttributionRun.id, AttributionRun.dataset_id, AttributionRun.created_at, AttributionRun.params)
            .order_by(AttributionRun.id.desc())
        ).all()
    out = pd.DataFrame(rows, columns=["id", "dataset_id", "created_at", "params"])
    out["models"] = [", ".join(map(str, (p or {}).get("models", []))) for p in out["params"]]
    out["label"] = [f"Run #{i} (data set #{d}, {c:%Y-%m-%d %H:%M}) {m}".rstrip() for i, d, c, m in
                    zip(out["id"], out["dataset_id"], out["created_at"], out["models"])]
    return out.drop(columns=["params"])


def _col(frame: pd.DataFrame, names: tuple[str, ...], what: str, run_id: int) -> str:
    for n in names:
        if n in frame.columns:
            return n
    raise OptimizerInputError(f"attribution run #{run_id} has no {what} column (looked for {', '.join(names)}); found {list(frame.columns)}")


def run_credit(engine: Engine, workspace_id: str, run_id: int) -> pd.DataFrame:
    """The stored run's tidy credit table as a DataFrame."""
    with transaction(engine, workspace_id) as s:
        run = s.get(AttributionRun, run_id)
        if run is None:
            raise OptimizerInputError(f"attribution run #{run_id} does not exist in workspace {workspace_id!r}")
        results = run.results
    frame = pd.DataFrame(results or [])
    if frame.empty:
        raise OptimizerInputError(f"attribution run #{run_id} has no results")
    return frame


def run_models(credit: pd.DataFrame) -> list[str]:
    """The models present in a credit table (one unnamed model when it has no ``model`` column)."""
    return sorted(credit["model"].astype(str).unique()) if "model" in credit.columns else [""]


def channel_value(credit: pd.DataFrame, model: str, run_id: int = 0) -> dict[str, float]:
    """Credited value per channel of one model of a tidy credit table.

    Uses the value credit when the run has it, else conversion credit (the allocation only needs
    each channel's share, see `apply_value_source`).
    """
    frame = credit
    if "model" in frame.columns:
        frame = frame[frame["model"].astype(str) == str(model)]
        if frame.empty:
            raise OptimizerInputError(f"attribution run #{run_id} has no results for model {model!r}")
    ch = _col(frame, ("channel", "channel_name", "campaign_id", "campaign"), "channel", run_id)
    val = _col(frame, ("value", "total_conversion_value", "conversion_value", "credit_value", "conversions",
                       "total_conversions", "credit"), "credited value", run_id)
    sums = frame.groupby(frame[ch].astype(str))[val].sum()
    return {str(k): float(v) for k, v in sums.items()}


def apply_value_source(performance: pd.DataFrame, source: str, credit: Mapping[str, float] | None = None,
                       campaign_channel: Mapping[str, str] | None = None,
                       parents: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The performance frame whose ``conversion_value`` the optimizer should trust.

    ``platform``: as reported. ``attribution``: each channel's value re-weighted so the channels'
    shares follow the attribution credit while the total reported value is kept (see
    `core.response.attribution_adjusted`). A campaign's channel is ``campaign_channel[external_id]``,
    else guessed (`guess_campaign_channels`); ad sets / ad groups take their parent campaign's channel
    from ``parents`` (child id -> campaign id). Child rows whose campaign is unknown are left out: they
    only feed bid suggestions, which need a live account (and so ``parents``) anyway.
    """
    if source not in VALUE_SOURCES:
        raise OptimizerInputError(f"value source must be one of {VALUE_SOURCES}, got {source!r}")
    if source == "platform":
        return performance
    if not credit:
        raise OptimizerInputError("attribution-adjusted value needs a stored attribution run: choose one")
    from core.response import attribution_adjusted

    mapping = dict(campaign_channel) if campaign_channel else guess_campaign_channels(performance, list(credit))
    camps = campaign_list(performance)["external_id"]
    unmapped = [x for x in camps if x not in mapping]
    if unmapped:
        raise OptimizerInputError(f"no attribution channel chosen for campaign(s) {', '.join(unmapped[:5])}")
    unknown = sorted({mapping[x] for x in camps} - set(credit))
    if unknown:
        raise OptimizerInputError(f"channel(s) {', '.join(unknown)} are not in the attribution run (it has {', '.join(sorted(credit))})")
    for child, parent in (parents or {}).items():
        if parent in mapping:
            mapping.setdefault(child, mapping[parent])
    keep = (performance["entity_type"] == "campaign") | performance["external_id"].isin(list(mapping))
    return attribution_adjusted(performance[keep].reset_index(drop=True), credit, mapping, shares=True)


def campaign_list(performance: pd.DataFrame) -> pd.DataFrame:
    """The campaigns of a performance frame: platform, external_id, entity_name (one row each, sorted by id)."""
    c = performance[performance["entity_type"] == "campaign"]
    return c[["platform", "external_id", "entity_name"]].drop_duplicates("external_id", keep="last").sort_values("external_id",
                                                                                                            ignore_index=True)


def guess_campaign_channels(performance: pd.DataFrame, channels: list[str], strict: bool = True) -> dict[str, str]:
    """campaign external_id -> channel: exact id, then the channel named in platform, id or name.

    Matching is case-insensitive on whole words and must be unambiguous. With ``strict`` a campaign
    no channel matches raises `OptimizerInputError` naming it; otherwise it is left out.
    """
    lower = {c.lower(): c for c in channels}
    out: dict[str, str] = {}
    missing: list[str] = []
    for plat, xid, name in campaign_list(performance).itertuples(index=False, name=None):  # per campaign, not per row
        hit = lower.get(xid.lower()) or lower.get(plat.lower())
        if hit is None:
            words = set(pd.Series([xid, name]).str.lower().str.split(r"[^a-z0-9_]+", regex=True).explode())
            found = sorted({lower[w] for w in words if w in lower})
            hit = found[0] if len(found) == 1 else None
        if hit is None:
            missing.append(f"{xid} ({name})")
        else:
            out[xid] = hit
    if missing and strict:
        raise OptimizerInputError(
            f"cannot tell which attribution channel these campaigns belong to: {', '.join(missing[:5])}; "
            f"the run's channels are {', '.join(channels)}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Constraints
# --------------------------------------------------------------------------------------------


#: The page's objectives -> what `core.optimize.recommend.solve` is asked.
OBJECTIVES = {
    "value": "Best split of a total budget",
    "cap": "Reach a target ROAS, spending at most the total budget",
    "target": "Largest budget that still reaches a target ROAS",
    "floor": "Largest budget whose marginal ROAS stays above a floor",
}


def page_objective(objective: str, total_budget: float, target_roas: float, marginal_floor: float) -> tuple[Objective, float]:
    """(the typed objective, the ROAS bids and advice aim at) for a page objective (see `OBJECTIVES`).

    The target also drives bid suggestions and targeting advice, whatever the objective. Raises
    `OptimizerInputError` for an unknown objective and `core.optimize.settings.SettingsError` for a bad number.
    """
    if objective == "value":
        return FixedBudget(total=float(total_budget)), float(target_roas)
    if objective == "cap":
        return TargetRoas(target=float(target_roas), cap=float(total_budget)), float(target_roas)
    if objective == "target":
        return TargetRoas(target=float(target_roas)), float(target_roas)
    if objective == "floor":
        return MarginalFloor(floor=float(marginal_floor)), float(target_roas)
    raise OptimizerInputError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}")


def page_limits(campaign_ids: list[str], mins: Mapping[str, float | None] | None = None,
                maxs: Mapping[str, float | None] | None = None, locked=None) -> Limits:
    """The per-campaign `Limits` (curve order) from the page's controls.

    ``campaign_ids`` lists the external ids in curve order; ``mins``/``maxs`` map an id to a budget
    (absent or None = no bound: 0 / unlimited); ``locked`` ids keep today's budget. Unknown ids,
    negative or non-numeric values raise `OptimizerInputError` naming the campaign; contradictions
    between bounds are reported by the engine's `InfeasibleError`.
    """
    ids = [str(x) for x in campaign_ids]
    pos = {x: i for i, x in enumerate(ids)}
    lo = np.zeros(len(ids))
    hi = np.full(len(ids), np.inf)
    for what, vals, arr in (("min", mins, lo), ("max", maxs, hi)):
        for x, v in (vals or {}).items():
            if x not in pos:
                raise OptimizerInputError(f"{what} budget given for unknown campaign {x!r}")
            if v is None:
                continue
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise OptimizerInputError(f"{what} budget of {x} must be a number, got {v!r}") from None
            if not np.isfinite(v) or v < 0:
                raise OptimizerInputError(f"{what} budget of {x} must be a non-negative number, got {v!r}")
            arr[pos[x]] = v
    lk = []
    for x in locked or ():
        if x not in pos:
            raise OptimizerInputError(f"lock given for unknown campaign {x!r}")
        lk.append(x)
    return Limits(min_budget=lo, max_budget=hi, locked=tuple(lk))


def level_options(performance: pd.DataFrame, entities: pd.DataFrame | None = None) -> dict[str, str]:
    """The levels a data set can be optimized at -> a label that counts them and says where budgets live.

    Campaigns are always offered when the data has campaign rows or child rows with their campaign;
    each child level present with rows is offered too. E.g. ``{"campaign": "Campaigns (2, rolled up
    from 5 ad groups)", "ad_group": "Ad groups (5 in 2 campaigns)"}``.
    """
    from core.optimize.levels import LevelError, levels_present, resolve_level

    out: dict[str, str] = {}
    for level in ("campaign", "ad_set", "ad_group"):
        if level != "campaign" and level not in levels_present(performance):
            continue
        try:
            _, info = resolve_level(performance, level, entities)
        except LevelError:
            continue
        text = info.describe()
        count, _, rest = text.partition(" ")
        label = f"{rest[0].upper()}{rest[1:]} ({count})" if not info.n_parents and not info.rolled_up_from else \
            f"{info.noun.capitalize()}s ({text})"
        if info.budget_level == level:
            label += " — where the budgets live"
        out[level] = label
    return out


def display(x: float, decimals: int = 2) -> float:
    """``x`` rounded for display, with negative zero made plain zero (never "-0.00")."""
    v = round(float(x), decimals)
    return v + 0.0 if v == 0 else v


def signed(x: float, decimals: int = 2) -> str:
    """A signed difference for a metric delta: "+1,234.50", "-3.10", and "0.00" for anything that rounds to zero."""
    v = display(x, decimals)
    return f"{0:.{decimals}f}" if v == 0 else f"{v:+,.{decimals}f}"


def cache_key(*parts: object) -> str:
    """A short stable key from workspace, data set, fingerprint and settings (for st.cache_data)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------
# Alignment, tables and chart data
# --------------------------------------------------------------------------------------------


def _ratio(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.divide(a, b, out=np.full(np.broadcast(a, b).shape, np.nan), where=b > 0)


BEFORE_AFTER = {
    "entity_name": "campaign", "external_id": "external_id", "current_budget": "budget_before",
    "new_budget": "budget_after", "change_pct": "change_pct", "value_now": "value_before", "value_new": "value_after",
    "roas_now": "roas_before", "roas_new": "roas_after", "marginal_now": "mroas_before", "marginal_new": "mroas_after",
    "confidence": "confidence", "confidence_why": "why", "r2": "r2", "extrapolated": "extrapolated", "locked": "locked",
    "held": "held", "held_because": "held_because",
}


def before_after(budget_table: pd.DataFrame) -> pd.DataFrame:
    """The engine's budget table as the page's before/after table, plus a ``Total`` row.

    Per campaign: budget, predicted value, ROAS and marginal ROAS today and proposed, the change's
    confidence with what drives it (``why``) beside the fit's R², whether it is extrapolated, and for a
    campaign kept at today's budget the rule that kept it (``held``: a key of
    `core.optimize.recommend.HELD`; ``held_because``: in words). The total's marginal ROAS is the
    budget-weighted mean. Percent changes are rounded to 0.1 with no negative zero.
    """
    cols = [c for c in BEFORE_AFTER if c in budget_table.columns]
    t = budget_table[cols].rename(columns=BEFORE_AFTER).reset_index(drop=True)
    t["locked"] = t["locked"].astype(bool)
    if "extrapolated" in t.columns:
        t["extrapolated"] = t["extrapolated"].astype(bool)
    t["change_pct"] = np.round(t["change_pct"].to_numpy(float), 1) + 0.0
    b0, b1 = t["budget_before"].to_numpy(float), t["budget_after"].to_numpy(float)
    v0, v1 = t["value_before"].sum(), t["value_after"].sum()
    m0 = np.nan_to_num(t["mroas_before"].to_numpy(float)) * b0
    m1 = np.nan_to_num(t["mroas_after"].to_numpy(float)) * b1
    total = {
        "campaign": "Total", "external_id": "", "budget_before": b0.sum(), "budget_after": b1.sum(),
        "change_pct": 100.0 * (float(_ratio(b1.sum(), b0.sum())) - 1.0), "value_before": v0, "value_after": v1,
        "roas_before": float(_ratio(v0, b0.sum())), "roas_after": float(_ratio(v1, b1.sum())),
        "mroas_before": float(_ratio(m0.sum(), b0.sum())), "mroas_after": float(_ratio(m1.sum(), b1.sum())),
        "confidence": np.nan, "locked": False,
    }
    total["change_pct"] = display(total["change_pct"], 1) if np.isfinite(total["change_pct"]) else np.nan
    if "extrapolated" in t.columns:
        total["extrapolated"] = False
    for c in ("why", "held", "held_because"):
        if c in t.columns:
            total[c] = ""
    return pd.concat([t, pd.DataFrame([total])], ignore_index=True)


def recommendations_frame(changes) -> pd.DataFrame:
    """The draft changes (budget, bid, status) as a table: entity, field, old, new, confidence, auto-approve, reason."""
    cols = ["entity_name", "external_id", "entity_type", "field", "old_value", "new_value", "confidence", "auto_approve", "reason"]
    return pd.DataFrame([{c: getattr(d, c) for c in cols} for d in changes], columns=cols).astype(
        {"old_value": "str", "new_value": "str"})


def plan_groups(changes) -> dict[tuple[str, str], list]:
    """Draft changes grouped by (platform, account_id): one change plan per account."""
    out: dict[tuple[str, str], list] = {}
    for d in changes:
        out.setdefault((d.platform, d.account_id), []).append(d)
    return out


def curve_chart_frames(curves, draws: np.ndarray, i: int, current: float, proposed: float | None, n_grid: int = 80):
    """(observed points, fitted curve with a 5-95 % band, current/proposed markers) of campaign ``i``."""
    d = curves.daily[curves.daily["idx"].to_numpy() == i]
    points = pd.DataFrame({"date": d["date"].to_numpy(), "spend": d["spend"].to_numpy(float), "value": d["conversion_value"].to_numpy(float)})
    top = max([float(points["spend"].max()) if len(points) else 0.0, current, proposed or 0.0]) * 1.3 or 1.0
    grid = np.linspace(0.0, top, n_grid)
    one = curves.subset(np.array([i]))
    fitted = one.predict(grid[:, None])[:, 0]
    # the band widens beyond the observed spend, where the slope is no longer known (see core.optimize.confidence):
    # the campaign repeated once per grid point, each draw the same curve along the grid
    rep = curves.subset(np.full(n_grid, i))
    z = np.broadcast_to(np.random.default_rng(0).standard_normal((draws.shape[0], 1, 2)), (draws.shape[0], n_grid, 2))
    sims = predict_draws(rep, grid, np.broadcast_to(draws[:, i, None, :], (draws.shape[0], n_grid, draws.shape[-1])), z)
    lo, hi = np.percentile(sims, [5.0, 95.0], axis=0)
    line = pd.DataFrame({"spend": grid, "value": fitted, "low": lo, "high": hi})
    rows = [("today", current)] + ([("proposed", proposed)] if proposed is not None else [])
    marks = pd.DataFrame({"which": [r[0] for r in rows], "spend": [float(r[1]) for r in rows]})
    marks["value"] = one.predict(marks["spend"].to_numpy(float)[:, None])[:, 0]
    return points, line, marks
