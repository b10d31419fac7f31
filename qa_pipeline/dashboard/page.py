"""The dashboard page: one self-contained HTML document with inline CSS and vanilla JS.

No CDN, no build step, no data in the page itself: it logs in (name and password -> a
server-side session whose id is in an HttpOnly cookie), then opens ``/api/events`` (Server-Sent Events) and renders the snapshot and every update. All
text from events is inserted with ``textContent`` (never as HTML). Labels are Chinese with an
"EN" toggle (remembered in ``localStorage``).

A call in progress shows 进行中, its findings so far and their deduction labelled provisional
(暂扣, not a score: the scorecard at the end decides); the score and grade appear when it
ends. A finding whose evidence is several turns (a phrase that never came) is one card
listing them, not a copy under each. A user whose role may (``may_ack`` of ``/api/me``)
acknowledges an alert with its button; every page then shows who and when.
"""

from __future__ import annotations

import html

_PAGE = r"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style nonce="__NONCE__">
:root { --bg:#f4f6f9; --card:#fff; --ink:#1f2933; --mute:#6b7785; --line:#dde3ea;
  --crit:#d64545; --major:#e8912d; --minor:#3a7bd5; --ok:#2f9e6e; --agent:#eef4ff; --cust:#f3f7ee; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","WenQuanYi Zen Hei",
    "PingFang SC","Microsoft YaHei",sans-serif; font-size:14px; }
header { display:flex; align-items:center; gap:12px; padding:10px 18px; background:#243447; color:#fff; }
header h1 { font-size:18px; margin:0; font-weight:600; flex:1; }
header button, header a { background:#3b4f66; color:#fff; border:0; border-radius:4px; padding:5px 10px;
  cursor:pointer; font:inherit; text-decoration:none; }
#conn { font-size:12px; padding:3px 8px; border-radius:10px; background:#6b7785; }
#conn.on { background:var(--ok); } #conn.off { background:var(--crit); }
main { display:grid; grid-template-columns: 300px 1fr 320px; grid-template-rows: auto auto; gap:12px; padding:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
.card h2 { font-size:15px; margin:0 0 8px; display:flex; align-items:center; gap:8px; }
.card h2 .sub { font-weight:normal; color:var(--mute); font-size:12px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); font-size:13px; }
th { color:var(--mute); font-weight:normal; }
tr.call { cursor:pointer; } tr.call:hover { background:#f0f4f8; } tr.call.sel { background:#e3edf9; }
.badge { display:inline-block; padding:1px 6px; border-radius:8px; font-size:12px; color:#fff; background:var(--mute); }
.badge.live { background:var(--ok); } .badge.critical { background:var(--crit); }
.badge.major { background:var(--major); } .badge.minor { background:var(--minor); }
.badge.review { background:#b08900; }
.score { font-weight:600; } .score.bad { color:var(--crit); }
.score.prov { font-weight:normal; font-style:italic; color:var(--mute); }
.badge.incomplete { background:#8a6d3b; } .badge.found { background:var(--major); }
.evs { margin-top:4px; font-size:12px; }
.evs .ev { cursor:pointer; color:var(--mute); padding:1px 0; }
.evs .ev .evt { color:var(--ink); }
.alert-item.acked { border-color:var(--mute); background:#f5f6f8; }
.alert-item .ack { font-size:12px; color:var(--ok); margin-top:3px; }
.alert-item .ack-btn { font:inherit; font-size:12px; margin-top:4px; padding:2px 10px; border:1px solid var(--line);
  background:#fff; border-radius:4px; cursor:pointer; }
.alert-item .ack-err { font-size:12px; color:var(--crit); }
#calls-wrap, #alerts { max-height:420px; overflow:auto; }
#transcript-card { grid-row: span 1; }
#callhead { color:var(--mute); margin-bottom:6px; }
#transcript { max-height:460px; overflow:auto; }
.cols { display:grid; grid-template-columns:1fr 1fr; gap:6px 14px; }
.colhead { font-weight:600; color:var(--mute); border-bottom:1px solid var(--line); padding-bottom:4px; }
.utt { border-radius:6px; padding:6px 8px; border:1px solid var(--line); align-self:start; }
.utt.agent { grid-column:1; background:var(--agent); }
.utt.customer { grid-column:2; background:var(--cust); }
.utt.unknown { grid-column:1 / span 2; background:#f5f5f5; }
.utt .t { font-size:11px; color:var(--mute); }
.utt .tx { margin-top:2px; line-height:1.5; }
.utt .tx.hidden { color:var(--mute); font-style:italic; }
.utt.hit { border:2px solid var(--major); }
.utt.hit.critical { border-color:var(--crit); background:#fdecec; }
mark { background:#ffd76a; padding:0 1px; border-radius:2px; }
.finding { margin-top:6px; border-left:4px solid var(--major); background:#fff8ef; padding:4px 8px; border-radius:3px; }
.finding.critical { border-color:var(--crit); background:#fff1f1; }
.finding.minor { border-color:var(--minor); background:#f1f6ff; }
.finding.uncertain { border-style:dashed; border-color:#b08900; background:#fffbe6; }
.utt.unsure { border:2px dashed #b08900; }
.finding .rid { font-weight:600; margin:0 4px; }
.finding .sugg { margin-top:3px; color:#2d5f3f; }
.play { display:flex; align-items:center; gap:4px; margin-top:3px; }
.play .play-icon { color:var(--mute); }
.play audio { height:28px; max-width:260px; }
.callfinding { grid-column:1 / span 2; }
.alert-item { border-left:4px solid var(--crit); background:#fff5f5; padding:6px 8px; margin-bottom:6px; border-radius:3px; cursor:pointer; }
.alert-item .meta { font-size:12px; color:var(--mute); }
.alert-item.fresh { animation: flash 1.5s ease-out; }
@keyframes flash { from { background:#ffc9c9; } to { background:#fff5f5; } }
#chart-card { grid-column: 1 / span 2; }
#chart svg { width:100%; display:block; }
#chart text { font-size:12px; fill:var(--ink); font-family:inherit; }
.seg button { font:inherit; border:1px solid var(--line); background:#fff; padding:2px 8px; cursor:pointer; }
.seg button.on { background:#243447; color:#fff; }
.empty { color:var(--mute); padding:8px 0; }
#login { max-width:380px; margin:80px auto; }
#login input { width:100%; padding:8px; font:inherit; margin:8px 0; border:1px solid var(--line); border-radius:4px; }
#login button { padding:7px 16px; font:inherit; background:#243447; color:#fff; border:0; border-radius:4px; cursor:pointer; }
#login .err { color:var(--crit); }
[hidden] { display:none !important; }
</style>
</head>
<body>
<header>
  <h1 data-i18n="title">__TITLE__</h1>
  <span id="conn" data-i18n="connecting">连接中</span>
  <span id="me"></span>
  <span id="role"></span>
  <button id="lang" type="button">EN</button>
  <a id="history-link" href="/history">历史 history</a>
  <a id="review-link" href="/review" data-i18n="review_queue" hidden>复核队列</a>
  <a id="logout" href="/logout" data-i18n="logout" hidden>退出</a>
</header>
<section id="login" class="card" hidden>
  <h2 data-i18n="login_title">请登录</h2>
  <form method="post" action="/login">
    <label for="name" data-i18n="user_name">用户名</label>
    <input id="name" name="name" type="text" autocomplete="username" required>
    <label for="password" data-i18n="password">密码</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit" data-i18n="login">登录</button>
  </form>
  <p class="err" id="login-err" data-i18n="login_failed" hidden>用户名或密码错误</p>
</section>
<main id="app" hidden>
  <section class="card" id="calls-card">
    <h2><span data-i18n="live_calls">实时通话</span> <span class="sub" id="calls-count"></span></h2>
    <div id="calls-wrap"><table><thead><tr>
      <th data-i18n="call">通话</th><th data-i18n="agent">坐席</th><th data-i18n="score">得分</th><th data-i18n="grade">等级</th>
    </tr></thead><tbody id="calls"></tbody></table></div>
  </section>
  <section class="card" id="transcript-card">
    <h2><span data-i18n="transcript">通话文本</span> <span class="sub" id="sel-id"></span> <a class="sub" id="review-call" data-i18n="review_call" hidden>复核 / 申诉</a></h2>
    <div id="callhead"></div>
    <div id="transcript"><div class="empty" data-i18n="no_call">暂无通话</div></div>
  </section>
  <section class="card" id="alerts-card">
    <h2><span data-i18n="alerts">告警</span> <span class="sub" id="alerts-count"></span></h2>
    <div id="alerts"><div class="empty" data-i18n="no_alerts">暂无告警</div></div>
  </section>
  <section class="card" id="chart-card">
    <h2><span data-i18n="violations">违规规则统计</span>
      <span class="seg"><button type="button" id="r-hour" class="on" data-i18n="last_hour">近1小时</button><button type="button" id="r-day" data-i18n="last_day">近24小时</button></span></h2>
    <div id="chart"></div>
  </section>
  <section class="card" id="agents-card">
    <h2 data-i18n="agents">坐席汇总</h2>
    <table><thead><tr><th data-i18n="agent">坐席</th><th data-i18n="calls">通话</th><th data-i18n="avg">平均分</th>
      <th data-i18n="findings">违规</th><th data-i18n="critical">严重</th><th data-i18n="review">待复核</th></tr></thead><tbody id="agents"></tbody></table>
  </section>
</main>
<script nonce="__NONCE__">
"use strict";
const I18N = {
  zh: { title:"通话质检实时看板", connecting:"连接中", online:"实时", offline:"已断开", logout:"退出",
    login_title:"请登录", user_name:"用户名", password:"密码", login:"登录", login_failed:"用户名或密码错误", live_calls:"实时通话", call:"通话",
    agent:"坐席", customer:"客户", unknown:"未知", score:"得分", grade:"等级", transcript:"通话文本",
    no_call:"暂无通话", alerts:"告警", no_alerts:"暂无告警", violations:"违规规则统计", last_hour:"近1小时",
    last_day:"近24小时", agents:"坐席汇总", calls:"通话", avg:"平均分", findings:"违规", critical:"严重",
    major:"重要", minor:"轻微", live:"进行中", ended:"已结束", suggestion:"建议话术", running:"实时得分",
    final:"最终得分", hidden:"（文本仅对授权用户可见）", unreadable:"（有语音，未能识别）", viewer:"只读（无文本）", no_data:"暂无数据",
    call_level:"通话级", at:"时间", none_agent:"未知坐席", count:"次", review:"待复核",
    uncertain:"待复核（不扣分）", pending:"待定扣分", incomplete:"不完整",
    provisional:"暂扣", provisional_note:"（未定，通话结束后评分）", found_so_far:"已发现违规",
    items:"项", searched:"查找范围", ack:"确认", acked:"已确认", ack_failed:"确认失败",
    review_queue:"复核队列", review_call:"复核 / 申诉",
    role_agent:"坐席", role_supervisor:"班组长", role_qa:"质检员", role_viewer:"只读", role_admin:"管理员", play:"播放证据录音（个人信息已消音）" },
  en: { title:"Live call QA", connecting:"connecting", online:"live", offline:"disconnected", logout:"Log out",
    login_title:"Log in", user_name:"User name", password:"Password", login:"Log in", login_failed:"Wrong name or password", live_calls:"Live calls", call:"Call",
    agent:"Agent", customer:"Customer", unknown:"Unknown", score:"Score", grade:"Grade", transcript:"Transcript",
    no_call:"No calls yet", alerts:"Alerts", no_alerts:"No alerts", violations:"Violations by rule", last_hour:"Last hour",
    last_day:"Last 24 h", agents:"Agents", calls:"Calls", avg:"Avg score", findings:"Findings", critical:"Critical",
    major:"Major", minor:"Minor", live:"live", ended:"ended", suggestion:"Suggested phrasing", running:"Running score",
    final:"Final score", hidden:"(transcript text for authorised viewers only)", unreadable:"(speech, words not recognised)", viewer:"viewer (no text)", no_data:"No data",
    call_level:"call", at:"at", none_agent:"unknown agent", count:"", review:"Review",
    uncertain:"uncertain (not deducted)", pending:"pending", incomplete:"incomplete",
    provisional:"so far", provisional_note:"(provisional; scored when the call ends)", found_so_far:"Findings so far",
    items:"", searched:"Looked for in", ack:"Acknowledge", acked:"Acknowledged", ack_failed:"not acknowledged",
    review_queue:"Review queue", review_call:"review / appeal",
    role_agent:"agent", role_supervisor:"supervisor", role_qa:"QA analyst", role_viewer:"viewer", role_admin:"admin", play:"Play the evidence (personal data beeped)" }
};
const S = { calls:new Map(), details:new Map(), alerts:[], stats:null, grades:[], selected:null, pinned:false,
  range:"hour", role:null, me:null, lang: localStorage.getItem("qa-dash-lang") || "zh", es:null, fresh:new Set() };
const $ = (id) => document.getElementById(id);
const t = (k) => (I18N[S.lang] && I18N[S.lang][k] !== undefined) ? I18N[S.lang][k] : k;
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e; }
function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
function fmtTime(sec) { const d = new Date(sec * 1000); return d.toLocaleTimeString(S.lang === "zh" ? "zh-CN" : "en-GB", {hour12:false}); }
function fmtScore(x) { return (x === null || x === undefined) ? "–" : (Math.round(x * 10) / 10).toString(); }
function gradeText(c) { if (!c.final) return "–"; return S.lang === "zh" ? c.grade : (c.grade_en || c.grade); }
function provText(c) { return t("provisional") + " −" + fmtScore(c.provisional_deduction || 0); }
function roleText(r) { return t(r || "unknown"); }

function applyLang() {
  document.documentElement.lang = S.lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
  document.title = t("title");
  $("lang").textContent = S.lang === "zh" ? "EN" : "中文";
  setConn(S.connState || "connecting");
  render();
}
function setConn(s) { S.connState = s; const c = $("conn"); c.className = s === "online" ? "on" : (s === "offline" ? "off" : "");
  c.textContent = t(s); $("role").textContent = S.role === "viewer" ? t("viewer") : "";
  $("me").textContent = S.me ? S.me.name + " · " + t("role_" + S.me.role) : ""; }

function detailOf(id) { let d = S.details.get(id); if (!d) { d = { utts:new Map(), finds:new Map(), unsure:[] }; S.details.set(id, d); } return d; }
function loadSnapshot(s) {
  S.calls.clear(); S.details.clear(); S.alerts = s.alerts || []; S.stats = s.stats; S.grades = s.grades || []; S.role = s.role;
  for (const c of s.calls || []) S.calls.set(c.call_id, c);
  for (const [id, det] of Object.entries(s.details || {})) { if (!det) continue; const d = detailOf(id);
    for (const u of det.utterances) d.utts.set(u.index, u); for (const f of det.findings) d.finds.set(f.seq, f);
    d.unsure = det.uncertain || []; }
  setConn("online");
}
function applyUpdate(m) {
  // an ack's call names the call for the server's filter only (it may be one no longer kept)
  if (m.call && m.type !== "ack") S.calls.set(m.call.call_id, m.call);
  const id = m.call ? m.call.call_id : null;
  if (id && m.utterance) detailOf(id).utts.set(m.utterance.index, m.utterance);
  if (id && m.finding) detailOf(id).finds.set(m.finding.seq, m.finding);
  if (id && m.uncertain) detailOf(id).unsure = m.uncertain;
  if (m.alert) { const i = S.alerts.findIndex((a) => a.event_id === m.alert.event_id);
    if (i >= 0) S.alerts[i] = m.alert;
    else { S.alerts.unshift(m.alert); S.alerts.length = Math.min(S.alerts.length, 200); S.fresh.add(m.alert.event_id); } }
  if (m.stats) S.stats = m.stats;
}
let pending = false;
function schedule() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; render(); }); } }

function sortedCalls() { return [...S.calls.values()].sort((a, b) =>
  ((b.status === "live") - (a.status === "live")) || (b.last_at - a.last_at)); }
function render() {
  if ($("app").hidden) return;
  const calls = sortedCalls();
  if (!S.pinned && location.hash.startsWith("#call=")) { const want = decodeURIComponent(location.hash.slice(6));
    if (S.calls.has(want)) { S.selected = want; S.pinned = true; } }
  if (!S.pinned && calls.length) { const live = calls.find((c) => c.status === "live"); const cur = S.selected ? S.calls.get(S.selected) : null;
    if (!cur || (cur.status !== "live" && live)) S.selected = (live || calls[0]).call_id; }
  renderCalls(calls); renderTranscript(); renderAlerts(); renderChart(); renderAgents();
}
function renderCalls(calls) {
  const tb = $("calls"); clear(tb);
  $("calls-count").textContent = String(calls.filter((c) => c.status === "live").length) + " " + t("live");
  if (!calls.length) { const tr = el("tr"); const td = el("td", "empty", t("no_call")); td.colSpan = 4; tr.appendChild(td); tb.appendChild(tr); return; }
  for (const c of calls) {
    const tr = el("tr", "call" + (c.call_id === S.selected ? " sel" : "")); tr.dataset.callId = c.call_id;
    const td1 = el("td"); td1.appendChild(el("div", null, c.call_id));
    td1.appendChild(el("span", "badge " + c.status, t(c.status)));
    if (!c.final && c.findings) { td1.appendChild(document.createTextNode(" ")); td1.appendChild(el("span", "badge found", t("findings") + " " + c.findings)); }
    if (c.critical) { td1.appendChild(document.createTextNode(" ")); td1.appendChild(el("span", "badge critical", t("critical") + " " + c.critical)); }
    if (c.review) { td1.appendChild(document.createTextNode(" ")); td1.appendChild(el("span", "badge review", t("review") + (c.uncertain ? " " + c.uncertain : ""))); }
    tr.appendChild(td1); tr.appendChild(el("td", null, c.agent_id || "–"));
    const sc = c.final ? el("td", "score" + (c.failed || c.score < 60 ? " bad" : ""), fmtScore(c.score))
      : el("td", "score prov", c.provisional_deduction ? provText(c) : "–");
    if (!c.final) sc.title = t("provisional_note");
    sc.dataset.role = "score"; tr.appendChild(sc);
    const gd = el("td", "grade", gradeText(c)); gd.title = c.final ? t("final") : t("running"); tr.appendChild(gd);
    tr.addEventListener("click", () => { S.selected = c.call_id; S.pinned = true; render(); });
    tb.appendChild(tr);
  }
}
function markText(text, phrases) {
  const frag = document.createDocumentFragment(); let rest = text;
  const ps = phrases.filter((p) => p && text.indexOf(p) >= 0);
  while (rest.length) {
    let best = -1, bp = null;
    for (const p of ps) { const i = rest.indexOf(p); if (i >= 0 && (best < 0 || i < best)) { best = i; bp = p; } }
    if (best < 0) { frag.appendChild(document.createTextNode(rest)); break; }
    if (best > 0) frag.appendChild(document.createTextNode(rest.slice(0, best)));
    frag.appendChild(el("mark", null, bp)); rest = rest.slice(best + bp.length);
  }
  return frag;
}
function placementOf(f) { if (f.placement) return f.placement;
  return new Set(f.utterance_indexes || []).size === 1 ? "utterance" : "call"; }
// an evidence span played from the call's redacted recording (the server cuts the clip)
function playable(e) { const c = S.calls.get(S.selected); return !!(c && c.audio && S.me && S.me.text !== false
  && e.utterance_index !== null && e.utterance_index !== undefined && typeof e.start === "number" && typeof e.end === "number" && e.end > e.start); }
function playCtl(f, e) {
  const p = el("span", "play"); p.dataset.seq = f.seq;
  p.appendChild(el("span", "play-icon", "▶")); p.title = t("play");
  const a = document.createElement("audio"); a.controls = true; a.preload = "none";
  a.src = "/api/calls/" + encodeURIComponent(f.call_id || S.selected) + "/audio?start=" + e.start.toFixed(2) + "&end=" + e.end.toFixed(2);
  p.appendChild(a); return p;
}
function evidenceList(f) {
  const evs = (f.evidence || []).filter((e) => e.utterance_index !== null && e.utterance_index !== undefined);
  const box = el("div", "evs"); box.appendChild(el("div", null, t("searched") + "："));
  for (const e of evs) { const it = el("div", "ev"); it.dataset.uttIndex = e.utterance_index;
    it.appendChild(el("span", null, roleText(e.role) + " · " + fmtScore(e.start) + "s "));
    if (typeof e.text === "string" && e.text) it.appendChild(el("span", "evt", e.text));
    if (playable(e)) it.appendChild(playCtl(f, e));
    it.addEventListener("click", () => { const u = document.querySelector('#transcript .utt[data-utt-index="' + e.utterance_index + '"]');
      if (u) u.scrollIntoView({ block: "center" }); });
    box.appendChild(it); }
  return box;
}
function findingBox(f, extra) {
  const b = el("div", "finding " + (f.severity || "") + (extra ? " " + extra : "")); b.dataset.rule = f.rule_id || ""; b.dataset.seq = f.seq;
  b.appendChild(el("span", "badge " + (f.severity || ""), t(f.severity || "minor")));
  b.appendChild(el("span", "rid", f.rule_id)); b.appendChild(el("span", "msg", f.message || ""));
  if (f.weight) b.appendChild(el("span", "w", " (−" + fmtScore(f.weight) + ")"));
  if (f.suggestion) { const s = el("div", "sugg"); s.appendChild(el("b", null, t("suggestion") + "：")); s.appendChild(el("span", "sugg-text", f.suggestion)); b.appendChild(s); }
  if (placementOf(f) === "call" && (f.utterance_indexes || []).length) b.appendChild(evidenceList(f));
  else { const e = (f.evidence || []).find(playable); if (e) b.appendChild(playCtl(f, e)); }
  return b;
}
function unsureBox(v, extra) {
  const b = el("div", "finding uncertain" + (extra ? " " + extra : "")); b.dataset.rule = v.rule_id || "";
  b.appendChild(el("span", "badge review", t("uncertain")));
  b.appendChild(el("span", "rid", v.rule_id)); b.appendChild(el("span", "msg", v.detail || v.description || ""));
  if (v.pending_deduction) b.appendChild(el("span", "w", " (" + t("pending") + " −" + fmtScore(v.pending_deduction) + ")"));
  return b;
}
function renderTranscript() {
  const box = $("transcript"); const head = $("callhead"); clear(box); clear(head);
  const c = S.selected ? S.calls.get(S.selected) : null;
  $("sel-id").textContent = c ? c.call_id : "";
  const rc = $("review-call"); rc.hidden = !(c && c.final && S.me && S.me.review && S.me.role !== "viewer");
  if (c) rc.href = "/review#call=" + encodeURIComponent(c.call_id);
  if (!c) { box.appendChild(el("div", "empty", t("no_call"))); return; }
  head.textContent = (c.final
    ? [t("agent") + ": " + (c.agent_id || "–"), t("final") + ": " + fmtScore(c.score), t("grade") + ": " + gradeText(c), t(c.status)]
    : [t("agent") + ": " + (c.agent_id || "–"), t(c.status), t("found_so_far") + ": " + (c.findings || 0) + (t("items") ? " " + t("items") : ""),
       provText(c) + " " + t("provisional_note")]).join("  ·  ");
  const d = detailOf(c.call_id);
  const utts = [...d.utts.values()].sort((a, b) => (a.start - b.start) || (a.index - b.index));
  const finds = [...d.finds.values()].sort((a, b) => a.seq - b.seq);
  const byUtt = new Map(); const loose = [];
  // each finding once: at its one utterance, else as a card of its own in the flow
  for (const f of finds) { if (placementOf(f) === "utterance") { const i = f.utterance_indexes[0]; if (!byUtt.has(i)) byUtt.set(i, []); byUtt.get(i).push(f); } else loose.push(f); }
  const unsureBy = new Map(); const unsureLoose = [];
  for (const v of d.unsure || []) { const ix = v.utterance_indexes || []; if (ix.length) { for (const i of ix) { if (!unsureBy.has(i)) unsureBy.set(i, []); unsureBy.get(i).push(v); } } else unsureLoose.push(v); }
  const cols = el("div", "cols"); cols.appendChild(el("div", "colhead", t("agent"))); cols.appendChild(el("div", "colhead", t("customer")));
  for (const v of unsureLoose) cols.appendChild(unsureBox(v, "callfinding"));
  let li = 0; loose.sort((a, b) => (a.decided_at || 0) - (b.decided_at || 0));
  const pushLoose = (until) => { while (li < loose.length && (until === null || (loose[li].decided_at || 0) <= until)) cols.appendChild(findingBox(loose[li++], "callfinding")); };
  for (const u of utts) {
    pushLoose(u.start);
    const fs = byUtt.get(u.index) || [];
    const sev = fs.some((f) => f.severity === "critical") ? " critical" : "";
    const us = unsureBy.get(u.index) || [];
    const div = el("div", "utt " + (u.role || "unknown") + (fs.length ? " hit" + sev : "") + (us.length && !fs.length ? " unsure" : "")); div.dataset.uttIndex = u.index;
    div.appendChild(el("div", "t", roleText(u.role) + " · " + fmtScore(u.start) + "s – " + fmtScore(u.end) + "s"));
    const tx = el("div", "tx");
    if (u.text === "") { tx.classList.add("hidden"); tx.textContent = t("unreadable"); }
    else if (typeof u.text === "string") { const matched = []; for (const f of fs) for (const e of f.evidence || []) if (e.utterance_index === u.index && e.matched) matched.push(e.matched);
      tx.appendChild(markText(u.text, matched)); }
    else { tx.classList.add("hidden"); tx.textContent = t("hidden"); }
    div.appendChild(tx);
    for (const f of fs) div.appendChild(findingBox(f));
    for (const v of us) div.appendChild(unsureBox(v));
    cols.appendChild(div);
  }
  pushLoose(null);
  box.appendChild(cols);
}
function renderAlerts() {
  const box = $("alerts"); clear(box); $("alerts-count").textContent = S.alerts.length ? String(S.alerts.length) : "";
  if (!S.alerts.length) { box.appendChild(el("div", "empty", t("no_alerts"))); return; }
  for (const a of S.alerts) {
    const it = el("div", "alert-item" + (S.fresh.has(a.event_id) ? " fresh" : "")); it.dataset.callId = a.call_id; it.dataset.rule = a.rule_id || "";
    const top = el("div"); top.appendChild(el("span", "badge " + (a.severity || "critical"), t(a.severity || "critical")));
    top.appendChild(el("b", null, " " + (a.rule_id || ""))); top.appendChild(el("span", null, " " + (a.message || ""))); it.appendChild(top);
    const c = S.calls.get(a.call_id); const agent = a.agent_id || (c && c.agent_id) || "–";
    it.appendChild(el("div", "meta", fmtTime(a.at) + " · " + t("call") + " " + a.call_id + " · " + t("agent") + " " + agent));
    const ev = (a.evidence || []).find((e) => e.matched); if (ev) it.appendChild(el("div", "meta", "“" + ev.matched + "”"));
    if (a.ack) { it.classList.add("acked"); it.appendChild(el("div", "ack", t("acked") + "：" + a.ack.user + " · " + fmtTime(a.ack.at))); }
    else if (S.me && S.me.may_ack) { const btn = el("button", "ack-btn", t("ack")); btn.type = "button";
      btn.addEventListener("click", (e) => { e.stopPropagation(); acknowledge(a, btn); }); it.appendChild(btn); }
    it.addEventListener("click", () => { S.selected = a.call_id; S.pinned = true; render(); });
    box.appendChild(it);
  }
  S.fresh.clear();
}
async function acknowledge(a, btn) {
  btn.disabled = true; let r = null;
  try { r = await fetch("/api/alerts/ack", { method: "POST", credentials: "same-origin", cache: "no-store",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ event_id: a.event_id }) }); } catch (e) { r = null; }
  if (r && r.ok) { applyUpdate({ type: "ack", alert: (await r.json()).alert }); schedule(); return; }
  btn.disabled = false; if (!btn.nextSibling) btn.after(el("span", "ack-err", " " + t("ack_failed") + (r ? " (" + r.status + ")" : "")));
}
const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) { const e = document.createElementNS(SVGNS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v)); if (text !== undefined) e.textContent = text; return e; }
function renderChart() {
  const box = $("chart"); clear(box);
  $("r-hour").classList.toggle("on", S.range === "hour"); $("r-day").classList.toggle("on", S.range === "day");
  const v = S.stats ? S.stats.violations : null; const counts = v ? v[S.range] : {};
  const rows = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  if (!rows.length) { box.appendChild(el("div", "empty", t("no_data"))); return; }
  const W = 720, rowH = 24, left = 150, right = 50, H = rows.length * rowH + 8; const max = Math.max(...rows.map((r) => r[1]));
  const s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": t("violations") });
  const color = { critical: "#d64545", major: "#e8912d", minor: "#3a7bd5" };
  rows.forEach(([rule, n], i) => {
    const y = 4 + i * rowH; const w = Math.max(2, (W - left - right) * n / max);
    s.appendChild(svg("text", { x: left - 8, y: y + 16, "text-anchor": "end" }, rule));
    const sev = (v.severity || {})[rule] || "major";
    const r = svg("rect", { x: left, y: y + 3, width: w, height: rowH - 8, rx: 3, fill: color[sev] || "#888", class: "bar", "data-rule": rule, "data-count": n });
    r.appendChild(svg("title", {}, rule + ": " + n)); s.appendChild(r);
    s.appendChild(svg("text", { x: left + w + 6, y: y + 16 }, n + (t("count") ? " " + t("count") : "")));
  });
  box.appendChild(s);
}
function renderAgents() {
  const tb = $("agents"); clear(tb); const rows = S.stats ? S.stats.agents : [];
  if (!rows.length) { const tr = el("tr"); const td = el("td", "empty", t("no_data")); td.colSpan = 6; tr.appendChild(td); tb.appendChild(tr); return; }
  for (const a of rows) {
    const tr = el("tr"); tr.dataset.agent = a.agent_id || "";
    tr.appendChild(el("td", null, a.agent_id || t("none_agent")));
    tr.appendChild(el("td", null, a.calls + (a.live ? " (" + a.live + " " + t("live") + ")" : "")));
    tr.appendChild(el("td", "score" + (a.avg_score !== null && a.avg_score < 60 ? " bad" : ""), fmtScore(a.avg_score)));
    tr.appendChild(el("td", null, a.findings)); tr.appendChild(el("td", null, a.critical));
    tr.appendChild(el("td", null, a.review || 0)); tb.appendChild(tr);
  }
}

function connect() {
  if (S.es) S.es.close();
  const es = new EventSource("/api/events"); S.es = es;
  es.addEventListener("snapshot", (e) => { loadSnapshot(JSON.parse(e.data)); schedule(); });
  es.addEventListener("update", (e) => { applyUpdate(JSON.parse(e.data)); schedule(); });
  es.onerror = () => { setConn("offline");
    if (es.readyState === EventSource.CLOSED) { setTimeout(start, 3000); } };
}
async function start() {
  let r;
  try { r = await fetch("/api/me", { credentials: "same-origin", cache: "no-store" }); }
  catch (e) { setConn("offline"); setTimeout(start, 3000); return; }
  if (r.status === 401) { $("app").hidden = true; $("logout").hidden = true; $("login").hidden = false;
    $("login-err").hidden = !location.search.includes("login=failed"); setConn("offline"); $("name").focus(); return; }
  if (!r.ok) { setConn("offline"); setTimeout(start, 3000); return; }
  S.me = await r.json();
  $("login").hidden = true; $("app").hidden = false; $("logout").hidden = false; $("review-link").hidden = !S.me.review || S.me.role === "viewer";
  setConn("connecting"); render(); connect();
}
$("lang").addEventListener("click", () => { S.lang = S.lang === "zh" ? "en" : "zh"; localStorage.setItem("qa-dash-lang", S.lang); applyLang(); });
$("r-hour").addEventListener("click", () => { S.range = "hour"; render(); });
$("r-day").addEventListener("click", () => { S.range = "day"; render(); });
applyLang(); start();
</script>
</body>
</html>
"""


def render_page(nonce: str, title: str = "通话质检实时看板") -> str:
    """The page with a per-response CSP nonce (inline script and style run only with it)."""
    return _PAGE.replace("__NONCE__", nonce).replace("__TITLE__", html.escape(title))
