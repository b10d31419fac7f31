"""The history page: calls kept in the store, a stored call, trends, an agent's page.

One self-contained HTML document (inline CSS and vanilla JS under the response's CSP
nonce, no data in it) served at ``/history`` (the call list with its filters, exports and
the trends), ``/history/calls/<id>`` (a stored call; ``#u<idx>`` scrolls to an utterance)
and ``/history/agents/<id>`` (an agent's calls, score trend, top violations, reviews). It
reads ``/api/history/...`` with the session cookie of the live page's login (a page
without one links to the login). Text from the API is inserted with ``textContent``; the
charts are the server's SVG (:mod:`.charts`, values escaped there).
"""

from __future__ import annotations

import html

_PAGE = r"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ · 历史</title>
<style nonce="__NONCE__">
:root { --bg:#f4f6f9; --card:#fff; --ink:#1f2933; --mute:#6b7785; --line:#dde3ea;
  --crit:#d64545; --major:#e8912d; --minor:#3a7bd5; --ok:#2f9e6e; --agent:#eef4ff; --cust:#f3f7ee; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","PingFang SC",
    "Microsoft YaHei",sans-serif; font-size:14px; }
header { display:flex; align-items:center; gap:12px; padding:10px 18px; background:#243447; color:#fff; }
header h1 { font-size:18px; margin:0; font-weight:600; flex:1; }
header a { background:#3b4f66; color:#fff; border-radius:4px; padding:5px 10px; text-decoration:none; }
main { padding:12px; display:grid; gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
.card h2 { font-size:15px; margin:0 0 8px; }
form#f { display:flex; flex-wrap:wrap; gap:8px; align-items:end; }
form#f label { display:flex; flex-direction:column; font-size:12px; color:var(--mute); gap:2px; }
form#f input, form#f select { font:inherit; padding:3px 5px; width:130px; }
form#f input.num { width:70px; }
.btn { font:inherit; padding:4px 12px; border:1px solid var(--line); background:#fff; border-radius:4px;
  cursor:pointer; color:var(--ink); text-decoration:none; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); font-size:13px; }
th { color:var(--mute); font-weight:normal; }
.score.bad { color:var(--crit); font-weight:600; }
.badge { display:inline-block; padding:1px 6px; border-radius:8px; font-size:12px; color:#fff; background:var(--mute); }
.badge.reviewed { background:var(--ok); } .badge.review { background:#b08900; }
.badge.incomplete { background:#8a6d3b; } .badge.critical { background:var(--crit); }
.badge.major { background:var(--major); } .badge.minor { background:var(--minor); }
.pager { display:flex; gap:10px; align-items:center; margin-top:8px; }
.row2 { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.utt { border-radius:6px; padding:6px 8px; border:1px solid var(--line); margin:4px 0; max-width:75%; }
.utt.agent { background:var(--agent); } .utt.customer { background:var(--cust); margin-left:25%; }
.utt.hit { border:2px solid var(--major); } .utt.target { outline:3px solid var(--minor); }
.utt .t { font-size:11px; color:var(--mute); }
.finding { margin:6px 0; border-left:4px solid var(--major); background:#fff8ef; padding:4px 8px; }
.finding.critical { border-color:var(--crit); background:#fff1f1; }
.finding.minor { border-color:var(--minor); background:#f1f6ff; }
tr.verdict.failed td.v { color:var(--crit); } tr.verdict.uncertain td.v { color:#b08900; }
.muted { color:var(--mute); } .err { color:var(--crit); }
svg.chart { max-width:100%; height:auto; }
.play audio { height:28px; max-width:260px; vertical-align:middle; }
[hidden] { display:none !important; }
</style>
</head>
<body>
<header>
  <h1>__TITLE__ · 通话历史</h1>
  <span id="who"></span>
  <a href="/history">历史</a>
  <a href="/">实时</a>
</header>
<main>
<div id="need-login" class="card" hidden>请先 <a href="/">登录</a> (log in first).</div>
<div id="error" class="card err" hidden></div>

<section id="list-view" hidden>
  <div class="card">
    <h2>筛选 · Filters</h2>
    <form id="f">
      <label>坐席 agent<input name="agent"></label>
      <label>班组 team<input name="team"></label>
      <label>开始 since<input name="since" type="date"></label>
      <label>结束 until<input name="until" type="date"></label>
      <label>规则 rule<input name="rule"></label>
      <label>判定 verdict<select name="verdict"><option value="">—</option>
        <option value="failed">failed 违规</option><option value="uncertain">uncertain 待定</option>
        <option value="passed">passed</option><option value="not_applicable">not_applicable</option></select></label>
      <label>分数≥<input class="num" name="score_min" type="number" step="any"></label>
      <label>分数≤<input class="num" name="score_max" type="number" step="any"></label>
      <label>方向 direction<select name="direction"><option value="">—</option>
        <option value="inbound">inbound 呼入</option><option value="outbound">outbound 呼出</option></select></label>
      <label>全文检索 search<input id="q" name="q" placeholder="投诉 退款 …"></label>
      <button class="btn" type="submit">查询</button>
      <a class="btn" id="export-csv" href="/api/history/export.csv">导出 CSV</a>
      <a class="btn" id="export-xlsx" href="/api/history/export.xlsx">导出 XLSX</a>
    </form>
  </div>
  <div class="card" id="search-card" hidden>
    <h2>检索结果 · Search <span id="search-total" class="muted"></span></h2>
    <table><thead><tr><th>开始</th><th>通话</th><th>坐席</th><th>班组</th><th>得分</th><th>匹配语句</th></tr></thead>
      <tbody id="search-results"></tbody></table>
  </div>
  <div class="card">
    <h2>通话 · Calls <span id="total" class="muted"></span></h2>
    <table><thead><tr><th>开始</th><th>通话</th><th>坐席</th><th>班组</th><th>方向</th>
      <th>得分</th><th>等级</th><th>违规规则</th><th></th></tr></thead><tbody id="calls"></tbody></table>
    <div class="pager"><button class="btn" id="prev">上一页</button><span id="pageinfo"></span>
      <button class="btn" id="next">下一页</button></div>
  </div>
  <div class="card">
    <h2>趋势 · Trends</h2>
    <label>按 <select id="group"><option value="agent">坐席 agent</option><option value="team">班组 team</option></select></label>
    <label>周期 <select id="bucket"><option value="day">日 day</option><option value="week">周 week</option></select></label>
    <div class="row2">
      <div><h2>得分趋势 · Score</h2><div id="score-trend"></div></div>
      <div><h2>违规趋势 · Violations per rule</h2><div id="violation-trend"></div></div>
    </div>
  </div>
</section>

<section id="call-view" hidden>
  <div class="card">
    <h2 id="call-title"></h2>
    <div id="call-head"></div>
  </div>
  <div class="row2">
    <div class="card"><h2>转写 · Transcript</h2><div id="transcript"></div></div>
    <div class="card"><h2>判定 · Verdicts</h2>
      <table><thead><tr><th>规则</th><th>判定</th><th>严重度</th><th>扣分</th></tr></thead>
        <tbody id="verdicts"></tbody></table>
      <h2>发现 · Findings</h2><div id="findings"></div></div>
  </div>
</section>

<section id="agent-view" hidden>
  <div class="card">
    <h2 id="agent-title"></h2>
    <div id="agent-head"></div>
    <div id="reviews"></div>
  </div>
  <div class="row2">
    <div class="card"><h2>得分趋势 · Score</h2><div id="agent-trend"></div></div>
    <div class="card"><h2>主要违规 · Top violations</h2><ol id="top-violations"></ol></div>
  </div>
  <div class="card"><h2>通话 · Calls</h2>
    <table><thead><tr><th>开始</th><th>通话</th><th>坐席</th><th>班组</th><th>方向</th>
      <th>得分</th><th>等级</th><th>违规规则</th><th></th></tr></thead><tbody id="agent-calls"></tbody></table>
  </div>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
const $ = (s) => document.querySelector(s);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
async function api(path) {
  const r = await fetch(path, {credentials: "same-origin"});
  if (r.status === 401) { $("#need-login").hidden = false; throw new Error("login"); }
  const body = await r.json();
  if (!r.ok) { throw new Error(body.detail || body.error || r.status); }
  return body;
}
function showError(e) {
  if (e.message === "login") return;
  const box = $("#error"); box.hidden = false; box.textContent = "出错: " + e.message;
}
// dates, days and weeks are the viewer's: every query says its offset (minutes east of UTC)
const TZ = String(-new Date().getTimezoneOffset());
function fmtTime(c) {
  if (c.started_epoch === null || c.started_epoch === undefined) return c.started_at || "—";
  const t = new Date(c.started_epoch * 1000);
  const p2 = (n) => String(n).padStart(2, "0");
  return t.getFullYear() + "-" + p2(t.getMonth() + 1) + "-" + p2(t.getDate()) + " " +
    p2(t.getHours()) + ":" + p2(t.getMinutes());
}
function callRow(c) {
  const score = c.score === null ? "—" : c.score;
  const tr = el("tr", {class: "hcall", "data-call-id": c.call_id});
  const marks = el("td");
  if (c.reviewed) marks.append(el("span", {class: "badge reviewed"}, "已复核"), " ");
  else if (c.review) marks.append(el("span", {class: "badge review"}, "待复核"), " ");
  if (c.complete === false) marks.append(el("span", {class: "badge incomplete"}, "不完整"));
  if (c.status === null) marks.append(el("span", {class: "badge"}, "未评分"));
  tr.append(
    el("td", {}, fmtTime(c)),
    el("td", {}, el("a", {href: "/history/calls/" + encodeURIComponent(c.call_id)}, c.call_id)),
    el("td", {}, c.agent_id ? el("a", {class: "agent-link",
      href: "/history/agents/" + encodeURIComponent(c.agent_id)}, c.agent_id) : "—"),
    el("td", {}, c.team || "—"), el("td", {}, c.direction || "—"),
    el("td", {class: "score" + (c.failed ? " bad" : "")}, score),
    el("td", {}, c.grade || "—"), el("td", {}, (c.failed_rules || []).join(" ")), marks);
  return tr;
}
function setSvg(box, svg) {  // the server's chart: its values are escaped there
  const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
  box.replaceChildren(document.importNode(doc.documentElement, true));
}
// ---- the list
let page = 1;
function filters() {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData($("#f")).entries()) if (v && k !== "q") p.set(k, v);
  p.set("tz", TZ);
  return p;
}
async function loadCalls() {
  const p = filters(); p.set("page", page);
  const data = await api("/api/history/calls?" + p);
  $("#calls").replaceChildren(...data.calls.map(callRow));
  $("#total").textContent = "共 " + data.total + " 通";
  $("#pageinfo").textContent = "第 " + data.page + " / " + data.pages + " 页";
  $("#prev").disabled = data.page <= 1; $("#next").disabled = data.page >= data.pages;
  const f = filters().toString();
  $("#export-csv").href = "/api/history/export.csv" + (f ? "?" + f : "");
  $("#export-xlsx").href = "/api/history/export.xlsx" + (f ? "?" + f : "");
}
async function loadSearch() {
  const terms = $("#q").value.trim();
  $("#search-card").hidden = !terms;
  if (!terms) { $("#search-results").replaceChildren(); return; }
  const p = filters(); p.set("q", terms);
  const data = await api("/api/history/search?" + p);
  $("#search-total").textContent = "共 " + data.total + " 通";
  $("#search-results").replaceChildren(...data.hits.map((h) => el("tr",
    {class: "shit", "data-call-id": h.call_id, "data-utt-index": h.utterance_index},
    el("td", {}, fmtTime(h)),
    el("td", {}, el("a", {href: h.link}, h.call_id)),
    el("td", {}, h.agent_id || "—"), el("td", {}, h.team || "—"),
    el("td", {}, h.score === null ? "—" : h.score),
    el("td", {}, el("a", {class: "snippet", href: h.link}, h.snippet || ("第 " + h.utterance_index + " 句"))))));
  document.body.dataset.searched = terms;
}
async function loadTrends() {
  const p = filters();
  const q = new URLSearchParams();
  for (const k of ["agent", "team", "since", "until", "tz"]) if (p.get(k)) q.set(k, p.get(k));
  q.set("group", $("#group").value); q.set("bucket", $("#bucket").value);
  const data = await api("/api/history/trends?" + q);
  setSvg($("#score-trend"), data.scores.svg);
  setSvg($("#violation-trend"), data.violations.svg);
}
async function listView() {
  $("#list-view").hidden = false;
  $("#f").addEventListener("submit", (ev) => { ev.preventDefault(); page = 1;
    loadSearch().catch(showError); loadCalls().catch(showError); loadTrends().catch(showError); });
  $("#prev").addEventListener("click", () => { page -= 1; loadCalls().catch(showError); });
  $("#next").addEventListener("click", () => { page += 1; loadCalls().catch(showError); });
  $("#group").addEventListener("change", () => loadTrends().catch(showError));
  $("#bucket").addEventListener("change", () => loadTrends().catch(showError));
  await loadSearch(); await loadCalls(); await loadTrends();
  document.body.dataset.ready = "list";
}
// ---- a call
async function callView(id) {
  $("#call-view").hidden = false;
  const d = await api("/api/history/calls/" + encodeURIComponent(id));
  const c = d.call;
  $("#call-title").textContent = "通话 " + c.call_id;
  const head = $("#call-head");
  head.append(el("span", {}, fmtTime(c) + " · 坐席 "),
    c.agent_id ? el("a", {href: "/history/agents/" + encodeURIComponent(c.agent_id)}, c.agent_id) : "—",
    el("span", {}, " · 班组 " + (c.team || "—") + " · " + (c.direction || "") + " · 得分 "),
    el("b", {id: "call-score"}, c.score === null ? "—" : String(c.score)),
    el("span", {}, " " + (c.grade || "")), " ");
  if (c.reviewed) head.append(el("span", {class: "badge reviewed", id: "reviewed"}, "已复核 (reviewed)"));
  if (d.review_versions) head.append(" ", el("span", {class: "muted"}, "复核版本 " + d.review_versions));
  if (c.complete === false) head.append(" ", el("span", {class: "badge incomplete"}, "不完整"));
  const hits = new Map();
  for (const f of d.findings) for (const e of f.evidence)
    if (e.utterance_index !== null) hits.set(e.utterance_index, f.severity);
  $("#transcript").replaceChildren(...d.utterances.map((u) => {
    const role = u.role === "agent" ? "agent" : "customer";
    return el("div", {id: "u" + u.index, class: "utt " + role + (hits.has(u.index) ? " hit" : ""),
        "data-utt-index": u.index},
      el("div", {class: "t"}, (u.role === "agent" ? "坐席" : "客户") + " " + Number(u.start).toFixed(1) + "s"),
      el("div", {class: "tx"}, d.text ? u.text : "(无权查看文本)"));
  }));
  $("#verdicts").replaceChildren(...d.verdicts.map((v) => el("tr",
    {class: "verdict " + v.verdict, "data-rule": v.rule_id, "data-verdict": v.verdict},
    el("td", {}, v.rule_id), el("td", {class: "v"}, v.verdict), el("td", {}, v.severity || ""),
    el("td", {}, v.verdict === "uncertain" ? "(" + v.pending_deduction + ")" : v.deduction))));
  $("#findings").replaceChildren(...d.findings.map((f) => {
    const box = el("div", {class: "finding " + (f.severity || ""), "data-rule": f.rule_id},
      el("b", {}, f.rule_id), " ", el("span", {class: "badge " + (f.severity || "")}, f.severity || ""),
      " ", f.message || "");
    for (const e of f.evidence) {
      if (e.utterance_index === null) continue;
      const line = el("div", {class: "ev", "data-utt-index": e.utterance_index},
        el("a", {href: "#u" + e.utterance_index}, "第 " + e.utterance_index + " 句"), " ", e.text || "");
      if (d.audio && typeof e.start === "number" && typeof e.end === "number" && e.end > e.start) {
        // ▶ the evidence span from the call's redacted recording (the server cuts the clip)
        const a = document.createElement("audio"); a.controls = true; a.preload = "none";
        a.src = "/api/calls/" + encodeURIComponent(c.call_id) + "/audio?start=" +
          e.start.toFixed(2) + "&end=" + e.end.toFixed(2);
        line.append(" ", el("span", {class: "play", title: "播放证据"}, "▶ ", a));
      }
      box.append(line);
    }
    return box;
  }));
  const target = location.hash && document.getElementById(location.hash.slice(1));
  if (target) { target.classList.add("target"); target.scrollIntoView(); }
  document.body.dataset.ready = "call";
}
// ---- an agent
async function agentView(id) {
  $("#agent-view").hidden = false;
  const d = await api("/api/history/agents/" + encodeURIComponent(id) + "?tz=" + TZ);
  $("#agent-title").textContent = "坐席 " + d.agent_id;
  $("#agent-head").append(el("span", {}, "平均分 "),
    el("b", {id: "agent-mean"}, d.mean_score === null ? "—" : String(d.mean_score)),
    el("span", {class: "muted"}, " (" + d.scored_calls + " 通计分; 共 " + d.calls.total + " 通)"));
  const r = d.reviews;
  $("#reviews").append(el("span", {id: "review-counts", "data-reviews": r.reviews,
      "data-appeals": r.appeals, "data-queued": r.queued},
    "复核 " + r.reviews + " · 申诉 " + r.appeals + " · 待复核 " + r.queued));
  setSvg($("#agent-trend"), d.trend.svg);
  $("#top-violations").replaceChildren(...d.top_violations.map((v) =>
    el("li", {class: "topv", "data-rule": v.rule_id, "data-count": v.count},
      el("a", {href: "/history?rule=" + encodeURIComponent(v.rule_id)}, v.rule_id), " × " + v.count)));
  $("#agent-calls").replaceChildren(...d.calls.calls.map(callRow));
  document.body.dataset.ready = "agent";
}
async function main() {
  try {
    const me = await api("/api/me");
    $("#who").textContent = me.name + " (" + me.role + ")";
    const path = location.pathname;
    if (path.startsWith("/history/calls/")) await callView(decodeURIComponent(path.slice(15)));
    else if (path.startsWith("/history/agents/")) await agentView(decodeURIComponent(path.slice(16)));
    else {
      const p = new URLSearchParams(location.search);
      for (const [k, v] of p.entries()) { const i = $("#f").elements.namedItem(k); if (i) i.value = v; }
      await listView();
    }
  } catch (e) { showError(e); }
}
main();
</script>
</body>
</html>
"""


def render_history_page(nonce: str, title: str = "通话质检实时看板") -> str:
    """The history page with a per-response CSP nonce."""
    return _PAGE.replace("__NONCE__", nonce).replace("__TITLE__", html.escape(title))
