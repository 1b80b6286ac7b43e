"""In a real browser: a platform named like a Markdown link is shown as text, never as a link (issue 11 §7)."""

from __future__ import annotations

import pytest

from tests.browser.util import upload_and_import, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

EVIL = "[login](http://evil.example)"


def test_a_platform_named_like_a_link_is_plain_text_on_the_data_page(page, tmp_path):
    file = tmp_path / "hostile-perf.csv"
    file.write_text("date,platform,campaign_id,campaign_name,spend,clicks,impressions,conversions,conversions_value,currency\n"
                    f'2024-05-01,"{EVIL}",c1,"**bold** www.evil.example",10,1,100,1,20,USD\n'
                    f'2024-05-02,"{EVIL}",c1,"**bold** www.evil.example",11,1,100,1,20,USD\n')
    page.goto(page.app_url)
    upload_and_import(page, file, "performance")
    page.get_by_text("Imported hostile-perf.csv", exact=False).wait_for(timeout=30_000)
    wait_idle(page)
    main = page.get_by_test_id("stMain")
    text = main.inner_text().replace("\u200b", "")
    assert EVIL in text  # shown, character for character
    assert page.locator('a[href*="evil.example"]').count() == 0  # never a link
    assert main.locator("strong", has_text="bold").count() == 0
