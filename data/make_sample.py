"""Generate the shipped demo data set into data/sample/ (seeded and deterministic: same bytes every run).

    python data/make_sample.py [--out data/sample]

Writes gzip CSV files:

* ``events.csv.gz`` - event-level touchpoints and conversions in the canonical shape (user_key, ts ISO
  UTC, event_type touch|conversion, channel, source, medium, campaign, campaign_id, conversion_id, value,
  currency) for ~25k users over 90 days and 10 channels.
* ``performance.csv.gz`` - 90 days of daily campaign performance for 12 Meta and Google campaigns in
  the Fivetran ``ad_reporting`` shape (date_day, platform, account_id, campaign_id, campaign_name, spend,
  clicks, impressions, conversions, conversions_value, currency).
* ``performance_device.csv.gz``, ``performance_hour.csv.gz``, ``performance_placement.csv.gz`` - the
  same columns plus one breakdown column (device / hour / placement) for some campaigns; the parts of
  a day add up to that day's total.

The hidden model (documented in data/README.md) is what attribution and the optimizer should recover:
each touch raises the user's conversion hazard by a channel-specific incremental lift (`LIFT`), and
each campaign's daily conversion value follows a concave power law ``a * spend**k`` with noise.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20250101
START = pd.Timestamp("2025-01-01", tz="UTC")
DAYS = 90
N_USERS = 25_000
CURRENCY = "USD"

# channel -> (source, medium, share of touches, incremental lift on the log-odds of converting)
CHANNELS = {
    "meta": ("facebook", "paid_social", 0.20, 0.55),
    "google_search": ("google", "cpc", 0.14, 0.95),
    "google_display": ("google", "display", 0.10, 0.10),
    "youtube": ("youtube", "video", 0.07, 0.30),
    "tiktok": ("tiktok", "paid_social", 0.07, 0.25),
    "linkedin": ("linkedin", "paid_social", 0.04, 0.15),
    "email": ("newsletter", "email", 0.10, 0.70),
    "organic_search": ("google", "organic", 0.12, 0.60),
    "direct": ("(direct)", "(none)", 0.10, 0.35),
    "referral": ("partner-blog.com", "referral", 0.06, 0.45),
}
LIFT = {c: v[3] for c, v in CHANNELS.items()}
BASE_LOGIT = -4.6  # hazard of converting right after a touch with no lift

# campaign_id, name, platform, account, channel, mean daily budget, power-law exponent k, value scale a
CAMPAIGNS = [
    ("23851000000000001", "Meta | Prospecting | Broad", "facebook_ads", "act_1029384756", "meta", 650.0, 0.62, 24.0),
    ("23851000000000002", "Meta | Retargeting | Cart", "facebook_ads", "act_1029384756", "meta", 220.0, 0.48, 95.0),
    ("23851000000000003", "Meta | Lookalike 1%", "facebook_ads", "act_1029384756", "meta", 380.0, 0.58, 30.0),
    ("23851000000000004", "Meta | Advantage+ Shopping", "facebook_ads", "act_1029384756", "meta", 520.0, 0.66, 18.0),
    ("17000000101", "Google | Search | Brand", "google_ads", "123-456-7890", "google_search", 300.0, 0.40, 210.0),
    ("17000000102", "Google | Search | Generic", "google_ads", "123-456-7890", "google_search", 700.0, 0.70, 14.0),
    ("17000000103", "Google | Search | Competitor", "google_ads", "123-456-7890", "google_search", 180.0, 0.55, 22.0),
    ("17000000104", "Google | Performance Max", "google_ads", "123-456-7890", "google_search", 560.0, 0.64, 19.0),
    ("17000000105", "Google | Display | Remarketing", "google_ads", "123-456-7890", "google_display", 150.0, 0.50, 26.0),
    ("17000000106", "Google | Display | Prospecting", "google_ads", "123-456-7890", "google_display", 260.0, 0.45, 12.0),
    ("17000000107", "YouTube | Awareness", "google_ads", "123-456-7890", "youtube", 340.0, 0.42, 16.0),
    ("17000000108", "YouTube | Action", "google_ads", "123-456-7890", "youtube", 240.0, 0.60, 15.0),
]
# Campaigns of channels without performance data (no spend file), still named in the events.
OTHER_CAMPAIGNS = {
    "tiktok": [("tt-7301", "TikTok | Spark Ads"), ("tt-7302", "TikTok | Creators")],
    "linkedin": [("li-5501", "LinkedIn | Decision Makers")],
    "email": [(None, "newsletter-weekly"), (None, "winback")],
}
SEGMENTS = {
    # campaign_id -> segment types written for it
    "23851000000000001": ("device", "placement"),
    "23851000000000004": ("placement",),
    "17000000102": ("device", "hour"),
    "17000000104": ("device",),
    "17000000101": ("hour",),
}
SEGMENT_TYPES = ("device", "hour", "placement")
DEVICES = {"mobile": (0.62, 0.8), "desktop": (0.30, 1.45), "tablet": (0.08, 0.9)}  # spend share, CVR multiplier
PLACEMENTS = {"feed": (0.55, 1.15), "stories": (0.20, 0.8), "reels": (0.18, 0.9), "audience_network": (0.07, 0.45)}


def _daily_spend(rng: np.random.Generator) -> np.ndarray:
    """(DAYS, n_campaigns) spend: budget changes every ~2 weeks, weekly seasonality, daily noise."""
    n = len(CAMPAIGNS)
    budgets = np.array([c[5] for c in CAMPAIGNS])
    steps = np.exp(rng.normal(0.0, 0.30, size=(DAYS // 14 + 1, n)))  # budget levels the advertiser tried
    level = np.repeat(steps, 14, axis=0)[:DAYS]
    dow = (START.day_of_week + np.arange(DAYS)) % 7
    weekly = np.where(dow >= 5, 0.85, 1.05)[:, None]
    noise = np.exp(rng.normal(0.0, 0.08, size=(DAYS, n)))
    return np.round(budgets * level * weekly * noise, 2)


def make_performance(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Daily campaign totals with a concave power-law response, plus segment rows."""
    spend = _daily_spend(rng)
    a = np.array([c[7] for c in CAMPAIGNS])
    k = np.array([c[6] for c in CAMPAIGNS])
    value = a * spend**k * np.exp(rng.normal(0.0, 0.18, size=spend.shape))
    aov = rng.uniform(70.0, 130.0, size=len(CAMPAIGNS))
    conversions = rng.poisson(value / aov).astype(float)
    value = np.where(conversions > 0, np.round(value, 2), 0.0)
    cpc = rng.uniform(0.6, 2.8, size=len(CAMPAIGNS))
    clicks = rng.poisson(spend / cpc)
    ctr = rng.uniform(0.006, 0.035, size=len(CAMPAIGNS))
    impressions = rng.poisson(np.maximum(clicks, 1) / ctr)
    dates = pd.date_range(START.tz_localize(None), periods=DAYS, freq="D")
    rows = []
    for j, (cid, name, platform, account, _channel, *_rest) in enumerate(CAMPAIGNS):
        base = pd.DataFrame(
            {
                "date_day": dates.strftime("%Y-%m-%d"),
                "platform": platform,
                "account_id": account,
                "campaign_id": cid,
                "campaign_name": name,
                "spend": spend[:, j],
                "clicks": clicks[:, j],
                "impressions": impressions[:, j],
                "conversions": conversions[:, j],
                "conversions_value": value[:, j],
                "currency": CURRENCY,
                "segment_type": "",
                "segment_value": "",
            }
        )
        rows.append(base)
        for seg in SEGMENTS.get(cid, ()):
            rows.append(_segment_rows(rng, base, seg))
    return pd.concat(rows, ignore_index=True), spend


def _split(rng: np.random.Generator, total: np.ndarray, shares: np.ndarray, whole: bool) -> np.ndarray:
    """Split daily totals (DAYS,) over segments (DAYS, s) so that the parts add up to the total."""
    if whole:
        return np.stack([rng.multinomial(int(t), p) for t, p in zip(total, shares)])
    parts = np.round(total[:, None] * shares, 2)
    parts[:, -1] = np.round(total - parts[:, :-1].sum(axis=1), 2)
    return np.maximum(parts, 0.0)


def _segment_rows(rng: np.random.Generator, base: pd.DataFrame, seg: str) -> pd.DataFrame:
    if seg == "device":
        names, spend_share, cvr = list(DEVICES), *np.array(list(DEVICES.values())).T
    elif seg == "placement":
        names, spend_share, cvr = list(PLACEMENTS), *np.array(list(PLACEMENTS.values())).T
    else:  # hour of day: spend follows daytime traffic, evenings convert better
        hours = np.arange(24)
        names = [f"{h:02d}" for h in hours]
        spend_share = 0.2 + np.exp(-((hours - 14) ** 2) / 30.0)
        cvr = 0.7 + 0.6 * np.exp(-((hours - 20) ** 2) / 12.0)
    spend_share = np.asarray(spend_share, float) / np.sum(spend_share)
    days = len(base)
    s_share = rng.dirichlet(spend_share * 400, size=days)
    c_share = s_share * np.asarray(cvr, float)
    c_share /= c_share.sum(axis=1, keepdims=True)
    spend = _split(rng, base["spend"].to_numpy(), s_share, whole=False)
    clicks = _split(rng, base["clicks"].to_numpy(), s_share, whole=True)
    impressions = _split(rng, base["impressions"].to_numpy(), s_share, whole=True)
    conversions = _split(rng, base["conversions"].to_numpy(), c_share, whole=True).astype(float)
    value = _split(rng, base["conversions_value"].to_numpy(), c_share, whole=False)
    value = np.where(conversions > 0, value, 0.0)
    out = base.loc[base.index.repeat(len(names))].reset_index(drop=True)
    out["segment_type"] = seg
    out["segment_value"] = np.tile(names, days)
    for col, arr in (("spend", spend), ("clicks", clicks), ("impressions", impressions), ("conversions", conversions), ("conversions_value", value)):
        out[col] = arr.reshape(-1)
    return out


def make_events(rng: np.random.Generator, spend: np.ndarray) -> pd.DataFrame:
    """Touchpoints (campaign chosen in proportion to that day's spend) and conversions from LIFT."""
    names = list(CHANNELS)
    share = np.array([CHANNELS[c][2] for c in names])
    # Users differ in activity and in baseline propensity.
    n_touch = 1 + rng.negative_binomial(2, 0.4, size=N_USERS)
    propensity = rng.normal(0.0, 0.6, size=N_USERS)
    user = np.repeat(np.arange(N_USERS), n_touch)
    n = user.shape[0]
    first_day = rng.uniform(0, DAYS - 1, size=N_USERS)
    # Touches of one user cluster in time: an exponential gap (mean 3 days) after the first one.
    gaps = rng.exponential(3.0 * 86_400, size=n)
    starts = np.repeat(np.cumsum(n_touch) - n_touch, n_touch)
    gaps[starts] = first_day[user[starts]] * 86_400
    # Cumulative gaps restart per user: subtract the running sum before each user's first touch.
    run = np.cumsum(gaps)
    seconds = np.floor(run - np.repeat(run[np.cumsum(n_touch) - n_touch] - gaps[np.cumsum(n_touch) - n_touch], n_touch))
    inside = seconds < DAYS * 86_400
    user, seconds = user[inside], seconds[inside].astype(np.int64)
    n = user.shape[0]
    channel = rng.choice(len(names), size=n, p=share / share.sum())
    day = seconds // 86_400

    # Conversion hazard after each touch: base + the user's propensity + the channel's lift + the
    # lift of the user's earlier touches (decayed), so the channel mix on a path really matters.
    lift = np.array([LIFT[c] for c in names])[channel]
    order = np.lexsort((seconds, user))
    user, seconds, channel, day, lift = user[order], seconds[order], channel[order], day[order], lift[order]
    first = np.r_[True, user[1:] != user[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    cum = np.cumsum(lift)
    prior = cum - lift - np.where(group_start > 0, cum[group_start - 1], 0.0)
    logit = BASE_LOGIT + propensity[user] + lift + 0.35 * prior
    converts = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    conv_seconds = seconds[converts] + rng.exponential(2.0 * 3_600, size=int(converts.sum())).astype(np.int64) + 1
    keep_conv = conv_seconds < DAYS * 86_400
    conv_user = user[converts][keep_conv]
    conv_seconds = conv_seconds[keep_conv]
    conv_value = np.round(rng.lognormal(np.log(85.0), 0.45, size=conv_user.shape[0]), 2)

    # Campaign of each touch: for platform channels, proportional to that day's campaign spend.
    campaign = np.full(n, "", dtype=object)
    campaign_id = np.full(n, "", dtype=object)
    for ci, ch in enumerate(names):
        rows = np.flatnonzero(channel == ci)
        own = [j for j, c in enumerate(CAMPAIGNS) if c[4] == ch]
        if own:
            w = spend[:, own][day[rows]]
            cum_w = np.cumsum(w, axis=1) / w.sum(axis=1, keepdims=True)
            pick = (rng.random(rows.size)[:, None] > cum_w).sum(axis=1)
            pick = np.minimum(pick, len(own) - 1)
            campaign[rows] = np.array([CAMPAIGNS[j][1] for j in own], dtype=object)[pick]
            campaign_id[rows] = np.array([CAMPAIGNS[j][0] for j in own], dtype=object)[pick]
        elif ch in OTHER_CAMPAIGNS:
            opts = OTHER_CAMPAIGNS[ch]
            pick = rng.integers(0, len(opts), rows.size)
            campaign[rows] = np.array([o[1] for o in opts], dtype=object)[pick]
            campaign_id[rows] = np.array([o[0] or "" for o in opts], dtype=object)[pick]

    def iso(sec):
        return (START + pd.to_timedelta(sec, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ")

    keys = np.char.add("u", np.char.zfill(np.arange(N_USERS).astype(str), 6))
    touches = pd.DataFrame(
        {
            "user_key": keys[user],
            "ts": iso(seconds),
            "event_type": "touch",
            "channel": np.array(names)[channel],
            "source": np.array([CHANNELS[c][0] for c in names])[channel],
            "medium": np.array([CHANNELS[c][1] for c in names])[channel],
            "campaign": campaign,
            "campaign_id": campaign_id,
            "conversion_id": "",
            "value": np.nan,
            "currency": "",
            "_sec": seconds,
        }
    )
    conv_order = np.lexsort((conv_seconds, conv_user))
    conversions = pd.DataFrame(
        {
            "user_key": keys[conv_user[conv_order]],
            "ts": iso(conv_seconds[conv_order]),
            "event_type": "conversion",
            "channel": "",
            "source": "",
            "medium": "",
            "campaign": "",
            "campaign_id": "",
            "conversion_id": [f"ORD-{100000 + i}" for i in range(conv_order.size)],
            "value": conv_value[conv_order],
            "currency": CURRENCY,
            "_sec": conv_seconds[conv_order],
        }
    )
    events = pd.concat([touches, conversions], ignore_index=True)
    events = events.sort_values(["_sec", "user_key", "event_type"], kind="stable", ignore_index=True).drop(columns="_sec")
    return events


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    """CSV in a gzip stream with a fixed header (no file name, mtime 0) so the bytes are reproducible."""
    text = frame.to_csv(index=False, lineterminator="\n", float_format="%.2f")
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))


def generate(out: Path) -> list[Path]:
    """Write the sample files into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    performance, spend = make_performance(rng)
    events = make_events(rng, spend)
    paths = [out / "events.csv.gz", out / "performance.csv.gz"]
    _write_csv_gz(events, paths[0])
    totals = performance["segment_type"] == ""
    _write_csv_gz(performance[totals].drop(columns=["segment_type", "segment_value"]), paths[1])
    # Segment breakdowns ship one per file, as the platforms export them (a `device`, `hour` or
    # `placement` column next to the Fivetran columns); the ingestion reader reads them that way.
    for seg in SEGMENT_TYPES:
        part = performance[performance["segment_type"] == seg].drop(columns="segment_type").rename(columns={"segment_value": seg})
        paths.append(out / f"performance_{seg}.csv.gz")
        _write_csv_gz(part, paths[-1])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample")
    args = parser.parse_args()
    for p in generate(args.out):
        print(f"{p}: {p.stat().st_size / 1024:,.0f} KiB")


if __name__ == "__main__":
    main()
