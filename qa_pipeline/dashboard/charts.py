"""Inline SVG line charts of the history page (score and violation trends).

Drawn as the ``rescore`` report draws its bar charts, with the ticks, labels and text
measure they share (:mod:`qa_pipeline.svg`): axis ticks of 1, 2 or 5 × 10^k, whole numbers
only for counts; everything inside the view box (labels cut to fit, the whole text in a
tooltip). Each point
is a ``<circle class="pt">`` carrying its series, bucket and value as ``data-*`` attributes
(what the page's tests read) and a tooltip. No CSS ``style`` attributes (the page's CSP
allows only its nonce'd stylesheet): presentation attributes only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..svg import esc as _e
from ..svg import fit, nice_ticks, num, text_width

PALETTE = ("#3a7bd5", "#d64545", "#2f9e6e", "#e8912d", "#8e44ad", "#16a2b8", "#b08900", "#6b7785")


def _num(v: float) -> str:
    return num(v, digits=2)


def line_chart(
    chart_id: str,
    buckets: Sequence[str],
    series: Sequence[dict[str, Any]],
    *,
    value: str,
    integer: bool,
    fixed_max: float | None = None,
    width: int = 640,
    height: int = 240,
    empty: str = "无数据 (no data)",
) -> str:
    """An SVG line chart: x = ``buckets`` (labels, in order), one line per series
    (``{"key", "points": [{"bucket", value, ...}]}``), y from 0 to ``fixed_max`` or the
    ticks over the largest value (whole-number ticks with ``integer``)."""
    if not buckets or not series:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="{_e(chart_id)}" class="chart empty" viewBox="0 0 {width} 40" '
            f'width="{width}" height="40" role="img"><text x="8" y="24" font-size="13" '
            f'fill="#6b7785">{_e(empty)}</text></svg>'
        )
    vmax = max((float(p[value]) for s in series for p in s["points"]), default=0.0)
    ticks = nice_ticks(fixed_max if fixed_max is not None else vmax, integer=integer)
    top = ticks[-1]
    tick_w = max(text_width(_num(t), 11) for t in ticks)
    legend_rows = math.ceil(len(series) / 4)
    left, right, top_pad = 10 + tick_w + 6, 12, 12
    bottom = 30 + 18 * legend_rows
    pw, ph = width - left - right, height - top_pad - bottom
    xs = {b: left + (pw * (i + 0.5) / len(buckets)) for i, b in enumerate(buckets)}

    def y(v: float) -> float:
        return top_pad + ph - (ph * v / top if top else 0)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{_e(chart_id)}" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" font-family="sans-serif">'
    ]
    for t in ticks:
        yy = y(t)
        out.append(
            f'<line x1="{left:.1f}" x2="{width - right:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" '
            'stroke="#dde3ea" stroke-width="1"/>'
            f'<text class="tick" x="{left - 6:.1f}" y="{yy + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#6b7785">{_num(t)}</text>'
        )
    step = max(1, math.ceil(len(buckets) / max(1, pw // 80)))
    slot = pw / len(buckets) * step
    for i, b in enumerate(buckets):
        if i % step:
            continue
        label = fit(b, slot - 4, 11)
        out.append(
            f'<text class="xlabel" x="{xs[b]:.1f}" y="{top_pad + ph + 16:.1f}" font-size="11" '
            f'text-anchor="middle" fill="#6b7785">{_e(label)}</text>'
        )
    for k, s in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = [(xs[p["bucket"]], y(float(p[value])), p) for p in s["points"] if p["bucket"] in xs]
        if len(pts) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for px, py, p in pts:
            n = p.get("calls", p.get("count"))
            tip = f"{s['key']} {p['bucket']}: {_num(float(p[value]))}"
            if "calls" in p:
                tip += f" ({n} 通)"
            out.append(
                f'<circle class="pt" cx="{px:.1f}" cy="{py:.1f}" r="3.5" fill="{color}" '
                f'data-series="{_e(s["key"])}" data-bucket="{_e(p["bucket"])}" '
                f'data-value="{_e(_num(float(p[value])))}" data-n="{_e(n)}">'
                f"<title>{_e(tip)}</title></circle>"
            )
        col, row = k % 4, k // 4
        lx = left + col * (pw / 4)
        ly = top_pad + ph + 34 + row * 18
        out.append(
            f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="10" height="10" fill="{color}"/>'
            f'<text class="legend" x="{lx + 14:.1f}" y="{ly:.1f}" font-size="11" fill="#1f2933">'
            f"{_e(fit(str(s['key']), pw / 4 - 20, 11))}<title>{_e(s['key'])}</title></text>"
        )
    out.append("</svg>")
    return "".join(out)
