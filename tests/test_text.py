from qa_pipeline.text import match_form, normalise, to_chinese_numerals, to_digits


def test_traditional_to_simplified_and_punctuation() -> None:
    assert normalise("廣州市房地產中介協會分析") == "广州市房地产中介协会分析"
    assert normalise("您好,請問有什麼可以幫您?") == "您好，请问有什么可以帮您？"


def test_full_width_folded() -> None:
    assert normalise("ＡＢＣ１２３") == "ABC123"
    assert match_form("您好！　工號１０２４。") == "您好工号1024"


def test_match_form_drops_spaces_and_punctuation() -> None:
    assert match_form("請 您 稍等 …") == "请您稍等"
    assert match_form("Hello, World") == "helloworld"


def test_numerals_both_ways() -> None:
    assert to_digits("预计在二天内，三百二十元") == "预计在2天内，320元"
    assert to_chinese_numerals("工号1024") == "工号一千零二十四"


def test_english_left_alone() -> None:
    assert normalise("I am sorry, that's not valid.") == "I am sorry, that's not valid."


# Normalised text is simplified already: a second pass (the rules' match form) only checks.
# The check must agree with OpenCC itself on every text, or a rule would see traditional
# characters.
def _opencc_t2s(text: str) -> str:
    from qa_pipeline.text import _t2s

    return str(_t2s().convert(text))  # the converter itself, no check before it


def test_phrases_opencc_changes_only_in_context_are_converted() -> None:
    from qa_pipeline.text import is_simplified, to_simplified

    # each character stays alone; t2s changes it inside these phrases
    for text in ("意志消沈", "沈浸", "打坏了", "反覆", "明瞭", "藉口", "英哩", "甦醒", "衹得"):
        assert not is_simplified(text), text
        assert to_simplified(text) == _opencc_t2s(text) != text, text
    assert is_simplified("坏了") is False and to_simplified("坏了") == "坏了"  # checked, kept


def test_the_simplified_check_agrees_with_opencc() -> None:
    """Call-centre text (simplified, as normalised), traditional text and random mixes of
    characters t2s changes and characters it keeps: to_simplified == OpenCC's t2s."""
    import random

    from qa_pipeline.testing import make_calls
    from qa_pipeline.text import _t2s_changes, is_simplified, to_simplified

    texts = list(dict.fromkeys(u.text for c in make_calls(100, seed=15) for u in c.utterances))
    assert all(is_simplified(t) for t in texts)  # the fast path is taken on them
    texts += ["您好,請問有什麼可以幫您?", "廣州市房地產中介協會", "乾隆年間", "著作權"]
    rng = random.Random(15)
    changing = sorted(_t2s_changes())
    keeping = "".join(sorted(set("".join(texts[:50])) - set(changing)))
    for _ in range(2000):
        texts.append(
            "".join(
                rng.choice(changing) if rng.random() < 0.15 else rng.choice(keeping)
                for _ in range(rng.randint(1, 16))
            )
        )
    for t in texts:
        assert to_simplified(t) == _opencc_t2s(t), t


def test_every_character_t2s_changes_alone_is_known() -> None:
    """The characters t2s changes on its own all lie in the ranges the check scans (all of
    Unicode's planes that hold ideographs looked at, with the installed OpenCC)."""
    from qa_pipeline.text import _PHRASE_ONLY, _t2s, _t2s_changes

    chars = [chr(i) for i in range(0x80, 0x40000) if not 0xD800 <= i < 0xE000]
    out = str(_t2s().convert("\n".join(chars))).split("\n")
    changed = {c for c, o in zip(chars, out, strict=True) if o != c}
    assert len(changed) > 5000  # OpenCC's character table, not an empty scan
    assert changed | set(_PHRASE_ONLY) == _t2s_changes()
