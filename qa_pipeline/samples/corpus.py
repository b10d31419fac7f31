"""An untuned accuracy corpus: whole generated calls whose every verdict is known.

The scenario calls (``scenarios.yaml``) are tuned turn by turn until Whisper hears their
key phrases (``tuning.yaml``), so no accuracy figure may come from them. This module
composes calls instead, from behaviour templates with several wordings per slot, seeded
and reproducible, with **no per-turn tuning**: nothing in a script or a voice is chosen
by listening to how Whisper hears it.

* :func:`plan_corpus` composes the scripts (no audio): company, agent, customer, topic,
  call metadata (time of day, holidays from the pack's calendar, direction) and the
  behaviours the call shows (a greeting left out, a banned phrase, a silent hold, a
  talk-over, the agent hanging up first, ...). Every rule of the default pack gets an
  expected verdict (``passed`` / ``failed`` / ``not_applicable``) derived from how the
  call was built, never from running the pipeline. Timings are built well clear of the
  pack's thresholds; a composition that lands near one is drawn again.
* :func:`generate_corpus` renders the calls: ``espeak-ng -v cmn-latn-pinyin`` with
  several voice variants, speeds and pitches, telephone band (300-3400 Hz) at 8 kHz,
  white or pink line noise at several SNRs, babble (other speech mixed low), 8 kHz PCM16
  and mu-law and some 16 kHz calls; a channel is digital silence once its side hung up.
  Each ``<id>.json`` sidecar holds the call metadata, the company name (the only
  configuration the call needs: ``rules.settings.company_name``), every turn's script and
  its real speech start/end, the expected verdicts, recomputed from the rendered timing,
  and a reference transcript in the JSON transcript format (``transcribe --json``).
* :func:`corpus_turns` lists every turn's audio and script, for the ASR benchmark.

Report figures on a seed you did not look at while building (see benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..messages import SCHEMA_VERSION, Direction, Role
from ..text import match_form
from .generate import (
    CHANNEL_ROLES,
    ENCODINGS,
    GENERATOR_VERSION,
    Audio,
    SampleError,
    Voice,
    check_tools,
    render_speech,
)

CORPUS_VERSION = "3"
"""Bump when a change here changes the scripts, labels or audio: every cached call is redone."""

DEFAULT_SEED = 1
DEFAULT_CALLS = 40

# espeak-ng variants of the cmn-latn-pinyin voice that a listener can follow. Checked by a
# listening proxy (Whisper base, the default model, on three neutral sentences that are in
# no script here, 8 kHz mu-law telephone band, speed 165): of 28 variants tried, those with
# a character error above 0.5 (m1-m3, m6-m8, aunty, linda, david, michael, paul, ...) or a
# decode loop (f3) were left out as garbled. The proxy only removes garbled voices; it
# does not rank the rest, and no script or turn is chosen by it.
VOICE_VARIANTS: tuple[str, ...] = ("f1", "f2", "f4", "f5", "m4", "m5", "Annie", "steph", "quincy")

VERDICTS = ("passed", "failed", "not_applicable")

# Behaviours a call may show; each makes (at least) the named rules fail.
FAULTS: Mapping[str, tuple[str, ...]] = {
    "late_answer": ("OPEN-ANSWER",),
    "no_greeting": ("OPEN-GREET",),
    "wrong_time_greeting": ("OPEN-TIME",),
    "holiday_no_greeting": ("OPEN-HOLIDAY",),
    "no_company": ("OPEN-IDENT",),
    "no_self_ident": ("OPEN-IDENT",),
    "no_name_ask": ("OPEN-NAME",),
    "no_purpose": ("OPEN-PURPOSE",),
    "no_confirm": ("OUT-CONFIRM",),
    "quiet_hours": ("OUT-HOURS",),
    "wei": ("BAN-WEI",),
    "policy": ("BAN-POLICY",),
    "dismiss": ("BAN-DISMISS",),
    "flat_no": ("BAN-NO",),
    "blame": ("BAN-BLAME",),
    "promise": ("OVER-PROMISE",),
    "curt": ("COURT-WORDS",),
    "ni": ("COURT-NIN",),
    "no_apology": ("APOLOGY-FIRST",),
    "no_empathy": ("EMPATHY",),
    "no_clarify": ("CLARIFY",),
    "no_solution": ("SOLUTION",),
    "interrupt": ("NO-INTERRUPT",),
    "slow_reply": ("RESP-GAP",),
    "silent_hold": ("HOLD-NOTICE",),
    "hold_no_thanks": ("HOLD-NOTICE",),
    "dead_air": ("DEAD-AIR",),
    "short_call": ("DURATION",),
    "long_call": ("DURATION",),
    "quiet_agent": ("PACE",),
    "no_confirm_sat": ("CONFIRM-SAT",),
    "no_farewell": ("CLOSE-THANKS",),
    "agent_hangs_up": ("CLOSE-HANGUP",),
    "eoac_no_offer": ("EOAC",),
}
_INBOUND_ONLY = {"late_answer", "no_name_ask", "no_purpose"}
_OUTBOUND_ONLY = {"no_confirm", "quiet_hours"}
_NEEDS_PROBLEM = {"no_clarify", "no_solution", "eoac_no_offer", "interrupt"}
_NEEDS_COMPLAINT = {"no_apology", "no_empathy"}
_EXCLUSIVE = {"short_call"}

COMPANIES = (
    "远航",
    "金桥",
    "安达",
    "恒通",
    "星辰",
    "东方",
    "佳美",
    "同心",
    "天宇",
    "新世纪",
    "蓝海",
)
AGENT_NAMES = ("小王", "小李", "小陈", "小张", "小刘", "李娜", "王芳", "陈静", "刘洋", "赵敏")
AGENT_NUMBERS = ("三零二", "一二八七", "五五六", "八零一六", "二四九", "七七零三", "六一五")
SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "周", "吴", "徐")
PRODUCTS = ("洗衣机", "空调", "冰箱", "电视", "热水器", "吸尘器", "电饭煲")
BABBLE = (
    "明天下午的会议改到三点钟开始。",
    "这个报表你再核对一遍数字。",
    "外面好像下雨了，记得带伞。",
    "中午我们去楼下吃面条吧。",
    "那个文件我已经发到群里了。",
    "这周的排班表贴在墙上了。",
)

# The pack's words that decide keyword (exact) conditions; kept here to audit scripts.
COURTESY = ("请", "谢谢", "感谢", "对不起", "抱歉", "请稍候", "不客气", "没关系", "麻烦您")
COMPLAINT = (
    "投诉", "不满意", "太差", "生气", "气死", "什么破", "搞什么", "太慢了", "没人管",
    "差评", "受不了", "太过分", "骗人",
)  # fmt: skip
PROBLEM = (
    "问题", "怎么回事", "坏了", "不能用", "用不了", "没收到", "出错", "故障", "投诉", "退货",
    "退款", "为什么",
)  # fmt: skip
QUIET_HOURS = ((0, 0, 7, 30), (22, 0, 24, 0), (11, 30, 13, 0), (17, 30, 19, 0))


# -- plans -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One planned turn. ``gap``: seconds after the previous turn's end (negative = it
    starts inside it); the first turn's gap is its start. ``tokens``: what the turn says,
    in the rules' terms (``greet``, ``company``, ``hold_notice``, ...)."""

    role: str
    text: str
    gap: float
    tokens: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VoicePlan:
    variant: str
    speed: int
    pitch: int
    level_dbfs: float

    def voice(self) -> Voice:
        return Voice(self.variant, self.speed, self.pitch, 0, self.level_dbfs)


@dataclass(frozen=True, slots=True)
class AudioPlan:
    rate: int
    encoding: str
    band: bool  # telephone band-pass 300-3400 Hz
    agent: VoicePlan
    customer: VoicePlan
    noise: str  # white | pink
    snr_db: float  # line noise under the nominal speech level (-22 dBFS)
    babble_channel: int | None = None
    babble_db: float = 0.0  # babble level under the channel's speech level


@dataclass(frozen=True, slots=True)
class CallPlan:
    id: str
    seed: int
    company: str
    started_at: str | None
    direction: str
    agent_id: str
    holiday: str | None
    lines: tuple[Line, ...]
    faults: tuple[str, ...]
    topic: str
    hangup_gap: float  # the first side to hang up does so this long after the last speech
    hangup_lag: float  # the other side hangs up this long after the first
    audio: AudioPlan
    notes: tuple[str, ...] = field(default=())

    def doc(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Timing:
    """Where each line's speech really is (rendered or estimated) and the channel ends."""

    spans: tuple[tuple[float, float], ...]
    channel_ends: tuple[float, float]
    levels: tuple[float, ...]

    @property
    def duration(self) -> float:
        return max(self.channel_ends)


class _Retry(Exception):
    """This draw lands too close to a threshold or breaks a keyword audit: draw again."""


class _Script:
    def __init__(self, rng: random.Random, curt: bool, ni: bool) -> None:
        self.rng = rng
        self.curt = curt
        self.ni = ni
        self.lines: list[Line] = []

    def pick(self, options: Sequence[tuple[str, tuple[str, ...]]]) -> tuple[str, tuple[str, ...]]:
        pool = list(options)
        polite = [o for o in pool if any(w in o[0] for w in COURTESY)]
        if self.curt:
            pool = [o for o in pool if o not in polite] or pool
        elif polite and self.rng.random() < 0.7:
            pool = polite  # most agents are polite most of the time
        return self.rng.choice(pool)

    def a(
        self, text: str, tokens: Sequence[str] = (), gap: float | None = None, free: bool = False
    ) -> None:
        if self.ni and free:
            text = text.replace("您", "你")
        if gap is None:
            gap = self.rng.uniform(0.5, 1.5)
        self.lines.append(Line("agent", text, round(gap, 2), tuple(tokens)))

    def c(self, text: str, gap: float | None = None) -> None:
        if gap is None:
            gap = self.rng.uniform(0.4, 1.3)
        self.lines.append(Line("customer", text, round(gap, 2), ()))


# -- wordings ----------------------------------------------------------------------------

_W = tuple[tuple[str, tuple[str, ...]], ...]

PURPOSE: _W = (
    ("请问有什么可以帮您？", ("purpose",)),
    ("有什么可以帮您？", ("purpose",)),
    ("请问有什么能帮您？", ("purpose",)),
    ("有什么我可以为您服务的？", ("purpose",)),
)
NAME_ASK: _W = (
    ("好的，请问您怎么称呼？", ("name_ask",)),
    ("请问您贵姓？", ("name_ask",)),
    ("您贵姓？", ("name_ask",)),
    ("好的，麻烦问一下怎么称呼您？", ("name_ask",)),
)
EXPLORE: _W = (
    ("请问是什么情况？能具体说一下吗？", ("explore",)),
    ("能具体说一下吗？", ("explore",)),
    ("您遇到了什么情况，能具体说一下吗？", ("explore",)),
)
CLARIFY_W = (
    ("我跟您核对一下，{p}，对吗？", ("clarify",)),
    ("您的意思是{p}，对吗？", ("clarify", "explore")),
    ("也就是说{p}，是吗？", ("clarify",)),
    ("我确认一下，{p}，是这样吧？", ("clarify",)),
)
APOLOGY: _W = (
    ("非常抱歉，给您带来不便了。", ("apology",)),
    ("真的很抱歉。", ("apology",)),
    ("对不起，这是我们的失误。", ("apology",)),
    ("不好意思。", ("apology",)),
)
EMPATHY: _W = (
    ("我理解您的心情。", ("empathy",)),
    ("我能理解您现在很着急。", ("empathy",)),
    ("换成是我，我也会着急的。", ("empathy",)),
    ("如果我是您，我也会觉得不高兴。", ("empathy",)),
)
HOLD_NOTICE: _W = (
    ("请您稍等，我帮您查询一下。", ("hold_notice",)),
    ("好的，请稍等。", ("hold_notice",)),
    ("稍等一下，我帮您查询一下。", ("hold_notice",)),
)
HOLD_THANKS: _W = (
    ("让您久等了，", ("hold_thanks",)),
    ("感谢您的耐心等待，", ("hold_thanks",)),
    ("久等了，", ("hold_thanks",)),
)
CONFIRM_SAT: _W = (
    ("请问还有什么需要我为您做的吗？", ("confirm_sat",)),
    ("还有其他可以帮您的吗？", ("confirm_sat",)),
    ("您看还有其他问题吗？", ("confirm_sat",)),
    ("还有别的问题吗？", ("confirm_sat",)),
)
CUSTOMER_DONE = ("没有了，谢谢。", "没了，谢谢你。", "暂时没有了。", "没有了。")
FAREWELL: _W = (
    ("感谢您的来电，祝您生活愉快，再见！", ("farewell",)),
    ("好的，谢谢您的来电，再见。", ("farewell",)),
    ("不客气，欢迎再次来电，再见。", ("farewell",)),
    ("好，再见。", ("farewell",)),
)
NO_FAREWELL: _W = (("好的。", ()), ("嗯，那就这样。", ()), ("行，就这样吧。", ()))
COMPANY_FORMS = ("{co}客服中心", "这里是{co}客服", "{co}客服热线")
SELF_FORMS = ("我是工号{num}", "我是{name}", "我是客服{name}，工号{num}", "我叫{name}")


@dataclass(frozen=True, slots=True)
class Topic:
    key: str
    problem: bool
    ask: str  # the customer's first statement
    detail: str = ""  # the customer's details (problem topics)
    paraphrase: str = ""  # what the agent repeats back (problem topics)
    offer: str = ""
    result: str = ""  # the agent's answer after looking it up
    action: str = ""


TOPICS: tuple[Topic, ...] = (
    Topic("hours", False, "你好，我想问一下你们周末营业厅几点关门？",
          result="周末营业厅是早上九点到晚上六点，您可以在这个时间过来办理。"),
    Topic("points", False, "我想查一下我的积分还有多少。",
          result="您现在的积分是两千三百分，可以用来兑换话费。"),
    Topic("plan", False, "我想了解一下你们新出的流量套餐。",
          result="新套餐每个月五十八元，包含通话三百分钟，您可以在手机上直接办理。"),
    Topic("invoice", False, "我想开一张上个月的发票。",
          result="发票已经给您开好了，会发到您登记的邮箱里。"),
    Topic("address", False, "我想把收货地址改成公司的地址，改到海淀区中关村大街二十号。",
          result="已经帮您把地址改好了，下一次的订单会送到新地址。"),
    Topic("delivery", True, "我上周在你们这儿买了一台{product}，到现在还没收到。",
          detail="订单号是一二三四五六，网上显示已经发货五天了。",
          paraphrase="您的{product}已经发货五天了还没有送到",
          offer="我建议先帮您催一下快递，如果后天还没到就给您重新发一台。",
          result="您的{product}现在在转运中心，物流有些延误。",
          action="已经为您提交了加急处理"),
    Topic("broken", True, "我家的{product}坏了，一打开就自动关机。",
          detail="买了才两个月，开机以后响一下就灭了。",
          paraphrase="{product}开机以后响一声就自动关机",
          offer="我们可以为您安排师傅上门检测，如果是质量原因就免费维修。",
          result="您的{product}还在保修期内，可以免费上门维修。",
          action="我这边已经为您登记了上门维修"),
    Topic("broadband", True, "我家的宽带从昨天开始就用不了了。",
          detail="猫上面的灯一直在闪，电脑连不上网。",
          paraphrase="从昨天开始宽带连不上网，设备的灯一直在闪",
          offer="建议您先把设备断电重启一次，如果还不行就派师傅过去。",
          result="您那个小区昨天晚上线路有检修，可能受到了影响。",
          action="已经为您提交了线路检修申请"),
    Topic("bill", True, "我这个月的账单好像出错了，多扣了五十块钱。",
          detail="我没有用那么多流量，以前每个月都是八十块。",
          paraphrase="这个月账单比平时多了五十块钱",
          offer="给您两个方案，可以退回到原来的账户，也可以抵扣下个月的话费。",
          result="这个月多出来的是一笔重复扣费。",
          action="已经为您提交了退费申请"),
    Topic("return", True, "我买的{product}尺寸不对，放不进去，我想退货。",
          detail="是上个星期五收到的，包装都还在。",
          paraphrase="{product}尺寸不合适，想要退回去",
          offer="您可以选择直接退货，也可以换一个小一点的型号。",
          result="您的订单还在七天无理由退换的时间内。",
          action="已经为您办理了退货手续"),
)  # fmt: skip
COMPLAINTS = (
    "你们的服务也太差了！",
    "我都等了好几天了，太慢了！",
    "我真的很生气，打了三次电话都没人管。",
    "再这样我就要投诉你们了！",
    "你们这样处理我很不满意。",
)
SOLUTIONS = (
    ("我马上为您跟进，预计两个工作日内给您答复。", ("action", "solution")),
    ("我们会尽快联系您，大概三天之内处理好。", ("solution",)),
    ("预计三个工作日以内会有专人联系您。", ("solution",)),
    ("我们将会马上处理，稍后给您回电。", ("action", "solution")),
)
SUGGESTIONS = (
    "对了，我提个建议，你们的营业厅周末能不能晚一点关门？",
    "另外说一句，你们送货之前能不能先打个电话？",
)
OUTBOUND_TOPICS = (
    ("followup", "上周我们的师傅到您家维修了{product}，想回访一下现在使用情况怎么样？",
     "挺好的，现在用着挺正常的。", "好的，那就好，后面有需要您随时联系我们。"),
    ("promo", "我们最近推出了一个新的宽带套餐，每个月六十九元，网速是三百兆，您有兴趣了解一下吗？",
     "我先考虑一下吧。", "好的，您考虑好了可以随时打这个号码办理。"),
    ("reminder", "您本月的账单还没有缴纳，提醒您在二十号之前缴费。",
     "好的，我明天就交。", "好的，您可以在手机上直接缴费，很方便。"),
)  # fmt: skip
OUTBOUND_PROBLEM = ("其实还是有问题，昨天又坏了，又开不了机。", "broken")


# -- composition -------------------------------------------------------------------------


def _holidays() -> list[tuple[str, date, date, list[str]]]:
    from ..rules import load_pack

    out = []
    for h in load_pack().settings.holidays:
        first = h.date or h.from_
        last = h.date or h.to or first
        assert first is not None and last is not None
        out.append((h.name, first, last, list(h.greeting)))
    return out


def _in_quiet(t: time) -> bool:
    m = t.hour * 60 + t.minute
    return any(a * 60 + b <= m < c * 60 + d for a, b, c, d in QUIET_HOURS)


def _draw_start(
    rng: random.Random, kind: str, holidays: list[tuple[str, date, date, list[str]]]
) -> tuple[datetime | None, str | None]:
    if kind == "unknown":
        return None, None
    if kind == "holiday":
        name, first, last, _ = rng.choice(holidays)
        day = first + timedelta(days=rng.randint(0, (last - first).days))
    else:
        while True:
            day = date(2026, 1, 1) + timedelta(days=rng.randint(0, 364))
            if not any(
                a - timedelta(days=1) <= day <= b + timedelta(days=1) for _, a, b, _ in holidays
            ):
                break
        name = None
    ranges = {
        "morning": (8 * 60 + 10, 11 * 60 + 15),
        "afternoon": (13 * 60 + 20, 17 * 60 + 10),
        "evening": (19 * 60 + 20, 21 * 60 + 40),
        "quiet": rng.choice(
            [
                (7 * 60 + 2, 7 * 60 + 20),
                (11 * 60 + 40, 12 * 60 + 50),
                (17 * 60 + 40, 18 * 60 + 50),
                (22 * 60 + 10, 23 * 60 + 30),
            ]
        ),
    }
    lo, hi = ranges[
        "morning"
        if kind == "holiday" and rng.random() < 0.5
        else ("afternoon" if kind == "holiday" else kind)
    ]
    m = rng.randint(lo, hi)
    return datetime.combine(day, time(m // 60, m % 60, rng.randint(0, 59))), name


def _voices(rng: random.Random, quiet_agent: bool, rate: int) -> tuple[VoicePlan, VoicePlan]:
    av, cv = rng.sample(VOICE_VARIANTS, 2)
    agent = VoicePlan(
        av,
        rng.randint(150, 190),
        rng.randint(30, 70),
        -47.0 if quiet_agent else round(rng.uniform(-26, -18), 1),
    )
    customer = VoicePlan(
        cv, rng.randint(140, 190), rng.randint(25, 75), round(rng.uniform(-26, -18), 1)
    )
    return agent, customer


def _audio_plan(rng: random.Random, quiet_agent: bool) -> AudioPlan:
    rate, encoding = rng.choices(
        [(8000, "ulaw"), (8000, "pcm16"), (16000, "pcm16")], [0.45, 0.35, 0.2]
    )[0]
    agent, customer = _voices(rng, quiet_agent, rate)
    babble = rng.random() < 0.3
    return AudioPlan(
        rate=rate,
        encoding=encoding,
        band=rate == 8000,
        agent=agent,
        customer=customer,
        noise=rng.choice(["white", "pink"]),
        snr_db=40.0 if quiet_agent else rng.choice([30.0, 24.0, 18.0, 14.0]),
        babble_channel=rng.choice([0, 1]) if babble else None,
        babble_db=round(rng.uniform(22, 30), 1) if babble else 0.0,
    )


def _deal_faults(rng: random.Random, n: int) -> list[list[str]]:
    """Faults per call: a shuffled deck of every fault, dealt one to three per call (some
    calls none), refilled when empty, so that every fault occurs across the corpus."""
    deck: list[str] = []
    out: list[list[str]] = []
    for _ in range(n):
        k = rng.choices([0, 1, 2, 3], [0.15, 0.35, 0.35, 0.15])[0]
        mine: list[str] = []
        tries = 0
        while len(mine) < k and tries < 20:
            tries += 1
            if not deck:
                deck = sorted(FAULTS)
                rng.shuffle(deck)
            f = deck.pop()
            if _compatible(mine + [f]):
                mine.append(f)
            else:
                deck.insert(0, f)
        out.append(mine)
    return out


def _compatible(faults: list[str]) -> bool:
    s = set(faults)
    if s & _EXCLUSIVE and len(s) > 1:
        return False
    if s & _INBOUND_ONLY and s & _OUTBOUND_ONLY:
        return False
    if {"silent_hold", "hold_no_thanks"} <= s or {"short_call", "long_call"} <= s:
        return False
    if "no_greeting" in s and ("wrong_time_greeting" in s or "holiday_no_greeting" in s):
        return False
    if "wrong_time_greeting" in s and "holiday_no_greeting" in s:
        return False
    return not ({"curt", "ni"} <= s)


def plan_corpus(n: int = DEFAULT_CALLS, seed: int = DEFAULT_SEED) -> list[CallPlan]:
    """Compose ``n`` calls (no audio). The same ``n`` and ``seed`` give the same plans."""
    rng = random.Random(f"qa-corpus:{seed}")
    holidays = _holidays()
    dealt = _deal_faults(rng, n)
    plans = []
    for i, faults in enumerate(dealt):
        call_rng = random.Random(f"qa-corpus:{seed}:{i}")
        for _attempt in range(400):
            try:
                plan = _compose(call_rng, seed, i, faults, holidays)
                check_margins(plan, estimate_timing(plan))
            except _Retry:
                continue
            plans.append(plan)
            break
        else:  # pragma: no cover - the templates always admit a composition
            raise SampleError(f"corpus call {i}: no composition clear of the thresholds")
    return plans


def _compose(
    rng: random.Random,
    seed: int,
    index: int,
    faults: list[str],
    holidays: list[tuple[str, date, date, list[str]]],
) -> CallPlan:
    f = set(faults)
    if f & _OUTBOUND_ONLY:
        direction = "outbound"
    elif f & (_INBOUND_ONLY | _NEEDS_PROBLEM | _NEEDS_COMPLAINT | _EXCLUSIVE):
        direction = "inbound"
    else:
        direction = "outbound" if rng.random() < 0.3 else "inbound"
    if "holiday_no_greeting" in f:
        when = "holiday"
    elif "quiet_hours" in f:
        when = "quiet"
    elif "wrong_time_greeting" in f:
        when = rng.choice(["morning", "afternoon", "evening"])
    else:
        when = rng.choices(
            ["morning", "afternoon", "evening", "holiday", "unknown"], [0.3, 0.3, 0.12, 0.16, 0.12]
        )[0]
    started, holiday = _draw_start(rng, when, holidays)
    if (
        direction == "outbound"
        and "quiet_hours" not in f
        and started is not None
        and _in_quiet(started.time())
    ):
        raise _Retry
    morning = started is not None and started.hour < 12
    co = rng.choice(COMPANIES)
    name, num = rng.choice(AGENT_NAMES), rng.choice(AGENT_NUMBERS)
    surname = rng.choice(SURNAMES)
    title = rng.choice(["先生", "女士"])
    product = rng.choice(PRODUCTS)
    sc = _Script(rng, curt="curt" in f, ni="ni" in f)

    # greeting
    greet: list[tuple[str, tuple[str, ...]]] = []
    if "no_greeting" not in f:
        if holiday is not None:
            hg = next(h for h in holidays if h[0] == holiday)[3]
            if "holiday_no_greeting" in f:
                greet.append(("您好", ("greet", "greet_day")))
            else:
                g = rng.choice(hg)
                greet.append((f"您好，{g}", ("greet", "greet_day", "holiday")))
        elif "wrong_time_greeting" in f:
            greet.append(
                ("您好", ("greet", "greet_day"))
                if morning
                else ("早上好", ("greet", "greet_morning"))
            )
        elif morning:
            greet.append(
                rng.choice(
                    [
                        ("早上好", ("greet", "greet_morning")),
                        ("上午好", ("greet", "greet_morning")),
                        ("早上好，您好", ("greet", "greet_morning", "greet_day")),
                    ]
                )
            )
        elif started is not None and started.hour >= 18:
            greet.append(
                rng.choice([("您好", ("greet", "greet_day")), ("晚上好", ("greet", "greet_day"))])
            )
        else:
            greet.append(
                rng.choice([("您好", ("greet", "greet_day")), ("下午好", ("greet", "greet_day"))])
            )
    greet_text = greet[0][0] if greet else ""
    greet_tokens = greet[0][1] if greet else ()
    wei = "wei" in f and rng.random() < 0.6
    if wei:
        greet_text = "喂，" + greet_text if greet_text else "喂"
        greet_tokens = (*greet_tokens, "wei")
    company_form = rng.choice(COMPANY_FORMS).format(co=co)
    self_form = rng.choice(SELF_FORMS).format(name=name, num=num)
    ident: list[str] = []
    ident_tokens: list[str] = []
    if "no_company" not in f:
        ident.append(company_form)
        ident_tokens.append("company")
    if "no_self_ident" not in f:
        ident.append(self_form)
        ident_tokens.append("self")

    if "short_call" in f:
        sc.a(
            "，".join([x for x in (greet_text, f"{co}客服") if x]) + "。",
            (*greet_tokens, "company"),
            gap=rng.uniform(0.6, 1.5),
        )
        sc.c(rng.choice(["打错了，不好意思。", "不好意思，打错了。"]))
        sc.a(*sc.pick((("没关系，再见。", ("farewell",)), ("好，再见。", ("farewell",)))))
        return _finish(
            rng, seed, index, faults, co, started, direction, holiday, sc, "wrong_number", num
        )

    if direction == "inbound":
        lead = rng.uniform(13.5, 16.0) if "late_answer" in f else rng.uniform(0.6, 3.0)
        parts = [greet_text] if greet_text else []
        parts += ident
        tokens = [*greet_tokens, *ident_tokens]
        opening = "，".join(parts)
        if "no_purpose" not in f:
            ptxt, ptok = sc.pick(PURPOSE)
            opening = f"{opening}，{ptxt}" if opening else ptxt
            tokens += ptok
        else:
            opening += "。"
        sc.a(opening, tokens, gap=lead)
        topic = rng.choice(TOPICS)
        complaint = topic.problem and (bool(f & _NEEDS_COMPLAINT) or rng.random() < 0.35)
        if f & (_NEEDS_PROBLEM | _NEEDS_COMPLAINT) and not topic.problem:
            raise _Retry
        if "no_name_ask" not in f:
            ask = topic.ask.format(product=product)
            sc.c(ask)
            sc.a(*sc.pick(NAME_ASK))
            sc.c(
                rng.choice(
                    [f"我姓{surname}。", f"免贵姓{surname}。", f"叫我{surname}{title}就行。"]
                )
            )
            _topic_body(sc, rng, f, topic, complaint, surname + title, product, restate=True)
        else:
            sc.c(topic.ask.format(product=product))
            _topic_body(sc, rng, f, topic, complaint, surname + title, product, restate=False)
        key = topic.key + ("+complaint" if complaint else "")
    else:
        sc.c(rng.choice(["喂，你好？", "喂？哪位？", "你好。"]), gap=rng.uniform(1.0, 2.5))
        drop_who = "no_confirm" in f and rng.random() < 0.3
        drop_conv = "no_confirm" in f and not drop_who
        first = greet_text + "，" if greet_text else ""
        if not drop_who:
            first += rng.choice([f"请问是{surname}{title}吗？", f"请问您是{surname}{title}吗？"])
            sc.a(first, (*greet_tokens, "who"))
        else:
            sc.a(first + f"是{surname}{title}吧？", greet_tokens)
        sc.c(rng.choice(["对，我是。哪位？", "是我，你是哪里？", "嗯，是我。"]))
        key, say, reply, after = rng.choice(OUTBOUND_TOPICS)
        second = "，".join(ident) if ident else "我这边打电话过来"
        tokens2 = list(ident_tokens)
        if drop_conv:
            second += "，想跟您说一件事。"
        else:
            second += "，" + rng.choice(
                ["请问您现在方便接听吗？", "打扰您几分钟时间可以吗？", "您现在说话方便吗？"]
            )
            tokens2.append("convenient")
        sc.a(second, tokens2)
        sc.c(rng.choice(["方便，你说吧。", "可以，你说。", "嗯，你说。"]))
        problem = bool(f & (_NEEDS_PROBLEM | _NEEDS_COMPLAINT)) or (
            key == "followup" and rng.random() < 0.3
        )
        sc.a(say.format(product=product), (), free=True)
        if problem:
            if key != "followup":
                raise _Retry
            topic = next(t for t in TOPICS if t.key == "broken")
            sc.c(OUTBOUND_PROBLEM[0])
            complaint = bool(f & _NEEDS_COMPLAINT) or rng.random() < 0.3
            _topic_body(
                sc, rng, f, topic, complaint, surname + title, product, restate=False, outbound=True
            )
            key += "+problem" + ("+complaint" if complaint else "")
        else:
            sc.c(reply)
            sc.a(*sc.pick(((after, ()), ("好的，谢谢您。" + after, ()))), free=True)
            _extras(sc, rng, f, surname + title)
    _closing(sc, rng, f, outbound=direction == "outbound")
    return _finish(rng, seed, index, faults, co, started, direction, holiday, sc, key, num)


def _topic_body(
    sc: _Script,
    rng: random.Random,
    f: set[str],
    topic: Topic,
    complaint: bool,
    who: str,
    product: str,
    *,
    restate: bool,
    outbound: bool = False,
) -> None:
    fmt: Callable[[str], str] = lambda s: s.format(product=product)  # noqa: E731
    if restate and topic.problem:
        sc.c(rng.choice(["就是刚才说的，", "嗯，"]) + fmt(topic.ask).removeprefix("你好，"))
    if complaint:
        sc.c(rng.choice(COMPLAINTS))
        reply: list[tuple[str, tuple[str, ...]]] = []
        if "no_apology" not in f:
            reply.append(sc.pick(APOLOGY))
        if "no_empathy" not in f:
            reply.append(sc.pick(EMPATHY))
        if not reply or rng.random() < 0.5:
            reply.append((f"{who}，您先别着急，我来帮您看一下。", ()))
        sc.a("".join(t for t, _ in reply), [k for _, ts in reply for k in ts])
    if not topic.problem:
        _hold_and_answer(sc, rng, f, fmt(topic.result))
        _extras(sc, rng, f, who)
        return
    sc.a(*sc.pick(EXPLORE))
    long_detail = "interrupt" in f
    detail = fmt(topic.detail)
    if long_detail:
        detail += "我已经打了好几次电话了，每次都说让我再等等，到现在也没有一个准信。"
    sc.c(detail)
    if "interrupt" in f:
        sc.a("好的好的，我知道了，我知道了。", (), gap=-rng.uniform(1.6, 2.2))
        sc.c(rng.choice(["嗯。", "那你说吧。"]))
    if "no_clarify" not in f:
        t, tk = sc.pick(CLARIFY_W)
        sc.a(t.format(p=fmt(topic.paraphrase)), tk)
        sc.c(rng.choice(["对，没错。", "是的。", "对。"]))
    _hold_and_answer(sc, rng, f, fmt(topic.result))
    if "eoac_no_offer" not in f:
        sc.a(fmt(topic.offer), ("offer",), free=True)
        sc.c(rng.choice(["好的，那就这样吧。", "行，就按你说的办。", "可以。"]))
    if "no_solution" not in f:
        t, tk = rng.choice(SOLUTIONS)
        sc.a(t, tk, free=True)
        if "action" not in tk:
            sc.c("嗯，好。")
            sc.a(fmt(topic.action) + "。", ("action",), free=True)
    else:
        sc.a(fmt(topic.action) + "，有进展会通知您。", ("action",), free=True)
    _extras(sc, rng, f, who)


def _hold_and_answer(sc: _Script, rng: random.Random, f: set[str], result: str) -> None:
    kind = (
        "silent" if "silent_hold" in f
        else "no_thanks" if "hold_no_thanks" in f
        else "long" if "long_call" in f
        else rng.choices(["none", "hold", "short"], [0.45, 0.35, 0.2])[0]
    )  # fmt: skip
    if "slow_reply" in f:
        kind = "none"
    if "slow_reply" in f:
        sc.a(result, (), gap=rng.uniform(6.8, 8.3), free=True)
        return
    if kind == "none":
        sc.a(result, (), free=True)
        return
    if kind == "silent":
        sc.a(rng.choice(["嗯，好的。", "好。"]), ())
        sc.a(result, (), gap=rng.uniform(17.5, 24.0), free=True)
        return
    notice, ntok = sc.pick(HOLD_NOTICE)
    sc.a(notice, ntok)
    if kind == "no_thanks":
        sc.a(result, (), gap=rng.uniform(17.5, 24.0), free=True)
        return
    thanks, ttok = sc.pick(HOLD_THANKS)
    gap = {
        "hold": rng.uniform(17.5, 30.0),
        "short": rng.uniform(3.0, 8.0),
        "long": rng.uniform(240.0, 260.0),
    }[kind]
    sc.a(thanks + result, (*ttok,), gap=gap, free=True)


def _extras(sc: _Script, rng: random.Random, f: set[str], who: str) -> None:
    """Mid-call exchanges: banned phrases, a suggestion, a pause to decide, a second hold."""
    if "policy" in f:
        sc.c(rng.choice(["能不能给我通融一下？", "就不能特殊处理一下吗？"]))
        sc.a(
            rng.choice(
                [
                    "这是公司规定，我们也没有办法。",
                    "这是我们的规定，没办法改。",
                    "我们也没有办法，这是公司的规定。",
                ]
            ),
            ("policy",),
        )
    if "flat_no" in f:
        sc.c(rng.choice(["那能不能今天就给我处理好？", "那能不能先给我换一个新的？"]))
        sc.a(
            *rng.choice(
                [
                    ("不行。", ("flat_no",)),
                    ("我不知道，你去问一下别的部门吧。", ("flat_no",)),
                    ("不清楚。", ("flat_no",)),
                ]
            )
        )
        sc.c(rng.choice(["啊？那我该怎么办？", "那我问谁去？"]))
        sc.a("您可以等我们的短信通知。", (), free=True)
    if "blame" in f:
        sc.c(rng.choice(["那到底要怎么弄啊？", "我还是没太明白。"]))
        sc.a(
            rng.choice(
                [
                    "你听我说，刚才已经跟您讲过了，按照短信上的步骤操作就行。",
                    "我不是说过了吗？按照短信上的步骤操作就可以。",
                    "你搞错了，不是这个流程，是按短信上的步骤来。",
                ]
            ),
            ("blame",),
        )
    if "promise" in f:
        sc.a(
            rng.choice(
                [
                    "我保证明天之前一定给您处理好。",
                    "这个绝对没问题，您放心。",
                    "百分之百能给您处理好，您放心。",
                ]
            ),
            ("promise",),
        )
        sc.c(rng.choice(["那就好。", "好，那我等着。"]))
    elif rng.random() < 0.15:
        sc.a("这个我们不能保证，但是会尽快给您处理。", (), free=True)
        sc.c("好吧。")
    if "dismiss" in f or rng.random() < 0.2:
        sc.c(rng.choice(SUGGESTIONS))
        if "dismiss" in f:
            # both are the catalogue's examples of BAN-DISMISS only (rule-catalogue.md:
            # 我们公司的规定不可以随便修改的 is not one of BAN-POLICY's phrases)
            sc.a(
                *rng.choice(
                    [
                        ("这些意见早就有人提过了。", ("dismiss",)),
                        ("我们公司的规定不可以随便修改的。", ("dismiss",)),
                    ]
                )
            )
            sc.c("哦，好吧。")
        else:
            sc.a(
                *sc.pick(
                    (
                        ("非常感谢您的宝贵建议，我已经记录下来了，会反馈给相关部门。", ()),
                        ("好的，您的建议我记下来了，会反馈给相关部门。", ()),
                    )
                )
            )
            sc.c("好的。")
    if (
        "wei" in f
        and not sc.lines[0].text.startswith("喂")
        and not any("wei" in ln.tokens for ln in sc.lines)
    ):
        sc.a("我这边先看一下。", (), free=True)
        sc.a(
            rng.choice(["喂？喂，您还在吗？", "喂，说话呀。"]), ("wei",), gap=rng.uniform(2.0, 3.5)
        )
        sc.c("在的在的，刚才信号不好。")
    if "dead_air" in f:
        sc.a("那您考虑一下，是选上门还是选自己寄回去。", (), free=True)
        sc.c(
            "嗯，我想了一下，还是选上门吧，自己寄回去太麻烦了，我平时上班也没有时间跑快递点。",
            gap=rng.uniform(12.5, 15.0),
        )
        sc.a("好的，那就给您安排上门。", (), free=True)
    if "ni" in f:
        sc.a(f"{who}，您的信息我都记下来了，您留的手机号码能接到电话吧？", (), free=True)
        sc.c("能接到。")
        sc.a("好的，后面的进度您可以在手机上查，您有空的时候看一下。", (), free=True)


def _closing(sc: _Script, rng: random.Random, f: set[str], outbound: bool) -> None:
    if "no_confirm_sat" not in f:
        sc.a(*sc.pick(CONFIRM_SAT))
        sc.c(rng.choice(CUSTOMER_DONE))
    if "no_farewell" in f:
        sc.a(*rng.choice(NO_FAREWELL))
        if rng.random() < 0.5:
            sc.c("那再见。")
        return
    if outbound:
        sc.a(
            *sc.pick(
                (
                    ("好的，那就不打扰您了，祝您生活愉快，再见。", ("farewell",)),
                    ("感谢您的接听，祝您生活愉快，再见。", ("farewell",)),
                    ("好，再见。", ("farewell",)),
                )
            )
        )
    else:
        sc.a(*sc.pick(FAREWELL))
    if rng.random() < 0.5:
        sc.c(rng.choice(["再见。", "好的，拜拜。"]))


def _finish(
    rng: random.Random,
    seed: int,
    index: int,
    faults: list[str],
    co: str,
    started: datetime | None,
    direction: str,
    holiday: str | None,
    sc: _Script,
    topic: str,
    num: str,
) -> CallPlan:
    return CallPlan(
        id=f"corpus-{seed}-{index:03d}",
        seed=seed,
        company=co,
        started_at=started.isoformat() if started else None,
        direction=direction,
        agent_id=f"A{zlib.crc32(f'{seed}:{index}:{num}'.encode()) % 9000 + 1000}",
        holiday=holiday,
        lines=tuple(sc.lines),
        faults=tuple(sorted(faults)),
        topic=topic,
        hangup_gap=round(rng.uniform(0.4, 1.0), 2),
        hangup_lag=round(rng.uniform(1.6, 2.6), 2),
        audio=_audio_plan(rng, "quiet_agent" in faults),
    )


# -- timing and labels -------------------------------------------------------------------


def estimate_seconds(text: str, speed: int) -> float:
    """Rough espeak-ng cmn duration: syllables at ~1.28 x speed per minute + pauses."""
    syl = len(match_form(text))
    pauses = sum(text.count(p) for p in "，。？！、；") - 1
    return syl * 60.0 / (1.28 * speed) + 0.15 * max(pauses, 0)


def layout_lines(plan: CallPlan, durations: Sequence[float]) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    ends = {"agent": 0.0, "customer": 0.0}
    prev_end = 0.0
    for i, (ln, d) in enumerate(zip(plan.lines, durations, strict=True)):
        start = ln.gap if i == 0 else max(prev_end + ln.gap, ends[ln.role] + 0.3)
        spans.append((start, start + d))
        ends[ln.role] = start + d
        prev_end = start + d
    return spans


def channel_ends(plan: CallPlan, spans: Sequence[tuple[float, float]]) -> tuple[float, float]:
    last = {"agent": 0.0, "customer": 0.0}
    for ln, (_, e) in zip(plan.lines, spans, strict=True):
        last[ln.role] = max(last[ln.role], e)
    first = "agent" if "agent_hangs_up" in plan.faults else "customer"
    other = "customer" if first == "agent" else "agent"
    t_first = last[first] + plan.hangup_gap
    if first == "customer":
        t_first = max(t_first, last["agent"] + 0.3)
    t_other = max(t_first + plan.hangup_lag, last[other] + 0.5)
    ends = {first: t_first, other: t_other}
    return round(ends["agent"], 3), round(ends["customer"], 3)


def estimate_timing(plan: CallPlan) -> Timing:
    speed = {"agent": plan.audio.agent.speed, "customer": plan.audio.customer.speed}
    level = {"agent": plan.audio.agent.level_dbfs, "customer": plan.audio.customer.level_dbfs}
    spans = layout_lines(plan, [estimate_seconds(ln.text, speed[ln.role]) for ln in plan.lines])
    return Timing(
        tuple(spans), channel_ends(plan, spans), tuple(level[ln.role] for ln in plan.lines)
    )


@dataclass(frozen=True, slots=True)
class _Ev:
    idx: int
    role: str
    start: float
    end: float
    tokens: tuple[str, ...]
    text: str


def _events(plan: CallPlan, timing: Timing) -> list[_Ev]:
    evs = [
        _Ev(i, ln.role, s, e, ln.tokens, ln.text)
        for i, (ln, (s, e)) in enumerate(zip(plan.lines, timing.spans, strict=True))
    ]
    return sorted(evs, key=lambda x: (x.start, x.idx))


@dataclass
class _Measures:
    responses: list[float] = field(default_factory=list)
    silences: list[tuple[float, bool]] = field(default_factory=list)  # (seconds, after notice)
    agent_gaps: list[tuple[float, float, bool, bool]] = field(default_factory=list)
    overlaps: list[float] = field(default_factory=list)  # by the agent


def _timeline(evs: list[_Ev]) -> _Measures:
    """The rule engine's timeline (rules/timeline.py) on the planned turns."""
    m = _Measures()
    speech_end: float | None = None
    end_ev: _Ev | None = None
    prev: _Ev | None = None
    agent: _Ev | None = None
    cust: _Ev | None = None
    agent_end = cust_end = cust_in_gap = 0.0
    for x in evs:
        if speech_end is not None and x.start > speech_end:
            assert end_ev is not None
            m.silences.append((x.start - speech_end, "hold_notice" in end_ev.tokens))
        if x.role == "agent":
            if prev is not None and prev.role == "customer" and cust is not None:
                m.responses.append(max(x.start - cust.end, 0.0))
            if cust is not None and cust.start < x.start < cust_end:
                m.overlaps.append(min(cust_end, x.end) - x.start)
            if agent is not None and x.start > agent_end:
                m.agent_gaps.append(
                    (
                        x.start - agent_end,
                        cust_in_gap,
                        "hold_notice" in agent.tokens,
                        "hold_thanks" in x.tokens,
                    )
                )
            agent = x
            agent_end = max(agent_end, x.end)
            cust_in_gap = 0.0
        else:
            cust_in_gap += max(x.end - max(x.start, agent_end), 0.0)
            cust = x
            cust_end = max(cust_end, x.end)
        if speech_end is None or x.end > speech_end:
            speech_end = x.end
            end_ev = x
        prev = x
    return m


def _count_any(text: str, words: Sequence[str]) -> bool:
    mf = match_form(text)
    return any(w in mf for w in words)


def _counts(plan: CallPlan) -> dict[str, Any]:
    agent_texts = [ln.text for ln in plan.lines if ln.role == "agent"]
    cust_texts = [ln.text for ln in plan.lines if ln.role == "customer"]
    joined = "".join(match_form(t) for t in agent_texts)
    return {
        "courtesy": sum(_count_any(t, COURTESY) for t in agent_texts),
        "ni": joined.count("你"),
        "nin": joined.count("您"),
        "complaint": [
            i
            for i, ln in enumerate(plan.lines)
            if ln.role == "customer" and _count_any(ln.text, COMPLAINT)
        ],
        "problem": [
            i
            for i, ln in enumerate(plan.lines)
            if ln.role == "customer" and _count_any(ln.text, PROBLEM)
        ],
        "cust_texts": cust_texts,
    }


def _started(plan: CallPlan) -> datetime | None:
    return datetime.fromisoformat(plan.started_at) if plan.started_at else None


def expected_verdicts(plan: CallPlan, timing: Timing) -> dict[str, str]:
    """Every default-pack rule's verdict, from how the call was built and where its speech
    is (``timing``): the construction's facts, not the pipeline's output."""
    evs = _events(plan, timing)
    agent = [x for x in evs if x.role == "agent"]
    tl = _timeline(evs)
    c = _counts(plan)
    started = _started(plan)
    holiday = plan.holiday is not None
    inbound = plan.direction == "inbound"

    def has(turns: Sequence[_Ev], token: str) -> bool:
        return any(token in x.tokens for x in turns)

    def ok(b: bool) -> str:
        return "passed" if b else "failed"

    first2 = [x for x in agent[:2] if x.start < 20]
    v: dict[str, str] = {}
    v["OPEN-ANSWER"] = ok(bool(agent) and agent[0].start < 10)
    v["OPEN-GREET"] = ok(has(first2, "greet"))
    if started is None or holiday:
        v["OPEN-TIME"] = "not_applicable"
    else:
        v["OPEN-TIME"] = ok(has(first2, "greet_morning" if started.hour < 12 else "greet_day"))
    v["OPEN-HOLIDAY"] = ok(has(first2, "holiday")) if holiday else "not_applicable"
    first3 = [x for x in agent[:3] if x.start < 40]
    v["OPEN-IDENT"] = ok(has(first3, "company") and has(first3, "self"))
    v["OPEN-NAME"] = (
        ok(has([x for x in agent if x.start < 90], "name_ask")) if inbound else "not_applicable"
    )
    v["OPEN-PURPOSE"] = ok(has(agent[:3], "purpose")) if inbound else "not_applicable"
    v["OUT-CONFIRM"] = (
        "not_applicable" if inbound else ok(has(agent[:3], "who") and has(agent[:3], "convenient"))
    )
    v["OUT-HOURS"] = (
        "not_applicable" if inbound else ok(started is None or not _in_quiet(started.time()))
    )
    for rule, token in (("BAN-WEI", "wei"), ("BAN-POLICY", "policy"), ("BAN-DISMISS", "dismiss"),
                        ("BAN-NO", "flat_no"), ("BAN-BLAME", "blame"), ("OVER-PROMISE", "promise")):  # fmt: skip
        v[rule] = ok(not has(agent, token))
    v["COURT-WORDS"] = ok(c["courtesy"] >= 3)
    total = c["ni"] + c["nin"]
    v["COURT-NIN"] = ok(not (total >= 3 and c["ni"] / total > 0.3))
    order = {x.idx: k for k, x in enumerate(evs)}
    if c["complaint"]:
        good = True
        for ci in c["complaint"]:
            nxt = [x for x in evs[order[ci] + 1 :] if x.role == "agent"][:1]
            good = good and has(nxt, "apology")
        v["APOLOGY-FIRST"] = ok(good)
        v["EMPATHY"] = ok(has(agent, "empathy"))
    else:
        v["APOLOGY-FIRST"] = v["EMPATHY"] = "not_applicable"
    if c["problem"]:
        # any problem statement followed by a paraphrase within 8 turns (both roles)
        d = _clarify_distance(evs, [order[i] for i in c["problem"]])
        v["CLARIFY"] = ok(d is not None and d <= 8)
        v["SOLUTION"] = ok(has(agent, "solution"))
        pos = []
        for stage in ("explore", "offer", "action", "confirm_sat"):
            at = [k for k, x in enumerate(agent) if stage in x.tokens]
            pos.append(at[0] if at else None)
        v["EOAC"] = ok(all(p is not None for p in pos) and pos == sorted(pos))  # type: ignore[type-var]
    else:
        v["CLARIFY"] = v["SOLUTION"] = v["EOAC"] = "not_applicable"
    v["NO-INTERRUPT"] = ok(not any(o >= 0.8 for o in tl.overlaps))
    v["RESP-GAP"] = ok(not any(g > 5 for g in tl.responses))
    v["HOLD-NOTICE"] = ok(
        not any(g >= 15 and other <= 3 and not (n and t) for g, other, n, t in tl.agent_gaps)
    )
    counted = [s for s, after_notice in tl.silences if not after_notice]
    v["DEAD-AIR"] = ok(not (any(s > 10 for s in counted) or sum(s for s in counted if s >= 2) > 45))
    v["DURATION"] = ok(15 <= timing.duration <= 300)
    v["PACE"] = ok(_pace_ok(plan, timing))
    v["CONFIRM-SAT"] = ok(has(agent[-4:], "confirm_sat"))
    v["CLOSE-THANKS"] = ok(has(agent[-3:], "farewell"))
    v["CLOSE-HANGUP"] = ok(not timing.channel_ends[0] < timing.channel_ends[1] - 0.5)
    five = ("OPEN-GREET", "RESP-GAP", "COURT-WORDS", "APOLOGY-FIRST", "CLOSE-THANKS")
    v["FIVE-VOICES"] = ok(all(v[r] != "failed" for r in five))
    return v


def _clarify_distance(evs: list[_Ev], anchors: list[int]) -> int | None:
    """Turns from the nearest customer problem statement to the agent's paraphrase."""
    best: int | None = None
    for a in anchors:
        for k, x in enumerate(evs[a + 1 :], 1):
            if x.role == "agent" and "clarify" in x.tokens:
                best = k if best is None else min(best, k)
                break
    return best


def _agent_measures(plan: CallPlan, timing: Timing) -> tuple[float, float, float]:
    chars = secs = 0.0
    levels = []
    for ln, (s, e), lvl in zip(plan.lines, timing.spans, timing.levels, strict=True):
        if ln.role == "agent":
            chars += len(match_form(ln.text))
            secs += e - s
            levels.append(lvl)
    rate = chars / secs * 60 if secs else 0.0
    return rate, secs, sum(levels) / len(levels) if levels else 0.0


def _pace_ok(plan: CallPlan, timing: Timing) -> bool:
    rate, secs, level = _agent_measures(plan, timing)
    if secs > 10 and not 120 <= rate <= 330:
        return False
    return -40 <= level <= -6


def check_margins(plan: CallPlan, timing: Timing) -> None:
    """Raise :class:`_Retry` when a measured quantity is near a threshold of the pack, or
    a script breaks a keyword audit (so its label could go either way)."""
    problems = margin_problems(plan, timing)
    if problems:
        raise _Retry("; ".join(problems))


def margin_problems(plan: CallPlan, timing: Timing) -> list[str]:
    out: list[str] = []
    evs = _events(plan, timing)
    agent = [x for x in evs if x.role == "agent"]
    tl = _timeline(evs)
    c = _counts(plan)

    def near(value: float, lo: float, hi: float, what: str) -> None:
        if lo < value < hi:
            out.append(f"{what} {value:.2f} within ({lo}, {hi})")

    if agent:
        near(agent[0].start, 7.0, 12.5, "answer")
    for g in tl.responses:
        near(g, 3.5, 6.5, "response gap")
    for s, _ in tl.silences:
        near(s, 8.5, 11.5, "silence")
    counted = [s for s, n in tl.silences if not n]
    lo, hi = sum(s for s in counted if s >= 2.5), sum(s for s in counted if s >= 1.5)
    if not (hi < 38 or lo > 52):
        out.append(f"total silence {lo:.1f}-{hi:.1f} near 45")
    for g, other, _, _ in tl.agent_gaps:
        if other < 4.5:
            near(g, 12.0, 18.0, "agent gap")
        if g >= 12:
            near(other, 2.0, 4.5, "customer speech in agent gap")
    for o in tl.overlaps:
        near(o, 0.3, 1.4, "agent overlap")
    if c["problem"]:
        order = {x.idx: k for k, x in enumerate(evs)}
        d = _clarify_distance(evs, [order[i] for i in c["problem"]])
        if d is not None and 6 < d <= 11:
            out.append(f"paraphrase {d} turns after the problem (window 8)")
    near(timing.duration, 11.0, 25.0, "duration")
    near(timing.duration, 280.0, 320.0, "duration")
    rate, secs, level = _agent_measures(plan, timing)
    near(secs, 8.0, 12.0, "agent speech seconds")
    if secs > 10 and not 150 <= rate <= 290:
        out.append(f"agent rate {rate:.0f} chars/min outside 150-290")
    if not (-30 <= level <= -12 or level <= -45):
        out.append(f"agent level {level:.1f}")
    a_end, c_end = timing.channel_ends
    if not (a_end >= c_end + 0.8 or a_end <= c_end - 1.2):
        out.append("hang-up order unclear")

    # A first-N-seconds window closes N + 3 s (the grace) into the call, and an utterance
    # is known when it ends: a turn that starts inside the window must also end well
    # before it closes (or start well after it), or the verdict depends on the clock.
    def window(x: _Ev, seconds: float, what: str) -> None:
        if not (x.start < seconds - 3 and x.end < seconds + 2) and not x.start > seconds + 4:
            out.append(f"{what} turn {x.start:.1f}-{x.end:.1f} near the {seconds:g} s window")

    if agent and agent[0].start < 10:
        window(agent[0], 10, "first agent")
    for x in agent[:3]:
        if {"greet", "greet_morning", "greet_day", "holiday"} & set(x.tokens):
            window(x, 20, "greeting")
        if {"company", "self"} & set(x.tokens):
            window(x, 40, "identification")
    for x in agent:
        if "name_ask" in x.tokens:
            window(x, 90, "name question")
    if c["courtesy"] in (2, 3) or ("curt" in plan.faults and c["courtesy"] > 1):
        out.append(f"{c['courtesy']} courtesy turns (threshold 3)")
    total = c["ni"] + c["nin"]
    if total >= 3:
        share = c["ni"] / total
        if "ni" in plan.faults and share < 0.45:
            out.append(f"你 share {share:.2f} too low")
        if "ni" not in plan.faults and share > 0.2:
            out.append(f"你 share {share:.2f} too high")
    elif "ni" in plan.faults:
        out.append("too few 你/您 for COURT-NIN")
    # keyword audits: complaint / problem words only where the call means them
    means_complaint = "complaint" in plan.topic
    means_problem = (
        plan.topic.split("+")[0] in {t.key for t in TOPICS if t.problem} or "problem" in plan.topic
    )
    if bool(c["complaint"]) != means_complaint:
        out.append("complaint words where none meant (or missing)")
    if bool(c["problem"]) != means_problem:
        out.append("problem words where none meant (or missing)")
    return out


# -- rendering ---------------------------------------------------------------------------


def _bandpass(x: Audio, rate: int, lo: float = 300.0, hi: float = 3400.0) -> Audio:
    """Telephone band: an FFT mask with 100 Hz raised-cosine edges."""
    if x.size == 0:
        return x
    n = int(2 ** math.ceil(math.log2(len(x) + 1)))
    spec = np.fft.rfft(x, n)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    w = np.clip((f - (lo - 100)) / 100.0, 0, 1) * np.clip(((hi + 100) - f) / 100.0, 0, 1)
    w = 0.5 - 0.5 * np.cos(np.pi * w)
    return np.fft.irfft(spec * w, n)[: len(x)].astype(np.float32)


def _noise(rng: np.random.Generator, kind: str, n: int) -> Audio:
    white = rng.normal(0.0, 1.0, n)
    if kind == "pink":
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        white = np.fft.irfft(spec / np.sqrt(f), n)
    white /= float(np.sqrt(np.mean(white**2))) or 1.0
    return white.astype(np.float32)


def _rms_db(x: Audio) -> float:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return 20 * math.log10(r) if r > 0 else -math.inf


def _scale_to(x: Audio, level_dbfs: float, peak: float = 0.89) -> Audio:
    cur = _rms_db(x)
    if not math.isfinite(cur):
        return x
    g = 10 ** ((level_dbfs - cur) / 20)
    top = float(np.max(np.abs(x))) * g
    if top > peak:
        g *= peak / top
    return (x * g).astype(np.float32)


def inputs_hash(plan: CallPlan) -> str:
    blob = json.dumps(
        {"corpus": CORPUS_VERSION, "generator": GENERATOR_VERSION, "plan": plan.doc()},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def corpus_dir(root: str | Path, seed: int) -> Path:
    return Path(root) / f"seed-{seed}"


def render_call(plan: CallPlan, outdir: str | Path, *, force: bool = False) -> Path:
    """Write ``<outdir>/<id>.wav`` and ``<id>.json`` (skipped when up to date)."""
    out = Path(outdir)
    wav, side = out / f"{plan.id}.wav", out / f"{plan.id}.json"
    digest = inputs_hash(plan)
    if not force and wav.is_file() and side.is_file():
        try:
            if json.loads(side.read_text(encoding="utf-8"))["generator"]["inputs_sha256"] == digest:
                return wav
        except (OSError, ValueError, KeyError, TypeError):
            pass
    espeak = check_tools()
    ap = plan.audio
    rate = ap.rate
    voices = {"agent": ap.agent.voice(), "customer": ap.customer.voice()}

    def speak(ln: Line) -> Audio:
        v = voices[ln.role]
        clip = render_speech(ln.text, v, rate)
        return _scale_to(_bandpass(clip, rate), v.level_dbfs) if ap.band else clip

    with ThreadPoolExecutor(max_workers=2) as pool:
        clips: list[Audio] = list(pool.map(speak, plan.lines))
    spans = layout_lines(plan, [len(c) / rate for c in clips])
    starts = [round(s * rate) for s, _ in spans]
    spans = [(st / rate, (st + len(c)) / rate) for st, c in zip(starts, clips, strict=True)]
    ends = channel_ends(plan, spans)
    total = round(max(ends) * rate)
    rng = np.random.default_rng(zlib.crc32(f"{plan.id}:{digest}".encode()))
    nominal = -22.0
    mix = np.zeros((total, 2), dtype=np.float32)
    for ch in range(2):
        n_ch = round(ends[ch] * rate)
        noise = _noise(rng, ap.noise, n_ch) * 10 ** ((nominal - ap.snr_db) / 20)
        if ap.band:
            noise = _bandpass(noise, rate)
        mix[:n_ch, ch] += noise
        if ap.babble_channel == ch:
            mix[:n_ch, ch] += _babble(plan, ch, n_ch, rate, voices)
    levels = []
    for ln, st, clip in zip(plan.lines, starts, clips, strict=True):
        ch = CHANNEL_ROLES.index(Role(ln.role))
        mix[st : st + len(clip), ch] += clip
        levels.append(round(_rms_db(clip), 2))
    np.clip(mix, -1.0, 1.0, out=mix)
    out.mkdir(parents=True, exist_ok=True)
    tmp = wav.with_name(f".{wav.name}.tmp")
    sf.write(tmp, mix, rate, subtype=ENCODINGS[ap.encoding], format="WAV")
    os.replace(tmp, wav)

    timing = Timing(tuple(spans), ends, tuple(levels))
    problems = margin_problems(plan, timing)
    expected = expected_verdicts(plan, timing)
    planned = expected_verdicts(plan, estimate_timing(plan))
    if expected != planned:
        diff = {k: (planned[k], expected[k]) for k in expected if expected[k] != planned[k]}
        raise SampleError(f"{plan.id}: rendered timing changes labels {diff}; {problems}")
    doc = sidecar(plan, timing, expected, wav.name, digest, espeak)
    doc["margin_notes"] = problems
    tmp_side = side.with_name(f".{side.name}.tmp")
    tmp_side.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp_side, side)
    return wav


def _babble(plan: CallPlan, ch: int, n: int, rate: int, voices: Mapping[str, Voice]) -> Audio:
    role = "agent" if ch == 0 else "customer"
    own = voices[role]
    other = next(
        v
        for v in VOICE_VARIANTS
        if v not in (plan.audio.agent.variant, plan.audio.customer.variant)
    )
    voice = Voice(other, 170, 40, 0, own.level_dbfs - plan.audio.babble_db)
    start = zlib.crc32(plan.id.encode()) % len(BABBLE)
    pieces = [render_speech(BABBLE[(start + k) % len(BABBLE)], voice, rate) for k in range(3)]
    gap = np.zeros(int(0.6 * rate), dtype=np.float32)
    loop = np.concatenate([p for piece in pieces for p in (piece, gap)])
    if plan.audio.band:
        loop = _bandpass(loop, rate)
    reps = n // len(loop) + 1
    return np.tile(loop, reps)[:n]


def reference_transcript(plan: CallPlan, timing: Timing) -> dict[str, Any]:
    """The call as a transcript document (``transcribe --json``) with the script's words."""
    order = sorted(range(len(plan.lines)), key=lambda i: (timing.spans[i][0], i))
    utts = []
    for k, i in enumerate(order):
        ln = plan.lines[i]
        s, e = timing.spans[i]
        utts.append(
            {
                "index": k,
                "channel": CHANNEL_ROLES.index(Role(ln.role)),
                "role": ln.role,
                "start": round(s, 3),
                "end": round(e, 3),
                "text": ln.text,
                "raw_text": ln.text,
                "confidence": 1.0,
                "no_speech_prob": 0.0,
                "level_dbfs": round(timing.levels[i], 2),
                "language": "zh",
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "transcript",
        "call": {**call_info(plan), "duration": round(timing.duration, 3)},
        "asr": {"model": "reference-script"},
        "channel_ends": [round(x, 3) for x in timing.channel_ends],
        "utterances": utts,
    }


def call_info(plan: CallPlan) -> dict[str, Any]:
    return {
        "call_id": plan.id,
        "started_at": plan.started_at,
        "direction": Direction(plan.direction).value,
        "agent_id": plan.agent_id,
        "channels": [r.value for r in CHANNEL_ROLES],
        "source": None,
        "metadata": {"company": plan.company, "corpus_seed": str(plan.seed)},
    }


def sidecar(
    plan: CallPlan,
    timing: Timing,
    expected: Mapping[str, str],
    wav_name: str,
    digest: str,
    espeak: str,
) -> dict[str, Any]:
    ap = plan.audio
    return {
        "call": call_info(plan),
        "company": plan.company,
        "settings": {"rules": {"settings": {"company_name": plan.company}}},
        "scenario": plan.id,
        "description": f"{plan.direction} {plan.topic}; faults: {', '.join(plan.faults) or 'none'}",
        "faults": list(plan.faults),
        "holiday": plan.holiday,
        "audio": {
            "file": wav_name,
            "sample_rate": ap.rate,
            "encoding": ap.encoding,
            "telephone_band": ap.band,
            "noise": ap.noise,
            "snr_db": ap.snr_db,
            "babble_channel": ap.babble_channel,
            "babble_db": ap.babble_db,
            "channels": [r.value for r in CHANNEL_ROLES],
            "duration": round(timing.duration, 3),
        },
        "channel_ends": list(timing.channel_ends),
        "turns": [
            {
                "role": ln.role,
                "channel": CHANNEL_ROLES.index(Role(ln.role)),
                "text": ln.text,
                "start": round(s, 3),
                "end": round(e, 3),
                "level_dbfs": round(lvl, 2),
                "says": list(ln.tokens),
            }
            for ln, (s, e), lvl in zip(plan.lines, timing.spans, timing.levels, strict=True)
        ],
        "expected": dict(expected),
        "reference": reference_transcript(plan, timing),
        "generator": {
            "corpus_version": CORPUS_VERSION,
            "version": GENERATOR_VERSION,
            "inputs_sha256": digest,
            "espeak_ng": espeak,
            "voices": {"agent": asdict(ap.agent), "customer": asdict(ap.customer)},
        },
    }


ProgressFn = Callable[[str, int, int], None]


def generate_corpus(
    root: str | Path,
    n: int = DEFAULT_CALLS,
    seed: int = DEFAULT_SEED,
    *,
    ids: Sequence[str] | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
) -> list[Path]:
    """Render the corpus under ``<root>/seed-<seed>/`` (cached); return the WAV paths."""
    plans = plan_corpus(n, seed)
    if ids:
        plans = [p for p in plans if p.id in set(ids)]
    out = corpus_dir(root, seed)
    paths = []
    for k, plan in enumerate(plans, 1):
        paths.append(render_call(plan, out, force=force))
        if progress:
            progress(plan.id, k, len(plans))
    return paths


def read_sidecar(wav: str | Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(Path(wav).with_suffix(".json").read_text(encoding="utf-8"))
    return doc


@dataclass(frozen=True, slots=True)
class CorpusTurn:
    path: Path
    channel: int
    start: float
    end: float
    text: str
    role: str


def corpus_turns(paths: Sequence[str | Path]) -> Iterator[CorpusTurn]:
    """Every rendered turn: its call's audio, channel, real speech start/end and script."""
    for p in paths:
        for t in read_sidecar(p)["turns"]:
            yield CorpusTurn(
                Path(p), int(t["channel"]), float(t["start"]), float(t["end"]), t["text"], t["role"]
            )


def select_slice(labels: Mapping[str, Mapping[str, str]], size: int = 12) -> list[str]:
    """Up to ``size`` call ids covering as many (rule, fails / does not fail) pairs as
    possible (greedy), then as many verdict values; ties to the earlier call."""
    ids = sorted(labels)

    def pairs(cid: str) -> set[tuple[str, str]]:
        return {(r, "fire" if v == "failed" else "ok") for r, v in labels[cid].items()}

    def values(cid: str) -> set[tuple[str, str]]:
        return set(labels[cid].items())

    chosen: list[str] = []
    have: set[tuple[str, str]] = set()
    have_v: set[tuple[str, str]] = set()
    while len(chosen) < min(size, len(ids)):
        best = max(
            (c for c in ids if c not in chosen),
            key=lambda c: (len(pairs(c) - have), len(values(c) - have_v), -ids.index(c)),
        )
        chosen.append(best)
        have |= pairs(best)
        have_v |= values(best)
    return chosen
