"""Writes the spoken part of the personal-data test set: Whisper transcripts of generated speech.

Each sentence (a customer reading out a phone, ID or card number, a code, an address; or a
hard negative: an agent id, an order number, a price, a date, a duration, a plate, the last
four digits asked for) is spoken by ``espeak-ng -v cmn-latn-pinyin`` (the sample
generator's :func:`render_speech`, 16 kHz), with voices and speeds varied (female variants
f1-f4, 140-190 syllables per minute; ``--voices fm``, ``--speeds`` and ``--telephone`` draw
male voices, other speeds and a share of 8 kHz mu-law telephone audio), decoded by the project's embedded Whisper (base, CPU,
beam 5, the default ``asr:`` settings) and normalised with :func:`qa_pipeline.text.normalise`.

The label is what was heard, found in the transcript without the recognisers: the longest
stretch of digits and numeral characters (separators allowed inside) that shares the most
digits, in order, with the number that was said. ``said`` keeps the number as spoken and
``heard`` the digits of the label; where Whisper dropped or changed digits the label still
counts: the scorer (``benchmarks/bench_redact.py``) asks that at most the last four
digit characters of the labelled stretch stay visible. An item whose transcript holds too
little of the number (fewer than half of its digits in order) is written with
``"label_lost": true`` and scored apart (a miss of the ASR, not of the recognisers).

Run once per batch (minutes of CPU) and commit the data file, not the audio; the set holds
seeds 16 (``pii_speech.jsonl``), 17, 18, 19 and 21 (``pii_speech_s<seed>.jsonl``), each made
after the recognisers were tuned on the ones before it (seeds 19 and 21: female and male
voices, 130-200 syllables a minute, half of it through the 8 kHz mu-law telephone band;
seed 21 was made before the near-heard cues and first read after them):

    nice -n 5 python benchmarks/make_pii_speech.py [--seed 16] [--out tests/privacy/data/pii_speech.jsonl]
    nice -n 10 python benchmarks/make_pii_speech.py --seed 19 --voices fm --speeds 130-200 \
        --telephone 0.5 --out tests/privacy/data/pii_speech_s19.jsonl

The sentences are seeded (``--seed``) so a rerun makes the same ones; the transcripts
depend on the model and espeak-ng's version, which are written into each item.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "privacy" / "data" / "pii_speech.jsonl"

_ZH = "零一二三四五六七八九"
#: how the labeller reads a transcript's characters (independent of the recognisers)
_READ = {
    **{str(i): str(i) for i in range(10)},
    **{c: str(i) for i, c in enumerate(_ZH)},
    "幺": "1", "腰": "1", "要": "1", "妖": "1", "两": "2", "洞": "0", "〇": "0",
    "X": "X", "x": "X", "叉": "X",
}  # fmt: skip
_INSIDE = set(" ,，、-杠.")


def spoken(digits: str, one: str = "幺", groups: tuple[int, ...] = ()) -> str:
    """Digits as espeak-ng should say them, one numeral each; a pause (，) after each group."""
    out: list[str] = []
    pos = 0
    cuts = set()
    for g in groups:
        pos += g
        cuts.add(pos)
    for i, d in enumerate(digits):
        if i in cuts:
            out.append("，")
        if d == "X":
            out.append("叉")
        elif d == "1":
            out.append(one)
        else:
            out.append(_ZH[int(d)])
    return "".join(out)


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def id_check(body17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    s = sum(int(c) * w for c, w in zip(body17, weights, strict=True))
    return "10X98765432"[s % 11]


@dataclass
class Item:
    kind: str | None  # None: a hard negative
    say: str  # espeak-ng's input
    said: str  # the number as spoken (digits) or "" for negatives
    cls: str  # the negative's class, or the kind


def _mobile(r: random.Random) -> str:
    return "1" + r.choice("3456789") + "".join(r.choice("0123456789") for _ in range(9))


def _id(r: random.Random) -> str:
    region = r.choice(["110105", "320102", "440304", "510107", "330106", "210202", "610113"])
    y = r.randint(1950, 2005)
    m = r.randint(1, 12)
    d = r.randint(1, 28)
    body = f"{region}{y}{m:02d}{d:02d}{r.randint(0, 999):03d}"
    return body + id_check(body)


def _card(r: random.Random, n: int) -> str:
    body = "62" + "".join(r.choice("0123456789") for _ in range(n - 3))
    return body + luhn_digit(body)


def items(seed: int) -> list[Item]:
    r = random.Random(seed)
    out: list[Item] = []
    ones = ["幺", "一"]
    for lead in ["我的手机号是", "你记一下，电话是", "手机号码", "打这个号码", "联系电话是",
                 "我手机是", "号码是", "你拨", "我的电话", "手机"]:  # fmt: skip
        for _ in range(3):
            n = _mobile(r)
            g = r.choice([(3, 4), (3, 4, 4), ()])
            out.append(Item("mobile", lead + spoken(n, r.choice(ones), g) + "，谢谢", n, "mobile"))
    for lead in ["座机是", "办公室电话", "固定电话是", "家里电话"]:
        area = r.choice(["010", "021", "0755", "0571", "028"])
        local = r.choice("2345678") + "".join(r.choice("0123456789") for _ in range(7))
        out.append(
            Item(
                "landline",
                lead + spoken(area, "幺") + "杠" + spoken(local, "幺", (4,)),
                area + local,
                "landline",
            )  # fmt: skip
        )
    for lead in ["我的身份证号是", "身份证号码", "证件号是", "身份证", "我身份证号",
                 "身份证号码是", "身份证是", "证件号码", "登记的身份证", "身份证号码是"]:  # fmt: skip
        n = _id(r)
        out.append(Item("id_number", lead + spoken(n, "幺", (6, 8)), n, "id_number"))
    for lead in ["银行卡号是", "我的卡号", "卡号是", "银行卡", "退到这张卡", "储蓄卡号是",
                 "信用卡号", "绑定的卡号是"]:  # fmt: skip
        n = _card(r, r.choice([16, 19]))
        out.append(Item("bank_card", lead + spoken(n, "幺", (4, 4, 4, 4)), n, "bank_card"))
    for lead in ["验证码是", "收到的验证码", "动态密码是", "密码是"]:
        n = "".join(r.choice("0123456789") for _ in range(r.choice([4, 6])))
        kind = "password" if lead == "密码是" else "code"
        out.append(Item(kind, lead + spoken(n, "幺"), n, kind))
    for road in ["建国路", "人民街", "中山路"]:
        num = r.randint(10, 300)
        out.append(
            Item(
                "address",
                f"地址是{road}{num}号{r.randint(1, 20)}栋{r.randint(1, 6)}单元{r.randint(1, 30)}0{r.randint(1, 4)}室",
                "",
                "address",
            )  # fmt: skip
        )
    # hard negatives: numbers that are not personal data
    negs = [
        ("agent_id", "我的工号是" + spoken("".join(r.choice("0123456789") for _ in range(5)), "幺")),
        ("agent_id", "工号" + spoken("".join(r.choice("0123456789") for _ in range(6)), "幺") + "为您服务"),
        ("order", "订单号是" + spoken("".join(r.choice("0123456789") for _ in range(12)), "幺")),
        ("order", "快递单号" + spoken("".join(r.choice("0123456789") for _ in range(13)), "幺")),
        ("price", "这个套餐每月一百二十八元"),
        ("price", "一共是三百五十块钱"),
        ("date", "二零二四年三月十五号办理的"),
        ("date", "上个月二十号扣的费"),
        ("duration", "我等了四十五分钟了"),
        ("duration", "大概三个小时以后到"),
        ("plate", "车牌是京A幺二三四五"),
        ("tail", "尾号" + spoken("".join(r.choice("0123456789") for _ in range(4)), "幺") + "的那张卡"),
        ("tail", "手机后四位是" + spoken("".join(r.choice("0123456789") for _ in range(4)), "幺")),
        ("quantity", "我买了三台，退了两台"),
        ("time", "明天下午三点半给我回电话"),
    ]  # fmt: skip
    out += [Item(None, say, "", cls) for cls, say in negs]
    return out


def label_span(text: str, said: str) -> tuple[int, int, str] | None:
    """The stretch of ``text`` that holds the number as heard: (start, end, heard digits)."""
    runs: list[tuple[int, int, str]] = []
    i = 0
    while i < len(text):
        if text[i] in _READ:
            j, got, last = i, [], i
            while j < len(text) and (text[j] in _READ or text[j] in _INSIDE):
                if text[j] in _READ:
                    got.append(_READ[text[j]])
                    last = j
                j += 1
            runs.append((i, last + 1, "".join(got)))
            i = j
        else:
            i += 1
    best: tuple[int, tuple[int, int, str]] | None = None
    # a number may be split by a word Whisper inserted: also try two neighbouring runs
    cands = list(runs) + [
        (a[0], b[1], a[2] + b[2]) for a, b in zip(runs, runs[1:], strict=False) if b[0] - a[1] <= 2
    ]
    for c in cands:
        score = _lcs(c[2], said) * 2 - len(c[2])
        if best is None or score > best[0]:
            best = (score, c)
    if best is None or _lcs(best[1][2], said) * 2 < len(said):
        return None
    return best[1]


def _lcs(a: str, b: str) -> int:
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def address_span(text: str) -> tuple[int, int] | None:
    """From the first digit after the road word to the last unit word (室/号/楼)."""
    import re

    m = re.search(r"(?<=[路街道巷])[^，。？]*?[室号楼层]", text)
    if not m:
        return None
    end = max(text.rfind(u, m.start()) for u in "室号楼层栋")
    return m.start(), end + 1


def _mulaw(x: Any) -> Any:
    """``x`` (8 kHz) through G.711 mu-law and back: the telephone band's quantisation."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, 8000, format="WAV", subtype="ULAW")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return y


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    ap.add_argument("--voices", default="f", help="voice variants drawn from: f, m or fm")
    ap.add_argument("--speeds", default="140-190", help="syllables per minute, lo-hi")
    ap.add_argument("--telephone", type=float, default=0.0,
                    help="share of sentences sent through the telephone band (8 kHz mu-law)")  # fmt: skip
    args = ap.parse_args()

    from qa_pipeline.asr.config import AsrConfig
    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.audio import resample
    from qa_pipeline.messages import Role, SpeechSegment
    from qa_pipeline.samples.generate import Voice, check_tools, render_speech
    from qa_pipeline.text import normalise

    espeak = check_tools()
    lo, hi = (int(x) for x in args.speeds.split("-"))
    engine = AsrEngine(AsrConfig(workers=1, threads_per_worker=1))
    r = random.Random(args.seed + 1)
    todo = items(args.seed)
    if args.limit:
        todo = todo[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lost = 0
    with args.out.open("w", encoding="utf-8") as f:
        for n, it in enumerate(todo):
            if args.voices == "f":  # the draws of seeds 16-18, kept as they were
                variant = f"f{r.randint(1, 4)}"
            else:
                variant = f"{r.choice(args.voices)}{r.randint(1, 4)}"
            voice = Voice(variant=variant, speed=r.randint(lo, hi), pitch=r.randint(25, 60))
            band = "16k"
            if args.telephone and r.random() < args.telephone:
                band = "8k-ulaw"
                audio = resample(_mulaw(render_speech(it.say, voice, rate=8000)), 8000)
            else:
                audio = render_speech(it.say, voice, rate=16000)
            seg = SpeechSegment(f"pii{n}", 1, Role.CUSTOMER, 0.0, len(audio) / 16000, audio)
            text = normalise(engine.transcribe_full(seg).text)
            rec: dict[str, object] = {
                "id": f"speech-{n:03d}" if args.seed == 16 else f"speech-s{args.seed}-{n:03d}",
                "source": "whisper",
                "class": it.cls,
                "text": text,
                "said": it.said,
                "say": it.say,
                "voice": voice.espeak_args(),
                **({"band": band} if band != "16k" else {}),
                "espeak": espeak,
                "model": engine.model_info.name,
                "expect": [],
            }
            if it.kind == "address":
                span = address_span(text)
                if span:
                    rec["expect"] = [{"kind": "address", "text": text[span[0] : span[1]]}]
                else:
                    rec["label_lost"] = True
            elif it.kind:
                got = label_span(text, it.said)
                if got:
                    rec["expect"] = [{"kind": it.kind, "text": text[got[0] : got[1]]}]
                    rec["heard"] = got[2]
                else:
                    rec["label_lost"] = True
            if rec.get("label_lost"):
                rec["expect"] = [{"kind": it.kind, "text": ""}]
                lost += 1
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            print(f"{n:3d} {it.cls:10s} {text}", file=sys.stderr)
    print(f"{len(todo)} items, {lost} with the number lost by the ASR -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
