"""The recognisers: personal data in a normalised transcript (``Utterance.text``).

:func:`find_entities` is the single entry point: the redactor and the rules' ``entity``
condition both use it. Input is :func:`qa_pipeline.text.normalise` output (simplified,
half-width digits, Chinese punctuation); offsets refer to the text searched.

What is found (:class:`~.entities.Kind`):

* numbers said as digits or spoken numerals (幺三八…, 洞, 拐, 勾, ASR near-misses; see
  :mod:`.numerals`), with spaces, commas, 、, 杠 and pauses (嗯, 呃) between groups: mobile
  (1[3-9] + 9 digits; 10-12 digits starting 1[3-9] too, since ASR drops and doubles
  digits), landline (0 + 2-3 digit area code + 7-8 digits; 7-8 digits after a phone cue;
  400/800/95 numbers are businesses' and stay), 18-digit ID (region 1-8 and a birth date
  1900..today; masked whether or not the ISO 7064 check digit holds, which only raises the
  score; X/叉 as the last), bank cards (16-19 digits; Luhn raises the score, never a gate),
  passports (E/G/D/S/P + 8 digits, E + letter + 7), verification codes and passwords after a cue
  (验证码是/密码是/口令…: 4-8 digits, or letters and digits);
* e-mail, written or spoken (艾特/at, 点com);
* street addresses: road (路/街/大道/巷/弄/胡同) + number + 号/弄 and the units after it
  (栋/幢/号楼/单元/楼/层/室), or an estate (小区, 花园…) + two units: the number-bearing
  part is masked.

A mask the redactor wrote ([手机号#<digest>]) is never searched again.

Context words count both ways, within :data:`WINDOW` characters before a number: a cue
(手机号, 电话, 身份证, 卡号…) raises the score or decides the kind of a number that fits
no pattern on its own (a phone number with a digit lost); the nearest cue wins (the window
stops at the number before: a cue belongs to the number after it), and a lowering one (工号, 订单号, 单号, 尾号, 后四位, 车牌…) means the number is not personal
data. A context word is also found when the ASR wrote a homophone with the same tones (功耗
for 工号; pypinyin's reading of each character); where none is, also when it wrote the same
syllables with other tones (电划 for 电话) or, for the words of :data:`_NEAR_INITIAL`
(those measured so, with no clash with another kind's word), one syllable with another
initial (变化 for 电话, 首帝 for 手机); a lowering word heard only so (几分 for 积分) keeps a
number that has a shape of its own. After a phone, ID or card cue a word of one or two
characters between groups of digits is taken for a misheard digit and the groups joined
when together they hold 10 digits or more, 7 after a phone cue, and not from a lone
numeral (with no cue: groups of three or more, no unit or context word between,
:data:`UNCUED_MIN` together), and a unit right after seven digits or more does not make
them a quantity. After a phone cue :data:`PHONE_CUED_MIN` digits (six) take its kind: the
ASR drops digits (about one spoken digit in three in the measurement).
A string of :data:`UNCUED_MIN` or more digits that no context word explains and no
pattern fits is masked all the same (the ASR loses digits and mishears cue words; erring
towards a mask costs an order number said without its cue, the other way a customer's
number). A unit right after a number (元, 块, 年, 月, 号, 点, 分钟, 个…) makes it a price, a
date, a time or a quantity; unit numerals (三百二十) make it a value.

Why not Presidio (the lead's decision): the hard part is spoken-numeral inverse text
normalisation with offsets mapped back to the characters said, which neither Presidio nor
cn2an gives (cn2an's transform loses offsets and reads 一三八 as a value); Presidio would
wrap these same functions in PatternRecognizers, bring spaCy onto every machine, and its
e-mail recogniser's tldextract fetches the public suffix list at run time. Nothing here
downloads anything, and the whole search is a few regular expressions and a loop.

Cost: an utterance with no digit, numeral, ``@``/艾特, code cue or road word returns at once
(``benchmarks/bench_redact.py`` measures µs per utterance).
"""

from __future__ import annotations

import datetime as _dt
import re

from .entities import MASK_RE, Entity, Kind
from .numerals import DIGIT, RUN, SEPARATORS, Run, read_run

#: characters before a number searched for context words (the end of the cue to the
#: number); a code's cue may stand further back in its sentence (验证码报给我一下，是…)
WINDOW = 8
CODE_WINDOW = 16
#: digits from which a number with no context word is masked anyway (a mobile with two
#: digits lost by the ASR); below it, a number needs a shape or a cue
UNCUED_MIN = 9

# -- context words ---------------------------------------------------------------------
# the nearest cue before a number wins; None: the number is not personal data
_CUES: dict[str, Kind | None] = {
    # lowering
    "工号": None, "员工号": None, "坐席号": None, "订单号": None, "订单": None,
    "单号": None, "运单": None, "快递": None, "物流": None, "工单": None, "流水号": None,
    "编号": None, "尾号": None, "后四位": None, "后4位": None, "末四位": None,
    "最后四位": None, "后几位": None, "后六位": None, "后6位": None, "末尾": None, "车牌": None, "牌照": None,
    "分机": None, "型号": None, "合同号": None, "发票号": None, "批次": None,
    "金额": None, "价格": None, "余额": None, "多少钱": None, "积分": None,
    # raising
    "手机": Kind.MOBILE, "电话": Kind.MOBILE, "号码": Kind.MOBILE, "联系方式": Kind.MOBILE,
    "拨打": Kind.MOBILE, "打这个": Kind.MOBILE, "回拨": Kind.MOBILE, "来电": Kind.MOBILE,
    "座机": Kind.LANDLINE, "固话": Kind.LANDLINE, "固定电话": Kind.LANDLINE,
    "身份证": Kind.ID_NUMBER, "证件": Kind.ID_NUMBER, "身份号": Kind.ID_NUMBER,
    "卡号": Kind.BANK_CARD, "银行卡": Kind.BANK_CARD, "信用卡": Kind.BANK_CARD,
    "储蓄卡": Kind.BANK_CARD, "借记卡": Kind.BANK_CARD, "账号": Kind.BANK_CARD,
    "帐号": Kind.BANK_CARD, "账户": Kind.BANK_CARD, "这张卡": Kind.BANK_CARD,
    "护照": Kind.PASSPORT, "护照号": Kind.PASSPORT, "护照号码": Kind.PASSPORT,
    "身份证号码": Kind.ID_NUMBER, "证件号码": Kind.ID_NUMBER, "座机号码": Kind.LANDLINE,
    "卡号码": Kind.BANK_CARD, "账户号码": Kind.BANK_CARD,
    "验证码": Kind.CODE, "校验码": Kind.CODE, "动态码": Kind.CODE, "短信码": Kind.CODE,
    "动态密码": Kind.CODE, "取件码": Kind.CODE,
    "密码": Kind.PASSWORD, "口令": Kind.PASSWORD,
    # what Whisper wrote for a context word three times or more, not a homophone of it
    # (benchmarks/digit_confusions.json, "cues"; homophones are found by their reading)
    "熬码": Kind.MOBILE, "神圣圣": Kind.ID_NUMBER, "真正正好": Kind.ID_NUMBER,
    "变成马": Kind.CODE, "天浩": None,
}  # fmt: skip
#: the entries of :data:`_CUES` that are Whisper's spellings, not words (no near reading)
_HEARD_AS = frozenset({"熬码", "神圣圣", "真正正好", "变成马", "天浩"})
#: context words also heard with one syllable's initial changed (变化 for 电话, 首帝熬 for
#: 手机号, 左翼 for 座机): those that Whisper was measured to write so, and whose near
#: readings matched nothing said for a word of another kind (benchmarks/digit_confusions.json,
#: "cues"; not 账号, 单号 or 编号: 钢号 was said 工号, 看好 账号, 尊建豪 证件号)
_NEAR_INITIAL = frozenset({"电话", "手机", "座机", "证件", "身份号", "快递", "尾号", "工号"})
_CODE_KINDS = (Kind.CODE, Kind.PASSWORD)
_NUMBER_KINDS = (Kind.MOBILE, Kind.LANDLINE, Kind.ID_NUMBER, Kind.BANK_CARD)
_PHONE_KINDS = (Kind.MOBILE, Kind.LANDLINE)
#: digits from which a number after a phone cue takes the cue's kind: about half of the
#: shortest mobile, as the test set counts a number as heard (Whisper was measured to drop
#: a spoken digit about one time in three); after an ID or card cue, from seven
PHONE_CUED_MIN = 6

#: a unit right after a number: a price, date, time, duration or quantity
_AFTER_UNIT = re.compile(
    r"[ ]?(?:元|块|毛|角|分钱|年|月|日|号|点|时|分|秒|天|周|岁|个|台|件|次|张|斤|克|米|"
    r"公里|层|楼|楼层|倍|人|位|页|条|遍|度|级|期|%|％|折)"
)
#: a plate: province + letter right before the digits (京A12345)
_PLATE = re.compile(r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-Za-z] ?$")
_LETTER_BEFORE = re.compile(r"([EeGgDdSsPp][A-Za-z]?)[ -]?$")
_BUSINESS = ("400", "800", "95")

# -- e-mail, spoken or written ------------------------------------------------------------
_NUMERALS = "".join(DIGIT)
_EMAIL = re.compile(
    rf"(?P<local>[A-Za-z0-9{_NUMERALS}][A-Za-z0-9._\-{_NUMERALS}]*)\s*"
    r"(?P<at>@|艾特|爱特|at|AT|圈a|圈A)\s*"
    r"(?P<domain>[A-Za-z0-9\-]+(?:\s*(?:\.|点|dot)\s*[A-Za-z0-9\-]+)*?"
    r"\s*(?:\.|点|dot)\s*(?:com|cn|net|org|edu|gov|cc|io|hk|info|biz)(?:\s*(?:\.|点)\s*cn)?)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_EMAIL_HINT = re.compile(r"@|艾特|爱特|at|圈a", re.IGNORECASE)

# -- codes and passwords with letters --------------------------------------------------
_CODE_TOKEN = re.compile(
    r"(?P<cue>验证码|校验码|动态码|短信码|动态密码|取件码|密码|口令)"
    r"[^A-Za-z0-9，。？！]{0,4}?(?P<tok>(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z]*[0-9])"
    r"[A-Za-z0-9]{4,16})(?![A-Za-z0-9])"
)

# -- street addresses ------------------------------------------------------------------
_NUM = rf"[0-9{_NUMERALS}十百千]+"
_ROAD = r"(?:路|大街|街|大道|(?<![知味频通渠难车跑赛轨街航])道|巷|弄|胡同)"
_UNIT = r"(?:号楼|号院|栋|幢|座|单元|楼|层|室|号|户)"
_ADDRESS = re.compile(
    rf"{_ROAD}[甲乙丙丁]?(?P<num>{_NUM}(?:[-之]{_NUM})?[号弄](?:[院]?\s*(?:{_NUM}\s*{_UNIT}\s*)*))"
)
_ESTATE = re.compile(
    rf"(?:小区|花园|公寓|大厦|苑|村|家园|新村)(?P<num>(?:{_NUM}\s*{_UNIT}\s*){{2,}})"
)
_ADDRESS_HINT = re.compile(r"[路街道巷弄同区园寓厦苑村]")

_EARLY = re.compile(rf"[{re.escape(''.join(DIGIT))}@艾爱码令]|at|AT|At")


_CUE_MAX = max(map(len, _CUES))
#: a character's first reading with its tone (pypinyin's table, read on first use)
_READING: dict[str, str] = {}
_CUE_READINGS: dict[tuple[str, ...], str] = {}


def _reading(ch: str) -> str:
    r = _READING.get(ch)
    if r is None:
        from pypinyin.pinyin_dict import pinyin_dict  # a local import: the table loads once

        v = pinyin_dict.get(ord(ch)) if len(ch) == 1 else None
        r = v.split(",", 1)[0] if v else ch
        _READING[ch] = r
    return r


_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ", "aaaaeeeeiiiioooouuuuüüüünnnm")
_INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q",
             "x", "r", "z", "c", "s", "y", "w")  # fmt: skip
#: a character's reading without its tone, and its final alone ("*ian" for 电 diàn)
_NEAR_READING: dict[str, tuple[str, str]] = {}
#: readings without tones of the context words (one syllable's initial may be "*final"
#: for the words in :data:`_NEAR_INITIAL`) -> the word; "" where two kinds share one
_CUE_NEAR: dict[tuple[str, ...], str] = {}
_CUE_NEAR_HEADS: set[tuple[str, str]] = set()


def _near_reading(ch: str) -> tuple[str, str]:
    r = _NEAR_READING.get(ch)
    if r is None:
        bare = _reading(ch).translate(_TONES)
        final = next((bare[len(i) :] for i in _INITIALS if bare.startswith(i)), bare)
        r = _NEAR_READING[ch] = (bare, "*" + final)
    return r


def _near_cues() -> None:
    def add(key: tuple[str, ...], word: str) -> None:
        had = _CUE_NEAR.setdefault(key, word)
        if had and _CUES[had] is not _CUES[word]:
            _CUE_NEAR[key] = ""  # two kinds read alike: neither
        _CUE_NEAR_HEADS.add((key[0], key[1]))

    for word in _CUES:
        if word in _HEARD_AS:
            continue
        near = [_near_reading(c) for c in word]
        bare = tuple(r[0] for r in near)
        add(bare, word)
        if word in _NEAR_INITIAL:
            for j in range(len(word)):
                add(bare[:j] + (near[j][1],) + bare[j + 1 :], word)


def _cues_heard(seg: str, near: bool = True) -> list[tuple[int, int, str, bool]]:
    """The context words in ``seg`` (start, end, the cue, whether near), written or heard as a homophone
    with the same tones (店划 for 电话, 功耗 for 工号): read left to right, the longest
    at each place, as a regular expression of the cues would. ``near``: where none is
    found, also the words heard with other tones (电划 for 电话) or, for those of
    :data:`_NEAR_INITIAL`, with one syllable's initial changed (变化 for 电话)."""
    if not _CUE_READINGS:
        for word in _CUES:
            _CUE_READINGS.setdefault(tuple(_reading(c) for c in word), word)
        _near_cues()
    readings = [_reading(c) for c in seg]
    out: list[tuple[int, int, str, bool]] = []
    i, n = 0, len(seg)
    while i < n:
        for k in range(min(_CUE_MAX, n - i), 1, -1):
            heard = _CUE_READINGS.get(tuple(readings[i : i + k]))
            if heard is not None:
                out.append((i, i + k, heard, False))
                i += k
                break
        else:
            i += 1
    if out or not near or n < 2:
        return out
    rs = [_near_reading(c) for c in seg]
    bare = [r[0] for r in rs]
    heads = _CUE_NEAR_HEADS
    i = 0
    while i < n - 1:
        a, b = rs[i], rs[i + 1]
        if (a[0], b[0]) not in heads and (a[1], b[0]) not in heads and (a[0], b[1]) not in heads:
            i += 1
            continue
        for k in range(min(_CUE_MAX, n - i), 1, -1):
            key = tuple(bare[i : i + k])
            hit = _CUE_NEAR.get(key)
            j = 0
            while hit is None and j < k:
                hit = _CUE_NEAR.get(key[:j] + (rs[i + j][1],) + key[j + 1 :])
                j += 1
            if hit:
                out.append((i, i + k, hit, True))
                i += k
                break
        else:
            i += 1
    return out


def _cue_before(text: str, start: int, floor: int = 0) -> tuple[bool, Kind | None, bool]:
    """(a cue was found, its kind, whether it was a near reading) for the nearest context
    word ending within :data:`WINDOW` characters before ``start`` (:data:`CODE_WINDOW` for
    a code's cue); a sentence end (。？！) and ``floor`` (the end of the number before) cut
    the window."""
    lo = max(floor, start - CODE_WINDOW)
    seg = text[lo:start]
    for p in ("。", "？", "！"):
        k = seg.rfind(p)
        if k >= 0:
            seg = seg[k + 1 :]
    found = _cues_heard(seg) if seg else []
    if not found:
        return False, None, False
    _, end, cue, near = found[-1]
    kind = _CUES[cue]
    if len(seg) - end > (CODE_WINDOW if kind in _CODE_KINDS else WINDOW):
        return False, None, False
    return True, kind, near


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_ok(value: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an 18-character ID number."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    s = sum((ord(c) - 48) * w for c, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[s % 11] == value[17].upper()


def _plausible_birth(yyyymmdd: str) -> bool:
    try:
        born = _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return _dt.date(1900, 1, 1) <= born <= _dt.date.today()


def _id_shape(digits: str) -> bool:
    return len(digits) >= 14 and digits[0] in "12345678" and _plausible_birth(digits[6:14])


def _x_after(text: str, end: int) -> int:
    """The end of an X/叉 check character right after ``end`` (one separator allowed), or 0."""
    i = end
    if i < len(text) and text[i] in SEPARATORS:
        i += 1
    if i < len(text) and text[i] in "Xx叉":
        return i + 1
    return 0


def _classify(
    text: str, run: Run, cued: bool, cue: Kind | None, uncued: bool = True
) -> list[Entity]:
    """What ``run`` is, given the context word before it; ``uncued``: whether a long number
    that nothing explains is masked (not for a piece of a run whose cue lowered it)."""
    d = run.digits
    n = len(d)
    s, e = run.start, run.end
    boost = 0.1 if cued else 0.0

    def ent(kind: Kind, score: float, value: str = d, end: int = e, start: int = s) -> Entity:
        return Entity(kind, start, end, value, round(min(1.0, score), 2))

    # codes and passwords: a short run right after its cue
    if cue in _CODE_KINDS and 4 <= n <= 8:
        return [ent(cue, 0.9)]
    # passports: a letter right before 8 digits (7-9 after the cue)
    lm = _LETTER_BEFORE.search(text, max(0, s - 3), s)
    if (
        lm
        and (n == 8 or (cue is Kind.PASSPORT and 7 <= n <= 9) or (len(lm.group(1)) == 2 and n == 7))
        and not _PLATE.search(text, max(0, s - 3), s)
    ):
        return [ent(Kind.PASSPORT, 0.8 + boost, lm.group(1).upper() + d, start=lm.start())]
    # ID numbers: 17 digits + X, or 18 digits; 15-19 after the cue (ASR drops and doubles)
    if n == 17:
        xe = _x_after(text, e)
        if xe and _id_shape(d):
            value = d + "X"
            return [ent(Kind.ID_NUMBER, (0.95 if id_check_ok(value) else 0.8) + boost, value, xe)]
    if n == 18 and _id_shape(d) and not (cue is Kind.BANK_CARD and _luhn(d)):
        return [ent(Kind.ID_NUMBER, (0.95 if id_check_ok(d) else 0.8) + boost)]
    if cue is Kind.ID_NUMBER and 14 <= n <= 19:
        return [ent(Kind.ID_NUMBER, 0.7)]
    # bank cards: 16-19 digits
    if 16 <= n <= 19:
        return [ent(Kind.BANK_CARD, (0.8 if _luhn(d) else 0.55) + boost)]
    # mobiles (with +86)
    if n == 13 and d.startswith("861") and d[3] in "3456789":
        return [ent(Kind.MOBILE, 0.85 + boost, d[2:])]  # the same value as without +86
    if n == 11 and d[0] == "1" and d[1] in "3456789":
        return [ent(Kind.MOBILE, 0.85 + boost)]
    if d.startswith(_BUSINESS):
        return []
    # landlines: area code (010, 02x, 0xxx) + 7-8 digits, or 7-8 digits after a phone cue
    if d[0] == "0" and 10 <= n <= 12:
        area = 3 if d[1] in "12" else 4
        if 7 <= n - area <= 8 and d[area] not in "01":
            return [ent(Kind.LANDLINE, 0.8 + boost)]
    if cue in (Kind.MOBILE, Kind.LANDLINE) and 7 <= n <= 8 and d[0] not in "01":
        return [ent(Kind.LANDLINE, 0.6)]
    # a mobile with a digit lost or doubled by the ASR
    if 10 <= n <= 12 and d[0] == "1" and d[1] in "3456789":
        return [ent(Kind.MOBILE, 0.6 + boost)]
    # anything long enough after a raising cue takes the cue's kind (a phone number with
    # digits lost by the ASR: from PHONE_CUED_MIN)
    if (
        cue is not None
        and cue not in _CODE_KINDS
        and (7 if cue not in _PHONE_KINDS else PHONE_CUED_MIN) <= n <= 19
    ):
        kind = cue
        if cue is Kind.MOBILE and d[0] == "0":
            kind = Kind.LANDLINE
        return [ent(kind, 0.5)]
    # a long digit string that no context word explains: masked on the side of privacy.
    # ASR loses digits and mishears the cue words too (好奇 for 号码, 反共 for 办公室); the
    # numbers that are not personal (orders, parcels) come with their lowering cue.
    if uncued and n >= UNCUED_MIN and not cued:
        kind = Kind.LANDLINE if d[0] == "0" else Kind.MOBILE if n <= 13 else Kind.BANK_CARD
        return [ent(kind, 0.4)]
    return []


def _split(run: Run) -> list[Run]:
    """A run's groups, joined greedily into the pieces that look like numbers of their own
    (two phone numbers read one after the other)."""
    out: list[Run] = []
    bounds = [*run.groups, len(run.digits)]
    i = 0
    while i < len(bounds) - 1:
        best = None
        for j in range(len(bounds) - 1, i, -1):
            piece = run.digits[bounds[i] : bounds[j]]
            if len(piece) in (11, 18) or (piece[:1] == "0" and 10 <= len(piece) <= 12):
                best = j
                break
        if best is None:
            i += 1
            continue
        out.append(run.part(bounds[i], bounds[best]))
        i = best
    return out


#: what may stand between two groups of digits joined after a number cue
_GAP = 2
_UNIT_CHARS = set("元块毛角钱年月日号点时分秒天周岁个台件次张斤克米里层楼倍人位页条遍度级期%％折")
_JOINED_MIN = 10


def _runs(text: str) -> list[Run]:
    """The runs of four digit characters or more, and shorter ones with another run a
    gap away (which may join them)."""
    ms = [(m.start(), m.end()) for m in RUN.finditer(text)]
    out: list[Run] = []
    for k, (a, b) in enumerate(ms):
        if (
            b - a >= 4
            or (k + 1 < len(ms) and ms[k + 1][0] - b <= _GAP)
            or (k > 0 and a - ms[k - 1][1] <= _GAP)
        ):
            r = read_run(text, a, b)
            if r is not None:
                out.append(r)
    return out


def _gap_ok(text: str, end: int, start: int, strict: bool = False) -> bool:
    """Whether the one or two characters ``text[end:start]`` may join two runs;
    ``strict``: nor a unit or a context word among them."""
    gap = text[end:start]
    if not 0 < len(gap) <= _GAP or not all("\u4e00" <= c <= "\u9fff" for c in gap):
        return False  # a word the ASR wrote, not punctuation or a file name's _ and .
    return not strict or not (_UNIT_CHARS.intersection(gap) or _cues_heard(gap, near=False))


def _join(a: Run, b: Run) -> Run:
    n = len(a.digits)
    return Run(
        a.digits + b.digits,
        a.where + b.where,
        a.groups + tuple(n + g for g in b.groups),
        a.cardinal or b.cardinal,
    )


def _numbers(text: str) -> list[Entity]:
    found: list[Entity] = []
    floor = 0
    rs = _runs(text)
    i = 0
    while i < len(rs):
        run = rs[i]
        i += 1
        close = i < len(rs) and _gap_ok(text, run.end, rs[i].start)
        if len(run.digits) < 4 and not close:
            continue
        cued, cue, near = _cue_before(text, run.start, floor)
        if close and (cue in _NUMBER_KINDS or not cued):
            # a character or two between groups of digits may be a digit the ASR wrote as
            # a word (超级 for 九九, 号 for 幺): after a phone, ID or card cue the groups
            # are one number when together they are as long as one (10 digits or more);
            # with no context word, groups of three or more each, a gap that holds no
            # unit (年, 块, 次…) and no context word, and together UNCUED_MIN digits
            strict = cue is None
            j, joined = i, run
            while j < len(rs) and _gap_ok(text, joined.end, rs[j].start, strict):
                if strict and (len(joined.digits) < 3 or len(rs[j].digits) < 3):
                    break
                joined = _join(joined, rs[j])
                j += 1
            least = UNCUED_MIN if strict else 7 if cue in _PHONE_KINDS else _JOINED_MIN
            if len(joined.digits) >= least and (
                len(joined.digits) >= _JOINED_MIN or len(run.digits) >= 2
            ):  # below _JOINED_MIN, not from a lone numeral (后六位, 一共)
                run, i = joined, j
        if len(run.digits) < 4:
            continue
        floor = run.end
        if run.cardinal:
            continue
        if _PLATE.search(text, max(0, run.start - 3), run.start):
            continue
        if (
            _AFTER_UNIT.match(text, run.end)
            and len(run.digits) < 10
            # seven digits or more after a phone, ID or card cue are that number, the
            # "unit" a digit the ASR misheard (个 for 二, 号 for 幺)
            and not (cue in _NUMBER_KINDS and len(run.digits) >= 7)
        ):
            continue
        # a lowering cue heard only as a near reading (几分 for 积分) keeps a number that has
        # a shape of its own, and stops only the guess at one that fits none
        vetoed = cued and cue is None and not near
        got = [] if vetoed else _classify(text, run, cued, cue)
        if not got and not vetoed and len(run.digits) > 19:
            for piece in _split(run):
                got += _classify(text, piece, cued, cue)
            if not got and cue is not None:
                # a long number after a raising cue that splits into nothing known
                got = [Entity(cue, run.start, run.end, run.digits, 0.5)]
        if not got and len(run.groups) > 1:
            # two numbers read one after the other (工号1234，13812345678): a later group
            # may start one of its own, with no cue between them
            for g in run.groups[1:]:
                got = _classify(text, run.part(g, len(run.digits)), False, None, uncued=False)
                if got:
                    break
        found += got
    return found


def _emails(text: str) -> list[Entity]:
    out: list[Entity] = []
    for m in _EMAIL.finditer(text):
        local = "".join(DIGIT.get(c, c) for c in m.group("local"))
        if not re.search(r"[A-Za-z0-9]", local):
            continue
        domain = re.sub(r"\s*(?:点|dot)\s*", ".", m.group("domain"), flags=re.IGNORECASE)
        domain = re.sub(r"\s+", "", domain)
        out.append(Entity(Kind.EMAIL, m.start(), m.end(), f"{local}@{domain}".lower(), 0.95))
    return out


def _codes(text: str) -> list[Entity]:
    out: list[Entity] = []
    for m in _CODE_TOKEN.finditer(text):
        kind = _CUES[m.group("cue")]
        assert kind is not None
        out.append(Entity(kind, m.start("tok"), m.end("tok"), m.group("tok"), 0.85))
    return out


def _addresses(text: str) -> list[Entity]:
    out: list[Entity] = []
    for rx in (_ADDRESS, _ESTATE):
        for m in rx.finditer(text):
            raw = m.group("num").rstrip()
            value = "".join(DIGIT.get(c, c) for c in raw if not c.isspace())
            out.append(Entity(Kind.ADDRESS, m.start("num"), m.start("num") + len(raw), value, 0.8))
    return out


def _resolve(found: list[Entity]) -> list[Entity]:
    """Non-overlapping, sorted: the surer and longer finding wins an overlap."""
    if len(found) < 2:
        return found
    kept: list[Entity] = []
    for e in sorted(found, key=lambda x: (-x.score, -(x.end - x.start), x.start)):
        if all(e.end <= k.start or e.start >= k.end for k in kept):
            kept.append(e)
    kept.sort(key=lambda x: x.start)
    return kept


def find_entities(text: str) -> list[Entity]:
    """Personal data in ``text``, sorted by position, not overlapping."""
    if not text or not _EARLY.search(text) and not _ADDRESS_HINT.search(text):
        return []
    found = _numbers(text) if RUN.search(text) else []
    if _EMAIL_HINT.search(text):
        found += _emails(text)
    if "码" in text or "令" in text:
        found += _codes(text)
    if _ADDRESS_HINT.search(text):
        found += _addresses(text)
    if found and "[" in text:
        masks = [(m.start(), m.end()) for m in MASK_RE.finditer(text)]
        found = [e for e in found if all(e.end <= a or e.start >= b for a, b in masks)]
    return _resolve(found)
