"""The untuned accuracy corpus: reproducible plans, every rule covered both ways, labels
that the reference text confirms; rendered audio that matches its sidecar; and (slow) the
CI slice scored from its audio with a floor."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.samples import corpus as cp
from qa_pipeline.transcript import transcript_from_dict

TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
needs_tools = pytest.mark.skipif(
    bool(TOOLS_MISSING),
    reason=f"{' and '.join(TOOLS_MISSING)} not installed (apt-get install -y espeak-ng sox)",
)
SEEDS = (cp.DEFAULT_SEED, 2)
# Audio verdict accuracy measured on the slice (seed 1), uncertain verdicts counted as wrong
# as the issue asks: 260/384 = 67.7 % (85 uncertain; 74 % before verdicts could be uncertain,
# when good agents were accused instead); the floor is a few points under it. Raise it as the
# pipeline improves (the target is 95 %). The slice runs without the verification
# decode, which would double its time in CI (it is measured with it by
# benchmarks/bench_accuracy.py, and guarded end to end by tests/test_verify.py's slow test).
AUDIO_FLOOR = 0.64


@pytest.fixture(scope="module")
def plans() -> dict[int, list[cp.CallPlan]]:
    return {s: cp.plan_corpus(cp.DEFAULT_CALLS, s) for s in SEEDS}


def _labels(plans: list[cp.CallPlan]) -> dict[str, dict[str, str]]:
    return {p.id: cp.expected_verdicts(p, cp.estimate_timing(p)) for p in plans}


def _score_reference(plan: cp.CallPlan, timing: cp.Timing) -> dict[str, str]:
    pack = load_pack(settings={"company_name": plan.company})
    card = score_transcript(pack, transcript_from_dict(cp.reference_transcript(plan, timing)))
    return {v.rule_id: v.verdict.value for v in card.verdicts}


def test_plans_are_reproducible_from_the_seed(plans: dict[int, list[cp.CallPlan]]) -> None:
    again = cp.plan_corpus(cp.DEFAULT_CALLS, cp.DEFAULT_SEED)
    assert [p.doc() for p in again] == [p.doc() for p in plans[cp.DEFAULT_SEED]]
    a, b = plans[SEEDS[0]], plans[SEEDS[1]]
    assert [p.lines for p in a] != [p.lines for p in b]
    assert len({p.id for p in a}) == len(a) >= 40


def test_no_tuning_in_the_scripts(plans: dict[int, list[cp.CallPlan]]) -> None:
    """A turn's words are what espeak-ng reads: no respelling, no per-turn voice."""
    for p in plans[cp.DEFAULT_SEED]:
        assert all(ln.role in ("agent", "customer") and ln.text for ln in p.lines)
        assert p.audio.agent.variant in cp.VOICE_VARIANTS
        assert 140 <= p.audio.agent.speed <= 190 and 140 <= p.audio.customer.speed <= 190


@pytest.mark.parametrize("seed", SEEDS)
def test_every_rule_is_covered_both_ways(plans: dict[int, list[cp.CallPlan]], seed: int) -> None:
    labels = _labels(plans[seed])
    rules = [r.id for r in load_pack().rules]
    seen: dict[str, Counter[str]] = {r: Counter() for r in rules}
    for v in labels.values():
        assert set(v) == set(rules)
        for rule, verdict in v.items():
            seen[rule][verdict] += 1
    missing = [
        r for r, c in seen.items() if not (c["failed"] and (c["passed"] or c["not_applicable"]))
    ]
    assert not missing, {r: dict(seen[r]) for r in missing}
    # the rules that are ever not applicable are also seen passing
    no_pass = [r for r, c in seen.items() if not c["passed"]]
    assert not no_pass


def test_metadata_and_audio_vary(plans: dict[int, list[cp.CallPlan]]) -> None:
    ps = plans[cp.DEFAULT_SEED]
    hours = {int(p.started_at[11:13]) for p in ps if p.started_at}
    assert any(h < 12 for h in hours) and any(h >= 12 for h in hours)
    assert any(p.holiday for p in ps) and any(p.started_at is None for p in ps)
    assert {p.direction for p in ps} == {"inbound", "outbound"}
    assert {(p.audio.rate, p.audio.encoding) for p in ps} >= {
        (8000, "ulaw"),
        (8000, "pcm16"),
        (16000, "pcm16"),
    }
    assert {p.audio.noise for p in ps} == {"white", "pink"}
    assert len({p.audio.snr_db for p in ps}) >= 3
    assert any(p.audio.babble_channel is not None for p in ps)
    assert len({p.audio.agent.variant for p in ps} | {p.audio.customer.variant for p in ps}) >= 5
    assert len({p.company for p in ps}) >= 6


@pytest.mark.parametrize("seed", SEEDS)
def test_reference_text_confirms_the_labels(plans: dict[int, list[cp.CallPlan]], seed: int) -> None:
    """The default pack, reading the script's words, agrees with >= 99 % of the labels."""
    right = total = 0
    wrong = []
    for p in plans[seed]:
        timing = cp.estimate_timing(p)
        want = cp.expected_verdicts(p, timing)
        got = _score_reference(p, timing)
        for rule, v in want.items():
            total += 1
            right += got[rule] == v
            if got[rule] != v:
                wrong.append(f"{p.id} {rule}: want {v}, text gives {got[rule]}")
    assert right / total >= 0.99, wrong


def test_timing_labels_are_clear_of_thresholds(plans: dict[int, list[cp.CallPlan]]) -> None:
    for p in plans[cp.DEFAULT_SEED]:
        assert cp.margin_problems(p, cp.estimate_timing(p)) == [], p.id


def test_slice_covers_the_rules(plans: dict[int, list[cp.CallPlan]]) -> None:
    labels = _labels(plans[cp.DEFAULT_SEED])
    ids = cp.select_slice(labels, 12)
    assert len(ids) == 12 and ids == cp.select_slice(labels, 12)
    fired = {r for i in ids for r, v in labels[i].items() if v == "failed"}
    assert len(fired) >= 25


@needs_tools
def test_rendered_calls_match_their_sidecars(
    tmp_path: Path, plans: dict[int, list[cp.CallPlan]]
) -> None:
    ps = plans[cp.DEFAULT_SEED]
    picks = [
        next(p for p in ps if p.audio.encoding == "ulaw" and p.audio.babble_channel is not None),
        next(p for p in ps if "agent_hangs_up" in p.faults),
    ]
    for plan in picks:
        wav = cp.render_call(plan, tmp_path)
        side = json.loads(wav.with_suffix(".json").read_text(encoding="utf-8"))
        info = sf.info(str(wav))
        assert info.samplerate == plan.audio.rate and info.channels == 2
        assert side["company"] == plan.company
        assert side["settings"]["rules"]["settings"]["company_name"] == plan.company
        assert set(side["expected"]) == {r.id for r in load_pack().rules}
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        for t in side["turns"]:
            ch = audio[:, t["channel"]]
            s, e = round(t["start"] * rate), round(t["end"] * rate)
            inside = float(np.sqrt(np.mean(ch[s:e] ** 2)))
            assert 20 * np.log10(inside) > t["level_dbfs"] - 3, t
        # a hung-up side is digital silence from its channel end
        ends = side["channel_ends"]
        for ch, end in enumerate(ends):
            tail = audio[int(end * rate) + 1 :, ch]
            assert not tail.any()
        # the reference transcript is a transcript document the pipeline reads
        ref = transcript_from_dict(side["reference"])
        assert len(ref.utterances) == len(side["turns"])
        assert ref.ended.channel_ends == tuple(ends)
        card = score_transcript(load_pack(settings={"company_name": plan.company}), ref)
        got = {v.rule_id: v.verdict.value for v in card.verdicts}
        agree = sum(got[r] == v for r, v in side["expected"].items())
        assert agree >= len(got) - 1
        # cached: same inputs, same file untouched
        mtime = wav.stat().st_mtime_ns
        assert cp.render_call(plan, tmp_path) == wav and wav.stat().st_mtime_ns == mtime
    turns = list(cp.corpus_turns([tmp_path / f"{p.id}.wav" for p in picks]))
    assert turns and all(t.end > t.start and t.text for t in turns)


@pytest.mark.slow
@needs_tools
def test_ci_slice_from_audio(pipeline: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The ~12-call slice, scored from its audio (default config + the company name)."""
    from qa_pipeline.config import load_config
    from qa_pipeline.pipeline import Pipeline

    root = tmp_path_factory.mktemp("corpus")
    plans = cp.plan_corpus(cp.DEFAULT_CALLS, cp.DEFAULT_SEED)
    ids = set(cp.select_slice(_labels(plans), 12))
    paths = cp.generate_corpus(root, cp.DEFAULT_CALLS, cp.DEFAULT_SEED, ids=sorted(ids))
    right_a = right_t = total = uncertain = 0
    misses = []
    for wav in paths:
        side = cp.read_sidecar(wav)
        cfg = load_config(
            overrides={
                "rules": {"settings": {"company_name": side["company"]}},
                "asr": {"verify": False},
            }
        )
        card = Pipeline(cfg, engine=pipeline.engine).score(wav).scorecard
        assert card is not None
        heard = {v.rule_id: v.verdict.value for v in card.verdicts}
        ref = transcript_from_dict(side["reference"])
        text = score_transcript(load_pack(settings={"company_name": side["company"]}), ref)
        read = {v.rule_id: v.verdict.value for v in text.verdicts}
        for rule, want in side["expected"].items():
            total += 1
            right_a += heard[rule] == want
            right_t += read[rule] == want
            uncertain += heard[rule] == "uncertain"
            if heard[rule] != want:
                misses.append(f"{wav.stem} {rule}: want {want}, audio {heard[rule]}")
    print(f"slice: audio {right_a}/{total}, text {right_t}/{total}, uncertain {uncertain}")
    print("\n".join(misses))
    assert right_t / total >= 0.99
    assert right_a / total >= AUDIO_FLOOR, misses
