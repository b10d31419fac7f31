"""Measure how Whisper mishears Mandarin syllables: the data behind the fuzzy operator's costs.

Two sources, both decoded by the project's engine (``AsrEngine(AsrConfig())``, the default
model and decode settings, each clip alone as the recorded path decodes a turn):

* every fuzzy phrase of the default rule pack (configs/rules/*.yaml, with pack.yaml's
  ``phrases``), spoken by ``espeak-ng -v cmn-latn-pinyin`` in three voices / speeds, at
  8 kHz, encoded to mu-law and back (the telephone path);
* the shared real Mandarin clips (``<shared>/data/speech/manifest.jsonl``, ``lang: zh``) at
  16 kHz and as 8 kHz mu-law.

Reference and hypothesis are turned into toneless pinyin syllables (pypinyin, not folded),
aligned syllable by syllable (weighted Levenshtein: a substitution sharing the initial or
the final costs 0.5, another 0.9, an insertion or deletion 1), and every aligned pair is
counted: how often each initial and final was said (``seen_*``); the syllables heard with
only the initial changed (``initials``, ``"said>heard": count``) or only the final
(``finals``) -- the confusions the costs are made of; those with both changed
(``both_changed``: mostly decodes that went wrong altogether, not counted as a confusion);
and the syllables inserted and deleted. ``qa_pipeline/rules/confusions.json`` holds the
result; the costs derive from it (``qa_pipeline/rules/confusion.py``). Re-measure with::

    nice python benchmarks/measure_confusions.py --out qa_pipeline/rules/confusions.json \
        --pairs benchmarks/confusion_pairs.jsonl

(``--pairs FILE`` writes every reference / hypothesis pair, one JSON object a line;
``--from-pairs FILE`` counts such a file again without decoding anything.)
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa_pipeline.audio import resample  # noqa: E402
from qa_pipeline.messages import Role, SpeechSegment  # noqa: E402
from qa_pipeline.rules.runtime.confusion import split_syllable  # noqa: E402
from qa_pipeline.samples.generate import Voice, render_speech  # noqa: E402
from qa_pipeline.text import match_form  # noqa: E402

# three voices / speeds in the corpus's range (140-190 syllables a minute)
VOICES = (
    Voice(variant="f3", speed=140, pitch=50),
    Voice(variant="f2", speed=165, pitch=25),
    Voice(variant="m3", speed=185, pitch=40),
)
SHARED = ROOT.parent / "shared" / "data" / "speech"


def pack_phrases() -> list[str]:
    """Every fuzzy phrase of the default pack (holiday greetings included)."""
    from qa_pipeline.rules import load_pack
    from qa_pipeline.rules.runtime.textindex import _Fuzzy

    ix = load_pack().index
    out = {ix.describe(i) for i, p in enumerate(ix._lazy) if isinstance(p, _Fuzzy)}
    # the index keeps numerals folded to digits (五一 -> 51): speak them as written
    return sorted(s.translate(str.maketrans("0123456789", "零一二三四五六七八九")) for s in out)


def pinyin(text: str) -> list[str]:
    """Toneless pinyin of the Chinese characters of ``text`` (other words are dropped:
    Whisper sometimes answers in English)."""
    from pypinyin import lazy_pinyin

    han = "".join(c for c in match_form(text) if "\u4e00" <= c <= "\u9fff")
    return [s.lower() for s in lazy_pinyin(han) if s.isascii() and s.isalpha()]


def _sub(a: str, b: str) -> float:
    if a == b:
        return 0.0
    ia, fa = split_syllable(a)
    ib, fb = split_syllable(b)
    return 0.5 if ia == ib or fa == fb else 0.9


def align(ref: list[str], hyp: list[str]) -> list[tuple[str | None, str | None]]:
    """Syllable pairs (ref, hyp); None on the other side for an insertion / deletion."""
    n, m = len(ref), len(hyp)
    d = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        d[i][0] = float(i)
    for j in range(1, m + 1):
        d[0][j] = float(j)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(
                d[i - 1][j - 1] + _sub(ref[i - 1], hyp[j - 1]),
                d[i - 1][j] + 1.0,
                d[i][j - 1] + 1.0,
            )
    out: list[tuple[str | None, str | None]] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + _sub(ref[i - 1], hyp[j - 1]):
            out.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1.0:
            out.append((ref[i - 1], None))
            i -= 1
        else:
            out.append((None, hyp[j - 1]))
            j -= 1
    return out[::-1]


class Counts:
    def __init__(self) -> None:
        self.initials: Counter[str] = Counter()
        self.finals: Counter[str] = Counter()
        self.seen_i: Counter[str] = Counter()
        self.seen_f: Counter[str] = Counter()
        self.syllables = 0
        self.exact = 0
        self.substituted = 0
        self.both = 0
        self.inserted = 0
        self.deleted = 0

    def add(self, ref: str, hyp: str) -> None:
        for r, h in align(pinyin(ref), pinyin(hyp)):
            if r is None:
                self.inserted += 1
                continue
            self.syllables += 1
            if h is None:
                self.deleted += 1
                continue
            ri, rf = split_syllable(r)
            hi, hf = split_syllable(h)
            self.seen_i[ri] += 1
            self.seen_f[rf] += 1
            if r == h:
                self.exact += 1
                continue
            self.substituted += 1
            if rf == hf:
                self.initials[f"{ri}>{hi}"] += 1
            elif ri == hi:
                self.finals[f"{rf}>{hf}"] += 1
            else:
                self.both += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "syllables": self.syllables,
            "exact": self.exact,
            "substituted": self.substituted,
            "both_changed": self.both,
            "inserted": self.inserted,
            "deleted": self.deleted,
            "seen_initials": dict(sorted(self.seen_i.items())),
            "seen_finals": dict(sorted(self.seen_f.items())),
            "initials": dict(self.initials.most_common()),
            "finals": dict(self.finals.most_common()),
        }


def mulaw(x: np.ndarray, rate: int) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="ULAW")
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    return np.asarray(y, dtype=np.float32)


def decode(engine: Any, clip: np.ndarray, rate: int) -> str:
    pad = np.random.default_rng(0).normal(0.0, 0.001, int(0.15 * rate)).astype(np.float32)
    x = resample(np.concatenate([pad, clip, pad]).astype(np.float32), rate)
    seg = SpeechSegment(
        call_id="measure", channel=0, role=Role.AGENT, start=0.0, end=len(x) / 16000, samples=x
    )
    return str(engine.transcribe_segment(seg).text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="write the counts here (JSON)")
    ap.add_argument("--pairs", type=Path, default=None, help="write ref/hyp pairs (JSON lines)")
    ap.add_argument("--limit", type=int, default=0, help="first N phrases only (a quick look)")
    ap.add_argument("--no-shared", action="store_true", help="skip the shared real clips")
    ap.add_argument("--from-pairs", type=Path, default=None, help="count a --pairs file again")
    args = ap.parse_args(argv)
    if args.from_pairs:
        counts = Counts()
        for line in args.from_pairs.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            counts.add(rec["ref"], rec["hyp"])
        old = args.out.read_text(encoding="utf-8") if args.out and args.out.exists() else "{}"
        meta = json.loads(old)
        keep = {k: meta[k] for k in ("how", "model", "sources") if k in meta}
        _write({**keep, **counts.as_dict()}, args.out)
        return 0

    from qa_pipeline.asr.engine import AsrEngine
    from qa_pipeline.config import AsrConfig

    engine = AsrEngine(AsrConfig())
    counts = Counts()
    pairs: list[dict[str, str]] = []
    t0 = time.time()
    phrases = pack_phrases()
    if args.limit:
        phrases = phrases[: args.limit]
    for k, phrase in enumerate(phrases):
        for v in VOICES:
            clip = mulaw(render_speech(phrase, v, 8000), 8000)
            hyp = decode(engine, clip, 8000)
            counts.add(phrase, hyp)
            pairs.append({"source": f"espeak {v.variant} {v.speed}", "ref": phrase, "hyp": hyp})
        print(f"[{k + 1}/{len(phrases)}] {phrase} -> {pairs[-3]['hyp']} | {pairs[-1]['hyp']}")
    n_shared = 0
    manifest = SHARED / "manifest.jsonl"
    if manifest.exists() and not args.no_shared:
        for line in manifest.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("lang") != "zh":
                continue
            audio, rate = sf.read(SHARED / rec["audio"], dtype="float32", always_2d=True)
            mono = np.ascontiguousarray(audio.mean(axis=1))
            x16 = resample(mono, rate) if rate != 16000 else mono
            tel = mulaw(resample(x16, 16000, 8000), 8000)
            for name, clip, r in (("16k", x16, 16000), ("8k-ulaw", tel, 8000)):
                hyp = decode(engine, clip, r)
                counts.add(rec["text"], hyp)
                pairs.append(
                    {"source": f"shared {name} {rec['audio']}", "ref": rec["text"], "hyp": hyp}
                )
            n_shared += 1
            print(f"[shared] {rec['text']} -> {pairs[-1]['hyp']}")
    doc = {
        "how": "benchmarks/measure_confusions.py (see its docstring)",
        "model": str(AsrConfig().model),
        "sources": {
            "espeak_phrases": len(phrases),
            "espeak_voices": [f"{v.variant} speed {v.speed}" for v in VOICES],
            "shared_zh_clips": n_shared,
            "clips": len(pairs),
        },
        **counts.as_dict(),
    }
    _write(doc, args.out)
    if args.pairs:
        with args.pairs.open("w", encoding="utf-8") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
    print(f"{len(pairs)} clips in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


def _write(doc: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    raise SystemExit(main())
