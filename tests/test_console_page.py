"""The console in headless Chromium (Debian's, through Playwright) against the real app:
sign in, import a catalog (and see a refused one), preview the chat's search, look up a
member, read the audit log with its chain verified. Screenshots go to the test output."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from models.base import utcnow
from models.db import create_sessionmaker
from models.members import ensure_account
from tests.admin_support import PASSWORD, make_account
from tests.test_simulator_page import WAIT_MS, assert_clean, browser  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

GOOD = (
    "id,title,category,hours,description,audience,tags,password_protected\n"
    "web-1,資通安全管理實務,資訊安全,2,,public,資安,false\n"
    "web-2,長期照顧服務導論,長期照顧,1.5,,civil_servant,長照,false\n"
)
BAD = (
    "id,title,category,hours,description,audience,tags,password_protected\n"
    "web-3,新課程,資訊安全,two,,public,,false\n"
)


def output_dir(tmp_path: Path) -> Path:
    """Where screenshots go: TEST_OUTPUT_DIR when set (CI keeps it), else the test's tmp."""
    chosen = Path(os.environ.get("TEST_OUTPUT_DIR", tmp_path))
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


async def console_page(browser: Browser, url: str) -> Page:  # noqa: F811
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-TW")
    outside: list[str] = []

    async def guard(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(url):
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
    return page


async def test_sign_in_import_search_look_up_and_audit(
    served,  # type: ignore[no-untyped-def]
    engine,  # type: ignore[no-untyped-def]
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    shots = output_dir(tmp_path)
    await make_account(engine, "alice@example.org", "admin")
    async with create_sessionmaker(engine)() as session:
        account, _ = await ensure_account(
            session, channel="simulator", external_id="sim-web-1", now=utcnow()
        )
        await session.commit()
        member_id = account.member_id
    catalog, refused = tmp_path / "catalog.csv", tmp_path / "refused.csv"
    catalog.write_text(GOOD, encoding="utf-8")
    refused.write_text(BAD, encoding="utf-8")

    async with served() as (url, _):
        page = await console_page(browser, url)
        # Signed out, the console sends the browser to the sign-in page.
        await page.goto(f"{url}/admin")
        await expect(page).to_have_url(re.compile(r"/admin/login$"))
        await page.get_by_label("電子郵件").fill("alice@example.org")
        await page.get_by_label("密碼").fill("wrong password!")
        await page.get_by_role("button", name="登入").click()
        await expect(page.get_by_role("alert")).to_contain_text("不正確")
        await page.get_by_label("密碼").fill(PASSWORD)
        await page.get_by_role("button", name="登入").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("您好，alice@example.org")
        await expect(page.get_by_test_id("who")).to_contain_text("系統管理員")
        nav = page.get_by_role("navigation", name="選單")
        for entry in ("課程", "必修規定", "聽課", "活動", "群發訊息", "儀表板", "帳號管理"):
            await expect(nav.get_by_role("link", name=entry)).to_be_visible()

        # Import a catalog: progress, then the figures; a bad file shows its refused rows.
        await nav.get_by_role("link", name="課程").click()
        form = page.locator("#course-import")
        await form.locator("input[type=file]").set_input_files(str(catalog))
        await form.get_by_role("button", name="上傳").click()
        await expect(form).to_have_attribute("data-state", "done", timeout=WAIT_MS)
        await expect(form.locator(".status")).to_contain_text("created 2")
        await expect(form.locator("progress")).to_have_attribute("value", "100")
        await form.locator("input[type=file]").set_input_files(str(refused))
        await form.get_by_role("button", name="上傳").click()
        await expect(form).to_have_attribute("data-state", "refused", timeout=WAIT_MS)
        await expect(form.locator(".status")).to_contain_text("沒有任何變更")
        await expect(form.locator(".refused li")).to_contain_text(["line 2"])
        await page.screenshot(path=str(shots / "console-courses-import.png"), full_page=True)

        # The chat's own search, previewed (the index follows the import).
        await page.reload()
        await page.get_by_label("搜尋字詞").fill("資安")
        await page.get_by_role("button", name="搜尋").click()
        results = page.locator("#search-results")
        await expect(results).to_contain_text("資通安全管理實務", timeout=WAIT_MS)
        await expect(page.locator("table")).to_contain_text("長期照顧服務導論")

        # Look a member up by their channel id; a number that is no member says so.
        await nav.get_by_role("link", name="會員查詢").click()
        by_channel = page.locator("#by-channel")
        await by_channel.get_by_label("頻道").select_option("simulator")
        await by_channel.get_by_label("帳號 ID").fill("sim-web-1")
        await by_channel.get_by_role("button", name="查詢").click()
        card = page.get_by_test_id("member-card")
        await expect(card).to_contain_text(f"會員 #{member_id}", timeout=WAIT_MS)
        await expect(card).to_contain_text("sim-web-1")
        await expect(card).to_contain_text("未驗證")
        by_phone = page.locator("#by-phone")
        await by_phone.get_by_label("手機").fill("0912-345-678")
        await by_phone.get_by_role("button", name="查詢").click()
        await expect(page.get_by_test_id("member-problem")).to_have_text("查無此會員。")
        await page.screenshot(path=str(shots / "console-member.png"), full_page=True)

        # The audit log: who did it, and the chain verified.
        await nav.get_by_role("link", name="稽核紀錄").click()
        await expect(page.get_by_test_id("chain")).to_contain_text("雜湊鏈驗證通過")
        rows = page.locator("table.audit tbody")
        await expect(rows).to_contain_text("courses.import")
        await expect(rows).to_contain_text("members.lookup")
        await expect(rows).to_contain_text("admin:alice@example.org")
        await page.get_by_label("動作").fill("members.")
        await page.get_by_role("button", name="篩選").click()
        await expect(rows).not_to_contain_text("courses.import", timeout=WAIT_MS)
        await expect(rows).to_contain_text("members.lookup")
        await expect(page.get_by_test_id("audit-csv")).to_have_attribute(
            "href", re.compile(r"format=csv.*action=members")
        )
        await page.screenshot(path=str(shots / "console-audit.png"), full_page=True)

        # English, from the catalogs.
        await page.get_by_role("link", name="English").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
        assert_clean(page)
    assert (shots / "console-audit.png").stat().st_size > 10_000
