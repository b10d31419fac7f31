"""Per-utterance text analysis, computed once per distinct text and shared by all rules.

For every utterance the pack needs:

* the *match form* (:func:`qa_pipeline.text.match_form`: simplified, lower-case, no
  punctuation) and its *fold* (Chinese numerals 零一二…九两幺 folded to digits, so
  ``二天内`` == ``2天内``); both have one character per match-form character, so spans
  are shared;
* one Aho-Corasick pass over the fold for every exact phrase of the pack (keywords,
  negators, the exact fast path of fuzzy phrases) -> ``spans`` per atom;
* lazily, and memoised on the analysis: toneless, accent-folded pinyin (one syllable per
  character, from a per-character table so pypinyin runs once per distinct character),
  and the fuzzy / regex / similar-sentence / entity atoms a rule actually asks about.

Analyses are cached per pack by text (bounded), so scripted phrases that recur across calls
("您好，请问有什么可以帮您") are analysed once; a fuzzy phrase's best window is also
remembered by the stretch of syllables it depends on, so the same sentence inside another
utterance (around a different number, say) is not scored again.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

import ahocorasick
from pypinyin import lazy_pinyin
from rapidfuzz import fuzz, process

from ...text import match_form
from ..lang.linear_regex import LinearRegex, compile_pattern
from .confusion import CHEAPEST, INDEL, UNIT, substitution_cost

Span = tuple[int, int]

_NUMERALS: Final = "零〇一幺二两三四五六七八九"
_NUM_FOLD: Final = str.maketrans(_NUMERALS, "0011223456789")
# the numerals of a text, found by one regex scan (str.translate looks every character up
# in a dict: several times slower on a Chinese sentence, which seldom holds a numeral)
_NUMERAL_RE: Final = re.compile(f"[{_NUMERALS}]+")
_DIGIT_PY: Final = ["ling", "yi", "er", "san", "si", "wu", "liu", "qi", "ba", "jiu"]
_SYL_CACHE: Final[dict[str, str]] = {}
# Per character, for str.translate (one C call per utterance instead of a loop):
_PY_TABLE: Final[dict[int, str]] = {}  # char -> its syllable + "|"
_SID_TABLE: Final[dict[int, str]] = {}  # char -> its syllable's id (one private-use character)
_SID_OF: Final[dict[str, str]] = {}  # syllable -> id character
_SYL_OF: Final[list[str]] = []  # id number -> syllable
_KNOWN: Final[set[str]] = set()  # characters in the tables
# Syllable ids are characters of the supplementary private use area A (65,534 of them):
# id number k is chr(_SID_BASE + k). Compiled code reads id numbers from a text's UTF-32-LE
# bytes b as b[4 * j] | b[4 * j + 1] << 8 (the other two bytes are 0x0F, 0): iterating
# the string would make a one-character string per syllable.
_SID_BASE: Final = 0xF0000
_NOT_ID: Final = re.compile("[^\U000f0000-\U000fffff]")  # not translated to an id (yet)
_ID_LIKE: Final = re.compile("[\U000f0000-\U000fffff]")  # a text's own characters there
_NO_INTS: Final[list[int]] = []
_NO_STRS: Final[list[str]] = []
# stretches remembered per fuzzy phrase (_best_window): at most ~0.6 MB per phrase
_MEMO_SIZE: Final = 4096


def fold_text(mf: str) -> str:
    """Fold Chinese numerals to digits, character for character (spans stay aligned)."""
    if _NUMERAL_RE.search(mf) is None:
        return mf
    return _NUMERAL_RE.sub(_fold_numerals, mf)


def _fold_numerals(m: re.Match[str]) -> str:
    return m.group().translate(_NUM_FOLD)


def fold_syllable(s: str) -> str:
    """Merge the sounds Mandarin speakers (and Whisper) confuse: zh/z ch/c sh/s l/n,
    and -ng/-n after a, e, i (ang/an, eng/en, ing/in, iang/ian, uang/uan)."""
    if len(s) > 2 and s[1] == "h" and s[0] in "zcs":
        s = s[0] + s[2:]
    if s[:1] == "l":
        s = "n" + s[1:]
    if len(s) > 2 and s.endswith("ng") and s[-3] in "aei":
        s = s[:-1]
    return s


def syllable(ch: str) -> str:
    """Toneless folded pinyin of one character (memoised; digits read as Chinese)."""
    s = _SYL_CACHE.get(ch)
    if s is None:
        if "0" <= ch <= "9":
            s = _DIGIT_PY[ord(ch) - 48]
        elif ch.isascii():
            s = ch
        else:
            s = lazy_pinyin(ch)[0].lower()
            s = fold_syllable(s) if s.isascii() and s.isalpha() else ch
        if "|" in s:  # the syllable separator of the joined forms
            s = s.replace("|", "\N{BROKEN BAR}")
        _SYL_CACHE[ch] = s
    return s


def _learn(text: str) -> None:
    """Add the characters of ``text`` to the translate tables."""
    if _KNOWN.issuperset(text):
        return
    for ch in set(text) - _KNOWN:
        s = syllable(ch)
        sid = _SID_OF.get(s)
        if sid is None:
            sid = chr(_SID_BASE + len(_SID_OF))
            _SID_OF[s] = sid
            _SYL_OF.append(s)
        _PY_TABLE[ord(ch)] = s + "|"
        _SID_TABLE[ord(ch)] = sid
        _KNOWN.add(ch)


def syllable_ids(text: str) -> str:
    """One id character per character of ``text``: equal ids, equal folded syllables."""
    sid = text.translate(_SID_TABLE)
    # every character known (all came out as ids) and none that looks like an id itself:
    # two scans in C instead of a set test that makes a string per character
    if _NOT_ID.search(sid) is None and _ID_LIKE.search(text) is None:
        return sid
    _learn(text)
    return text.translate(_SID_TABLE)


def syllables(text: str) -> list[str]:
    return [syllable(c) for c in text]


class Analysis:
    """What the rules know about one utterance's text. Build with :meth:`TextIndex.analyse`."""

    __slots__ = (
        "_cands",
        "_pc",
        "_sid",
        "_starts",
        "_syls",
        "disp0",
        "disp1",
        "disp2",
        "done",
        "fold",
        "memo",
        "mf",
        "phit",
        "pknown",
        "spans",
        "text",
    )

    def __init__(self, text: str, mf: str, fold: str, spans: dict[int, list[Span]]) -> None:
        self.text = text
        self.mf = mf
        self.fold = fold
        self.spans = spans  # atom -> spans, for keywords and for computed lazy atoms that hit
        self.done = 0  # lazy atoms computed (hit or not), as bits (1 << atom)
        # per role index: the rules it dispatches to (bit mask, engine; -1: not yet)
        self.disp0 = -1
        self.disp1 = -1
        self.disp2 = -1
        # lazy matcher node -> its first span (nodes.ULazy); made on first use
        self.memo: dict[Any, Any] | None = None
        # lazy trigger parts checked / hit, as bits (see plan.Plan)
        self.pknown = 0
        self.phit = 0
        # one syllable id character per character of fold (what fuzzy matching needs);
        # the letters (compact pinyin, syllables and where each starts) only when a
        # window has to be scored
        self._sid: str | None = None
        self._pc: str | None = None
        self._starts: list[int] = _NO_INTS  # shared until _letters (never mutated)
        self._syls: list[str] = _NO_STRS
        # long fuzzy atoms passing the prefilter, as bits (TextIndex._cbit); -1: not yet
        self._cands = -1

    def _ids(self) -> str:
        sid = syllable_ids(self.fold)
        self._sid = sid
        return sid

    def _letters(self) -> None:
        fold = self.fold
        if self._sid is None:
            self._ids()  # learns the characters of the translate tables
        joined = fold.translate(_PY_TABLE)  # "qin|nin|sao|den|"
        syls = joined.split("|")
        syls.pop()
        starts = [0] * (len(syls) + 1)
        at = 0
        i = 0
        for syl in syls:
            starts[i] = at
            at += len(syl)
            i += 1
        starts[i] = at
        self._starts = starts
        self._syls = syls
        self._pc = joined.replace("|", "")

    @property
    def pinyin(self) -> str:
        """Compact folded pinyin (``qinninsaoden``)."""
        if self._pc is None:
            self._letters()
        assert self._pc is not None
        return self._pc

    @property
    def syllables(self) -> list[str]:
        if self._pc is None:
            self._letters()
        return self._syls

    def matched(self, span: Span) -> str:
        return self.mf[span[0] : span[1]]


#: while rules are evaluated, let other threads run at least this often (seconds; 0 = never).
#: Compiled (mypyc) code never gives up Python's lock by itself, so a heavy pack evaluated on
#: the live service's rule thread would stall its event loop; the service sets this.
_SHARE_EVERY: list[float] = [0.0]
_SHARE_SLEEP: list[float] = [0.0]
_LAST_SHARED: list[float] = [0.0]


def share_gil(every_s: float, sleep_s: float = 0.0) -> None:
    """Release Python's lock at least every ``every_s`` seconds during rule evaluation, for
    ``sleep_s`` seconds (``0``: only a switch; ``every_s`` 0: never, the batch default)."""
    _SHARE_EVERY[0] = max(every_s, 0.0)
    _SHARE_SLEEP[0] = max(sleep_s, 0.0)


def pause() -> None:
    """A point where rule evaluation lets other threads run (see :func:`share_gil`)."""
    every = _SHARE_EVERY[0]
    if every > 0.0:
        now = time.perf_counter()
        if now - _LAST_SHARED[0] >= every:
            time.sleep(_SHARE_SLEEP[0])  # releases the lock: the event loop, the ASR run
            _LAST_SHARED[0] = time.perf_counter()


def fuzzy_bounds(nsyl: int, distinct: int, threshold: float) -> tuple[int, int, int, int]:
    """What a fuzzy phrase of ``nsyl`` syllables (``distinct`` of them different) needs to
    match at ``threshold``: ``(maxc, hits, need, span)``.

    A window of the utterance matches when its weighted syllable edit distance to the
    phrase (:mod:`.confusion`, in units of ``UNIT`` per syllable) is at most ``maxc``, i.e.
    when the similarity ``100 * (1 - cost / (UNIT * nsyl))`` is at least ``threshold``.

    Proof that the prefilter only skips what cannot match: in an alignment of the phrase
    with a window, every phrase syllable is either kept (cost 0: the same folded syllable,
    the same id), substituted (a different id costs at least ``CHEAPEST``) or deleted
    (``INDEL`` >= ``CHEAPEST``). So at most ``maxc // CHEAPEST`` phrase syllables are not
    kept, and a matching window holds at least ``hits = nsyl - maxc // CHEAPEST`` positions
    whose syllable is one of the phrase's. Those kept syllables come from different phrase
    positions, and at most ``nsyl - distinct`` positions repeat an earlier syllable, so the
    utterance holds at least ``need = hits - (nsyl - distinct)`` of the phrase's distinct
    syllables. Each inserted or deleted syllable costs ``INDEL``, and the window's length
    differs from the phrase's by at least that many: ``|length - nsyl| <= span =
    maxc // INDEL``.
    """
    room = (100 - Fraction(threshold)) * UNIT * nsyl  # cost * 100 may be at most this
    if room < 0:
        return -1, nsyl + 1, distinct + 1, 0
    maxc = math.floor(room / 100)  # exact (fractions): no rounding at the boundary
    hits = max(0, nsyl - maxc // CHEAPEST)
    return maxc, hits, max(0, hits - (nsyl - distinct)), maxc // INDEL


@dataclass(frozen=True, slots=True)
class _Fuzzy:
    exact: int  # AC atom of the phrase's own fold (fast path)
    pc: str
    sid: str  # its syllable ids (one per syllable)
    nsyl: int
    threshold: float
    syls: tuple[str, ...] = ()
    # the distinct syllables of the phrase as id numbers (ord(id) - _SID_BASE; a list:
    # compiled code iterates it fastest)
    nums: list[int] = field(default_factory=list, compare=False)
    # see fuzzy_bounds: the distinct syllables the utterance must share (prefilter), the
    # positions a window must hold, the largest matching cost, window lengths nsyl +- span
    need: int = 2
    hits: int = 2
    maxc: int = 0
    span: int = 0
    # utterance syllable id number -> its substitution cost against each phrase syllable
    subs: dict[int, list[int]] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # the best window's span within a stretch of syllables (see _best_window), by stretch;
    # (0, 0) when no window matches
    memo: dict[str, tuple[int, int]] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )


class _Group:
    """The lazy atoms one kind of dispatch needs; with ``prefilter`` (the group of every
    lazy atom, :meth:`TextIndex._candidates`) also the fuzzy prefilter's tables.

    The prefilter counts, for every long phrase at once, the distinct syllables it shares
    with the utterance, in one integer: phrase ``k`` has a field of ``width`` bits at
    ``k * width``. Each syllable adds its phrases' ones (``add``, by syllable id number);
    the fields start at ``2**(width-1) - need`` (``bias``), so a field's top bit (``top``)
    is set exactly when its count reached ``need``. ``width`` is chosen so that no field
    overflows."""

    __slots__ = (
        "add",
        "bias",
        "by_exact",
        "cmask",
        "long",
        "mask",
        "other",
        "top",
        "width",
    )

    def __init__(self, ix: TextIndex, atoms: set[int], prefilter: bool = False) -> None:
        lazy = ix._lazy
        self.long = [i for i in sorted(atoms) if isinstance(lazy[i], _Fuzzy) and lazy[i].nsyl > 1]
        self.other = [i for i in sorted(atoms) if i not in set(self.long)]
        self.mask = sum(1 << i for i in atoms)  # as Analysis.done
        self.cmask = -1  # its long phrases' bits in the prefilter's count (set by ensure)
        # syllable id number -> the ones of the phrases that have it (see the docstring)
        self.add: list[int] = []
        self.bias = 0
        self.top = 0
        self.width = 0
        if prefilter and self.long:
            most = max(max(len(lazy[i].nums), lazy[i].need) for i in self.long)
            w = most.bit_length() + 1  # 2**(w-1) > most: bias >= 0, count + bias < 2**w
            self.width = w
            half = 1 << (w - 1)
            self.add = [0] * (1 + max(k for i in self.long for k in lazy[i].nums))
            for k, i in enumerate(self.long):
                at = k * w
                for num in lazy[i].nums:
                    self.add[num] += 1 << at
                self.bias += (half - lazy[i].need) << at
                self.top += half << at
        by_exact: dict[int, list[int]] = {}
        for i in self.long:
            by_exact.setdefault(lazy[i].exact, []).append(i)
        self.by_exact = by_exact


@dataclass(frozen=True, slots=True)
class _Regex:
    """A pack regex (and its exclusion) on RE2: linear time whatever the pattern."""

    pattern: LinearRegex
    exclude: LinearRegex | None


@dataclass(frozen=True, slots=True)
class _Similar:
    examples: tuple[str, ...]
    examples_py: tuple[str, ...]
    threshold: float


# Built-in entity patterns, on Python's re (linear: timed on adversarial input in
# tests/rules/test_linear_regex.py; pack regexes run on RE2, .linear_regex). Only ``number``
# is a pattern: personal data (phone, ID, card, ...) is masked before the rules see the
# text, and the ``entity`` condition reads the masks' spans (``Utterance.entities``, found
# by ``qa_pipeline/privacy``'s recognisers, the redactor's).
_ENTITY: Final = {
    "number": r"\d+",
}


class TextIndex:
    """All text atoms of one pack and the per-text analysis cache."""

    def __init__(self, cache_size: int = 200_000) -> None:
        self._keyword: dict[str, int] = {}
        self._kinds: list[str] = []
        self._lazy: list[Any] = []
        self._lazy_key: dict[Any, int] = {}
        self._ac: ahocorasick.Automaton | None = None
        self._cache: dict[str, Analysis] = {}
        self._cache_size = cache_size
        # remember analyses per text, and fuzzy-window results per stretch of syllables
        self.caching = True
        self._lazy_atoms: list[int] = []
        self._groups: dict[Any, _Group] = {}
        self._all: _Group | None = None
        self._cbit: list[int] = []
        self._catom: list[int] = []
        self._npos = 0  # syllable id numbers of the pack's phrases are below this

    # ---------------------------------------------------------------- building

    def _new(self, kind: str, payload: Any) -> int:
        self._kinds.append(kind)
        self._lazy.append(payload)
        self._ac = None  # finish() again before matching: the prefilter tables change
        return len(self._kinds) - 1

    def keyword(self, phrase: str) -> int:
        """Atom id of an exact phrase (normalised to its fold)."""
        key = fold_text(match_form(phrase))
        if not key:
            raise ValueError(f"phrase {phrase!r} is empty after normalisation")
        atom = self._keyword.get(key)
        if atom is None:
            atom = self._new("keyword", key)
            self._keyword[key] = atom
            self._ac = None
        return atom

    def fuzzy(self, phrase: str, threshold: float) -> int:
        fold = fold_text(match_form(phrase))
        if not fold:
            raise ValueError(f"phrase {phrase!r} is empty after normalisation")
        key = ("fuzzy", fold, threshold)
        if key not in self._lazy_key:
            syls = syllables(fold)
            sid = syllable_ids(fold)
            nums = sorted({ord(c) - _SID_BASE for c in sid})
            maxc, hits, need, span = fuzzy_bounds(len(syls), len(nums), threshold)
            payload = _Fuzzy(
                exact=self.keyword(phrase),
                pc="".join(syls),
                sid=sid,
                nsyl=len(syls),
                threshold=threshold,
                syls=tuple(syls),
                nums=nums,
                need=need,
                hits=hits,
                maxc=maxc,
                span=span,
            )
            self._lazy_key[key] = self._new("fuzzy", payload)
        return self._lazy_key[key]

    def regex(self, pattern: str, exclude: str | None) -> int:
        key = ("regex", pattern, exclude)
        if key not in self._lazy_key:
            payload = _Regex(
                compile_pattern(pattern), compile_pattern(exclude) if exclude else None
            )
            self._lazy_key[key] = self._new("regex", payload)
        return self._lazy_key[key]

    def similar(self, examples: list[str], threshold: float) -> int:
        forms = tuple(fold_text(match_form(e)) for e in examples)
        key = ("similar", forms, threshold)
        if key not in self._lazy_key:
            py = tuple("".join(syllables(f)) for f in forms)
            self._lazy_key[key] = self._new("similar", _Similar(forms, py, threshold))
        return self._lazy_key[key]

    def entity(self, kind: str) -> int:
        key = ("entity", kind)
        if key not in self._lazy_key:
            self._lazy_key[key] = self._new("entity", re.compile(_ENTITY[kind]))
        return self._lazy_key[key]

    def kind(self, atom: int) -> str:
        return self._kinds[atom]

    def describe(self, atom: int) -> str:
        p = self._lazy[atom]
        if isinstance(p, str):
            return p
        if isinstance(p, _Fuzzy):
            return self._lazy[p.exact]
        if isinstance(p, _Regex):
            return p.pattern.pattern
        return repr(p)

    def finish(self) -> None:
        self._lazy_atoms = [i for i, k in enumerate(self._kinds) if k != "keyword"]
        g = self._all = _Group(self, set(self._lazy_atoms), prefilter=True)
        self._npos = len(g.add)
        # per atom: its field's top bit in the prefilter's count (0: not a long phrase);
        # per bit position: the atom whose top bit it is
        self._cbit = [0] * len(self._kinds)
        self._catom = [-1] * (len(g.long) * g.width)
        for k, atom in enumerate(g.long):
            self._cbit[atom] = 1 << (k * g.width + g.width - 1)
            self._catom[k * g.width + g.width - 1] = atom
        for other in self._groups.values():
            other.cmask = -1
        ac = ahocorasick.Automaton()
        for key, atom in self._keyword.items():
            ac.add_word(key, (atom, len(key)))
        if self._keyword:
            ac.make_automaton()
        self._ac = ac
        self._cache.clear()

    def limit_cache(self, size: int) -> None:
        """Keep at most ``size`` analysed texts from now on (a long-running service bounds
        its memory with this; batch rescoring keeps the larger default)."""
        self._cache_size = max(1, size)
        if len(self._cache) > self._cache_size:
            self._cache.clear()

    def cache_sizes(self) -> dict[str, int]:
        """Entries of the caches that fill across calls: analysed texts, and remembered
        fuzzy-window results (all phrases together; at most 4,096 per phrase)."""
        windows = sum(len(p.memo) for p in self._lazy if isinstance(p, _Fuzzy))
        return {"texts": len(self._cache), "fuzzy_windows": windows}

    def clear_cache(self) -> None:
        """Forget every analysed text and remembered fuzzy-window result (benchmarks: start
        cold)."""
        self._cache.clear()
        for p in self._lazy:
            if isinstance(p, _Fuzzy):
                p.memo.clear()

    def set_group(self, key: Any, atoms: set[int]) -> None:
        """Name a set of lazy atoms computed together by :meth:`ensure` (e.g. the atoms
        that gate the rules of one role)."""
        self._groups[key] = _Group(self, {a for a in atoms if self._kinds[a] != "keyword"})

    def has_group(self, key: Any) -> bool:
        return key in self._groups

    def group_count(self) -> int:
        return len(self._groups)

    # ---------------------------------------------------------------- matching

    def analyse(self, text: str) -> Analysis:
        """Match form, fold and every exact phrase of the pack (one Aho-Corasick pass);
        fuzzy / regex / similar / entity atoms are computed on demand (:meth:`ensure`,
        :meth:`hits`) and memoised on the analysis."""
        a = self._cache.get(text)
        if a is not None:
            return a
        mf = match_form(text)
        fold = fold_text(mf)
        spans: dict[int, list[Span]] = {}
        ac = self._ac
        if ac is None:
            self.finish()
            ac = self._ac
        if self._keyword and fold:
            assert ac is not None
            for end, (atom, n) in ac.iter(fold):
                lst = spans.get(atom)
                if lst is None:
                    spans[atom] = [(end - n + 1, end + 1)]
                else:
                    lst.append((end - n + 1, end + 1))
        a = Analysis(text, mf, fold, spans)
        if self.caching:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[text] = a
        return a

    def ensure(self, a: Analysis, key: Any = None) -> None:
        """Compute the lazy atoms of group ``key`` (``None``: every lazy atom) for this text.

        Fuzzy phrases of two or more syllables share a prefilter: a phrase is scored only
        when the utterance holds enough of its syllables to reach its threshold
        (:func:`fuzzy_bounds`: at the default 85, half of them); exact occurrences come from
        the Aho-Corasick pass."""
        g = self._groups.get(key) if key is not None else self._all
        if g is None:
            g = self._all
            if self._ac is None:
                self.finish()
                g = self._all
        assert g is not None
        done = a.done
        if done & g.mask == g.mask:  # every atom of the group known already
            return
        spans = a.spans
        if not a.fold:
            a.done = done | g.mask
            return
        for atom in g.other:
            if not done >> atom & 1:
                pause()
                hits = self._compute(a, atom)
                if hits:
                    spans[atom] = hits
        long = g.long
        if long:
            by_exact = g.by_exact
            for kw in [k for k in spans if k in by_exact]:
                for atom in by_exact[kw]:
                    if not done >> atom & 1:
                        done |= 1 << atom
                        spans[atom] = list(spans[kw])
            cands = a._cands
            if cands < 0:
                cands = self._candidates(a)
            if g.cmask < 0:
                g.cmask = sum(self._cbit[atom] for atom in long)
            todo = cands & g.cmask  # the group's phrases that passed, lowest atom first
            if todo:
                lazy = self._lazy
                atom_at = self._catom
                pos = _positions(a, self._npos)
                while todo:
                    low = todo & -todo
                    todo ^= low
                    atom = atom_at[low.bit_length() - 1]
                    if not done >> atom & 1:
                        pause()
                        hits = _best_window(a, lazy[atom], self.caching, pos)
                        if hits:
                            spans[atom] = hits
        a.done |= g.mask

    def _candidates(self, a: Analysis) -> int:
        """The long fuzzy atoms of the pack sharing at least ``need`` distinct syllables with
        the utterance, as bits (``_cbit``; computed once per text, for every group)."""
        g = self._all
        assert g is not None
        sid = a._sid
        if sid is None:
            sid = a._ids()
        add = g.add
        n = len(add)
        seen = [False] * n  # each distinct syllable once
        acc = g.bias
        b = sid.encode("utf-32-le")  # id numbers without a string per id (see _SID_BASE)
        for j in range(len(sid)):
            k = b[4 * j] | b[4 * j + 1] << 8
            if k < n and not seen[k]:
                seen[k] = True
                m = add[k]
                if m:
                    acc += m
        out = acc & g.top
        a._cands = out
        return out

    def hits(self, a: Analysis, atom: int) -> list[Span]:
        """Spans of ``atom`` in the utterance (empty list when it does not occur)."""
        s = a.spans.get(atom)
        if s is not None:
            return s
        if a.done >> atom & 1 or self._kinds[atom] == "keyword":
            return []
        a.done |= 1 << atom
        pause()
        p = self._lazy[atom]
        if isinstance(p, _Fuzzy) and p.nsyl > 1:
            m = self._long_fuzzy(a, atom, p)
        else:
            m = self._compute(a, atom)
        if m:
            a.spans[atom] = m
        return m

    def _long_fuzzy(self, a: Analysis, atom: int, p: _Fuzzy) -> list[Span]:
        """One fuzzy phrase of two or more syllables, as :meth:`ensure` computes it."""
        exact = a.spans.get(p.exact)
        if exact:
            return list(exact)
        if not a.fold:
            return []
        cands = a._cands
        if cands < 0:
            cands = self._candidates(a)
        return _best_window(a, p, self.caching) if cands & self._cbit[atom] else []

    def _compute(self, a: Analysis, atom: int) -> list[Span]:
        p = self._lazy[atom]
        fold = a.fold
        if not fold:
            return []
        if isinstance(p, _Fuzzy):
            exact = a.spans.get(p.exact)
            if exact:
                return list(exact)
            if p.nsyl <= 1:  # the same syllable (ids: one per syllable)
                sid = a._sid
                if sid is None:
                    sid = a._ids()
                i = sid.find(p.sid)
                return [] if i < 0 else [(i, i + p.nsyl)]
            return _best_window(a, p, self.caching)
        if isinstance(p, _Regex):
            if not p.pattern.search(fold):  # the usual answer, without a span list
                return []
            if p.exclude is not None and p.exclude.search(fold):
                return []
            return p.pattern.spans(fold)
        if isinstance(p, _Similar):
            best = process.extractOne(fold, p.examples, scorer=fuzz.ratio, score_cutoff=p.threshold)
            if best is None:
                best = process.extractOne(
                    a.pinyin, p.examples_py, scorer=fuzz.ratio, score_cutoff=p.threshold
                )
            return [(0, len(fold))] if best is not None else []
        if isinstance(p, re.Pattern):
            return [m.span() for m in p.finditer(fold)]
        raise AssertionError(f"unknown atom kind {self._kinds[atom]}")


def _positions(a: Analysis, n: int) -> list[int]:
    """Where each syllable id below ``n`` (id number) occurs in the utterance, as a bit
    mask of syllable positions: a fuzzy phrase's hits are the OR of its syllables' masks."""
    sid = a._sid
    if sid is None:
        sid = a._ids()
    pos = [0] * n
    b = sid.encode("utf-32-le")  # id numbers without a string per id (see _SID_BASE)
    for j in range(len(sid)):
        k = b[4 * j] | b[4 * j + 1] << 8
        if k < n:
            pos[k] |= 1 << j
    return pos


def _best_window(
    a: Analysis, p: _Fuzzy, memo: bool = True, pos: list[int] | None = None
) -> list[Span]:
    """Best match of a fuzzy phrase over syllable-aligned windows of the utterance: the
    window with the lowest weighted syllable edit distance to the phrase (:mod:`.confusion`)
    if that is at most ``p.maxc``. Ties go to the first window in the order: length n,
    n-1, n+1, n-2, n+2 ..., then left to right. Only windows that can match are scored:
    lengths n +- ``p.span`` holding ``p.hits`` positions with a phrase syllable
    (:func:`fuzzy_bounds` proves the rest cannot). With ``memo`` (the index's ``caching``),
    results are remembered per stretch of syllables (below); ``pos``: the utterance's
    :func:`_positions` (made here when not given)."""
    sid = a._sid
    if sid is None:
        sid = a._ids()
    m = len(sid)
    n = p.nsyl
    need = p.hits
    if p.maxc < 0:
        return []
    if pos is None:
        pos = _positions(a, 1 + max(p.nums, default=-1))
    npos = len(pos)
    at = 0  # the positions holding one of the phrase's syllables
    for k in p.nums:
        if k < npos:
            at |= pos[k]
    hit: list[int] = []  # ... in ascending order
    while at:
        low = at & -at
        hit.append(low.bit_length() - 1)
        at ^= low
    nh = len(hit)
    if nh < need:
        return []
    lo_len = n - p.span
    if lo_len < need:
        lo_len = need
    if lo_len < 1:
        lo_len = 1
    hi_len = n + p.span
    if hi_len > m:
        hi_len = m
    if lo_len > hi_len:
        return []
    # The windows to score lie within syllables [first, end): the eligible windows (holding
    # ``need`` positions) of every length, from the leftmost start to the rightmost end.
    first = 0
    end = m
    if need > 0:
        top = nh - need + 1
        # cheap exit: no ``need`` hits close enough for the longest window
        for j in range(top):
            if hit[j + need - 1] - hit[j] < hi_len:
                break
        else:
            return []
        first = m
        end = 0
        for length in range(lo_len, hi_len + 1):
            last = m - length
            # windows [i, i + length) holding hit[j .. j + need - 1]:
            # i in [hit[j + need - 1] - length + 1, hit[j]]
            for j in range(top):
                lo = hit[j + need - 1] - length + 1
                if lo < 0:
                    lo = 0
                hi = hit[j]
                if hi > last:
                    hi = last
                if lo <= hi:
                    if lo < first:
                        first = lo
                    if hi + length > end:
                        end = hi + length
    if first >= end:
        return []
    # The result depends on the stretch's syllables only (every scored window lies in it,
    # and whether it is eligible depends on its own syllables), so the same stretch in
    # another utterance (a scripted sentence around a different number, say) has the same
    # best window, shifted. Memoised per phrase by the stretch's syllables.
    if not memo:
        found = _scan_windows(p, sid, hit, first, end, lo_len, hi_len)
        return [] if found is None else [found]
    stretch = sid[first:end]
    seen = p.memo
    rel = seen.get(stretch)  # one lookup: safe when another thread clears the memo
    if rel is not None:
        return [] if rel[1] == 0 else [(rel[0] + first, rel[1] + first)]
    found = _scan_windows(p, sid, hit, first, end, lo_len, hi_len)
    if len(seen) >= _MEMO_SIZE:
        seen.clear()
    seen[stretch] = (0, 0) if found is None else (found[0] - first, found[1] - first)
    return [] if found is None else [found]


def _sub_costs(p: _Fuzzy, k: int) -> list[int]:
    """Substitution costs of utterance syllable id number ``k`` against each phrase
    syllable (memoised on the phrase)."""
    row = p.subs.get(k)
    if row is None:
        syl = _SYL_OF[k]
        row = [substitution_cost(s, syl) for s in p.syls]
        p.subs[k] = row
    return row


def _scan_windows(
    p: _Fuzzy, sid: str, hit: list[int], first: int, end: int, lo_len: int, hi_len: int
) -> Span | None:
    """The scoring part of :func:`_best_window`: the best eligible window inside
    [first, end), or None. One edit-distance table per start gives every length; a start
    stops early once no cell of its table's last column is within ``maxc`` (later columns
    cannot be lower: each cell comes from a cell of the column before, or the one above it,
    by adding a cost >= 0)."""
    n = p.nsyl
    need = p.hits
    maxc = p.maxc
    b = sid.encode("utf-32-le")  # id numbers without a string per id (see _SID_BASE)
    width = end - first
    cols: list[list[int]] = []
    cum = [0] * (width + 1)  # positions holding a phrase syllable, before first + j
    k = 0
    nh = len(hit)
    while k < nh and hit[k] < first:
        k += 1
    c = 0
    for j in range(first, end):
        cols.append(_sub_costs(p, b[4 * j] | b[4 * j + 1] << 8))
        if k < nh and hit[k] == j:
            c += 1
            k += 1
        cum[j - first + 1] = c
    # Costs above maxc are all the same to the search: kept as ``big``. Only cells within
    # ``span`` of the diagonal are computed (the band): a cell further off needs more than
    # ``span`` insertions or deletions, more than maxc; cells outside read as ``big``.
    big = maxc + 1
    span = p.span
    cost = [big] * ((hi_len - lo_len + 1) * width)  # (length - lo_len) * width + start
    prev = [big] * (n + 1)
    cur = [big] * (n + 1)
    for i in range(0, width - lo_len + 1):
        stop = i + hi_len
        if stop > width:
            stop = width
        if cum[stop] - cum[i] < need:
            continue  # no eligible window starts here
        for r in range(n + 1):
            v = r * INDEL
            prev[r] = v if r <= span and v <= maxc else big
        for j in range(i, stop):
            col = cols[j]
            length = j - i + 1
            rlo = length - span
            rhi = length + span
            if rhi > n:
                rhi = n
            if rlo <= 0:
                v = length * INDEL
                if v > maxc:
                    v = big
                cur[0] = v
                low = v
                rlo = 1
            else:
                cur[rlo - 1] = big
                low = big
            for r in range(rlo, rhi + 1):
                v = prev[r - 1] + col[r - 1]
                w = prev[r] + INDEL
                if w < v:
                    v = w
                w = cur[r - 1] + INDEL
                if w < v:
                    v = w
                if v > maxc:
                    v = big
                cur[r] = v
                if v < low:
                    low = v
            if rhi < n:
                cur[rhi + 1] = big
            if low > maxc:
                break  # no later column gets lower
            if length >= lo_len and cur[n] <= maxc and cum[j + 1] - cum[i] >= need:
                cost[(length - lo_len) * width + i] = cur[n]
            prev, cur = cur, prev
    best = big
    found: Span | None = None
    for k in range(2 * p.span + 1):  # lengths n, n - 1, n + 1, n - 2, ...
        length = n - (k + 1) // 2 if k % 2 else n + k // 2
        if length < lo_len or length > hi_len:
            continue
        row = (length - lo_len) * width
        for i in range(0, width - length + 1):
            v = cost[row + i]
            if v < best:
                best = v
                found = (first + i, first + i + length)
    return found
