"""The re-score report in a real browser (headless Debian Chromium, Playwright without
``playwright install``): every chart element lies inside its chart and every chart inside
its container, as Chromium lays out the text with the CJK fonts; count axes tick at whole
numbers. The screenshot is kept as ``tests/artifacts/report.png``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.rescore.html import hbar_chart, render_report, vbar_chart
from qa_pipeline.rescore.summary import RescoreSummary
from qa_pipeline.rules import load_pack

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
LONG = "CLOSE-THANKS 结束语：感谢来电并道别，并且确认客户没有其他问题之后再礼貌地结束通话，不得先于客户挂机"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("the browser test needs Debian's chromium on PATH: apt-get install chromium")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _rows() -> list[dict[str, Any]]:
    """Three scored calls (a chart of 3 calls) and one unreadable recording."""
    rows = []
    for i, (score, grade, failed) in enumerate(
        [
            (95.0, "非常满意", []),
            (72.0, "基本满意", ["CLOSE-THANKS", "CONFIRM-SAT"]),
            (40.0, "不满意", ["BAN-POLICY", "CLOSE-THANKS"]),
        ]  # fmt: skip
    ):
        rows.append(
            {
                "call_id": f"c-{i}",
                "status": "ok",
                "error": None,
                "score": score,
                "grade": grade,
                "failed": int("BAN-POLICY" in failed),
                "failed_rules": json.dumps(failed),
                "findings": "[]",
                "verdicts": "{}",
                "agent_id": ["A01", "坐席-华东大区-第三组-一个非常非常长的名字", "A03"][i],
                "started_at": f"2026-03-0{i + 1}T10:00:00",
                "source": "",
                "transcript_key": "",
            }
        )
    rows.append({**rows[0], "call_id": "bad", "status": "error", "error": "unreadable"})
    return rows


def _page_html() -> str:
    pack = load_pack()
    html = render_report(_rows(), pack, None, {}, RescoreSummary("r1", None, "p", None))
    edge = "".join(
        [
            "<h2>edge cases</h2><div class=grid>",
            vbar_chart([LONG, "坐席" * 30, "x" * 200], [0, 2, 1_234_567], title=LONG * 2),
            vbar_chart([str(i) for i in range(10)], [0] * 10, title="all zero"),
            "</div>",
            vbar_chart(
                [f"坐席-华东大区-第{i}组-很长的名字" for i in range(40)],
                [float(i % 4) for i in range(40)],
                title="many bars, long labels",
                integer=False,
                line=[100.0 - i for i in range(40)],
                line_label="mean score",
                width=1100,
                height=300,
            ),  # fmt: skip
            hbar_chart([LONG, "坐席" * 80, "R"], [1, 30_000_000, 0], title=LONG * 3),
        ]
    )
    return html.replace("</body>", edge + "</body>")


_CHECK = """
() => {
  const bad = [];
  const charts = [...document.querySelectorAll('svg.chart')];
  for (const svg of charts) {
    const box = svg.getBoundingClientRect();
    const parent = svg.parentElement.getBoundingClientRect();
    const name = svg.getAttribute('aria-label');
    if (box.left < parent.left - 1 || box.right > parent.right + 1)
      bad.push(`chart ${name} (${box.left}-${box.right}) outside its container ` +
               `(${parent.left}-${parent.right})`);
    for (const el of svg.querySelectorAll('text, rect, line, circle, polyline')) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1 ||
          r.bottom > box.bottom + 1)
        bad.push(`${name}: <${el.tagName}> ${el.textContent.slice(0, 40)} at ` +
                 `${r.left.toFixed(1)},${r.top.toFixed(1)}-${r.right.toFixed(1)},` +
                 `${r.bottom.toFixed(1)} outside ${box.left},${box.top}-${box.right},${box.bottom}`);
    }
  }
  const ticks = [...document.querySelectorAll('svg.chart')].map(
    s => [s.getAttribute('aria-label'), [...s.querySelectorAll('text.tick')].map(t => t.textContent)]);
  return {bad, ticks, charts: charts.length,
          scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth};
}
"""


@pytest.mark.parametrize("width", [1280, 700])
def test_report_charts_stay_inside(browser: Any, tmp_path: Path, width: int) -> None:
    path = tmp_path / "report.html"
    path.write_text(_page_html(), encoding="utf-8")
    ctx = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN")
    try:
        page = ctx.new_page()
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        got = page.evaluate(_CHECK)
        if width == 1280:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    finally:
        ctx.close()
    assert got["charts"] >= 9
    assert got["bad"] == [], "\n".join(got["bad"])
    assert got["scroll"] <= got["client"], "the page scrolls sideways"
    ticks = dict(got["ticks"])
    # counts: whole numbers only (3 calls: 0 1 2 3, not 0.75 steps)
    for name in ("Score distribution (calls per score band)", "Grades (calls)", "all zero"):
        assert ticks[name] and all(t.replace(",", "").isdigit() for t in ticks[name]), ticks[name]
    assert ticks["Grades (calls)"] == ["0", "1"]
    assert ticks["all zero"] == ["0", "1"]
