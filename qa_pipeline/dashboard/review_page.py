"""The review page (``GET /review``): the 复核队列 for QA analysts, admins and supervisors, an
agent's own calls and appeals (申诉), and a call's review: transcript, verdicts (an
uncertain one with its pending deduction), findings with their evidence, per-verdict
confirm / overturn with a required comment, the score as it stands and every version.

One self-contained HTML document like the live page (:mod:`.page`): inline CSS and vanilla
JS under the response's CSP nonce, no data in the page itself (it reads
``/api/review/...``, :mod:`.review_api`), all text inserted with ``textContent``. A call
opens from the queue, from ``/review#call=<id>`` or from the live page's call header.
"""

from __future__ import annotations

import html

_PAGE = r"""<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>复核队列 · __TITLE__</title>
<style nonce="__NONCE__">
:root { --bg:#f4f6f9; --card:#fff; --ink:#1f2933; --mute:#6b7785; --line:#dde3ea;
  --crit:#d64545; --major:#e8912d; --minor:#3a7bd5; --ok:#2f9e6e; --agent:#eef4ff; --cust:#f3f7ee; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font-family:"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei","PingFang SC","Microsoft YaHei",sans-serif; font-size:14px; }
header { display:flex; align-items:center; gap:12px; padding:10px 18px; background:#243447; color:#fff; }
header h1 { font-size:18px; margin:0; font-weight:600; flex:1; }
header a { background:#3b4f66; color:#fff; border-radius:4px; padding:5px 10px; text-decoration:none; }
main { display:grid; grid-template-columns: minmax(560px, 1fr) 2fr; gap:12px; padding:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:6px; padding:10px 12px; min-width:0; }
.card h2 { font-size:15px; margin:0 0 8px; display:flex; align-items:center; gap:8px; }
.card h3 { font-size:14px; margin:12px 0 6px; }
table { border-collapse:collapse; width:100%; }
th, td { text-align:left; padding:4px 6px; border-bottom:1px solid var(--line); font-size:13px; vertical-align:top; }
th { color:var(--mute); font-weight:normal; white-space:nowrap; }
#queue td, #mine td { white-space:nowrap; }
tr.qitem, tr.mycall { cursor:pointer; } tr.qitem:hover, tr.mycall:hover { background:#f0f4f8; }
tr.sel { background:#e3edf9; }
.badge { white-space:nowrap; display:inline-block; padding:1px 6px; border-radius:8px; font-size:12px; color:#fff; background:var(--mute); margin-right:3px; }
.badge.uncertain { background:#b08900; } .badge.critical { background:var(--crit); }
.badge.low_score { background:var(--major); } .badge.appeal { background:#7a4fd6; }
.badge.failed { background:var(--crit); } .badge.passed { background:var(--ok); }
.filters { display:flex; gap:8px; flex-wrap:wrap; margin-bottom:8px; }
.filters select, .filters input, .filters button { font:inherit; padding:3px 6px; }
.score { font-weight:600; font-size:16px; } .score.bad { color:var(--crit); }
#call-head { color:var(--mute); margin-bottom:6px; display:flex; gap:14px; flex-wrap:wrap; }
#call-head b { color:var(--ink); }
tr.verdict.changed td { background:#fffbe6; }
tr.verdict select, tr.verdict input { font:inherit; font-size:12px; width:100%; }
button.act { font:inherit; padding:4px 12px; background:#243447; color:#fff; border:0; border-radius:4px; cursor:pointer; }
button.small { font:inherit; font-size:12px; padding:2px 8px; border:1px solid var(--line); background:#fff; border-radius:4px; cursor:pointer; }
.msg { margin-left:8px; } .msg.err { color:var(--crit); } .msg.ok { color:var(--ok); }
.finding { margin-top:6px; border-left:4px solid var(--major); background:#fff8ef; padding:4px 8px; border-radius:3px; }
.finding.critical { border-color:var(--crit); background:#fff1f1; } .finding.minor { border-color:var(--minor); background:#f1f6ff; }
.ev { cursor:pointer; color:var(--mute); font-size:12px; } .ev .m { color:var(--ink); background:#ffd76a; }
.play { display:inline-flex; align-items:center; gap:4px; } .play audio { height:26px; max-width:240px; vertical-align:middle; }
#transcript { max-height:420px; overflow:auto; }
.utt { border-radius:6px; padding:4px 8px; border:1px solid var(--line); margin:4px 0; }
.utt.agent { background:var(--agent); margin-right:20%; } .utt.customer { background:var(--cust); margin-left:20%; }
.utt.hit { border:2px solid var(--major); }
.utt .t { font-size:11px; color:var(--mute); }
#appeal-form textarea { width:100%; font:inherit; min-height:60px; }
.empty { color:var(--mute); padding:8px 0; }
[hidden] { display:none !important; }
</style>
</head>
<body>
<header>
  <h1><span id="page-title">复核队列</span> · __TITLE__</h1>
  <span id="me"></span>
  <a href="/">实时看板</a>
  <a href="/logout">退出</a>
</header>
<section id="need-login" class="card" hidden><p>请先<a href="/">登录</a>。</p></section>
<main id="app" hidden>
  <div>
    <section class="card" id="queue-card" hidden>
      <h2>复核队列 <span id="queue-count"></span></h2>
      <div class="filters">
        <select id="f-reason"><option value="">全部原因</option><option value="uncertain">待定判定</option>
          <option value="critical">严重违规</option><option value="low_score">低分</option><option value="appeal">申诉</option></select>
        <select id="f-state"><option value="">待处理</option><option value="open">未开始</option><option value="in_review">复核中</option>
          <option value="done">已完成</option><option value="all">全部状态</option></select>
        <input id="f-team" placeholder="班组" size="8">
        <button type="button" id="f-go">刷新</button>
      </div>
      <table><thead><tr><th>通话</th><th>坐席</th><th>班组</th><th>原因</th><th>状态</th><th>处理人</th><th>进入时间</th><th>机器得分</th></tr></thead>
      <tbody id="queue"></tbody></table>
    </section>
    <section class="card" id="mine-card" hidden>
      <h2>我的通话</h2>
      <table><thead><tr><th>通话</th><th>得分</th><th>违规规则</th><th>复核</th></tr></thead><tbody id="mine"></tbody></table>
    </section>
  </div>
  <section class="card" id="call-card" hidden>
    <h2>通话复核 <span id="call-id"></span> <button type="button" class="small" id="claim-btn" hidden>认领</button></h2>
    <div id="call-head"></div>
    <h3>判定</h3>
    <table><thead><tr><th>规则</th><th>说明</th><th>机器判定</th><th>当前判定</th><th>扣分</th><th id="act-head">处理</th><th id="comment-head">意见</th></tr></thead>
      <tbody id="verdicts"></tbody></table>
    <div id="review-bar" hidden><button type="button" class="act" id="submit-review">提交复核</button><span class="msg" id="review-msg"></span></div>
    <div id="appeal-form" hidden>
      <h3>申诉 <span id="appeal-rules"></span></h3>
      <textarea id="appeal-reason" placeholder="申诉理由"></textarea>
      <button type="button" class="act" id="submit-appeal">提交申诉</button><span class="msg" id="appeal-msg"></span>
    </div>
    <h3>违规与证据</h3><div id="findings"></div>
    <h3>通话文本</h3><div id="transcript"></div>
    <h3>版本记录</h3>
    <table><thead><tr><th>版本</th><th>类型</th><th>人</th><th>时间</th><th>说明</th><th>得分</th></tr></thead><tbody id="history"></tbody></table>
  </section>
</main>
<script nonce="__NONCE__">
"use strict";
const $ = (id) => document.getElementById(id);
const REASON = { uncertain:"待定判定", critical:"严重违规", low_score:"低分", appeal:"申诉" };
const STATE = { open:"未开始", in_review:"复核中", done:"已完成" };
const VERDICT = { passed:"通过", failed:"不通过", not_applicable:"不适用", uncertain:"待定" };
const ROLE = { agent:"坐席", customer:"客户", unknown:"未知" };
const USER_ROLE = { agent:"坐席", supervisor:"班组长", qa:"质检员", viewer:"只读", admin:"管理员" };
const S = { me:null, view:null, appeal:new Set() };
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text); return e; }
function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
function fmt(x) { return (x === null || x === undefined) ? "–" : (Math.round(x * 10) / 10).toString(); }
function fmtAt(iso) { const d = new Date(iso); return isNaN(d) ? iso : d.toLocaleString("zh-CN", {hour12:false}); }
function row(cells) { const tr = el("tr"); for (const c of cells) { const td = el("td"); if (c instanceof Node) td.appendChild(c); else td.textContent = c === null || c === undefined ? "–" : String(c); tr.appendChild(td); } return tr; }
async function getJSON(url) { const r = await fetch(url, { credentials:"same-origin", cache:"no-store" });
  const body = await r.json().catch(() => ({})); return [r.status, body]; }
async function postJSON(url, body) { const r = await fetch(url, { method:"POST", credentials:"same-origin", cache:"no-store",
  headers:{ "Content-Type":"application/json" }, body: JSON.stringify(body) });
  const out = await r.json().catch(() => ({})); return [r.status, out]; }
function reasons(list) { const f = document.createDocumentFragment(); for (const r of list || []) f.appendChild(el("span", "badge " + r, REASON[r] || r)); return f; }

async function loadQueue() {
  const q = new URLSearchParams(); for (const [k, id] of [["reason","f-reason"],["state","f-state"],["team","f-team"]]) { const v = $(id).value.trim(); if (v) q.set(k, v); }
  const [st, body] = await getJSON("/api/review/queue?" + q.toString());
  const tb = $("queue"); clear(tb);
  if (st !== 200) { tb.appendChild(row([body.detail || ("HTTP " + st)])); return; }
  $("queue-count").textContent = String(body.items.length);
  if (!body.items.length) { const tr = row(["队列为空"]); tr.firstChild.colSpan = 8; tr.firstChild.className = "empty"; tb.appendChild(tr); return; }
  for (const i of body.items) {
    const tr = row([i.call_id, i.agent_id, (i.teams || []).join(","), reasons(i.reasons), STATE[i.state] || i.state, i.assignee, fmtAt(i.entered_at), fmt(i.machine_score)]);
    tr.className = "qitem" + (S.view && S.view.call_id === i.call_id ? " sel" : ""); tr.dataset.callId = i.call_id; tr.dataset.state = i.state;
    tr.addEventListener("click", () => openCall(i.call_id)); tb.appendChild(tr);
  }
}
async function loadMine() {
  const [st, body] = await getJSON("/api/review/mine"); const tb = $("mine"); clear(tb);
  if (st !== 200) { tb.appendChild(row([body.detail || ("HTTP " + st)])); return; }
  if (!body.calls.length) { tb.appendChild(row(["暂无通话"])); return; }
  for (const c of body.calls) {
    const tr = row([c.call_id, fmt(c.score), c.failed_rules.join(", ") || "–", c.queue_state ? (STATE[c.queue_state] || c.queue_state) : (c.reviewed ? "已复核" : "–")]);
    tr.className = "mycall"; tr.dataset.callId = c.call_id; tr.addEventListener("click", () => openCall(c.call_id)); tb.appendChild(tr);
  }
}
async function openCall(id) {
  location.hash = "call=" + encodeURIComponent(id);
  const [st, v] = await getJSON("/api/review/calls/" + encodeURIComponent(id));
  $("call-card").hidden = false; $("call-id").textContent = id;
  if (st !== 200) { S.view = null; clear($("verdicts")); clear($("findings")); clear($("transcript")); clear($("history"));
    $("call-head").textContent = v.detail || ("HTTP " + st); return; }
  S.view = v; S.appeal.clear(); renderCall();
  document.querySelectorAll("tr.qitem").forEach((r) => r.classList.toggle("sel", r.dataset.callId === id));
}
function renderCall() {
  const v = S.view; const head = $("call-head"); clear(head);
  const item = (label, val, id, cls) => { const s = el("span"); s.appendChild(document.createTextNode(label + "：")); const b = el("b", cls, val); if (id) b.id = id; s.appendChild(b); head.appendChild(s); return b; };
  item("坐席", v.agent_id || "–"); item("规则包", v.pack); item("机器得分", fmt(v.machine.score), "machine-score");
  const now = item("当前得分", fmt(v.current.score), "score-now", "score" + (v.current.failed || v.current.score < 60 ? " bad" : ""));
  now.dataset.score = v.current.score; item("等级", v.current.grade, "grade-now");
  item("状态", v.current.reviewed ? "已复核" : "机器评分");
  if (v.queue) { const s = el("span"); s.appendChild(document.createTextNode("队列：")); s.appendChild(reasons(v.queue.reasons)); s.appendChild(el("b", null, STATE[v.queue.state] || v.queue.state)); head.appendChild(s); }
  $("claim-btn").hidden = !(v.may_decide && v.queue && v.queue.state !== "done");
  $("act-head").hidden = $("comment-head").hidden = !v.may_decide && !v.may_appeal;
  const tb = $("verdicts"); clear(tb);
  const order = { uncertain:0, failed:1, passed:2, not_applicable:3 };
  const rules = Object.entries(v.verdicts).sort((a, b) => (order[a[1].now] - order[b[1].now]) || (a[0] < b[0] ? -1 : 1));
  for (const [rid, d] of rules) {
    const ded = d.now === "uncertain" ? "待定 −" + fmt(d.pending) : (d.deduction ? "−" + fmt(d.deduction) : "0");
    const tr = row([rid, d.description || "", el("span", "badge " + d.machine, VERDICT[d.machine] || d.machine), el("span", "badge " + d.now, VERDICT[d.now] || d.now), ded]);
    tr.className = "verdict" + (d.now !== d.machine ? " changed" : ""); tr.dataset.rule = rid; tr.dataset.now = d.now;
    if (v.may_decide && d.now !== "not_applicable") {
      const sel = el("select", "action"); for (const [val, label] of [["", "—"], ["confirm", "确认"], ["overturn:passed", "改判为通过"], ["overturn:failed", "改判为不通过"]]) {
        if (val === "overturn:" + d.now) continue; const o = el("option", null, label); o.value = val; sel.appendChild(o); }
      const td = el("td"); td.appendChild(sel); tr.appendChild(td);
      const inp = el("input", "comment"); inp.placeholder = "意见（必填）"; const tc = el("td"); tc.appendChild(inp); tr.appendChild(tc);
    } else if (v.may_appeal && (d.now === "failed")) {
      const b = el("button", "small appeal-btn", "申诉"); b.type = "button"; b.addEventListener("click", () => { S.appeal.add(rid); showAppeal(); });
      const td = el("td"); td.appendChild(b); tr.appendChild(td); tr.appendChild(el("td"));
    } else if (v.may_decide || v.may_appeal) { tr.appendChild(el("td")); tr.appendChild(el("td")); }
    tb.appendChild(tr);
  }
  $("review-bar").hidden = !v.may_decide; $("review-msg").textContent = "";
  $("appeal-form").hidden = true; $("appeal-msg").textContent = "";
  const fb = $("findings"); clear(fb);
  if (!v.findings.length) fb.appendChild(el("div", "empty", "无违规"));
  const hit = new Set();
  for (const f of v.findings) {
    const b = el("div", "finding " + (f.severity || "")); b.dataset.rule = f.rule_id;
    b.appendChild(el("span", "badge " + (f.severity === "critical" ? "critical" : ""), f.severity)); b.appendChild(el("b", null, " " + f.rule_id + " "));
    b.appendChild(el("span", null, f.message || ""));
    for (const e of f.evidence || []) { if (e.utterance_index === null || e.utterance_index === undefined) continue; hit.add(e.utterance_index);
      const ev = el("div", "ev"); ev.dataset.uttIndex = e.utterance_index;
      ev.appendChild(document.createTextNode("#" + e.utterance_index + " " + fmt(e.start) + "s ")); if (e.matched) ev.appendChild(el("span", "m", e.matched));
      ev.addEventListener("click", () => { const u = document.querySelector('#transcript .utt[data-utt-index="' + e.utterance_index + '"]'); if (u) u.scrollIntoView({ block:"center" }); });
      if (v.audio && typeof e.start === "number" && typeof e.end === "number") {
        // the evidence span from the call's redacted recording (the server cuts the clip)
        const p = el("span", "play"); p.appendChild(el("span", "play-icon", " ▶ ")); p.title = "播放证据录音（个人信息已消音）";
        const a = document.createElement("audio"); a.controls = true; a.preload = "none";
        a.addEventListener("click", (x) => x.stopPropagation());
        a.src = "/api/calls/" + encodeURIComponent(v.call_id) + "/audio?start=" + e.start.toFixed(2) + "&end=" + e.end.toFixed(2);
        p.appendChild(a); ev.appendChild(p); }
      b.appendChild(ev); }
    fb.appendChild(b);
  }
  const tx = $("transcript"); clear(tx);
  for (const u of v.transcript) { const d = el("div", "utt " + (u.role || "unknown") + (hit.has(u.index) ? " hit" : "")); d.dataset.uttIndex = u.index;
    d.appendChild(el("div", "t", "#" + u.index + " " + (ROLE[u.role] || u.role) + " · " + fmt(u.start) + "s – " + fmt(u.end) + "s")); d.appendChild(el("div", "tx", u.text)); tx.appendChild(d); }
  const hb = $("history"); clear(hb);
  if (!v.versions.length) hb.appendChild(row(["暂无版本（机器评分）"]));
  for (const x of v.versions) {
    const why = x.kind === "appeal" ? "申诉 " + x.decisions.map((d) => d.rule_id).join(", ") + "：" + x.why
      : x.decisions.map((d) => d.rule_id + " " + (d.action === "confirm" ? "确认" : "") + (VERDICT[d.before] || d.before) + "→" + (VERDICT[d.after] || d.after) + "：" + d.comment).join("；");
    const tr = row(["v" + x.version, x.kind === "review" ? "复核" : "申诉", x.by, fmtAt(x.at), why, fmt(x.score)]);
    tr.className = "version"; tr.dataset.version = x.version; tr.dataset.kind = x.kind; hb.appendChild(tr);
  }
}
function showAppeal() { $("appeal-form").hidden = false; $("appeal-rules").textContent = [...S.appeal].join(", "); $("appeal-reason").focus(); }
async function submitReview() {
  const v = S.view; const decisions = []; const msg = $("review-msg"); msg.className = "msg err";
  for (const tr of document.querySelectorAll("#verdicts tr.verdict")) {
    const sel = tr.querySelector("select.action"); if (!sel || !sel.value) continue;
    const comment = tr.querySelector("input.comment").value.trim();
    if (!comment) { msg.textContent = tr.dataset.rule + "：请填写意见"; return; }
    const [action, to] = sel.value.split(":"); const d = { rule_id: tr.dataset.rule, action, comment }; if (to) d.to = to; decisions.push(d);
  }
  if (!decisions.length) { msg.textContent = "请至少处理一项判定"; return; }
  $("submit-review").disabled = true;
  const [st, out] = await postJSON("/api/review/calls/" + encodeURIComponent(v.call_id) + "/decide", { base_version: v.version, decisions });
  $("submit-review").disabled = false;
  if (st !== 200) { msg.textContent = (out.detail || ("HTTP " + st)) + (st === 409 ? "（已被他人更新，请刷新）" : ""); return; }
  S.view = Object.assign(out.view, { may_decide: v.may_decide, may_appeal: v.may_appeal, agent_id: v.agent_id, teams: v.teams, audio: v.audio });
  renderCall(); const m = $("review-msg"); m.className = "msg ok"; m.textContent = "已提交：版本 v" + out.version.version + "，得分 " + fmt(out.version.score);
  if (!$("queue-card").hidden) loadQueue();
}
async function submitAppeal() {
  const v = S.view; const reason = $("appeal-reason").value.trim(); const msg = $("appeal-msg"); msg.className = "msg err";
  if (!reason) { msg.textContent = "请填写申诉理由"; return; }
  const [st, out] = await postJSON("/api/review/calls/" + encodeURIComponent(v.call_id) + "/appeal", { rule_ids: [...S.appeal], reason });
  if (st !== 200) { msg.textContent = out.detail || ("HTTP " + st); return; }
  await openCall(v.call_id); const m = $("appeal-msg"); $("appeal-form").hidden = false; m.className = "msg ok"; m.textContent = "申诉已提交（版本 v" + out.version.version + "），已进入复核队列";
  loadMine();
}
async function claim() { const v = S.view; const [st, out] = await postJSON("/api/review/calls/" + encodeURIComponent(v.call_id) + "/claim", {});
  if (st === 200) { await openCall(v.call_id); loadQueue(); } else $("review-msg").textContent = out.detail || ("HTTP " + st); }
async function start() {
  const [st, me] = await getJSON("/api/me");
  if (st === 401) { $("need-login").hidden = false; return; }
  S.me = me; $("me").textContent = me.name + " · " + (USER_ROLE[me.role] || me.role); $("app").hidden = false;
  if (me.role === "agent") { $("page-title").textContent = "我的通话与申诉"; document.title = "我的通话与申诉"; }
  const reviewer = ["qa", "admin", "supervisor"].includes(me.role);
  $("queue-card").hidden = !reviewer; $("mine-card").hidden = me.role !== "agent";
  if (!reviewer && me.role !== "agent") { $("need-login").hidden = false; $("need-login").textContent = "此角色不参与复核（" + (USER_ROLE[me.role] || me.role) + "）"; $("app").hidden = true; return; }
  if (reviewer) { loadQueue(); setInterval(loadQueue, 15000); }
  if (me.role === "agent") loadMine();
  if (location.hash.startsWith("#call=")) openCall(decodeURIComponent(location.hash.slice(6)));
}
$("f-go").addEventListener("click", loadQueue);
for (const id of ["f-reason", "f-state"]) $(id).addEventListener("change", loadQueue);
$("f-team").addEventListener("change", loadQueue);
$("submit-review").addEventListener("click", submitReview);
$("submit-appeal").addEventListener("click", submitAppeal);
$("claim-btn").addEventListener("click", claim);
start();
</script>
</body>
</html>
"""


def render_review_page(nonce: str, title: str = "通话质检实时看板") -> str:
    """The review page with a per-response CSP nonce."""
    return _PAGE.replace("__NONCE__", nonce).replace("__TITLE__", html.escape(title))
