"""Traffic from URLs, vectorized: ``utm_*`` parameters and click ids of a landing URL (or of a bare
query string), and the host of a referring URL as a referral source. Used by orders exports
(Shopify ``landing_site`` / ``referring_site``), Snowplow (``page_urlquery``), Segment (``url``,
``referrer``) and GA4 (``page_location``).
"""

from __future__ import annotations

from urllib.parse import unquote_plus

import pandas as pd

#: Click ids that name the ad platform when a landing URL carries no utm_source.
CLICK_IDS = (("gclid", "google", "cpc"), ("gbraid", "google", "cpc"), ("wbraid", "google", "cpc"), ("dclid", "google", "display"),
             ("msclkid", "bing", "cpc"), ("fbclid", "facebook", "social"), ("ttclid", "tiktok", "cpc"), ("li_fat_id", "linkedin", "cpc"))
_HOST = r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//(?:[^@/?#]*@)?([^/:?#\s]+)"
_BARE_HOST = r"^\s*([a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?:[/:?#]|$)"
_SUBDOMAIN = r"^(?:www|m|l|lm|mobile|amp)\."


def _decoded(values: pd.Series) -> pd.Series:
    """URL-decode, once per distinct value."""
    codes, uniques = pd.factorize(values, sort=False)
    if len(uniques) == 0:
        return pd.Series(pd.NA, index=values.index, dtype="str")
    decoded = pd.Index([unquote_plus(str(u)).strip() for u in uniques])
    from .parse import str_from_codes

    out = str_from_codes(list(decoded), codes, values.index)
    return out.where(out.str.len() > 0)


def url_param(urls: pd.Series, name: str) -> pd.Series:
    """The decoded value of query parameter ``name`` (``?a=1&name=x``, or a bare ``a=1&name=x``)."""
    text = urls.astype("str")
    found = text.str.extract(rf"(?:^|[?&#;]){name}=([^&#;]*)", flags=2, expand=False)  # re.IGNORECASE
    return _decoded(found)


def url_host(urls: pd.Series) -> pd.Series:
    """Lower-case host of a URL (``https://www.google.com/x`` -> ``google.com``), or of a bare host."""
    text = urls.astype("str")
    host = text.str.extract(_HOST, expand=False).fillna(text.str.extract(_BARE_HOST, expand=False))
    host = host.str.lower().str.replace(_SUBDOMAIN, "", regex=True)
    return host.where(host.notna() & (host.str.len() > 0))


def traffic_from_urls(landing: pd.Series | None, referrer: pd.Series | None, index) -> pd.DataFrame:
    """source / medium / campaign / campaign_id per row from a landing URL's ``utm_*`` parameters
    (or its click id), else from an external referrer (medium ``referral``; a search engine's host is
    then read as organic search by the channel rules). A referrer on the landing URL's own host is
    internal navigation and gives nothing."""
    empty = pd.Series(pd.NA, index=index, dtype="str")
    out = pd.DataFrame({"source": empty, "medium": empty, "campaign": empty, "campaign_id": empty})
    if landing is not None:
        for column, param in (("source", "utm_source"), ("medium", "utm_medium"), ("campaign", "utm_campaign"),
                              ("campaign_id", "utm_id")):
            out[column] = url_param(landing, param)
        for param, source, medium in CLICK_IDS:
            hit = out["source"].isna() & url_param(landing, param).notna()
            if hit.any():
                out.loc[hit, "source"] = source
                out.loc[hit, "medium"] = out.loc[hit, "medium"].fillna(medium)
    if referrer is not None:
        host = url_host(referrer)
        if landing is not None:
            host = host.where(host != url_host(landing))
        use = out["source"].isna() & out["medium"].isna() & host.notna()
        out.loc[use, "source"] = host[use]
        out.loc[use, "medium"] = "referral"
    return out


__all__ = ["CLICK_IDS", "url_param", "url_host", "traffic_from_urls"]
