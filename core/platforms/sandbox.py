"""The sandbox ad account: a simulated Meta-like + Google-like account kept in the database.

It is the default platform, so the whole optimize -> review -> execute -> history -> rollback loop
works with no credentials. Live entity state is in ``ad_entities`` (platform "sandbox-live"); hidden
power-law response curves, the simulation clock and the seed are in ``sandbox_accounts``; simulated
daily performance is written to ``performance_daily`` under the account's own dataset. Applying a
change moves the performance of the days simulated afterwards (`advance_days`).

Model (hidden from the user, per campaign): expected value/day = a * spend^k (0 < k < 1);
spend = budget * pacing, where pacing rises with the children's bids relative to their starting
bids; conversions are Poisson, values carry lognormal noise; clicks follow a CPC that rises with
bids. Meta-like campaigns have ad sets (bid caps, budgets in whole cents like Meta's minor units);
Google-like campaigns have ad groups (manual CPC bids, micros-style whole-cent amounts).

Learning phase (as the platforms have it): a budget or bid change of more than `LEARNING_RESET_PCT`
percent, or re-activating a paused entity, is a significant edit. It puts the entity back into
learning (Meta-like: the campaign's ad sets, or the ad set, report ``LEARNING``; Google-like: the
campaign reports ``LEARNING_BUDGET_CHANGE``) for `LEARNING_DAYS` simulated days, during which its
value per unit of spend is `LEARNING_EFFICIENCY` of normal; it then reports ``SUCCESS`` (``FAIL`` for a
Meta-like ad set with fewer than 50 conversions in that week) or ``ENABLED``.

Drift (``drift`` > 0): each campaign's curve level follows a seeded random walk in log space
(``drift`` = its standard deviation per day), so yesterday's optimum is not today's.
`hidden_curves` reveals the curves of a day, for simulations and benchmarks only.

Fault injection (`inject`) is for tests: fail the Nth call of a method, time out, rate-limit
(`RateLimitError` with ``retry_after``), reject permanently (code / message / request id), fail
authentication, or "crash" (an exception that is not a platform error, as a dying process would
leave things) before or after the write.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from core.money import currency_code, currency_exponent, is_whole_units, minor_unit, quantize_money, to_decimal
from core.store.db import is_busy_error, transaction
from core.store.models import AdEntity, Dataset, PerformanceDaily, SandboxAccount

from .base import (
    FIELDS,
    STATUSES,
    ApplyResult,
    AuthError,
    ChangeRequest,
    Entity,
    PerformanceRow,
    PermanentPlatformError,
    RateLimitError,
    TransientPlatformError,
    ValidationResult,
)

PLATFORM_NAME = "sandbox"
#: ``ad_entities.platform`` of the sandbox's own live state. Synced copies (`core.platforms.sync`) use
#: PLATFORM_NAME like every real platform, so a sync never overwrites the simulated account itself.
LIVE_PLATFORM = "sandbox-live"
HISTORY_DAYS = 90
MIN_BUDGET = Decimal("1.00")
MAX_BUDGET = Decimal("1000000")
#: A budget / bid change larger than this (percent, either way) resets the learning phase.
LEARNING_RESET_PCT = 20.0
#: Simulated days an entity stays in learning after a significant edit.
LEARNING_DAYS = 7
#: Value per unit of spend while in learning, relative to normal.
LEARNING_EFFICIENCY = 0.8
#: Conversions a Meta-like ad set needs in its learning week to exit with SUCCESS (else FAIL).
LEARNING_CONVERSIONS = 50

_META_NAMES = ["Prospecting - Broad", "Retargeting - 30d", "Lookalike 1%", "Advantage+ Shopping",
               "Video Views - Reels", "Catalog Sales", "Lead Gen - Forms", "Brand Awareness"]
_GOOGLE_NAMES = ["Search - Brand", "Search - Generic", "Performance Max", "Shopping - All Products",
                 "Display - Remarketing", "YouTube - Prospecting", "Search - Competitors", "Demand Gen"]
_DEVICES = (("mobile", 0.60, 0.8), ("desktop", 0.33, 1.35), ("tablet", 0.07, 1.0))
_PLACEMENTS = (("feed", 0.55, 1.15), ("stories", 0.25, 0.8), ("reels", 0.20, 0.85))


class SandboxCrash(BaseException):
    """Injected: the process 'died' during a platform call (not a platform answer).

    A BaseException, like the interruption of a killed process: no ``except Exception`` of the executor
    sees it, so nothing after the call runs (an unexpected *error* is handled, a death is not)."""


@dataclass
class _Fault:
    kind: str  # transient | timeout | rate_limit | permanent | auth | crash | crash_after | timeout_after
    method: str  # apply | validate | read_live | list_entities | fetch_performance | "*"
    on_call: int | None  # the Nth call (1-based) of that method; None = any call
    match: str | None  # only changes of this external id
    times: int  # how many times it fires
    retry_after: float | None
    code: str
    message: str


class SandboxPlatform:
    """A simulated ad account implementing `core.platforms.base.AdPlatform`."""

    name = PLATFORM_NAME

    def __init__(self, engine: Engine, workspace_id: str, account_id: str = "sandbox-1", seed: int = 7, *,
                 currency: str = "USD", n_meta: int = 4, n_google: int = 4, children: int = 2,
                 history_days: int = HISTORY_DAYS, today: dt.date | None = None, drift: float = 0.0):
        if n_meta < 0 or n_google < 0 or n_meta + n_google == 0:
            raise ValueError("the sandbox needs at least one campaign (n_meta + n_google > 0)")
        if children < 1:
            raise ValueError("children (ad sets / ad groups per campaign) must be at least 1")
        if not 0.0 <= float(drift) <= 0.5:
            raise ValueError(f"drift is a daily standard deviation in log space between 0 and 0.5, got {drift!r}")
        self._drift = float(drift)
        self.engine, self.workspace_id, self.account_id = engine, workspace_id, account_id
        self.currency = currency_code(currency)
        currency_exponent(self.currency)  # money at all (not XAU / XXX); KWD keeps fils, JPY whole yen
        self.calls: dict[str, int] = {}
        self._faults: list[_Fault] = []
        with transaction(engine, workspace_id) as s:
            acct = s.scalars(select(SandboxAccount).where(SandboxAccount.account_id == account_id)).one_or_none()
            if acct is None:
                self._create(s, seed, n_meta, n_google, children, history_days, today)
        if not hasattr(self, "_params"):
            self._load()
        if self._pending_history:
            self.advance_days(self._pending_history, _history=True)
            self._pending_history = 0

    # ------------------------------------------------------------------ creation / state
    def _create(self, s, seed, n_meta, n_google, children, history_days, today) -> None:
        """A fresh account: entities, hidden curves and (by the caller) `history_days` of history."""
        rng = np.random.default_rng([seed, 1])
        ds = Dataset(name=f"sandbox:{self.account_id}", kind="performance", source="sandbox",
                     report={"note": "simulated performance of the sandbox ad account"})
        s.add(ds)
        s.flush()
        today = today or dt.datetime.now(dt.timezone.utc).date()
        campaigns, entities = {}, []
        specs = [("meta", i, _META_NAMES[i % len(_META_NAMES)]) for i in range(n_meta)] + \
                [("google", i, _GOOGLE_NAMES[i % len(_GOOGLE_NAMES)]) for i in range(n_google)]
        for flavor, i, base_name in specs:
            cid = f"{flavor}-c{i + 1:03d}"
            budget = quantize_money(Decimal(int(rng.integers(4, 80)) * 5), self.currency)
            k = float(rng.uniform(0.35, 0.85))
            roas0 = float(rng.uniform(1.5, 5.0))
            b0 = float(budget)
            weights = rng.dirichlet(np.full(children, 4.0))
            child_ids, ref_bids = [], []
            suffix = "" if i < (len(_META_NAMES) if flavor == "meta" else len(_GOOGLE_NAMES)) else f" #{i + 1}"
            cname = f"{'Meta' if flavor == 'meta' else 'Google'} - {base_name}{suffix}"
            entities.append(dict(entity_type="campaign", external_id=cid, parent_id=None, name=cname, status="ACTIVE",
                                 daily_budget=budget, bid=None,
                                 bid_strategy="LOWEST_COST_WITH_BID_CAP" if flavor == "meta" else "MANUAL_CPC"))
            for j in range(children):
                ctype = "ad_set" if flavor == "meta" else "ad_group"
                bid = quantize_money(Decimal(str(round(float(rng.uniform(0.5, 3.0) if flavor == "google" else rng.uniform(5, 30)),
                                                       currency_exponent(self.currency)))), self.currency)
                xid = f"{cid}-{'as' if flavor == 'meta' else 'ag'}{j + 1}"
                entities.append(dict(entity_type=ctype, external_id=xid, parent_id=cid, name=f"{cname} / {'Ad set' if flavor == 'meta' else 'Ad group'} {j + 1}",
                                     status="ACTIVE", daily_budget=None, bid=bid,
                                     bid_strategy="LOWEST_COST_WITH_BID_CAP" if flavor == "meta" else "MANUAL_CPC"))
                child_ids.append(xid)
                ref_bids.append(float(bid))
            campaigns[cid] = dict(
                flavor=flavor, a=roas0 * b0 / b0 ** k, k=k, aov=float(rng.uniform(40, 150)), cpc=float(rng.uniform(0.4, 2.5)),
                ctr=float(rng.uniform(0.008, 0.03)), pacing=float(rng.uniform(0.86, 0.95)), children=child_ids,
                weights=[float(w) for w in weights], ref_bids=ref_bids,
                segments=("placement" if flavor == "meta" and i == 0 else "hour" if flavor == "google" and i == 0 else
                          "device" if i == 1 else ""),
            )
        for e in entities:
            settled = "SUCCESS" if e["entity_type"] == "ad_set" else "ENABLED" if e["entity_type"] == "campaign" and \
                e["external_id"].startswith("google") else None
            s.add(AdEntity(platform=LIVE_PLATFORM, account_id=self.account_id, currency=self.currency,
                           learning_status=settled, **e))
        acct = SandboxAccount(account_id=self.account_id, seed=int(seed), currency=self.currency,
                              clock=today - dt.timedelta(days=history_days + 1), dataset_id=ds.id,
                              params={"campaigns": campaigns, "hour_curve": _hour_curve().tolist(),
                                      "drift": self._drift, "drift_log": [0.0] * len(campaigns), "learning": {}})
        s.add(acct)
        s.flush()
        self._params, self._seed, self._dataset_id = acct.params, acct.seed, ds.id
        self._pending_history = history_days

    def _load(self) -> None:
        with transaction(self.engine, self.workspace_id) as s:
            acct = s.scalars(select(SandboxAccount).where(SandboxAccount.account_id == self.account_id)).one()
            self._params, self._seed, self._dataset_id = acct.params, acct.seed, acct.dataset_id
            self.currency = acct.currency
        self._pending_history = 0

    @property
    def dataset_id(self) -> int:
        """The dataset holding the sandbox's simulated performance."""
        return self._dataset_id

    def clock(self) -> dt.date:
        """The last simulated day."""
        with transaction(self.engine, self.workspace_id) as s:
            return s.scalars(select(SandboxAccount.clock).where(SandboxAccount.account_id == self.account_id)).one()

    # ------------------------------------------------------------------ fault injection
    def inject(self, kind: str, *, method: str = "apply", on_call: int | None = None, match: str | None = None,
               times: int = 1, retry_after: float | None = None, code: str | None = None, message: str | None = None) -> None:
        """Make a future call fail (tests): ``kind`` is transient, timeout, rate_limit, permanent, auth, crash
        or crash_after (the write happens, then the 'process dies'), or timeout_after (the write happens, then
        the answer is lost: the caller sees a timeout, the classic "did it apply?")."""
        kinds = ("transient", "timeout", "rate_limit", "permanent", "auth", "crash", "crash_after", "timeout_after")
        if kind not in kinds:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {kinds}")
        default_code = {"transient": "503", "timeout": "timeout", "rate_limit": "17", "permanent": "100",
                        "auth": "190", "crash": "crash", "crash_after": "crash", "timeout_after": "timeout"}[kind]
        self._faults.append(_Fault(kind, method, on_call, match, times, retry_after, code or default_code,
                                   message or f"sandbox injected {kind.replace('_', ' ')}"))

    def clear_faults(self) -> None:
        self._faults.clear()

    def _call(self, method: str, external_id: str | None = None, *, after: bool = False) -> None:
        """Count the call (before the work) and raise the first matching fault."""
        if not after:
            self.calls[method] = self.calls.get(method, 0) + 1
        n = self.calls.get(method, 0)
        for f in self._faults:
            if f.times <= 0 or f.method not in (method, "*") or (f.kind in ("crash_after", "timeout_after")) != after:
                continue
            if f.on_call is not None and f.on_call != n:
                continue
            if f.match is not None and f.match != external_id:
                continue
            f.times -= 1
            rid = f"sbx-req-{uuid.uuid4().hex[:12]}"
            if f.kind in ("crash", "crash_after"):
                raise SandboxCrash(f"{f.message} during {method} call #{n}")
            if f.kind == "rate_limit":
                raise RateLimitError(f.message, code=f.code, request_id=rid, retry_after=f.retry_after)
            if f.kind in ("transient", "timeout", "timeout_after"):
                raise TransientPlatformError(f.message, code=f.code, request_id=rid, retry_after=f.retry_after)
            if f.kind == "auth":
                raise AuthError(f.message, code=f.code, request_id=rid)
            raise PermanentPlatformError(f.message, code=f.code, request_id=rid)

    # ------------------------------------------------------------------ AdPlatform
    def _entity_rows(self, s) -> list[AdEntity]:
        return list(s.scalars(select(AdEntity).where(AdEntity.platform == LIVE_PLATFORM,
                                                      AdEntity.account_id == self.account_id).order_by(AdEntity.id)))

    def list_entities(self) -> list[Entity]:
        self._call("list_entities")
        with transaction(self.engine, self.workspace_id) as s:
            return [Entity(platform=PLATFORM_NAME, account_id=self.account_id, entity_type=r.entity_type,
                           external_id=r.external_id, name=r.name, status=r.status, currency=r.currency,
                           parent_id=r.parent_id, daily_budget=r.daily_budget, bid=r.bid,
                           bid_strategy=r.bid_strategy, shared_budget=r.shared_budget, learning_status=r.learning_status,
                           last_significant_edit=r.last_significant_edit) for r in self._entity_rows(s)]

    def fetch_performance(self, start: dt.date, end: dt.date) -> list[PerformanceRow]:
        self._call("fetch_performance")
        if end < start:
            raise ValueError(f"fetch_performance: end {end} is before start {start}")
        frame = self.performance_frame(start, end)
        cols = ["entity_type", "external_id", "date", "spend", "impressions", "clicks", "conversions",
                "conversion_value", "currency", "segment_type", "segment_value"]
        return [PerformanceRow(PLATFORM_NAME, self.account_id, et, xid, d, sp, int(im), int(cl), float(cv), val, cur, st, sv)
                for et, xid, d, sp, im, cl, cv, val, cur, st, sv in frame[cols].itertuples(index=False, name=None)]

    def performance_frame(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Simulated performance rows of [start, end] as stored (money as Decimal, ``date`` as date)."""
        P = PerformanceDaily
        with transaction(self.engine, self.workspace_id) as s:
            rows = s.execute(select(P.entity_type, P.external_id, P.entity_name, P.date, P.spend, P.impressions, P.clicks,
                                    P.conversions, P.conversion_value, P.currency, P.segment_type, P.segment_value)
                             .where(P.dataset_id == self._dataset_id, P.date >= start, P.date <= end)
                             .order_by(P.date, P.id)).all()
        return pd.DataFrame(rows, columns=["entity_type", "external_id", "entity_name", "date", "spend", "impressions", "clicks",
                                           "conversions", "conversion_value", "currency", "segment_type", "segment_value"])

    def _live_where(self, entity_type: str, external_id: str):
        t = AdEntity.__table__
        return (t.c.workspace_id == self.workspace_id, t.c.platform == LIVE_PLATFORM, t.c.account_id == self.account_id,
                t.c.entity_type == entity_type, t.c.external_id == external_id)

    def read_live(self, entity_type: str, external_id: str, field: str) -> Decimal | str | None:
        self._call("read_live", external_id)
        if field not in FIELDS:
            raise PermanentPlatformError(f"unknown field {field!r}", code="100")
        t = AdEntity.__table__
        col = {"budget": t.c.daily_budget, "bid": t.c.bid, "status": t.c.status}[field]
        with self.engine.connect() as conn:  # one lean read per call: the engine's hot path
            row = conn.execute(select(col).where(*self._live_where(entity_type, external_id))).one_or_none()
        if row is None:
            raise PermanentPlatformError(f"{entity_type} {external_id} does not exist in {self.account_id}", code="100",
                                         request_id=f"sbx-req-{uuid.uuid4().hex[:12]}")
        return row[0]

    def _problem(self, row, change: ChangeRequest) -> tuple[str, str] | None:
        """Why the platform would reject ``change`` (code, message), or None."""
        if row is None:
            return "100", f"{change.entity_type} {change.external_id} does not exist"
        if change.field not in FIELDS:
            return "100", f"unknown field {change.field!r}"
        if change.field == "status":
            if change.new_value not in STATUSES:
                return "100", f"status must be one of {STATUSES}, got {change.new_value!r}"
            return None
        if str(change.currency or "").upper() != row.currency:  # 100 EUR is not 100 USD, as on Meta and Google
            return "100", f"change in {change.currency} but the account bills in {row.currency}"
        try:
            value = to_decimal(change.new_value)
        except (ValueError, TypeError):
            return "100", f"{change.field} {change.new_value!r} is not an amount"
        if not is_whole_units(value, row.currency):
            return "100", f"{change.field} {value} is not a whole number of {minor_unit(row.currency)} {row.currency} (its minor unit)"
        if change.field == "budget":
            if row.daily_budget is None:
                return "100", f"{row.entity_type} {row.external_id} has no daily budget of its own"
            if not MIN_BUDGET <= value <= MAX_BUDGET:
                return "1885272", f"daily budget {value} is outside [{MIN_BUDGET}, {MAX_BUDGET}]"
        if change.field == "bid":
            if row.bid is None:
                return "100", f"{row.entity_type} {row.external_id} has no bid (its bid strategy sets none)"
            if value < minor_unit(row.currency):
                return "100", f"bid {value} is below the minimum {minor_unit(row.currency)} {row.currency}"
        return None

    def validate(self, changes: list[ChangeRequest]) -> list[ValidationResult]:
        self._call("validate")
        with transaction(self.engine, self.workspace_id) as s:
            rows = {(r.entity_type, r.external_id): r for r in self._entity_rows(s)}
        out = []
        for c in changes:
            problem = self._problem(rows.get((c.entity_type, c.external_id)), c)
            out.append(ValidationResult(c.key, problem is None, "" if problem is None else problem[1],
                                        None if problem is None else problem[0]))
        return out

    def apply(self, change: ChangeRequest) -> ApplyResult:
        self._call("apply", change.external_id)
        rid = f"sbx-req-{uuid.uuid4().hex[:12]}"
        t = AdEntity.__table__
        col = {"budget": "daily_budget", "bid": "bid", "status": "status"}.get(change.field)
        try:
            with self.engine.begin() as conn:  # Core, explicit workspace filter: one write transaction per change
                row = conn.execute(select(t).where(*self._live_where(change.entity_type, change.external_id))).one_or_none()
                problem = self._problem(row, change)
                if problem is not None:
                    raise PermanentPlatformError(problem[1], code=problem[0], request_id=rid)
                value = str(change.new_value) if change.field == "status" else to_decimal(change.new_value)
                conn.execute(update(t).where(t.c.id == row.id).values({col: value}))
                read_back = conn.execute(select(t.c[col]).where(t.c.id == row.id)).scalar_one()
                if _significant_edit(change.field, getattr(row, col), value):
                    self._reset_learning(conn, row)
        except OperationalError as exc:  # the simulated account lives in a database another write holds
            if not is_busy_error(exc):
                raise
            raise TransientPlatformError("the sandbox account is busy (its database is locked by another write)",
                                         code="busy", request_id=rid) from None
        self._call("apply", change.external_id, after=True)
        return ApplyResult(change.key, True, read_back=read_back, request_id=rid,
                           response={"id": change.external_id, "field": change.field, "value": str(read_back), "success": True})

    # ------------------------------------------------------------------ learning phase
    def _reset_learning(self, conn, row) -> None:
        """A significant edit of ``row``: it (Meta-like campaign: its ad sets) enters learning from the next day."""
        t, A = AdEntity.__table__, SandboxAccount.__table__
        acct = conn.execute(select(A.c.id, A.c.params, A.c.clock).where(
            A.c.workspace_id == self.workspace_id, A.c.account_id == self.account_id)).one()
        params = dict(acct.params)
        camps = params["campaigns"]
        cid = row.external_id if row.entity_type == "campaign" else row.parent_id
        flavor = camps.get(cid, {}).get("flavor", "meta")
        if flavor == "google" and row.entity_type != "campaign":
            return  # manual CPC ad groups have no learning phase of their own
        learners = camps[cid]["children"] if flavor == "meta" and row.entity_type == "campaign" else [row.external_id]
        since = acct.clock + dt.timedelta(days=1)
        learning = dict(params.get("learning") or {})
        for xid in learners:
            learning[xid] = {"since": since.isoformat(), "conversions": 0.0, "campaign": cid}
        params["learning"] = learning
        conn.execute(update(A).where(A.c.id == acct.id).values(params=params))
        edit = dt.datetime.combine(since, dt.time(0, 0), dt.timezone.utc)
        status = "LEARNING" if flavor == "meta" else "LEARNING_BUDGET_CHANGE"
        for xid in learners:
            conn.execute(update(t).where(*self._live_where("ad_set" if flavor == "meta" and xid != cid else "campaign", xid))
                         .values(learning_status=status, last_significant_edit=edit))

    def hidden_curves(self, day: dt.date) -> pd.DataFrame:
        """The true curves of ``day`` (simulations and benchmarks only; never shown in the app):
        external_id, a (with drift), k, pacing. Expected value/day = a * spend**k, spend = budget * pacing."""
        with transaction(self.engine, self.workspace_id) as s:
            acct = s.scalars(select(SandboxAccount).where(SandboxAccount.account_id == self.account_id)).one()
            params, clock = acct.params, acct.clock
        camps = params["campaigns"]
        drift = _drift_path(params, self._seed, clock, [day]) if day > clock else np.asarray(
            params.get("drift_log") or [0.0] * len(camps))[None, :]
        return pd.DataFrame({"external_id": list(camps), "a": [c["a"] for c in camps.values()] * np.exp(drift[-1]),
                             "k": [c["k"] for c in camps.values()], "pacing": [c["pacing"] for c in camps.values()]})

    # ------------------------------------------------------------------ simulation
    def advance_days(self, n: int, *, _history: bool = False) -> tuple[dt.date, dt.date]:
        """Simulate the next ``n`` days with the current entity state; returns the days written.

        The account's made-up past (``_history``) had other budgets than today's: each campaign's
        budget moved in steps every week or two, as advertisers' budgets do, so that its response
        curve can be fitted from the history.
        """
        if int(n) != n or n < 1:
            raise ValueError(f"advance_days: n must be a positive whole number of days, got {n!r}")
        n = int(n)
        with transaction(self.engine, self.workspace_id) as s:
            acct = s.scalars(select(SandboxAccount).where(SandboxAccount.account_id == self.account_id)).one()
            ents = pd.DataFrame([(r.entity_type, r.external_id, r.parent_id, r.name, r.status, r.daily_budget, r.bid)
                                 for r in self._entity_rows(s)],
                                columns=["entity_type", "external_id", "parent_id", "name", "status", "budget", "bid"])
            first = acct.clock + dt.timedelta(days=1)
            days = [first + dt.timedelta(days=i) for i in range(n)]
            params = dict(acct.params)
            scale = _history_budget_steps(len(params["campaigns"]), n, acct.seed) if _history else None
            drift = None if _history else _drift_path(params, acct.seed, acct.clock, days)
            penalty = None if _history else _learning_penalty(params, days)
            frame = _simulate(params, ents, days, acct.seed, acct.currency, budget_scale=scale,
                              level=None if drift is None else np.exp(drift), penalty=penalty)
            if not _history:
                if drift is not None and len(drift):
                    params["drift_log"] = drift[-1].tolist()
                params["learning"] = self._settle_learning(s, params, frame, days)
                acct.params = params
            s.execute(delete(PerformanceDaily).where(PerformanceDaily.dataset_id == acct.dataset_id,
                                                     PerformanceDaily.date >= days[0], PerformanceDaily.date <= days[-1]))
            places = currency_exponent(acct.currency)
            frame["spend"] = _to_money(frame["spend"].to_numpy(), places)
            frame["conversion_value"] = _to_money(frame["conversion_value"].to_numpy(), places)
            frame = frame.assign(workspace_id=self.workspace_id, dataset_id=acct.dataset_id, platform=PLATFORM_NAME,
                                 account_id=self.account_id, currency=acct.currency)
            s.execute(insert(PerformanceDaily), frame.to_dict("records"))
            acct.clock = days[-1]
        return days[0], days[-1]


    def _settle_learning(self, s, params: dict, frame: pd.DataFrame, days: list[dt.date]) -> dict:
        """Count the learners' conversions; those whose learning week is over leave learning (live rows updated)."""
        learning = {k: dict(v) for k, v in (params.get("learning") or {}).items()}
        if not learning:
            return learning
        tot = frame[frame["segment_type"] == ""]
        by_entity = tot.groupby(["external_id", "date"])["conversions"].sum()
        rows = {r.external_id: r for r in self._entity_rows(s)}
        for xid, info in learning.items():  # per learning entity (a handful), not per row
            since = dt.date.fromisoformat(info["since"])
            got = by_entity.loc[xid] if xid in by_entity.index.get_level_values(0) else pd.Series(dtype=float)
            info["conversions"] = float(info.get("conversions", 0.0)) + float(got[[d >= since for d in got.index]].sum())
        done = {}
        for xid, info in list(learning.items()):
            since = dt.date.fromisoformat(info["since"])
            if days[-1] >= since + dt.timedelta(days=LEARNING_DAYS - 1):
                row = rows.get(xid)
                if row is not None:
                    row.learning_status = ("ENABLED" if row.entity_type == "campaign" else
                                           "SUCCESS" if info["conversions"] >= LEARNING_CONVERSIONS else "FAIL")
                done[xid] = info
        return {k: v for k, v in learning.items() if k not in done}


def _significant_edit(field: str, old, new) -> bool:
    """Whether a change resets learning: a budget / bid move beyond `LEARNING_RESET_PCT`, or re-activation."""
    if field == "status":
        return str(old) == "PAUSED" and str(new) == "ACTIVE"
    if old is None or to_decimal(old) == 0:
        return True
    return abs(float(to_decimal(new) / to_decimal(old)) - 1.0) * 100.0 > LEARNING_RESET_PCT + 1e-9


def _drift_path(params: dict, seed: int, clock: dt.date, days: list[dt.date]) -> np.ndarray:
    """(days, campaigns) log-level of each campaign's curve on ``days`` (after ``clock``): a seeded random walk."""
    n = len(params["campaigns"])
    sigma = float(params.get("drift") or 0.0)
    start = np.asarray(params.get("drift_log") or [0.0] * n, float)
    if sigma <= 0:
        return np.tile(start, (len(days), 1))
    last = max(days)
    steps = [clock + dt.timedelta(days=i) for i in range(1, (last - clock).days + 1)]
    inc = np.array([np.random.default_rng([seed, 77, d.toordinal()]).normal(0.0, sigma, n) for d in steps])  # per day
    path = start + np.cumsum(inc, axis=0)
    index = {d: i for i, d in enumerate(steps)}
    return path[[index[d] for d in days]]


def _learning_penalty(params: dict, days: list[dt.date]) -> np.ndarray | None:
    """(days, campaigns) value multiplier: 1, or down to `LEARNING_EFFICIENCY` while (part of) a campaign learns."""
    learning = params.get("learning") or {}
    if not learning:
        return None
    camps = params["campaigns"]
    cids = list(camps)
    out = np.ones((len(days), len(cids)))
    d = np.array([x.toordinal() for x in days])
    for xid, info in learning.items():  # per learning entity (a handful)
        cid = info.get("campaign", xid)
        if cid not in camps:
            continue
        i = cids.index(cid)
        c = camps[cid]
        share = 1.0 if xid == cid else float(np.asarray(c["weights"])[c["children"].index(xid)])
        since = dt.date.fromisoformat(info["since"]).toordinal()
        on = (d >= since) & (d < since + LEARNING_DAYS)
        out[on, i] -= (1.0 - LEARNING_EFFICIENCY) * share
    return np.clip(out, LEARNING_EFFICIENCY, 1.0)


def _to_money(x: np.ndarray, places: int = 2) -> list[Decimal]:
    """Floats -> Decimal at ``places`` decimals, the currency's minor unit (text conversion is exact)."""
    return [Decimal(t) for t in np.char.mod(f"%.{places}f", np.round(x.astype(float), places))]


def _hour_curve() -> np.ndarray:
    """Share of a day's traffic per hour (quiet nights, evening peak)."""
    h = np.arange(24)
    w = 0.25 + np.exp(-0.5 * ((h - 20) / 3.5) ** 2) + 0.6 * np.exp(-0.5 * ((h - 12) / 3.0) ** 2)
    return w / w.sum()


def _history_budget_steps(n_campaigns: int, n_days: int, seed: int) -> np.ndarray:
    """(days, campaigns) multipliers of today's budget in the past: steps every 7-14 days, ending at 1."""
    rng = np.random.default_rng([seed, 4242])
    scale = np.ones((n_days, n_campaigns))
    for c in range(n_campaigns):  # per campaign (a dozen), not per event
        end = n_days
        level = 1.0
        while end > 0:
            start = max(0, end - int(rng.integers(7, 15)))
            scale[start:end, c] = level
            level = float(np.clip(np.exp(rng.normal(0.0, 0.35)), 0.45, 1.9))
            end = start
    return scale


def _simulate(params: dict, ents: pd.DataFrame, days: list[dt.date], seed: int, currency: str,
              budget_scale: np.ndarray | None = None, level: np.ndarray | None = None,
              penalty: np.ndarray | None = None) -> pd.DataFrame:
    """Performance rows (campaign totals, children, segments) for ``days`` given the entity state.

    ``budget_scale`` (days x campaigns) multiplies the budgets day by day (the history's budget steps);
    ``level`` (days x campaigns) the curves' level (drift); ``penalty`` (days x campaigns) the value while learning.
    """
    camps = params["campaigns"]
    cids = list(camps)
    C, D = len(cids), len(days)
    by_id = ents.set_index("external_id")
    status_ok = by_id["status"].eq("ACTIVE")
    budget = np.array([float(by_id.at[c, "budget"] or 0) for c in cids])
    camp_active = np.array([bool(status_ok.get(c, False)) for c in cids])
    # children: active mask, bid ratio, weights
    kids = [camps[c]["children"] for c in cids]
    K = max(len(k) for k in kids)
    w = np.zeros((C, K))
    act = np.zeros((C, K), bool)
    ratio = np.ones((C, K))
    for i, c in enumerate(cids):  # per campaign (tens), not per event
        m = len(kids[i])
        w[i, :m] = camps[c]["weights"]
        act[i, :m] = status_ok.reindex(kids[i]).fillna(False).to_numpy(bool)
        bids = np.array([np.nan if b is None or pd.isna(b) else float(b) for b in by_id["bid"].reindex(kids[i])])
        ref = np.asarray(camps[c]["ref_bids"], float)
        ratio[i, :m] = np.where(np.isnan(bids), 1.0, bids / ref)
    wa = w * act
    share_active = wa.sum(1)
    child_share = np.divide(wa, share_active[:, None], out=np.zeros_like(wa), where=share_active[:, None] > 0)
    bid_factor = (child_share * ratio ** 0.6).sum(1)
    a = np.array([camps[c]["a"] for c in cids])
    k = np.array([camps[c]["k"] for c in cids])
    aov = np.array([camps[c]["aov"] for c in cids])
    cpc = np.array([camps[c]["cpc"] for c in cids])
    ctr = np.array([camps[c]["ctr"] for c in cids])
    pacing = np.array([camps[c]["pacing"] for c in cids])
    on = camp_active & (share_active > 0)

    rng = np.random.default_rng([seed, days[0].toordinal(), D])
    noise = rng.uniform(0.93, 1.04, (D, C))
    daily_budget = budget[None, :] * (budget_scale if budget_scale is not None else 1.0)
    spend = np.where(on, daily_budget * np.minimum(1.0, pacing * np.minimum(bid_factor, 1.15) * noise), 0.0)
    spend = np.round(spend, currency_exponent(currency))
    expected_value = a * spend ** k
    if level is not None:
        expected_value = expected_value * level
    if penalty is not None:
        expected_value = expected_value * penalty
    conv = rng.poisson(expected_value / aov).astype(float)
    value = conv * aov * rng.lognormal(0.0, 0.12, (D, C))
    eff_cpc = cpc * np.maximum(bid_factor, 0.2) ** 0.5
    clicks = rng.poisson(np.divide(spend, eff_cpc))
    impressions = np.round(clicks / ctr * rng.uniform(0.9, 1.1, (D, C))).astype(np.int64)

    names = by_id["name"]
    frames = [pd.DataFrame({
        "date": np.repeat(days, C), "entity_type": "campaign", "external_id": np.tile(cids, D),
        "entity_name": np.tile(names.reindex(cids).to_numpy(), D), "segment_type": "", "segment_value": "",
        "spend": spend.ravel(), "impressions": impressions.ravel(), "clicks": clicks.ravel(),
        "conversions": conv.ravel(), "conversion_value": value.ravel()})]

    # children: spend by active share; conversions and clicks split multinomially with bid-dependent CVR
    pk = child_share * ratio ** 0.3
    pk = np.divide(pk, pk.sum(1, keepdims=True), out=np.zeros_like(pk), where=pk.sum(1, keepdims=True) > 0)
    pk_full = np.broadcast_to(pk, (D, C, K))
    safe = np.where(pk_full.sum(-1, keepdims=True) > 0, pk_full, np.full_like(pk_full, 1.0 / K))
    kconv = rng.multinomial(conv.astype(np.int64), safe).astype(float)
    kclicks = rng.multinomial(clicks, np.broadcast_to(np.where(share_active[:, None] > 0, child_share, 1.0 / K), (D, C, K)))
    kspend = np.round(spend[..., None] * child_share[None], 2)
    kvalue = value[..., None] * np.divide(kconv, conv[..., None], out=np.zeros_like(kconv), where=conv[..., None] > 0)
    kimpr = np.round(impressions[..., None] * child_share[None]).astype(np.int64)
    kid_names = np.full((C, K), "", object)
    kid_ids = np.full((C, K), "", object)
    kid_types = np.full((C, K), "", object)
    for i, c in enumerate(cids):
        m = len(kids[i])
        kid_ids[i, :m] = kids[i]
        kid_names[i, :m] = names.reindex(kids[i]).to_numpy()
        kid_types[i, :m] = "ad_set" if camps[c]["flavor"] == "meta" else "ad_group"
    valid = np.broadcast_to(kid_ids != "", (D, C, K)).ravel()
    frames.append(pd.DataFrame({
        "date": np.repeat(days, C * K), "entity_type": np.tile(kid_types.ravel(), D), "external_id": np.tile(kid_ids.ravel(), D),
        "entity_name": np.tile(kid_names.ravel(), D), "segment_type": "", "segment_value": "",
        "spend": kspend.ravel(), "impressions": kimpr.ravel(), "clicks": kclicks.ravel(),
        "conversions": kconv.ravel(), "conversion_value": kvalue.ravel()})[valid])

    # segments of the campaigns that carry them (device / placement / hour)
    hour = np.asarray(params.get("hour_curve", _hour_curve()), float)
    seg_defs = {
        "device": ([d[0] for d in _DEVICES], np.array([d[1] for d in _DEVICES]), np.array([d[2] for d in _DEVICES])),
        "placement": ([p[0] for p in _PLACEMENTS], np.array([p[1] for p in _PLACEMENTS]), np.array([p[2] for p in _PLACEMENTS])),
        "hour": ([f"{h:02d}" for h in range(24)], hour, 1.0 + 0.35 * np.sin((np.arange(24) - 9) / 24 * 2 * np.pi)),
    }
    for i, c in enumerate(cids):
        seg = camps[c].get("segments", "")
        if not seg:
            continue
        labels, share, mult = seg_defs[seg]
        S = len(labels)
        p = share * mult / (share * mult).sum()
        sconv = rng.multinomial(conv[:, i].astype(np.int64), p).astype(float)
        sclicks = rng.multinomial(clicks[:, i], share)
        svalue = value[:, i, None] * np.divide(sconv, conv[:, i, None], out=np.zeros_like(sconv), where=conv[:, i, None] > 0)
        frames.append(pd.DataFrame({
            "date": np.repeat(days, S), "entity_type": "campaign", "external_id": c, "entity_name": names.get(c, c),
            "segment_type": seg, "segment_value": np.tile(labels, D),
            "spend": np.round(spend[:, i, None] * share[None], 2).ravel(), "impressions": np.round(impressions[:, i, None] * share[None]).astype(np.int64).ravel(),
            "clicks": sclicks.ravel(), "conversions": sconv.ravel(), "conversion_value": svalue.ravel()}))
    out = pd.concat(frames, ignore_index=True)
    out["impressions"] = out["impressions"].astype(np.int64)
    out["clicks"] = out["clicks"].astype(np.int64)
    return out
