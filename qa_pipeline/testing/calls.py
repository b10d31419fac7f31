"""Calls for tests and benchmarks: hand-written ones (``transcript``) and synthetic
Mandarin call-centre calls (``make_call``).

Built from a bank of realistic call-centre sentences with a deterministic seed: a scripted
opening, a body mixing customer questions / complaints and agent answers (some with
ASR-style errors, numbers, banned phrases, holds), and a closing. The same ``rng`` state
gives the same call, byte for byte (``tests/test_harness.py`` pins a digest of the first
calls): the benchmark figures and the equivalence tests depend on it, so a change to the
banks or to the order of draws is a change to every figure measured with them.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from qa_pipeline.messages import CallEnded, CallInfo, Direction, Role, Utterance
from qa_pipeline.privacy import default_redactor, redact_utterance
from qa_pipeline.transcript import Transcript

__all__ = ["BAD_RATE", "Turn", "default_company", "make_call", "make_calls", "transcript"]

OPEN_AGENT = [
    "您好，{company}客服，我是工号{n}，请问有什么可以帮您？",
    "早上好，您好，{company}客服中心，我是小{name}，很高兴为您服务",
    "您好，请问有什么可疑方林？",
    "喂，您好，请问有什么事",
    "您好，请问是{name}先生吗？我是{company}客服，请问您现在方便接听电话吗？",
]
CUSTOMER = [
    "我想查一下我的话费余额",
    "我上个月的账单好像多扣了{n}块钱",
    "我的快递一直没收到，怎么回事",
    "你们的服务太差了，我要投诉",
    "宽带又断了，这已经是第三次了",
    "我想改一下套餐，现在这个太贵了",
    "好的",
    "嗯嗯",
    "对的",
    "那要多久才能处理好",
    "我的手机号是1{phone}",
    "我不太明白你的意思",
    "可以，你说吧",
    "我很生气，你们到底管不管",
    "退款什么时候能到账",
]
# Lines that break a rule (banned phrases, blame, flat "no", over-promise); an agent line is
# drawn from here with probability BAD_RATE, so most calls are mostly compliant, as in
# production, and a few are bad.
AGENT_BAD = [
    "这是公司规定，我们也没有办法",
    "你听我说，你搞错了",
    "我保证下个月一定不会再出现这个问题",
    "不知道",
]
BAD_RATE = 0.04
AGENT = [
    "好的，千年少等，我帮您查询一下",
    "请您稍等，我帮您查询一下",
    "让您久等了，您的余额是{n}元",
    "非常抱歉给您带来不便，我理解您的心情",
    "您的意思是账单金额不对，对吗？",
    "我建议您办理我们的优惠套餐，每个月可以省{n}元",
    "我马上为您提交工单，预计在{d}个工作日内处理完成",
    "好的，已经为您登记了",
    "请问您怎么称呼？",
    "您看这样处理可以吗？",
    "这个需要您本人带身份证到营业厅办理",
    "嗯",
    "好的，明白了",
]
CLOSE_AGENT = [
    "您看还有什么需要我为您做的吗？",
    "感谢您的来电，祝您生活愉快，再见",
    "谢谢您的来电，再见",
    "好的，那先这样",
]
NAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄"]


Turn = tuple[str | Role, float, float, str] | tuple[str | Role, float, float, str, float | None]
"""A turn of a hand-written call: (role, start, end, text[, level dBFS]); the role is a
:class:`Role` or ``"a"`` / ``"agent"`` (anything else is the customer)."""


def transcript(
    turns: Sequence[Turn],
    *,
    direction: str | Direction = "inbound",
    started_at: datetime | None = datetime(2026, 3, 3, 10, 0),
    duration: float | None = None,
    channel_ends: tuple[float, ...] = (),
    call_id: str = "t",
    redact: bool = True,
) -> Transcript:
    """A call from its turns, in order: the agent on channel 0, the customer on 1; the call
    ends at ``duration`` (default: the last turn's end). Its text is redacted as the text
    step redacts a decode (``redact=False``: as written)."""
    utts = []
    for i, t in enumerate(turns):
        r = t[0]
        role = r if isinstance(r, Role) else Role.AGENT if r in ("a", "agent") else Role.CUSTOMER
        utts.append(
            Utterance(
                call_id=call_id,
                index=i,
                channel=0 if role == Role.AGENT else 1,
                role=role,
                start=t[1],
                end=t[2],
                text=t[3],
                level_dbfs=t[4] if len(t) > 4 else None,
            )
        )
    if redact:
        redactor = default_redactor()
        utts = [redact_utterance(u, redactor) for u in utts]
    end = duration if duration is not None else max((u.end for u in utts), default=0.0)
    call = CallInfo(call_id=call_id, started_at=started_at, direction=Direction(direction))
    return Transcript(
        call=call,
        utterances=tuple(utts),
        ended=CallEnded(call_id=call_id, end=end, channel_ends=channel_ends),
    )


@functools.lru_cache(maxsize=1)
def default_company() -> str:
    """The default pack's ``company_name`` setting (what OPEN-IDENT listens for)."""
    from qa_pipeline.rules import load_pack  # only when a call is made without a company

    return str(load_pack().settings.company_name)


def make_call(i: int, rng: random.Random, n_utts: int, company: str | None = None) -> Transcript:
    """One synthetic call; agents name ``company`` (default: the default pack's
    ``company_name`` setting, so OPEN-IDENT behaves as on real calls)."""
    cid = f"bench-{i:05d}"
    company = default_company() if company is None else company
    outbound = rng.random() < 0.2
    start = datetime(2026, 3, 2, 8, 0) + timedelta(minutes=rng.randrange(0, 60 * 12))
    if rng.random() < 0.05:
        start = datetime(2026, 10, 2, 10, 0)

    def fill(s: str) -> str:
        return s.format(
            n=rng.randrange(10, 9999),
            name=rng.choice(NAMES),
            d=rng.randrange(1, 5),
            phone=rng.randrange(10**9, 10**10),
            company=company,
        )

    t = rng.uniform(0.5, 4.0)
    turns: list[Turn] = []
    roles: list[Role] = []
    texts: list[str] = []
    roles.append(Role.AGENT)
    texts.append(fill(rng.choice(OPEN_AGENT)))
    for k in range(1, n_utts - 2):
        if k % 2 == 1:
            roles.append(Role.CUSTOMER)
            texts.append(fill(rng.choice(CUSTOMER)))
        else:
            roles.append(Role.AGENT)
            bank = AGENT_BAD if rng.random() < BAD_RATE else AGENT
            texts.append(fill(rng.choice(bank)))
    roles += [Role.AGENT, Role.AGENT]
    texts += [fill(CLOSE_AGENT[0]), fill(rng.choice(CLOSE_AGENT[1:]))]
    for idx, (role, text) in enumerate(zip(roles, texts, strict=True)):
        dur = max(len(text) / rng.uniform(3.5, 5.5), 0.4)
        gap = rng.choice([0.3, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0]) if idx else 0.0
        r = rng.random()
        if r < 0.02:
            gap = rng.uniform(5.5, 9.0)  # a slow answer
        elif r < 0.03:
            gap = rng.uniform(12, 25)  # a hold / dead air
        st = t + gap - (1.2 if rng.random() < 0.03 else 0.0)  # occasional talk-over
        st = max(st, 0.0)
        turns.append(
            (role, round(st, 2), round(st + dur, 2), text, round(rng.uniform(-32, -12), 1))
        )
        t = st + dur
    end = t + rng.uniform(0.5, 2.0)
    return transcript(
        turns,
        direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
        started_at=start,
        duration=round(end, 2),
        channel_ends=(round(end, 2), round(end - rng.uniform(0, 1.5), 2)),
        call_id=cid,
        redact=False,  # the figures measured on these calls stay comparable across versions
    )


def make_calls(
    n: int, seed: int = 7, n_utts: int = 40, company: str | None = None
) -> list[Transcript]:
    """``n`` calls of ``n_utts`` utterances from ``random.Random(seed)``, as
    ``benchmarks/bench_rules.py`` builds its store."""
    rng = random.Random(seed)
    return [make_call(i, rng, n_utts, company) for i in range(n)]
