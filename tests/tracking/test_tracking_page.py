"""The Tracking page under AppTest, started from app.py: keys, figures, failures with retry, settings."""

from __future__ import annotations

import datetime as dt

from tests.pages.conftest import app_env, new_app  # noqa: F401  (fixture re-exported)


def test_tracking_page_keys_figures_retry_and_settings(app_env, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MARKETING_SUITE_NO_SAMPLE", "1")
    from core.store.db import make_engine
    from core.tracking import config
    from core.tracking.dispatch import Dispatcher

    from .conftest import add_conversions, purchase

    url = f"sqlite:///{app_env / 'app.db'}"
    engine = make_engine(url)
    config.save_destination(engine, "default", "meta", enabled=True, test_mode=False, settings={"pixel_id": "1234567"})
    add_conversions(engine, [purchase(1), purchase(2, phone="+1 650 555 1212")], workspace="default")
    Dispatcher(engine, secrets={"none": "x"}).run_once()  # no token: rows wait as not configured

    at = new_app()
    at.run()
    at.switch_page("pages/tracking.py")
    at.run()
    assert not at.exception, at.exception
    assert any("Failures" in m.value for m in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Conversions (30 d)"] == "2" and metrics["e-mail"] == "100%" and metrics["phone"] == "50%"
    # make a browser key: shown once
    at.text_input(key="tracking.key_name").input("site")
    at.radio(key="tracking.key_kind").set_value("browser")
    at.text_area(key="tracking.key_origins").input("https://shop.example.com")
    form_submit = [b for b in at.button if b.label == "Create key"][0]
    form_submit.click()
    at.run()
    assert not at.exception, at.exception
    shown = [c.value for c in at.code if c.value.startswith("ms_pk_")]
    assert len(shown) == 1
    assert any(shown[0] in c.value for c in at.code if "snippet.js" in c.value)
    # retry the failed deliveries
    at.button(key="tracking.retry").click()
    at.run()
    assert not at.exception
    from .conftest import deliveries

    assert all("retry requested by" in (r["message"] or "") for r in deliveries(engine, "meta", workspace="default"))
    from core.tracking import keys

    assert keys.list_keys(engine, "default")[0]["kind"] == "browser"
    # secrets are masked: a token set in the environment never appears in full
    monkeypatch.setenv("META_CAPI_ACCESS_TOKEN", "EAAB-very-secret-token-0123456789")
    at.run()
    everything = str([d.value for d in at.dataframe])
    assert "EAAB-very-secret-token-0123456789" not in everything and "6789" in everything
    # settings save through core
    at.text_input(key="tracking.ga4.mid").input("G-PAGE1234")
    at.toggle(key="tracking.ga4.enabled").set_value(True)
    at.button(key="tracking.ga4.save").click()
    at.run()
    assert not at.exception
    assert config.load_destinations(engine, "default")["ga4"].settings["measurement_id"] == "G-PAGE1234"
