"""The self-contained HTML report: inline SVG charts drawn here, no script, no network.

Charts: score distribution, grade counts, violations by rule, by agent, by day; with a
baseline pack, the diff (per rule: calls newly flagged / no longer flagged, each linked to
an anchor with the evidence utterances) and the grade changes.
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..rules import RulePack
from ..svg import esc as _e
from ..svg import fit, nice_ticks, text_width
from ..svg import num as _num
from .summary import RescoreSummary, aggregate, rule_info

MAX_LINKS = 60  # call links per rule cell; the rest are counted (diff.jsonl has them all)
MAX_EVIDENCE_CALLS = 400

_CSS = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC","PingFang SC","Microsoft YaHei",
"WenQuanYi Micro Hei",system-ui,sans-serif;margin:24px auto;max-width:1150px;color:#1f2933;
line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:32px;border-bottom:2px solid
#e4e7eb;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#616e7c;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#f5f7fa;border-radius:6px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#616e7c}
table{border-collapse:collapse;font-size:13px;margin:6px 0 12px;width:100%}
th,td{border-bottom:1px solid #e4e7eb;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f5f7fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:18px}
svg{max-width:100%;height:auto}svg text{font-family:inherit}
a{color:#1962d4;text-decoration:none}a:hover{text-decoration:underline}
.links a{margin-right:6px;font-size:12px}.more{color:#616e7c;font-size:12px}
mark{background:#ffe08a;padding:0 1px}.ev{border-left:3px solid #e4e7eb;padding-left:10px;
margin:6px 0 14px}.ev.new{border-color:#d64545}.ev.baseline{border-color:#3ebd93}
.role{display:inline-block;min-width:64px;font-weight:600}.t{color:#616e7c;font-size:12px}
.bad{color:#d64545}.good{color:#199473}
"""

_PALETTE = ("#1962d4", "#d64545", "#f0b429", "#3ebd93", "#9446ed", "#616e7c")
_SIN40 = math.sin(math.radians(40))
_COS40 = math.cos(math.radians(40))


def anchor(call_id: str) -> str:
    return "call-" + re.sub(r"[^A-Za-z0-9_-]", lambda m: f"_{ord(m.group()):x}", call_id)


def _label(x: float, y: float, text: str, size: int, max_px: float, extra: str = "") -> str:
    """A text element cut to ``max_px``, the whole text in its tooltip when cut."""
    shown = fit(text, max_px, size)
    tip = f"<title>{_e(text)}</title>" if shown != text else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}"{extra}>{tip}{_e(shown)}</text>'


def vbar_chart(
    labels: list[str],
    values: list[float],
    *,
    title: str,
    color: str = "#1962d4",
    integer: bool = True,
    line: list[float | None] | None = None,
    line_label: str = "",
    line_max: float = 100.0,
    width: int = 520,
    height: int = 260,
) -> str:
    """Vertical bars (with an optional line on a 0..line_max right axis). ``integer``: the
    values are counts, the axis has whole-number ticks only. Everything is drawn inside the
    ``width`` × ``height`` box: labels too long for their room are cut (whole in a tooltip),
    the margins grow with the tick labels, bar values that do not fit are left to the
    bar's tooltip."""
    n = max(len(values), 1)
    # a rate whose values are all whole numbers gets whole ticks too
    integer = integer or all(float(v).is_integer() for v in values)
    ticks = nice_ticks(max(values, default=0), integer=integer)
    vmax = ticks[-1]
    tick_w = max(text_width(_num(t), 10) for t in ticks)
    legend = f"— {line_label}" if line else ""
    legend_w = text_width(legend, 11) if line else 0.0
    right = int(text_width(_num(line_max), 10) + 10) if line else 12
    left = int(max(44.0, tick_w + 12))
    pw = width - left - right
    step = pw / n
    rotate = n > 12
    every = max(1, math.ceil(n / 24))
    # room for the category labels: along the slot, or slanted at 40° below the axis
    max_lab = 100.0 if rotate else max(step - 4, 6.0)
    lab_w = min(max((text_width(x, 10) for x in labels), default=0.0), max_lab)
    if rotate:
        bottom = int(20 + lab_w * _SIN40 + 10)
        # the first slanted label reaches left of its bar
        left = int(max(left, lab_w * _COS40 - step / 2 + 6))
        pw = width - left - right
        step = pw / n
    else:
        bottom = 30
    top = 38
    ph = height - top - bottom
    bw = min(max(step * 0.72, 1.0), 64.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
        _label(left, 16, title, 13, width - left - legend_w - 16, ' font-weight="600"'),
    ]
    for t in ticks:
        y = top + ph - ph * t / vmax
        out.append(
            f'<line x1="{left}" x2="{left + pw:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'class="tick">{_num(t)}</text>'
        )
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        x = left + i * step + (step - bw) / 2
        h = ph * v / vmax
        out.append(
            f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{_e(lab)}: {_num(v)}</title></rect>'
        )
        if not rotate and v and text_width(_num(v), 10) <= step - 2:
            out.append(
                f'<text x="{x + bw / 2:.1f}" y="{top + ph - h - 3:.1f}" font-size="10" '
                f'text-anchor="middle">{_num(v)}</text>'
            )
        if i % every == 0:
            cx, cy = x + bw / 2, top + ph + 14
            if rotate:
                extra = f' text-anchor="end" transform="rotate(-40 {cx:.1f} {cy:.1f})"'
            else:
                extra = ' text-anchor="middle"'
            out.append(_label(cx, cy, lab, 10, max_lab, extra))
    if line:
        pts = [
            f"{left + i * step + step / 2:.1f},{top + ph - ph * min(v, line_max) / line_max:.1f}"
            for i, v in enumerate(line)
            if v is not None
        ]
        if pts:
            out.append(
                f'<polyline points="{" ".join(pts)}" fill="none" stroke="#d64545" '
                'stroke-width="2"/>'
            )
            for p in pts:
                x_, y_ = p.split(",")
                out.append(f'<circle cx="{x_}" cy="{y_}" r="2.5" fill="#d64545"/>')
        for k in range(5):
            y = top + ph - ph * k / 4
            out.append(
                f'<text x="{left + pw + 4:.1f}" y="{y + 4:.1f}" font-size="10" fill="#d64545">'
                f"{line_max * k / 4:.0f}</text>"
            )
        out.append(
            f'<text x="{width - 4}" y="16" font-size="11" text-anchor="end" fill="#d64545">'
            f"{_e(legend)}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def hbar_chart(
    labels: list[str],
    values: list[float],
    *,
    title: str,
    color: str = "#d64545",
    width: int = 1100,
    label_width: int = 520,
) -> str:
    """Horizontal bars, one row per label (rules: id + Chinese description). Labels too
    long for ``label_width`` are cut (whole in a tooltip); the bars leave room for the
    widest value after them."""
    row = 22
    top = 28
    height = top + row * max(len(values), 1) + 10
    vmax = max(values, default=0) or 1
    value_w = max((text_width(_num(v), 11) for v in values), default=0.0)
    pw = width - label_width - value_w - 12
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(title)}">',
        _label(0, 16, title, 13, width - 4, ' font-weight="600"'),
    ]
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = top + i * row
        w = pw * v / vmax
        out.append(
            _label(label_width - 8, y + 15, lab, 12, label_width - 12, ' text-anchor="end"')
            + f'<rect x="{label_width}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" '
            f'fill="{color}"><title>{_e(lab)}: {_num(v)}</title></rect>'
            f'<text x="{label_width + w + 4:.1f}" y="{y + 15}" font-size="11">{_num(v)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def render_report(
    rows: list[dict[str, Any]],
    pack: RulePack,
    base: RulePack | None,
    diff: dict[str, Any],
    summary: RescoreSummary,
) -> str:
    agg = aggregate(rows)
    rules = rule_info(pack)
    parts: list[str] = [
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>质检重评报告 · Re-score report · {_e(pack.name)} {_e(pack.version)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>质检重评报告 · Re-score report</h1>",
        f'<p class="meta">rule pack <b>{_e(pack.name)} {_e(pack.version)}</b>'
        + (f" · baseline <b>{_e(base.name)} {_e(base.version)}</b>" if base else "")
        + f" · {_e(pack.description)}</p>",
    ]
    n_err = len(agg["errors"])
    cards = [
        ("calls", len(rows)),
        ("scored", agg["ok"]),
        ("mean score", f"{agg['mean']:.1f}"),
        ("failed (critical)", agg["failed"]),
        ("need review (uncertain verdicts)", agg["review"]),
        ("unreadable / errors", n_err),
    ]
    if diff:
        cards.append(("changed vs baseline", len(diff["calls"])))
    parts.append(
        '<div class="cards">'
        + "".join(f"<div class=card><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
        + "</div>"
    )

    # -- distribution and grades
    grade_order = [g.name for g in pack.settings.grades]
    grade_order += [g for g in agg["grades"] if g not in grade_order]
    parts.append("<h2>分数分布与等级 · Score distribution and grades</h2><div class=grid>")
    parts.append(
        vbar_chart(
            [f"{10 * i}–{10 * i + 9}" if i < 9 else "90–100" for i in range(10)],
            agg["bins"],
            title="Score distribution (calls per score band)",
        )
    )
    parts.append(
        vbar_chart(
            grade_order,
            [agg["grades"].get(g, 0) for g in grade_order],
            title="Grades (calls)",
            color="#3ebd93",
        )
    )
    parts.append("</div>")

    # -- by rule
    ordered = [rid for rid in rules if agg["by_rule"].get(rid)]
    ordered.sort(key=lambda r: -agg["by_rule"][r])
    parts.append("<h2>违规规则 · Violations by rule</h2>")
    if ordered:
        parts.append(
            hbar_chart(
                [f"{rid} {rules[rid]['description']}" for rid in ordered],
                [agg["by_rule"][rid] for rid in ordered],
                title="Calls failing each rule",
            )
        )
    else:
        parts.append("<p>No rule failed.</p>")
    parts.append(
        "<table><tr><th>rule</th><th>description</th><th>severity</th><th>weight</th>"
        "<th>calls failed</th><th>share</th><th>calls uncertain (not counted)</th></tr>"
    )
    for rid, info in rules.items():
        c = agg["by_rule"].get(rid, 0)
        share = c / agg["ok"] if agg["ok"] else 0
        parts.append(
            f"<tr><td>{_e(rid)}</td><td>{_e(info['description'])}</td>"
            f"<td>{_e(info['severity'])}</td><td class=n>{info['weight']:g}</td>"
            f"<td class=n>{c}</td><td class=n>{share:.1%}</td>"
            f"<td class=n>{agg['uncertain_by_rule'].get(rid, 0)}</td></tr>"
        )
    parts.append("</table>")

    # -- by agent
    agents = sorted(agg["agents"].items(), key=lambda kv: (-kv[1]["calls"], kv[0]))
    parts.append("<h2>按坐席 · By agent</h2>")
    if agents:
        shown = agents[:40]
        parts.append(
            vbar_chart(
                [a for a, _ in shown],
                [round(d["violations"] / d["calls"], 2) for _, d in shown],
                title="Violations per call, by agent (bars); mean score (line)",
                color="#f0b429",
                integer=False,
                line=[d["score_sum"] / d["calls"] for _, d in shown],
                line_label="mean score",
                width=1100,
                height=300,
            )
        )
        parts.append(
            "<table><tr><th>agent</th><th>calls</th><th>mean score</th><th>failed</th>"
            "<th>need review</th><th>violations</th><th>most failed rule</th></tr>"
        )
        for a, d in agents[:200]:
            top = d["rules"].most_common(1)
            parts.append(
                f"<tr><td>{_e(a)}</td><td class=n>{d['calls']}</td>"
                f"<td class=n>{d['score_sum'] / d['calls']:.1f}</td><td class=n>{d['failed']}</td>"
                f"<td class=n>{d['review']}</td><td class=n>{d['violations']}</td>"
                f"<td>{_e(top[0][0] + ' (' + str(top[0][1]) + ')') if top else ''}</td></tr>"
            )
        parts.append("</table>")
        if len(agents) > 200:
            parts.append(f'<p class="more">… and {len(agents) - 200} more agents</p>')

    # -- by day
    days = agg["days"]
    parts.append("<h2>按日期 · By day</h2>")
    if days:
        parts.append(
            vbar_chart(
                list(days),
                [round(d["violations"] / d["calls"], 2) for d in days.values()],
                title="Violations per call, by day (bars); mean score (line)",
                color="#9446ed",
                integer=False,
                line=[d["score_sum"] / d["calls"] for d in days.values()],
                line_label="mean score",
                width=1100,
                height=300,
            )
        )
        parts.append(
            "<table><tr><th>day</th><th>calls</th><th>mean score</th><th>failed</th>"
            "<th>violations</th></tr>"
            + "".join(
                f"<tr><td>{_e(k)}</td><td class=n>{d['calls']}</td>"
                f"<td class=n>{d['score_sum'] / d['calls']:.1f}</td>"
                f"<td class=n>{d['failed']}</td><td class=n>{d['violations']}</td></tr>"
                for k, d in list(days.items())[-120:]
            )
            + "</table>"
        )

    if diff:
        parts.append(_diff_html(diff))

    if agg["errors"]:
        parts.append(
            "<h2>无法处理的通话 · Unreadable recordings and errors</h2>"
            "<table><tr><th>call</th><th>error</th></tr>"
            + "".join(
                f"<tr><td>{_e(r['call_id'])}</td><td>{_e(r['error'])}</td></tr>"
                for r in agg["errors"][:500]
            )
            + "</table>"
        )
    parts.append(
        f'<p class="meta">run {_e(summary.run_id)}'
        + (f" · baseline run {_e(summary.baseline_run_id)}" if summary.baseline_run_id else "")
        + " · generated by qa-pipeline rescore</p></body></html>"
    )
    return "\n".join(parts)


def _links(ids: list[str]) -> str:
    shown = "".join(f'<a href="#{anchor(c)}">{_e(c)}</a>' for c in ids[:MAX_LINKS])
    more = f'<span class="more">… +{len(ids) - MAX_LINKS}</span>' if len(ids) > MAX_LINKS else ""
    return f'<div class="links">{shown}{more}</div>'


def _diff_html(diff: dict[str, Any]) -> str:
    p: list[str] = [
        "<h2>规则变更影响 · Changes against the baseline</h2>",
        f'<p class="meta">baseline <b>{_e(diff["baseline"])}</b> → new <b>{_e(diff["new"])}</b>'
        f" · {diff['compared']} calls compared · {len(diff['calls'])} changed</p>",
    ]
    changed = [r for r in diff["rules"] if r["newly_flagged"] or r["no_longer_flagged"]]
    if any(r["newly_flagged"] for r in changed):
        flagged = [r for r in changed if r["newly_flagged"]]
        p.append(
            hbar_chart(
                [f"{r['rule_id']} {r['description']}" for r in flagged],
                [len(r["newly_flagged"]) for r in flagged],
                title="Calls newly flagged, per rule",
            )
        )
    if any(r["no_longer_flagged"] for r in changed):
        cleared = [r for r in changed if r["no_longer_flagged"]]
        p.append(
            hbar_chart(
                [f"{r['rule_id']} {r['description']}" for r in cleared],
                [len(r["no_longer_flagged"]) for r in cleared],
                title="Calls no longer flagged, per rule",
                color="#3ebd93",
            )
        )
    p.append(
        "<table><tr><th>rule</th><th>description</th><th>newly flagged</th>"
        "<th>no longer flagged</th></tr>"
    )
    if not changed:
        p.append("<tr><td colspan=4>No rule flags a different set of calls.</td></tr>")
    for r in changed:
        tag = "" if r["in_baseline"] else " (new rule)"
        tag = tag or ("" if r["in_new"] else " (removed)")
        tag += " (changed)" if r["changed_definition"] else ""
        p.append(
            f"<tr><td>{_e(r['rule_id'])}{_e(tag)}</td><td>{_e(r['description'])}</td>"
            f"<td><b class=bad>{len(r['newly_flagged'])}</b>{_links(r['newly_flagged'])}</td>"
            f"<td><b class=good>{len(r['no_longer_flagged'])}</b>"
            f"{_links(r['no_longer_flagged'])}</td></tr>"
        )
    p.append("</table>")
    unsure = [r for r in diff["rules"] if r["newly_uncertain"] or r["no_longer_uncertain"]]
    if unsure:
        p.append(
            "<h3>待复核变化 · Uncertain verdicts (not counted in scores)</h3>"
            "<table><tr><th>rule</th><th>description</th><th>newly uncertain</th>"
            "<th>no longer uncertain</th></tr>"
        )
        for r in unsure:
            p.append(
                f"<tr><td>{_e(r['rule_id'])}</td><td>{_e(r['description'])}</td>"
                f"<td><b>{len(r['newly_uncertain'])}</b>{_links(r['newly_uncertain'])}</td>"
                f"<td><b>{len(r['no_longer_uncertain'])}</b>"
                f"{_links(r['no_longer_uncertain'])}</td></tr>"
            )
        p.append("</table>")

    p.append("<h3>等级变化 · Grade changes</h3>")
    if diff["grade_moves"]:
        p.append(
            "<table><tr><th>baseline grade</th><th>new grade</th><th>calls</th></tr>"
            + "".join(
                f"<tr><td>{_e(a)}</td><td>{_e(b)}</td><td class=n>{n}</td></tr>"
                for (a, b), n in diff["grade_moves"]
            )
            + "</table>"
        )
        moved = [c for c in diff["calls"] if c["old_grade"] != c["new_grade"]]
        p.append(
            "<table><tr><th>call</th><th>agent</th><th>score</th><th>grade</th></tr>"
            + "".join(
                f'<tr><td><a href="#{anchor(c["call_id"])}">{_e(c["call_id"])}</a></td>'
                f"<td>{_e(c['agent_id'] or '')}</td>"
                f"<td>{c['old_score']:g} → {c['new_score']:g}</td>"
                f"<td>{_e(c['old_grade'])} → {_e(c['new_grade'])}</td></tr>"
                for c in moved[:MAX_EVIDENCE_CALLS]
            )
            + "</table>"
        )
    else:
        p.append("<p>No call changes grade.</p>")

    p.append("<h3>证据 · Evidence for each changed call</h3>")
    ev = diff["evidence"]
    windows = {r["rule_id"]: r.get("window") for r in diff["rules"]}
    calls = [
        c
        for c in diff["calls"]
        if c["newly_flagged"] or c["no_longer_flagged"] or c["newly_uncertain"]
    ]
    for c in calls[:MAX_EVIDENCE_CALLS]:
        cid = c["call_id"]
        p.append(
            f'<section id="{anchor(cid)}"><h3>{_e(cid)} '
            f'<span class="t">agent {_e(c["agent_id"] or "?")} · score {c["old_score"]:g} → '
            f"{c['new_score']:g} · {_e(c['old_grade'])} → {_e(c['new_grade'])}</span></h3>"
        )
        for rid in c["newly_uncertain"]:
            why = ev.get((cid, rid), {}).get("uncertain", "")
            p.append(
                f'<div class="ev new"><b>{_e(rid)}</b> — newly uncertain (not counted; '
                f"needs review)<div>{_e(why)}</div></div>"
            )
        for rid in c["newly_flagged"] + c["no_longer_flagged"]:
            e = ev.get((cid, rid), {"side": "new", "findings": []})
            side = e["side"]
            label = "newly flagged" if side == "new" else "no longer flagged (baseline evidence)"
            p.append(f'<div class="ev {side}"><b>{_e(rid)}</b> — {_e(label)}')
            if not e["findings"]:
                p.append(
                    '<div class="t">(no finding recorded: the rule failed on the whole call)</div>'
                )
            for f in e["findings"]:
                p.append(f"<div>{_e(f.get('message', ''))}</div>")
                window = windows.get(rid)
                if window and f.get("evidence"):
                    p.append(f'<div class="t window">window: {_e(window)} — the turns in it:</div>')
                for u in f.get("evidence") or []:
                    p.append(_evidence_line(u))
            p.append("</div>")
        p.append("</section>")
    if len(calls) > MAX_EVIDENCE_CALLS:
        p.append(
            f'<p class="more">… {len(calls) - MAX_EVIDENCE_CALLS} more changed calls: '
            "see diff.jsonl</p>"
        )
    return "".join(p)


def _evidence_line(u: dict[str, Any]) -> str:
    """One evidence item: a turn (role, time, text with the match marked) or, without a
    turn, the span of the call it is about."""
    when = f"{float(u.get('start') or 0):.1f}–{float(u.get('end') or 0):.1f} s"
    if u.get("utterance_index") is None and not u.get("text"):
        return f'<div class="turn span"><span class="t">{when}</span> (no turn in this span)</div>'
    return (
        f'<div class="turn"><span class="role">{_e(u.get("role") or "")}</span> '
        f'<span class="t">{when}</span> '
        f"{_highlight(u.get('text') or '', u.get('matched') or '')}"
        + (f' <span class="t">matched: {_e(u["matched"])}</span>' if u.get("matched") else "")
        + "</div>"
    )


def _highlight(text: str, matched: str) -> str:
    if matched and matched in text:
        i = text.index(matched)
        return _e(text[:i]) + "<mark>" + _e(matched) + "</mark>" + _e(text[i + len(matched) :])
    return _e(text)
