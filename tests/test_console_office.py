"""The office side of the console in headless Chromium (Debian's, through Playwright), against
the real app: a marketer creates a campaign (and sees a refused file change nothing), composes
a broadcast with a live segment count and schedules it, sees it previewed as LINE and
Telegram show it; an analyst opens every dashboard and sees its chart drawn, in Taipei time.
Screenshots go to the test output."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from bot.qr import qr_png
from models.base import utcnow
from models.db import create_sessionmaker
from models.members import Member, ensure_account
from tests.admin_support import PASSWORD, make_account
from tests.test_console_page import console_page, output_dir
from tests.test_simulator_page import WAIT_MS, assert_clean, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser
# Every wait in these pages is a round trip to the app; a loaded CI machine gets time.
expect.set_options(timeout=WAIT_MS)

BAD_CAMPAIGN = "slug: Not A Slug\ntitle: 壞檔\n"


async def sign_in(page, url: str, email: str) -> None:  # type: ignore[no-untyped-def]
    await page.goto(f"{url}/admin/login")
    await page.get_by_label("電子郵件").fill(email)
    await page.get_by_label("密碼").fill(PASSWORD)
    await page.get_by_role("button", name="登入").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"您好，{email}")


async def test_a_marketer_creates_a_campaign_and_schedules_a_broadcast_with_a_live_count(
    served,  # type: ignore[no-untyped-def]
    engine,  # type: ignore[no-untyped-def]
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    shots = output_dir(tmp_path)
    await make_account(engine, "mia@example.org", "marketer")
    async with create_sessionmaker(engine)() as session:
        for i in range(3):
            await ensure_account(
                session, channel="simulator", external_id=f"sim-office-{i}", now=utcnow()
            )
        await session.flush()
        first = await session.scalar(select(Member).order_by(Member.id).limit(1))
        assert first is not None
        first.is_civil_servant = True  # one civil servant among the three
        await session.commit()

    async with served() as (url, _):
        page = await console_page(browser, url)
        await sign_in(page, url, "mia@example.org")
        nav = page.get_by_role("navigation", name="選單")
        # A marketer's menu: campaigns, broadcasts, dashboards; no audit log, no accounts.
        await expect(nav.get_by_role("link", name="稽核紀錄")).to_have_count(0)

        # A refused campaign file names its problems and creates nothing.
        await nav.get_by_role("link", name="活動").click()
        form = page.locator("#campaign-create")
        await form.get_by_label("活動檔").fill(BAD_CAMPAIGN)
        await form.get_by_role("button", name="建立").click()
        await expect(form).to_have_attribute("data-state", "refused", timeout=WAIT_MS)
        await expect(form.locator(".status")).to_contain_text("沒有任何變更")
        await expect(form.locator(".refused li").first).to_contain_text("slug")
        await page.reload()
        await expect(page.get_by_test_id("campaigns")).to_contain_text("目前沒有活動")

        # The example file, as the page offers it, creates the campaign and opens its page.
        form = page.locator("#campaign-create")
        await form.get_by_role("button", name="建立").click()
        await expect(page).to_have_url(re.compile(r"/admin/campaigns/gender-2027$"))
        await expect(page.get_by_role("heading", level=1)).to_have_text("性平課程領好禮")
        figures = page.get_by_test_id("campaign-figures")
        await expect(figures).to_contain_text("100")
        await expect(page.locator("dl.facts")).to_contain_text("2027-01-01 09:00")
        await expect(page.get_by_test_id("rule")).to_have_text(
            "min_hours: 2.0; categories: 性別平等"
        )
        await expect(page.get_by_test_id("export")).to_have_count(0)  # auditors and admins
        await page.screenshot(path=str(shots / "console-campaign.png"), full_page=True)

        # The composer: the live count follows the segment as it is edited.
        await nav.get_by_role("link", name="群發訊息").click()
        composer = page.locator("#composer")
        count = page.get_by_test_id("segment-count")
        await expect(count).to_have_text("3", timeout=WAIT_MS)
        await composer.get_by_label("公務人員").select_option("true")
        await expect(count).to_have_text("1", timeout=WAIT_MS)
        await composer.get_by_label("公務人員").select_option("")
        await expect(count).to_have_text("3", timeout=WAIT_MS)
        await composer.get_by_label("名稱").fill("年終性平推廣")
        await composer.get_by_label("內容（中文）").fill("年底前完成性平課程，就能領 NT$200 禮券！")
        await composer.get_by_label("內容（英文）").fill(
            "Finish the course by year end for a gift."
        )
        poster = tmp_path / "poster.png"
        poster.write_bytes(qr_png("GENDER-2026"))
        await composer.get_by_label(re.compile("上傳圖片")).set_input_files(str(poster))
        await expect(composer.get_by_label("圖片網址（https）")).to_have_value(
            re.compile(r"/media/broadcasts/[0-9a-f]{32}\.png$")
        )
        await composer.get_by_label("按鈕文字（中文，最多 20 字）").fill("立即前往臺北e大看課程")
        await composer.get_by_label("按鈕連結（https）").fill("https://elearning.taipei/")
        later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).astimezone(
            dt.timezone(dt.timedelta(hours=8))
        )
        await composer.get_by_label(re.compile("發送時間")).fill(later.strftime("%Y-%m-%dT10:00"))
        await expect(page.get_by_test_id("broadcast-file")).to_have_value(
            re.compile(r'"send_at": "\d{4}-\d\d-\d\d 10:00"')
        )
        await page.screenshot(path=str(shots / "console-composer.png"), full_page=True)
        await composer.get_by_role("button", name="建立並排程").click()

        # The new broadcast: scheduled for 10:00 Taipei, previewed in both looks.
        await expect(page).to_have_url(re.compile(r"/admin/broadcasts/\d+$"), timeout=WAIT_MS)
        await expect(page.get_by_test_id("broadcast-status")).to_have_text("已排程")
        await expect(page.get_by_test_id("broadcast-figures")).to_contain_text(
            later.strftime("%Y-%m-%d") + " 10:00"
        )
        zh = page.get_by_test_id("preview-a-zh-TW")
        await expect(zh.get_by_test_id("look-line")).to_contain_text("就能領 NT$200 禮券")
        await expect(zh.get_by_test_id("look-telegram")).to_contain_text("就能領 NT$200 禮券")
        await expect(zh.get_by_test_id("look-telegram")).to_contain_text("立即前往臺北e大看課程")
        await expect(zh.get_by_test_id("look-line")).to_contain_text("/media/broadcasts/")
        en = page.get_by_test_id("preview-a-en")
        await expect(en.get_by_test_id("look-line")).to_contain_text("for a gift")
        await page.screenshot(path=str(shots / "console-broadcast.png"), full_page=True)

        # Cancelled from its page, the broadcast says so.
        await page.locator("#broadcast-cancel").get_by_role("button", name="取消").click()
        await expect(page.get_by_test_id("broadcast-status")).to_have_text(
            "已取消", timeout=WAIT_MS
        )
        assert_clean(page)


async def test_an_analyst_opens_every_dashboard_and_sees_its_chart(
    served,  # type: ignore[no-untyped-def]
    engine,  # type: ignore[no-untyped-def]
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    shots = output_dir(tmp_path)
    await make_account(engine, "ann@example.org", "analyst")
    async with served() as (url, api):
        # Some channel use to count: a simulator chat, then the rollups job.
        import httpx

        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            sent = await http.post("/simulator/api/send", json={"user": "sim-dash", "text": "選單"})
            assert sent.status_code == 200, sent.text
        await api.state.runtime.jobs.require("rollups").run(dt.datetime.now(dt.UTC))

        page = await console_page(browser, url)
        await sign_in(page, url, "ann@example.org")
        await page.get_by_role("navigation", name="選單").get_by_role("link", name="儀表板").click()
        await expect(page).to_have_url(re.compile(r"/admin/dashboards/topics$"))
        tabs = page.get_by_role("navigation", name="儀表板")
        for name, label in (
            ("topics", "學習主題"),
            ("compliance", "必修達成率"),
            ("reminders", "提醒成效"),
            ("search", "搜尋分析"),
            ("campaigns", "活動漏斗"),
            ("channels", "頻道使用"),
        ):
            await tabs.get_by_role("link", name=label).click()
            await expect(page).to_have_url(re.compile(f"/admin/dashboards/{name}$"))
            board = page.locator("#dashboard")
            await expect(board).to_have_attribute("data-drawn", "true", timeout=WAIT_MS)
            # ECharts draws into a canvas of the chart's size.
            await expect(page.locator("#dashboard-chart canvas")).to_have_count(1)
            await expect(page.locator("#dashboard-csv")).to_have_attribute(
                "href", re.compile(f"/admin/api/dashboards/{name}\\?.*format=csv")
            )
        # The channels board has this week's simulator chat, and says when, in Taipei time.
        await expect(page.locator("#dashboard-table")).to_contain_text("simulator")
        await expect(page.locator("#dashboard-status")).to_contain_text("（臺北時間）")
        await expect(page.locator("#dashboard-note")).to_contain_text("每週自週一")
        await page.screenshot(path=str(shots / "console-dashboard-channels.png"), full_page=True)
        assert_clean(page)
    assert (shots / "console-dashboard-channels.png").stat().st_size > 10_000


async def test_a_campaign_or_broadcast_that_is_not_there_is_a_console_page_not_json(
    served,  # type: ignore[no-untyped-def]
    engine,  # type: ignore[no-untyped-def]
) -> None:
    import httpx

    from tests.admin_support import sign_in

    await make_account(engine, "nia@example.org", "marketer")
    async with (
        served() as (url, _),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await sign_in(http, "nia@example.org")
        for path, back in (("/admin/campaigns/nope", "/admin/campaigns"),
                           ("/admin/broadcasts/999", "/admin/broadcasts")):  # fmt: skip
            page = await http.get(path)
            assert page.status_code == 404
            assert page.headers["content-type"].startswith("text/html")
            assert "找不到這個頁面" in page.text
            assert f'href="{back}"' in page.text
