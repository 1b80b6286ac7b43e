/* Marketing Suite first-party tracking snippet (no third-party code).
 *
 *   <script src="https://collect.example.com/v1/snippet.js" data-key="ms_pk_..." async></script>
 *
 * On each page it records a landing touch when a visit starts (first page, 30 minutes of inactivity,
 * or new traffic information): utm_* tags, gclid / gbraid / wbraid, fbclid (kept as fbc =
 * fb.1.<creation ms>.<fbclid>), the referrer, under a first-party user key (cookie + localStorage).
 * Conversions:  msTrack.conversion({type: "purchase", value: 42.5, currency: "EUR", order_id: "A-1"})
 * returns the event_id it sent; pass the same id to the Meta pixel so Meta counts the purchase once:
 *   var id = msTrack.eventId(); fbq('track', 'Purchase', {...}, {eventID: id});
 *   msTrack.conversion({type: "purchase", event_id: id, ...});
 * Consent: msTrack.consent({ad_user_data: true, ad_personalization: false}) before conversions.
 */
(function (w, d) {
  "use strict";
  if (w.msTrack && w.msTrack._loaded) return;
  var script = d.currentScript || d.querySelector("script[data-key]");
  var KEY = script && script.getAttribute("data-key");
  var BASE = script ? new URL(script.src, w.location.href).origin : "";
  var SESSION_MS = 30 * 60 * 1000;
  var DAY = 864e5;
  var CLICK_IDS = [["gclid", "google", "cpc"], ["gbraid", "google", "cpc"], ["wbraid", "google", "cpc"], ["fbclid", "facebook", "social"]];
  var consent = {};

  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name.replace(/[.$?*|{}()\[\]\\\/+^]/g, "\\$&") + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : null;
  }
  function setCookie(name, value, days) {
    d.cookie = name + "=" + encodeURIComponent(value) + "; path=/; max-age=" + Math.round(days * 86400) + "; SameSite=Lax" +
      (w.location.protocol === "https:" ? "; Secure" : "");
  }
  function store(name, value) {
    try { if (value === undefined) return w.localStorage.getItem(name); w.localStorage.setItem(name, value); } catch (e) { return null; }
  }
  function uuid() {
    if (w.crypto && w.crypto.randomUUID) return w.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  function userKey() {
    var id = cookie("_ms_uid") || store("_ms_uid");
    if (!id) id = uuid();
    setCookie("_ms_uid", id, 395);
    store("_ms_uid", id);
    return id;
  }
  function gaClientId() {
    var ga = cookie("_ga");
    var m = ga && ga.match(/^GA\d\.\d\.(.+)$/);
    return m ? m[1] : null;
  }
  function post(path, body) {
    var payload = JSON.stringify(body);
    return w.fetch(BASE + path, {
      method: "POST", keepalive: payload.length < 60000, mode: "cors", credentials: "omit",
      headers: {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}, body: payload
    }).then(function (r) { return r.json().then(function (j) { if (!r.ok) throw new Error((j.field || "") + ": " + j.error); return j; }); });
  }

  function traffic() {
    var q = new URLSearchParams(w.location.search), t = {};
    [["utm_source", "source"], ["utm_medium", "medium"], ["utm_campaign", "campaign"], ["utm_id", "campaign_id"]].forEach(function (p) {
      if (q.get(p[0])) t[p[1]] = q.get(p[0]);
    });
    CLICK_IDS.forEach(function (c) {
      var v = q.get(c[0]);
      if (!v) return;
      t[c[0]] = v;
      if (!t.source) { t.source = c[1]; t.medium = t.medium || c[2]; }
    });
    if (!t.source && d.referrer) {
      var ref = new URL(d.referrer);
      if (ref.hostname !== w.location.hostname) { t.source = ref.hostname.replace(/^(www|m)\./, ""); t.medium = "referral"; }
    }
    return t;
  }

  function landing() {
    var now = Date.now(), t = traffic();
    var key = [t.source, t.medium, t.campaign, t.campaign_id].join("|");
    var last = Number(store("_ms_last") || 0), lastKey = store("_ms_traffic");
    var newVisit = !last || now - last > SESSION_MS || (t.source && key !== lastKey);
    store("_ms_last", String(now));
    if (!newVisit) return null;
    if (t.source) store("_ms_traffic", key);
    if (t.fbclid) {
      var fbc = "fb.1." + now + "." + t.fbclid;  // creation time in milliseconds; the fbclid is case-sensitive
      setCookie("_ms_fbc", fbc, 90);
    }
    var touch = {event_id: uuid(), user_id: userKey(), page_url: w.location.href, referrer: d.referrer || undefined,
                 interaction: (t.gclid || t.gbraid || t.wbraid || t.fbclid) ? "click" : "visit"};
    ["source", "medium", "campaign", "campaign_id", "gclid", "gbraid", "wbraid", "fbclid"].forEach(function (f) { if (t[f]) touch[f] = t[f]; });
    var fbcNow = cookie("_fbc") || cookie("_ms_fbc"), fbp = cookie("_fbp");
    if (fbcNow && !t.fbclid) touch.fbc = fbcNow;
    if (fbp) touch.fbp = fbp;
    return post("/v1/events", touch);
  }

  var api = {
    _loaded: true,
    eventId: uuid,
    userKey: userKey,
    consent: function (flags) { consent = flags || {}; },
    conversion: function (c) {
      c = Object.assign({}, c || {});
      c.event_id = c.event_id || uuid();
      c.user_id = c.user_id || userKey();
      c.event_source_url = c.event_source_url || w.location.href;
      var fbc = cookie("_fbc") || cookie("_ms_fbc"), fbp = cookie("_fbp"), ga = gaClientId();
      if (fbc && !c.fbc) c.fbc = fbc;
      if (fbp && !c.fbp) c.fbp = fbp;
      if (ga && !c.ga_client_id) c.ga_client_id = ga;
      if (consent.ad_user_data !== undefined && c.ad_user_data === undefined) c.ad_user_data = !!consent.ad_user_data;
      if (consent.ad_personalization !== undefined && c.ad_personalization === undefined) c.ad_personalization = !!consent.ad_personalization;
      var id = c.event_id;
      api.last = post("/v1/conversions", c);
      return id;
    }
  };
  var queued = (w.msTrack && w.msTrack.q) || [];
  w.msTrack = api;
  if (KEY) api.ready = landing() || Promise.resolve(null);
  queued.forEach(function (call) { api[call[0]].apply(api, call[1]); });
})(window, document);
