"""Measure what Whisper writes for spoken digits and for the context words said before them.

Data about the ASR, not about the test set: random digit strings (new ones, seeded apart
from ``make_pii_speech.py``'s) are said after each context word of the recognisers
(手机号, 电话, 身份证, 卡号, 订单号, 工号…) by ``espeak-ng -v cmn-latn-pinyin`` in female and
male voices at several speeds, at 16 kHz and as 8 kHz mu-law (the telephone band), and
decoded by the project's engine as ``make_pii_speech.py`` decodes (``transcribe_full``,
default settings), the transcript normalised with :func:`qa_pipeline.text.normalise`.

The said sentence and the transcript are aligned character by character (Levenshtein; a
transcript character that reads as the same digit costs nothing); each said digit's
aligned character is counted (``digits``: ``"7": {"七": n, "期": n, "T": n, "": n}``, ``""``
a deletion) and so is what stood where each context word was said (``cues``).
``qa_pipeline/privacy/numerals.py`` and ``detect.py`` take their near-misses from this file
(``tests/privacy/test_detect.py`` checks each one against it). Re-measure with::

    nice python benchmarks/measure_digit_confusions.py --seed 1001 --pairs p1.jsonl
    nice python benchmarks/measure_digit_confusions.py --seed 1002 --pairs p2.jsonl
    python benchmarks/measure_digit_confusions.py --from-pairs p1.jsonl p2.jsonl \
        --out benchmarks/digit_confusions.json

(the said/heard pairs of the committed counts: ``benchmarks/digit_confusion_pairs.jsonl``).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_ZH = "零一二三四五六七八九"
_BASE = {**{str(i): str(i) for i in range(10)}, **{c: str(i) for i, c in enumerate(_ZH)}}
_BASE.update({"幺": "1", "两": "2"})
#: context words said before the digits (the recognisers' raising and lowering cues)
CUES = (
    "手机号", "手机", "电话", "号码", "联系电话", "座机", "固定电话", "身份证", "身份证号",
    "证件号", "卡号", "银行卡", "账号", "验证码", "密码", "订单号", "单号", "快递单号",
    "工号", "尾号", "编号",
)  # fmt: skip
_SKIP = set(" ,，、。？！-－—–.…·:：;；")


def said_digits(r: random.Random, n: int) -> tuple[str, str]:
    """(digits, how they are said: one numeral each, 幺 or 一 for 1, pauses between groups)."""
    digits = "".join(r.choice("0123456789") for _ in range(n))
    one = r.choice("幺一")
    cuts = {3, 7} if n == 11 else {4, 8, 12, 16} if n >= 16 else set()
    out = []
    for i, d in enumerate(digits):
        if i in cuts and r.random() < 0.7:
            out.append("，")
        out.append(one if d == "1" else _ZH[int(d)])
    return digits, "".join(out)


def align(ref: str, hyp: str) -> list[tuple[int | None, int | None]]:
    """Character alignment of ``ref`` and ``hyp`` (indices; None for a gap)."""

    def sub(a: str, b: str) -> float:
        return 0.0 if a == b or (a in _BASE and _BASE.get(b) == _BASE[a]) else 1.0

    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1))
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(
                d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + sub(ref[i - 1], hyp[j - 1])
            )
    out: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i, j] == d[i - 1, j - 1] + sub(ref[i - 1], hyp[j - 1]):
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and d[i, j] == d[i - 1, j] + 1:
            out.append((i - 1, None))
            i -= 1
        else:
            out.append((None, j - 1))
            j -= 1
    return out[::-1]


def count(ref: str, hyp: str, digits: Counter[tuple[str, str]], cues: Counter[tuple[str, str]],
          cue: str) -> None:  # fmt: skip
    ref_c = "".join(c for c in ref if c not in _SKIP)
    hyp_c = "".join(c for c in hyp if c not in _SKIP)
    pairs = align(ref_c, hyp_c)
    cue_at = ref_c.find(cue)
    heard_cue: list[str] = []
    for i, j in pairs:
        h = hyp_c[j] if j is not None else ""
        if i is None:
            continue
        if cue_at <= i < cue_at + len(cue):
            heard_cue.append(h)
        elif ref_c[i] in _BASE and i >= cue_at + len(cue):
            digits[(_BASE[ref_c[i]], h)] += 1
    cues[(cue, "".join(heard_cue))] += 1


def mulaw(x: np.ndarray, rate: int) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="ULAW")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return np.asarray(y, dtype=np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "digit_confusions.json")
    ap.add_argument("--pairs", type=Path, default=None, help="also write each said/heard pair")
    ap.add_argument("--per-cue", type=int, default=4, help="sentences per context word")
    ap.add_argument("--seed", type=int, default=1001)
    ap.add_argument("--limit", type=int, default=0, help="stop after N sentences (a quick look)")
    ap.add_argument("--from-pairs", type=Path, nargs="+", default=None,
                    help="count --pairs files (several runs) again, decoding nothing")  # fmt: skip
    args = ap.parse_args()
    if args.from_pairs:
        digits: Counter[tuple[str, str]] = Counter()
        cues: Counter[tuple[str, str]] = Counter()
        recs = [json.loads(x) for f in args.from_pairs
                for x in f.read_text(encoding="utf-8").splitlines() if x.strip()]  # fmt: skip
        for rec in recs:
            count(rec["ref"], rec["hyp"], digits, cues, cue_of(rec["ref"]))
        about = {k: recs[0][k] for k in ("model", "espeak") if k in recs[0]}
        about["seeds"] = sorted({rec["seed"] for rec in recs if "seed" in rec})
        write(args.out, digits, cues, len(recs), about)
        return 0

    from qa_pipeline.asr.config import AsrConfig
    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.audio import resample
    from qa_pipeline.messages import Role, SpeechSegment
    from qa_pipeline.samples.generate import Voice, check_tools, render_speech
    from qa_pipeline.text import normalise

    espeak = check_tools()
    engine = AsrEngine(AsrConfig(workers=1, threads_per_worker=1))
    r = random.Random(args.seed)
    digits = Counter()
    cues = Counter()
    pairs_f = args.pairs.open("w", encoding="utf-8") if args.pairs else None
    t0 = time.time()
    n = 0
    todo = [cue for cue in CUES for _ in range(args.per_cue)]
    for cue in todo[: args.limit or None]:
        number, say = said_digits(r, r.choice([4, 6, 8, 11, 11, 18]))
        ref = f"{cue}是{say}" if r.random() < 0.6 else f"{cue}{say}"
        voice = Voice(variant=f"{r.choice('fm')}{r.randint(1, 4)}",
                      speed=r.randint(130, 200), pitch=r.randint(20, 65))  # fmt: skip
        band = r.choice(["16k", "8k-ulaw"])
        if band == "16k":
            audio = render_speech(ref, voice, rate=16000)
        else:
            audio = resample(mulaw(render_speech(ref, voice, rate=8000), 8000), 8000)
        seg = SpeechSegment(f"m{n}", 1, Role.CUSTOMER, 0.0, len(audio) / 16000, audio)
        hyp = normalise(engine.transcribe_full(seg).text)
        count(ref, hyp, digits, cues, cue)
        if pairs_f:
            rec = {"ref": ref, "hyp": hyp, "voice": voice.espeak_args(), "band": band,
                   "seed": args.seed, "model": engine.model_info.name, "espeak": espeak}  # fmt: skip
            pairs_f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
        print(f"{n:4d} {time.time() - t0:6.0f}s {ref} -> {hyp}", file=sys.stderr)
    if pairs_f:
        pairs_f.close()
    write(args.out, digits, cues, n, {"model": engine.model_info.name, "espeak": espeak,
                                      "seeds": [args.seed]})  # fmt: skip
    return 0


def cue_of(ref: str) -> str:
    """The context word a said sentence starts with."""
    return max((c for c in CUES if ref.startswith(c)), key=len)


def write(out_path: Path, digits: Counter[tuple[str, str]], cues: Counter[tuple[str, str]],
          n: int, about: dict[str, object]) -> None:  # fmt: skip
    by_digit: dict[str, dict[str, int]] = defaultdict(dict)
    for (d, h), k in sorted(digits.items(), key=lambda x: (x[0][0], -x[1])):
        by_digit[d][h] = k
    by_cue: dict[str, dict[str, int]] = defaultdict(dict)
    for (c, h), k in sorted(cues.items(), key=lambda x: (x[0][0], -x[1])):
        by_cue[c][h] = k
    out = {
        "about": "what Whisper wrote for each said digit and context word (see "
        "benchmarks/measure_digit_confusions.py); '' = nothing (a deletion)",
        **about,
        "sentences": n,
        "digits": dict(sorted(by_digit.items())),
        "cues": dict(by_cue),
    }
    out_path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{n} sentences -> {out_path}")


if __name__ == "__main__":
    sys.exit(main())
