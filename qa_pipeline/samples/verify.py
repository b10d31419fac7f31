"""Check that Whisper understands the generated calls, and tune voices until it does.

Developer tool (needs a Whisper model; not used by the tests)::

    python -m qa_pipeline.samples.verify --model /tmp/wb --outdir /tmp/samples
    python -m qa_pipeline.samples.verify --model /tmp/wb --tune     # rewrites tuning.yaml

Two measurements per turn:

* ``pipeline``: the call goes through the real recorded-call path (VAD, turn merging,
  the configured ASR settings and hallucination guard); each utterance is assigned to
  the turn on its channel it overlaps most. This is what ``qa-pipeline score`` sees.
* ``direct``: the turn's own audio (cut from the call with 150 ms either side, resampled
  to 16 kHz) decoded with ``language="zh", beam_size=5, temperature=0.0,
  condition_on_previous_text=False`` and nothing else.

A turn *passes* when every key phrase in its text is found in the transcript (exactly,
or as the same toneless pinyin syllables, as the rules' fuzzy match does), no key phrase
that is *not* in its text appears (it would make a rule fire falsely), and it was not
dropped. ``--tune`` renders each distinct turn (role + words) with a fixed list of candidate
voices (variant, speed, pitch), decodes it alone with the pipeline's ASR settings, keeps
the first that passes (or the best seen) and writes ``tuning.yaml``; then it checks the
whole calls through the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import yaml

from ..messages import Role, SpeechSegment
from ..text import match_form, normalise
from .generate import (
    ROLE_VOICES,
    Scenario,
    Turn,
    default_tuning_path,
    generate_call,
    load_scenarios,
    load_tuning,
    render_speech,
    voice_for,
)

KEY_PHRASES: tuple[str, ...] = (
    "您好",
    "早上好",
    "请问有什么可以帮您",
    "华冠",
    "请您稍等",
    "让您久等了",
    "感谢您的来电",
    "谢谢您的来电",
    "祝您生活愉快",
    "再见",
    "这是公司规定",
    "我们也没有办法",
    "早就有人提过了",
    "不可以随便修改",
    "我不知道",
    "保证",
    "绝对",
    "对不起",
    "抱歉",
    "投诉",
    "太差",
    "不满意",
    "还有什么需要",
    "喂",
)

# Key phrases --tune does not insist on: espeak-ng's 华冠 (hua2 guan4) comes out as
# 华万/哇哇/我乱 with every voice tried, so insisting would only burn the search.
TUNE_LENIENT: frozenset[str] = frozenset({"华冠"})
NO_KEY_CANDIDATES = 6  # turns without key phrases: try only the first few voices
NO_KEY_MAX_CER = 0.6

# Voices tried in order by --tune for a turn that Whisper does not get right:
# (variant or None for the role's own, speed offset, pitch offset).
CANDIDATES: dict[Role, tuple[tuple[str | None, int, int], ...]] = {
    Role.AGENT: (
        (None, 0, 0),
        (None, 15, 0),
        (None, -15, 0),
        (None, 0, 15),
        (None, 0, -15),
        ("f1", 0, -20),
        ("f4", 0, -20),
        ("f2", 0, 0),
        ("f2", 10, -20),
        ("f5", 0, 0),
        (None, 25, 10),
        (None, -25, -10),
        ("f1", 10, 0),
        ("f4", -10, 0),
        ("m7", 0, 0),
        ("", 0, 0),
    ),
    Role.CUSTOMER: (
        (None, 0, 0),
        (None, 15, 0),
        (None, -15, 0),
        (None, 0, 15),
        (None, 0, 25),
        ("m7", 0, 20),
        ("f1", 0, 10),
        ("f3", 0, 0),
        (None, 25, 10),
        (None, -25, 5),
        ("m7", -10, 40),
        ("", 0, 10),
    ),
}


def _pinyin(text: str) -> list[str]:
    from pypinyin import lazy_pinyin

    return [p for p in lazy_pinyin(match_form(text)) if p]


def contains(hyp: str, phrase: str) -> bool:
    """Exact (match form) or, for phrases of 2+ syllables, same toneless pinyin run."""
    if match_form(phrase) in match_form(hyp):
        return True
    want = _pinyin(phrase)
    if len(want) < 2:
        return False
    got = _pinyin(hyp)
    return any(got[i : i + len(want)] == want for i in range(len(got) - len(want) + 1))


def cer(ref: str, hyp: str) -> float:
    from rapidfuzz.distance import Levenshtein

    r, h = match_form(ref), match_form(hyp)
    return Levenshtein.distance(r, h) / max(1, len(r))


@dataclass
class TurnCheck:
    scenario: str
    index: int
    role: str
    text: str
    fingerprint: str
    hyp: str
    hyp_direct: str
    missing: list[str] = field(default_factory=list)
    spurious: list[str] = field(default_factory=list)

    @property
    def cer(self) -> float:
        return cer(self.text, self.hyp)

    @property
    def cer_direct(self) -> float:
        return cer(self.text, self.hyp_direct)

    @property
    def passed(self) -> bool:
        return bool(self.hyp) and not self.missing and not self.spurious


def _judge(text: str, hyp: str) -> tuple[list[str], list[str]]:
    keys = [k for k in KEY_PHRASES if contains(text, k)]
    missing = [k for k in keys if not contains(hyp, k)]
    spurious = [
        k
        for k in KEY_PHRASES
        if k not in keys and not any(k in other for other in keys) and contains(hyp, k)
    ]
    return missing, spurious


class Checker:
    def __init__(self, model: str, *, direct: bool = True) -> None:
        from ..asr.engine import AsrEngine
        from ..config import AsrConfig, PipelineConfig
        from ..pipeline import Pipeline

        self.config = PipelineConfig(asr=AsrConfig(model=model))
        self.engine = AsrEngine(self.config.asr)
        self.pipeline = Pipeline(self.config, engine=self.engine)
        self.direct = direct

    def check(self, sc: Scenario, wav: Path) -> list[TurnCheck]:
        side = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
        turns = side["turns"]
        utts = self.pipeline.transcribe(wav).transcript.utterances
        texts: dict[int, list[str]] = defaultdict(list)
        for u in utts:
            best, overlap = None, 0.0
            for i, t in enumerate(turns):
                if t["channel"] != u.channel:
                    continue
                ov = min(u.end, t["end"]) - max(u.start, t["start"])
                if ov > overlap:
                    best, overlap = i, ov
            if best is not None:
                texts[best].append(u.text)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
        out = []
        for i, (t, turn) in enumerate(zip(turns, sc.turns, strict=True)):
            hyp = "".join(texts.get(i, []))
            direct = self._direct(audio[:, t["channel"]], rate, t["start"], t["end"])
            missing, spurious = _judge(t["text"], hyp)
            out.append(
                TurnCheck(
                    sc.id, i, t["role"], t["text"], turn.fingerprint, hyp, direct, missing, spurious
                )
            )
        return out

    def decode_clip(self, clip: np.ndarray, rate: int) -> str:
        """A rendered turn, padded with 150 ms of line noise, through the pipeline's ASR."""
        from ..audio import resample

        pad = np.random.default_rng(0).normal(0.0, 0.001, int(0.15 * rate)).astype(np.float32)
        x = resample(np.concatenate([pad, clip, pad]).astype(np.float32), rate)
        seg = SpeechSegment(
            call_id="tune",
            channel=0,
            role=Role.AGENT,
            start=0.0,
            end=len(x) / 16000,
            samples=x,
        )
        return self.engine.transcribe_segment(seg).text

    def _direct(self, channel: np.ndarray, rate: int, start: float, end: float) -> str:
        if not self.direct:
            return ""
        from ..audio import resample

        a = max(0, int((start - 0.15) * rate))
        b = min(len(channel), int((end + 0.15) * rate))
        x = resample(np.ascontiguousarray(channel[a:b]), rate)
        segs, _ = self.engine.model.transcribe(
            x,
            language="zh",
            beam_size=5,
            temperature=0.0,
            condition_on_previous_text=False,
            max_new_tokens=min(224, int(25 * (b - a) / rate) + 8),
        )
        return normalise("".join(s.text for s in segs))


def _write_tuning(path: Path, tuning: dict[str, dict[str, int]], texts: dict[str, str]) -> None:
    doc = {
        "turns": {
            fp: {**v, "text": texts.get(fp, "")}
            for fp, v in sorted(tuning.items(), key=lambda kv: texts.get(kv[0], ""))
        }
    }
    header = (
        "# Per-turn espeak-ng voice overrides (variant, speed, pitch) that make Whisper base recognise\n"
        "# the turn's key phrases in the generated calls. Written by\n"
        "#   python -m qa_pipeline.samples.verify --model <whisper dir> --tune\n"
        "# Keyed by Turn.fingerprint (role + words); 'text' is for the reader only.\n"
    )
    path.write_text(
        header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )


def _candidate_voice(role: Role, cand: tuple[str | None, int, int]) -> dict[str, Any]:
    base = ROLE_VOICES[role]
    variant, ds, dp = cand
    entry: dict[str, Any] = {}
    if variant is not None and variant != base.variant:
        entry["variant"] = variant
    if ds:
        entry["speed"] = base.speed + ds
    if dp:
        entry["pitch"] = max(0, min(99, base.pitch + dp))
    return entry


def tune_turn(checker: Checker, turn: Turn) -> tuple[dict[str, Any], str, float, bool]:
    """First candidate voice whose transcript passes, else the best; (entry, hyp, cer, ok)."""
    best: tuple[tuple[int, float], dict[str, Any], str] | None = None
    has_keys = any(contains(turn.text, k) for k in KEY_PHRASES if k not in TUNE_LENIENT)
    cands = CANDIDATES[turn.role] if has_keys else CANDIDATES[turn.role][:NO_KEY_CANDIDATES]
    for cand in cands:
        entry = _candidate_voice(turn.role, cand)
        voice = voice_for(
            replace(turn, speed=None, pitch=None, variant=None), {turn.fingerprint: entry}
        )
        hyp = checker.decode_clip(render_speech(turn.say or turn.text, voice, 8000), 8000)
        missing, spurious = _judge(turn.text, hyp)
        missing = [k for k in missing if k not in TUNE_LENIENT]
        err = cer(turn.text, hyp)
        key = (len(missing) + len(spurious) + (0 if hyp else 5), err)
        if best is None or key < best[0]:
            best = (key, entry, hyp)
        if key[0] == 0 and (has_keys or err <= NO_KEY_MAX_CER):
            return entry, hyp, err, True
    assert best is not None
    return best[1], best[2], best[0][1], False


def tune(
    checker: Checker,
    scenarios: Sequence[Scenario],
    outdir: Path,
    path: Path,
    *,
    only_new: bool = False,
    workers: int = 2,
) -> dict[str, list[TurnCheck]]:
    """Pick a voice per distinct turn (decoded alone, as the pipeline would), write the
    tuning table, then check the whole calls through the pipeline."""
    unique: dict[str, Turn] = {}
    for sc in scenarios:
        for t in sc.turns:
            unique.setdefault(t.fingerprint, t)
    tuning = load_tuning(path)
    texts = {fp: t.text for fp, t in unique.items()}
    # forget entries of turns no scenario says any more
    tuning = {fp: v for fp, v in tuning.items() if fp in unique}
    todo = {fp: t for fp, t in unique.items() if not (only_new and fp in tuning)}

    def one(item: tuple[str, Turn]) -> tuple[str, dict[str, Any], str, float, bool]:
        fp, t = item
        entry, hyp, err, ok = tune_turn(checker, t)
        return fp, entry, hyp, err, ok

    with ThreadPoolExecutor(workers) as pool:
        for fp, entry, hyp, err, ok in pool.map(one, todo.items()):
            tuning[fp] = entry  # {} = the role's voice (kept so --only-new skips it)
            print(
                f"{'ok  ' if ok else 'BEST'} {texts[fp]} {entry or ''} -> {hyp} ({err:.2f})",
                file=sys.stderr,
                flush=True,
            )
    _write_tuning(path, tuning, texts)
    return {sc.id: checker.check(sc, generate_call(sc, outdir, tuning=tuning)) for sc in scenarios}


def report(results: dict[str, list[TurnCheck]], verbose: bool = False) -> str:
    lines = [
        "| scenario | turns | CER pipeline | CER direct | turns passing | missing key phrases "
        "| spurious |",
        "|---|---|---|---|---|---|---|",
    ]
    tot_n = tot_e = tot_d = 0.0
    for sid, checks in results.items():
        n = sum(len(match_form(c.text)) for c in checks)
        e = sum(min(1.0, c.cer) * len(match_form(c.text)) for c in checks)
        d = sum(min(1.0, c.cer_direct) * len(match_form(c.text)) for c in checks)
        tot_n, tot_e, tot_d = tot_n + n, tot_e + e, tot_d + d
        missing = sorted({k for c in checks for k in c.missing})
        spurious = sorted({k for c in checks for k in c.spurious})
        lines.append(
            f"| {sid} | {len(checks)} | {e / n:.2f} | {d / n:.2f} | "
            f"{sum(c.passed for c in checks)}/{len(checks)} | {', '.join(missing) or '-'} "
            f"| {', '.join(spurious) or '-'} |"
        )
    lines.append(
        f"| **all** | {sum(len(c) for c in results.values())} | {tot_e / tot_n:.2f} | "
        f"{tot_d / tot_n:.2f} | "
        f"{sum(c.passed for cs in results.values() for c in cs)}/"
        f"{sum(len(c) for c in results.values())} | | |"
    )
    if verbose:
        for checks in results.values():
            for c in checks:
                mark = "ok  " if c.passed else "FAIL"
                lines.append(
                    f"{mark} {c.scenario}[{c.index}] {c.role}: {c.text}\n"
                    f"      pipeline ({c.cer:.2f}): {c.hyp}\n"
                    f"      direct   ({c.cer_direct:.2f}): {c.hyp_direct}"
                    + (f"\n      missing={c.missing} spurious={c.spurious}" if not c.passed else "")
                )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True, help="CTranslate2 Whisper directory")
    ap.add_argument("--outdir", type=Path, default=Path("samples"))
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--tune", action="store_true", help="search voice offsets; write tuning")
    ap.add_argument("--only-new", action="store_true", help="tune only turns not in tuning")
    ap.add_argument("--tuning", type=Path, default=default_tuning_path())
    ap.add_argument("--no-direct", action="store_true", help="skip the per-turn direct decode")
    ap.add_argument("--json", type=Path, help="also write the per-turn results here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    scenarios = load_scenarios()
    if args.scenario:
        scenarios = [s for s in scenarios if s.id in set(args.scenario)]
    checker = Checker(args.model, direct=not args.no_direct)
    if args.tune:
        results = tune(checker, scenarios, args.outdir, args.tuning, only_new=args.only_new)
    else:
        tuning = load_tuning(args.tuning)
        results = {
            sc.id: checker.check(sc, generate_call(sc, args.outdir, tuning=tuning))
            for sc in scenarios
        }
    print(report(results, args.verbose))
    if args.json:
        doc: dict[str, Any] = {
            sid: [
                {
                    "index": c.index,
                    "role": c.role,
                    "text": c.text,
                    "pipeline": c.hyp,
                    "direct": c.hyp_direct,
                    "cer": round(c.cer, 3),
                    "cer_direct": round(c.cer_direct, 3),
                    "missing": c.missing,
                    "spurious": c.spurious,
                }
                for c in checks
            ]
            for sid, checks in results.items()
        }
        args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
