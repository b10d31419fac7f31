"""The review queue in a real browser (headless Debian Chromium driven by Playwright, on a
SQLite store): a QA analyst opens the 复核队列, opens a call, overturns a verdict with a
comment, and the page shows the recomputed score and the new version (the evidence plays
from the call's redacted recording); an agent, in a
second browser context, appeals (申诉) a failed verdict of its own call and the call
appears in the analyst's queue as an appeal. Screenshots in ``tests/artifacts/``:
``review-queue.png``, ``review-decided.png``, ``review-appeal.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import ARTIFACTS, Dashboard, browser_login
from review_calls import fill_store, put_wav, start_review_dashboard, write_pack

from qa_pipeline.rules import load_pack

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    pack = load_pack(write_pack(tmp_path / "pack"))
    url = str(tmp_path / "store.sqlite")
    fill_store(url, pack)
    put_wav(url, "CA1", tmp_path / "ca1.wav")
    d = start_review_dashboard(tmp_path, url, pack)
    try:
        yield d
    finally:
        d.stop()


def login(browser: Any, dash: Dashboard, name: str) -> Any:
    """A fresh browser context logged in as ``name``, on the review page."""
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
    page = ctx.new_page()
    browser_login(page, dash.url, name)
    page.wait_for_selector("#review-link:not([hidden])", timeout=5000)
    page.click("#review-link")
    page.wait_for_selector("#app:not([hidden])", timeout=5000)
    return page


def test_review_and_appeal_in_browser(browser: Any, dash: Dashboard) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    qa = login(browser, dash, "qa")
    row = qa.wait_for_selector('#queue tr.qitem[data-call-id="CA1"]', timeout=5000)
    assert row is not None
    text = row.inner_text()
    assert "A1" in text and "north" in text and "待定判定" in text and "未开始" in text, text
    assert qa.query_selector('#queue tr.qitem[data-call-id="CA2"]') is None
    qa.screenshot(path=str(ARTIFACTS / "review-queue.png"), full_page=True)

    row.click()
    qa.wait_for_selector('#verdicts tr.verdict[data-rule="NO-PHONE"]', timeout=5000)
    assert qa.inner_text("#score-now") == "91"
    # the uncertain verdict with its pending deduction; evidence and transcript
    assert "待定 −20" in qa.inner_text('#verdicts tr.verdict[data-rule="BAN-POLICY"]')
    assert qa.query_selector('#findings .finding[data-rule="NO-PHONE"] .ev') is not None
    assert "[手机号]" in qa.inner_text('#transcript .utt[data-utt-index="2"]')
    # ▶ the evidence from the call's redacted recording
    audio = qa.query_selector('#findings .finding[data-rule="NO-PHONE"] .ev audio')
    assert audio is not None
    heard = qa.evaluate(
        "(src) => fetch(src).then((r) => r.status + ' ' + r.headers.get('content-type'))",
        audio.get_attribute("src"),
    )
    assert heard == "200 audio/wav", heard
    assert "暂无版本" in qa.inner_text("#history")

    # overturn NO-PHONE to passed: a comment is required first
    verdict = '#verdicts tr.verdict[data-rule="NO-PHONE"]'
    qa.select_option(f"{verdict} select.action", "overturn:passed")
    qa.click("#submit-review")
    qa.wait_for_function(
        "() => document.getElementById('review-msg').textContent.includes('请填写意见')",
        timeout=3000,
    )
    qa.fill(f"{verdict} input.comment", "客户要求核对号码，不算违规")
    qa.click("#submit-review")
    # 100 - BAN-N 4 (BAN-POLICY still uncertain takes nothing): 96
    qa.wait_for_function(
        "() => document.getElementById('score-now').textContent === '96'", timeout=5000
    )
    assert "通过" in qa.inner_text(verdict)
    hist = qa.wait_for_selector('#history tr.version[data-version="1"]', timeout=3000)
    assert hist is not None
    h = hist.inner_text()
    assert "复核" in h and "qa" in h and "客户要求核对号码" in h and "96" in h, h
    assert "v1" in qa.inner_text("#review-msg")
    assert qa.query_selector('#findings .finding[data-rule="NO-PHONE"] .ev audio') is not None
    qa.screenshot(path=str(ARTIFACTS / "review-decided.png"), full_page=True)

    # the agent, in its own context: its calls, an appeal of CA2's failed GREET
    agent = login(browser, dash, "agent-a")
    assert agent.is_hidden("#queue-card")
    agent.wait_for_selector('#mine tr.mycall[data-call-id="CA2"]', timeout=5000).click()
    greet = agent.wait_for_selector(
        '#verdicts tr.verdict[data-rule="GREET"] button.appeal-btn', timeout=5000
    )
    assert agent.query_selector("#submit-review") is None or agent.is_hidden("#review-bar")
    greet.click()
    agent.fill("#appeal-reason", "开头说了你好，系统没有识别")
    agent.click("#submit-appeal")
    agent.wait_for_function(
        "() => document.getElementById('appeal-msg').textContent.includes('已进入复核队列')",
        timeout=5000,
    )
    assert "申诉" in agent.inner_text('#history tr.version[data-version="1"]')
    agent.screenshot(path=str(ARTIFACTS / "review-appeal.png"), full_page=True)

    # it is in the analyst's queue, as an appeal
    qa.select_option("#f-reason", "appeal")
    item = qa.wait_for_selector('#queue tr.qitem[data-call-id="CA2"]', timeout=5000)
    assert item is not None and "申诉" in item.inner_text()
    assert qa.query_selector('#queue tr.qitem[data-call-id="CB1"]') is None
    agent.context.close()
    qa.context.close()
