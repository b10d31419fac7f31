"""The fast paths give the same answers as the straightforward ones.

* ``score_transcript`` == feeding the utterances one by one, on the benchmark's generator;
* dispatching with only the lazy atoms of undecided rules == with every atom computed;
* the trigger parts a text lacks computed as one shared atom group == part by part;
* lazily computed text atoms (per role group, or one at a time) == all atoms at once;
* the fuzzy window search (prefilter, length bound, memo) == scoring every window of every
  length with the textbook edit-distance table (the reference implementation), on the
  benchmark's texts, real mishearings and random syllable soups at many thresholds;
* ``fround`` == ``round``, ties and signed zeros included;
* folding numerals by regex == ``str.translate`` with the whole table;
* the fuzzy prefilter (one integer for every phrase) == counting shared syllables per phrase;
* rule order (``files:`` in pack.yaml) and where the default pack is found.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import pytest

import qa_pipeline
from qa_pipeline.errors import ConfigError
from qa_pipeline.messages import Role, to_dict
from qa_pipeline.rules import (
    CallEvaluator,
    RulePack,
    default_pack_path,
    load_pack,
    score_transcript,
)
from qa_pipeline.rules.runtime.confusion import INDEL, UNIT, substitution_cost
from qa_pipeline.rules.runtime.scoring import fround
from qa_pipeline.rules.runtime.textindex import (
    _SID_BASE,
    Analysis,
    Span,
    TextIndex,
    _best_window,
    _Fuzzy,
    fold_text,
    syllables,
)
from qa_pipeline.testing import make_call
from qa_pipeline.transcript import Transcript


@pytest.fixture(scope="module")
def calls() -> list[Transcript]:
    rng = random.Random(3)
    return [make_call(i, rng, rng.choice([3, 10, 40, 60])) for i in range(300)]


def _fed(pack: RulePack, t: Transcript, reference: bool = False) -> object:
    ev = _evaluator(pack, t, reference)
    for u in sorted(t.utterances, key=lambda u: (u.end, u.start, u.index)):
        ev.feed(u)
    return to_dict(ev.end(t.ended))


def test_score_transcript_equals_feeding(default_pack: RulePack, calls: list[Transcript]) -> None:
    for t in calls:
        assert to_dict(score_transcript(default_pack, t)) == _fed(default_pack, t), t.call.call_id


def test_score_transcript_any_stored_order(default_pack: RulePack, calls: list[Transcript]) -> None:
    """Utterances stored in end order are fed as they are, any other order is sorted first:
    the scorecard does not depend on how the transcript lists them."""
    rng = random.Random(1)
    shuffled = 0
    for t in calls[:60]:
        utts = list(t.utterances)
        rng.shuffle(utts)
        mixed = dataclasses.replace(t, utterances=tuple(utts))
        shuffled += mixed.utterances != t.utterances
        want = to_dict(score_transcript(default_pack, t))
        assert to_dict(score_transcript(default_pack, mixed)) == want, t.call.call_id
    assert shuffled > 30


def _evaluator(pack: RulePack, t: Transcript, reference: bool) -> CallEvaluator:
    """``reference``: every utterance dispatched with all of its lazy atoms computed up
    front (the straightforward way)."""
    ev = CallEvaluator(pack, t.call)
    ev.reference = reference
    return ev


@pytest.fixture(scope="module")
def varied_calls() -> list[Transcript]:
    """1,200 benchmark calls: both company names (OPEN-IDENT passes and fails), every
    length from a single turn to 120, holidays, outbound calls (from the generator)."""
    rng = random.Random(11)
    out = []
    for i in range(1200):
        company = "华夏" if rng.random() < 0.7 else "华冠"
        n = rng.choice([1, 2, 3, 5, 10, 25, 40, 40, 60, 120])
        out.append(make_call(i, rng, n, company))
    return out


def test_lazy_dispatch_equals_full_dispatch(varied_calls: list[Transcript]) -> None:
    """Lazy atoms are only computed for the rules (and EOAC stages) still undecided in the
    call: the scorecards (verdicts, findings with evidence and decided_at, extras) are
    those of dispatching with every atom computed, with the text cache warm or cold."""
    pack = load_pack()
    ref = load_pack()
    for k, t in enumerate(varied_calls):
        if k == 600:
            pack.index.caching = False  # second half: every text analysed afresh
        got = to_dict(score_transcript(pack, t))
        assert got == _fed(ref, t, reference=True), t.call.call_id


def test_lazy_parts_one_group_each_equals_shared_group(varied_calls: list[Transcript]) -> None:
    """The live trigger parts an utterance text does not know yet are computed as one
    atom group (their union), or part by part once a pack has too many combinations of
    parts: the same scorecards either way."""
    pack = load_pack()
    apart = load_pack()
    apart.plan.max_groups = 0
    for t in varied_calls[:400]:
        assert to_dict(score_transcript(apart, t)) == to_dict(score_transcript(pack, t))
    assert pack.plan._miss  # the shared groups were used
    assert not apart.plan._miss
    shared = [k for k in pack.plan._miss.values() if k[0][0] == "parts"]
    assert shared and all(len(k) == 1 for k in shared)


def test_lazy_dispatch_live_feeding_with_advance(varied_calls: list[Transcript]) -> None:
    """The live API (feed + advance between utterances) gives what the reference does."""
    pack = load_pack()
    for t in varied_calls[:300]:
        cards = []
        for reference in (False, True):
            ev = _evaluator(pack, t, reference)
            found = []
            for u in sorted(t.utterances, key=lambda u: (u.end, u.start, u.index)):
                found += ev.advance(u.start)
                found += ev.feed(u)
            cards.append((to_dict(found), to_dict(ev.end(t.ended))))
        assert cards[0] == cards[1], t.call.call_id


def test_score_transcript_cold_equals_warm(calls: list[Transcript]) -> None:
    pack = load_pack()
    warm = [to_dict(score_transcript(pack, t)) for t in calls[:100]]
    pack.index.caching = False
    cold = [to_dict(score_transcript(pack, t)) for t in calls[:100]]
    assert warm == cold


def _texts(calls: list[Transcript]) -> list[str]:
    return sorted({u.text for t in calls for u in t.utterances})


def _fresh(ix: TextIndex, text: str) -> Analysis:
    ix._cache.pop(text, None)
    return ix.analyse(text)


def test_lazy_atoms_equal_all_at_once(default_pack: RulePack, calls: list[Transcript]) -> None:
    ix = default_pack.index
    lazy = ix._lazy_atoms
    for text in _texts(calls):
        a = _fresh(ix, text)
        ix.ensure(a)  # every lazy atom at once
        eager = {atom: a.spans.get(atom, []) for atom in lazy}
        one = _fresh(ix, text)
        assert {atom: ix.hits(one, atom) for atom in lazy} == eager, text
        by_role = _fresh(ix, text)
        for role in Role:
            ix.ensure(by_role, role)
        assert {atom: ix.hits(by_role, atom) for atom in lazy} == eager, text


def _distance(phrase: tuple[str, ...], syls: list[str]) -> list[int]:
    """Weighted syllable edit distance of the phrase to every prefix of ``syls`` (the
    textbook table: phrase rows, utterance columns; the last row's column c is the cost
    against ``syls[:c]``)."""
    n, m = len(phrase), len(syls)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for r in range(n + 1):
        d[r][0] = r * INDEL
    for c in range(m + 1):
        d[0][c] = c * INDEL
    for r in range(1, n + 1):
        for c in range(1, m + 1):
            d[r][c] = min(
                d[r - 1][c - 1] + substitution_cost(phrase[r - 1], syls[c - 1]),
                d[r - 1][c] + INDEL,
                d[r][c - 1] + INDEL,
            )
    return d[n]


def _reference_window(a: Analysis, p: _Fuzzy) -> list[Span]:
    """The straightforward search: every window scored (no prefilter, no bound from the
    threshold); a window matches when ``100 * (1 - cost / (UNIT * n))`` is at least the
    threshold (exact fractions); the lowest cost wins, ties to the first in the order
    length n, n-1, n+1, n-2, n+2 ..., then left to right. (Windows longer than
    n + UNIT * n / INDEL syllables are left out: their similarity is below 0.)"""
    syls = a.syllables
    m, n = len(syls), p.nsyl
    longest = n + UNIT * n // INDEL
    cost = {}
    for i in range(m):
        row = _distance(p.syls, syls[i : i + longest])
        for length in range(1, len(row)):
            cost[i, length] = row[length]
    thr = Fraction(p.threshold)
    best, where = None, None
    for length in sorted(range(1, min(m, longest) + 1), key=lambda k: (abs(k - n), k > n)):
        for i in range(m - length + 1):
            c = cost[i, length]
            if 100 * (1 - Fraction(c, UNIT * n)) >= thr and (best is None or c < best):
                best, where = c, (i, i + length)
    return [where] if where is not None else []


# real Whisper mishearings of the pack's phrases (the and the measurement's), and
# texts that share letters or syllables with a phrase without saying it
_REAL = [
    "可疑犯您",
    "华夏克夫",
    "谢谢您的来店",
    "千年少等",
    "我下客服中心",
    "让您求等了",
    "好的，千年少等，我帮您查一下",
    "可疑方林",
    "这是公司的规定规定就是规定",
    "您您您好好",
    "可以放心",
    "这是公司的规划",
    "我们也没有白发",
]


def _sample(calls: list[Transcript], k: int) -> list[str]:
    texts = _texts(calls)
    return random.Random(7).sample(texts, min(k, len(texts)))


def test_fuzzy_window_search_equals_reference(
    default_pack: RulePack, calls: list[Transcript]
) -> None:
    ix = default_pack.index
    phrases = [p for p in ix._lazy if isinstance(p, _Fuzzy) and p.nsyl > 1]
    for text in [*_sample(calls, 40), *_REAL]:
        a = _fresh(ix, text)
        for p in phrases:
            assert _best_window(a, p) == _reference_window(a, p), (text, p.syls)


def test_fuzzy_window_search_equals_reference_random() -> None:
    """Random syllable soups (the phrases' own syllables, confusable and unrelated ones,
    repeats) against phrases at several thresholds, the 100 and 0 extremes included."""
    rng = random.Random(13)
    ix = TextIndex()
    phrases = ["请您稍等", "可以帮您", "感谢您的来电", "您好", "这是公司规定", "让您久等了", "好好"]
    thresholds = [0, 50, 70, 80, 85, 85.5, 90, 100]
    atoms = [ix.fuzzy(ph, t) for ph in phrases for t in thresholds]
    ix.finish()
    alphabet = "请您稍等千年少可疑以帮犯放心感谢来电店的公司规定是这让久求了好你一二三abc，"
    found = 0
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        a = _fresh(ix, text)
        for atom in atoms:
            p = ix._lazy[atom]
            got = _best_window(a, p, memo=bool(rng.getrandbits(1)))
            assert got == _reference_window(a, p), (text, p.syls, p.threshold)
            found += bool(got)
    assert found > 400


def test_fuzzy_atoms_equal_reference(default_pack: RulePack, calls: list[Transcript]) -> None:
    """Through the index (group prefilter, exact fast path, one-syllable path): an atom's
    hits are its exact occurrences when the phrase is there, else the reference window."""
    ix = default_pack.index
    atoms = [i for i, p in enumerate(ix._lazy) if isinstance(p, _Fuzzy)]
    for text in [*_sample(calls, 40), *_REAL]:
        a = _fresh(ix, text)
        ix.ensure(a)
        for atom in atoms:
            p = ix._lazy[atom]
            exact = a.spans.get(p.exact)
            if exact:
                want = exact
            elif p.nsyl == 1:
                ids = a._ids()
                want = [(ids.index(p.sid), ids.index(p.sid) + 1)] if p.sid in ids else []
            else:
                want = _reference_window(a, p)
            assert a.spans.get(atom, []) == want, (text, p.syls)


def test_fuzzy_window_memo_shifts_with_the_stretch(default_pack: RulePack) -> None:
    """The same sentence at other offsets, at the start or end of the utterance, or next to
    other words: answers from the per-phrase memo equal the full search, shifted."""
    assert all(
        _best_window(_fresh(default_pack.index, t), p)
        == _reference_window(_fresh(default_pack.index, t), p)
        for t in ["好的千年少等我帮您查一下", "我的手机号是13912345678请问有什么可疑方林"]
        for p in default_pack.index._lazy
        if isinstance(p, _Fuzzy) and p.nsyl > 1
    )
    ix = default_pack.index
    phrases = [p for p in ix._lazy if isinstance(p, _Fuzzy) and p.nsyl > 1]
    cores = ["好的千年少等我帮您查一下", "这是公司的规定", "请问有什么可疑方林", "你听我说你搞错了"]
    around = ["", "1", "您好", "我的手机号是13912345678", "嗯嗯对的好的", "38元"]
    for p in phrases:
        p.memo.clear()
    texts = [pre + core + post for core in cores for pre in around for post in around]
    found = 0
    for text in texts:
        a = _fresh(ix, text)
        for p in phrases:
            got = _best_window(a, p)
            # == the search without the memo (itself == the reference: tests above)
            assert got == _best_window(a, p, memo=False), (text, p.syls)
            found += bool(got)
    assert found > len(texts)  # the cores do match some phrases
    # one phrase seen in 4 x 36 utterances: far fewer distinct stretches were scored
    wait = next(p for p in phrases if p.syls == tuple(syllables(fold_text("请您稍等"))))
    assert 0 < len(wait.memo) < len(around) ** 2


# ------------------------------------------------------------------------ pack layout


def test_default_pack_rules_in_declared_file_order(default_pack: RulePack) -> None:
    ids = default_pack.rule_ids
    assert ids[0] == "OPEN-ANSWER"
    assert ids.index("OPEN-GREET") < ids.index("BAN-WEI") < ids.index("COURT-WORDS")
    assert ids.index("COURT-WORDS") < ids.index("RESP-GAP") < ids.index("CLOSE-THANKS")


_RULE = """\
rules:
  - id: {rid}
    description: x
    severity: minor
    weight: 1
    forbid: {{keyword: [甲]}}
"""


def _pack_dir(tmp_path: Path, files: str | None) -> Path:
    d = tmp_path / "p"
    d.mkdir(parents=True)
    head = 'name: t\nversion: "1"\n' + (f"files: {files}\n" if files else "")
    (d / "pack.yaml").write_text(head, encoding="utf-8")
    for name, rid in (("a.yaml", "R-A"), ("b.yaml", "R-B"), ("c.yaml", "R-C")):
        (d / name).write_text(_RULE.format(rid=rid), encoding="utf-8")
    return d


def test_files_key_orders_rules(tmp_path: Path) -> None:
    assert load_pack(_pack_dir(tmp_path / "1", None)).rule_ids == ["R-A", "R-B", "R-C"]
    ordered = load_pack(_pack_dir(tmp_path / "2", "[c.yaml, a.yaml]"))
    assert ordered.rule_ids == ["R-C", "R-A", "R-B"]  # unlisted files follow, by name


def test_files_key_unknown_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no rule file 'zz.yaml'"):
        load_pack(_pack_dir(tmp_path, "[a.yaml, zz.yaml]"))


def test_default_pack_path_falls_back_to_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path(qa_pipeline.__file__).resolve().parents[1]
    assert default_pack_path() == repo / "configs" / "rules"
    site = tmp_path / "site" / "qa_pipeline"
    site.mkdir(parents=True)
    monkeypatch.setattr(qa_pipeline, "__file__", str(site / "__init__.py"))
    prefix = tmp_path / "venv"
    shared = prefix / "share" / "qa-pipeline" / "rules"
    shutil.copytree(repo / "configs" / "rules", shared)
    monkeypatch.setattr(sys, "prefix", str(prefix))
    assert default_pack_path() == shared
    assert load_pack().rule_ids == load_pack(shared).rule_ids


def test_fround_is_round() -> None:
    rng = random.Random(5)
    values = [
        0.0,
        -0.0,
        0.125,
        0.375,
        2.675,
        -2.675,
        1.005,
        0.5,
        -0.5,
        1.5,
        2.5,
        0.045,
        -0.001,
        0.0049,
        1e-9,
        -1e-9,
        123456.785,
        2.0**31,
        -(2.0**31),
        1e300,
        float("inf"),
        float("-inf"),
        5e-324,
        99.995,
        100.0 - 0.005,
    ]
    values += [rng.uniform(-1e4, 1e4) for _ in range(20_000)]
    values += [rng.randrange(-(10**6), 10**6) / 1000 for _ in range(20_000)]  # many exact ties
    values += [k / 8 for k in range(-2000, 2000)]
    for x in values:
        for nd in range(5):
            want = round(x, nd)
            got = fround(x, nd)
            assert repr(got) == repr(want), (x, nd, got, want)
    nan = fround(float("nan"), 2)
    assert nan != nan


def test_fold_text_is_translate() -> None:
    from qa_pipeline.rules.runtime.textindex import _NUM_FOLD

    rng = random.Random(3)
    alphabet = "零〇一幺二两三四五六七八九十百千万0123456789请您稍等的了是ab，"
    for _ in range(5000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        assert fold_text(s) == s.translate(_NUM_FOLD)


def test_fuzzy_prefilter_equals_counting(default_pack: RulePack, calls: list[Transcript]) -> None:
    ix = default_pack.index
    ix.analyse("")  # prefilter tables built
    lazy = ix._lazy
    long = [i for i, p in enumerate(lazy) if isinstance(p, _Fuzzy) and p.nsyl > 1]
    texts = {u.text for c in calls for u in c.utterances}
    texts |= {"".join(ix.describe(i) for i in long[k : k + 3]) for k in range(len(long))}
    passed = 0
    for text in sorted(texts):
        a = ix.analyse(text)
        bits = ix._candidates(a)
        got = {i for i in long if bits & ix._cbit[i]}
        have = {ord(c) - _SID_BASE for c in a._ids()}  # its syllables, as id numbers
        want = {i for i in long if len(set(lazy[i].nums) & have) >= lazy[i].need}
        assert got == want, text
        passed += len(got)
    assert passed > len(long)  # the phrases' own texts pass
