"""Synthetic stored calls for the re-score tests (built in code, like the rules tests)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from qa_pipeline.messages import CallEnded, CallInfo, Direction, Role, Utterance
from qa_pipeline.store import Store, doc_key
from qa_pipeline.transcript import Transcript, transcript_to_dict

AGENT = [
    "您好，华夏客服，我是工号{n}，请问有什么可以帮您？",
    "好的，请您稍等，我帮您查询一下",
    "让您久等了，您的余额是{n}元",
    "非常抱歉给您带来不便，我理解您的心情",
    "您的意思是账单金额不对，对吗？",
    "我马上为您提交工单，预计在两个工作日内处理完成",
    "好的，已经为您登记了",
    "请问您怎么称呼？",
    "您看这样处理可以吗？",
]
CUSTOMER = [
    "我想查一下我的话费余额",
    "我上个月的账单好像多扣了{n}块钱",
    "宽带又断了，这已经是第三次了",
    "好的",
    "嗯嗯",
    "那要多久才能处理好",
    "退款什么时候能到账",
]
CLOSE = ["您看还有什么需要我为您做的吗？", "感谢您的来电，祝您生活愉快，再见"]

#: The phrase the changed pack adds to OVER-PROMISE, and a line the old pack already flags.
NEW_PHRASE = "包退包换"
NEW_LINE = "放心，我们这个产品包退包换的"
OLD_LINE = "我保证下个月一定不会再出现这个问题"
CUSTOMER_NEW_LINE = "你们不是说包退包换吗"


def make_call(
    i: int,
    rng: random.Random,
    *,
    n_utts: int = 14,
    agent_new: bool = False,
    agent_old: bool = False,
    customer_new: bool = False,
) -> Transcript:
    cid = f"call-{i:05d}"
    start = datetime(2026, 3, 2, 9, 0) + timedelta(days=i % 5, minutes=rng.randrange(0, 480))
    call = CallInfo(
        call_id=cid,
        started_at=start,
        direction=Direction.INBOUND,
        agent_id=f"A{i % 7:02d}",
    )
    lines: list[tuple[Role, str]] = [(Role.AGENT, AGENT[0])]
    for k in range(1, n_utts - 2):
        if k % 2:
            lines.append((Role.CUSTOMER, rng.choice(CUSTOMER)))
        else:
            lines.append((Role.AGENT, rng.choice(AGENT[1:])))
    specials = []
    if agent_new:
        specials.append((Role.AGENT, NEW_LINE))
    if agent_old:
        specials.append((Role.AGENT, OLD_LINE))
    if customer_new:
        specials.append((Role.CUSTOMER, CUSTOMER_NEW_LINE))
    for s in specials:
        lines.insert(rng.randrange(2, len(lines)), s)
    lines += [(Role.AGENT, c) for c in CLOSE]
    utts = []
    t = 1.0
    for idx, (role, text) in enumerate(lines):
        text = text.format(n=rng.randrange(10, 999))
        dur = max(len(text) / 4.5, 0.6)
        st = t + (0.6 if idx else 0.0)
        utts.append(
            Utterance(
                call_id=cid,
                index=idx,
                channel=0 if role is Role.AGENT else 1,
                role=role,
                start=round(st, 2),
                end=round(st + dur, 2),
                text=text,
                level_dbfs=-20.0,
            )
        )
        t = st + dur
    end = round(t + 1.0, 2)
    return Transcript(
        call=call,
        utterances=tuple(utts),
        ended=CallEnded(call_id=cid, end=end, channel_ends=(end, end)),
    )


def fill_store(path: Path, calls: list[Transcript]) -> None:
    with Store(path) as st:
        sh = st.put_settings({"asr": {"model": "synthetic"}})
        for t in calls:
            doc = transcript_to_dict(t)
            st.put_transcript(doc, audio_sha=doc_key(doc), settings_hash_=sh, commit=False)
        st.db.commit()


def changed_pack(tmp: Path) -> Path:
    """A copy of the default pack whose OVER-PROMISE also bans :data:`NEW_PHRASE`."""
    import shutil

    from qa_pipeline.rules import default_pack_path

    dst = tmp / "new-pack"
    shutil.copytree(default_pack_path(), dst, ignore=shutil.ignore_patterns("fixtures"))
    banned = dst / "banned.yaml"
    text = banned.read_text(encoding="utf-8")
    old = "- keyword: [保证, 绝对, 肯定没问题, 百分之百, 百分百, 包您满意]"
    assert old in text, "the default pack's OVER-PROMISE changed; update this test helper"
    banned.write_text(text.replace(old, old[:-1] + f", {NEW_PHRASE}]"), encoding="utf-8")
    return dst
