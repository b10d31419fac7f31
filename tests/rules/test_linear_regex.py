"""Pack regexes on RE2: Python's meaning, linear time, refusals with the reason.

* the translation keeps Python's ``re`` semantics the engine relies on: ``\\d \\w \\s`` and
  their complements on every code point, ``{,n}``, ``(?x)``, ``(?a)``, scoped flags, a
  ``[`` in a class, leftmost-first spans found left to right (a seeded differential test
  against Python's ``re`` over random patterns and texts);
* catastrophic patterns a backtracking engine takes exponential time on load and run on a
  long utterance in well under a second, in a pack, in ``rules test`` and ``rules lint``;
* what RE2 cannot run the same way is refused at load, naming the file, the rule and the
  reason (backreference, lookarounds, ...);
* the built-in patterns kept on Python's ``re`` (entities, text normalisation) are linear:
  timed on adversarial inputs where backtracking would take hours.
"""

from __future__ import annotations

import random
import re
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa_pipeline import text as text_mod
from qa_pipeline.errors import ConfigError
from qa_pipeline.rules import RulePack, load_pack, score_transcript
from qa_pipeline.rules.cli import rules_app
from qa_pipeline.rules.lang.linear_regex import LinearRegex, PatternError, compile_pattern
from qa_pipeline.rules.lint import lint_pack
from qa_pipeline.rules.runtime.textindex import _ENTITY

from .conftest import PACK_HEADER, transcript

MakePack = Callable[..., RulePack]


def py_spans(pattern: str, text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(pattern, text) if m.end() > m.start()]


# ----------------------------------------------------------------- Python's meaning kept

# every code point Python's Unicode database knows (RE2's tables are newer: a character
# added since is a letter to RE2 and unassigned to Python)
_KNOWN = "".join(
    chr(c)
    for c in range(sys.maxunicode + 1)
    if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)) != "Cn"
)


@pytest.mark.parametrize(
    "cls", [r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"[^\d]", r"[\s\S]", r"[\da]", r"[^\sa]"]
)
def test_classes_match_python_on_every_code_point(cls: str) -> None:
    # RE2's own \d \w \s are ASCII; the rules' are Python's (Chinese is \w, ٣ is \d)
    pat = cls + "+"
    assert LinearRegex(pat).spans(_KNOWN) == py_spans(pat, _KNOWN)


@pytest.mark.parametrize(
    ("pattern", "text", "spans"),
    [
        (r"\d+", "订单١٢٣号", [(2, 5)]),  # Arabic-Indic digits are \d in Python
        (r"\w+", "中文ab_1", [(0, 6)]),  # Chinese is \w
        (r"(?a)\d+", "١٢3", [(2, 3)]),  # (?a): ASCII, as in Python
        (r"a{,2}b", "aaab", [(1, 4)]),  # {,n} is a repeat (RE2 reads it as text)
        (r"(?x) 我 \s* 是  # comment", "我 是", [(0, 3)]),
        (r"[[:alpha:]]", "xa]", [(1, 3)]),  # Python: one of [:alph, then ]
        (r"(?i)ab", "xAB", [(1, 3)]),
        (r"(?i:a)b", "AbAB", [(0, 2)]),
        (r"是$", "是是", [(1, 2)]),
        (r"^是", "是是", [(0, 1)]),
        (r"好\Z", "好好", [(1, 2)]),
        (r"\u4e2d\N{DIGIT ONE}\x41", "中1A", [(0, 3)]),
        (r"请问(您)?是.{1,4}(先生|小姐)", "喂请问是李先生吗请问您是张小姐", [(1, 7), (8, 15)]),
    ],
)
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_python_semantics(pattern: str, text: str, spans: list[tuple[int, int]]) -> None:
    assert py_spans(pattern, text) == spans  # what the rule author wrote means this ...
    r = LinearRegex(pattern)
    assert r.spans(text) == spans  # ... and the engine does it
    assert r.search(text) and not r.search("×")


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    atoms = ["我", "是", "a", "A", "1", ".", r"\d", r"\w", r"\s", r"\D", r"\W", "[a1]", "[^我]"]
    atoms += [r"[\d是]", "二", "(?i:a)"]
    quants = ["", "", "", "*", "+", "?", "{0,2}", "{,2}", "{2}", "*?", "+?", "??", "{1,}"]
    parts = []
    for _ in range(rng.randint(1, 3)):
        if depth < 2 and rng.random() < 0.3:
            alts = [_random_pattern(rng, depth + 1) for _ in range(rng.randint(1, 3))]
            atom = "(" + "|".join(alts) + ")"
        else:
            atom = rng.choice(atoms)
        parts.append(atom + rng.choice(quants))
    p = "".join(parts)
    if depth == 0:
        p = ("^" if rng.random() < 0.2 else "") + p + ("$" if rng.random() < 0.2 else "")
    return p


def test_spans_equal_pythons_on_random_patterns() -> None:
    """Seeded differential test: every accepted pattern finds exactly Python's non-empty
    matches (leftmost-first, left to right) and agrees on whether it matches at all."""
    rng = random.Random(20261207)
    alphabet = "我是aA1二_ "
    checked = refused = 0
    for _ in range(800):
        p = _random_pattern(rng)
        try:
            r = LinearRegex(p)
        except PatternError:  # (a*)*-like loops and empty-matching patterns
            refused += 1
            continue
        c = re.compile(p)
        for _ in range(12):
            t = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
            assert r.spans(t) == py_spans(p, t), (p, t)
            assert r.search(t) == (c.search(t) is not None), (p, t)
            checked += 1
    assert checked > 4000  # about half the random patterns can match empty: refused


# ----------------------------------------------------------------- linear time

CATASTROPHIC = [
    r"^(.|.|.|.)*QQQ$",  # the pattern that froze the live service
    r"(a+)+$",
    r"(a|aa)+$",
    r"(\d+)*x",
    r"(.*a){12}",
    r"^(\w+\s?)+$",
    r"(我|我是|是)+$",
]


def _elapsed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_run_in_linear_time(pattern: str) -> None:
    r = LinearRegex(pattern)
    for text in ("a" * 20_000 + "!", "我是" * 10_000 + "!", "1" * 20_000, "中" * 20_000):
        assert _elapsed(lambda text=text: (r.search(text), r.spans(text))) < 0.5


def test_catastrophic_pack_scores_a_long_utterance_fast(make_pack: MakePack) -> None:
    rules = "rules:\n" + "".join(
        f"""\
  - id: R-CAT{i}
    description: d
    severity: major
    weight: 1
    scope: {{role: agent}}
    forbid: {{regex: '{p}'}}
"""
        for i, p in enumerate(CATASTROPHIC)
    )
    pack = make_pack(rules)
    long_text = "您好" + "啊" * 3000 + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"
    t = transcript([("a", 0, 30, long_text), ("c", 31, 33, "好的")])
    elapsed = _elapsed(lambda: score_transcript(pack, t))
    assert elapsed < 1.0
    card = score_transcript(pack, t)
    # ^(.|.|.|.)*QQQ$: the match form is lower case, so never; (.*a){12}: 34 a's, fires
    fired = {f.rule_id for f in card.findings}
    assert "R-CAT0" not in fired and "R-CAT4" in fired


def test_catastrophic_pack_in_rules_test_and_lint(tmp_path: Path) -> None:
    d = tmp_path / "pack"
    (d / "fixtures").mkdir(parents=True)
    (d / "pack.yaml").write_text(textwrap.dedent(PACK_HEADER), encoding="utf-8")
    (d / "rules.yaml").write_text(
        "rules:\n  - id: R-CAT\n    description: d\n    severity: major\n    weight: 1\n"
        "    forbid: {regex: '^(.|.|.|.)*qqq$'}\n",
        encoding="utf-8",
    )
    # the 29-character fixture that took a backtracking engine 24 s, and a long one
    (d / "fixtures" / "f.yaml").write_text(
        textwrap.dedent(f"""\
        fixtures:
          - name: hang
            call: {{direction: inbound}}
            turns: [[agent, 0, 5, {"我" * 29}], [agent, 6, 30, {"好" * 5000}]]
            expect: {{R-CAT: ok}}
          - name: fires
            call: {{direction: inbound}}
            turns: [[agent, 0, 5, 您好qqq]]
            expect: {{R-CAT: fire}}
        """),
        encoding="utf-8",
    )
    for cmd in ("test", "lint"):
        t0 = time.perf_counter()
        r = CliRunner().invoke(rules_app, [cmd, str(d), "--fixtures", str(d / "fixtures")])
        assert r.exit_code == 0, r.output
        assert time.perf_counter() - t0 < 5  # pack load + fixtures; the regex part is ms


# ----------------------------------------------------------------- refused, with the reason


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(好)\1", r"backreference \1"),
        (r"(?P<x>好)(?P=x)", "backreference"),
        (r"(?<!\d)1[3-9]\d{9}", "negative lookbehind"),
        (r"(?<=您)好", "lookbehind"),
        (r"保证(?!不)", "negative lookahead"),
        (r"保证(?=了)", "lookahead"),
        (r"(?>a+)b", "atomic group"),
        (r"a++b", "possessive quantifier"),
        (r"(a)?(?(1)b|c)", "conditional"),
        (r"\bok\b", r"word boundaries \b"),
        (r"(a*)*b", "a repeated part that can match nothing"),
        (r"(x?){2,}y", "a repeated part that can match nothing"),
        (r"(我是)?", "empty stretch"),
        (r"a*", "empty stretch"),
        (r"x{1001}", "repeat counts above 1000"),
        (r"(?:x{100}){100}", "repeat counts above 1000"),
        (r"[\Wa]", r"\W together with other items"),
        (r"(unclosed", "bad regular expression"),
    ],
)
def test_refused_with_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError) as e:
        compile_pattern(pattern)
    assert reason in str(e.value)
    if reason != "bad regular expression":
        assert repr(pattern) in str(e.value)


def _pack_dir(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "refused"
    d.mkdir()
    (d / "pack.yaml").write_text(textwrap.dedent(PACK_HEADER), encoding="utf-8")
    (d / "rules.yaml").write_text(
        "rules:\n  - id: R-FINE\n    description: d\n    severity: major\n    weight: 1\n"
        "    forbid: {regex: '保证'}\n" + body,
        encoding="utf-8",
    )
    return d


REFUSED_RULES = """\
  - id: R-BACKREF
    description: d
    severity: major
    weight: 1
    forbid: {regex: '(好)\\1'}
  - id: R-LOOK
    description: d
    severity: major
    weight: 1
    forbid: {regex: {pattern: '保证', exclude: '(?<!不)能'}}
"""


def test_pack_with_backreference_refused_at_load(tmp_path: Path) -> None:
    d = _pack_dir(tmp_path, REFUSED_RULES)
    with pytest.raises(ConfigError) as e:
        load_pack(d)
    msg = str(e.value)
    path = str(d / "rules.yaml")
    assert f"{path}:11: R-BACKREF: rules[1].forbid.regex.pattern: regex '(好)\\\\1': " in msg
    assert "backreference \\1 (or (?P=name)) is not supported" in msg
    assert f"{path}:16: R-LOOK: rules[2].forbid.regex.exclude: " in msg
    assert "negative lookbehind (?<!...) is not supported" in msg
    assert "R-FINE" not in msg


def test_rules_lint_and_test_say_the_same(tmp_path: Path) -> None:
    d = _pack_dir(tmp_path, REFUSED_RULES)
    issues = [str(i) for i in lint_pack(d)]
    assert any("R-BACKREF" in i and "backreference \\1" in i for i in issues), issues
    assert any("R-LOOK" in i and "negative lookbehind" in i for i in issues), issues
    # lint reports a pack's problems (1); test cannot load the pack it would run (2)
    for cmd, code in (("lint", 1), ("test", 2)):
        r = CliRunner().invoke(rules_app, [cmd, str(d)], env={"COLUMNS": "300"})
        assert r.exit_code == code, r.output
        out = " ".join(r.output.split())
        assert "R-BACKREF" in out and "backreference \\1" in out, out


# ----------------------------------------------------------------- built-ins on Python's re


def test_entity_patterns_are_linear() -> None:
    """The entity patterns keep Python's ``re`` (their single-character lookarounds are
    exact there; RE2 has none): every quantifier but ``\\d+`` is bounded and each
    lookaround reads one character, so each start position costs a bounded amount. On
    200,000 characters of adversarial input a quadratic engine would take ~10^10 steps
    (hours); linear work takes milliseconds."""
    n = 200_000
    inputs = ["1" * n, "1a" * (n // 2), "13800138000" * (n // 11), "1" * 17 + "x" + "1" * n]
    inputs.append(("0" * 18 + "中") * (n // 19))
    for kind, pattern in _ENTITY.items():
        rx = re.compile(pattern)
        for text in inputs:
            assert _elapsed(lambda rx=rx, text=text: list(rx.finditer(text))) < 1.0, kind


def test_text_normalisation_patterns_are_linear() -> None:
    n = 200_000
    for text in ("中" + " " * n + "a", "中 " * (n // 2), "，" * n, "a_" * n):
        assert _elapsed(lambda text=text: text_mod.normalise(text)) < 2.0
        assert _elapsed(lambda text=text: text_mod.match_form(text)) < 2.0
