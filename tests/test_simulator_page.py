"""The simulator page in headless Chromium (Debian's, through Playwright) against the real app."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from bot.messages import AskPhone, Audio, Button, Card, Cards
from models.base import utcnow
from models.members import get_account
from sms.providers import DevSmsProvider, SmsMessage

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000  # the page polls every 2 s; allow a few rounds on a slow CI machine


def system_chromium() -> str:
    # CI installs Debian's chromium; a missing browser is a broken setup, never a skip.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium); "
            f"the simulator page test must run (which chromium: {shutil.which('chromium')})"
        )
    return str(CHROMIUM)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = system_chromium()
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def open_page(browser: Browser, url: str, *, width: int = 1200) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900}, locale="zh-TW")
    # Nothing but the app under test: any other request (a CDN, a font) fails the test.
    outside: list[str] = []

    async def guard(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(url) or route.request.url.startswith("data:"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", guard)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.outside_requests = outside  # type: ignore[attr-defined]
    page.js_errors = errors  # type: ignore[attr-defined]
    await page.goto(f"{url}/simulator")
    return page


def log_of(page: Page, user: str):  # type: ignore[no-untyped-def]
    return page.locator(f'ol.log[data-user="{user}"]')


async def say(page: Page, text: str) -> None:
    box = page.get_by_label("訊息 Message")
    await box.fill(text)
    await box.press("Enter")


def assert_clean(page: Page) -> None:
    assert page.js_errors == []  # type: ignore[attr-defined]
    assert page.outside_requests == []  # type: ignore[attr-defined]


async def test_type_help_see_menu_tap_quick_reply_and_buttons(
    browser: Browser, app_url: str
) -> None:
    page = await open_page(browser, app_url, width=390)  # a phone
    log = log_of(page, "citizen-1")
    # First visit: the citizen "adds the bot as a friend" and is welcomed.
    await expect(log).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)
    await say(page, "help")
    await expect(log.locator("li.msg.me").last).to_have_text(re.compile("help"))
    help_text = log.locator("li.msg.bot").filter(has_text="可以這樣跟我說")
    await expect(help_text).to_have_count(1)
    # The menu's quick replies are chips; tapping one answers like typing its words.
    chip = page.locator("#quick").get_by_role("button", name="說明")
    await expect(chip).to_be_visible()
    await chip.click()
    await expect(help_text).to_have_count(2)
    await expect(log.locator("li.msg.me").last).to_have_text(re.compile("說明"))

    # Buttons inside a message: the language question, answered by tapping "English".
    await say(page, "語言")
    await log.locator("li.msg.bot").last.get_by_role("button", name="English").click()
    await expect(log).to_contain_text("OK, I will talk to you in English", timeout=WAIT_MS)
    await page.locator("#quick").get_by_role("button", name="Help").click()
    await expect(log).to_contain_text("find a course", timeout=WAIT_MS)

    # On a phone the SMS inbox is a drawer behind a header button.
    panel = page.get_by_role("complementary", name="手機簡訊 Phone inbox")
    await expect(panel).to_be_hidden()
    toggle = page.get_by_role("button", name=re.compile("簡訊"))
    await toggle.click()
    await expect(panel).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    assert_clean(page)


async def test_switching_persona_keeps_each_conversation(served, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    async with served() as (url, api):
        page = await open_page(browser, url)
        citizen = log_of(page, "citizen-1")
        await expect(citizen).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)
        await say(page, "說明")
        await expect(citizen).to_contain_text("可以這樣跟我說", timeout=WAIT_MS)

        await page.get_by_role("radio", name="公務人員 Civil servant").check()
        servant = log_of(page, "civil-servant-1")
        await expect(servant).to_be_visible()
        await expect(citizen).to_be_hidden()
        await expect(servant).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)
        await expect(servant).not_to_contain_text("可以這樣跟我說")
        async with api.state.runtime.sessionmaker() as session:
            account = await get_account(session, channel="simulator", external_id="civil-servant-1")
        assert account is not None
        assert account.member.is_civil_servant

        await page.get_by_role("radio", name="新朋友 New citizen").check()
        newcomer = page.locator('ol.log[data-user^="new-"]')
        await expect(newcomer).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)

        await page.get_by_role("radio", name="市民 Citizen").check()
        await expect(citizen).to_be_visible()
        await expect(citizen).to_contain_text("可以這樣跟我說")  # the earlier talk is still there
        # The choice survives a reload.
        await page.reload()
        await expect(page.get_by_role("radio", name="市民 Citizen")).to_be_checked()
        assert_clean(page)


async def test_proactive_cards_in_both_forms_audio_and_escaped_text(
    served, browser: Browser
) -> None:  # type: ignore[no-untyped-def]
    async with served() as (url, api):
        page = await open_page(browser, url)
        log = log_of(page, "citizen-1")
        await expect(log).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)
        # What the outbox dispatcher delivers through the simulator channel; the page polls.
        await api.state.runtime.simulator.deliver(
            "citizen-1",
            [
                Cards(
                    alt_text="找到 2 門「資安」課程",
                    cards=[
                        Card(
                            title='資通安全<img src=x onerror="window.pwned=1">',
                            subtitle="3 小時",
                            body="社交工程與密碼管理",
                            buttons=[
                                Button(label="看課程", action="zz.unhandled:1"),
                                Button(label="惡意連結", url="javascript:window.pwned=2"),
                            ],
                        ),
                        Card(
                            title="雲端資安",
                            buttons=[Button(label="看課程", action="zz.unhandled:2")],
                        ),
                    ],
                    more=Button(label="更多結果", action="zz.unhandled:more"),
                ),
                Audio(url="/media/ep1.mp3", duration_ms=185_000, title="第 1 集：密碼怎麼設"),
            ],
        )
        carousel = log.locator(".cards-line-view .carousel")
        await expect(carousel.locator(".card")).to_have_count(3, timeout=WAIT_MS)  # 2 + "more"
        title = carousel.locator(".card-title").first
        await expect(title).to_have_text('資通安全<img src=x onerror="window.pwned=1">')
        cards_msg = log.locator("li.msg.bot.kind-cards")
        await expect(cards_msg.locator(".cards-telegram-view")).to_be_hidden()
        # A javascript: link is shown as text, never as a link.
        await expect(carousel.get_by_text("惡意連結")).to_be_visible()
        await expect(carousel.get_by_role("link")).to_have_count(0)
        # The LINE view draws what LINE is sent: an audio message (its duration), then a bubble.
        audio = log.locator(".cards-line-view audio")
        await expect(audio).to_have_attribute("src", f"{url}/media/ep1.mp3")
        await expect(log.locator(".cards-line-view .audio-title")).to_contain_text("3:05")

        # The toggle shows Telegram's form: a numbered list with an inline keyboard.
        await page.get_by_role("radio", name="Telegram").check()
        telegram = cards_msg.locator(".cards-telegram-view")
        await expect(telegram).to_be_visible()
        await expect(carousel).to_be_hidden()
        # Telegram's own message: the numbered list as one text.
        await expect(telegram).to_contain_text('1. 資通安全<img src=x onerror="window.pwned=1">')
        await expect(telegram).to_contain_text("2. 雲端資安")
        await expect(telegram.get_by_role("button", name="更多結果")).to_be_visible()
        await telegram.get_by_role("button", name="2. 看課程").click()
        # The tap reached the router (no feature owns zz.*: the friendly fallback answers).
        await expect(log.locator("li.msg.me").last).to_have_text(re.compile("看課程"))
        await expect(log.locator("li.msg.bot").last).to_contain_text("看不懂", timeout=WAIT_MS)
        assert await page.evaluate("window.pwned === undefined")
        assert_clean(page)


async def test_share_phone_form_and_the_dev_sms_inbox(served, browser: Browser) -> None:  # type: ignore[no-untyped-def]
    async with served() as (url, api):
        runtime = api.state.runtime
        page = await open_page(browser, url)
        log = log_of(page, "citizen-1")
        await expect(log).to_contain_text("歡迎來到臺北e大", timeout=WAIT_MS)
        await runtime.simulator.deliver(
            "citizen-1",
            [AskPhone(text="請輸入或分享你的手機號碼", share_label="分享我的手機")],
        )
        # LINE has no share-phone button (the person types the number); Telegram does.
        await expect(log.locator(".cards-line-view").last).to_contain_text(
            "請輸入或分享你的手機號碼", timeout=WAIT_MS
        )
        await expect(log.get_by_role("button", name="分享我的手機")).to_have_count(0)
        await page.get_by_role("radio", name="Telegram").check()
        share = log.get_by_role("button", name="分享我的手機")
        await expect(share).to_be_visible(timeout=WAIT_MS)
        await log.get_by_label("手機號碼 Phone number").fill("0912-345-678")
        await share.click()
        await expect(log.locator("li.msg.me").last).to_have_text(re.compile("0912-345-678"))
        # The shared number's inbox opens; a dev SMS to it shows up there, not in the chat.
        inbox = page.locator("#inbox")
        await expect(page.locator("#inbox-status")).to_contain_text("+886 912 345 678")
        async with runtime.sessionmaker() as session:
            await DevSmsProvider(runtime.services.vault).send(
                SmsMessage(
                    to="+886912345678",
                    body="【臺北e大】驗證碼 604218",
                    reference="r1",
                    requester="simulator:citizen-1",  # the person on the page asked for it
                ),
                session=session,
                now=utcnow(),
            )
            await session.commit()
            # A code somebody else asked for never shows on this page.
            await DevSmsProvider(runtime.services.vault).send(
                SmsMessage(
                    to="+886912345678",
                    body="【臺北e大】驗證碼 771100",
                    reference="r2",
                    requester="simulator:someone-else",
                ),
                session=session,
                now=utcnow(),
            )
            await session.commit()
        await expect(inbox).to_contain_text("驗證碼 604218", timeout=WAIT_MS)
        await expect(inbox).not_to_contain_text("771100")
        await expect(log).not_to_contain_text("604218")
        # Another number typed into the panel has its own (empty) inbox.
        await page.locator("#inbox-phone").fill("0987 654 321")
        await page.get_by_role("button", name="查看 Open").click()
        await expect(page.locator("#inbox-status")).to_contain_text("+886 987 654 321")
        await expect(inbox.locator("li")).to_have_count(0)
        assert_clean(page)
