"""The recognisers, one example per kind, form and hard-negative class; offsets and values."""

from __future__ import annotations

import time

import pytest

from qa_pipeline.privacy import Kind, find_entities
from qa_pipeline.privacy.detect import id_check_ok
from qa_pipeline.privacy.numerals import RUN, read_run


def found(text: str) -> list[tuple[str, str, str]]:
    return [(e.kind.value, text[e.start : e.end], e.value) for e in find_entities(text)]


@pytest.mark.parametrize(
    ("text", "kind", "covered", "value"),
    [
        ("我的手机号是13912345678，你记一下", "mobile", "13912345678", "13912345678"),
        ("电话 158 0123 4567", "mobile", "158 0123 4567", "15801234567"),
        ("幺五九，零二六八，三三四一，这个是我的号码", "mobile", "幺五九，零二六八，三三四一", "15902683341"),
        ("号码是+86 13566778899", "mobile", "86 13566778899", "13566778899"),
        ("我手机是幺八八两三四五洞洞幺九", "mobile", "幺八八两三四五洞洞幺九", "18823450019"),
        ("幺三九、幺二三四、五六七八", "mobile", "幺三九、幺二三四、五六七八", "13912345678"),
        # ASR near-misses: 腰 for 幺, 医 for 一 after a digit, 要 before one, 期 for 七
        ("腰三八幺二三四五六七八", "mobile", "腰三八幺二三四五六七八", "13812345678"),
        ("一七七，医二三四，五六七八", "mobile", "一七七，医二三四，五六七八", "17712345678"),
        ("电话是要三八六五零二六三五二", "mobile", "要三八六五零二六三五二", "13865026352"),
        ("手机一三期零八五八二一五六", "mobile", "一三期零八五八二一五六", "13708582156"),
        # a digit lost by the ASR: 10 digits after a phone cue
        ("我的手机是1387654321", "mobile", "1387654321", "1387654321"),
        ("座机是010-62345678", "landline", "010-62345678", "01062345678"),
        ("零二幺杠六四三八七七六五", "landline", "零二幺杠六四三八七七六五", "02164387765"),
        ("家里座机号码是87654321", "landline", "87654321", "87654321"),
        ("身份证号是110105199003071234", "id_number", "110105199003071234", "110105199003071234"),
        ("身份证是五幺零幺零七二零零零零幺零幺零零三叉", "id_number",
         "五幺零幺零七二零零零零幺零幺零零三叉", "51010720000101003X"),
        ("证件号码44030419781225541x", "id_number", "44030419781225541x", "44030419781225541X"),
        ("卡号是6222 0212 3456 7890", "bank_card", "6222 0212 3456 7890", "6222021234567890"),
        ("退到我这张卡6228480012345678901", "bank_card", "6228480012345678901",
         "6228480012345678901"),
        ("发到wangwei艾特qq点com", "email", "wangwei艾特qq点com", "wangwei@qq.com"),
        ("邮箱 Li.Ming@Gmail.COM 谢谢", "email", "Li.Ming@Gmail.COM", "li.ming@gmail.com"),
        ("护照号码是G一二三四五六七八", "passport", "G一二三四五六七八", "G12345678"),
        ("验证码是385912", "code", "385912", "385912"),
        ("收到的验证码四七二一", "code", "四七二一", "4721"),
        ("短信码是 a3f9k2", "code", "a3f9k2", "a3f9k2"),
        ("密码是abc123", "password", "abc123", "abc123"),
        ("口令是幺二三四五六", "password", "幺二三四五六", "123456"),
        ("我家住在建国路88号3栋2单元501室", "address", "88号3栋2单元501室", "88号3栋2单元501室"),
        ("阳光小区7栋3单元1102室", "address", "7栋3单元1102室", "7栋3单元1102室"),
    ],
)  # fmt: skip
def test_finds_each_kind(text: str, kind: str, covered: str, value: str) -> None:
    assert found(text) == [(kind, covered, value)]


@pytest.mark.parametrize(
    "text",
    [
        "我的工号是10086，很高兴为您服务",  # agent id
        "工号幺洞八六为您服务",
        "订单号是202403150012345678",  # order number (18 digits, ID-like)
        "你的订单号幺三八一二三四五六七八九",  # order number shaped like a mobile
        "快递单号是 75312345678901",  # parcel
        "运单号幺二三四五六七八九零幺二",
        "这个套餐一个月一百二十八元",  # prices
        "一共是三百五十块钱",
        "这台机器12800元",
        "2024年3月15日办理的",  # dates
        "从二零二四年一月一号开始",
        "我等了45分钟了",  # durations and times
        "下午三点半给我回电话",
        "车牌京A12345",  # plates
        "车牌号是浙A幺二三四五",
        "尾号5678的那张卡",  # the last four asked for
        "手机后四位是1234",
        "我买了3台，退了两台",  # quantities
        "积分还有12800",
        "请拨打400-810-8888",  # business numbers
        "我说了一二三，你听到了吗",
        "我知道3号楼在哪",
    ],
)
def test_hard_negatives_are_not_masked(text: str) -> None:
    assert found(text) == []


def test_context_counts_both_ways_nearest_cue_wins() -> None:
    text = "工号10086，我手机13812345678"
    assert found(text) == [("mobile", "13812345678", "13812345678")]
    assert found("手机13812345678，订单号13912345678") == [("mobile", "13812345678", "13812345678")]
    # 7 digits are a landline only after a phone cue
    assert found("电话是6234 5678") == [("landline", "6234 5678", "62345678")]
    assert found("6234 5678") == []


def test_check_digit_is_evidence_not_a_gate() -> None:
    body = "11010519900307123"
    (good,) = [body + c for c in "0123456789X" if id_check_ok(body + c)]
    bad = body + ("0" if good[-1] != "0" else "1")
    assert not id_check_ok(bad)
    assert found("身份证" + good) == [("id_number", good, good)]
    assert found("身份证" + bad) == [("id_number", bad, bad)]
    a, b = find_entities(good)[0], find_entities(bad)[0]
    assert a.kind is b.kind is Kind.ID_NUMBER and a.score > b.score
    # an implausible birth date: 18 digits are then a card, not an ID
    assert found("110105199013451234")[0][0] == "bank_card"


def test_luhn_raises_a_card_score_but_does_not_gate() -> None:
    luhn_ok, luhn_bad = "4111111111111111", "4111111111111112"
    (a,), (b,) = find_entities(luhn_ok), find_entities(luhn_bad)
    assert a.kind is b.kind is Kind.BANK_CARD and a.score > b.score


def test_two_numbers_in_one_run_split() -> None:
    assert [f[1] for f in found("号码是13812345678，13912345678")] == [
        "13812345678",
        "13912345678",
    ]


def test_cardinals_and_stray_shi() -> None:
    text = "共三百二十块"
    (r,) = [read_run(text, m.start(), m.end()) for m in RUN.finditer(text)]
    assert r is not None
    assert r.cardinal and r.digits == "32"
    assert found("一共三百二十块") == []
    # a stray 十 in a long digit string is Whisper's 四 (shi/si)
    assert found("手机号幺三八十五六七八九零一") == [
        ("mobile", "幺三八十五六七八九零一", "13845678901")
    ]


def test_offsets_map_back_to_the_characters_said() -> None:
    text = "嗯，您好，我的号码是 幺三八 一二三四 五六七八 ，好的"
    (e,) = find_entities(text)
    assert text[e.start] == "幺" and text[e.end - 1] == "八"
    assert text[e.end :].startswith(" ，好的")


def test_sorted_and_non_overlapping() -> None:
    text = "手机13812345678，邮箱a1@qq.com，身份证110105199003071234"
    es = find_entities(text)
    assert [e.kind for e in es] == [Kind.MOBILE, Kind.EMAIL, Kind.ID_NUMBER]
    assert all(a.end <= b.start for a, b in zip(es, es[1:], strict=False))


def test_early_out_is_cheap() -> None:
    text = "您好，请问有什么可以帮您的，好的我帮您看看。"
    assert find_entities(text) == []
    t0 = time.perf_counter()
    for _ in range(2000):
        find_entities(text)
    per_call = (time.perf_counter() - t0) / 2000
    assert per_call < 200e-6  # measured ~2 µs; a wide bound for a loaded machine


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a filler in the pause between groups
        ("号码是，嗯，幺三九，嗯，八八七六，五五四三", [("mobile", "幺三九，嗯，八八七六，五五四三")]),
        # a lowering cue belongs to the number right after it, not to the next one
        ("工号1234，13812345678", [("mobile", "13812345678")]),
        ("区号是025，电话是84561234", [("landline", "84561234")]),
        # a code's cue may stand further back in its sentence
        ("你收到的验证码报给我一下，嗯，是四三二一", [("code", "四三二一")]),
        ("我护照号码是EA1234567", [("passport", "EA1234567")]),
        ("我住朝阳区建国路甲10号", [("address", "10号")]),
        ("张江路500弄3号楼402室", [("address", "500弄3号楼402室")]),
    ],
)  # fmt: skip
def test_pauses_neighbours_and_far_cues(text: str, expected: list[tuple[str, str]]) -> None:
    assert [(k, c) for k, c, _ in found(text)] == expected


def test_a_long_number_nothing_explains_is_masked_anyway() -> None:
    """The ASR mishears cue words (好奇 for 号码) and loses digits: 9+ digits with no
    context word are masked; with a lowering cue they stay, and so do 8 digits (a date)."""
    assert found("我好奇是一三七五六三一八三") == [("mobile", "一三七五六三一八三", "137563183")]
    assert found("帮我查一下202403150012") != []  # the price: an order said without its cue
    assert found("订单202403150012") == []
    assert found("物流单号 4302 1234 5678 9") == []
    assert found("20240315") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # measured near-misses count inside a run: 死 (sǐ) for 四, 求 (qiú, heard as 球) for
        # 九, Q for 九, 林 for 零
        ("我的手机是一三八死五六七八九林二", [("mobile", "一三八死五六七八九林二")]),
        ("号码是幺三求二二三四五六七八", [("mobile", "幺三求二二三四五六七八")]),
        ("手机 138 Q234 5678", [("mobile", "138 Q234 5678")]),
        # ...and stay words before a number or after it
        ("号码是有13812345678Q", [("mobile", "13812345678")]),
        # a context word heard as its homophone (same tones): 店划 for 电话, 功耗 for 工号
        ("店划是6234 5678", [("landline", "6234 5678")]),
        ("功耗幺三八幺二三四五六七八", []),
        # after a card or phone cue, a word between groups of digits is a digit misheard
        ("卡号是六二号二八四八，零零幺二，三四五六，七八九", [("bank_card", "六二号二八四八，零零幺二，三四五六，七八九")]),
        ("电话是六二三四五六七八个", [("landline", "六二三四五六七八")]),
        # no cue: groups of three digits or more across a word that is no unit
        ("嗯一三八五六七哦八八九九", [("mobile", "一三八五六七哦八八九九")]),
    ],
)  # fmt: skip
def test_asr_near_misses_homophone_cues_and_gaps(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert [(k, c) for k, c, _ in found(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "身份证后六位是123456",  # a short number is not joined to a word before it
        "我打了一二三四五次，六七八九零块",  # units between the groups
        "二零二四年三月十五号到二零二四年四月",
        "工号幺二三四五有六七八九",  # a lowering cue: nothing joined, nothing masked
        "是一二三",
    ],
)
def test_joins_and_near_misses_leave_these(text: str) -> None:
    assert found(text) == []


def test_near_misses_are_the_measured_ones() -> None:
    """Each syllable and letter read as a digit is in the measurement of what Whisper writes
    for spoken digits (benchmarks/digit_confusions.json) as the rule in numerals.py says."""
    import json
    from collections import defaultdict
    from pathlib import Path

    from pypinyin.pinyin_dict import pinyin_dict

    from qa_pipeline.privacy.numerals import DIGIT, NEAR_LETTERS, NEAR_SYLLABLES

    data = json.loads(
        (Path(__file__).parents[2] / "benchmarks" / "digit_confusions.json").read_text("utf-8")
    )
    syl: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    let: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for digit, heard in data["digits"].items():
        for h, k in heard.items():
            if not h or h in DIGIT:
                continue
            if h.isascii() and h.isalpha():
                let[h.upper()][digit] += k
            elif ord(h) in pinyin_dict:
                syl[pinyin_dict[ord(h)].split(",")[0]][digit] += k

    def most(counts: dict[str, int]) -> str:
        return min(counts, key=lambda x: (-counts[x], x))

    for s, d in NEAR_SYLLABLES.items():
        counts = syl[s]
        assert most(counts) == d, s
        assert counts[d] >= 4 and counts[d] > 0.5 * sum(counts.values()), (s, dict(counts))
    for letter, d in NEAR_LETTERS.items():
        counts = let[letter]
        assert most(counts) == d and sum(counts.values()) >= 3, letter


def test_misheard_cues_are_the_measured_ones() -> None:
    """The context words spelt as Whisper wrote them (not homophones) were each written
    three times or more for that word in benchmarks/digit_confusions.json."""
    import json
    from pathlib import Path

    from qa_pipeline.privacy.detect import _CUES

    data = json.loads(
        (Path(__file__).parents[2] / "benchmarks" / "digit_confusions.json").read_text("utf-8")
    )
    heard = {h: cue for cue, forms in data["cues"].items() for h, k in forms.items() if k >= 3}
    for alias in ("熬码", "神圣圣", "真正正好", "变成马", "天浩"):
        said = heard[alias]  # its kind: that of the longest context word it starts with
        kind = _CUES[max((c for c in _CUES if said.startswith(c)), key=len)]
        assert _CUES[alias] == kind, alias


def test_dots_between_digit_groups_join_a_number_but_not_a_decimal() -> None:
    """Whisper writes 138.1234 or 4.2.2.3… for a number read in groups; a price or a
    duration with a decimal point stays a quantity."""
    from qa_pipeline.privacy import find_entities

    for text, kind, said in (
        ("我的手机号是138.12345678，谢谢", "mobile", "138.12345678"),
        ("电话是4.2.2.3.6.2.3.4", "landline", "4.2.2.3.6.2.3.4"),
    ):
        (e,) = find_entities(text)
        assert (e.kind.value, text[e.start : e.end]) == (kind, said)
    for text in ("价格是199.99元", "大概1.5小时", "版本3.1.4", "订单号1234.5678.9012"):
        assert find_entities(text) == [], text


def test_two_stray_shi_in_a_long_run_are_fours_but_values_stay() -> None:
    """Whisper writes 十 for 四 (and for nothing else in the measurement): two of them in a
    run of seven numerals or more are digits; a value with other units, or a short one,
    stays a value."""
    assert found("我的号码是一七八三七三十十零五六谢谢") == [
        ("mobile", "一七八三七三十十零五六", "17837344056")
    ]
    assert found("一共一千二百三十四万五千六百七十八") == []
    assert found("三十五十六十七") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the same syllables with other tones: 电划 (diàn huá) for 电话
        ("连细电划是1-2-3-5-2-3-", [("mobile", "1-2-3-5-2-3")]),
        # one initial changed, for the words measured so: 变化 for 电话, 首期 for 手机
        ("联系变化肥，五六，零，九，四，六，四，三", [("landline", "五六，零，九，四，六，四，三")]),
        ("我首期是一五九年七年二八三三六", [("mobile", "一五九年七年二八三三六")]),
        # after a phone cue, six digits (the ASR dropped five) and groups joined from seven
        ("手机号是幺三八，二七四", [("mobile", "幺三八，二七四")]),
        ("电话是零二幺杠是六条四五三二三", [("landline", "零二幺杠是六条四五三二三")]),
    ],
)  # fmt: skip
def test_near_heard_cues_and_digits_lost_after_a_phone_cue(
    text: str, expected: list[tuple[str, str]]
) -> None:
    assert [(k, c) for k, c, _ in found(text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        # the lowered counts are for phone cues only: an ID's last six asked for stays
        "身份证后六位是123456",
        "手机号后六位是幺二三四五六",
        "身份证号是一二三四五六",
        # six digits with no cue, or a unit after them
        "我说了一二三四五六",
        "电话费一二三四五六元",
        "变化是二零二四年三月十五号",
        # no initial change for 账号 (钢号 was said 工号): an agent id stays
        "钢号幺二三四五六七为您服务",
        # a lowering word heard with other tones stops the guess at a long number
        "快滴幺二三四五六七八九零幺二三",
        # a lone numeral before a word is not joined to the digits after it
        "电话里说了一遍，二三四五六",
    ],
)
def test_near_cues_and_phone_counts_leave_these(text: str) -> None:
    assert found(text) == []


def test_a_near_heard_lowering_cue_keeps_a_number_with_its_own_shape() -> None:
    """几分 reads as 积分 without tones: it does not veto an 11-digit mobile."""
    assert found("您等几分钟，一三八一二三四五六七八") == [
        ("mobile", "一三八一二三四五六七八", "13812345678")
    ]


def test_near_initial_cues_are_measured_and_clash_with_no_other_kind() -> None:
    """Each word read with one initial changed was written so for a word of its own kind in
    benchmarks/digit_confusions.json ("cues"), and no near reading found there in what was
    said for a word of another kind (phone kinds count as one)."""
    import json
    from pathlib import Path

    from qa_pipeline.privacy.detect import _CUES, _NEAR_INITIAL, _cues_heard, _near_reading

    data = json.loads(
        (Path(__file__).parents[2] / "benchmarks" / "digit_confusions.json").read_text("utf-8")
    )

    def cls(kind: Kind | None) -> object:
        return "phone" if kind in (Kind.MOBILE, Kind.LANDLINE) else kind

    by_initial: set[str] = set()
    for said, forms in data["cues"].items():
        said_kind = _CUES[max((c for c in _CUES if c in said), key=len)]
        for heard in forms:
            for a, b, word, near in _cues_heard(heard):
                if not near:
                    continue
                assert cls(_CUES[word]) == cls(said_kind), (said, heard, word)
                bare = [_near_reading(c)[0] for c in heard[a:b]]
                if bare != [_near_reading(c)[0] for c in word]:
                    by_initial.add(word)
    assert by_initial == _NEAR_INITIAL
