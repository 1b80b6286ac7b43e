"""Tracking: write keys, the snippet, what the collector received, and delivery to Meta, Google and GA4.

Thin: keys in `core.tracking.keys`, figures in `core.tracking.overview`, settings in
`core.tracking.config`, the retry in `core.tracking.dispatch.retry_now`. Secrets are shown masked only.
"""

from __future__ import annotations

import altair as alt
import streamlit as st

from core.tracking import config, keys, overview
from core.tracking.dispatch import retry_now
from core.tracking.live import ensure_live_dataset
from ui.context import actor, engine, workspace
from ui.downloads import download_csv
from ui.text import plain

K_NEW_KEY = "tracking.new_key"  # the key just made, shown once
K_URL = "tracking.collector_url"

st.title("📡 Tracking")
st.caption("A first-party collector (`python -m core serve`, default http://127.0.0.1:8502) records touches and "
           "conversions into this workspace's live data set, which the Attribution and Optimizer pages use like any "
           "import; every conversion is then delivered server-side to the destinations switched on below.")
eng, ws = engine(), workspace()

# ------------------------------------------------------------------------------ keys
st.subheader("Write keys")
listing = keys.list_keys(eng, ws)
if listing:
    st.dataframe([{k: r[k] for k in ("id", "name", "prefix", "kind", "origins", "active", "created_by", "created_at", "revoked_at")}
                  for r in listing], hide_index=True, width="stretch", key="tracking.keys")
else:
    st.info("No keys yet. A server key lets your backend send events; a browser key (with allowed origins) is for the snippet.")
if K_NEW_KEY in st.session_state:
    made = st.session_state[K_NEW_KEY]
    st.success(f"Key #{made['id']} ({made['kind']}) created. Copy it now: it is shown only this once.")
    st.code(made["key"], language=None)
    if st.button("I stored it, hide the key", key="tracking.hide_key"):
        st.session_state.pop(K_NEW_KEY)
        st.rerun()
with st.form("tracking.create_key", clear_on_submit=True):
    c1, c2 = st.columns([1, 2])
    name = c1.text_input("Name", key="tracking.key_name", placeholder="shop backend")
    kind = c1.radio("Kind", ["server", "browser"], horizontal=True, key="tracking.key_kind")
    origins = c2.text_area("Allowed origins (browser keys, one per line)", key="tracking.key_origins",
                           placeholder="https://shop.example.com")
    if st.form_submit_button("Create key"):
        try:
            key, row = keys.create_key(eng, ws, kind=kind, name=name, actor=actor(),
                                       origins=[o for o in origins.splitlines() if o.strip()] if kind == "browser" else [])
            ensure_live_dataset(eng, ws, actor=actor())
            st.session_state[K_NEW_KEY] = {"id": row["id"], "kind": kind, "key": key}
            st.rerun()
        except keys.TrackingKeyError as exc:
            st.error(plain(exc))
active = [r for r in listing if r["active"]]
if active:
    r1, r2 = st.columns([3, 1])
    chosen = r1.selectbox("Revoke a key", [r["id"] for r in active], key="tracking.revoke_id",
                          format_func=lambda i: next(f"#{r['id']} {r['prefix']} {r['name']}" for r in active if r["id"] == i))
    if r2.button("Revoke", key="tracking.revoke", type="secondary"):
        keys.revoke_key(eng, ws, chosen, actor=actor())
        st.toast(f"Key #{chosen} revoked; the collector refuses it within seconds.")
        st.rerun()

# ------------------------------------------------------------------------------ snippet
st.subheader("Snippet")
url = st.text_input("Collector address", value=st.session_state.get(K_URL, "http://127.0.0.1:8502"), key=K_URL)
browser_keys = [r for r in active if r["kind"] == "browser"]
shown_key = st.session_state.get(K_NEW_KEY, {}).get("key") if st.session_state.get(K_NEW_KEY, {}).get("kind") == "browser" else None
placeholder = shown_key or (browser_keys[0]["prefix"].rstrip("…") + "…" if browser_keys else "ms_pk_YOUR_BROWSER_KEY")
st.code(f'<script src="{url.rstrip("/")}/v1/snippet.js" data-key="{placeholder}" async></script>', language="html")
st.caption("On the purchase page, send the conversion and give the Meta pixel the same event id, so Meta counts it once:")
st.code("var id = msTrack.conversion({type: 'purchase', value: 42.5, currency: 'EUR', order_id: 'A-1001'});\n"
        "fbq('track', 'Purchase', {value: 42.5, currency: 'EUR'}, {eventID: id});", language="javascript")

# ------------------------------------------------------------------------------ activity
st.subheader("Received")
hourly = overview.per_hour(eng, ws, hours=48)
quality = overview.match_quality(eng, ws)
m = st.columns(4)
m[0].metric("Touches (48 h)", f"{int(hourly.loc[hourly['kind'] == 'touches', 'count'].sum()):,}")
m[1].metric("Conversions (48 h)", f"{int(hourly.loc[hourly['kind'] == 'conversions', 'count'].sum()):,}")
m[2].metric("Conversions (30 d)", f"{quality['conversions']:,}")
m[3].metric("With consent (30 d)", "–" if quality["ad_user_data_consent"] is None else f"{quality['ad_user_data_consent']:.0%}")
if hourly.empty:
    st.info("Nothing received yet. Start the collector and add the snippet to a page, or POST to /v1/events.")
else:
    chart = alt.Chart(hourly).mark_bar().encode(x=alt.X("hour:T", title="hour (UTC)"), y=alt.Y("count:Q", title="received"),
                                                color=alt.Color("kind:N", title=None), xOffset="kind:N",
                                                tooltip=["hour:T", "kind:N", "count:Q"])
    st.altair_chart(chart, width="stretch", key="tracking.hourly")
st.markdown("**Match quality** (share of the last 30 days' conversions carrying each identifier)")
q = st.columns(5)
for col, (label, name) in zip(q, [("e-mail", "email"), ("phone", "phone"), ("fbc", "fbc"), ("fbp", "fbp"),
                                  ("gclid / gbraid / wbraid", "google_click_id")]):
    col.metric(label, "–" if quality[name] is None else f"{quality[name]:.0%}")

# ------------------------------------------------------------------------------ deliveries
st.subheader("Delivery")
counts = overview.delivery_counts(eng, ws)
if counts.empty:
    st.info("No deliveries yet: switch a destination on below; conversions received from then on are delivered.")
else:
    st.dataframe(counts, hide_index=True, width="stretch", key="tracking.counts")
fails = overview.failures(eng, ws)
if not fails.empty:
    st.markdown(f"**Failures** ({len(fails)})")
    st.dataframe(fails, hide_index=True, width="stretch", key="tracking.failures")
    download_csv(fails, "Download failures (CSV)", "delivery-failures.csv", key="tracking.download_failures")
    retryable = [int(i) for i in fails.loc[fails["retryable"], "delivery_id"]]
    if retryable:
        picked = st.multiselect("Retry these deliveries now", retryable, default=retryable[:50], key="tracking.retry_ids")
        if st.button("Retry", key="tracking.retry", disabled=not picked):
            n = retry_now(eng, ws, picked, actor=actor())
            st.toast(f"{n} deliveries queued again; the dispatcher sends them on its next pass.")
            st.rerun()

# ------------------------------------------------------------------------------ settings
st.subheader("Destinations")
dests = config.load_destinations(eng, ws)
for name in config.DESTINATIONS:
    dest = dests[name]
    state = ("on" + (", test mode" if dest.test_mode else "")) if dest.enabled else "off"
    with st.expander(f"{config.LABELS[name]} — {state}"):
        c1, c2 = st.columns(2)
        enabled = c1.toggle("Send conversions", value=dest.enabled, key=f"tracking.{name}.enabled")
        test_mode = c2.toggle("Test mode", value=dest.test_mode, key=f"tracking.{name}.test",
                              help={"meta": "sends with the test event code (Events Manager > Test events)",
                                    "google": "validate_only: Google checks the request and records nothing",
                                    "ga4": "sends to /debug/mp/collect, which validates and records nothing"}[name])
        s = dict(dest.settings)
        if name == "meta":
            s["pixel_id"] = st.text_input("Pixel (data set) id", s.get("pixel_id", ""), key="tracking.meta.pixel")
            s["test_event_code"] = st.text_input("Test event code", s.get("test_event_code", ""), key="tracking.meta.code")
            s["ldu"] = st.selectbox("Limited Data Use", list(config.LDU_MODES), index=list(config.LDU_MODES).index(s.get("ldu", "off")),
                                    key="tracking.meta.ldu")
        elif name == "google":
            s["api"] = st.radio("API", list(config.GOOGLE_APIS), index=list(config.GOOGLE_APIS).index(s.get("api", "data_manager")),
                                horizontal=True, key="tracking.google.api",
                                help="Data Manager is Google's path for conversions; the Google Ads API upload only for accounts that already use it")
            s["customer_id"] = st.text_input("Google Ads customer id", s.get("customer_id", ""), key="tracking.google.customer")
            s["login_customer_id"] = st.text_input("Manager (login) customer id", s.get("login_customer_id", ""), key="tracking.google.login")
            actions = s.get("conversion_actions") or {}
            text = st.text_area("Conversion actions (type = action id, one per line; * for every other type)",
                                "\n".join(f"{k} = {v}" for k, v in actions.items()), key="tracking.google.actions")
            s["conversion_actions"] = {a.split("=", 1)[0].strip(): a.split("=", 1)[1].strip() for a in text.splitlines() if "=" in a}
        else:
            s["measurement_id"] = st.text_input("Measurement id", s.get("measurement_id", ""), key="tracking.ga4.mid")
        st.dataframe(config.describe_secrets(name, st.secrets), hide_index=True, width="stretch", key=f"tracking.{name}.secrets")
        st.caption("Secrets come from `.streamlit/secrets.toml` or the environment; they are never stored or shown in full.")
        if st.button("Save", key=f"tracking.{name}.save"):
            try:
                config.save_destination(eng, ws, name, enabled=enabled, test_mode=test_mode, settings=s, actor=actor())
                st.toast(f"{config.LABELS[name]} saved.")
                st.rerun()
            except (config.ConfigError, ValueError) as exc:
                st.error(plain(exc))

with st.expander("Collector rules"):
    collector = config.load_collector_settings(eng, ws)
    region = st.text_input("Default phone country (ISO code) for numbers without +", collector.phone_region or "",
                           key="tracking.collector.region")
    assume = st.toggle("A conversion that says nothing about ad_user_data counts as consented", value=collector.assume_consent,
                       key="tracking.collector.assume", help="Off: such conversions are not sent to Meta or Google (skipped_consent).")
    if st.button("Save rules", key="tracking.collector.save"):
        try:
            config.save_destination(eng, ws, "collector", settings={"phone_region": region.strip(), "assume_consent": assume},
                                    actor=actor())
            st.toast("Collector rules saved.")
        except (config.ConfigError, ValueError) as exc:
            st.error(plain(exc))
