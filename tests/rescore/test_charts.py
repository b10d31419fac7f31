"""The report's inline SVG charts on edge-case data: count axes tick at whole numbers only,
and nothing is drawn outside the chart's box (bars, labels, ticks), for long Chinese labels,
many bars, zero counts and one huge count.

Text extents here are the charts' own width estimate; tests/rescore/test_report_browser.py
measures the same charts as Chromium lays them out.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from qa_pipeline.rescore.html import hbar_chart, nice_ticks, text_width, vbar_chart

NS = "{http://www.w3.org/2000/svg}"
LONG = "CLOSE-THANKS 结束语：感谢来电并道别，并且确认客户没有其他问题之后再礼貌地结束通话，不得先于客户挂机"


def _boxes(svg: str) -> tuple[tuple[float, float], list[tuple[str, float, float, float, float]]]:
    """The viewBox size and every rect / text as (what, x0, y0, x1, y1), text extents
    estimated with the font size, anchor and rotation."""
    root = ET.fromstring(svg)
    _, _, vw, vh = map(float, root.get("viewBox", "").split())
    out = []
    for el in root.iter():
        tag = el.tag.removeprefix(NS)
        if tag == "rect":
            x, y = float(el.get("x", 0)), float(el.get("y", 0))
            w, h = float(el.get("width", 0)), float(el.get("height", 0))
            assert w >= 0 and h >= 0
            out.append(("rect", x, y, x + w, y + h))
        elif tag == "text":
            size = float(el.get("font-size", 10))
            shown = "".join(el.itertext())
            title = el.find(f"{NS}title")
            if title is not None and title.text:
                shown = shown.removeprefix(title.text)
            w = text_width(shown, size)
            x, y = float(el.get("x", 0)), float(el.get("y", 0))
            anchor = el.get("text-anchor", "start")
            x0 = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
            corners = [(x0, y - 0.8 * size), (x0 + w, y - 0.8 * size), (x0, y + 0.25 * size),
                       (x0 + w, y + 0.25 * size)]  # fmt: skip
            m = re.match(r"rotate\((-?[\d.]+) ([\d.]+) ([\d.]+)\)", el.get("transform", ""))
            if m:
                a = math.radians(float(m.group(1)))
                cx, cy = float(m.group(2)), float(m.group(3))
                corners = [
                    (
                        cx + (px - cx) * math.cos(a) - (py - cy) * math.sin(a),
                        cy + (px - cx) * math.sin(a) + (py - cy) * math.cos(a),
                    )
                    for px, py in corners
                ]
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            out.append((f"text {shown!r}", min(xs), min(ys), max(xs), max(ys)))
    return (vw, vh), out


def _assert_inside(svg: str) -> None:
    (vw, vh), boxes = _boxes(svg)
    for what, x0, y0, x1, y1 in boxes:
        assert x0 >= -0.5 and y0 >= -0.5 and x1 <= vw + 0.5 and y1 <= vh + 0.5, (
            f"{what} at ({x0:.1f},{y0:.1f})–({x1:.1f},{y1:.1f}) outside 0 0 {vw} {vh}"
        )


def _ticks(svg: str) -> list[str]:
    return re.findall(r'class="tick">([^<]*)</text>', svg)


@pytest.mark.parametrize(
    ("vmax", "want"),
    [
        (3, [0, 1, 2, 3]),
        (0, [0, 1]),
        (1, [0, 1]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 2, 4, 6, 8, 10]),
        (123456, [0, 50000, 100000, 150000]),
    ],
)
def test_count_ticks_are_whole_numbers(vmax: int, want: list[int]) -> None:
    assert nice_ticks(vmax, integer=True) == want


def test_rate_ticks_may_be_fractions() -> None:
    assert nice_ticks(0.33, integer=False) == [0, 0.1, 0.2, 0.3, 0.4]


def test_three_calls_chart_has_no_half_ticks() -> None:
    svg = vbar_chart(["A", "B", "C"], [1, 3, 0], title="Grades (calls)")
    assert _ticks(svg) == ["0", "1", "2", "3"]
    _assert_inside(svg)


def test_all_zero_counts() -> None:
    svg = vbar_chart([f"{10 * i}–{10 * i + 9}" for i in range(10)], [0] * 10, title="Scores")
    assert _ticks(svg) == ["0", "1"]
    assert all(b[4] - b[2] == 0 for b in _boxes(svg)[1] if b[0] == "rect")
    _assert_inside(svg)


def test_one_huge_count() -> None:
    values = [1, 0, 2, 1_234_567, 3, 0, 0, 1, 0, 5]
    svg = vbar_chart([str(i) for i in range(10)], values, title="Score distribution")
    ticks = _ticks(svg)
    assert all(re.fullmatch(r"[\d,]+", t) for t in ticks), ticks
    assert ticks == ["0", "500,000", "1,000,000", "1,500,000"]
    _assert_inside(svg)


def test_long_labels_are_cut_with_tooltips() -> None:
    labels = [LONG, "坐席" * 30, "x" * 200]
    svg = vbar_chart(labels, [5, 2, 9], title=LONG * 2)
    _assert_inside(svg)
    assert svg.count(f"<title>{LONG}</title>") >= 1  # the whole label as a tooltip
    svg = hbar_chart(labels, [1, 2, 30_000_000], title=LONG * 3)
    _assert_inside(svg)
    assert f"<title>{LONG}</title>" in svg and "…" in svg


def test_many_bars_slanted_labels() -> None:
    labels = [f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(300)]
    values = [(i * 37) % 11 / 3 for i in range(300)]
    svg = vbar_chart(
        labels, values, title="By day", integer=False, line=[50.0] * 300,
        line_label="mean score", width=1100, height=300,
    )  # fmt: skip
    _assert_inside(svg)
    agents = [f"坐席-华东大区-第{i}组-一个很长的名字" for i in range(40)]
    svg = vbar_chart(
        agents, [float(i % 4) for i in range(40)], title="By agent", integer=False,
        line=[100.0 - i for i in range(40)], line_label="mean score", width=1100, height=300,
    )  # fmt: skip
    _assert_inside(svg)
    assert "rotate(-40" in svg and "…" in svg


def test_many_rules_hbar_grows_down() -> None:
    labels = [f"R{i} {LONG}" for i in range(80)]
    svg = hbar_chart(labels, list(range(80)), title="Calls failing each rule")
    _assert_inside(svg)
    assert svg.count("<rect") == 80
