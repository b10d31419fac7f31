"""What the inline SVG charts share (the ``rescore`` report's bars, the dashboard's
history lines): axis ticks of 1, 2 or 5 × 10^k (whole numbers only for counts), number
labels, and text measured and cut so that no label leaves its chart's box.
"""

from __future__ import annotations

import html
import math
import unicodedata
from typing import Any


def esc(x: Any) -> str:
    """``x`` as text safe in an SVG/HTML attribute or element."""
    return html.escape(str(x), quote=True)


def text_width(text: str, size: float) -> float:
    """A generous estimate of ``text``'s width in pixels at font size ``size`` (wide and
    full-width characters one em, others 0.62 em): what labels are measured and cut by,
    so that no label leaves the chart's box."""
    w = 0.0
    for ch in text:
        w += size if unicodedata.east_asian_width(ch) in ("W", "F") else 0.62 * size
    return w


def fit(text: str, max_px: float, size: float) -> str:
    """``text`` cut (with "…") to at most ``max_px`` wide at font size ``size``."""
    if text_width(text, size) <= max_px:
        return text
    out = ""
    budget = max_px - size  # the ellipsis
    for ch in text:
        if text_width(out + ch, size) > budget:
            break
        out += ch
    return out + "…"


def nice_ticks(vmax: float, *, integer: bool, most: int = 5) -> list[float]:
    """Axis ticks from 0 to at least ``vmax``: steps of 1, 2 or 5 × 10^k, at most ``most``
    intervals; with ``integer`` (counts) whole numbers only (a chart of 3 calls: 0 1 2 3)."""
    vmax = max(vmax, 0.0)
    if vmax == 0:
        return [0.0, 1.0]
    raw = vmax / most
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, float(round(step)))
    n = math.ceil(vmax / step - 1e-9)
    return [round(k * step, 10) for k in range(n + 1)]


def num(v: float, digits: int = 4) -> str:
    """A tick or value label: whole numbers with thousands separators, others with at most
    ``digits`` decimals (no trailing zeros)."""
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.{digits}f}".rstrip("0").rstrip(".")
