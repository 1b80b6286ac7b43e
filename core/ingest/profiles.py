"""What a file can be: each `Profile` names its canonical fields (roles), the synonyms that find them,
the columns that identify the format, and the kind of data it becomes (journeys, paths, performance
or an entity dimension table that completes performance files).

Synonyms are compared in compact form (lower-case letters and digits only), in order: the first
synonym present wins, so a field's list is also its order of preference (a purchase's own value
before ``event_value_in_usd``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class FieldSpec:
    name: str
    synonyms: tuple[str, ...]
    required: bool = False
    help: str = ""


@dataclass(frozen=True)
class Profile:
    """A kind of input file: its canonical fields and the columns that identify it.

    ``signature``: each group needs at least one of its compact names among the columns.
    ``absent``: none of these compact names may be present (an order export has no event column).
    ``one_of``: each group needs at least one of these fields mapped.
    """

    name: str
    kind: str  # journeys | paths | performance | dimension
    label: str
    fields: tuple[FieldSpec, ...]
    signature: tuple[tuple[str, ...], ...] = ()
    one_of: tuple[tuple[str, ...], ...] = ()
    absent: tuple[str, ...] = ()

    def spec(self, name: str) -> FieldSpec:
        return next(f for f in self.fields if f.name == name)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _f(name, synonyms, required=False, help=""):
    return FieldSpec(name, tuple(synonyms.split()) if isinstance(synonyms, str) else tuple(synonyms), required, help)


# ------------------------------------------------------------------------------ event-level roles
_USER = ("user_key user_id userid user customer_id client_id visitor_id cookie_id cookie anonymous_id person_id uid "
         "contact_id user_pseudo_id domain_userid network_userid fullvisitorid visitor device_id buyer_id customer "
         "member_id account_user_id email")
_TS = ("ts timestamp time datetime event_time event_timestamp event_datetime occurred_at event_date date_time touch_time "
       "conversion_time derived_tstamp collector_tstamp dvce_created_tstamp original_timestamp hit_time visit_time "
       "created_at date")
_EVENT = "event_type type event event_name kind record_type action event_action activity hit_type"
_CHANNEL = ("channel acquisition_channel marketing_channel channel_name channel_grouping default_channel_group "
            "default_channel_grouping channel_group traffic_channel utm_channel session_default_channel_group")
_SOURCE = ("source utm_source session_source mkt_source marketing_source context_campaign_source campaign_source "
           "traffic_source source_type refr_source")
_MEDIUM = ("medium utm_medium session_medium mkt_medium marketing_medium context_campaign_medium campaign_medium "
           "traffic_medium refr_medium")
_CAMPAIGN = ("campaign campaign_name utm_campaign session_campaign session_campaign_name mkt_campaign marketing_campaign "
             "context_campaign_name traffic_campaign")
_CAMPAIGN_ID = "campaign_id utm_id campaignid session_campaign_id"
_CONV_ID = ("conversion_id order_id orderid transaction_id tr_orderid purchase_id conv_id order_number invoice_id "
            "ecommerce_transaction_id")
_VALUE = ("value revenue revenue_local_currency local_revenue conversion_value order_value purchase_value purchase_revenue "
          "order_total total_price tr_total amount total sales_amount sales event_value event_value_in_usd")
_CURRENCY = "currency currency_code tr_currency order_currency local_currency presentment_currency"
_FLAG = ("converted conversion is_conversion is_converted has_converted conversion_flag conv_flag conv purchased "
         "is_purchase made_purchase goal_completed")
_SESSION = "session_id ga_session_id domain_sessionid domain_session_id sessionid visit_id visitid session"
_REFERRER = ("referrer page_referrer referring_site referer refr_urlhost referer_url_host referrer_url referer_url "
             "referrer_host context_page_referrer")
_LANDING = ("landing_site landing_page landing_page_url page_location page_url context_page_url url page_urlquery "
            "page_url_query")

EVENT_FIELDS = (
    _f("user_key", _USER, True, "who: a user, visitor, cookie or customer id"),
    _f("ts", _TS, True, "when (epoch s/ms/us or ISO text)"),
    _f("event_type", _EVENT, help="what happened; conversions are named e.g. 'conversion' or 'purchase'"),
    _f("conversion_flag", _FLAG, help="0/1 (or true/false): 1 = this touch converted, at its time"),
    _f("channel", _CHANNEL, help="channel of the touch; else derived from source / medium / campaign"),
    _f("source", _SOURCE, help="traffic source, e.g. google, facebook"),
    _f("medium", _MEDIUM, help="traffic medium, e.g. cpc, email"),
    _f("campaign", _CAMPAIGN, help="campaign name"),
    _f("campaign_id", _CAMPAIGN_ID, help="campaign id on the ad platform"),
    _f("referrer", _REFERRER, help="referring URL or host: a referral touch when there is no source"),
    _f("landing_url", _LANDING, help="landing URL: its utm_* parameters or gclid / fbclid give the source"),
    _f("session_id", _SESSION, help="the collector's session id, when it has one"),
    _f("interaction", "interaction interaction_type touch_type touchpoint_type", help="impression / click / visit"),
    _f("conversion_id", _CONV_ID, help="dedupe key of a conversion"),
    _f("value", _VALUE, help="conversion value, in the row's currency"),
    _f("currency", _CURRENCY, help="ISO currency code of the value, per row"),
    _f("event_id", "event_id message_id messageid", help="dedupe key of an event"),
)

EVENTS = Profile("events", "journeys", "Event-level touchpoints / conversions", EVENT_FIELDS)

# GA4: `core.ingest.ga4` first expands the export (nested JSON or JSON text in CSV cells) into these
# ``ga4__*`` columns; the session's own traffic source is the touch, never ``traffic_source``.
GA4 = Profile(
    "ga4", "journeys", "GA4 BigQuery export",
    (
        _f("user_key", "ga4__user user_pseudo_id user_id", True, "GA4 device/user id"),
        _f("ts", "ga4__ts event_timestamp timestamp", True, "microseconds since epoch"),
        _f("event_type", "ga4__event event_name name", True, "GA4 event name; 'purchase' is a conversion"),
        _f("session_id", "ga4__session_id ga_session_id param_ga_session_id", help="ga_session_id (event_params)"),
        _f("source", "ga4__source source session_source", help="the session's source (collected / last-click traffic source)"),
        _f("medium", "ga4__medium medium session_medium", help="the session's medium"),
        _f("campaign", "ga4__campaign campaign session_campaign", help="the session's campaign"),
        _f("campaign_id", "ga4__campaign_id campaign_id", help="the session's campaign id"),
        _f("channel", "ga4__channel channel", help="a channel column, if the export has one"),
        _f("first_source", "ga4__first_source", help="traffic_source.source: the user's first-ever source"),
        _f("first_medium", "ga4__first_medium", help="traffic_source.medium"),
        _f("first_campaign", "ga4__first_campaign", help="traffic_source.name"),
        _f("first_touch_ts", "ga4__first_touch_ts user_first_touch_timestamp", help="when the user was first seen"),
        _f("conversion_id", "ga4__transaction_id ecommerce.transaction_id transaction_id"),
        _f("value", "ga4__value purchase_revenue ecommerce.purchase_revenue value", help="the purchase's own value, in its own currency"),
        _f("currency", "ga4__currency currency", help="the purchase's currency"),
    ),
    signature=(("userpseudoid",), ("eventname", "name", "ga4event"), ("eventtimestamp", "timestamp", "ga4ts")),
)

SEGMENT = Profile(
    "segment", "journeys", "Segment / RudderStack warehouse table (pages, tracks)",
    (
        _f("anonymous_id", "anonymous_id anonymousid", True, "device id before identify"),
        _f("user_id", "user_id userid", help="known user id (stitched to anonymous ids)"),
        _f("ts", "timestamp original_timestamp sent_at received_at", True),
        _f("event_type", "event event_text event_name", help="track event name; 'Order Completed' is a conversion (pages: none)"),
        _f("source", "context_campaign_source context.campaign.source"),
        _f("medium", "context_campaign_medium context.campaign.medium"),
        _f("campaign", "context_campaign_name context.campaign.name"),
        _f("campaign_id", "context_campaign_id context_campaign_content_id"),
        _f("referrer", "referrer context_page_referrer context.page.referrer"),
        _f("landing_url", "url context_page_url context.page.url"),
        _f("conversion_id", "properties_order_id order_id properties_transaction_id transaction_id properties_checkout_id checkout_id"),
        _f("value", "properties_revenue revenue properties_total total properties_value value"),
        _f("currency", "properties_currency currency"),
        _f("event_id", "message_id messageid id"),
    ),
    signature=(("anonymousid",), ("timestamp", "originaltimestamp", "sentat", "receivedat")),
)

SNOWPLOW = Profile(
    "snowplow", "journeys", "Snowplow atomic events",
    (
        _f("user_key", "domain_userid network_userid user_id", True, "first-party cookie id"),
        _f("ts", "derived_tstamp collector_tstamp dvce_created_tstamp", True),
        _f("event_type", "event_name event", help="page_view, transaction, ...; 'transaction' is a conversion"),
        _f("session_id", "domain_sessionid"),
        _f("source", "mkt_source", help="marketing source (utm_source)"),
        _f("medium", "mkt_medium"),
        _f("campaign", "mkt_campaign"),
        _f("referrer_source", "refr_source", help="referrer's name (Google, Facebook): the source when there is no mkt_source"),
        _f("referrer_medium", "refr_medium", help="search / social / email / internal: internal navigation is no new traffic"),
        _f("landing_url", "page_urlquery page_url", help="page URL query: its utm_* parameters"),
        _f("conversion_id", "tr_orderid"),
        _f("value", "tr_total tr_total_base"),
        _f("currency", "tr_currency base_currency"),
        _f("event_id", "event_id"),
    ),
    signature=(("domainuserid", "networkuserid"), ("derivedtstamp", "collectortstamp"), ("event", "eventname")),
)

ORDERS = Profile(
    "orders", "journeys", "Orders (Shopify / CRM export)",
    (
        _f("user_key", "customer_id customerid user_id buyer_id client_id contact_id email customer_email", True,
           "the buyer"),
        _f("ts", "created_at order_date ordered_at processed_at order_created_at date order_time", True),
        _f("conversion_id", "id order_id orderid order_number name order_name", True, "the order"),
        _f("line_id", "order_line_id line_id line_item_id line_number", help="order-line rows are summed per order"),
        _f("value", "total_price order_total total revenue_local_currency local_revenue revenue amount "
           "total_price_set_shop_amount subtotal_price revenue_global_currency", True, "order value, in its currency"),
        _f("currency", "currency currency_code local_currency order_currency total_price_set_shop_currency_code "
           "global_currency"),
        _f("source", "utm_source"),
        _f("medium", "utm_medium"),
        _f("campaign", "utm_campaign"),
        _f("landing_url", "landing_site landing_page landing_site_ref landing_page_url",
           help="landing URL: its utm_* parameters give the landing touch"),
        _f("referrer", "referring_site referring_site_domain referrer", help="referring site: a referral touch"),
        _f("cancelled_at", "cancelled_at canceled_at cancel_date", help="cancelled orders are left out"),
        _f("test", "test is_test test_order", help="test orders are left out"),
    ),
    signature=(("id", "orderid", "ordernumber", "name"),
               ("totalprice", "ordertotal", "revenuelocalcurrency", "revenue", "total", "subtotalprice", "totalpricesetshopamount"),
               ("createdat", "orderdate", "orderedat", "processedat")),
    absent=("event", "eventtype", "eventname", "channel", "interaction", "spend", "cost", "costmicros", "impressions"),
)

PATHS = Profile(
    "paths", "paths", "Path table (ChannelAttribution format)",
    (
        _f("path", "path paths channel_path journey path_str", True, "'a > b > c' (also '>' or '|')"),
        _f("conversions", "total_conversions conversions conv total_conv", True),
        _f("value", "total_conversion_value conversion_value value revenue total_value"),
        _f("nulls", "total_null total_nulls null nulls non_conversions"),
    ),
    signature=(("path", "paths", "channelpath", "pathstr"),),
)

# --------------------------------------------------------------------------- performance roles
_PERF_COMMON = (
    _f("date", "date day date_day date_start segments_date stat_date", True, "the account's calendar day"),
    _f("account_id", "account_id customer_id ad_account_id customer_client_id account", help="ad account id"),
    _f("campaign_id", "campaign_id campaignid", help="campaign id (on ad-set / ad rows: the campaign they belong to)"),
    _f("campaign", "campaign_name campaign", help="campaign name"),
    _f("ad_set_id", "ad_set_id adset_id ad_group_id adgroup_id", help="ad set / ad group id (ad-set level rows)"),
    _f("ad_set", "ad_set_name adset_name ad_group ad_group_name adgroup", help="ad set / ad group name"),
    _f("spend", "spend cost amount_spent cost_micros metrics_cost_micros", True),
    _f("impressions", "impressions impr imps"),
    _f("clicks", "clicks link_clicks clicks_all inline_link_clicks"),
    _f("conversions", "conversions purchases website_purchases results conv all_conv"),
    _f("conversion_value", "conversions_value conversion_value conv_value purchases_conversion_value "
       "website_purchases_conversion_value all_conv_value revenue total_conversion_value"),
    _f("currency", "currency currency_code"),
    _f("device", "device impression_device device_platform segments_device", help="device segment"),
    _f("hour", "hour hour_of_day segments_hour", help="hour-of-day segment"),
)
_AD = (_f("ad_id", "ad_id adid", help="ad id (ad-level rows)"), _f("ad", "ad_name ad", help="ad name"))
_PLACEMENT = _f("placement", "placement platform_position publisher_platform platform", help="placement segment")
_SEGMENT_FIELDS = (
    _f("segment_type", "segment_type breakdown breakdown_type dimension", help="canonical breakdown: device / hour / placement (blank = daily total)"),
    _f("segment_value", "segment_value breakdown_value dimension_value", help="the breakdown's value, e.g. mobile or 18"),
)
_ENTITY_TYPE = _f("entity_type", "entity_type level object_type", help="campaign / ad_set / ad_group / ad (canonical exports)")
_CANONICAL_ENTITY = (
    _f("external_id", "external_id entity_id", help="the row's entity id (canonical exports, with entity_type)"),
    _f("entity_name", "entity_name", help="the row's entity name (canonical exports)"),
)
_ENTITY_IDS = ("campaign_id", "campaign", "ad_set_id", "ad_set")
# Ads Manager exports in the account's language (Portuguese, Spanish, French, German, Italian): the
# column names of those exports, folded to ASCII (`core.ingest.mapping.compact` drops accents).
_META_LOCALIZED = {
    "date": "dia jour giorno",
    "date_start": "inicio_dos_relatorios inicio_del_informe debut_des_rapports berichtsbeginn beginn_des_berichtszeitraums inizio_report",
    "date_end": "termino_dos_relatorios encerramento_dos_relatorios fin_del_informe fin_des_rapports berichtsende "
                "ende_des_berichtszeitraums fine_report",
    "campaign_id": "id_da_campanha identificacao_da_campanha id_de_la_campana id_de_la_campagne kampagnen_id id_campagna",
    "campaign": "nome_da_campanha nombre_de_la_campana nom_de_la_campagne kampagnenname nome_della_campagna",
    "ad_set_id": "id_do_conjunto_de_anuncios id_del_conjunto_de_anuncios",
    "ad_set": "nome_do_conjunto_de_anuncios nombre_del_conjunto_de_anuncios nom_de_l_ensemble_de_publicites "
              "name_der_anzeigengruppe nome_del_gruppo_di_inserzioni",
    "ad": "nome_do_anuncio nombre_del_anuncio nom_de_la_publicite anzeigenname nome_dell_inserzione",
    "spend": "valor_usado valor_gasto importe_gastado montant_depense ausgegebener_betrag importo_speso",
    "impressions": "impressoes impresiones impressionen",
    "clicks": "cliques_no_link clics_en_el_enlace clics_sur_un_lien link_klicks clic_sul_link",
    "conversions": "resultados resultats ergebnisse risultati compras achats kaufe acquisti",
    "currency": "moeda divisa moneda devise wahrung valuta",
}


#: Column names that hold the start of a reporting range (its end must then be the same day).
RANGE_START_NAMES = ("reporting_starts", "date_start", *_META_LOCALIZED["date_start"].split())


# Google Ads UI downloads (Campaigns / Ad groups table, Segment > Time > Day) from an interface in German,
# French, Spanish (Spain: Coste, Latin America: Costo), Portuguese (Brazil) or Italian, folded like the above.
# "Impr." and (de, fr) "Conversions" are the English names. Seen in public parsers of real downloads: the
# German names, French Jour/Campagne/Coût/Clics/Valeur de conv., Spanish Día/Campaña/Coste/Costo/Clics/
# Conversiones/Valor de conv.; the id and currency-code names of fr/es/pt/it and the pt/it metrics are unconfirmed.
_GOOGLE_LOCALIZED = {
    "date": "tag jour dia giorno",
    "campaign_id": "kampagnen_id id_de_la_campagne id_de_campana id_da_campanha id_campagna",
    "campaign": "kampagne campagne campana campanha campagna",
    "ad_set_id": "anzeigengruppen_id id_du_groupe_d_annonces id_del_grupo_de_anuncios id_do_grupo_de_anuncios "
                 "id_gruppo_di_annunci",
    "ad_set": "anzeigengruppe groupe_d_annonces grupo_de_anuncios gruppo_di_annunci",
    "spend": "kosten cout coste costo custo",
    "clicks": "klicks clics cliques clic",
    "conversions": "conversiones conversoes conversioni",
    "conversion_value": "conv_wert valeur_de_conv valor_de_conv valore_conv",
    "currency": "wahrungscode code_de_la_devise codigo_de_moneda codigo_da_moeda codice_valuta",
}
#: Day columns of those downloads: all five languages write days first (DD.MM.YYYY, DD/MM/YYYY).
GOOGLE_LOCALIZED_DAYS = frozenset(_GOOGLE_LOCALIZED["date"].split())
#: Compact names of those downloads' own columns: the second signature group of `GOOGLE_ADS`
#: (a cost column alone is no Google Ads report).
_GOOGLE_LOCALIZED_MARKERS = ("convwert", "valeurdeconv", "valordeconv", "valoreconv", "wahrungscode", "codedeladevise",
                             "codigodemoneda", "codigodamoeda", "codicevaluta", "kampagnenstatus")


def _localized(spec: FieldSpec, key: str | None = None, names: dict[str, str] = _META_LOCALIZED) -> FieldSpec:
    extra = tuple(names.get(key or spec.name, "").split())
    return replace(spec, synonyms=spec.synonyms + extra) if extra else spec


META_ADS = Profile(
    "meta_ads", "performance", "Meta Ads Manager export",
    (_f("date", "day date reporting_starts date_start " + _META_LOCALIZED["date"] + " " + _META_LOCALIZED["date_start"], True,
        "the day (Day breakdown) or Reporting starts"),
     _f("date_end", "reporting_ends date_stop " + _META_LOCALIZED["date_end"], help="must equal the start: daily rows"),
     *(_localized(f) for f in _PERF_COMMON[1:]), *(_localized(f) for f in _AD), _PLACEMENT),
    signature=(("amountspent", "reportingstarts", "valorusado", "valorgasto", "importegastado", "montantdepense",
                "ausgegebenerbetrag", "importospeso"),),
    one_of=(_ENTITY_IDS + ("ad_id", "ad"),),
)
GOOGLE_ADS = Profile(
    "google_ads", "performance", "Google Ads report",
    (*(_localized(f, names=_GOOGLE_LOCALIZED) for f in _PERF_COMMON), *_AD,
     _f("placement", "network ad_network_type network_with_search_partners")),
    signature=(("cost", "costmicros", "metricscostmicros", "kosten", "cout", "coste", "costo", "custo"),
               ("impr", "convvalue", "allconvvalue", "currencycode", "costconv", "campaignstate", *_GOOGLE_LOCALIZED_MARKERS)),
    one_of=(_ENTITY_IDS,),
)
# Fivetran's raw connector tables (google_ads.campaign_stats / ad_group_stats / ad_stats,
# facebook_ads.basic_ad): `core.ingest.connectors` names the entity and its parents first.
CONNECTOR_STATS = Profile(
    "connector_stats", "performance", "Raw ad connector stats table (Fivetran)",
    (
        _f("date", "date date_day", True),
        _f("platform", "conn__platform", help="google (cost_micros) or meta (basic_ad)"),
        _f("account_id", "customer_id account_id"),
        _f("entity_type", "conn__entity_type", True, "the level the table's rows are at"),
        _f("entity_id", "conn__entity_id", True, "the row's entity id"),
        _f("campaign_id", "conn__campaign_id campaign_id"),
        _f("ad_set_id", "conn__ad_set_id ad_group_id ad_set_id adset_id"),
        _f("spend", "cost_micros spend", True),
        _f("impressions", "impressions"),
        _f("clicks", "clicks inline_link_clicks"),
        _f("conversions", "conversions"),
        _f("conversion_value", "conversions_value conversion_value"),
        _f("currency", "currency currency_code account_currency"),
    ),
    signature=(("conn_entity_id",),),
)
ENTITY_HISTORY = Profile(
    "entity_history", "dimension", "Ad entity history (Fivetran *_history: names and parents)",
    (
        _f("entity_id", "id", True, "the entity's id"),
        _f("name", "name", help="its name"),
        _f("campaign_id", "campaign_id"),
        _f("campaign", "campaign_name"),
        _f("ad_set_id", "ad_set_id adset_id ad_group_id"),
        _f("account_id", "account_id customer_id"),
        _f("currency", "currency currency_code"),
        _f("updated_at", "updated_time updated_at _fivetran_synced", help="the newest version of each id is used"),
    ),
    signature=(("id",), ("updatedtime", "updatedat", "fivetransynced"), ("name", "campaignid", "adsetid", "adgroupid", "currencycode")),
    absent=("date", "spend", "costmicros", "impressions", "clicks", "day", "dateday", "createdat", "totalprice", "subtotalprice",
            "email", "orderid", "ordernumber"),
)
FIVETRAN_ADS = Profile(
    "fivetran_ads", "performance", "Fivetran ad_reporting",
    (*_PERF_COMMON[:1], _f("platform", "platform source_relation", help="ad platform"), *_PERF_COMMON[1:], *_AD,
     _f("placement", "placement platform_position publisher_platform ad_network_type network", help="placement segment"),
     *_SEGMENT_FIELDS),
    signature=(("dateday",), ("spend",)),
    one_of=(("campaign_id", "campaign"),),
)
PERFORMANCE = Profile(
    "performance", "performance", "Campaign performance (daily)",
    (*_PERF_COMMON[:1], _f("platform", "platform network publisher ad_platform", help="ad platform"), *_PERF_COMMON[1:],
     *_AD, _PLACEMENT, *_SEGMENT_FIELDS, _ENTITY_TYPE, *_CANONICAL_ENTITY),
    one_of=(_ENTITY_IDS + ("ad_id", "ad", "external_id"),),
)

#: Tried in this order; the first whose signature and required fields match wins.
PROFILES: dict[str, Profile] = {p.name: p for p in (
    GA4, SEGMENT, SNOWPLOW, META_ADS, GOOGLE_ADS, CONNECTOR_STATS, ORDERS, ENTITY_HISTORY, FIVETRAN_ADS, PATHS,
    PERFORMANCE, EVENTS,
)}

#: Compact column names that mean money spent or ad delivery: a table holding them is performance data.
PERFORMANCE_MARKERS = frozenset({"spend", "cost", "costmicros", "amountspent", "metricscostmicros", "adspend"})
DELIVERY_MARKERS = frozenset({"impressions", "impr", "clicks", "reach", "inlinelinkclicks", "cpc", "ctr"})

__all__ = ["FieldSpec", "Profile", "PROFILES", "EVENTS", "GA4", "SEGMENT", "SNOWPLOW", "ORDERS", "PATHS", "META_ADS",
           "GOOGLE_ADS", "GOOGLE_LOCALIZED_DAYS", "CONNECTOR_STATS", "ENTITY_HISTORY", "FIVETRAN_ADS", "PERFORMANCE",
           "PERFORMANCE_MARKERS", "DELIVERY_MARKERS"]
